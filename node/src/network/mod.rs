//! The libp2p network: one task (the [`EventLoop`]) owns the Swarm, and the
//! rest of the node talks to it through a cloneable [`Client`] whose
//! commands each carry a oneshot reply. Inbound requests and gossip go to an
//! [`Inbound`] handler. No libp2p type leaves this module: peers are
//! [`PublicKey`]s and addresses are multiaddr strings.
//!
//! The Swarm runs TCP and QUIC (noise, yamux), identify, ping, kad, mdns
//! (optional), gossipsub in Strict mode with explicit validation and peer
//! scoring, four request-response protocols (CBOR; see
//! [`crate::protocol::rpc`]), relay client, dcutr, autonat and connection
//! limits. On every new connection the node asks the peer for its advert
//! index (`/sparebox/sync/1`), so a node that has just joined sees current
//! hosts at once.

mod behaviour;
mod event_loop;
pub mod light;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::adverts::Verdict;
use crate::identity::{Keypair, PublicKey};
use crate::protocol::rpc::{
    ArtifactRequest, ArtifactResponse, ControlRequest, ControlResponse, DeployRequest,
    DeployResponse, SyncResponse,
};

pub use event_loop::EventLoop;

/// What the network needs to start.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Multiaddrs to listen on; empty for a client that only dials.
    pub listen: Vec<String>,
    /// Multiaddrs (ending in `/p2p/<PeerId>`) dialled at start.
    pub bootstrap: Vec<String>,
    pub mdns: bool,
    pub max_connections: u32,
    /// Gossipsub heartbeat. Default 1 s; tests and benches use less.
    pub heartbeat: Duration,
    /// Timeout for a request-response exchange.
    pub request_timeout: Duration,
    /// Agent version string sent by identify.
    pub agent_version: String,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            listen: Vec::new(),
            bootstrap: Vec::new(),
            mdns: false,
            max_connections: 256,
            heartbeat: Duration::from_secs(1),
            request_timeout: Duration::from_secs(120),
            agent_version: format!("sparebox/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// Why a network operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NetError {
    #[error("bad multiaddr `{addr}`: {reason}")]
    BadAddr { addr: String, reason: String },
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("cannot reach {peer}: {reason}")]
    Unreachable { peer: String, reason: String },
    #[error("request to {peer} failed: {reason}")]
    Request { peer: String, reason: String },
    #[error("could not publish: {0}")]
    Publish(String),
    #[error("the network could not be set up: {0}")]
    Setup(String),
    #[error("the network task has stopped")]
    Stopped,
}

impl NetError {
    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            NetError::BadAddr { .. } => "bad_addr",
            NetError::Listen { .. } => "listen_failed",
            NetError::Unreachable { .. } => "unreachable",
            NetError::Request { .. } => "request_failed",
            NetError::Publish(_) => "publish_failed",
            NetError::Setup(_) => "setup",
            NetError::Stopped => "stopped",
        }
    }
}

/// A connected peer, as the dashboard shows it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerView {
    pub peer_id: String,
    pub addresses: Vec<String>,
    pub agent_version: Option<String>,
    pub rtt_ms: Option<f64>,
    pub gossip_score: Option<f64>,
}

/// This node's view of the network.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetInfo {
    pub peer_id: String,
    pub listen_addrs: Vec<String>,
    pub external_addrs: Vec<String>,
    /// `public`, `private` or `unknown` (autonat).
    pub nat_status: String,
    pub peers: Vec<PeerView>,
}

/// How the network hands inbound traffic to the node. Requests are served
/// on their own tasks; `validate_advert` runs on the event loop and must be
/// quick (it checks one signature).
#[async_trait::async_trait]
pub trait Inbound: Send + Sync + 'static {
    /// Gossip validation for an advert; `author` signed the gossip message.
    fn validate_advert(&self, author: Option<PublicKey>, bytes: &[u8]) -> Verdict;
    /// Adverts a peer sent in reply to our sync request.
    fn synced(&self, from: PublicKey, reply: SyncResponse);
    /// Our advert index, for a peer's sync request.
    fn sync(&self) -> SyncResponse;
    async fn deploy(&self, from: PublicKey, req: DeployRequest) -> DeployResponse;
    async fn control(&self, from: PublicKey, req: ControlRequest) -> ControlResponse;
    async fn artifact(&self, from: PublicKey, req: ArtifactRequest) -> ArtifactResponse;
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T, NetError>>;

