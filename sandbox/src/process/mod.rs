//! Agents as supervised host processes (the OpenClaw runtime), each in its
//! own cgroup.
//!
//! - [`cgroup`]: per-agent cgroups (v1 or v2) with memory, CPU and pids limits.
//! - [`ports`]: the persisted port allocator (base 19001, step 120).

pub mod cgroup;
pub mod ports;
