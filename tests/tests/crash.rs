//! A node killed with SIGKILL in the middle of a deploy restarts with
//! consistent state: no half-deployed agent, the offer's nonce still spent,
//! and new deploys working.
#![allow(clippy::unwrap_used)] // test files: a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sparebox_network::adverts::Verdict;
use sparebox_network::light::{self, Light};
use sparebox_network::{self as network, Inbound, NetConfig};
use sparebox_protocol::identity::{Keypair, PublicKey};
use sparebox_protocol::rpc::*;
use sparebox_protocol::spec::AgentSpec;
use sparebox_protocol::{Envelope, sha256};
use sparebox_tests::{direct_offer, eventually, repo_root, sparebox_bin, within};

/// A deployer that accepts the host's artifact requests and never answers.
struct Staller;

#[async_trait::async_trait]
impl Inbound for Staller {
    fn validate_advert(&self, _: Option<PublicKey>, _: &[u8]) -> Verdict {
        Verdict::Ignore("test")
    }
    fn synced(&self, _: PublicKey, _: SyncResponse) {}
    fn sync(&self) -> SyncResponse {
        SyncResponse::default()
    }
    async fn deploy(&self, _: PublicKey, _: DeployRequest) -> DeployResponse {
        DeployResponse::Rejected(Rejection::new("no", "no"))
    }
    async fn control(&self, _: PublicKey, _: ControlRequest) -> ControlResponse {
        ControlResponse::Rejected(Rejection::new("no", "no"))
    }
    async fn artifact(&self, _: PublicKey, _: ArtifactRequest) -> ArtifactResponse {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        ArtifactResponse::NotFound
    }
}

struct Proc {
    child: Child,
    api: String,
    listen: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node(dir: &std::path::Path) -> Proc {
    let mut child = std::process::Command::new(sparebox_bin())
        .args(["node", "--config"])
        .arg(dir.join("node.toml"))
        .arg("--data-dir")
        .arg(dir.join("node"))
        .args([
            "--api-addr",
            "127.0.0.1:0",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-mdns",
        ])
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut api, mut listen) = (String::new(), String::new());
    while api.is_empty() || listen.is_empty() {
        let line = lines.next().expect("node banner").unwrap();
        if let Some(v) = line.trim().strip_prefix("api:") {
            api = v.trim().to_string();
        }
        if let Some(v) = line.trim().strip_prefix("listen:") {
            listen = v.trim().to_string();
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Proc { child, api, listen }
}

fn signed_offer(key: &Keypair, host: PublicKey) -> (Vec<u8>, String, Vec<u8>) {
    let path = repo_root().join("examples/specs/echo-wasi.toml");
    let (spec, artifact) = AgentSpec::load(&path)
        .unwrap()
        .resolve(path.parent().unwrap())
        .unwrap();
    let offer = direct_offer(key, host, &spec);
    (
        Envelope::seal(&offer, key).unwrap().to_bytes(),
        spec.document,
        std::fs::read(artifact.unwrap()).unwrap(),
    )
}

async fn agents(api: &str) -> serde_json::Value {
    reqwest::get(format!("{api}/api/agents"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_deploy_leaves_no_half_deployed_agent() {
    within(Duration::from_secs(90), async {
        let dir = tempfile::tempdir().unwrap();
        let deployer = Keypair::generate().unwrap();
        std::fs::write(
            dir.path().join("node.toml"),
            format!(
                "[direct]\nallowed_deployers = [\"{}\"]\n",
                deployer.public()
            ),
        )
        .unwrap();
        let mut node = start_node(dir.path());
        let host: PublicKey = node.listen.rsplit('/').next().unwrap().parse().unwrap();

        // The deploy hangs in the artifact fetch.
        let (offer, spec, component) = signed_offer(&deployer, host);
        let staller_key = Keypair::generate().unwrap();
        let (staller, _task) = network::start(
            &staller_key,
            NetConfig {
                bootstrap: vec![node.listen.clone()],
                ..NetConfig::default()
            },
            Arc::new(Staller),
        )
        .await
        .unwrap();
        let req = DeployRequest {
            offer: offer.clone(),
            spec: spec.clone(),
        };
        let s = staller.clone();
        let hung = tokio::spawn(async move { s.deploy(host, None, req).await });
        eventually(Duration::from_secs(20), "deploy in progress", || {
            let url = format!("{}/metrics", node.api);
            async move {
                let m = reqwest::get(url).await.ok()?.text().await.ok()?;
                m.contains("sparebox_agents{state=\"deploying\"} 1")
                    .then_some(())
            }
        })
        .await;
        node.child.kill().unwrap(); // SIGKILL
        node.child.wait().unwrap();
        hung.abort();
        staller.shutdown().await;

        // Restart: nothing half-deployed, the nonce is still spent.
        let node = start_node(dir.path());
        assert_eq!(agents(&node.api).await, serde_json::json!([]));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("node/wasm/agents"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        let light_peer = Arc::new(Light::default());
        light_peer
            .artifacts
            .lock()
            .unwrap()
            .insert(sha256(&component), Arc::new(component));
        let client = light::start(light_peer, vec![node.listen.clone()], false)
            .await
            .unwrap();
        match client
            .deploy(
                host,
                None,
                DeployRequest {
                    offer,
                    spec: spec.clone(),
                },
            )
            .await
            .unwrap()
        {
            DeployResponse::Rejected(r) => assert_eq!(r.code, "replayed_nonce"),
            other => panic!("{other:?}"),
        }
        // A fresh offer deploys and runs.
        let (fresh, spec, _) = signed_offer(&deployer, host);
        match client
            .deploy(host, None, DeployRequest { offer: fresh, spec })
            .await
            .unwrap()
        {
            DeployResponse::Accepted { agent_id, .. } => {
                let list = agents(&node.api).await;
                assert_eq!(list[0]["agentId"], agent_id.as_str());
                assert_eq!(list[0]["state"], "running");
            }
            other => panic!("{other:?}"),
        }
    })
    .await;
}
