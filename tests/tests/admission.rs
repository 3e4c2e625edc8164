//! What a host refuses, and why: offers, control commands and gossip, each
//! asserting its reason code. Real nodes on 127.0.0.1, driven by a light
//! peer in this process.
#![allow(clippy::unwrap_used)] // test files: a failed unwrap is a failed test

use std::sync::Arc;
use std::time::Duration;

use sparebox_network::Client;
use sparebox_network::adverts::AdvertIndex;
use sparebox_network::light::{self, Light};
use sparebox_protocol::identity::{Keypair, PublicKey};
use sparebox_protocol::rpc::{ControlRequest, ControlResponse, DeployRequest, DeployResponse};
use sparebox_protocol::spec::{AgentSpec, ResolvedSpec};
use sparebox_protocol::{
    CapacityAdvert, ControlAction, ControlCommand, DeploymentOffer, Envelope, Id, Message,
    PriceList, Resources, RuntimeKind, RuntimeOffer, now_secs, sha256,
};
use sparebox_tests::{TestNode, direct_offer, eventually, repo_root, spawn_node_with, within};

/// The echo spec (with `memory_mib` replaced), resolved, and its component.
fn echo_spec(memory_mib: u32) -> (ResolvedSpec, Vec<u8>) {
    let path = repo_root().join("examples/specs/echo-wasi.toml");
    let mut spec = AgentSpec::load(&path).unwrap();
    spec.resources.memory_mib = memory_mib;
    let (resolved, artifact) = spec.resolve(path.parent().unwrap()).unwrap();
    (resolved, std::fs::read(artifact.unwrap()).unwrap())
}

fn openclaw_spec() -> ResolvedSpec {
    let path = repo_root().join("examples/specs/openclaw.toml");
    AgentSpec::load(&path)
        .unwrap()
        .resolve(path.parent().unwrap())
        .unwrap()
        .0
}

fn offer(key: &Keypair, host: PublicKey, spec: &ResolvedSpec) -> DeploymentOffer {
    direct_offer(key, host, spec)
}

struct Rig {
    host: TestNode,
    deployer: Keypair,
    client: Client,
    light: Arc<Light>,
}

impl Rig {
    async fn new() -> Rig {
        let deployer = Keypair::generate().unwrap();
        let dk = deployer.public().to_string();
        let host = spawn_node_with(|c| {
            c.direct.allowed_deployers = vec![dk];
            c.capacity.max_memory_mib = Some(256);
        })
        .await
        .unwrap();
        let light = Arc::new(Light::default());
        let client = light::start(
            light.clone(),
            vec![host.node.listen_addrs()[0].clone()],
            false,
        )
        .await
        .unwrap();
        Rig {
            host,
            deployer,
            client,
            light,
        }
    }

    fn me(&self) -> PublicKey {
        self.host.node.public_key()
    }

    fn serve(&self, component: Vec<u8>) {
        self.light
            .artifacts
            .lock()
            .unwrap()
            .insert(sha256(&component), Arc::new(component));
    }

    async fn send(&self, offer_bytes: Vec<u8>, spec: &ResolvedSpec) -> DeployResponse {
        self.client
            .deploy(
                self.me(),
                None,
                DeployRequest {
                    offer: offer_bytes,
                    spec: spec.document.clone(),
                },
            )
            .await
            .unwrap()
    }

    async fn control(&self, command: Vec<u8>) -> ControlResponse {
        self.client
            .control(self.me(), None, ControlRequest { command })
            .await
            .unwrap()
    }
}

fn code(r: DeployResponse) -> String {
    match r {
        DeployResponse::Rejected(r) => r.code,
        DeployResponse::Accepted { agent_id, .. } => format!("accepted {agent_id}"),
    }
}

