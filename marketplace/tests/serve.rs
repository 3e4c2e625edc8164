//! `sparebox-market serve` as a process: it starts on 127.0.0.1:0, checks
//! its ledger, answers health and metrics, and exits 0 on SIGTERM.
#![allow(clippy::unwrap_used)] // test file: a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test]
async fn serve_answers_health_and_metrics_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sparebox-market"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-mdns",
            "--data-dir",
        ])
        .arg(dir.path().join("m"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut url, mut id) = (String::new(), String::new());
    while url.is_empty() {
        let l = lines.next().expect("banner").unwrap();
        if let Some(v) = l.trim().strip_prefix("http:") {
            url = v.trim().to_string();
        }
        if let Some(v) = l.trim().strip_prefix("market id:") {
            id = v.trim().to_string();
        }
    }
    let h: serde_json::Value = reqwest::get(format!("{url}/api/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["marketId"], id.as_str());
    assert_eq!(h["billing"], "test-ledger");
    let m = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("sparebox_market_ledger_ok 1"), "{m}");
    assert!(dir.path().join("m/market.key").exists());
    // `admin grant-credit` (test-ledger mode) adds credit to an account.
    let r = reqwest::Client::new()
        .post(format!("{url}/api/v1/accounts"))
        .json(&serde_json::json!({"email": "ada@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let admin = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sparebox-market"))
            .args(["admin", "--market", &url, "--data-dir"])
            .arg(dir.path().join("m"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = admin(&["grant-credit", "ada@example.com", "500"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["balanceCents"], 500, "{v}");
    let out = admin(&["grant-credit", "nobody@example.com", "500"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown_account"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
}

#[test]
fn stripe_mode_without_keys_is_refused_with_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sparebox-market"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--billing",
            "stripe",
            "--no-mdns",
            "--data-dir",
        ])
        .arg(dir.path())
        .env_remove("STRIPE_SECRET_KEY")
        .env_remove("STRIPE_WEBHOOK_SECRET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("STRIPE_SECRET_KEY"), "{err}");
}
