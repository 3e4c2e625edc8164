//! The task that owns the Swarm.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use libp2p::futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, autonat, gossipsub, identify, kad, mdns, ping};
use tokio::sync::mpsc;

use crate::adverts::{TOPIC, Verdict};
use crate::behaviour::{self, Behaviour, BehaviourEvent};
use crate::command::{Command, Reply};
use crate::config::NetConfig;
use crate::error::NetError;
use crate::inbound::Inbound;
use crate::info::{NetInfo, PeerView};
use sparebox_protocol::identity::{Keypair, PublicKey};
use sparebox_protocol::rpc::{
    ArtifactRequest, ArtifactResponse, ControlRequest, ControlResponse, DeployRequest,
    DeployResponse, Rejection, SyncRequest,
};

/// Converts a PeerId to our key type (every Sparebox peer is ed25519).
pub(crate) fn key_of(peer: &PeerId) -> Option<PublicKey> {
    PublicKey::from_str(&peer.to_string()).ok()
}

fn peer_of(key: &PublicKey) -> Result<PeerId, NetError> {
    PeerId::from_str(&key.to_peer_id()).map_err(|e| NetError::BadAddr {
        addr: key.to_string(),
        reason: e.to_string(),
    })
}

fn parse_addr(addr: &str) -> Result<Multiaddr, NetError> {
    addr.parse::<Multiaddr>().map_err(|e| NetError::BadAddr {
        addr: addr.to_string(),
        reason: e.to_string(),
    })
}

#[derive(Debug, Default)]
struct PeerMeta {
    addrs: Vec<Multiaddr>,
    agent_version: Option<String>,
    rtt_ms: Option<f64>,
}

type Pending<R> = HashMap<OutboundRequestId, (PeerId, Reply<R>)>;

/// Settles an event of one request-response behaviour against the requests
/// we sent (answers and failures go to their waiting callers) and returns an
/// inbound request, if that is what it was, for the caller to serve.
fn route<Req, Resp>(
    pending: &mut Pending<Resp>,
    e: request_response::Event<Req, Resp>,
) -> Option<(PeerId, Req, behaviour::Channel<Resp>)> {
    match e {
        request_response::Event::Message { peer, message, .. } => match message {
            request_response::Message::Request {
                request, channel, ..
            } => Some((peer, request, channel)),
            request_response::Message::Response {
                request_id,
                response,
            } => {
                if let Some((_, reply)) = pending.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
                None
            }
        },
        request_response::Event::OutboundFailure {
            request_id, error, ..
        } => {
            if let Some((p, reply)) = pending.remove(&request_id) {
                let _ = reply.send(Err(NetError::Request {
                    peer: p.to_string(),
                    reason: error.to_string(),
                }));
            }
            None
        }
        _ => None,
    }
}

/// How often one peer may ask for our whole advert index.
const SYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// Sync replies verified at once; more are dropped until one finishes.
const SYNC_CHECKS: usize = 2;
/// Adverts read from one sync reply.
const MAX_SYNC_ADVERTS: usize = 2_000;

/// Owns the Swarm; see the module docs of [`super`].
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    rx: mpsc::Receiver<Command>,
    tx: mpsc::Sender<Command>,
    inbound: Arc<dyn Inbound>,
    /// When each peer was last sent our whole index.
    sync_served: HashMap<PeerId, std::time::Instant>,
    /// Sync replies being verified off the loop.
    sync_checks: Arc<tokio::sync::Semaphore>,
    topic: gossipsub::IdentTopic,
    deploys: Pending<DeployResponse>,
    controls: Pending<ControlResponse>,
    artifacts: Pending<ArtifactResponse>,
    dials: HashMap<PeerId, Vec<Reply<()>>>,
    peers: HashMap<PeerId, PeerMeta>,
    nat: &'static str,
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("peer_id", self.swarm.local_peer_id())
            .finish_non_exhaustive()
    }
}

