//! The WASI runtime: untrusted agent components in wasmtime, with hard limits.
//!
//! Per agent: a compiled `Component` (shared through the compile cache by
//! every agent with the same artifact) and an `AgentPre` (pre-linked
//! `InstancePre`). Per task: a fresh `Store` with
//! - a memory cap summed over all of the store's memories ([`host::MemoryCap`]),
//! - a host-call budget and a resource-table cap,
//! - an epoch deadline that yields every 10 ms tick, inside an outer
//!   wall-clock timeout that drops (cancels) the task,
//! - a WASI context with no environment, no args, no network, stdout and
//!   stderr captured into the agent's bounded log, and three preopens:
//!   `/workspace` (read-write), `/team` (read-only), `/memory` (read-write).
//!
//! In front of the engine sits admission control, fair between agents:
//! - each agent has a share of the task slots, from its CPU grant (one slot
//!   per 1000 millicores, at least one, at most `max_concurrent_per_agent`),
//!   so a noisy agent queues behind itself, not in front of the others;
//! - at most `max_concurrent` tasks run in all; an agent may have
//!   `agent_queue_capacity` tasks waiting, and `queue_capacity` may wait in
//!   all; past either, `QueueFull`.

mod disk;
mod engine;
pub mod host;
pub mod http;
pub mod kv;
pub mod log;
mod task;

use disk::DiskQuota;
use task::finish;

pub use engine::{AllocatorKind, CacheSource, EPOCH_TICK};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::Engine;
use wasmtime::component::Linker;

use crate::egress::HostPattern;
use crate::llm::LlmProvider;
use crate::runtime::{
    AgentGrants, AgentId, AgentLimits, AgentState, AgentStatus, Artifact, Capabilities,
    DeployRequest, Runtime, RuntimeError, Task, TaskOutcome,
};
use engine::ComponentCache;
use host::{AgentPre, TaskState};
use http::{HttpConfig, HttpPolicy};
use kv::KvStore;
use log::LogBuffer;

/// Runtime settings (the node maps its config onto these).
#[derive(Debug, Clone)]
pub struct WasmConfig {
    /// Root for agent directories (`agents/<id>/{workspace,team,memory}`) and
    /// the compile cache (`cache/`).
    pub root: PathBuf,
    /// Tasks executing at once. Default: 2 × CPUs.
    pub max_concurrent: usize,
    /// Tasks waiting beyond those. Default 256.
    pub queue_capacity: usize,
    /// Most tasks one agent may run at once, whatever its CPU grant.
    /// Default: half of `max_concurrent` (at least 1).
    pub max_concurrent_per_agent: usize,
    /// Tasks one agent may have waiting. Default 64.
    pub agent_queue_capacity: usize,
    /// Largest memory cap any agent may have, in bytes. Default 256 MiB.
    pub max_memory_per_agent: usize,
    /// wasm stack limit, in bytes. Default 512 KiB.
    pub max_wasm_stack: usize,
    /// Use the pooling allocator (falls back to on-demand if it cannot reserve). Default true.
    pub pooling: bool,
    /// Pool slots (concurrent instances). Default: `max_concurrent` + 16.
    pub pool_instances: u32,
    /// Outbound HTTP limits and address policy.
    pub http: HttpConfig,
}

impl WasmConfig {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        WasmConfig {
            root: root.into(),
            max_concurrent: cpus * 2,
            queue_capacity: 256,
            max_concurrent_per_agent: cpus.max(1),
            agent_queue_capacity: 64,
            max_memory_per_agent: 256 << 20,
            max_wasm_stack: 512 << 10,
            pooling: true,
            pool_instances: u32::try_from(cpus * 2 + 16).unwrap_or(64),
            http: HttpConfig::default(),
        }
    }
}

