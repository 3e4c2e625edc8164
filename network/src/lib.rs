//! `sparebox-network`: the libp2p network, shared by the node, the CLI and
//! the marketplace. It never links a host's runtimes.
//!
//! One task (the [`EventLoop`]) owns the Swarm, and the
//! rest of the node talks to it through a cloneable [`Client`] whose
//! commands each carry a oneshot reply. Inbound requests and gossip go to an
//! [`Inbound`] handler. No libp2p type leaves this crate: peers are
//! [`PublicKey`]s and addresses are multiaddr strings.
//!
//! The Swarm runs TCP and QUIC (noise, yamux), identify, ping, kad, mdns
//! (optional), gossipsub in Strict mode with explicit validation and peer
//! scoring, four request-response protocols (CBOR; see
//! [`sparebox_protocol::rpc`]), relay client, dcutr, autonat and connection
//! limits. On every new connection the node asks the peer for its advert
//! index (`/sparebox/sync/1`), so a node that has just joined sees current
//! hosts at once.

//!
//! Modules: [`client`] (the [`Client`] handle and [`start`]), `event_loop`
//! (the task that owns the Swarm), `behaviour` (the composed libp2p
//! behaviour), [`adverts`] (the validated index of other hosts' adverts),
//! [`inbound`] (what the owner answers), [`light`] (the CLI's and the
//! marketplace's light peer), [`config`], [`error`] and [`info`].

pub mod addr;
pub mod adverts;
mod behaviour;
pub mod client;
mod command;
pub mod config;
pub mod error;
mod event_loop;
pub mod inbound;
pub mod info;
pub mod light;

pub use client::{Client, start};
pub use config::NetConfig;
pub use error::NetError;
pub use event_loop::EventLoop;
pub use inbound::Inbound;
pub use info::{NetInfo, PeerView};