impl EventLoop {
    pub(crate) fn new(
        key: &Keypair,
        cfg: &NetConfig,
        inbound: Arc<dyn Inbound>,
        rx: mpsc::Receiver<Command>,
        tx: mpsc::Sender<Command>,
    ) -> Result<Self, NetError> {
        let mut seed = key.secret_seed();
        let id = libp2p::identity::Keypair::ed25519_from_bytes(&mut seed)
            .map_err(|e| NetError::Setup(format!("node key: {e}")))?;
        let swarm = behaviour::build(&id, cfg)?;
        Ok(EventLoop {
            swarm,
            rx,
            tx,
            inbound,
            sync_served: HashMap::new(),
            sync_checks: Arc::new(tokio::sync::Semaphore::new(SYNC_CHECKS)),
            topic: gossipsub::IdentTopic::new(TOPIC),
            deploys: HashMap::new(),
            controls: HashMap::new(),
            artifacts: HashMap::new(),
            dials: HashMap::new(),
            peers: HashMap::new(),
            nat: "unknown",
        })
    }

    /// Starts every listener and waits until each has an address.
    pub(crate) async fn listen(&mut self, addrs: &[String]) -> Result<(), NetError> {
        let mut waiting = 0;
        for a in addrs {
            let ma = parse_addr(a)?;
            self.swarm.listen_on(ma).map_err(|e| NetError::Listen {
                addr: a.clone(),
                reason: e.to_string(),
            })?;
            waiting += 1;
        }
        while waiting > 0 {
            match self.swarm.select_next_some().await {
                SwarmEvent::NewListenAddr { address, .. } => {
                    tracing::info!(%address, "listening");
                    waiting -= 1;
                }
                SwarmEvent::ListenerClosed {
                    addresses, reason, ..
                } => {
                    return Err(NetError::Listen {
                        addr: format!("{addresses:?}"),
                        reason: format!("{reason:?}"),
                    });
                }
                SwarmEvent::ListenerError { error, .. } => {
                    return Err(NetError::Listen {
                        addr: addrs.join(", "),
                        reason: error.to_string(),
                    });
                }
                other => self.on_swarm_event(other),
            }
        }
        Ok(())
    }

    /// Dials a multiaddr; a `/p2p/<id>` suffix also goes to kad.
    pub(crate) fn dial_str(&mut self, addr: &str) -> Result<Option<PeerId>, NetError> {
        let ma = parse_addr(addr)?;
        let peer = match ma.iter().last() {
            Some(Protocol::P2p(p)) => Some(p),
            _ => None,
        };
        if let Some(p) = peer {
            let base: Multiaddr = ma
                .iter()
                .filter(|p| !matches!(p, Protocol::P2p(_)))
                .collect();
            self.swarm.behaviour_mut().kad.add_address(&p, base.clone());
            self.swarm.add_peer_address(p, base);
            if self.swarm.is_connected(&p) {
                return Ok(Some(p));
            }
        }
        self.swarm.dial(ma).map_err(|e| NetError::Unreachable {
            peer: addr.to_string(),
            reason: e.to_string(),
        })?;
        Ok(peer)
    }