/// What every task of one agent shares.
#[derive(Debug)]
pub struct AgentShared {
    pub id: AgentId,
    pub limits: AgentLimits,
    pub grants: AgentGrants,
    /// `grants.outbound_hosts`, parsed.
    pub http_allow: Vec<HostPattern>,
    pub kv: KvStore,
    pub log: Arc<LogBuffer>,
    pub dir: PathBuf,
    /// `limits.disk_bytes` over `workspace` and `memory`; one per agent
    /// directory, kept across a reconfigure with the same cap.
    pub disk: Arc<DiskQuota>,
}

/// The disk quota of an agent whose directories are under `dir`.
fn disk_quota(dir: &Path, limits: &AgentLimits) -> Arc<DiskQuota> {
    Arc::new(DiskQuota::new(
        limits.disk_bytes,
        vec![dir.join("workspace"), dir.join("memory")],
    ))
}

struct Deployed {
    pre: AgentPre<TaskState>,
    shared: Arc<AgentShared>,
    running: AtomicBool,
    completed: AtomicU64,
    failed: AtomicU64,
    /// Tasks running or waiting.
    in_flight: AtomicU64,
    /// Tasks running (holding a slot).
    active: AtomicU64,
    /// This agent's share of the task slots.
    share: Arc<Semaphore>,
    share_size: usize,
}

/// Where an agent's tasks stand, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Tasks holding a slot.
    pub running: u64,
    /// Tasks waiting for one.
    pub waiting: u64,
    /// The agent's share: the most it may run at once.
    pub share: usize,
}

/// The WASI component runtime.
pub struct WasmRuntime {
    engine: Engine,
    allocator: AllocatorKind,
    linker: Linker<TaskState>,
    cache: ComponentCache,
    agents: RwLock<HashMap<AgentId, Arc<Deployed>>>,
    db: sled::Db,
    llm: Option<Arc<dyn LlmProvider>>,
    http: HttpPolicy,
    cfg: WasmConfig,
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
}

impl std::fmt::Debug for WasmRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmRuntime")
            .field("allocator", &self.allocator)
            .field("root", &self.cfg.root)
            .finish_non_exhaustive()
    }
}

impl WasmRuntime {
    /// Builds the engine (pooling, with fallback), starts the epoch ticker and
    /// links the host capabilities once. KV lives in `db`.
    pub fn new(
        cfg: WasmConfig,
        db: sled::Db,
        llm: Option<Arc<dyn LlmProvider>>,
    ) -> Result<Self, RuntimeError> {
        let (engine, allocator) = engine::build_engine(&cfg)?;
        engine::spawn_epoch_ticker(&engine)?;
        let mut linker = Linker::new(&engine);
        host::link(&mut linker)?;
        let cache = ComponentCache::new(&cfg.root.join("cache"), &engine)?;
        let http = HttpPolicy::new(cfg.http.clone())?;
        Ok(WasmRuntime {
            http,
            permits: Arc::new(Semaphore::new(cfg.max_concurrent.max(1))),
            engine,
            allocator,
            linker,
            cache,
            agents: RwLock::new(HashMap::new()),
            db,
            llm,
            cfg,
            waiting: AtomicUsize::new(0),
        })
    }

    /// Which allocator the engine ended up with.
    pub fn allocator(&self) -> AllocatorKind {
        self.allocator
    }

    /// Compiles (or loads from the cache) a component without deploying it.
    pub fn compile(
        &self,
        agent: &str,
        sha256: &str,
        bytes: &[u8],
    ) -> Result<CacheSource, RuntimeError> {
        self.cache
            .get_or_compile(&self.engine, agent, sha256, bytes)
            .map(|(_, s)| s)
    }

    /// The agent's last `n` log lines (its `log` calls and its stdout/stderr).
    pub fn logs(&self, agent: &str, n: usize) -> Result<Vec<String>, RuntimeError> {
        Ok(self.get(agent)?.shared.log.tail(n))
    }

