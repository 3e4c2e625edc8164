//! `sparebox-sandbox`: the runtimes that run agents.
//!
//! One `Runtime` trait (deploy, start, stop, status, execute, undeploy,
//! capabilities) with two implementations:
//! - `wasm`: WASI 0.2 components in wasmtime, with one `bindgen!` against
//!   `../wit` (the package `sparebox:agent@0.1.0`);
//! - `process`: OpenClaw gateway processes in cgroups (cgroups-rs, sysinfo).
//!
//! This crate does no networking and no billing. The trait and the WASI
//! runtime arrive with the "WASI agent runtime" issue; until then the crate
//! only fixes its place in the workspace.
