//! `sparebox-service`: what both Sparebox daemons (`sparebox node` and
//! `sparebox-market serve`) share, so neither depends on the other's
//! internals.
//!
//! - [`logging`]: `tracing` set-up, human-readable or JSON lines on stderr.
//! - [`shutdown`]: a clean stop on SIGINT or SIGTERM.
//! - [`web`]: the shared embedded web files (`web/common`, `web/vendor`) and
//!   their routes; each daemon embeds its own pages beside them.

pub mod logging;
pub mod shutdown;
pub mod web;

pub use shutdown::shutdown_signal;