    /// Replaces a deployed agent's limits and grants, keeping its compiled
    /// component, KV data, files and log. Tasks already running finish under
    /// the old settings.
    pub fn reconfigure(
        &self,
        agent: &str,
        limits: AgentLimits,
        grants: AgentGrants,
    ) -> Result<(), RuntimeError> {
        if limits.memory_bytes > self.cfg.max_memory_per_agent {
            return Err(RuntimeError::OverMemoryCap {
                asked: limits.memory_bytes,
                max: self.cfg.max_memory_per_agent,
            });
        }
        let http_allow = http_allow(&grants)?;
        let mut agents = self
            .agents
            .write()
            .map_err(|_| RuntimeError::Poisoned("agent table"))?;
        let old = agents
            .get(agent)
            .cloned()
            .ok_or_else(|| RuntimeError::UnknownAgent(agent.to_string()))?;
        let kv = KvStore::open(&self.db, agent, grants.kv_max_bytes, grants.kv_max_keys)?;
        let shared = Arc::new(AgentShared {
            id: old.shared.id.clone(),
            disk: if old.shared.disk.cap() == limits.disk_bytes {
                old.shared.disk.clone()
            } else {
                disk_quota(&old.shared.dir, &limits)
            },
            limits,
            grants,
            http_allow,
            kv,
            log: old.shared.log.clone(),
            dir: old.shared.dir.clone(),
        });
        let updated = Arc::new(Deployed {
            pre: old.pre.clone(),
            shared,
            running: AtomicBool::new(old.running.load(Ordering::SeqCst)),
            completed: AtomicU64::new(old.completed.load(Ordering::SeqCst)),
            failed: AtomicU64::new(old.failed.load(Ordering::SeqCst)),
            in_flight: AtomicU64::new(0),
            active: AtomicU64::new(0),
            share: old.share.clone(),
            share_size: old.share_size,
        });
        agents.insert(agent.to_string(), updated);
        Ok(())
    }

    /// The agent's host directory (holding `workspace`, `team`, `memory`).
    pub fn agent_dir(&self, agent: &str) -> Result<PathBuf, RuntimeError> {
        Ok(self.get(agent)?.shared.dir.clone())
    }

    /// Calls the agent's `on-tick` export (world `scheduled-agent`) under the
    /// same limits and admission as a task.
    pub async fn tick(&self, agent: &str) -> Result<TaskOutcome, RuntimeError> {
        let d = self.get(agent)?;
        if !d.running.load(Ordering::SeqCst) {
            return Err(RuntimeError::NotRunning(agent.to_string()));
        }
        let _permits = self.slot(&d).await?;
        let shared = &d.shared;
        let (mut store, stdout, stderr) = self.build_store(shared)?;
        let started = Instant::now();
        let limit = shared.limits.task_timeout;
        let run = async {
            let instance = d.pre.instance_pre().instantiate_async(&mut store).await?;
            let Ok(func) = instance.get_typed_func::<(), ()>(&mut store, "on-tick") else {
                return Ok(false);
            };
            func.call_async(&mut store, ()).await?;
            wasmtime::Result::Ok(true)
        };
        let result = tokio::time::timeout(limit, run).await;
        let (has_tick, outcome) = finish(&mut store, shared, &stdout, &stderr, started, result)?;
        if has_tick {
            Ok(outcome)
        } else {
            Err(RuntimeError::NoTick(agent.to_string()))
        }
    }

    /// An agent's share of the task slots: one per 1000 millicores of its
    /// CPU grant, at least one, at most `max_concurrent_per_agent`.
    fn share_for(&self, limits: &AgentLimits) -> usize {
        let by_cpu = (limits.cpu_millis as usize).div_ceil(1000).max(1);
        by_cpu.min(self.cfg.max_concurrent_per_agent.max(1))
    }

