//! The process runtime's settings: which gateway program agents run, how
//! limits are enforced, restarts and the watchdog window.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::openclaw::{self, Install, LlmEndpoint};

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
