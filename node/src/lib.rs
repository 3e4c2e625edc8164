//! `sparebox-node`: the Sparebox host node and the `sparebox` CLI.
//!
//! A host runs `sparebox node` on spare hardware; a deployer uses the same
//! binary to manage keys, sign offers, deploy and control agents. The signed
//! messages come from `sparebox-protocol`, the libp2p network from
//! `sparebox-network`, the runtimes from `sparebox-sandbox`; this crate is
//! what a host does with them. See `docs/design.md`.
//!
//! Modules:
//! - [`config`]: the node's TOML config with documented defaults.
//! - [`store`]: the sled database and the list of its trees.
//! - [`capacity`]: this host's caps, what is free, its prices and its
//!   signed advert.
//! - [`agents`]: admission of offers, the deploy pipeline, control
//!   commands, tasks, the background loop and agent records.
//! - [`billing`]: paid agreements: voucher checks, usage reports and their
//!   outbox, stopping agents whose voucher runs out.
//! - [`metering`]: per-agreement usage counters.
//! - [`owner`]: the host owner's controls (pause, prices) and the offer log.
//! - [`metrics`]: the Prometheus registry served at `/metrics`.
//! - [`api`]: the agent API, the dashboard API and the embedded dashboard
//!   (`web/dashboard`).
//! - [`daemon`]: starting and stopping a node.
//! - [`cli`]: the `sparebox` command line.
//!
//! Extension points: a new runtime implements `sparebox_sandbox::Runtime`
//! and is offered in [`daemon`]; new config sections add an `XxxConfig` to
//! [`config::NodeConfig`] and to `default.toml`.

pub mod agents;
pub mod api;
pub mod billing;
pub mod capacity;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod metering;
pub mod metrics;
pub mod owner;
pub mod store;