    /// Waits for one of the agent's own slots, then for a global one: an
    /// agent at its share waits behind itself.
    async fn slot(
        &self,
        d: &Deployed,
    ) -> Result<
        (
            tokio::sync::OwnedSemaphorePermit,
            tokio::sync::OwnedSemaphorePermit,
        ),
        RuntimeError,
    > {
        let mine = d
            .share
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| RuntimeError::ShuttingDown)?;
        let global = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| RuntimeError::ShuttingDown)?;
        Ok((mine, global))
    }

    /// Running and waiting tasks of `agent`.
    pub fn queue_depth(&self, agent: &str) -> Option<QueueDepth> {
        let d = self.get(agent).ok()?;
        let running = d.active.load(Ordering::SeqCst);
        Some(QueueDepth {
            running,
            waiting: d.in_flight.load(Ordering::SeqCst).saturating_sub(running),
            share: d.share_size,
        })
    }

    fn get(&self, agent: &str) -> Result<Arc<Deployed>, RuntimeError> {
        self.agents
            .read()
            .map_err(|_| RuntimeError::Poisoned("agent table"))?
            .get(agent)
            .cloned()
            .ok_or_else(|| RuntimeError::UnknownAgent(agent.to_string()))
    }
}

fn create_dir(path: &Path) -> Result<(), RuntimeError> {
    std::fs::create_dir_all(path).map_err(|source| RuntimeError::Io {
        op: "create",
        path: path.to_path_buf(),
        source,
    })
}

