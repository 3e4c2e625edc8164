//! [`ProcessRuntime`]: gateways (OpenClaw) as supervised processes.
//!
//! Each agent has a supervisor task that starts its gateway (inside the
//! agent's cgroup when cgroups are enforced), waits for `/readyz`, then
//! watches it:
//! - a crash (the process exits while it should run) marks the agent
//!   `failed` with the exit code and the last log lines, then the restart
//!   policy starts it again after a backoff (1 s, 2 s, 4 s, ... capped),
//!   up to `max_restarts` times in a row;
//! - the watchdog samples the process tree's CPU and RSS with sysinfo and
//!   stops an agent that stays over a limit for longer than its window
//!   (`failed`, reason `over_limit`), with no restart;
//! - stop sends SIGTERM, then SIGKILL after the grace period, and removes
//!   the cgroup.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::config::{Enforcement, Gateway, ProcessConfig};
use super::gateway;
use super::openclaw::{self};
use super::ports::Ports;
use super::supervisor::{Agent, ProcState, Sample, Shared};
use crate::runtime::{
    AgentId, AgentState, AgentStatus, Artifact, Capabilities, DeployRequest, OpenClawSettings,
    Runtime, RuntimeError, Task, TaskOutcome,
};
use crate::wasm::log::LogBuffer;

/// The process runtime.
pub struct ProcessRuntime {
    shared: Arc<Shared>,
    ports: Ports,
    agents: Mutex<HashMap<AgentId, Arc<Agent>>>,
}

impl std::fmt::Debug for ProcessRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessRuntime")
            .field("root", &self.shared.cfg.root)
            .field("enforcement", &self.shared.cfg.enforcement)
            .finish_non_exhaustive()
    }
}

/// A gateway token: 24 bytes from the OS. A failed read is an error, never
/// a weaker token.
fn random_token() -> Result<String, RuntimeError> {
    use std::io::Read;
    let mut b = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|source| RuntimeError::Io {
            op: "read random bytes from",
            path: "/dev/urandom".into(),
            source,
        })?;
    Ok(hex::encode(b))
}

impl ProcessRuntime {
    /// `db` holds the port allocations.
    pub fn new(cfg: ProcessConfig, db: &sled::Db) -> Result<Self, RuntimeError> {
        if cfg.enforcement == Enforcement::Cgroups
            && let super::cgroup::CgroupSupport::Unavailable(why) = super::cgroup::probe()
        {
            return Err(RuntimeError::NoCgroups { why });
        }
        Ok(ProcessRuntime {
            ports: Ports::with_range(db, cfg.port_base, super::ports::STEP)?,
            agents: Mutex::new(HashMap::new()),
            shared: Arc::new(Shared {
                http: reqwest::Client::builder()
                    .no_proxy()
                    .build()
                    .map_err(|source| RuntimeError::HttpClient {
                        what: "gateway",
                        source,
                    })?,
                cfg,
            }),
        })
    }

    /// The gateway program agents run.
    pub fn gateway(&self) -> &Gateway {
        &self.shared.cfg.gateway
    }

    fn get(&self, id: &str) -> Result<Arc<Agent>, RuntimeError> {
        self.agents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| RuntimeError::UnknownAgent(id.to_string()))
    }

    /// The supervisor's view of an agent.
    pub fn state(&self, id: &str) -> Result<ProcState, RuntimeError> {
        Ok(self.get(id)?.state.borrow().clone())
    }

    /// The latest CPU/RSS sample of the agent's process tree.
    pub fn sample(&self, id: &str) -> Result<Sample, RuntimeError> {
        Ok(*self
            .get(id)?
            .sample
            .lock()
            .unwrap_or_else(|p| p.into_inner()))
    }

    /// The gateway's port and profile directory.
    pub fn endpoint(&self, id: &str) -> Result<(u16, PathBuf), RuntimeError> {
        let a = self.get(id)?;
        Ok((a.port, a.dir.clone()))
    }

    /// The agent's last `n` log lines (gateway stdout and stderr).
    pub fn logs(&self, id: &str, n: usize) -> Result<Vec<String>, RuntimeError> {
        Ok(self.get(id)?.log.tail(n))
    }

    /// Waits until the agent leaves `starting` (or `limit` passes).
    async fn settled(&self, a: &Agent, limit: Duration) -> ProcState {
        let mut rx = a.state.subscribe();
        let wait = async {
            loop {
                let s = rx.borrow_and_update().clone();
                if s != ProcState::Starting {
                    return s;
                }
                if rx.changed().await.is_err() {
                    return rx.borrow().clone();
                }
            }
        };
        tokio::time::timeout(limit, wait)
            .await
            .unwrap_or(ProcState::Starting)
    }

    fn spawn_supervisor(&self, a: Arc<Agent>) {
        let shared = self.shared.clone();
        tokio::spawn(async move { shared.supervise(a).await });
    }
}

