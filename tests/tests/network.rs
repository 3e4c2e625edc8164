//! Real nodes on 127.0.0.1 (port 0, temp dirs, mDNS off) talking libp2p:
//! adverts, deploy by PeerId, the agent API, control, restart.
#![allow(clippy::unwrap_used)] // test files: a failed unwrap is a failed test

use std::time::Duration;

use serde_json::Value;
use sparebox_protocol::identity::PublicKey;
use sparebox_tests::{
    Deployer, eventually, repo_root, restart, spawn_node_with, wait_task, within,
};

async fn get_json(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

async fn send(api_url: &str, token: &str, content: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{api_url}/messages"))
        .bearer_auth(token)
        .json(&serde_json::json!({"content": content}))
        .send()
        .await
        .unwrap()
}

/// Sends a message through the agent API and waits for the task's result.
async fn round_trip(node_api: &str, api_url: &str, token: &str, content: &str) -> Value {
    let r = send(api_url, token, content).await;
    assert_eq!(r.status(), 202);
    let task: Value = r.json().await.unwrap();
    let id = task["taskId"].as_str().unwrap().to_string();
    wait_task(node_api, &id, token, Duration::from_secs(10)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_advert_deploy_message_control_restart() {
    within(Duration::from_secs(120), async {
        let deployer = Deployer::new().unwrap();
        let dk = deployer.key.public().to_string();
        let a = spawn_node_with(|c| c.direct.allowed_deployers = vec![dk.clone()])
            .await
            .unwrap();
        let a_addr = a.node.listen_addrs()[0].clone();
        let b = spawn_node_with(|c| c.network.bootstrap = vec![a_addr.clone()])
            .await
            .unwrap();
        let b_addr = b.node.listen_addrs()[0].clone();
        let c = spawn_node_with(|c| c.network.bootstrap = vec![b_addr.clone()])
            .await
            .unwrap();
        let c_addr = c.node.listen_addrs()[0].clone();
        let a_id = a.node.public_key().to_string();

        // A's advert reaches C, which is only connected to B.
        let advert = eventually(Duration::from_secs(20), "A's advert at C", || {
            let url = format!("{}/api/adverts", c.api_url());
            let a_id = a_id.clone();
            async move {
                let list = get_json(&url).await;
                list.as_array()?
                    .iter()
                    .find(|h| h["peerId"] == a_id.as_str())
                    .cloned()
            }
        })
        .await;
        assert_eq!(advert["runtimes"][0]["kind"], "wasi");

        // `sparebox hosts` through C lists A.
        let (ok, out, err) = deployer
            .cli(&["hosts", "--bootstrap", &c_addr, "--json", "--wait", "5s"])
            .await;
        assert!(ok, "{err}");
        let hosts: Value = serde_json::from_str(&out).unwrap();
        assert!(
            hosts
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h["peerId"] == a_id.as_str()),
            "{out}"
        );

        // C's network finds A by PeerId; the CLI deploys the echo agent.
        let spec = repo_root().join("examples/specs/echo-wasi.toml");
        let (ok, out, err) = deployer
            .cli(&[
                "deploy",
                spec.to_str().unwrap(),
                "--host",
                &a_id,
                "--bootstrap",
                &c_addr,
                "--json",
            ])
            .await;
        assert!(ok, "deploy failed: {err}\n{out}");
        let d: Value = serde_json::from_str(&out).unwrap();
        let agent = d["agentId"].as_str().unwrap().to_string();
        let token = d["token"].as_str().unwrap().to_string();
        let api_url = d["apiUrl"].as_str().unwrap().to_string();
        assert!(api_url.starts_with(&a.api_url()), "{api_url}");

        // A message round-trips through A's agent API.
        let t = round_trip(&a.api_url(), &api_url, &token, "hello").await;
        assert_eq!(t["result"], "echo: hello", "{t}");
        assert!(t["durationMs"].is_u64());
        // A wrong token is refused.
        assert_eq!(send(&api_url, "nope", "x").await.status(), 401);

        // stop → messages refused; start → accepted.
        let (ok, out, err) = deployer.cli(&["agents", "stop", &agent]).await;
        assert!(ok && out.contains("stopped"), "{out}{err}");
        let r = send(&api_url, &token, "while stopped").await;
        assert_eq!(r.status(), 409);
        let (ok, out, _) = deployer.cli(&["agents", "start", &agent]).await;
        assert!(ok && out.contains("running"), "{out}");
        let (ok, out, _) = deployer
            .cli(&["agents", "send", &agent, "over", "control"])
            .await;
        assert!(ok, "{out}");
        assert_eq!(out.trim(), "echo: over control");
        let (ok, out, _) = deployer
            .cli(&["agents", "logs", &agent, "--tail", "5"])
            .await;
        assert!(ok && out.contains("task"), "{out}");

        // A restarts on the same data dir: the agent runs again.
        let (dir, config) = (a.dir, a.config);
        a.node.shutdown().await.unwrap();
        let a = restart(dir, config).await.unwrap();
        assert_eq!(a.node.restored(), 1);
        let api_url = format!("{}/api/agents/{agent}", a.api_url());
        let t = round_trip(&a.api_url(), &api_url, &token, "again").await;
        assert_eq!(t["result"], "echo: again", "{t}");
        let health = get_json(&format!("{}/api/health", a.api_url())).await;
        assert_eq!(health["agents"], 1);

        // Undeploy (A moved: its port changed on restart).
        let new_addr = a.node.listen_addrs()[0].clone();
        let (ok, out, err) = deployer
            .cli(&["agents", "undeploy", &agent, "--addr", &new_addr])
            .await;
        assert!(ok && out.contains("undeployed"), "{out}{err}");
        assert_eq!(send(&api_url, &token, "gone").await.status(), 404);
        let (_, out, _) = deployer.cli(&["agents", "list"]).await;
        assert!(!out.contains(&agent), "{out}");

        let metrics = reqwest::get(format!("{}/metrics", a.api_url()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("sparebox_agents{state=\"running\"} 0"),
            "{metrics}"
        );
        for n in [a, b, c] {
            n.node.shutdown().await.unwrap();
        }
        let _: PublicKey = dk.parse().unwrap();
    })
    .await;
}
