//! The `sparebox` CLI, run as a user would: keys, specs, offers, config.
#![allow(clippy::unwrap_used)] // test files: a failed unwrap is a failed test

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Sandbox, mode};

fn write_spec(sb: &Sandbox) -> std::path::PathBuf {
    std::fs::write(
        sb.path("agent.wasm"),
        b"\0asm\x0d\0\x01\0 not a real component",
    )
    .unwrap();
    let spec = sb.path("agent.toml");
    std::fs::write(
        &spec,
        "name = \"echo\"\nruntime = \"wasi\"\n[artifact]\npath = \"agent.wasm\"\n[resources]\nmemory_mib = 64\n",
    )
    .unwrap();
    spec
}

#[test]
fn keys_generate_writes_default_key_with_mode_0600() {
    let sb = Sandbox::new();
    let out = sb.ok(&["keys", "generate"]);
    let path = sb.path("data/sparebox/keys/deployer.key");
    assert!(out.contains(&path.display().to_string()), "{out}");
    assert_eq!(mode(&path), 0o600);
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
}

#[test]
fn keys_generate_refuses_to_overwrite_without_force() {
    let sb = Sandbox::new();
    let key = sb.path("k.key");
    let k = key.to_str().unwrap();
    sb.ok(&["keys", "generate", "--out", k]);
    let before = std::fs::read(&key).unwrap();
    let err = sb.fails(&["keys", "generate", "--out", k]);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&key).unwrap(),
        before,
        "key changed without --force"
    );
    sb.ok(&["keys", "generate", "--out", k, "--force"]);
    assert_ne!(std::fs::read(&key).unwrap(), before);
    assert_eq!(mode(&key), 0o600);
}

#[test]
fn keys_show_prints_public_key_and_peer_id() {
    let sb = Sandbox::new();
    let gen_out = sb.ok(&[
        "keys",
        "generate",
        "--out",
        sb.path("k.key").to_str().unwrap(),
    ]);
    let json = sb.ok(&[
        "keys",
        "show",
        "--key",
        sb.path("k.key").to_str().unwrap(),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let peer = v["peerId"].as_str().unwrap();
    let public = v["publicKey"].as_str().unwrap();
    assert!(peer.starts_with("12D3KooW"), "{peer}");
    assert_eq!(public.len(), 64);
    assert!(
        gen_out.contains(peer) && gen_out.contains(public),
        "{gen_out}"
    );
    let human = sb.ok(&["keys", "show", "--key", sb.path("k.key").to_str().unwrap()]);
    assert!(human.contains(peer));
}

#[test]
fn keys_show_rejects_key_readable_by_group_or_others() {
    let sb = Sandbox::new();
    let key = sb.path("k.key");
    sb.ok(&["keys", "generate", "--out", key.to_str().unwrap()]);
    for m in [0o640, 0o604] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(m)).unwrap();
        let err = sb.fails(&["keys", "show", "--key", key.to_str().unwrap()]);
        assert!(err.contains(key.to_str().unwrap()), "{err}");
        assert!(
            err.contains(&format!("{m:04o}")) && err.contains("chmod 600"),
            "{err}"
        );
    }
}

#[test]
fn keys_show_rejects_corrupt_key_naming_the_file() {
    let sb = Sandbox::new();
    let key = sb.path("bad.key");
    let good = sb.path("good.key");
    sb.ok(&["keys", "generate", "--out", good.to_str().unwrap()]);
    let pem = std::fs::read_to_string(&good).unwrap();
    for content in [
        "garbage".to_string(),
        pem[..pem.len() / 2].to_string(),
        pem.replace('A', "B"),
    ] {
        std::fs::write(&key, content).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = sb.fails(&["keys", "show", "--key", key.to_str().unwrap()]);
        assert!(
            err.contains("corrupt") && err.contains(key.to_str().unwrap()),
            "{err}"
        );
    }
    let err = sb.fails(&[
        "keys",
        "show",
        "--key",
        sb.path("missing.key").to_str().unwrap(),
    ]);
    assert!(
        err.contains("does not exist") && err.contains("keys generate"),
        "{err}"
    );
}