#[async_trait::async_trait]
impl Runtime for ProcessRuntime {
    fn kind(&self) -> &'static str {
        "openclaw"
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

    /// Port, profile, then start and wait for `/readyz`. Fails (and cleans
    /// up) if the gateway does not become ready.
    async fn deploy(&self, req: DeployRequest) -> Result<(), RuntimeError> {
        let Artifact::OpenClaw(settings) = req.artifact else {
            return Err(RuntimeError::WrongArtifact {
                runtime: "process",
                runs: "OpenClaw profiles",
                got: "components",
            });
        };
        let id = req.agent_id.clone();
        if self.get(&id).is_ok() {
            return Err(RuntimeError::AlreadyDeployed(id));
        }
        let port = self.ports.allocate(&id)?;
        let dir = self.shared.cfg.root.join("agents").join(&id);
        openclaw::write_profile(&dir, port, &settings, &self.shared.cfg.llm)?;
        let (want, _) = watch::channel(true);
        let (state, _) = watch::channel(ProcState::Starting);
        let a = Arc::new(Agent {
            id: id.clone(),
            settings,
            limits: req.limits,
            port,
            token: random_token()?,
            dir,
            log: Arc::new(LogBuffer::default()),
            state,
            want,
            sample: Mutex::new(Sample::default()),
            completed: Default::default(),
            failed: Default::default(),
        });
        self.agents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), a.clone());
        self.spawn_supervisor(a.clone());
        match self
            .settled(&a, self.shared.cfg.ready_timeout + Duration::from_secs(5))
            .await
        {
            ProcState::Running => Ok(()),
            other => {
                let _ = self.undeploy(&id).await;
                Err(RuntimeError::NotReady {
                    agent: id,
                    state: serde_json::to_string(&other).unwrap_or_default(),
                })
            }
        }
    }

    async fn start(&self, agent: &str) -> Result<(), RuntimeError> {
        let a = self.get(agent)?;
        // Starting now, so `settled` waits for this start, not the last stop.
        a.state.send_replace(ProcState::Starting);
        let _ = a.want.send(true);
        match self
            .settled(&a, self.shared.cfg.ready_timeout + Duration::from_secs(5))
            .await
        {
            ProcState::Running => Ok(()),
            other => Err(RuntimeError::NotReady {
                agent: agent.to_string(),
                state: format!("{other:?}"),
            }),
        }
    }

    async fn stop(&self, agent: &str) -> Result<(), RuntimeError> {
        let a = self.get(agent)?;
        let _ = a.want.send(false);
        let mut rx = a.state.subscribe();
        let wait = async {
            while !matches!(
                *rx.borrow_and_update(),
                ProcState::Stopped | ProcState::Failed { .. }
            ) {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        };
        let _ =
            tokio::time::timeout(self.shared.cfg.stop_grace + Duration::from_secs(5), wait).await;
        Ok(())
    }

    async fn status(&self, agent: &str) -> Result<AgentStatus, RuntimeError> {
        let a = self.get(agent)?;
        let state = match *a.state.borrow() {
            ProcState::Running | ProcState::Starting => AgentState::Running,
            _ => AgentState::Stopped,
        };
        Ok(AgentStatus {
            state,
            tasks_completed: a.completed.load(std::sync::atomic::Ordering::Relaxed),
            tasks_failed: a.failed.load(std::sync::atomic::Ordering::Relaxed),
            in_flight: 0,
        })
    }

    async fn execute(&self, agent: &str, task: Task) -> Result<TaskOutcome, RuntimeError> {
        let a = self.get(agent)?;
        if *a.state.borrow() != ProcState::Running {
            return Err(RuntimeError::NotRunning(agent.to_string()));
        }
        let outcome = gateway::chat(
            &self.shared.http,
            a.port,
            &a.token,
            a.limits.task_timeout,
            &task,
        )
        .await;
        let counter = if outcome.is_ok() {
            &a.completed
        } else {
            &a.failed
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        outcome
    }

    async fn undeploy(&self, agent: &str) -> Result<(), RuntimeError> {
        let a = self.get(agent)?;
        self.stop(agent).await?;
        self.agents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(agent);
        drop(a);
        self.ports.free(agent)?;
        let dir = self.shared.cfg.root.join("agents").join(agent);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|source| RuntimeError::Io {
                op: "remove",
                path: dir,
                source,
            })?;
        }
        Ok(())
    }
}

impl ProcessRuntime {
    /// The settings an agent was deployed with.
    pub fn settings(&self, id: &str) -> Result<OpenClawSettings, RuntimeError> {
        Ok(self.get(id)?.settings.clone())
    }
}
