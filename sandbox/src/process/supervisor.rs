//! One supervisor task per agent: it starts the gateway when the agent
//! should run, restarts it by the [`super::RestartPolicy`] after a crash,
//! and stops it (SIGTERM, then SIGKILL, to every process) when asked.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Serialize;
use tokio::sync::watch;

use super::cgroup::{AgentCgroup, CgroupLimits};
use super::config::{Enforcement, ProcessConfig};
use crate::runtime::{AgentId, AgentLimits, OpenClawSettings};
use crate::wasm::log::LogBuffer;

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

pub(super) struct Agent {
    pub(super) id: AgentId,
    pub(super) settings: OpenClawSettings,
    pub(super) limits: AgentLimits,
    pub(super) port: u16,
    pub(super) token: String,
    pub(super) dir: PathBuf,
    pub(super) log: Arc<LogBuffer>,
    pub(super) state: watch::Sender<ProcState>,
    /// `true` while the agent should run.
    pub(super) want: watch::Sender<bool>,
    pub(super) sample: Mutex<Sample>,
    pub(super) completed: std::sync::atomic::AtomicU64,
    pub(super) failed: std::sync::atomic::AtomicU64,
}

/// What supervisors share with the runtime.
pub(super) struct Shared {
    pub(super) cfg: ProcessConfig,
    pub(super) http: reqwest::Client,
}

pub(super) enum RunEnd {
    Stopped,
    Removed,
    OverLimit(String),
    Crashed { code: Option<i32>, reason: String },
}

impl Shared {
    pub(super) async fn supervise(self: Arc<Self>, a: Arc<Agent>) {
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

    pub(super) async fn run_once(
        &self,
        a: &Arc<Agent>,
        want: &mut watch::Receiver<bool>,
    ) -> RunEnd {
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

    /// SIGTERM, then SIGKILL after the grace period.
    pub(super) async fn terminate(&self, child: &mut tokio::process::Child) {
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
