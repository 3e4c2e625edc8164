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
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;

use super::cgroup::{AgentCgroup, CgroupLimits};
use super::openclaw::{self, Install, LlmEndpoint};
use super::ports::Ports;
use crate::runtime::{
    AgentId, AgentLimits, AgentState, AgentStatus, Artifact, Capabilities, DeployRequest,
    OpenClawSettings, Runtime, RuntimeError, Task, TaskOutcome,
};
use crate::wasm::log::LogBuffer;

/// What gateway program agents run.
#[derive(Debug, Clone)]
pub enum Gateway {
    /// OpenClaw from a checked install.
    OpenClaw(Install),
    /// Any program that speaks the same HTTP contract (`/readyz`,
    /// `POST /v1/chat/completions` with a bearer token); it gets `PORT`,
    /// `GATEWAY_TOKEN`, `HOME` and `TMPDIR` in its environment. Used for
    /// stand-ins in tests.
    Custom { program: PathBuf, args: Vec<String> },
}

/// How limits are enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Enforcement {
    /// A cgroup per agent with hard memory, CPU and pids limits.
    Cgroups,
    /// No cgroups: the watchdog alone stops agents over their limits. Weaker:
    /// a burst is only caught after the watchdog window.
    MonitorAndKill,
}

/// When a crashed gateway is started again.
#[derive(Debug, Clone, Copy)]
pub struct RestartPolicy {
    /// Restarts in a row before the agent stays failed.
    pub max_restarts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// A run this long resets the count.
    pub reset_after: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            max_restarts: 3,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            reset_after: Duration::from_secs(300),
        }
    }
}

/// Process runtime settings.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// Profiles live in `<root>/agents/<id>`.
    pub root: PathBuf,
    pub gateway: Gateway,
    pub llm: LlmEndpoint,
    pub enforcement: Enforcement,
    /// How long a gateway may take to answer `/readyz`. Default 120 s.
    pub ready_timeout: Duration,
    /// SIGTERM → SIGKILL grace. Default 10 s.
    pub stop_grace: Duration,
    /// How long an agent may stay over a limit. Default 60 s.
    pub watchdog_window: Duration,
    /// How often the watchdog samples. Default 2 s.
    pub sample_every: Duration,
    pub restart: RestartPolicy,
    /// First gateway port; each agent gets the next free step of 120.
    /// Default 19001.
    pub port_base: u16,
}

impl ProcessConfig {
    pub fn new(root: impl Into<PathBuf>, gateway: Gateway, llm: LlmEndpoint) -> Self {
        ProcessConfig {
            root: root.into(),
            gateway,
            llm,
            enforcement: Enforcement::Cgroups,
            ready_timeout: Duration::from_secs(120),
            stop_grace: openclaw::DEFAULT_STOP_GRACE,
            watchdog_window: Duration::from_secs(60),
            sample_every: Duration::from_secs(2),
            restart: RestartPolicy::default(),
            port_base: super::ports::BASE,
        }
    }
}

/// A process agent's state as the supervisor sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum ProcState {
    Starting,
    Running,
    Stopped,
    Failed {
        reason: String,
        exit_code: Option<i32>,
        last_lines: Vec<String>,
    },
}

/// The latest resource sample of an agent's process tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    pub cpu_percent: f32,
    pub rss_bytes: u64,
    pub processes: usize,
}

struct Agent {
    id: AgentId,
    settings: OpenClawSettings,
    limits: AgentLimits,
    port: u16,
    token: String,
    dir: PathBuf,
    log: Arc<LogBuffer>,
    state: watch::Sender<ProcState>,
    /// `true` while the agent should run.
    want: watch::Sender<bool>,
    sample: Mutex<Sample>,
    completed: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
}

/// What supervisors share with the runtime.
struct Shared {
    cfg: ProcessConfig,
    http: reqwest::Client,
}

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

fn random_token() -> String {
    let mut b = [0u8; 24];
    let _ = getrandom_fill(&mut b);
    hex::encode(b)
}

fn getrandom_fill(b: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(b)
}

