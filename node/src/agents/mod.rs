//! Agents on this node: admission of offers, the lifecycle state machine,
//! control commands, tasks, scheduled activation and persistence.
//!
//! States: an offer that passes admission reserves capacity and becomes
//! `deploying` (in memory only); once the runtime has the agent it is
//! persisted as `running`, and moves `running ⇄ stopped`, or ends `failed`
//! or undeployed (removed). Tasks move `queued → processing → completed |
//! failed`.
//!
//! sled trees: `agents` (id → record, JSON), `agreements` (offer id →
//! signed agreement), `nonces` (offer and command nonces → expiry), `tasks`
//! (task id → task, JSON, kept [`TASK_RETENTION_SECS`]) and `usage`
//! ([`crate::metering`]). Component bytes live in `<data>/artifacts/<sha256>.wasm`.
//!
//! Crash safety: nothing about an agent is persisted until the runtime has
//! deployed it, and then the record and the agreement are written in one
//! transaction. A node killed mid-deploy restarts with no trace of the
//! agent except its nonce (so the offer cannot be replayed) and possibly an
//! orphaned runtime directory, which [`Agents::restore`] removes.

mod admission;
mod artifacts;
pub mod background;
mod control;
mod deploy;
mod records;
pub mod tasks;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use serde::{Deserialize, Serialize};
use sparebox_sandbox::process::ProcessRuntime;
use sparebox_sandbox::wasm::WasmRuntime;
use sparebox_sandbox::{Runtime, RuntimeError};
use tokio::sync::Notify;

pub use admission::{Admitted, AgentPlan, Policy};

use crate::billing::{BillingConfig, HostBilling, Paid};
use crate::metering::Meter;
use crate::metrics::Metrics;
use crate::owner::Owner;
use crate::store::{Store, StoreError};
use sparebox_network::Client;
use sparebox_protocol::identity::{Keypair, PublicKey};
use sparebox_protocol::rpc::Rejection;
use sparebox_protocol::spec::AgentSpec;
use sparebox_protocol::{Digest, Id, ResourceRequest, RuntimeKind};

/// How long finished tasks stay queryable.
pub const TASK_RETENTION_SECS: u64 = 24 * 3600;
/// Largest component accepted over the artifact protocol.
pub const MAX_ARTIFACT: u64 = 64 << 20;

/// An agent's persisted state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Running,
    Stopped,
    Failed,
}

impl State {
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Running => "running",
            State::Stopped => "stopped",
            State::Failed => "failed",
        }
    }
}

/// Everything the node keeps about one agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentRecord {
    pub agent_id: String,
    pub name: String,
    pub runtime: RuntimeKind,
    pub offer_id: Id,
    pub deployer: PublicKey,
    /// The canonical spec document.
    pub spec: String,
    pub resources: ResourceRequest,
    pub state: State,
    pub reason: Option<String>,
    pub created_at: u64,
    pub token_sha256: Digest,
    pub artifact_sha256: String,
    pub schedule_every_secs: Option<u64>,
    /// When `on-tick` last ran (or the agent was created).
    pub last_tick_at: u64,
    /// Payment terms when the agent is paid with a voucher.
    #[serde(default)]
    pub paid: Option<Paid>,
    /// The spec resolved at admission. Records written before plans were
    /// kept lack it; [`Agents::open`] resolves those once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<AgentPlan>,
}

impl AgentRecord {
    /// The record with its plan. A record written before plans were kept
    /// has none: its stored spec is resolved this once. A spec that no
    /// longer parses leaves it without one, and the runtime refuses it.
    pub fn with_plan(mut self) -> AgentRecord {
        if self.plan.is_none() {
            self.plan = AgentSpec::parse(&self.spec, "(stored)")
                .ok()
                .map(|s| AgentPlan::from_spec(&s));
        }
        self
    }
}

/// Node-side settings for agents.
#[derive(Debug, Clone)]
pub struct AgentsConfig {
    pub policy: Policy,
    /// Base URL of the node's API, e.g. `http://127.0.0.1:7878`.
    pub api_url: String,
    pub data_dir: PathBuf,
    pub billing: BillingConfig,
}

/// Why an API call about agents or tasks failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("no agent `{0}`")]
    UnknownAgent(String),
    #[error("missing or wrong bearer token for agent `{0}`")]
    Unauthorized(String),
    #[error("agent `{0}` is not running")]
    NotRunning(String),
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Random(#[from] sparebox_protocol::token::RandomError),
    #[error(transparent)]
    Billing(#[from] crate::billing::BillingError),
}

impl AgentError {
    pub fn code(&self) -> &'static str {
        match self {
            AgentError::UnknownAgent(_) => "unknown_agent",
            AgentError::Unauthorized(_) => "unauthorized",
            AgentError::NotRunning(_) => "not_running",
            AgentError::BadRequest(_) => "bad_request",
            AgentError::Store(_) => "storage",
            AgentError::Random(_) | AgentError::Billing(_) => "internal",
        }
    }
}

/// The agents of one node.
pub struct Agents {
    key: Keypair,
    cfg: AgentsConfig,
    trees: Trees,
    meter: Meter,
    billing: HostBilling,
    wasm: Arc<WasmRuntime>,
    process: Option<Arc<ProcessRuntime>>,
    records: RwLock<HashMap<String, AgentRecord>>,
    deploying: Mutex<HashMap<String, ResourceRequest>>,
    admission: tokio::sync::Mutex<()>,
    net: OnceLock<Client>,
    /// Signalled when capacity changes (deploy, undeploy), to re-advertise.
    pub changed: Notify,
    pub metrics: Arc<Metrics>,
    tasks_done: std::sync::atomic::AtomicU64,
    /// The owner's controls (pause, prices) and the offer log.
    pub owner: Arc<Owner>,
}

