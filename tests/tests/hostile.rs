//! The hostile guest on a real node, deployed by a signed offer:
//! - egress: it tries the node's own loopback API and the cloud metadata
//!   address in every spelling it can write; each attempt fails with the
//!   host's refusal, and its next task works. A spec that grants an address
//!   instead of a name is refused at admission;
//! - stored results: a reply over the node's cap fails the task with a
//!   reason instead of filling the node's store.
#![allow(clippy::unwrap_used)] // test files: a failed unwrap is a failed test

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sparebox_network::light::{self, Light};
use sparebox_protocol::identity::Keypair;
use sparebox_protocol::rpc::{DeployRequest, DeployResponse};
use sparebox_protocol::spec::{AgentSpec, ResolvedSpec};
use sparebox_protocol::{Envelope, sha256};
use sparebox_tests::{ask_agent, direct_offer, repo_root, spawn_node_with, within};

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
    let agent_api = format!("{api}/api/agents/{agent}");
    ask_agent(api, &agent_api, token, content, Duration::from_secs(30)).await
}

/// A node that takes direct offers from `deployer`, and a light peer that
/// serves the components being deployed.
struct Rig {
    node: sparebox_tests::TestNode,
    deployer: Keypair,
    client: sparebox_network::Client,
    light: Arc<Light>,
}

impl Rig {
    async fn new() -> Rig {
        let deployer = Keypair::generate().unwrap();
        let dk = deployer.public().to_string();
        let node = spawn_node_with(|c| c.direct.allowed_deployers = vec![dk])
            .await
            .unwrap();
        let light = Arc::new(Light::default());
        let client = light::start(
            light.clone(),
            vec![node.node.listen_addrs()[0].clone()],
            false,
        )
        .await
        .unwrap();
        Rig {
            node,
            deployer,
            client,
            light,
        }
    }

    /// Offers the spec `doc` with its component.
    async fn deploy(&self, doc: String, component: Vec<u8>) -> DeployResponse {
        self.light
            .artifacts
            .lock()
            .unwrap()
            .insert(sha256(&component), Arc::new(component));
        let spec = ResolvedSpec {
            spec: toml::from_str::<AgentSpec>(&doc).unwrap(),
            sha256: sha256(doc.as_bytes()),
            document: doc,
        };
        let host = self.node.node.public_key();
        let offer = direct_offer(&self.deployer, host, &spec);
        let offer = Envelope::seal(&offer, &self.deployer).unwrap();
        self.client
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

    /// Deploys the hostile guest granting `hosts`; its id and token.
    async fn hostile(&self, hosts: &[String]) -> (String, String) {
        let (doc, component) = hostile_document(hosts);
        match self.deploy(doc, component).await {
            DeployResponse::Accepted {
                agent_id, token, ..
            } => (agent_id, token),
            other => panic!("hostile agent not deployed: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasi_agent_cannot_reach_the_nodes_api_or_metadata_in_any_spelling() {
    within(LIMIT, async {
        let rig = Rig::new().await;
        let n = &rig.node;
        let api = n.api_url();
        let api_port = n.node.api_addr().port();

        // The attack as first reported: the grant names the API by address.
        let (doc, component) = hostile_document(&[format!("127.1:{api_port}")]);
        match rig.deploy(doc, component).await {
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
        let (agent, token) = rig
            .hostile(&[format!("localhost:{api_port}"), "*.example.com".into()])
            .await;
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
        rig.node.node.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_over_the_result_cap_fails_the_task_and_the_agent_goes_on() {
    within(LIMIT, async {
        let rig = Rig::new().await;
        let api = rig.node.api_url();
        let (agent, token) = rig.hostile(&[]).await;
        let cap = sparebox_node::agents::tasks::MAX_RESULT_BYTES;
        let t = ask(&api, &agent, &token, &format!("big:{cap}")).await;
        assert_eq!(t["status"], "completed", "{}", t["error"]);
        assert_eq!(t["result"].as_str().unwrap().len(), cap);
        let t = ask(&api, &agent, &token, &format!("big:{}", cap + 1)).await;
        assert_eq!(t["status"], "failed");
        assert_eq!(t["error"], "result_too_large");
        assert!(
            t["result"]
                .as_str()
                .unwrap()
                .contains(&format!("{} bytes", cap + 1)),
            "{t}"
        );
        assert_eq!(ask(&api, &agent, &token, "ping").await["result"], "pong");
        rig.node.node.shutdown().await.unwrap();
    })
    .await;
}
