//! `sparebox-node`: the Sparebox host node and the `sparebox` CLI.
//!
//! A host runs `sparebox node` on spare hardware; deployers use the same
//! binary to manage keys, write signed offers and (in later issues) deploy
//! and control agents. See `DESIGN.md` for the architecture.
//!
//! Modules:
//! - [`identity`]: ed25519 keys, key files (0600, PKCS#8 PEM), PeerIds, XDG paths.
//! - [`protocol`]: the signed wire types shared with the marketplace: the
//!   [`protocol::Envelope`], its one deterministic encoding, size caps and
//!   typed verification errors.
//! - [`spec`]: the deployer's `AgentSpec` (TOML), validation and resolution.
//! - [`config`]: the node's TOML config with documented defaults.
//! - [`store`]: the sled database and the list of its trees.
//! - [`billing`]: paid agreements: voucher checks, usage reports and their
//!   outbox, stopping agents whose voucher runs out.
//! - [`api`]: the HTTP API and the embedded dashboard (`web/dashboard`).
//! - [`daemon`]: starting and stopping a node.
//! - [`cli`]: the `sparebox` command line.
//!
//! Extension points: new signed message types implement
//! [`protocol::Message`]; new config sections add an `XxxConfig` to
//! [`config::NodeConfig`] and to `default.toml`.

pub mod adverts;
pub mod agents;
pub mod api;
pub mod billing;
mod bytes;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod identity;
pub mod metering;
pub mod metrics;
pub mod network;
pub mod owner;
pub mod protocol;
pub mod spec;
pub mod store;
pub mod web;
