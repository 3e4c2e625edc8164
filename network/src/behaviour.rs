//! The composed libp2p behaviour and the Swarm built around it.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, Swarm, SwarmBuilder, autonat, connection_limits, dcutr, gossipsub, identify,
    identity, kad, mdns, noise, ping, relay, request_response, tcp, yamux,
};
use request_response::ProtocolSupport;
use sha2::{Digest as _, Sha256};

use crate::adverts::TOPIC;
use crate::config::NetConfig;
use crate::error::NetError;
use sparebox_protocol::rpc::{
    ARTIFACT_PROTOCOL, ArtifactRequest, ArtifactResponse, CONTROL_PROTOCOL, ControlRequest,
    ControlResponse, DEPLOY_PROTOCOL, DeployRequest, DeployResponse, SYNC_PROTOCOL, SyncRequest,
    SyncResponse,
};

pub type Channel<T> = request_response::ResponseChannel<T>;
pub type Rr<Req, Resp> = request_response::cbor::Behaviour<Req, Resp>;

/// Largest gossip message: an advert envelope is capped at 8 KiB of payload.
pub const MAX_GOSSIP: usize = 16 * 1024;

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub limits: connection_limits::Behaviour,
    pub relay_client: relay::client::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub gossipsub: gossipsub::Behaviour,
    pub deploy: Rr<DeployRequest, DeployResponse>,
    pub control: Rr<ControlRequest, ControlResponse>,
    pub artifact: Rr<ArtifactRequest, ArtifactResponse>,
    pub sync: Rr<SyncRequest, SyncResponse>,
    pub dcutr: dcutr::Behaviour,
    pub autonat: autonat::Behaviour,
}

fn rr<Req, Resp>(protocol: &'static str, timeout: Duration, max_request: u64) -> Rr<Req, Resp>
where
    Req: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    Resp: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    let codec = request_response::cbor::codec::Codec::<Req, Resp>::default()
        .set_request_size_maximum(max_request)
        .set_response_size_maximum(4 << 20);
    request_response::Behaviour::with_codec(
        codec,
        [(StreamProtocol::new(protocol), ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(timeout),
    )
}

/// Gossipsub in Strict mode with explicit validation, content-hash message
/// ids, and peer scoring in which every rejected advert costs the sender.
fn gossip(key: &identity::Keypair, heartbeat: Duration) -> Result<gossipsub::Behaviour, NetError> {
    let setup = |what: &str, e: &dyn std::fmt::Display| NetError::Setup(format!("{what}: {e}"));
    let config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .message_id_fn(|m: &gossipsub::Message| {
            gossipsub::MessageId::new(&Sha256::digest(&m.data)[..20])
        })
        .max_transmit_size(MAX_GOSSIP)
        .heartbeat_interval(heartbeat)
        .heartbeat_initial_delay(Duration::from_millis(100))
        .mesh_n(6)
        .mesh_n_low(4)
        .mesh_n_high(12)
        .mesh_outbound_min(2)
        .history_length(10)
        .build()
        .map_err(|e| setup("gossipsub config", &e))?;
    let mut g =
        gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), config)
            .map_err(|e| setup("gossipsub", &e))?;
    let topic = gossipsub::IdentTopic::new(TOPIC);
    // Many nodes share one address on a test bed; do not treat loopback as
    // a Sybil signal.
    let mut params = gossipsub::PeerScoreParams {
        ip_colocation_factor_whitelist: HashSet::from([
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ]),
        ..Default::default()
    };
    params.topics.insert(
        topic.hash(),
        gossipsub::TopicScoreParams {
            topic_weight: 1.0,
            // Adverts are rare: no time-in-mesh bonus, no delivery quota.
            time_in_mesh_weight: 0.0,
            first_message_deliveries_weight: 1.0,
            first_message_deliveries_decay: 0.5,
            first_message_deliveries_cap: 10.0,
            mesh_message_deliveries_weight: 0.0,
            mesh_failure_penalty_weight: 0.0,
            // Every invalid advert costs 10 × count², decaying slowly.
            invalid_message_deliveries_weight: -10.0,
            invalid_message_deliveries_decay: 0.9,
            ..Default::default()
        },
    );
    g.with_peer_score(params, gossipsub::PeerScoreThresholds::default())
        .map_err(|e| setup("gossipsub scoring", &e))?;
    g.subscribe(&topic).map_err(|e| setup(TOPIC, &e))?;
    Ok(g)
}

/// Builds the Swarm for `key`.
pub fn build(key: &identity::Keypair, cfg: &NetConfig) -> Result<Swarm<Behaviour>, NetError> {
    let setup = |e: String| NetError::Setup(e);
    let timeout = cfg.request_timeout;
    let heartbeat = cfg.heartbeat;
    let mdns_on = cfg.mdns;
    let max = cfg.max_connections;
    let agent_version = cfg.agent_version.clone();
    let swarm = SwarmBuilder::with_existing_identity(key.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| setup(format!("tcp: {e}")))?
        .with_quic()
        .with_dns()
        .map_err(|e| setup(format!("dns: {e}")))?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| setup(format!("relay client: {e}")))?
        .with_behaviour(
            |key, relay_client| -> Result<Behaviour, Box<dyn std::error::Error + Send + Sync>> {
                let peer_id = key.public().to_peer_id();
                let mut kad_cfg = kad::Config::new(StreamProtocol::new("/sparebox/kad/1"));
                kad_cfg.set_query_timeout(Duration::from_secs(30));
                let kad = kad::Behaviour::with_config(
                    peer_id,
                    kad::store::MemoryStore::new(peer_id),
                    kad_cfg,
                );
                let mdns = if mdns_on {
                    Some(mdns::tokio::Behaviour::new(
                        mdns::Config::default(),
                        peer_id,
                    )?)
                } else {
                    None
                };
                Ok(Behaviour {
                    limits: connection_limits::Behaviour::new(
                        connection_limits::ConnectionLimits::default()
                            .with_max_established(Some(max))
                            .with_max_established_per_peer(Some(4))
                            .with_max_pending_incoming(Some(max / 4 + 8)),
                    ),
                    relay_client,
                    identify: identify::Behaviour::new(
                        identify::Config::new("/sparebox/1".into(), key.public())
                            .with_agent_version(agent_version),
                    ),
                    ping: ping::Behaviour::new(ping::Config::new()),
                    kad,
                    mdns: Toggle::from(mdns),
                    gossipsub: gossip(key, heartbeat)?,
                    deploy: rr(DEPLOY_PROTOCOL, timeout, 1 << 20),
                    control: rr(CONTROL_PROTOCOL, timeout, 256 << 10),
                    artifact: rr(ARTIFACT_PROTOCOL, timeout, 4 << 10),
                    sync: rr(SYNC_PROTOCOL, timeout, 1 << 10),
                    dcutr: dcutr::Behaviour::new(peer_id),
                    autonat: autonat::Behaviour::new(
                        peer_id,
                        autonat::Config {
                            only_global_ips: false,
                            ..Default::default()
                        },
                    ),
                })
            },
        )
        .map_err(|e| setup(format!("behaviour: {e}")))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build();
    Ok(swarm)
}
