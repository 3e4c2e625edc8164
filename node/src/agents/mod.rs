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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sparebox_sandbox::process::ProcessRuntime;
use sparebox_sandbox::wasm::WasmRuntime;
use sparebox_sandbox::{
    AgentGrants, AgentLimits, Artifact, OpenClawSettings, Runtime, RuntimeError, Task,
};
use tokio::sync::Notify;

pub use admission::{Admitted, Policy};

use crate::adverts::Reserved;
use crate::billing::{BillingConfig, HostBilling, Paid, Spend, Subject};
use crate::identity::{Keypair, PublicKey};
use crate::metering::Meter;
use crate::metrics::{Metrics, StateLabels};
use crate::network::Client;
use crate::owner::Owner;
use crate::protocol::rpc::{
    ARTIFACT_CHUNK, AgentView, ArtifactRequest, ArtifactResponse, ControlRequest, ControlResponse,
    DeployRequest, DeployResponse, Rejection, TaskView,
};
use crate::protocol::{
    Agreement, Checks, ControlAction, ControlCommand, Digest, Envelope, Id, Message,
    ResourceRequest, RuntimeKind, UsageCounters, now_secs, open, sha256,
};
use crate::spec::{AgentSpec, ResolvedSpec};
use crate::store::{Store, StoreError};

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
}

impl AgentError {
    pub fn code(&self) -> &'static str {
        match self {
            AgentError::UnknownAgent(_) => "unknown_agent",
            AgentError::Unauthorized(_) => "unauthorized",
            AgentError::NotRunning(_) => "not_running",
            AgentError::BadRequest(_) => "bad_request",
            AgentError::Store(_) => "storage",
        }
    }
}

/// A message for an agent, as the agent API takes it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewMessage {
    pub content: String,
    pub thread_id: Option<String>,
    pub author: Option<String>,
    #[serde(default)]
    pub context: Vec<ContextMessage>,
    #[serde(default)]
    pub mentions: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextMessage {
    pub author: String,
    pub content: String,
}

/// A stored task, with its creation time for retention.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TaskRecord {
    view: TaskView,
    created_at: u64,
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

