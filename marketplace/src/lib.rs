//! `sparebox-market`: the marketplace service.
//!
//! It depends on `sparebox-protocol` for every signed message (so a voucher
//! it signs is byte-for-byte what a node verifies), on `sparebox-network`
//! to join the libp2p network, and on `sparebox-service` for what both
//! daemons share. It never links a host's runtimes.
//!
//! Modules, from the outside in:
//! - [`service`]: `sparebox-market serve`: start-up and background jobs
//!   (voucher expiry, settlement); [`config`]: its settings; [`state`]: what
//!   handlers and jobs share.
//! - [`api`]: the HTTP routes (`/api/v1`), one module per resource, and the
//!   one error type domain errors map to; [`web`]: the embedded pages.
//! - Domain modules, which know nothing of HTTP:
//!   - [`accounts`]: email/password accounts (argon2id), sessions, CSRF,
//!     rate-limited sign-in, keys bound by signed challenges;
//!   - [`hosts`]: the host index fed from gossip, and host search;
//!   - [`deployments`]: deployments made from the web pages, and the relay
//!     that carries browser-signed offers and commands to hosts;
//!   - [`ledger`]: the double-entry ledger in integer cents;
//!   - [`vouchers`]: signed vouchers that reserve credit;
//!   - [`usage`]: hosts' signed usage reports become capped charges;
//!   - [`billing`]: the `Billing` trait, its test-ledger mode, settlement;
//!   - [`stripe`]: Stripe through async-stripe, and webhook verification;
//!   - [`webhooks`]: what Stripe events do to the ledger, exactly once.
//!
//! Extension points: a payment provider implements [`billing::Billing`];
//! a new route goes in the `api` module named after its resource.

pub mod accounts;
pub mod api;
pub mod billing;
pub mod config;
pub mod deployments;
pub mod hosts;
pub mod ledger;
pub mod service;
pub mod state;
pub mod stripe;
pub mod usage;
pub mod vouchers;
pub mod web;
pub mod webhooks;