/// The grant's outbound host patterns, parsed.
fn http_allow(grants: &AgentGrants) -> Result<Vec<HostPattern>, RuntimeError> {
    grants
        .outbound_hosts
        .iter()
        .map(|h| HostPattern::parse(h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| RuntimeError::BadGrant {
            grant: "grants.outbound_hosts",
            reason: e.to_string(),
        })
}

#[async_trait::async_trait]
impl Runtime for WasmRuntime {
    fn kind(&self) -> &'static str {
        "wasi"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            files: true,
            logs: true,
            chat: true,
            shell: false,
            metrics: true,
        }
    }

    async fn deploy(&self, req: DeployRequest) -> Result<(), RuntimeError> {
        let id = req.agent_id.clone();
        if self.get(&id).is_ok() {
            return Err(RuntimeError::AlreadyDeployed(id));
        }
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(RuntimeError::BadAgentId(id));
        }
        if req.limits.memory_bytes > self.cfg.max_memory_per_agent {
            return Err(RuntimeError::OverMemoryCap {
                asked: req.limits.memory_bytes,
                max: self.cfg.max_memory_per_agent,
            });
        }
        let Artifact::Component { sha256, bytes } = &req.artifact else {
            return Err(RuntimeError::WrongArtifact {
                runtime: "WASI",
                runs: "components",
                got: "OpenClaw profiles",
            });
        };
        let share = self.share_for(&req.limits);
        let actual = hex::encode(Sha256::digest(bytes));
        if !actual.eq_ignore_ascii_case(sha256) {
            return Err(RuntimeError::ArtifactMismatch {
                agent: id,
                expected: sha256.clone(),
                actual,
            });
        }
        let (component, source) = self
            .cache
            .get_or_compile(&self.engine, &id, &actual, bytes)?;
        tracing::debug!(agent = %id, ?source, "component ready");
        let link_err = |reason: String| RuntimeError::Link {
            agent: id.clone(),
            reason,
        };
        let http_allow = http_allow(&req.grants)?;
        let instance_pre = host::link_agent(&self.linker, &self.engine, &component)
            .map_err(|e| link_err(e.to_string()))?
            .instantiate_pre(&component)
            .map_err(|e| link_err(format!("{e:#}")))?;
        let pre = AgentPre::new(instance_pre).map_err(|e| RuntimeError::Link {
            agent: id.clone(),
            reason: format!("{e:#}"),
        })?;
        let dir = self.cfg.root.join("agents").join(&id);
        for sub in ["workspace", "team", "memory"] {
            create_dir(&dir.join(sub))?;
        }
        let kv = KvStore::open(
            &self.db,
            &id,
            req.grants.kv_max_bytes,
            req.grants.kv_max_keys,
        )?;
        let shared = Arc::new(AgentShared {
            id: id.clone(),
            limits: req.limits.clone(),
            grants: req.grants,
            http_allow,
            kv,
            log: Arc::new(LogBuffer::default()),
            disk: disk_quota(&dir, &req.limits),
            dir,
        });
        let deployed = Arc::new(Deployed {
            pre,
            shared,
            running: AtomicBool::new(true),
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            active: AtomicU64::new(0),
            share: Arc::new(Semaphore::new(share)),
            share_size: share,
        });
        let mut agents = self
            .agents
            .write()
            .map_err(|_| RuntimeError::Poisoned("agent table"))?;
        if agents.contains_key(&id) {
            return Err(RuntimeError::AlreadyDeployed(id));
        }
        agents.insert(id, deployed);
        Ok(())
    }

    async fn start(&self, agent: &str) -> Result<(), RuntimeError> {
        self.get(agent)?.running.store(true, Ordering::SeqCst);
        Ok(())
    }

    async fn stop(&self, agent: &str) -> Result<(), RuntimeError> {
        self.get(agent)?.running.store(false, Ordering::SeqCst);
        Ok(())
    }

    async fn status(&self, agent: &str) -> Result<AgentStatus, RuntimeError> {
        let d = self.get(agent)?;
        Ok(AgentStatus {
            state: if d.running.load(Ordering::SeqCst) {
                AgentState::Running
            } else {
                AgentState::Stopped
            },
            tasks_completed: d.completed.load(Ordering::SeqCst),
            tasks_failed: d.failed.load(Ordering::SeqCst),
            in_flight: d.in_flight.load(Ordering::SeqCst),
        })
    }

    async fn execute(&self, agent: &str, task: Task) -> Result<TaskOutcome, RuntimeError> {
        let d = self.get(agent)?;
        if !d.running.load(Ordering::SeqCst) {
            return Err(RuntimeError::NotRunning(agent.to_string()));
        }
        // Admission: the agent's own queue, then the runtime's; a task that
        // fits waits for a slot, one that does not is refused at once.
        if d.in_flight.fetch_add(1, Ordering::SeqCst)
            >= (d.share_size + self.cfg.agent_queue_capacity) as u64
        {
            d.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(RuntimeError::QueueFull {
                capacity: self.cfg.agent_queue_capacity,
            });
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst)
            >= self.cfg.queue_capacity + self.cfg.max_concurrent
        {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            d.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(RuntimeError::QueueFull {
                capacity: self.cfg.queue_capacity,
            });
        }
        let result = match self.slot(&d).await {
            Ok(_permits) if d.running.load(Ordering::SeqCst) => {
                d.active.fetch_add(1, Ordering::SeqCst);
                let r = self.run_task(&d, task).await;
                d.active.fetch_sub(1, Ordering::SeqCst);
                r
            }
            Ok(_) => Err(RuntimeError::NotRunning(agent.to_string())),
            Err(e) => Err(e),
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        d.in_flight.fetch_sub(1, Ordering::SeqCst);
        match &result {
            Ok(_) => d.completed.fetch_add(1, Ordering::SeqCst),
            Err(_) => d.failed.fetch_add(1, Ordering::SeqCst),
        };
        result
    }

    async fn undeploy(&self, agent: &str) -> Result<(), RuntimeError> {
        let d = self
            .agents
            .write()
            .map_err(|_| RuntimeError::Poisoned("agent table"))?
            .remove(agent)
            .ok_or_else(|| RuntimeError::UnknownAgent(agent.to_string()))?;
        d.running.store(false, Ordering::SeqCst);
        d.shared.kv.clear()?;
        let _ = self.db.drop_tree(format!("kv/{agent}"));
        if d.shared.dir.exists() {
            std::fs::remove_dir_all(&d.shared.dir).map_err(|source| RuntimeError::Io {
                op: "remove",
                path: d.shared.dir.clone(),
                source,
            })?;
        }
        Ok(())
    }
}
