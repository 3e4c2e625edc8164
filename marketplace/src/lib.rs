//! `sparebox-market`: the marketplace service.
//!
//! It will hold the HTTP routes, the host index fed from gossip, accounts,
//! billing (Stripe behind a `Billing` trait), the ledger, vouchers and
//! settlement (see the "Marketplace service" issue). It shares the signed
//! wire types with the node through [`sparebox_node::protocol`], so a voucher
//! it signs is byte-for-byte what a node verifies.

//!
//! Built so far: [`ledger`], the double-entry ledger in integer cents with
//! idempotent, cause-keyed entries and an invariant check; [`vouchers`],
//! which reserve credit and are signed with the marketplace key; and
//! [`usage`], which turns hosts' signed usage reports into capped charges;
//! [`billing`], the `Billing` trait with its test-ledger mode and the
//! settlement job; and [`service`], `sparebox-market serve`.

pub mod billing;
pub mod ledger;
pub mod service;
pub mod usage;
pub mod vouchers;

pub use sparebox_node::protocol;