    pub async fn run(mut self) {
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                cmd = self.rx.recv() => match cmd {
                    Some(Command::Shutdown) | None => break,
                    Some(cmd) => self.on_command(cmd),
                },
            }
        }
        tracing::debug!("network event loop stopped");
    }

    fn add_addr(&mut self, peer: &PublicKey, addr: Option<String>) -> Result<PeerId, NetError> {
        let p = peer_of(peer)?;
        if let Some(a) = addr {
            let ma = parse_addr(&a)?;
            let base: Multiaddr = ma
                .iter()
                .filter(|x| !matches!(x, Protocol::P2p(_)))
                .collect();
            self.swarm.add_peer_address(p, base);
        }
        Ok(p)
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Dial { addr, reply } => match self.dial_str(&addr) {
                Ok(Some(p)) if !self.swarm.is_connected(&p) => {
                    self.dials.entry(p).or_default().push(reply)
                }
                Ok(_) => {
                    let _ = reply.send(Ok(()));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Publish { data, reply } => {
                let r = match self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(self.topic.clone(), data)
                {
                    Ok(_) => Ok(true),
                    Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => Ok(false),
                    Err(gossipsub::PublishError::Duplicate) => Ok(true),
                    Err(e) => Err(NetError::Publish(e.to_string())),
                };
                let _ = reply.send(r);
            }
            Command::Deploy {
                peer,
                addr,
                req,
                reply,
            } => match self.add_addr(&peer, addr) {
                Ok(p) => {
                    let id = self.swarm.behaviour_mut().deploy.send_request(&p, req);
                    self.deploys.insert(id, (p, reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Control {
                peer,
                addr,
                req,
                reply,
            } => match self.add_addr(&peer, addr) {
                Ok(p) => {
                    let id = self.swarm.behaviour_mut().control.send_request(&p, req);
                    self.controls.insert(id, (p, reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Artifact { peer, req, reply } => match peer_of(&peer) {
                Ok(p) => {
                    let id = self.swarm.behaviour_mut().artifact.send_request(&p, req);
                    self.artifacts.insert(id, (p, reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Info { reply } => {
                let _ = reply.send(Ok(self.info()));
            }
            Command::RespondDeploy(ch, r) => {
                let _ = self.swarm.behaviour_mut().deploy.send_response(ch, r);
            }
            Command::RespondControl(ch, r) => {
                let _ = self.swarm.behaviour_mut().control.send_response(ch, r);
            }
            Command::RespondArtifact(ch, r) => {
                let _ = self.swarm.behaviour_mut().artifact.send_response(ch, r);
            }
            Command::Shutdown => {}
        }
    }

    fn info(&mut self) -> NetInfo {
        let connected: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        let gs = &self.swarm.behaviour().gossipsub;
        let peers = connected
            .iter()
            .map(|p| {
                let meta = self.peers.get(p);
                PeerView {
                    peer_id: p.to_string(),
                    addresses: meta
                        .map(|m| m.addrs.iter().map(|a| a.to_string()).collect())
                        .unwrap_or_default(),
                    agent_version: meta.and_then(|m| m.agent_version.clone()),
                    rtt_ms: meta.and_then(|m| m.rtt_ms),
                    gossip_score: gs.peer_score(p),
                }
            })
            .collect();
        NetInfo {
            peer_id: self.swarm.local_peer_id().to_string(),
            listen_addrs: self.swarm.listeners().map(|a| a.to_string()).collect(),
            external_addrs: self
                .swarm
                .external_addresses()
                .map(|a| a.to_string())
                .collect(),
            nat_status: self.nat.to_string(),
            peers,
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                tracing::debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connected");
                for reply in self.dials.remove(&peer_id).unwrap_or_default() {
                    let _ = reply.send(Ok(()));
                }
                if num_established.get() == 1 {
                    // A new peer: ask for its advert index so we see current
                    // hosts now, not at the next publish interval.
                    self.swarm
                        .behaviour_mut()
                        .sync
                        .send_request(&peer_id, SyncRequest::default());
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.peers.remove(&peer_id);
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(p),
                error,
                ..
            } => {
                for reply in self.dials.remove(&p).unwrap_or_default() {
                    let _ = reply.send(Err(NetError::Unreachable {
                        peer: p.to_string(),
                        reason: error.to_string(),
                    }));
                }
            }
            SwarmEvent::Behaviour(e) => self.on_behaviour(e),
            _ => {}
        }
    }

    fn on_behaviour(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => {
                let author = message.source.as_ref().and_then(key_of);
                let verdict = self.inbound.validate_advert(author, &message.data);
                let acceptance = match verdict {
                    Verdict::Accept => gossipsub::MessageAcceptance::Accept,
                    Verdict::Ignore(_) => gossipsub::MessageAcceptance::Ignore,
                    Verdict::Reject(code) => {
                        tracing::debug!(from = %propagation_source, code, "advert rejected");
                        gossipsub::MessageAcceptance::Reject
                    }
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
            }
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                let meta = self.peers.entry(peer_id).or_default();
                meta.agent_version = Some(info.agent_version.clone());
                meta.addrs = info.listen_addrs.clone();
                for a in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, a);
                }
            }
            BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            }) => {
                self.peers.entry(peer).or_default().rtt_ms = Some(rtt.as_secs_f64() * 1000.0);
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(list)) => {
                for (peer, addr) in list {
                    self.swarm.behaviour_mut().kad.add_address(&peer, addr);
                    if !self.swarm.is_connected(&peer) {
                        let _ = self.swarm.dial(peer);
                    }
                }
            }
            BehaviourEvent::Kad(kad::Event::RoutingUpdated { peer, .. }) => {
                tracing::trace!(%peer, "kad routing updated");
            }
            BehaviourEvent::Autonat(autonat::Event::StatusChanged { new, .. }) => {
                self.nat = match new {
                    autonat::NatStatus::Public(_) => "public",
                    autonat::NatStatus::Private => "private",
                    autonat::NatStatus::Unknown => "unknown",
                };
                tracing::info!(nat = self.nat, "NAT status changed");
            }
            BehaviourEvent::Deploy(e) => self.on_deploy(e),
            BehaviourEvent::Control(e) => self.on_control(e),
            BehaviourEvent::Artifact(e) => self.on_artifact(e),
            BehaviourEvent::Sync(e) => self.on_sync(e),
            _ => {}
        }
    }

    /// Spawns `work` on the inbound handler and sends its answer back to the
    /// loop, which owns the Swarm and so must write the response itself.
    fn serve<R, Fut>(
        &self,
        channel: behaviour::Channel<R>,
        respond: fn(behaviour::Channel<R>, R) -> Command,
        work: impl FnOnce(Arc<dyn Inbound>) -> Fut + Send + 'static,
    ) where
        R: Send + 'static,
        Fut: std::future::Future<Output = R> + Send + 'static,
    {
        let inbound = self.inbound.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let r = work(inbound).await;
            let _ = tx.send(respond(channel, r)).await;
        });
    }

    fn on_deploy(&mut self, e: request_response::Event<DeployRequest, DeployResponse>) {
        let Some((peer, request, channel)) = route(&mut self.deploys, e) else {
            return;
        };
        let Some(from) = key_of(&peer) else {
            let r = DeployResponse::Rejected(Rejection::new(
                "bad_peer",
                "the sending peer has no ed25519 key",
            ));
            let _ = self.swarm.behaviour_mut().deploy.send_response(channel, r);
            return;
        };
        self.serve(channel, Command::RespondDeploy, move |i| async move {
            i.deploy(from, request).await
        });
    }

    fn on_control(&mut self, e: request_response::Event<ControlRequest, ControlResponse>) {
        if let Some((peer, request, channel)) = route(&mut self.controls, e)
            && let Some(from) = key_of(&peer)
        {
            self.serve(channel, Command::RespondControl, move |i| async move {
                i.control(from, request).await
            });
        }
    }

    fn on_artifact(&mut self, e: request_response::Event<ArtifactRequest, ArtifactResponse>) {
        if let Some((peer, request, channel)) = route(&mut self.artifacts, e)
            && let Some(from) = key_of(&peer)
        {
            self.serve(channel, Command::RespondArtifact, move |i| async move {
                i.artifact(from, request).await
            });
        }
    }

    fn on_sync(
        &mut self,
        e: request_response::Event<
            sparebox_protocol::rpc::SyncRequest,
            sparebox_protocol::rpc::SyncResponse,
        >,
    ) {
        if let request_response::Event::Message { peer, message, .. } = e {
            match message {
                request_response::Message::Request { channel, .. } => {
                    // One full index per peer per SYNC_EVERY; more often
                    // gets an empty answer.
                    let now = std::time::Instant::now();
                    let recent = self
                        .sync_served
                        .get(&peer)
                        .is_some_and(|t| now.duration_since(*t) < SYNC_EVERY);
                    if self.sync_served.len() > 4096 {
                        self.sync_served
                            .retain(|_, t| now.duration_since(*t) < SYNC_EVERY);
                    }
                    let snapshot = if recent {
                        sparebox_protocol::rpc::SyncResponse::default()
                    } else {
                        self.sync_served.insert(peer, now);
                        self.inbound.sync()
                    };
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .sync
                        .send_response(channel, snapshot);
                }
                request_response::Message::Response { mut response, .. } => {
                    // Thousands of signature checks do not belong on the
                    // loop that owns the swarm: verify on the blocking pool,
                    // a bounded number of replies at a time (the rest are
                    // dropped), each cut to MAX_SYNC_ADVERTS.
                    let Some(from) = key_of(&peer) else {
                        return;
                    };
                    let Ok(permit) = self.sync_checks.clone().try_acquire_owned() else {
                        tracing::debug!(%peer, "sync reply dropped: verifier busy");
                        return;
                    };
                    response.adverts.truncate(MAX_SYNC_ADVERTS);
                    let inbound = self.inbound.clone();
                    tokio::task::spawn_blocking(move || {
                        inbound.synced(from, response);
                        drop(permit);
                    });
                }
            }
        }
    }
}