pub(crate) enum Command {
    Dial {
        addr: String,
        reply: Reply<()>,
    },
    Publish {
        data: Vec<u8>,
        reply: Reply<bool>,
    },
    Deploy {
        peer: PublicKey,
        addr: Option<String>,
        req: DeployRequest,
        reply: Reply<DeployResponse>,
    },
    Control {
        peer: PublicKey,
        addr: Option<String>,
        req: ControlRequest,
        reply: Reply<ControlResponse>,
    },
    Artifact {
        peer: PublicKey,
        req: ArtifactRequest,
        reply: Reply<ArtifactResponse>,
    },
    Info {
        reply: Reply<NetInfo>,
    },
    Shutdown,
    // Replies to inbound requests, produced by handler tasks.
    RespondDeploy(behaviour::Channel<DeployResponse>, DeployResponse),
    RespondControl(behaviour::Channel<ControlResponse>, ControlResponse),
    RespondArtifact(behaviour::Channel<ArtifactResponse>, ArtifactResponse),
}

/// The handle the rest of the node uses. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    tx: mpsc::Sender<Command>,
    me: PublicKey,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("me", &self.me).finish()
    }
}

impl Client {
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, NetError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    pub fn local_key(&self) -> PublicKey {
        self.me
    }

    /// Dials `addr` (a multiaddr, usually ending in `/p2p/<PeerId>`).
    pub async fn dial(&self, addr: &str) -> Result<(), NetError> {
        let addr = addr.to_string();
        self.call(|reply| Command::Dial { addr, reply }).await
    }

    /// Publishes an advert. `Ok(false)` when no peer is subscribed yet.
    pub async fn publish_advert(&self, data: Vec<u8>) -> Result<bool, NetError> {
        self.call(|reply| Command::Publish { data, reply }).await
    }

    /// Sends an offer to `peer` (dialling `addr` first if given).
    pub async fn deploy(
        &self,
        peer: PublicKey,
        addr: Option<String>,
        req: DeployRequest,
    ) -> Result<DeployResponse, NetError> {
        self.call(|reply| Command::Deploy {
            peer,
            addr,
            req,
            reply,
        })
        .await
    }

    /// Sends a control command to `peer`.
    pub async fn control(
        &self,
        peer: PublicKey,
        addr: Option<String>,
        req: ControlRequest,
    ) -> Result<ControlResponse, NetError> {
        self.call(|reply| Command::Control {
            peer,
            addr,
            req,
            reply,
        })
        .await
    }

    /// Asks `peer` for one artifact chunk.
    pub async fn artifact(
        &self,
        peer: PublicKey,
        req: ArtifactRequest,
    ) -> Result<ArtifactResponse, NetError> {
        self.call(|reply| Command::Artifact { peer, req, reply })
            .await
    }

    pub async fn info(&self) -> Result<NetInfo, NetError> {
        self.call(|reply| Command::Info { reply }).await
    }

    /// Stops the event loop (connections close).
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown).await;
    }
}

/// Builds the Swarm, starts listening and dialling, and spawns the event
/// loop. Returns once every listen address is bound.
pub async fn start(
    key: &Keypair,
    cfg: NetConfig,
    inbound: Arc<dyn Inbound>,
) -> Result<(Client, JoinHandle<()>), NetError> {
    let (tx, rx) = mpsc::channel(256);
    let mut event_loop = EventLoop::new(key, &cfg, inbound, rx, tx.clone())?;
    event_loop.listen(&cfg.listen).await?;
    for addr in &cfg.bootstrap {
        if let Err(e) = event_loop.dial_str(addr) {
            tracing::warn!("bootstrap {addr}: {e}");
        }
    }
    let task = tokio::spawn(event_loop.run());
    Ok((
        Client {
            tx,
            me: key.public(),
        },
        task,
    ))
}
