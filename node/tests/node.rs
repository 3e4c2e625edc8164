//! `sparebox node` as a process: start, health, dashboard, clean stop.
#![allow(clippy::unwrap_used)] // test files: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::{NodeProc, Sandbox, mode};
use nix::sys::signal::Signal;

async fn get_json(url: &str) -> serde_json::Value {
    let r = reqwest::get(url).await.expect("request");
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.json().await.expect("json")
}

#[tokio::test]
async fn node_starts_answers_health_and_exits_0_on_sigterm() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let sb = Sandbox::new();
        let data = sb.path("node-data");
        let mut node = NodeProc::start(
            &sb,
            &[
                "--data-dir",
                data.to_str().unwrap(),
                "--api-addr",
                "127.0.0.1:0",
            ],
        );
        assert!(node.peer_id.starts_with("12D3KooW"), "{:?}", node.banner);
        assert!(
            node.banner
                .iter()
                .any(|l| l.contains(data.to_str().unwrap())),
            "{:?}",
            node.banner
        );
        assert_eq!(mode(&data.join("node.key")), 0o600);
        assert!(data.join("db").exists());

        let health = get_json(&format!("{}/api/health", node.api)).await;
        assert_eq!(health["status"], "ok");
        assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(health["peerId"], node.peer_id.as_str());
        assert!(health["uptimeS"].is_u64());

        let page = reqwest::get(format!("{}/", node.api)).await.unwrap();
        assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
        assert!(page.text().await.unwrap().contains("Sparebox node"));
        let missing = reqwest::get(format!("{}/api/nope", node.api))
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
        let body: serde_json::Value = missing.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found");

        assert_eq!(node.signal_and_wait(Signal::SIGTERM), Some(0));
    })
    .await
    .expect("timed out");
}

#[tokio::test]
async fn node_exits_0_on_sigint_and_keeps_its_identity() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let sb = Sandbox::new();
        let data = sb.path("d");
        let args = [
            "--data-dir",
            data.to_str().unwrap(),
            "--api-addr",
            "127.0.0.1:0",
        ];
        let mut first = NodeProc::start(&sb, &args);
        assert_eq!(first.signal_and_wait(Signal::SIGINT), Some(0));
        let mut second = NodeProc::start(&sb, &args);
        assert_eq!(first.peer_id, second.peer_id);
        assert_eq!(second.signal_and_wait(Signal::SIGTERM), Some(0));
    })
    .await
    .expect("timed out");
}

#[tokio::test]
async fn second_node_on_same_data_dir_fails_clearly() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let sb = Sandbox::new();
        let data = sb.path("d");
        let mut first = NodeProc::start(
            &sb,
            &[
                "--data-dir",
                data.to_str().unwrap(),
                "--api-addr",
                "127.0.0.1:0",
            ],
        );
        let err = sb.fails(&[
            "node",
            "--data-dir",
            data.to_str().unwrap(),
            "--api-addr",
            "127.0.0.1:0",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-mdns",
        ]);
        assert!(err.contains("another sparebox node"), "{err}");
        // A taken API port is explained too.
        let addr = first.api.trim_start_matches("http://").to_string();
        let err = sb.fails(&[
            "node",
            "--data-dir",
            sb.path("other").to_str().unwrap(),
            "--api-addr",
            &addr,
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-mdns",
        ]);
        assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
        assert_eq!(first.signal_and_wait(Signal::SIGTERM), Some(0));
    })
    .await
    .expect("timed out");
}

#[tokio::test]
async fn node_logs_json_with_log_format_json() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let sb = Sandbox::new();
        let data = sb.path("d");
        let mut node = NodeProc::start(
            &sb,
            &[
                "--data-dir",
                data.to_str().unwrap(),
                "--api-addr",
                "127.0.0.1:0",
                "--log-format",
                "json",
            ],
        );
        assert_eq!(node.signal_and_wait(Signal::SIGTERM), Some(0));
        let mut stderr = String::new();
        use std::io::Read;
        node.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let lines: Vec<serde_json::Value> = stderr
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
            .collect();
        assert!(
            lines.iter().any(|l| l["message"] == "node started"),
            "{stderr}"
        );
    })
    .await
    .expect("timed out");
}
