//! From spawn to the end of one run: readiness on `/readyz`, then the
//! watchdog, which samples the agent's whole process tree and stops an
//! agent that stays over its limits for longer than the window.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::supervisor::{Agent, ProcState, RunEnd, Sample, Shared};

/// CPU% and RSS summed over `root` and all its descendants.
pub(super) fn sample_tree(sys: &mut sysinfo::System, root: u32) -> Sample {
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

impl Shared {
    /// From spawn to the end of this run: readiness, then crash, stop or
    /// watchdog.
    pub(super) async fn watch(
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
}
