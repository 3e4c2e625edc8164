//! The cloneable handle the rest of a process uses to talk to the network,
//! and [`start`], which spawns the event loop behind it.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::command::{Command, Reply};
use crate::config::NetConfig;
use crate::error::NetError;
use crate::event_loop::EventLoop;
use crate::inbound::Inbound;
use crate::info::NetInfo;
use sparebox_protocol::identity::{Keypair, PublicKey};
use sparebox_protocol::rpc::{
    ArtifactRequest, ArtifactResponse, ControlRequest, ControlResponse, DeployRequest,
    DeployResponse,
};

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
