//! The egress gate on a real node: the hostile guest, deployed by a signed
//! offer, tries the node's own loopback API and the cloud metadata address
//! in every spelling it can write. Each attempt fails with the host's
//! refusal, and the agent's next task works. A spec that grants an address
//! instead of a name is refused at admission.
#![allow(clippy::unwrap_used)] // test files: a failed unwrap is a failed test

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sparebox_network::light::{self, Light};
use sparebox_protocol::identity::Keypair;
use sparebox_protocol::rpc::{DeployRequest, DeployResponse};
use sparebox_protocol::spec::{AgentSpec, ResolvedSpec};
use sparebox_protocol::{Envelope, sha256};
use sparebox_tests::{direct_offer, repo_root, spawn_node_with, wait_task, within};

const LIMIT: Duration = Duration::from_secs(120);

/// A spec document for the hostile guest granting `hosts`, built by hand so
/// a spec the CLI would refuse can still be offered.
fn hostile_document(hosts: &[String]) -> (String, Vec<u8>) {
    let component = std::fs::read(repo_root().join("guests/dist/hostile.wasm")).unwrap();
    let list = hosts
        .iter()
        .map(|h| format!("\"{h}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let doc = format!(
        "name = \"hostile\"\nruntime = \"wasi\"\n\n[artifact]\nsha256 = \"{}\"\nsize = {}\n\n[grants]\noutbound_hosts = [{list}]\n",
        sha256(&component).to_hex(),
        component.len()
    );
    (doc, component)
}

async fn ask(api: &str, agent: &str, token: &str, content: &str) -> Value {
    let r: Value = reqwest::Client::new()
        .post(format!("{api}/api/agents/{agent}/messages"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "content": content }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let task = r["taskId"].as_str().unwrap().to_string();
    wait_task(api, &task, token, Duration::from_secs(30)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasi_agent_cannot_reach_the_nodes_api_or_metadata_in_any_spelling() {
    within(LIMIT, async {
        let deployer = Keypair::generate().unwrap();
        let dk = deployer.public().to_string();
        let n = spawn_node_with(|c| c.direct.allowed_deployers = vec![dk])
            .await
            .unwrap();
        let api = n.api_url();
        let api_port = n.node.api_addr().port();
        let light = Arc::new(Light::default());
        let client = light::start(light.clone(), vec![n.node.listen_addrs()[0].clone()], false)
            .await
            .unwrap();
        let deploy = |doc: String, component: Vec<u8>| {
            let light = light.clone();
            let client = client.clone();
            let deployer = &deployer;
            let host = n.node.public_key();
            async move {
                light
                    .artifacts
                    .lock()
                    .unwrap()
                    .insert(sha256(&component), Arc::new(component));
                let spec = ResolvedSpec {
                    spec: toml::from_str::<AgentSpec>(&doc).unwrap(),
                    sha256: sha256(doc.as_bytes()),
                    document: doc,
                };
                let offer = Envelope::seal(&direct_offer(deployer, host, &spec), deployer).unwrap();
                client
                    .deploy(
                        host,
                        None,
                        DeployRequest {
                            offer: offer.to_bytes(),
                            spec: spec.document,
                        },
                    )
                    .await
                    .unwrap()
            }
        };

        // The attack as first reported: the grant names the API by address.
        let (doc, component) = hostile_document(&[format!("127.1:{api_port}")]);
        match deploy(doc, component).await {
            DeployResponse::Rejected(r) => {
                assert_eq!(r.code, "spec_mismatch");
                assert!(
                    r.message.contains("IP address (127.0.0.1)"),
                    "{}",
                    r.message
                );
            }
            other => panic!("a grant of an address must be refused, got {other:?}"),
        }

        // The broadest grant a spec may hold: names only.
        let (doc, component) =
            hostile_document(&[format!("localhost:{api_port}"), "*.example.com".into()]);
        let (agent, token) = match deploy(doc, component).await {
            DeployResponse::Accepted {
                agent_id, token, ..
            } => (agent_id, token),
            other => panic!("hostile agent not deployed: {other:?}"),
        };
        let mut tried = 0;
        for host in [
            "127.0.0.1",
            "127.1",
            "2130706433",
            "0x7f.1",
            "0177.0.0.1",
            "0x7f000001",
            "localhost",
            "LOCALHOST",
            "127.0.0.1.",
            "[::1]",
            "[::ffff:127.0.0.1]",
            "[::ffff:7f00:1]",
            "[0:0:0:0:0:0:0:1]",
            "[64:ff9b::7f00:1]",
        ] {
            let t = ask(
                &api,
                &agent,
                &token,
                &format!("http:http://{host}:{api_port}/api/health"),
            )
            .await;
            let result = t["result"].as_str().unwrap_or_default();
            assert_eq!(t["status"], "failed", "{host}: {t}");
            assert!(
                result.contains("DestinationIpProhibited") || result.contains("HttpRequestDenied"),
                "{host}: {result}"
            );
            assert!(!result.contains("HTTP 200"), "{host}: {result}");
            let next = ask(&api, &agent, &token, "ping").await;
            assert_eq!(next["result"], "pong", "the agent works after {host}");
            tried += 1;
        }
        for metadata in ["2852039166", "0xa9fea9fe", "169.254.169.254"] {
            let t = ask(
                &api,
                &agent,
                &token,
                &format!("http:http://{metadata}/latest/meta-data/"),
            )
            .await;
            let result = t["result"].as_str().unwrap_or_default();
            assert!(
                result.contains("DestinationIpProhibited") || result.contains("HttpRequestDenied"),
                "{metadata}: {result}"
            );
            tried += 1;
        }
        assert_eq!(tried, 17);
        n.node.shutdown().await.unwrap();
    })
    .await;
}
