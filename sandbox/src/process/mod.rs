//! Agents as supervised host processes (the OpenClaw runtime), each in its
//! own cgroup.
//!
//! - [`cgroup`]: per-agent cgroups (v1 or v2) with memory, CPU and pids limits.
//! - [`ports`]: the persisted port allocator (base 19001, step 120).
//! - [`openclaw`]: the OpenClaw install, profiles and command line.
//! - [`config`]: [`ProcessConfig`]: the gateway program, enforcement,
//!   restarts and the watchdog window.
//! - [`runtime`]: [`ProcessRuntime`], the [`crate::Runtime`] for process agents.
//! - [`supervisor`]: one task per agent that starts, restarts and stops it;
//!   `launch` starts one gateway process, `watchdog` watches one run.
//! - `gateway`: the HTTP client that hands a task to an agent's gateway.

pub mod cgroup;
pub mod config;
mod gateway;
mod launch;
pub mod openclaw;
pub mod ports;
pub mod runtime;
pub mod supervisor;
mod watchdog;

pub use config::{Enforcement, Gateway, ProcessConfig, RestartPolicy};
pub use runtime::ProcessRuntime;
pub use supervisor::{ProcState, Sample};