#[test]
fn offer_create_inspect_then_tampered_offer_fails() {
    let sb = Sandbox::new();
    sb.ok(&["keys", "generate"]);
    let host_key = sb.path("host.key");
    sb.ok(&["keys", "generate", "--out", host_key.to_str().unwrap()]);
    let host: serde_json::Value = serde_json::from_str(&sb.ok(&[
        "keys",
        "show",
        "--key",
        host_key.to_str().unwrap(),
        "--json",
    ]))
    .unwrap();
    let host_peer = host["peerId"].as_str().unwrap();
    let spec = write_spec(&sb);
    let offer = sb.path("offer.json");
    let offer_s = offer.to_str().unwrap();

    sb.ok(&[
        "offer",
        "create",
        "--spec",
        spec.to_str().unwrap(),
        "--host",
        host_peer,
        "--out",
        offer_s,
    ]);
    let out = sb.ok(&["offer", "inspect", offer_s]);
    assert!(
        out.contains("signature valid") && out.contains(host_peer),
        "{out}"
    );
    let out = sb.ok(&["offer", "inspect", offer_s, "--host", host_peer]);
    assert!(out.contains("addressed to this host"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&sb.ok(&["offer", "inspect", offer_s, "--json"])).unwrap();
    assert_eq!(json["valid"], true);
    assert_eq!(json["hostPeerId"], host_peer);
    assert_eq!(json["offer"]["resources"]["resources"]["memory_mib"], 64);
    assert_eq!(json["offer"]["payment"], "Direct");

    // Not for this host.
    let deployer: serde_json::Value =
        serde_json::from_str(&sb.ok(&["keys", "show", "--json"])).unwrap();
    let err = sb.fails(&[
        "offer",
        "inspect",
        offer_s,
        "--host",
        deployer["peerId"].as_str().unwrap(),
    ]);
    assert!(err.contains("[wrong_audience]"), "{err}");

    // Refuses to overwrite the offer file.
    let err = sb.fails(&[
        "offer",
        "create",
        "--spec",
        spec.to_str().unwrap(),
        "--host",
        host_peer,
        "--out",
        offer_s,
    ]);
    assert!(err.contains("already exists"), "{err}");

    let original: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&offer).unwrap()).unwrap();
    let hex = original["offer"].as_str().unwrap().to_string();
    let flip = |s: &str, at: usize| {
        let mut b = s.as_bytes().to_vec();
        b[at] = if b[at] == b'0' { b'1' } else { b'0' };
        String::from_utf8(b).unwrap()
    };
    let cases = [
        (
            "payload byte",
            "offer",
            flip(&hex, hex.len() / 2),
            "[bad_signature]",
        ),
        (
            "signature byte",
            "offer",
            flip(&hex, hex.len() - 1),
            "[bad_signature]",
        ),
        (
            "spec text",
            "spec",
            original["spec"].as_str().unwrap().replace("echo", "ech0"),
            "[spec_mismatch]",
        ),
    ];
    for (what, field, value, code) in cases {
        let mut t = original.clone();
        t[field] = serde_json::Value::String(value);
        let path = sb.path("tampered.json");
        std::fs::write(&path, serde_json::to_string(&t).unwrap()).unwrap();
        let err = sb.fails(&["offer", "inspect", path.to_str().unwrap()]);
        assert!(err.contains(code), "tampered {what}: {err}");
    }
    std::fs::write(sb.path("junk.json"), "{\"hello\": 1}").unwrap();
    let err = sb.fails(&["offer", "inspect", sb.path("junk.json").to_str().unwrap()]);
    assert!(err.contains("not a sparebox offer file"), "{err}");
}

#[test]
fn offer_inspect_reports_expired_offer() {
    let sb = Sandbox::new();
    sb.ok(&["keys", "generate"]);
    let spec = write_spec(&sb);
    let peer = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
    let offer = sb.path("offer.json");
    sb.ok(&[
        "offer",
        "create",
        "--spec",
        spec.to_str().unwrap(),
        "--host",
        peer,
        "--ttl",
        "1s",
        "--out",
        offer.to_str().unwrap(),
    ]);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let err = sb.fails(&["offer", "inspect", offer.to_str().unwrap()]);
    assert!(err.contains("[expired]"), "{err}");
}

#[test]
fn offer_create_explains_missing_key_bad_host_and_bad_ttl() {
    let sb = Sandbox::new();
    let spec = write_spec(&sb);
    let s = spec.to_str().unwrap();
    let peer = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
    let err = sb.fails(&[
        "offer", "create", "--spec", s, "--host", peer, "--out", "/tmp/x",
    ]);
    assert!(
        err.contains("does not exist") && err.contains("keys generate"),
        "{err}"
    );
    sb.ok(&["keys", "generate"]);
    let err = sb.fails(&[
        "offer", "create", "--spec", s, "--host", "nope", "--out", "/tmp/x",
    ]);
    assert!(err.contains("not a PeerId"), "{err}");
    let err = sb.fails(&[
        "offer", "create", "--spec", s, "--host", peer, "--ttl", "2d", "--out", "/tmp/x",
    ]);
    assert!(err.contains("--ttl"), "{err}");
    let err = sb.fails(&[
        "offer",
        "create",
        "--spec",
        s,
        "--host",
        peer,
        "--price-per-hour",
        "5",
        "--out",
        "/tmp/x",
    ]);
    assert!(err.contains("--voucher"), "{err}");
}

#[test]
fn spec_validate_accepts_examples_and_names_bad_fields() {
    let sb = Sandbox::new();
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/specs");
    for f in ["echo-wasi.toml", "openclaw.toml"] {
        let out = sb.ok(&["spec", "validate", &format!("{examples}/{f}")]);
        assert!(out.contains("valid"), "{out}");
    }
    let bad = sb.path("bad.toml");
    std::fs::write(
        &bad,
        "name = \"x\"\nruntime = \"wasi\"\n[resources]\ncpu_millis = 1\n",
    )
    .unwrap();
    let err = sb.fails(&["spec", "validate", bad.to_str().unwrap()]);
    assert!(
        err.contains("artifact:") && err.contains("resources.cpu_millis:"),
        "{err}"
    );
    let out = sb.run(&["spec", "validate", bad.to_str().unwrap(), "--json"]);
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"][1]["field"], "resources.cpu_millis");
    std::fs::write(&bad, "name = \"x\"\nruntime = \"docker\"\n").unwrap();
    let err = sb.fails(&["spec", "validate", bad.to_str().unwrap()]);
    assert!(err.contains("runtime") && err.contains("line 2"), "{err}");
}

#[test]
fn config_default_is_complete_and_accepted_by_the_node() {
    let sb = Sandbox::new();
    let text = sb.ok(&["config", "default"]);
    assert!(text.contains("[api]") && text.contains("allowed_deployers"));
    let path = sb.path("node.toml");
    std::fs::write(&path, &text).unwrap();
    let out = sb.ok(&["config", "check", "--config", path.to_str().unwrap()]);
    assert!(out.contains("127.0.0.1:7878"), "{out}");
    std::fs::write(&path, format!("{text}\nbogus = 1\n")).unwrap();
    let err = sb.fails(&["config", "check", "--config", path.to_str().unwrap()]);
    assert!(err.contains("bogus"), "{err}");
}
