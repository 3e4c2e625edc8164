//! `sparebox-sandbox`: the runtimes that run agents.
//!
//! - [`runtime`]: the one [`Runtime`] trait (deploy, start, stop, status,
//!   execute, undeploy, capabilities) and its types and typed errors.
//! - [`wasm`]: WASI 0.2 components in wasmtime with hard per-task limits,
//!   bound once with `bindgen!` against `../wit` (`sparebox:agent@0.1.0`).
//! - [`egress`]: the one gate every outbound connection of an agent passes
//!   (grant, then the exact address), for both runtimes.
//! - [`llm`]: the `LlmProvider` trait and an OpenAI-compatible provider.
//! - [`process`]: agents as supervised processes in per-agent cgroups (the
//!   OpenClaw runtime).
//!
//! This crate does no networking (beyond the LLM provider's and the
//! guest's granted HTTP) and no billing. See `sandbox/README.md`.

pub mod egress;
pub mod llm;
pub mod process;
pub mod runtime;
pub mod wasm;

pub use runtime::{
    AgentGrants, AgentId, AgentLimits, AgentState, AgentStatus, Artifact, Capabilities,
    DeployRequest, OpenClawSettings, Runtime, RuntimeError, Task, TaskOutcome,
};
