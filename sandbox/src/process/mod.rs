//! Agents as supervised host processes (the OpenClaw runtime), each in its
//! own cgroup.
//!
//! - [`cgroup`]: per-agent cgroups (v1 or v2) with memory, CPU and pids limits.
//! - [`ports`]: the persisted port allocator (base 19001, step 120).

//! - [`openclaw`]: the OpenClaw install, profiles and command line.
//! - [`runtime`]: [`ProcessRuntime`], the supervisor, restart policy and watchdog.

pub mod cgroup;
pub mod openclaw;
pub mod ports;
pub mod runtime;

pub use runtime::{
    Enforcement, Gateway, ProcState, ProcessConfig, ProcessRuntime, RestartPolicy, Sample,
};