fn command(
    key: &Keypair,
    host: PublicKey,
    offer_id: Id,
    agent: &str,
    action: ControlAction,
) -> Vec<u8> {
    let now = now_secs();
    let cmd = ControlCommand {
        version: ControlCommand::VERSION,
        command_id: Id::random().unwrap(),
        deployer: key.public(),
        host,
        offer_id,
        agent_id: agent.into(),
        issued_at: now,
        expires_at: now + 60,
        nonce: Id::random().unwrap(),
        action,
    };
    Envelope::seal(&cmd, key).unwrap().to_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejection_matrix() {
    within(Duration::from_secs(90), async {
        let rig = Rig::new().await;
        let (spec, component) = echo_spec(64);
        rig.serve(component);
        let me = rig.me();
        let key = &rig.deployer;

        // Tampered: one payload byte flipped after signing.
        let mut tampered = Envelope::seal(&offer(key, me, &spec), key).unwrap();
        let i = tampered.payload.len() / 2;
        tampered.payload[i] ^= 0x01;
        assert_eq!(
            code(rig.send(tampered.to_bytes(), &spec).await),
            "bad_signature"
        );

        // Expired.
        let mut o = offer(key, me, &spec);
        o.issued_at -= 1000;
        o.expires_at = now_secs() - 10;
        assert_eq!(
            code(
                rig.send(Envelope::seal(&o, key).unwrap().to_bytes(), &spec)
                    .await
            ),
            "expired"
        );

        // Wrong audience: addressed to another host.
        let other = Keypair::generate().unwrap().public();
        assert_eq!(
            code(
                rig.send(
                    Envelope::seal(&offer(key, other, &spec), key)
                        .unwrap()
                        .to_bytes(),
                    &spec
                )
                .await
            ),
            "wrong_audience"
        );

        // A deployer the host did not allow-list.
        let stranger = Keypair::generate().unwrap();
        assert_eq!(
            code(
                rig.send(
                    Envelope::seal(&offer(&stranger, me, &spec), &stranger)
                        .unwrap()
                        .to_bytes(),
                    &spec
                )
                .await
            ),
            "deployer_not_allowed"
        );

        // Over capacity: 512 MiB asked, 256 MiB offered.
        let (big, _) = echo_spec(512);
        assert_eq!(
            code(
                rig.send(
                    Envelope::seal(&offer(key, me, &big), key)
                        .unwrap()
                        .to_bytes(),
                    &big
                )
                .await
            ),
            "over_capacity"
        );

        // A runtime the host does not offer.
        let oc = openclaw_spec();
        assert_eq!(
            code(
                rig.send(
                    Envelope::seal(&offer(key, me, &oc), key)
                        .unwrap()
                        .to_bytes(),
                    &oc
                )
                .await
            ),
            "runtime_not_offered"
        );

        // A spec that is not the one the offer signed.
        let (other_spec, _) = echo_spec(32);
        assert_eq!(
            code(
                rig.send(
                    Envelope::seal(&offer(key, me, &spec), key)
                        .unwrap()
                        .to_bytes(),
                    &other_spec
                )
                .await
            ),
            "spec_mismatch"
        );

        // Accepted once; the same bytes again are a replay.
        let good = offer(key, me, &spec);
        let bytes = Envelope::seal(&good, key).unwrap().to_bytes();
        let accepted = code(rig.send(bytes.clone(), &spec).await);
        assert!(accepted.starts_with("accepted echo-"), "{accepted}");
        let agent = accepted.trim_start_matches("accepted ").to_string();
        assert_eq!(code(rig.send(bytes, &spec).await), "replayed_nonce");

        // Control: unsigned (a zeroed signature), and signed by another deployer.
        let mut unsigned = Envelope::from_bytes(
            &command(key, me, good.offer_id, &agent, ControlAction::Stop),
            usize::MAX,
        )
        .unwrap();
        unsigned.signature = sparebox_protocol::SignatureBytes([0u8; 64]);
        match rig.control(unsigned.to_bytes()).await {
            ControlResponse::Rejected(r) => assert_eq!(r.code, "bad_signature"),
            other => panic!("{other:?}"),
        }
        match rig
            .control(command(
                &stranger,
                me,
                good.offer_id,
                &agent,
                ControlAction::Stop,
            ))
            .await
        {
            ControlResponse::Rejected(r) => assert_eq!(r.code, "not_your_agent"),
            other => panic!("{other:?}"),
        }
        // A replayed command is refused too.
        let status = command(key, me, good.offer_id, &agent, ControlAction::Status);
        assert!(matches!(
            rig.control(status.clone()).await,
            ControlResponse::Agent(_)
        ));
        match rig.control(status).await {
            ControlResponse::Rejected(r) => assert_eq!(r.code, "replayed_nonce"),
            other => panic!("{other:?}"),
        }
        // Still running: the rejected commands did nothing.
        match rig
            .control(command(
                key,
                me,
                good.offer_id,
                &agent,
                ControlAction::Status,
            ))
            .await
        {
            ControlResponse::Agent(v) => assert_eq!(v.state, "running"),
            other => panic!("{other:?}"),
        }
        let metrics = reqwest::get(format!("{}/metrics", rig.host.api_url()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics
                .contains("sparebox_offers_total{outcome=\"rejected\",reason=\"over_capacity\"} 1"),
            "{metrics}"
        );
        rig.host.node.shutdown().await.unwrap();
    })
    .await;
}

fn advert_bytes(key: &Keypair, seq: u64, timestamp: u64) -> Vec<u8> {
    let a = CapacityAdvert {
        version: CapacityAdvert::VERSION,
        node: key.public(),
        seq,
        timestamp,
        ttl_secs: 120,
        addresses: vec![],
        free: Resources {
            cpu_millis: 1000,
            memory_mib: 1024,
            disk_mib: 1024,
        },
        free_agent_slots: 1,
        runtimes: vec![RuntimeOffer {
            kind: RuntimeKind::Wasi,
            version: "x".into(),
        }],
        prices: PriceList::default(),
        labels: Default::default(),
        region: None,
        agent_version: "attacker".into(),
    };
    Envelope::seal(&a, key).unwrap().to_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_abuse_is_not_forwarded_and_costs_the_sender() {
    within(Duration::from_secs(90), async {
        // B (the victim) and C (behind B); the attacker connects to B only.
        let b = spawn_node_with(|_| {}).await.unwrap();
        let b_addr = b.node.listen_addrs()[0].clone();
        let c = spawn_node_with(|c| c.network.bootstrap = vec![b_addr.clone()])
            .await
            .unwrap();
        let attacker = Keypair::generate().unwrap();
        let attacker_id = attacker.public().to_string();
        let mine = Arc::new(Light {
            adverts: Some(Arc::new(AdvertIndex::new(Some(attacker.public()), 60))),
            ..Light::default()
        });
        let client = light::start_as(&attacker, mine, vec![b_addr], false)
            .await
            .unwrap();
        // Gossip needs a mesh first: wait until a publish reaches someone.
        let now = now_secs();
        let first = advert_bytes(&attacker, 10, now);
        eventually(Duration::from_secs(10), "a gossip peer", || {
            let client = client.clone();
            let first = first.clone();
            async move { client.publish_advert(first).await.ok().filter(|sent| *sent) }
        })
        .await;
        // The valid advert is accepted and forwarded to C.
        eventually(Duration::from_secs(10), "valid advert at C", || {
            let url = format!("{}/api/adverts", c.api_url());
            let id = attacker_id.clone();
            async move {
                let list: serde_json::Value = reqwest::get(url).await.ok()?.json().await.ok()?;
                list.as_array()?
                    .iter()
                    .any(|h| h["peerId"] == id.as_str())
                    .then_some(())
            }
        })
        .await;

        // Oversized (past the advert's size cap), badly signed, stale, and a seq replay.
        let mut oversized = advert_bytes(&attacker, 11, now);
        oversized.extend(std::iter::repeat_n(0u8, 10 * 1024));
        let mut forged = advert_bytes(&attacker, 12, now);
        let last = forged.len() - 1;
        forged[last] ^= 0xff;
        let stale = advert_bytes(&attacker, 13, now - 3600);
        let replay = advert_bytes(&attacker, 10, now + 1); // same seq, new bytes
        for bad in [oversized, forged, stale, replay] {
            assert!(client.publish_advert(bad).await.unwrap());
        }

        // B's view of the attacker still has seq 10; so does C's.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        for node in [&b, &c] {
            let list: serde_json::Value = reqwest::get(format!("{}/api/adverts", node.api_url()))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let entry = list
                .as_array()
                .unwrap()
                .iter()
                .find(|h| h["peerId"] == attacker_id.as_str())
                .unwrap();
            assert_eq!(entry["seq"], 10, "{entry}");
        }
        // The attacker's gossip score at B dropped below zero.
        let peers: serde_json::Value = reqwest::get(format!("{}/api/peers", b.api_url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let score = peers
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["peerId"] == attacker_id.as_str())
            .and_then(|p| p["gossipScore"].as_f64())
            .unwrap();
        assert!(score < 0.0, "attacker's score is {score}");
        b.node.shutdown().await.unwrap();
        c.node.shutdown().await.unwrap();
    })
    .await;
}

/// The owner's dashboard actions on a real node: the token is required,
/// pause refuses offers (and the offer log says why), prices are validated
/// and feed admission, and stop works on a running agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_actions_need_the_token_and_take_effect() {
    within(Duration::from_secs(60), async {
        let rig = Rig::new().await;
        let (spec, component) = echo_spec(64);
        rig.serve(component);
        let first = offer(&rig.deployer, rig.me(), &spec);
        let bytes = Envelope::seal(&first, &rig.deployer).unwrap().to_bytes();
        let agent = code(rig.send(bytes, &spec).await);
        let agent = agent.strip_prefix("accepted ").expect(&agent).to_string();

        let api = rig.host.api_url();
        let token = rig.host.node.owner_token().to_string();
        let http = reqwest::Client::new();
        let post = |path: &str, body: serde_json::Value, auth: Option<&str>| {
            let mut r = http.post(format!("{api}{path}")).json(&body);
            if let Some(t) = auth {
                r = r.bearer_auth(t);
            }
            r.send()
        };
        // No token, or a wrong one: 401, nothing changes.
        for auth in [None, Some("not-the-token")] {
            let r = post(
                "/api/owner/offers",
                serde_json::json!({"accepting": false}),
                auth,
            )
            .await
            .unwrap();
            assert_eq!(r.status().as_u16(), 401);
        }
        assert!(rig.host.node.agents().owner.accepting());

        // Paused: offers are refused with `offers_paused`, and logged.
        let r = post(
            "/api/owner/offers",
            serde_json::json!({"accepting": false}),
            Some(&token),
        )
        .await
        .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let second = offer(&rig.deployer, rig.me(), &spec);
        let bytes = Envelope::seal(&second, &rig.deployer).unwrap().to_bytes();
        assert_eq!(code(rig.send(bytes.clone(), &spec).await), "offers_paused");
        let log: serde_json::Value = http
            .get(format!("{api}/api/offers"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(log["offers"][0]["outcome"], "rejected", "{log}");
        assert_eq!(log["offers"][0]["code"], "offers_paused");
        assert_eq!(log["offers"][0]["offerId"], second.offer_id.to_string());
        assert_eq!(log["offers"][1]["outcome"], "accepted");
        assert_eq!(log["offers"][1]["agentId"], agent.as_str());
        post(
            "/api/owner/offers",
            serde_json::json!({"accepting": true}),
            Some(&token),
        )
        .await
        .unwrap();

        // Prices: a bad value names its field; a good one feeds admission.
        let r = http
            .put(format!("{api}/api/owner/prices"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"classes": [{"class": "wasi", "centsPerHour": "ten"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
        let e: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            e["error"]["fields"][0]["field"], "classes[0].centsPerHour",
            "{e}"
        );
        let r = http
            .put(format!("{api}/api/owner/prices"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"classes": [{"class": "wasi", "centsPerHour": 50}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let owner: serde_json::Value = r.json().await.unwrap();
        assert_eq!(owner["prices"]["classes"][0]["centsPerHour"], 50, "{owner}");
        let third = offer(&rig.deployer, rig.me(), &spec);
        let bytes = Envelope::seal(&third, &rig.deployer).unwrap().to_bytes();
        assert_eq!(code(rig.send(bytes, &spec).await), "price_too_low");

        // Stop, and the dashboard's logs, history and earnings answer.
        let r = post(
            &format!("/api/owner/agents/{agent}/stop"),
            serde_json::json!({}),
            Some(&token),
        )
        .await
        .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let view: serde_json::Value = r.json().await.unwrap();
        assert_eq!(view["state"], "stopped", "{view}");
        let r = post(
            "/api/owner/agents/nope/stop",
            serde_json::json!({}),
            Some(&token),
        )
        .await
        .unwrap();
        assert_eq!(r.status().as_u16(), 404);
        for path in [
            format!("/api/agents/{agent}/logs?tail=10"),
            "/api/history".to_string(),
            "/api/earnings".to_string(),
        ] {
            let r = http.get(format!("{api}{path}")).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200, "{path}");
        }
    })
    .await;
}
