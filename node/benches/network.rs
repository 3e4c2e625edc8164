//! Network benchmarks, each against a baseline measured in the same run.
//!
//! 1. Advert propagation: 50 peers on loopback running Sparebox's network
//!    stack (strict gossipsub, explicit validation: envelope signature,
//!    author, freshness, seq; the advert index) against 50 bare gossipsub
//!    swarms with the same topology and no application validation. Reports
//!    the time for one advert to reach all 49 other peers (p50/p99).
//! 2. Offer to running: a signed offer sent by a light peer over loopback
//!    until the host replies with its signed agreement (the agent is
//!    running), against the same deploy done in-process through
//!    `WasmRuntime::deploy`. Reports p50/p99.
//!
//! Run: `cargo bench -p sparebox-node --bench network` (after
//! `scripts/build-guests`). The idle-node figures come from
//! `scripts/bench-idle`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, gossipsub, noise, tcp, yamux};
use sparebox_network::adverts::{AdvertIndex, Verdict};
use sparebox_network::{self as network, Client, Inbound, NetConfig};
use sparebox_protocol::identity::{Keypair, PublicKey};
use sparebox_protocol::rpc::*;
use sparebox_protocol::{
    CapacityAdvert, Envelope, Message, PriceList, Resources, RuntimeKind, RuntimeOffer, now_secs,
};

