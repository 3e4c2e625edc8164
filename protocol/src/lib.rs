//! `sparebox-protocol`: everything two Sparebox parties must agree on, byte
//! for byte, and nothing that runs.
//!
//! The node, the `sparebox` CLI, the marketplace and the fuzz targets all use
//! this crate; none of them defines a message a second time. It has no async
//! runtime, no swarm and no wasmtime, so a party that only signs or verifies
//! (the marketplace, a browser relay) does not link a host's runtimes.
//!
//! Modules:
//! - [`identity`]: ed25519 keys, key files (0600, PKCS#8 PEM), PeerIds, XDG paths.
//! - [`envelope`]: the signed [`Envelope`], its one deterministic encoding,
//!   size caps and typed [`VerifyError`]s (re-exported at the root).
//! - [`ids`]: random [`Id`]s and sha256 [`Digest`]s.
//! - [`messages`]: every signed message (adverts, offers, agreements,
//!   control commands, vouchers, usage reports, key proofs; re-exported at
//!   the root).
//! - [`rpc`]: the point-to-point request/response types.
//! - [`spec`]: the deployer's `AgentSpec`: parsing, validation, resolution.
//! - [`files`]: the signed-file formats the CLI reads and writes.
//! - [`build`]: one builder per message a deployer signs, and detached
//!   signing for signers that hold their key elsewhere (a browser).
//! - [`token`]: bearer tokens: generation and constant-time comparison.
//!
//! Extension points: a new signed message type implements [`Message`] with
//! its own domain tag and size cap.

pub mod build;
mod bytes;
pub mod envelope;
pub mod files;
pub mod identity;
pub mod ids;
pub mod messages;
pub mod rpc;
pub mod spec;
pub mod token;

pub use envelope::*;
pub use ids::*;
pub use messages::*;

#[cfg(test)]
mod tests;
