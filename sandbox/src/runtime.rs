//! The `Runtime` trait: one interface for every way of running an agent.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// An agent's id, unique on a node (the node derives it from the agreement).
pub type AgentId = String;

/// What a runtime supports, for the UI and the CLI to show only what works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// The agent has files the deployer can list and read.
    pub files: bool,
    /// The agent writes logs that can be tailed.
    pub logs: bool,
    /// The agent answers chat messages.
    pub chat: bool,
    /// A shell into the agent's environment is possible.
    pub shell: bool,
    /// Per-agent CPU and memory samples are available.
    pub metrics: bool,
}

/// Limits that apply to every task of one agent. Kept in agent records, so
/// a field added later must read as its default from older records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentLimits {
    /// Linear memory summed across all of a task's memories, in bytes.
    pub memory_bytes: usize,
    /// Wall-clock limit for one task.
    pub task_timeout: Duration,
    /// Host calls (llm, kv, log) one task may make.
    pub hostcalls_per_task: u64,
    /// Entries in one task's resource table (open files, streams, ...).
    pub table_entries: usize,
    /// Captured stdout + stderr per task, in bytes (more is refused to the guest).
    pub stdio_bytes_per_task: usize,
    /// LLM tokens one task may use (prompt + completion).
    pub tokens_per_task: u64,
    /// CPU quota for process agents, in millicores.
    pub cpu_millis: u32,
    /// Most processes a process agent may run at once (`pids.max`).
    pub pids_max: u64,
    /// Bytes a WASI agent may keep in `/workspace` and `/memory`.
    pub disk_bytes: u64,
}

impl Default for AgentLimits {
    fn default() -> Self {
        AgentLimits {
            memory_bytes: 64 << 20,
            task_timeout: Duration::from_secs(30),
            hostcalls_per_task: 10_000,
            table_entries: 1_000,
            stdio_bytes_per_task: 64 << 10,
            tokens_per_task: 100_000,
            cpu_millis: 1000,
            pids_max: 512,
            disk_bytes: 256 << 20,
        }
    }
}

/// What an agent may use; everything else is denied. A field missing from
/// a stored record reads as its default, which denies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentGrants {
    /// LLM models the agent may call.
    pub llm_models: Vec<String>,
    /// KV quota: bytes of keys + values.
    pub kv_max_bytes: u64,
    /// KV quota: number of keys.
    pub kv_max_keys: u64,
    /// Hosts the agent may reach over HTTP (`host`, `*.suffix`, optional `:port`).
    pub outbound_hosts: Vec<String>,
}

/// The code an agent runs.
#[derive(Debug, Clone)]
pub enum Artifact {
    /// A WASI component: its bytes and the sha256 the offer committed to.
    Component { sha256: String, bytes: Vec<u8> },
    /// An OpenClaw gateway profile.
    OpenClaw(OpenClawSettings),
}

/// What an OpenClaw agent is made of (from the spec's `[openclaw]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OpenClawSettings {
    /// The model, as the host's LLM endpoint names it.
    pub model: String,
    pub system_prompt: Option<String>,
    /// Workspace files (SOUL.md, AGENTS.md, ...) by name.
    pub files: std::collections::BTreeMap<String, String>,
    /// Tools granted beyond the default deny-list (`exec`, `process`, `browser`).
    pub tools: Vec<String>,
}

/// Everything a runtime needs to deploy an agent.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    pub agent_id: AgentId,
    pub artifact: Artifact,
    pub limits: AgentLimits,
    pub grants: AgentGrants,
}

/// One message for an agent (the agent API's message shape).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub thread_id: Option<String>,
    pub content: String,
    pub author: Option<String>,
    /// Recent messages of the thread as (author, content), oldest first.
    pub context: Vec<(String, String)>,
    pub mentions: Vec<String>,
}

/// A finished task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskOutcome {
    pub reply: String,
    pub duration_ms: u64,
    pub tokens_used: u64,
    pub hostcalls: u64,
}

/// An agent's lifecycle state inside a runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentState {
    Running,
    Stopped,
}

/// Status of a deployed agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub state: AgentState,
    pub tasks_completed: u64,
    pub tasks_failed: u64,
    /// Tasks executing or queued right now.
    pub in_flight: u64,
}