const PEERS: usize = 50;
const ROUNDS: usize = 100;
/// Seconds for meshes, identify and kad bootstrap to settle before measuring.
const SETTLE: u64 = 12;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(name: &str, mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    let (p50, p99) = (percentile(&v, 0.5), percentile(&v, 0.99));
    println!(
        "{name}: n={} p50={:.2} ms p99={:.2} ms",
        v.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
    (p50, p99)
}

/// Neighbours for peer i: i-1 and one pseudo-random earlier peer.
fn topology() -> Vec<Vec<usize>> {
    let mut seed = 0x9e3779b97f4a7c15u64;
    (0..PEERS)
        .map(|i| {
            if i == 0 {
                return vec![];
            }
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let j = (seed as usize) % i;
            if j == i - 1 {
                vec![i - 1]
            } else {
                vec![i - 1, j]
            }
        })
        .collect()
}

type Arrivals = Arc<Mutex<HashMap<u64, Vec<Instant>>>>;

/// A peer of the Sparebox stack that records when each advert seq arrives.
struct Recorder {
    index: AdvertIndex,
    arrivals: Arrivals,
}

#[async_trait::async_trait]
impl Inbound for Recorder {
    fn validate_advert(&self, author: Option<PublicKey>, bytes: &[u8]) -> Verdict {
        let v = self.index.validate_gossip(author, bytes, now_secs());
        if v == Verdict::Accept
            && let Some(a) = author.and_then(|k| self.index.get(&k, now_secs()))
        {
            self.arrivals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(a.seq)
                .or_default()
                .push(Instant::now());
        }
        v
    }
    fn synced(&self, _: PublicKey, _: SyncResponse) {}
    fn sync(&self) -> SyncResponse {
        SyncResponse::default()
    }
    async fn deploy(&self, _: PublicKey, _: DeployRequest) -> DeployResponse {
        DeployResponse::Rejected(Rejection::new("bench", "bench"))
    }
    async fn control(&self, _: PublicKey, _: ControlRequest) -> ControlResponse {
        ControlResponse::Rejected(Rejection::new("bench", "bench"))
    }
    async fn artifact(&self, _: PublicKey, _: ArtifactRequest) -> ArtifactResponse {
        ArtifactResponse::NotFound
    }
}

fn advert(key: &Keypair, seq: u64) -> Vec<u8> {
    let a = CapacityAdvert {
        version: CapacityAdvert::VERSION,
        node: key.public(),
        seq,
        timestamp: now_secs(),
        ttl_secs: 120,
        addresses: vec!["/ip4/127.0.0.1/tcp/4001".into()],
        free: Resources {
            cpu_millis: 1000,
            memory_mib: 4096,
            disk_mib: 10240,
        },
        free_agent_slots: 10,
        runtimes: vec![RuntimeOffer {
            kind: RuntimeKind::Wasi,
            version: "wasmtime-48".into(),
        }],
        prices: PriceList::default(),
        labels: Default::default(),
        region: None,
        agent_version: "bench".into(),
    };
    Envelope::seal(&a, key)
        .map(|e| e.to_bytes())
        .unwrap_or_default()
}

async fn wait_all(arrivals: &Arrivals, seq: u64, want: usize, limit: Duration) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    loop {
        {
            let a = arrivals.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(v) = a.get(&seq)
                && v.len() >= want
            {
                return v.iter().max().copied();
            }
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

async fn sparebox_propagation() -> Vec<Duration> {
    let arrivals: Arrivals = Arc::default();
    let keys: Vec<Keypair> = (0..PEERS)
        .map(|i| Keypair::from_seed([i as u8 + 1; 32]))
        .collect();
    let mut clients: Vec<Client> = Vec::new();
    let mut addrs: Vec<String> = Vec::new();
    for (i, neighbours) in topology().into_iter().enumerate() {
        let cfg = NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
            bootstrap: neighbours.iter().map(|&j| addrs[j].clone()).collect(),
            ..NetConfig::default()
        };
        let rec = Arc::new(Recorder {
            index: AdvertIndex::new(Some(keys[i].public()), 60),
            arrivals: arrivals.clone(),
        });
        let (client, _t) = network::start(&keys[i], cfg, rec)
            .await
            .expect("start peer");
        let info = client.info().await.expect("info");
        addrs.push(format!("{}/p2p/{}", info.listen_addrs[0], info.peer_id));
        clients.push(client);
    }
    // Let meshes form (a few heartbeats).
    tokio::time::sleep(Duration::from_secs(SETTLE)).await;
    let mut times = Vec::new();
    for round in 0..ROUNDS {
        let p = (round * 7) % PEERS;
        let seq = 1000 + round as u64;
        let bytes = advert(&keys[p], seq);
        let start = Instant::now();
        let _ = clients[p].publish_advert(bytes).await;
        match wait_all(&arrivals, seq, PEERS - 1, Duration::from_secs(10)).await {
            Some(t) => times.push(t.duration_since(start)),
            None => println!("sparebox round {round}: not every peer got the advert in 10 s"),
        }
    }
    for c in clients {
        c.shutdown().await;
    }
    times
}

async fn bare_propagation() -> Vec<Duration> {
    let arrivals: Arrivals = Arc::default();
    let mut senders = Vec::new();
    let mut addrs: Vec<Multiaddr> = Vec::new();
    for neighbours in topology() {
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .expect("tcp")
            .with_behaviour(|key| {
                let cfg = gossipsub::ConfigBuilder::default()
                    .heartbeat_initial_delay(Duration::from_millis(100))
                    .build()
                    .expect("config");
                let b: gossipsub::Behaviour = gossipsub::Behaviour::new(
                    gossipsub::MessageAuthenticity::Signed(key.clone()),
                    cfg,
                )
                .expect("gossipsub");
                b
            })
            .expect("behaviour")
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
            .build();
        let topic = gossipsub::IdentTopic::new("bench");
        swarm.behaviour_mut().subscribe(&topic).expect("subscribe");
        swarm
            .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
            .expect("listen");
        let addr = loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                break address;
            }
        };
        for j in neighbours {
            let _ = swarm.dial(addrs[j].clone());
        }
        addrs.push(addr);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
        senders.push(tx);
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    ev = swarm.select_next_some() => {
                        if let SwarmEvent::Behaviour(gossipsub::Event::Message { message, .. }) = ev {
                            let seq = u64::from_be_bytes(message.data[..8].try_into().unwrap_or([0; 8]));
                            arrivals.lock().unwrap_or_else(|p| p.into_inner()).entry(seq).or_default().push(Instant::now());
                        }
                    }
                    data = rx.recv() => match data {
                        Some(d) => { let _ = swarm.behaviour_mut().publish(topic.clone(), d); }
                        None => break,
                    },
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(SETTLE)).await;
    let mut times = Vec::new();
    let pad = vec![0u8; 600]; // about an advert's size
    for round in 0..ROUNDS {
        let p = (round * 7) % PEERS;
        let seq = 1000 + round as u64;
        let mut data = seq.to_be_bytes().to_vec();
        data.extend_from_slice(&pad);
        let start = Instant::now();
        let _ = senders[p].send(data).await;
        match wait_all(&arrivals, seq, PEERS - 1, Duration::from_secs(10)).await {
            Some(t) => times.push(t.duration_since(start)),
            None => println!("bare round {round}: not every peer got the message in 10 s"),
        }
    }
    times
}

