//! `sparebox-market`: the marketplace service.
//!
//! It shares the signed wire types with the node through
//! [`sparebox_node::protocol`], so a voucher it signs is byte-for-byte what
//! a node verifies, and it joins the libp2p network with the node's own
//! network module.
//!
//! Modules:
//! - [`service`]: `sparebox-market serve`: config, start-up, shared state,
//!   background jobs (voucher expiry, settlement);
//! - [`api`]: the HTTP routes (`/api/v1`);
//! - [`accounts`]: email/password accounts (argon2id), sessions, CSRF,
//!   rate-limited sign-in, keys bound by signed challenges;
//! - [`hosts`]: the host index fed from gossip, and host search;
//! - [`ledger`]: the double-entry ledger in integer cents;
//! - [`vouchers`]: signed vouchers that reserve credit;
//! - [`usage`]: hosts' signed usage reports become capped charges;
//! - [`billing`]: the `Billing` trait, its test-ledger mode, settlement;
//! - [`stripe`]: Stripe through async-stripe, and webhook verification;
//! - [`webhooks`]: what Stripe events do to the ledger, exactly once.

pub mod accounts;
pub mod api;
pub mod billing;
pub mod deployments;
pub mod hosts;
pub mod ledger;
pub mod service;
pub mod stripe;
pub mod usage;
pub mod vouchers;
pub mod web;
pub mod webhooks;

pub use sparebox_node::protocol;