impl std::fmt::Debug for Agents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agents").finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
struct Trees {
    agents: sled::Tree,
    agreements: sled::Tree,
    nonces: sled::Tree,
    tasks: sled::Tree,
}

fn db(op: &'static str) -> impl Fn(sled::Error) -> StoreError {
    move |source| StoreError::Op { op, source }
}

fn reject(code: &str, msg: impl Into<String>) -> Rejection {
    Rejection::new(code, msg)
}

impl Agents {
    pub fn open(
        key: Keypair,
        cfg: AgentsConfig,
        store: &Store,
        wasm: Arc<WasmRuntime>,
        process: Option<Arc<ProcessRuntime>>,
        metrics: Arc<Metrics>,
        owner: Arc<Owner>,
    ) -> Result<Arc<Agents>, AgentError> {
        let trees = Trees {
            agents: store.tree("agents")?,
            agreements: store.tree("agreements")?,
            nonces: store.tree("nonces")?,
            tasks: store.tree("tasks")?,
        };
        let mut records = HashMap::new();
        for (_, v) in trees.agents.iter().flatten() {
            if let Ok(r) = serde_json::from_slice::<AgentRecord>(&v) {
                let r = r.with_plan();
                records.insert(r.agent_id.clone(), r);
            }
        }
        Ok(Arc::new(Agents {
            billing: HostBilling::open(key.clone(), cfg.billing.clone(), store)?,
            key,
            cfg,
            trees,
            meter: Meter::open(store)?,
            wasm,
            process,
            records: RwLock::new(records),
            deploying: Mutex::new(HashMap::new()),
            admission: tokio::sync::Mutex::new(()),
            net: OnceLock::new(),
            changed: Notify::new(),
            metrics,
            tasks_done: std::sync::atomic::AtomicU64::new(0),
            owner,
        }))
    }

    /// Connects the network client (used to fetch artifacts).
    pub fn set_network(&self, net: Client) {
        let _ = self.net.set(net);
    }

    /// The runtime that runs agents of `kind`.
    fn runtime(&self, kind: RuntimeKind) -> Result<&dyn Runtime, Rejection> {
        match kind {
            RuntimeKind::Wasi => Ok(self.wasm.as_ref()),
            RuntimeKind::Openclaw => self
                .process
                .as_deref()
                .map(|p| p as &dyn Runtime)
                .ok_or_else(|| reject("runtime_not_offered", "this host does not run OpenClaw")),
        }
    }

    fn logs(&self, rec: &AgentRecord, n: usize) -> Result<Vec<String>, RuntimeError> {
        match (rec.runtime, &self.process) {
            (RuntimeKind::Openclaw, Some(p)) => p.logs(&rec.agent_id, n),
            _ => self.wasm.logs(&rec.agent_id, n),
        }
    }

    /// CPU % and RSS of a process agent's tree, if sampled.
    fn sample(&self, rec: &AgentRecord) -> Option<sparebox_sandbox::process::Sample> {
        match (rec.runtime, &self.process) {
            (RuntimeKind::Openclaw, Some(p)) => p.sample(&rec.agent_id).ok(),
            _ => None,
        }
    }

    /// The paid-agreement side: commitments and the report outbox.
    pub fn billing(&self) -> &HostBilling {
        &self.billing
    }

    /// The data directory (for tests and the dashboard).
    pub fn data_dir(&self) -> &Path {
        &self.cfg.data_dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
name = "echo"
runtime = "wasi"

[artifact]
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
size = 10

[resources]
memory_mib = 96

[grants]
outbound_hosts = ["api.example.com"]
"#;

    fn record(plan: Option<AgentPlan>) -> AgentRecord {
        AgentRecord {
            agent_id: "echo-1".into(),
            name: "echo".into(),
            runtime: RuntimeKind::Wasi,
            offer_id: Id([1; 16]),
            deployer: Keypair::from_seed([2; 32]).public(),
            spec: SPEC.into(),
            resources: ResourceRequest::default(),
            state: State::Running,
            reason: None,
            created_at: 1,
            token_sha256: Digest([3; 32]),
            artifact_sha256: "00".repeat(32),
            schedule_every_secs: None,
            last_tick_at: 1,
            paid: None,
            plan,
        }
    }

    #[test]
    fn records_from_before_plans_read_the_same_and_get_their_plan_once() {
        let old = serde_json::to_string(&record(None)).unwrap();
        assert!(!old.contains("\"plan\""), "no plan key is written: {old}");
        let back: AgentRecord = serde_json::from_str(&old).unwrap();
        assert!(back.plan.is_none());
        let plan = back
            .with_plan()
            .plan
            .expect("resolved from the stored spec");
        assert_eq!(plan.limits.memory_bytes, 96 << 20);
        assert_eq!(
            plan.grants.outbound_hosts,
            vec!["api.example.com".to_string()]
        );
        assert_eq!(plan.openclaw, None);
    }

    #[test]
    fn a_stored_plan_is_read_back_not_recomputed() {
        let mut plan = AgentPlan::from_spec(&AgentSpec::parse(SPEC, "test").unwrap());
        plan.grants.llm_models = vec!["kept".into()];
        let json = serde_json::to_string(&record(Some(plan.clone()))).unwrap();
        let back: AgentRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back.with_plan().plan, Some(plan));
        // A record an older build reads: it ignores the plan key.
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(v["plan"]["limits"]["memory_bytes"].is_u64());
    }

    #[test]
    fn a_stored_spec_that_no_longer_parses_leaves_no_plan() {
        let mut r = record(None);
        r.spec = "not = [a spec".into();
        assert!(r.with_plan().plan.is_none());
    }
}
