//! An OpenClaw agent deployed through a node: the real gateway (installed
//! by scripts/test; SPAREBOX_OPENCLAW_DIR), a fake OpenAI-compatible model
//! on 127.0.0.1, the CLI deploy, the agent API, control. About a minute.
#![allow(clippy::unwrap_used)] // test files: a failed unwrap is a failed test

use std::time::Duration;

use serde_json::Value;
use sparebox_protocol::RuntimeKind;
use sparebox_testkit::fake_llm;
use sparebox_tests::{Deployer, ask_agent, repo_root, spawn_node_with, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openclaw_agent_through_the_node() {
    within(Duration::from_secs(300), async {
        let install = std::env::var("SPAREBOX_OPENCLAW_DIR")
            .expect("SPAREBOX_OPENCLAW_DIR is not set (scripts/test installs OpenClaw)");
        let (llm, seen) = fake_llm("the fake model says hi").await;
        let deployer = Deployer::new().unwrap();
        let dk = deployer.key.public().to_string();
        let node = spawn_node_with(|c| {
            c.direct.allowed_deployers = vec![dk];
            c.capacity.runtimes = vec![RuntimeKind::Wasi, RuntimeKind::Openclaw];
            c.openclaw.install_dir = Some(install.into());
            c.llm.base_url = Some(llm);
            c.llm.models = vec!["gpt-4o-mini".into()];
        })
        .await
        .unwrap();
        let addr = node.node.listen_addrs()[0].clone();

        // The node offers openclaw, with its version.
        let (ok, out, err) = deployer
            .cli(&[
                "hosts",
                "--bootstrap",
                &addr,
                "--runtime",
                "openclaw",
                "--json",
            ])
            .await;
        assert!(ok, "{err}");
        let hosts: Value = serde_json::from_str(&out).unwrap();
        let runtimes = hosts[0]["runtimes"].to_string();
        assert!(runtimes.contains("openclaw-2026.9.6"), "{runtimes}");

        let spec = repo_root().join("examples/specs/openclaw.toml");
        let (ok, out, err) = deployer
            .cli(&[
                "deploy",
                spec.to_str().unwrap(),
                "--host",
                &node.node.public_key().to_string(),
                "--addr",
                &addr,
                "--json",
            ])
            .await;
        assert!(ok, "deploy failed: {err}\n{out}");
        let d: Value = serde_json::from_str(&out).unwrap();
        let (agent, token, api) = (
            d["agentId"].as_str().unwrap().to_string(),
            d["token"].as_str().unwrap().to_string(),
            d["apiUrl"].as_str().unwrap().to_string(),
        );

        // A message through the agent API comes back with the fake's reply.
        let task = ask_agent(
            &node.api_url(),
            &api,
            &token,
            "Hello?",
            Duration::from_secs(90),
        )
        .await;
        assert_eq!(task["result"], "the fake model says hi", "{task}");
        assert_eq!(task["tokensUsed"], 15);
        assert_eq!(seen.lock().unwrap().last().unwrap()["model"], "gpt-4o-mini");

        // The dashboard API shows the gateway's process tree.
        let agents: Value = reqwest::get(format!("{}/api/agents", node.api_url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rss = agents[0]["rssBytes"].as_u64().unwrap_or(0);
        assert!(rss > 100 << 20, "RSS {rss}");

        // Stop and start through control.
        let (ok, out, err) = deployer.cli(&["agents", "stop", &agent]).await;
        assert!(ok && out.contains("stopped"), "{out}{err}");
        let (ok, out, err) = deployer.cli(&["agents", "start", &agent]).await;
        assert!(ok && out.contains("running"), "{out}{err}");
        let (ok, out, err) = deployer.cli(&["agents", "send", &agent, "again"]).await;
        assert!(ok && out.trim() == "the fake model says hi", "{out}{err}");
        let (ok, out, err) = deployer.cli(&["agents", "undeploy", &agent]).await;
        assert!(ok && out.contains("undeployed"), "{out}{err}");
        node.node.shutdown().await.unwrap();
    })
    .await;
}
