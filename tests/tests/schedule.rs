//! Scheduled activation: a tick missed while the node was down fires once
//! after restart, not once per missed period.
#![allow(clippy::unwrap_used)] // test files: a failed unwrap is a failed test

use std::sync::Arc;
use std::time::Duration;

use sparebox_network::light::{self, Light};
use sparebox_protocol::identity::Keypair;
use sparebox_protocol::rpc::{ControlRequest, ControlResponse, DeployRequest, DeployResponse};
use sparebox_protocol::spec::{AgentSpec, Schedule};
use sparebox_protocol::{ControlAction, ControlCommand, Envelope, Id, Message, now_secs, sha256};
use sparebox_tests::{direct_offer, repo_root, restart, spawn_node_with, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_missed_while_down_fires_once_after_restart() {
    within(Duration::from_secs(90), async {
        let deployer = Keypair::generate().unwrap();
        let dk = deployer.public().to_string();
        let node = spawn_node_with(|c| c.direct.allowed_deployers = vec![dk])
            .await
            .unwrap();
        let host = node.node.public_key();

        // The echo agent (built for `scheduled-agent`), every 4 hours.
        let path = repo_root().join("examples/specs/echo-wasi.toml");
        let mut spec = AgentSpec::load(&path).unwrap();
        spec.schedule = Some(Schedule {
            every: Duration::from_secs(4 * 3600),
        });
        let (spec, artifact) = spec.resolve(path.parent().unwrap()).unwrap();
        let component = std::fs::read(artifact.unwrap()).unwrap();
        let offer = direct_offer(&deployer, host, &spec);
        let peer = Arc::new(Light::default());
        peer.artifacts
            .lock()
            .unwrap()
            .insert(sha256(&component), Arc::new(component));
        let client = light::start(
            peer.clone(),
            vec![node.node.listen_addrs()[0].clone()],
            false,
        )
        .await
        .unwrap();
        let agent = match client
            .deploy(
                host,
                None,
                DeployRequest {
                    offer: Envelope::seal(&offer, &deployer).unwrap().to_bytes(),
                    spec: spec.document.clone(),
                },
            )
            .await
            .unwrap()
        {
            DeployResponse::Accepted { agent_id, .. } => agent_id,
            DeployResponse::Rejected(r) => panic!("{r}"),
        };
        client.shutdown().await;

        // Not due yet: no tick in the first seconds.
        tokio::time::sleep(Duration::from_millis(1500)).await;

        // Stop the node and pretend it was down for 10 hours since the
        // last tick (two and a half periods missed).
        let (dir, config) = (node.dir, node.config);
        node.node.shutdown().await.unwrap();
        {
            let db = sled::open(dir.path().join("node/db")).unwrap();
            let agents = db.open_tree("agents").unwrap();
            let mut rec: serde_json::Value =
                serde_json::from_slice(&agents.get(agent.as_bytes()).unwrap().unwrap()).unwrap();
            rec["last_tick_at"] = serde_json::json!(now_secs() - 10 * 3600);
            agents
                .insert(agent.as_bytes(), serde_json::to_vec(&rec).unwrap())
                .unwrap();
            db.flush().unwrap();
        }
        let node = restart(dir, config).await.unwrap();
        tokio::time::sleep(Duration::from_millis(3000)).await;

        // Ask for the logs: exactly one tick, the first the agent ever had.
        let client = light::start(peer, vec![node.node.listen_addrs()[0].clone()], false)
            .await
            .unwrap();
        let now = now_secs();
        let cmd = ControlCommand {
            version: ControlCommand::VERSION,
            command_id: Id::random().unwrap(),
            deployer: deployer.public(),
            host,
            offer_id: offer.offer_id,
            agent_id: agent.clone(),
            issued_at: now,
            expires_at: now + 60,
            nonce: Id::random().unwrap(),
            action: ControlAction::Logs { tail: 100 },
        };
        let lines = match client
            .control(
                host,
                None,
                ControlRequest {
                    command: Envelope::seal(&cmd, &deployer).unwrap().to_bytes(),
                },
            )
            .await
            .unwrap()
        {
            ControlResponse::Logs { lines } => lines,
            other => panic!("{other:?}"),
        };
        let ticks: Vec<&String> = lines.iter().filter(|l| l.contains("tick #")).collect();
        assert_eq!(ticks, ["[info] tick #1"], "{lines:?}");
        node.node.shutdown().await.unwrap();
    })
    .await;
}