/// Why a runtime operation failed. Each variant names what failed; the
/// `code()` is stable for APIs.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("no agent `{0}` is deployed")]
    UnknownAgent(AgentId),
    #[error("agent `{0}` is already deployed")]
    AlreadyDeployed(AgentId),
    #[error("agent `{0}` is stopped; start it first")]
    NotRunning(AgentId),
    #[error(
        "artifact for agent `{agent}` does not match its sha256: expected {expected}, got {actual}"
    )]
    ArtifactMismatch {
        agent: AgentId,
        expected: String,
        actual: String,
    },
    #[error("cannot compile the component of agent `{agent}`: {reason}")]
    Compile { agent: AgentId, reason: String },
    #[error("cannot link the component of agent `{agent}`: {reason}")]
    Link { agent: AgentId, reason: String },
    #[error("the task queue is full ({capacity} tasks waiting); try again later")]
    QueueFull { capacity: usize },
    #[error("task exceeded its {limit_ms} ms time limit and was stopped")]
    Timeout { limit_ms: u64 },
    #[error("task exceeded its memory limit of {limit_bytes} bytes")]
    MemoryLimit { limit_bytes: usize },
    #[error("task overflowed the wasm stack")]
    StackOverflow,
    #[error("task made more than {limit} host calls")]
    HostcallLimit { limit: u64 },
    #[error("task opened more than {limit} resources")]
    ResourceLimit { limit: usize },
    #[error("argument to `{call}` too large: {size} bytes, the limit is {max}")]
    ArgumentTooLarge {
        call: &'static str,
        size: usize,
        max: usize,
    },
    #[error("agent `{0}` does not export `on-tick` (build it for the `scheduled-agent` world)")]
    NoTick(AgentId),
    #[error("the agent used `{capability}`, which it does not have: {reason}")]
    CapabilityDenied {
        capability: &'static str,
        reason: String,
    },
    #[error("the agent reported an error: {0}")]
    Agent(String),
    #[error("the agent trapped: {0}")]
    Trap(String),
    #[error("{op} {path} failed: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("storage operation `{op}` failed: {source}")]
    Storage {
        op: &'static str,
        source: sled::Error,
    },
    #[error("the {runtime} runtime runs {runs}, not {got}")]
    WrongArtifact {
        runtime: &'static str,
        runs: &'static str,
        got: &'static str,
    },
    #[error("agent id `{0}` must be letters, digits, `-` and `_`")]
    BadAgentId(AgentId),
    #[error("memory limit {asked} bytes is over this host's per-agent maximum {max}")]
    OverMemoryCap { asked: usize, max: usize },
    #[error("{grant}: {reason}")]
    BadGrant { grant: &'static str, reason: String },
    #[error("workspace file name `{0}` must be a plain file name")]
    BadFileName(String),
    #[error("{why}; set process.allow_monitor_and_kill = true to run without cgroups (weaker)")]
    NoCgroups { why: String },
    #[error("cgroup {op}: {reason}")]
    Cgroup { op: String, reason: String },
    #[error("no free port for another agent")]
    NoFreePort,
    #[error("agent `{agent}` did not become ready: {state}")]
    NotReady { agent: AgentId, state: String },
    #[error("cannot build the {what} HTTP client: {source}")]
    HttpClient {
        what: &'static str,
        source: reqwest::Error,
    },
    #[error("cannot set up the wasm engine ({op}): {reason}")]
    Engine { op: &'static str, reason: String },
    #[error("cannot link {what} into the host: {reason}")]
    Linker { what: &'static str, reason: String },
    #[error("cannot preopen the agent's directories: {0}")]
    Preopen(String),
    #[error("the {0} lock was poisoned by a panic")]
    Poisoned(&'static str),
    #[error("the runtime is shutting down")]
    ShuttingDown,
}

impl RuntimeError {
    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            RuntimeError::UnknownAgent(_) => "unknown_agent",
            RuntimeError::AlreadyDeployed(_) => "already_deployed",
            RuntimeError::NotRunning(_) => "not_running",
            RuntimeError::ArtifactMismatch { .. } => "artifact_mismatch",
            RuntimeError::Compile { .. } => "compile_failed",
            RuntimeError::Link { .. } => "link_failed",
            RuntimeError::QueueFull { .. } => "queue_full",
            RuntimeError::Timeout { .. } => "timeout",
            RuntimeError::MemoryLimit { .. } => "memory_limit",
            RuntimeError::StackOverflow => "stack_overflow",
            RuntimeError::HostcallLimit { .. } => "hostcall_limit",
            RuntimeError::ResourceLimit { .. } => "resource_limit",
            RuntimeError::ArgumentTooLarge { .. } => "argument_too_large",
            RuntimeError::NoTick(_) => "no_tick",
            RuntimeError::CapabilityDenied { .. } => "capability_denied",
            RuntimeError::Agent(_) => "agent_error",
            RuntimeError::Trap(_) => "trap",
            RuntimeError::Io { .. } => "io",
            RuntimeError::Storage { .. } => "storage",
            // Set-up failures keep the one code they have always had.
            RuntimeError::WrongArtifact { .. }
            | RuntimeError::BadAgentId(_)
            | RuntimeError::OverMemoryCap { .. }
            | RuntimeError::BadGrant { .. }
            | RuntimeError::BadFileName(_)
            | RuntimeError::NoCgroups { .. }
            | RuntimeError::Cgroup { .. }
            | RuntimeError::NoFreePort
            | RuntimeError::NotReady { .. }
            | RuntimeError::HttpClient { .. }
            | RuntimeError::Engine { .. }
            | RuntimeError::Linker { .. }
            | RuntimeError::Preopen(_)
            | RuntimeError::Poisoned(_)
            | RuntimeError::ShuttingDown => "setup",
        }
    }
}

/// A way of running agents. Implementations: [`crate::wasm::WasmRuntime`]
/// (the OpenClaw process runtime comes with its own issue).
#[async_trait::async_trait]
pub trait Runtime: Send + Sync {
    /// `wasi` or `openclaw`.
    fn kind(&self) -> &'static str;
    /// What this runtime supports.
    fn capabilities(&self) -> Capabilities;
    /// Prepares an agent (compile, link, create its directories). It starts running.
    async fn deploy(&self, request: DeployRequest) -> Result<(), RuntimeError>;
    /// Lets a stopped agent take tasks again.
    async fn start(&self, agent: &str) -> Result<(), RuntimeError>;
    /// Stops taking tasks; queued tasks fail with `NotRunning`.
    async fn stop(&self, agent: &str) -> Result<(), RuntimeError>;
    async fn status(&self, agent: &str) -> Result<AgentStatus, RuntimeError>;
    /// Runs one task to completion under the agent's limits.
    async fn execute(&self, agent: &str, task: Task) -> Result<TaskOutcome, RuntimeError>;
    /// Removes the agent and its state (files, KV).
    async fn undeploy(&self, agent: &str) -> Result<(), RuntimeError>;
}