impl ProcessRuntime {
    /// `db` holds the port allocations.
    pub fn new(cfg: ProcessConfig, db: &sled::Db) -> Result<Self, RuntimeError> {
        if cfg.enforcement == Enforcement::Cgroups
            && let super::cgroup::CgroupSupport::Unavailable(why) = super::cgroup::probe()
        {
            return Err(RuntimeError::Setup(format!(
                "{why}; set process.allow_monitor_and_kill = true to run without cgroups (weaker)"
            )));
        }
        Ok(ProcessRuntime {
            ports: Ports::with_range(db, cfg.port_base, super::ports::STEP)?,
            agents: Mutex::new(HashMap::new()),
            shared: Arc::new(Shared {
                http: reqwest::Client::builder()
                    .no_proxy()
                    .build()
                    .map_err(|e| RuntimeError::Setup(e.to_string()))?,
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

impl Shared {
    async fn supervise(self: Arc<Self>, a: Arc<Agent>) {
        let mut restarts = 0u32;
        let mut want = a.want.subscribe();
        loop {
            if !*want.borrow_and_update() {
                // A failed agent stays failed (with its reason) until started.
                if !matches!(*a.state.borrow(), ProcState::Failed { .. }) {
                    a.state.send_replace(ProcState::Stopped);
                }
                if want.changed().await.is_err() {
                    return;
                }
                continue;
            }
            a.state.send_replace(ProcState::Starting);
            let started = Instant::now();
            let outcome = self.run_once(&a, &mut want).await;
            match outcome {
                RunEnd::Stopped => {
                    a.state.send_replace(ProcState::Stopped);
                    restarts = 0;
                }
                RunEnd::Removed => return,
                RunEnd::OverLimit(what) => {
                    a.state.send_replace(ProcState::Failed {
                        reason: format!("over_limit: {what}"),
                        exit_code: None,
                        last_lines: a.log.tail(20),
                    });
                    // Stay failed until started again.
                    let _ = a.want.send(false);
                }
                RunEnd::Crashed { code, reason } => {
                    tracing::warn!(agent = %a.id, ?code, "gateway crashed: {reason}");
                    a.state.send_replace(ProcState::Failed {
                        reason,
                        exit_code: code,
                        last_lines: a.log.tail(20),
                    });
                    if started.elapsed() >= self.cfg.restart.reset_after {
                        restarts = 0;
                    }
                    if restarts >= self.cfg.restart.max_restarts {
                        let _ = a.want.send(false);
                        restarts = 0;
                        continue;
                    }
                    let backoff = self
                        .cfg
                        .restart
                        .initial_backoff
                        .saturating_mul(1 << restarts.min(16))
                        .min(self.cfg.restart.max_backoff);
                    restarts += 1;
                    a.log.push(
                        &a.id,
                        "warn",
                        &format!(
                            "restarting in {} ms (restart {restarts})",
                            backoff.as_millis()
                        ),
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        r = want.changed() => if r.is_err() { return },
                    }
                }
            }
        }
    }

    async fn run_once(&self, a: &Arc<Agent>, want: &mut watch::Receiver<bool>) -> RunEnd {
        let cgroup = match self.cfg.enforcement {
            Enforcement::Cgroups => match AgentCgroup::create(
                &a.id,
                &CgroupLimits {
                    memory_bytes: a.limits.memory_bytes as u64,
                    cpu_millis: a.limits.cpu_millis,
                    pids_max: a.limits.pids_max,
                },
            ) {
                Ok(c) => Some(c),
                Err(e) => {
                    return RunEnd::Crashed {
                        code: None,
                        reason: format!("cannot create the cgroup: {e}"),
                    };
                }
            },
            Enforcement::MonitorAndKill => None,
        };
        let mut child = match self.spawn(a, cgroup.as_ref()) {
            Ok(c) => c,
            Err(e) => {
                if let Some(cg) = cgroup {
                    cg.remove();
                }
                return RunEnd::Crashed {
                    code: None,
                    reason: format!("cannot start the gateway: {e}"),
                };
            }
        };
        let end = self.watch(a, &mut child, want).await;
        if let Some(cg) = cgroup {
            // Done before the next start creates the same cgroup again.
            let _ = tokio::task::spawn_blocking(move || cg.remove()).await;
        }
        end
    }

    fn spawn(
        &self,
        a: &Agent,
        cgroup: Option<&AgentCgroup>,
    ) -> Result<tokio::process::Child, String> {
        let profile = openclaw::Profile::at(&a.dir);
        let (program, args, env): (PathBuf, Vec<String>, Vec<(String, String)>) =
            match &self.cfg.gateway {
                Gateway::OpenClaw(install) => (
                    install.node.clone(),
                    openclaw::arguments(install, a.port),
                    openclaw::environment(install, &profile, &a.token, &self.cfg.llm),
                ),
                Gateway::Custom { program, args } => (
                    program.clone(),
                    args.clone(),
                    vec![
                        ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
                        ("HOME".into(), profile.home.display().to_string()),
                        ("TMPDIR".into(), profile.tmp.display().to_string()),
                        ("PORT".into(), a.port.to_string()),
                        ("GATEWAY_TOKEN".into(), a.token.clone()),
                        ("LLM_BASE_URL".into(), self.cfg.llm.base_url.clone()),
                    ],
                ),
            };
        let mut cmd = match cgroup {
            Some(cg) => cg.launcher(&program),
            None => std::process::Command::new(&program),
        };
        cmd.args(&args)
            .env_clear()
            .envs(env)
            .current_dir(&profile.home)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if let Some(cg) = cgroup {
            // env_clear dropped the launcher's variable; put it back.
            let files: Vec<String> = cg
                .procs_files()
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            cmd.env("SPAREBOX_CGROUP_PROCS", files.join(" "));
        }
        let mut child = tokio::process::Command::from(cmd)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("{}: {e}", program.display()))?;
        for (stream, level) in [
            (
                child
                    .stdout
                    .take()
                    .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
                "info",
            ),
            (
                child
                    .stderr
                    .take()
                    .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
                "warn",
            ),
        ] {
            if let Some(s) = stream {
                let log = a.log.clone();
                let id = a.id.clone();
                tokio::spawn(async move {
                    let mut lines = BufReader::new(s).lines();
                    while let Ok(Some(l)) = lines.next_line().await {
                        log.push(&id, level, &l);
                    }
                });
            }
        }
        Ok(child)
    }

    /// From spawn to the end of this run: readiness, then crash, stop or
    /// watchdog.
    async fn watch(
        &self,
        a: &Arc<Agent>,
        child: &mut tokio::process::Child,
        want: &mut watch::Receiver<bool>,
    ) -> RunEnd {
        let ready_url = format!("http://127.0.0.1:{}/readyz", a.port);
        let deadline = Instant::now() + self.cfg.ready_timeout;
        let mut ready = false;
        // sysinfo fails only on unsupported platforms; then nothing is sampled.
        let mut sys = sysinfo::System::new().ok();
        let mut over_since: Option<Instant> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut last_sample = Instant::now();
        loop {
            tokio::select! {
                status = child.wait() => {
                    let code = status.ok().and_then(|s| {
                        use std::os::unix::process::ExitStatusExt;
                        s.code().or_else(|| s.signal().map(|sig| 128 + sig))
                    });
                    return RunEnd::Crashed {
                        code,
                        reason: match code {
                            Some(137) => "the gateway was killed (SIGKILL; out of memory?)".into(),
                            Some(125) => "the gateway could not join its cgroup".into(),
                            Some(c) => format!("the gateway exited with code {c}"),
                            None => "the gateway exited".into(),
                        },
                    };
                }
                r = want.changed() => {
                    if r.is_err() {
                        self.terminate(child).await;
                        return RunEnd::Removed;
                    }
                    if !*want.borrow_and_update() {
                        self.terminate(child).await;
                        return RunEnd::Stopped;
                    }
                }
                _ = tick.tick() => {
                    if !ready {
                        let ok = self.http.get(&ready_url).timeout(Duration::from_secs(2)).send().await
                            .is_ok_and(|r| r.status().is_success());
                        if ok {
                            ready = true;
                            a.state.send_replace(ProcState::Running);
                            a.log.push(&a.id, "info", "gateway ready");
                        } else if Instant::now() > deadline {
                            self.terminate(child).await;
                            return RunEnd::Crashed {
                                code: None,
                                reason: format!("not ready within {} s", self.cfg.ready_timeout.as_secs()),
                            };
                        }
                    }
                    if last_sample.elapsed() >= self.cfg.sample_every {
                        last_sample = Instant::now();
                        if let (Some(pid), Some(sys)) = (child.id(), sys.as_mut()) {
                            let s = sample_tree(sys, pid);
                            *a.sample.lock().unwrap_or_else(|p| p.into_inner()) = s;
                            let cpu_cap = a.limits.cpu_millis as f32 / 10.0;
                            let over = if s.rss_bytes > a.limits.memory_bytes as u64 {
                                Some(format!("RSS {} MiB over {} MiB", s.rss_bytes >> 20, a.limits.memory_bytes >> 20))
                            } else if s.cpu_percent > cpu_cap * 1.2 {
                                Some(format!("CPU {:.0}% over {:.0}%", s.cpu_percent, cpu_cap))
                            } else {
                                None
                            };
                            match (over, over_since) {
                                (Some(what), Some(t)) if t.elapsed() >= self.cfg.watchdog_window => {
                                    tracing::warn!(agent = %a.id, "watchdog: {what}");
                                    self.terminate(child).await;
                                    return RunEnd::OverLimit(what);
                                }
                                (Some(_), None) => over_since = Some(Instant::now()),
                                (Some(_), Some(_)) => {}
                                (None, _) => over_since = None,
                            }
                        }
                    }
                }
            }
        }
    }

    /// SIGTERM, then SIGKILL after the grace period.
    async fn terminate(&self, child: &mut tokio::process::Child) {
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            if tokio::time::timeout(self.cfg.stop_grace, child.wait())
                .await
                .is_ok()
            {
                return;
            }
        }
        let _ = child.kill().await;
    }
}

enum RunEnd {
    Stopped,
    Removed,
    OverLimit(String),
    Crashed { code: Option<i32>, reason: String },
}

/// CPU% and RSS summed over `root` and all its descendants.
fn sample_tree(sys: &mut sysinfo::System, root: u32) -> Sample {
    use sysinfo::{ProcessRefreshKind, ProcessesToUpdate};
    sys.refresh_processes_specifics(
        ProcessesToUpdate::All,
        true,
        ProcessRefreshKind::nothing().with_cpu().with_memory(),
    );
    let root = sysinfo::Pid::from_u32(root);
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        for (pid, p) in sys.processes() {
            // sysinfo lists threads too; they share their process's memory.
            if p.thread_kind().is_none() && p.parent() == Some(parent) && !tree.contains(pid) {
                tree.push(*pid);
            }
        }
        i += 1;
    }
    let mut s = Sample::default();
    for pid in &tree {
        if let Some(p) = sys.process(*pid) {
            s.cpu_percent += p.cpu_usage();
            s.rss_bytes += p.memory();
            s.processes += 1;
        }
    }
    s
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
            return Err(RuntimeError::Setup(
                "the process runtime runs OpenClaw profiles, not components".into(),
            ));
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
            token: random_token(),
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
                Err(RuntimeError::Setup(format!(
                    "the gateway did not become ready: {}",
                    serde_json::to_string(&other).unwrap_or_default()
                )))
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
            other => Err(RuntimeError::Setup(format!(
                "agent did not start: {other:?}"
            ))),
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
        let started = Instant::now();
        let mut messages: Vec<serde_json::Value> = task
            .context
            .iter()
            .map(|(author, content)| {
                serde_json::json!({"role": "user", "content": format!("{author}: {content}")})
            })
            .collect();
        messages.push(serde_json::json!({"role": "user", "content": task.content}));
        let mut body = serde_json::json!({"model": "openclaw", "messages": messages});
        if let Some(t) = &task.thread_id {
            body["user"] = serde_json::Value::String(t.clone());
        }
        let url = format!("http://127.0.0.1:{}/v1/chat/completions", a.port);
        let result = self
            .shared
            .http
            .post(url)
            .bearer_auth(&a.token)
            .timeout(a.limits.task_timeout)
            .json(&body)
            .send()
            .await;
        let outcome = match result {
            Err(e) if e.is_timeout() => Err(RuntimeError::Timeout {
                limit_ms: a.limits.task_timeout.as_millis() as u64,
            }),
            Err(e) => Err(RuntimeError::Agent(format!("gateway request failed: {e}"))),
            Ok(r) => {
                let status = r.status();
                let v: serde_json::Value = r.json().await.unwrap_or_default();
                if !status.is_success() {
                    Err(RuntimeError::Agent(format!(
                        "gateway answered {status}: {v}"
                    )))
                } else {
                    let content = v["choices"][0]["message"]["content"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let tokens = v["usage"]["prompt_tokens"].as_u64().unwrap_or(0)
                        + v["usage"]["completion_tokens"].as_u64().unwrap_or(0);
                    Ok(TaskOutcome {
                        reply: content,
                        duration_ms: started.elapsed().as_millis() as u64,
                        tokens_used: tokens,
                        hostcalls: 0,
                    })
                }
            }
        };
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
