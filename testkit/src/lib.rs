//! `sparebox-testkit`: test doubles more than one crate's tests use. Each
//! server binds 127.0.0.1 port 0 and lives as long as the test's runtime.
//!
//! - [`fake_llm`]: an OpenAI-compatible chat completions server.

pub mod fake_llm;

pub use fake_llm::{Seen, fake_llm};