fn runtime_rejection(e: &RuntimeError) -> Rejection {
    Rejection::new(e.code(), e.to_string())
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    // The OS random source failing is not recoverable; an all-zero token
    // would be guessable, so fall back to a time-derived value only for ids.
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
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
    ) -> Result<Arc<Agents>, StoreError> {
        let trees = Trees {
            agents: store.tree("agents")?,
            agreements: store.tree("agreements")?,
            nonces: store.tree("nonces")?,
            tasks: store.tree("tasks")?,
        };
        let mut records = HashMap::new();
        for (_, v) in trees.agents.iter().flatten() {
            if let Ok(r) = serde_json::from_slice::<AgentRecord>(&v) {
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

    /// What each paid agreement has earned so far, by its last signed
    /// usage report, and how many reports wait or were refused.
    pub fn earnings(&self) -> serde_json::Value {
        let records = self.records.read().unwrap_or_else(|p| p.into_inner());
        let mut total = 0u64;
        let mut rows = Vec::new();
        for r in records.values() {
            let Some(paid) = &r.paid else { continue };
            let rep = self.billing.reported(&r.offer_id);
            let charged = paid.price.charge_for(&rep.counters);
            total += charged;
            rows.push(serde_json::json!({
                "offerId": r.offer_id.to_string(),
                "agentId": r.agent_id,
                "market": paid.market_url,
                "chargedCents": charged,
                "centsPerHour": paid.price.cents_per_hour,
                "maxTotalCents": paid.cap_cents,
                "seq": rep.seq,
                "lastReportAt": rep.at,
            }));
        }
        serde_json::json!({
            "currency": "usd",
            "earnedCents": total,
            "agreements": rows,
            "pendingReports": self.billing.pending(),
            "rejectedReports": self.billing.rejected(),
        })
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

    fn artifacts_dir(&self) -> PathBuf {
        self.cfg.data_dir.join("artifacts")
    }

    fn artifact_path(&self, sha: &str) -> PathBuf {
        self.artifacts_dir().join(format!("{sha}.wasm"))
    }

    /// Capacity promised to agents, including those being deployed.
    pub fn reserved(&self) -> Reserved {
        let mut r = Reserved::default();
        let mut add = |req: &ResourceRequest| {
            r.resources.cpu_millis += req.resources.cpu_millis;
            r.resources.memory_mib += req.resources.memory_mib;
            r.resources.disk_mib += req.resources.disk_mib;
            r.agents += 1;
        };
        for rec in self
            .records
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            add(&rec.resources);
        }
        for req in self
            .deploying
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            add(req);
        }
        r
    }

    /// A copy of every agent record, so no lock is held across awaits.
    fn snapshot(&self) -> Vec<AgentRecord> {
        self.records
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Re-deploys every persisted agent into the runtime (after a restart)
    /// and removes runtime directories no record owns. Returns how many
    /// agents were restored.
    pub async fn restore(&self) -> usize {
        let records = self.snapshot();
        let mut restored = 0;
        for rec in records {
            let result = self.deploy_into_runtime(&rec).await;
            match result {
                Ok(()) => {
                    if rec.state == State::Stopped
                        && let Ok(rt) = self.runtime(rec.runtime)
                    {
                        let _ = rt.stop(&rec.agent_id).await;
                    }
                    restored += 1;
                }
                Err(e) => {
                    tracing::error!(agent = %rec.agent_id, "cannot restore: {e}");
                    let _ = self.set_state(&rec.agent_id, State::Failed, Some(e.message));
                }
            }
        }
        // Orphans of a deploy that was killed before its record was written.
        let known: Vec<String> = self
            .records
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        let agents_root = self.cfg.data_dir.join("wasm").join("agents");
        if let Ok(dir) = std::fs::read_dir(&agents_root) {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if !known.contains(&name) {
                    tracing::info!(dir = %e.path().display(), "removing leftovers of an unfinished deploy");
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        restored
    }

    async fn deploy_into_runtime(&self, rec: &AgentRecord) -> Result<(), Rejection> {
        let spec = AgentSpec::parse(&rec.spec, "(stored)")
            .map_err(|e| reject("bad_spec", e.to_string()))?;
        let (limits, grants) = limits_and_grants(&spec);
        let artifact = match rec.runtime {
            RuntimeKind::Wasi => Artifact::Component {
                sha256: rec.artifact_sha256.clone(),
                bytes: std::fs::read(self.artifact_path(&rec.artifact_sha256)).map_err(|e| {
                    reject(
                        "artifact_unavailable",
                        format!("component {}: {e}", rec.artifact_sha256),
                    )
                })?,
            },
            RuntimeKind::Openclaw => {
                let oc = spec
                    .openclaw
                    .as_ref()
                    .ok_or_else(|| reject("spec_mismatch", "an openclaw spec needs [openclaw]"))?;
                Artifact::OpenClaw(OpenClawSettings {
                    model: oc.model.clone(),
                    system_prompt: oc.system_prompt.clone(),
                    files: oc
                        .files
                        .iter()
                        .map(|(k, v)| (k.clone(), v.content.clone().unwrap_or_default()))
                        .collect(),
                    tools: spec.grants.tools.clone(),
                })
            }
        };
        self.runtime(rec.runtime)?
            .deploy(sparebox_sandbox::DeployRequest {
                agent_id: rec.agent_id.clone(),
                artifact,
                limits,
                grants,
            })
            .await
            .map_err(|e| runtime_rejection(&e))
    }

    /// Handles `/sparebox/deploy/1`: every admission check, then the
    /// artifact fetch, then the runtime, then the signed agreement.
    pub async fn offer(&self, from: PublicKey, req: DeployRequest) -> DeployResponse {
        let started = Instant::now();
        let r = if self.owner.accepting() {
            self.offer_inner(from, req.clone()).await
        } else {
            DeployResponse::Rejected(Rejection::new(
                "offers_paused",
                "this host is not taking new offers right now",
            ))
        };
        self.owner
            .record_offer(crate::owner::OfferRecord::new(&req, &r, now_secs()));
        match &r {
            DeployResponse::Accepted { agent_id, .. } => {
                self.metrics.offer("accepted", "none");
                tracing::info!(agent = %agent_id, ms = started.elapsed().as_millis() as u64, "offer accepted");
                self.changed.notify_one();
            }
            DeployResponse::Rejected(rej) => {
                self.metrics.offer("rejected", &rej.code);
                tracing::info!(code = %rej.code, "offer rejected: {}", rej.message);
            }
        }
        r
    }

    async fn offer_inner(&self, from: PublicKey, req: DeployRequest) -> DeployResponse {
        let now = now_secs();
        let prices = self.owner.prices();
        let admitted = match self
            .cfg
            .policy
            .check_at(&req.offer, &req.spec, now, &prices)
        {
            Ok(a) => a,
            Err(r) => return DeployResponse::Rejected(r),
        };
        let offer = &admitted.offer.message;
        if let Err(r) = self.use_nonce(&offer.nonce, offer.expires_at) {
            return DeployResponse::Rejected(r);
        }
        let spec = &admitted.spec.spec;
        let agent_id = format!("{}-{}", spec.name, &hex::encode(offer.offer_id.0)[..8]);
        {
            // Capacity check and reservation happen together.
            let _guard = self.admission.lock().await;
            if let Err(r) = self.cfg.policy.fits(&self.reserved(), offer) {
                return DeployResponse::Rejected(r);
            }
            if let Some((paid, voucher_cap)) = &admitted.paid
                && let Err(r) = self.billing.commit(paid, *voucher_cap)
            {
                return DeployResponse::Rejected(r);
            }
            self.deploying
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(agent_id.clone(), offer.resources);
        }
        let result = self.finish_deploy(from, &admitted, &agent_id, now).await;
        if result.is_err()
            && let Some((paid, _)) = &admitted.paid
        {
            self.billing.release(paid, 0);
        }
        self.deploying
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&agent_id);
        match result {
            Ok(r) => r,
            Err(r) => DeployResponse::Rejected(r),
        }
    }

    async fn finish_deploy(
        &self,
        from: PublicKey,
        admitted: &Admitted,
        agent_id: &str,
        now: u64,
    ) -> Result<DeployResponse, Rejection> {
        let (offer_env, offer, spec) = (
            &admitted.offer.envelope,
            &admitted.offer.message,
            &admitted.spec,
        );
        let paid = admitted.paid.as_ref().map(|(p, _)| p.clone());
        // WASI agents need their component; OpenClaw agents are configured
        // entirely by the spec.
        let artifact = match offer.runtime {
            RuntimeKind::Wasi => {
                let sha = spec
                    .spec
                    .artifact
                    .as_ref()
                    .and_then(|a| a.sha256.clone())
                    .ok_or_else(|| reject("spec_mismatch", "a wasi spec needs artifact.sha256"))?;
                self.ensure_artifact(from, &sha, spec.spec.artifact.as_ref().and_then(|a| a.size))
                    .await?;
                sha
            }
            RuntimeKind::Openclaw => String::new(),
        };
        let token = random_hex(32);
        let rec = AgentRecord {
            agent_id: agent_id.to_string(),
            name: spec.spec.name.clone(),
            runtime: offer.runtime,
            offer_id: offer.offer_id,
            deployer: offer.deployer,
            spec: spec.document.clone(),
            resources: offer.resources,
            state: State::Running,
            reason: None,
            created_at: now,
            token_sha256: sha256(token.as_bytes()),
            artifact_sha256: artifact,
            schedule_every_secs: spec.spec.schedule.as_ref().map(|s| s.every.as_secs()),
            last_tick_at: now,
            paid,
        };
        self.deploy_into_runtime(&rec).await?;
        let agreement = Agreement {
            version: Agreement::VERSION,
            offer: offer_env.clone(),
            offer_id: offer.offer_id,
            host: self.key.public(),
            deployer: offer.deployer,
            agent_id: agent_id.to_string(),
            accepted_at: now,
            token_sha256: rec.token_sha256,
        };
        let env = match Envelope::seal(&agreement, &self.key) {
            Ok(e) => e,
            Err(e) => {
                if let Ok(rt) = self.runtime(rec.runtime) {
                    let _ = rt.undeploy(agent_id).await;
                }
                return Err(reject("internal", e.to_string()));
            }
        };
        let bytes = env.to_bytes();
        if let Err(e) = self.persist_new(&rec, &bytes) {
            if let Ok(rt) = self.runtime(rec.runtime) {
                let _ = rt.undeploy(agent_id).await;
            }
            return Err(reject("storage", e.to_string()));
        }
        self.records
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(agent_id.to_string(), rec);
        Ok(DeployResponse::Accepted {
            agreement: bytes,
            agent_id: agent_id.to_string(),
            api_url: format!("{}/api/agents/{agent_id}", self.cfg.api_url),
            token,
        })
    }

    fn persist_new(&self, rec: &AgentRecord, agreement: &[u8]) -> Result<(), StoreError> {
        use sled::Transactional;
        let json = serde_json::to_vec(rec).map_err(|e| StoreError::Op {
            op: "encode agent",
            source: sled::Error::Unsupported(e.to_string()),
        })?;
        (&self.trees.agents, &self.trees.agreements)
            .transaction(|(agents, agreements)| {
                agents.insert(rec.agent_id.as_bytes(), json.as_slice())?;
                agreements.insert(&rec.offer_id.0, agreement)?;
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| StoreError::Op {
                op: "write agent",
                source: sled::Error::Unsupported(format!("{e:?}")),
            })?;
        self.trees.agents.flush().map_err(db("flush"))?;
        Ok(())
    }

    /// Marks a nonce used; fails if it already was. Nonces are kept until
    /// their message expires (plus the clock skew).
    fn use_nonce(&self, nonce: &Id, expires_at: u64) -> Result<(), Rejection> {
        let keep = expires_at.saturating_add(self.cfg.policy.max_skew_secs);
        match self.trees.nonces.compare_and_swap(
            nonce.0,
            None as Option<&[u8]>,
            Some(&keep.to_be_bytes()[..]),
        ) {
            Ok(Ok(())) => {
                let _ = self.trees.nonces.flush();
                Ok(())
            }
            Ok(Err(_)) => Err(reject(
                "replayed_nonce",
                format!("nonce {nonce} was already used"),
            )),
            Err(e) => Err(reject("storage", e.to_string())),
        }
    }

    /// Makes sure `<data>/artifacts/<sha>.wasm` exists, fetching it from the
    /// deployer over `/sparebox/artifact/1` in verified chunks.
    async fn ensure_artifact(
        &self,
        from: PublicKey,
        sha: &str,
        size: Option<u64>,
    ) -> Result<(), Rejection> {
        let path = self.artifact_path(sha);
        if path.exists() {
            return Ok(());
        }
        let Some(net) = self.net.get() else {
            return Err(reject(
                "artifact_unavailable",
                "no network to fetch the component",
            ));
        };
        let mut digest_bytes = [0u8; 32];
        hex::decode_to_slice(sha, &mut digest_bytes)
            .map_err(|_| reject("spec_mismatch", format!("bad artifact sha256 {sha}")))?;
        let digest = Digest(digest_bytes);
        let mut data: Vec<u8> = Vec::new();
        let mut total = size.unwrap_or(u64::MAX);
        while (data.len() as u64) < total {
            let resp = net
                .artifact(
                    from,
                    ArtifactRequest {
                        sha256: digest,
                        offset: data.len() as u64,
                    },
                )
                .await
                .map_err(|e| reject("artifact_unavailable", e.to_string()))?;
            match resp {
                ArtifactResponse::Chunk {
                    total: t,
                    data: chunk,
                } => {
                    if t > MAX_ARTIFACT || size.is_some_and(|s| s != t) {
                        return Err(reject(
                            "artifact_mismatch",
                            format!("component size {t} does not match the spec"),
                        ));
                    }
                    total = t;
                    if chunk.is_empty() || chunk.len() > ARTIFACT_CHUNK as usize {
                        return Err(reject("artifact_mismatch", "bad chunk size"));
                    }
                    data.extend_from_slice(&chunk);
                    if data.len() as u64 > total {
                        return Err(reject("artifact_mismatch", "more bytes than announced"));
                    }
                }
                ArtifactResponse::NotFound => {
                    return Err(reject(
                        "artifact_unavailable",
                        format!("the deployer does not serve component {sha}"),
                    ));
                }
            }
        }
        if sha256(&data) != digest {
            return Err(reject(
                "artifact_mismatch",
                format!("the bytes received do not hash to {sha}"),
            ));
        }
        let dir = self.artifacts_dir();
        let tmp = dir.join(format!("{sha}.part"));
        std::fs::create_dir_all(&dir)
            .and_then(|_| std::fs::write(&tmp, &data))
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| reject("storage", format!("{}: {e}", path.display())))?;
        Ok(())
    }

    fn set_state(&self, id: &str, state: State, reason: Option<String>) -> Result<(), StoreError> {
        let mut records = self.records.write().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = records.get_mut(id) {
            r.state = state;
            r.reason = reason;
            self.save(r)?;
        }
        Ok(())
    }

    fn save(&self, r: &AgentRecord) -> Result<(), StoreError> {
        let json = serde_json::to_vec(r).map_err(|e| StoreError::Op {
            op: "encode agent",
            source: sled::Error::Unsupported(e.to_string()),
        })?;
        self.trees
            .agents
            .insert(r.agent_id.as_bytes(), json)
            .map_err(db("write agent"))?;
        self.trees.agents.flush().map_err(db("flush"))?;
        Ok(())
    }

    fn record(&self, id: &str) -> Option<AgentRecord> {
        self.records
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    fn view(&self, r: &AgentRecord) -> AgentView {
        AgentView {
            agent_id: r.agent_id.clone(),
            name: r.name.clone(),
            runtime: r.runtime,
            state: r.state.as_str().to_string(),
            reason: r.reason.clone(),
            deployer: r.deployer.to_string(),
            offer_id: r.offer_id,
            created_at: r.created_at,
            usage: self.meter.get(&r.offer_id).unwrap_or_default(),
            cpu_percent: self.sample(r).map(|s| s.cpu_percent),
            rss_bytes: self.sample(r).map(|s| s.rss_bytes),
        }
    }

    /// Every agent, sorted by id.
    pub fn list(&self) -> Vec<AgentView> {
        let records = self.records.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<AgentView> = records.values().map(|r| self.view(r)).collect();
        v.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        v
    }

    /// How many agents this node holds.
    pub fn count(&self) -> usize {
        self.records.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn usage_totals(&self) -> UsageCounters {
        self.meter.totals()
    }

    pub fn tasks_completed(&self) -> u64 {
        self.tasks_done.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Handles `/sparebox/control/1`: a command signed by the deployer of
    /// the agent's agreement, addressed to this host, with a fresh nonce.
    pub async fn control(
        self: &Arc<Self>,
        _from: PublicKey,
        req: ControlRequest,
    ) -> ControlResponse {
        let checks = Checks::now()
            .with_max_skew(self.cfg.policy.max_skew_secs)
            .with_audience(self.key.public());
        let cmd = match open::<ControlCommand>(&req.command, &checks) {
            Ok(v) => v.message,
            Err(e) => return ControlResponse::Rejected(reject(e.code(), e.to_string())),
        };
        let Some(rec) = self.record(&cmd.agent_id) else {
            return ControlResponse::Rejected(reject(
                "unknown_agent",
                format!("no agent `{}` on this host", cmd.agent_id),
            ));
        };
        if rec.deployer != cmd.deployer || rec.offer_id != cmd.offer_id {
            return ControlResponse::Rejected(reject(
                "not_your_agent",
                format!("agent `{}` belongs to another deployer", cmd.agent_id),
            ));
        }
        if let Err(r) = self.use_nonce(&cmd.nonce, cmd.expires_at) {
            return ControlResponse::Rejected(r);
        }
        tracing::info!(agent = %rec.agent_id, action = cmd.action.name(), "control command");
        match self.apply(&rec, cmd.action).await {
            Ok(r) => r,
            Err(r) => ControlResponse::Rejected(r),
        }
    }

    /// An action by the host's owner (the dashboard, authorized by the
    /// owner token): the same effect as the deployer's command.
    pub async fn owner_action(
        self: &Arc<Self>,
        agent_id: &str,
        action: ControlAction,
    ) -> ControlResponse {
        let Some(rec) = self.record(agent_id) else {
            return ControlResponse::Rejected(reject(
                "unknown_agent",
                format!("no agent `{agent_id}` on this host"),
            ));
        };
        tracing::info!(agent = %rec.agent_id, action = action.name(), "owner action");
        match self.apply(&rec, action).await {
            Ok(r) => r,
            Err(r) => ControlResponse::Rejected(r),
        }
    }

    /// The last `n` log lines of an agent, for the dashboard.
    pub fn agent_logs(&self, agent_id: &str, n: usize) -> Result<Vec<String>, AgentError> {
        let rec = self
            .record(agent_id)
            .ok_or_else(|| AgentError::UnknownAgent(agent_id.to_string()))?;
        self.logs(&rec, n.min(10_000))
            .map_err(|e| AgentError::BadRequest(e.to_string()))
    }

    async fn apply(
        self: &Arc<Self>,
        rec: &AgentRecord,
        action: ControlAction,
    ) -> Result<ControlResponse, Rejection> {
        let id = rec.agent_id.as_str();
        let state_err = |e: StoreError| reject("storage", e.to_string());
        let rt = self.runtime(rec.runtime)?;
        match action {
            ControlAction::Start | ControlAction::Restart
                if rec.paid.as_ref().is_some_and(|p| {
                    self.billing
                        .exhausted(p, &self.meter.get(&rec.offer_id).unwrap_or_default())
                }) =>
            {
                return Err(reject(
                    "voucher_exhausted",
                    "the agreement has spent its cap; deploy with a new voucher to continue",
                ));
            }
            ControlAction::Start => {
                rt.start(id).await.map_err(|e| runtime_rejection(&e))?;
                self.set_state(id, State::Running, None)
                    .map_err(state_err)?;
            }
            ControlAction::Stop => {
                rt.stop(id).await.map_err(|e| runtime_rejection(&e))?;
                self.set_state(id, State::Stopped, None)
                    .map_err(state_err)?;
            }
            ControlAction::Restart => {
                rt.stop(id).await.map_err(|e| runtime_rejection(&e))?;
                rt.start(id).await.map_err(|e| runtime_rejection(&e))?;
                self.set_state(id, State::Running, None)
                    .map_err(state_err)?;
            }
            ControlAction::Undeploy => {
                let _ = rt.undeploy(id).await;
                // The last report, then what the agreement did not spend
                // goes back to its voucher.
                if let Some(paid) = &rec.paid {
                    let usage = self.meter.get(&rec.offer_id).unwrap_or_default();
                    let subject = Subject {
                        offer_id: rec.offer_id,
                        deployer: rec.deployer,
                        agent_id: id,
                    };
                    if let Err(e) = self
                        .billing
                        .report(paid, &subject, usage, false, now_secs())
                    {
                        tracing::error!(agent = %id, "cannot queue the final usage report: {e}");
                    }
                    self.billing.release(paid, paid.price.charge_for(&usage));
                }
                self.trees
                    .agents
                    .remove(id.as_bytes())
                    .map_err(|e| reject("storage", e.to_string()))?;
                let _ = self.trees.agents.flush();
                self.records
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(id);
                self.changed.notify_one();
                let mut view = self.view(rec);
                view.state = "undeployed".into();
                return Ok(ControlResponse::Agent(view));
            }
            ControlAction::UpdateConfig { spec, spec_sha256 } => {
                let new = ResolvedSpec::from_document(&spec, &spec_sha256)
                    .map_err(|e| reject("spec_mismatch", e.to_string()))?;
                let old = AgentSpec::parse(&rec.spec, "(stored)")
                    .map_err(|e| reject("bad_spec", e.to_string()))?;
                if new.spec.runtime != rec.runtime
                    || rec.runtime != RuntimeKind::Wasi
                    || new.spec.artifact.as_ref().and_then(|a| a.sha256.clone())
                        != old.artifact.as_ref().and_then(|a| a.sha256.clone())
                    || new.spec.resource_request() != rec.resources
                {
                    return Err(reject(
                        "update_not_supported",
                        "update-config may change a WASI agent's grants, schedule and settings, not its runtime, artifact or resources, and not an OpenClaw agent (deploy a new offer for those)",
                    ));
                }
                let (limits, grants) = limits_and_grants(&new.spec);
                self.wasm
                    .reconfigure(id, limits, grants)
                    .map_err(|e| runtime_rejection(&e))?;
                let mut records = self.records.write().unwrap_or_else(|p| p.into_inner());
                if let Some(r) = records.get_mut(id) {
                    r.spec = new.document;
                    r.schedule_every_secs = new.spec.schedule.as_ref().map(|s| s.every.as_secs());
                    self.save(r).map_err(state_err)?;
                }
            }
            ControlAction::Status => {}
            ControlAction::Logs { tail } => {
                let lines = self
                    .logs(rec, tail.min(10_000) as usize)
                    .map_err(|e| runtime_rejection(&e))?;
                return Ok(ControlResponse::Logs { lines });
            }
            ControlAction::Message { content, thread_id } => {
                let msg = NewMessage {
                    content,
                    thread_id,
                    author: Some(rec.deployer.to_string()),
                    ..Default::default()
                };
                let task = self
                    .clone()
                    .run_message(id, msg)
                    .await
                    .map_err(|e| reject(e.code(), e.to_string()))?;
                return Ok(ControlResponse::Reply(task));
            }
        }
        let rec = self.record(id).ok_or_else(|| reject("unknown_agent", id))?;
        Ok(ControlResponse::Agent(self.view(&rec)))
    }

    /// Checks the agent API bearer token.
    pub fn authorize(
        &self,
        agent_id: &str,
        token: Option<&str>,
    ) -> Result<AgentRecord, AgentError> {
        let rec = self
            .record(agent_id)
            .ok_or_else(|| AgentError::UnknownAgent(agent_id.to_string()))?;
        match token {
            Some(t) if sha256(t.as_bytes()) == rec.token_sha256 => Ok(rec),
            _ => Err(AgentError::Unauthorized(agent_id.to_string())),
        }
    }

    /// Queues a message for an agent and returns the task at once.
    pub fn submit(
        self: &Arc<Self>,
        agent_id: &str,
        msg: NewMessage,
    ) -> Result<TaskView, AgentError> {
        let (view, task) = self.new_task(agent_id, msg)?;
        let this = self.clone();
        let id = agent_id.to_string();
        let task_id = view.task_id.clone();
        tokio::spawn(async move {
            this.execute(&id, task_id, task).await;
        });
        Ok(view)
    }

    /// Runs a message to completion (control `message`).
    pub async fn run_message(
        self: Arc<Self>,
        agent_id: &str,
        msg: NewMessage,
    ) -> Result<TaskView, AgentError> {
        let (view, task) = self.new_task(agent_id, msg)?;
        Ok(self.execute(agent_id, view.task_id, task).await)
    }

    fn new_task(&self, agent_id: &str, msg: NewMessage) -> Result<(TaskView, Task), AgentError> {
        let rec = self
            .record(agent_id)
            .ok_or_else(|| AgentError::UnknownAgent(agent_id.to_string()))?;
        if rec.state != State::Running {
            return Err(AgentError::NotRunning(agent_id.to_string()));
        }
        if msg.content.len() > 256 * 1024 {
            return Err(AgentError::BadRequest("content is over 256 KiB".into()));
        }
        let task_id = format!("t-{}", random_hex(12));
        let view = TaskView {
            task_id: task_id.clone(),
            agent_id: agent_id.to_string(),
            status: "queued".into(),
            result: None,
            error: None,
            duration_ms: None,
            tokens_used: 0,
        };
        self.put_task(&view)?;
        let task = Task {
            id: task_id,
            thread_id: msg.thread_id,
            content: msg.content,
            author: msg.author,
            context: msg
                .context
                .into_iter()
                .map(|c| (c.author, c.content))
                .collect(),
            mentions: msg.mentions,
        };
        Ok((view, task))
    }

    async fn execute(&self, agent_id: &str, task_id: String, task: Task) -> TaskView {
        let mut view = TaskView {
            task_id: task_id.clone(),
            agent_id: agent_id.to_string(),
            status: "processing".into(),
            result: None,
            error: None,
            duration_ms: None,
            tokens_used: 0,
        };
        let _ = self.put_task(&view);
        let started = Instant::now();
        let runtime = self
            .record(agent_id)
            .map_or(RuntimeKind::Wasi, |r| r.runtime);
        let outcome = match self.runtime(runtime) {
            Ok(rt) => rt.execute(agent_id, task).await,
            Err(r) => Err(RuntimeError::Setup(r.message)),
        };
        let elapsed = started.elapsed();
        self.metrics.task_seconds.observe(elapsed.as_secs_f64());
        let ms = elapsed.as_millis() as u64;
        view.duration_ms = Some(ms);
        match outcome {
            Ok(o) => {
                view.status = "completed".into();
                view.result = Some(o.reply);
                view.tokens_used = o.tokens_used;
            }
            Err(e) => {
                view.status = "failed".into();
                view.error = Some(e.code().to_string());
                view.result = Some(e.to_string());
            }
        }
        self.metrics
            .tasks
            .get_or_create(&StateLabels {
                state: view.status.clone(),
            })
            .inc();
        self.metrics.tokens.inc_by(view.tokens_used);
        self.tasks_done
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(rec) = self.record(agent_id) {
            let _ = self.meter.add(
                &rec.offer_id,
                UsageCounters {
                    cpu_ms: ms,
                    tokens: view.tokens_used,
                    tasks: 1,
                    ..Default::default()
                },
            );
        }
        let _ = self.put_task(&view);
        view
    }

    fn put_task(&self, view: &TaskView) -> Result<(), StoreError> {
        let rec = TaskRecord {
            view: view.clone(),
            created_at: now_secs(),
        };
        let json = serde_json::to_vec(&rec).unwrap_or_default();
        self.trees
            .tasks
            .insert(view.task_id.as_bytes(), json)
            .map_err(db("write task"))?;
        Ok(())
    }

    /// A task by id, with the agent's bearer token.
    pub fn task(&self, task_id: &str, token: Option<&str>) -> Result<TaskView, AgentError> {
        let unknown = || AgentError::BadRequest(format!("no task `{task_id}`"));
        let v = self
            .trees
            .tasks
            .get(task_id.as_bytes())
            .map_err(db("read task"))?
            .ok_or_else(unknown)?;
        let rec: TaskRecord = serde_json::from_slice(&v).map_err(|_| unknown())?;
        self.authorize(&rec.view.agent_id, token)?;
        Ok(rec.view)
    }

    /// Background duties, every second: scheduled ticks, usage metering of
    /// running agents, and expiry of old tasks and nonces.
    pub async fn run_background(self: Arc<Self>) {
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_meter = Instant::now();
        let mut last_report = Instant::now();
        let mut last_purge = Instant::now();
        let report_every = self.cfg.billing.report_interval;
        let meter_every = report_every.min(Duration::from_secs(10)).as_secs().max(1);
        loop {
            interval.tick().await;
            let now = now_secs();
            let records = self.snapshot();
            for r in &records {
                if r.state == State::Running
                    && let Some(every) = r.schedule_every_secs
                    && tick_due(r.last_tick_at, every, now)
                {
                    self.tick(&r.agent_id, now).await;
                }
            }
            let secs = last_meter.elapsed().as_secs();
            if secs >= meter_every {
                last_meter += Duration::from_secs(secs);
                for r in records.iter().filter(|r| r.state == State::Running) {
                    // Process agents are metered from their samples; WASI
                    // agents by reservation (their CPU is counted per task).
                    let (cpu_ms, mib) = match self.sample(r) {
                        Some(s) => (
                            (f64::from(s.cpu_percent) * 10.0 * secs as f64) as u64,
                            s.rss_bytes >> 20,
                        ),
                        None => (0, u64::from(r.resources.resources.memory_mib)),
                    };
                    let _ = self.meter.add(
                        &r.offer_id,
                        UsageCounters {
                            wall_secs: secs,
                            cpu_ms,
                            memory_mib_secs: secs * mib,
                            ..Default::default()
                        },
                    );
                }
            }
            if last_report.elapsed() >= report_every {
                last_report = Instant::now();
                self.report_usage(&records, now).await;
            }
            if last_purge.elapsed() >= Duration::from_secs(600) {
                last_purge = Instant::now();
                self.purge(now);
            }
        }
    }

    /// Signs and queues each paid agreement's usage report; warns near the
    /// cap and stops an agent before it would run past it.
    async fn report_usage(&self, records: &[AgentRecord], now: u64) {
        for r in records {
            let Some(paid) = &r.paid else { continue };
            let usage = self.meter.get(&r.offer_id).unwrap_or_default();
            let running = r.state == State::Running;
            let subject = Subject {
                offer_id: r.offer_id,
                deployer: r.deployer,
                agent_id: &r.agent_id,
            };
            match self.billing.report(paid, &subject, usage, running, now) {
                Ok(Spend::Ok) => {}
                Ok(Spend::Warn { spent, cap }) => tracing::warn!(
                    agent = %r.agent_id,
                    spent, cap,
                    "the agreement has spent {spent} of its {cap} cents; it will be stopped before it runs past the cap"
                ),
                Ok(Spend::Exhausted { spent, cap }) => {
                    tracing::warn!(agent = %r.agent_id, spent, cap, "voucher exhausted: stopping the agent");
                    if let Ok(rt) = self.runtime(r.runtime) {
                        let _ = rt.stop(&r.agent_id).await;
                    }
                    let _ = self.set_state(
                        &r.agent_id,
                        State::Stopped,
                        Some(format!(
                            "voucher_exhausted: spent {spent} of {cap} cents; deploy with a new voucher to continue"
                        )),
                    );
                    self.changed.notify_one();
                }
                Err(e) => tracing::error!(agent = %r.agent_id, "cannot queue a usage report: {e}"),
            }
        }
    }

    /// The paid-agreement side: commitments and the report outbox.
    pub fn billing(&self) -> &HostBilling {
        &self.billing
    }

    async fn tick(&self, agent_id: &str, now: u64) {
        // Record the tick first: a tick missed while the node was down fires
        // once after restart, never in a burst.
        {
            let mut records = self.records.write().unwrap_or_else(|p| p.into_inner());
            if let Some(r) = records.get_mut(agent_id) {
                r.last_tick_at = now;
                let _ = self.save(r);
            }
        }
        match self.wasm.tick(agent_id).await {
            Ok(_) => tracing::debug!(agent = %agent_id, "tick"),
            Err(e) => tracing::warn!(agent = %agent_id, code = e.code(), "tick failed: {e}"),
        }
    }

    fn purge(&self, now: u64) {
        for (k, v) in self.trees.nonces.iter().flatten() {
            let keep = <[u8; 8]>::try_from(v.as_ref()).map_or(0, u64::from_be_bytes);
            if keep < now {
                let _ = self.trees.nonces.remove(k);
            }
        }
        for (k, v) in self.trees.tasks.iter().flatten() {
            let old = serde_json::from_slice::<TaskRecord>(&v)
                .map_or(true, |t| t.created_at + TASK_RETENTION_SECS < now);
            if old {
                let _ = self.trees.tasks.remove(k);
            }
        }
    }

    /// Sets the agents-by-state gauges (before a metrics scrape).
    pub fn update_gauges(&self) {
        let mut counts: HashMap<&'static str, i64> =
            HashMap::from([("running", 0), ("stopped", 0), ("failed", 0)]);
        for r in self
            .records
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            *counts.entry(r.state.as_str()).or_default() += 1;
        }
        let deploying = self
            .deploying
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len() as i64;
        counts.insert("deploying", deploying);
        for r in self
            .records
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            if let Some(smp) = self.sample(r) {
                let l = crate::metrics::AgentLabels {
                    agent: r.agent_id.clone(),
                };
                self.metrics
                    .agent_rss
                    .get_or_create(&l)
                    .set(smp.rss_bytes as i64);
                self.metrics
                    .agent_cpu
                    .get_or_create(&l)
                    .set(f64::from(smp.cpu_percent));
            }
        }
        for (state, n) in counts {
            self.metrics
                .agents
                .get_or_create(&StateLabels {
                    state: state.into(),
                })
                .set(n);
        }
    }

    /// The data directory (for tests and the dashboard).
    pub fn data_dir(&self) -> &Path {
        &self.cfg.data_dir
    }
}

/// Whether a scheduled agent is due a tick.
pub fn tick_due(last_tick_at: u64, every_secs: u64, now: u64) -> bool {
    now >= last_tick_at.saturating_add(every_secs.max(1))
}

/// The sandbox limits and grants for a spec.
pub fn limits_and_grants(spec: &AgentSpec) -> (AgentLimits, AgentGrants) {
    let limits = AgentLimits {
        memory_bytes: (spec.resources.memory_mib as usize) << 20,
        task_timeout: spec.resources.task_timeout,
        ..AgentLimits::default()
    };
    let grants = AgentGrants {
        llm_models: spec.grants.llm_models.clone(),
        kv_max_bytes: spec.grants.kv.max_bytes,
        kv_max_keys: u64::from(spec.grants.kv.max_keys),
        outbound_hosts: spec.grants.outbound_hosts.clone(),
    };
    (limits, grants)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missed_tick_fires_once() {
        // Every 4h; the node was down for 10h.
        let every = 4 * 3600;
        assert!(!tick_due(1000, every, 1000 + every - 1));
        assert!(tick_due(1000, every, 1000 + every));
        let now = 1000 + 10 * 3600;
        assert!(tick_due(1000, every, now));
        // After it fires, last_tick_at = now, so the next is `every` later.
        assert!(!tick_due(now, every, now + 1));
    }
}
