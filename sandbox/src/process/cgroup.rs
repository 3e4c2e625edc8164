//! One cgroup per process agent, through cgroups-rs, on cgroup v1 or v2
//! (whichever the host mounts): a memory limit, a CPU quota and `pids.max`.
//!
//! The agent's process joins its cgroup *before* it execs: it is started
//! through `/bin/sh`, which writes its own pid into each controller's
//! `cgroup.procs` and then `exec`s the agent (see [`AgentCgroup::launcher`]).
//! Nothing the agent runs is ever outside the limits.
//!
//! Cgroups live under `sparebox/<agent>` in each hierarchy and are removed
//! (after killing anything left in them) when the agent stops.

use std::path::PathBuf;

use cgroups_rs::fs::{Cgroup, MaxValue, cgroup_builder::CgroupBuilder, hierarchies};

use crate::runtime::RuntimeError;

/// The controllers used; others (cpuset needs its own setup) are left alone.
const CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];
/// CFS period for the CPU quota, in microseconds.
const CPU_PERIOD_US: u64 = 100_000;

/// Hard limits for one agent's process tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupLimits {
    pub memory_bytes: u64,
    /// CPU in millicores (1000 = one core).
    pub cpu_millis: u32,
    pub pids_max: u64,
}

/// What this host can do with cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupSupport {
    V1,
    V2,
    /// Cgroups cannot be created here; the reason says why.
    Unavailable(String),
}

impl CgroupSupport {
    pub fn is_available(&self) -> bool {
        !matches!(self, CgroupSupport::Unavailable(_))
    }
}

/// Creates and removes a throw-away cgroup to learn whether this process
/// may manage cgroups, and which version the host runs.
pub fn probe() -> CgroupSupport {
    let v2 = hierarchies::is_cgroup2_unified_mode();
    let name = format!("sparebox/probe-{}", std::process::id());
    let limits = CgroupLimits {
        memory_bytes: 64 << 20,
        cpu_millis: 100,
        pids_max: 8,
    };
    match AgentCgroup::create_named(&name, &limits) {
        Ok(cg) => {
            cg.remove();
            if v2 {
                CgroupSupport::V2
            } else {
                CgroupSupport::V1
            }
        }
        Err(e) => CgroupSupport::Unavailable(format!(
            "cannot create cgroups ({e}); run the node as root or give it a delegated cgroup subtree"
        )),
    }
}

/// An agent's cgroup.
#[derive(Debug)]
pub struct AgentCgroup {
    cg: Cgroup,
    name: String,
}

fn setup(what: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Cgroup {
        op: what.to_string(),
        reason: e.to_string(),
    }
}

impl AgentCgroup {
    /// Creates `sparebox/<agent>` with `limits`.
    pub fn create(agent: &str, limits: &CgroupLimits) -> Result<Self, RuntimeError> {
        Self::create_named(&format!("sparebox/{agent}"), limits)
    }

    fn create_named(name: &str, limits: &CgroupLimits) -> Result<Self, RuntimeError> {
        let hier = hierarchies::auto();
        let quota = i64::from(limits.cpu_millis) * CPU_PERIOD_US as i64 / 1000;
        let cg = CgroupBuilder::new(name)
            .set_specified_controllers(CONTROLLERS.iter().map(|s| s.to_string()).collect())
            .memory()
            .memory_hard_limit(i64::try_from(limits.memory_bytes).unwrap_or(i64::MAX))
            .done()
            .cpu()
            .period(CPU_PERIOD_US)
            .quota(quota.max(1000))
            .done()
            .pid()
            .maximum_number_of_processes(MaxValue::Value(
                i64::try_from(limits.pids_max).unwrap_or(i64::MAX),
            ))
            .done()
            .build(hier)
            .map_err(|e| setup(&format!("create {name}"), e))?;
        let me = AgentCgroup {
            cg,
            name: name.to_string(),
        };
        let files = me.procs_files();
        if files.len() < CONTROLLERS.len() && !hierarchies::is_cgroup2_unified_mode() {
            me.remove();
            return Err(setup(
                name,
                format!("needs the {CONTROLLERS:?} controllers; found {files:?}"),
            ));
        }
        Ok(me)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `cgroup.procs` file of every controller (one on v2).
    pub fn procs_files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self
            .cg
            .subsystems()
            .iter()
            .map(|s| s.to_controller().path().join("cgroup.procs"))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// A command that joins this cgroup and then execs `program args...`.
    /// The shell exits 125 if it cannot join.
    pub fn launcher(&self, program: &std::path::Path) -> std::process::Command {
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(
                "for f in $SPAREBOX_CGROUP_PROCS; do echo $$ > \"$f\" || exit 125; done; \
                 unset SPAREBOX_CGROUP_PROCS; exec \"$@\"",
            )
            .arg("sparebox-launch")
            .arg(program)
            .env(
                "SPAREBOX_CGROUP_PROCS",
                self.procs_files()
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        cmd
    }

    /// Pids in the cgroup.
    pub fn pids(&self) -> Vec<u64> {
        self.cg.procs().into_iter().map(|p| p.pid).collect()
    }

    /// How many times the memory limit was hit (v1 `failcnt`; v2 `max` events).
    pub fn memory_failures(&self) -> u64 {
        self.cg
            .controller_of::<cgroups_rs::fs::memory::MemController>()
            .map(|m| m.memory_stat().fail_cnt)
            .unwrap_or(0)
    }

    /// Sends SIGKILL to every process in the cgroup (v1 has no
    /// `cgroup.kill`), repeating until it is empty so a forking tree cannot
    /// outrun it.
    pub fn kill_all(&self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        for _ in 0..100 {
            let pids = self.pids();
            if pids.is_empty() {
                return;
            }
            for p in pids {
                if let Ok(p) = i32::try_from(p) {
                    let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Kills everything in the cgroup and deletes it.
    pub fn remove(self) {
        self.kill_all();
        for _ in 0..50 {
            if self.cg.delete().is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        tracing::warn!(cgroup = %self.name, "could not delete the cgroup");
    }
}