async fn offer_to_running() -> (Vec<Duration>, Vec<Duration>) {
    use sparebox_network::light::{self, Light};
    use sparebox_node::config::NodeConfig;
    use sparebox_node::daemon::Node;
    use sparebox_protocol::spec::AgentSpec;
    use sparebox_protocol::{DeploymentOffer, Id, Payment, PriceTerms, sha256};
    use sparebox_sandbox::Runtime;

    const N: usize = 100;
    let dir = tempfile::tempdir().expect("tmp");
    let deployer = Keypair::from_seed([200; 32]);
    let mut cfg = NodeConfig {
        data_dir: Some(dir.path().join("node")),
        ..NodeConfig::default()
    };
    cfg.api.addr = "127.0.0.1:0".parse().expect("addr");
    cfg.network.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    cfg.network.mdns = false;
    cfg.capacity.max_agents = 10_000;
    cfg.capacity.max_cpu_share = 1.0;
    cfg.capacity.max_memory_mib = Some(1 << 20);
    cfg.capacity.max_disk_mib = 1 << 30;
    cfg.direct.allowed_deployers = vec![deployer.public().to_string()];
    let node = Node::start(&cfg).await.expect("node");
    let host = node.public_key();
    let spec_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/specs/echo-wasi.toml");
    let mut parsed = AgentSpec::load(&spec_path).expect("spec");
    // Small enough that 100 agents fit in this machine's CPU cap.
    parsed.resources.cpu_millis = 10;
    let (spec, artifact) = parsed
        .resolve(spec_path.parent().expect("dir"))
        .expect("resolve");
    let component = std::fs::read(artifact.expect("artifact")).expect("run scripts/build-guests");
    let peer = Arc::new(Light::default());
    peer.artifacts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(sha256(&component), Arc::new(component.clone()));
    let client = light::start(peer, vec![node.listen_addrs()[0].clone()], false)
        .await
        .expect("light");
    let mut over_net = Vec::new();
    for i in 0..N + 1 {
        let now = now_secs();
        let offer = DeploymentOffer {
            version: DeploymentOffer::VERSION,
            offer_id: Id::random().expect("rng"),
            deployer: deployer.public(),
            host,
            issued_at: now,
            expires_at: now + 600,
            nonce: Id::random().expect("rng"),
            spec_sha256: spec.sha256,
            runtime: spec.spec.runtime,
            resources: spec.spec.resource_request(),
            price: PriceTerms {
                currency: "usd".into(),
                ..PriceTerms::default()
            },
            payment: Payment::Direct,
        };
        let start = Instant::now();
        let bytes = Envelope::seal(&offer, &deployer).expect("seal").to_bytes();
        let r = client
            .deploy(
                host,
                None,
                DeployRequest {
                    offer: bytes,
                    spec: spec.document.clone(),
                },
            )
            .await
            .expect("deploy");
        let took = start.elapsed();
        assert!(matches!(r, DeployResponse::Accepted { .. }), "{r:?}");
        if i > 0 {
            // The first deploy also fetches and compiles the component.
            over_net.push(took);
        } else {
            println!(
                "offer→running, first deploy (fetch + compile): {:.1} ms",
                took.as_secs_f64() * 1e3
            );
        }
    }
    node.shutdown().await.expect("shutdown");

    // Baseline: the same deploy, in-process, through the runtime.
    let db = sled::Config::new().temporary(true).open().expect("sled");
    let rt = sparebox_sandbox::wasm::WasmRuntime::new(
        sparebox_sandbox::wasm::WasmConfig::new(dir.path().join("inproc")),
        db,
        None,
    )
    .expect("runtime");
    let plan = sparebox_node::agents::AgentPlan::from_spec(&spec.spec);
    let (limits, grants) = (plan.limits, plan.grants);
    let sha = hex::encode(sha256(&component).0);
    let mut in_proc = Vec::new();
    for i in 0..N + 1 {
        let start = Instant::now();
        rt.deploy(sparebox_sandbox::DeployRequest {
            agent_id: format!("a{i}"),
            artifact: sparebox_sandbox::Artifact::Component {
                sha256: sha.clone(),
                bytes: component.clone(),
            },
            limits: limits.clone(),
            grants: grants.clone(),
        })
        .await
        .expect("deploy");
        if i > 0 {
            in_proc.push(start.elapsed());
        }
    }
    (over_net, in_proc)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let bare = bare_propagation().await;
        let ours = sparebox_propagation().await;
        let (b50, b99) = report("advert propagation, bare gossipsub (50 peers)", bare);
        let (s50, s99) = report("advert propagation, sparebox (50 peers)", ours);
        println!(
            "ratio sparebox/bare: p50 {:.2}x, p99 {:.2}x (goal <= 1.5x, p99 < 200 ms)",
            s50.as_secs_f64() / b50.as_secs_f64(),
            s99.as_secs_f64() / b99.as_secs_f64()
        );
        let (net, inproc) = offer_to_running().await;
        let (n50, n99) = report("offer -> running over loopback", net);
        let (i50, i99) = report("deploy in-process (baseline)", inproc);
        println!(
            "ratio: p50 {:.2}x, p99 {:.2}x (goal p50 <= 20 ms)",
            n50.as_secs_f64() / i50.as_secs_f64(),
            n99.as_secs_f64() / i99.as_secs_f64()
        );
    });
}
