//! Running one task: a fresh store with the agent's limits (memory, fuel
//! for host calls, the resource table, the epoch deadline), the call, and
//! what a trap means.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::{ResourceTable, ResourceTableError};
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::host::{MemoryCap, TaskState};
use super::http::HttpGate;
use crate::runtime::{RuntimeError, Task, TaskOutcome};

use super::{AgentShared, Deployed, WasmRuntime, host};

/// Ends a task or tick the same way: its stdout and stderr go to the
/// agent's log, a timeout or trap becomes its typed error, and the metrics
/// are read from the store. `reply` is left empty for the caller.
pub(super) fn finish<R>(
    store: &mut Store<TaskState>,
    shared: &AgentShared,
    stdout: &MemoryOutputPipe,
    stderr: &MemoryOutputPipe,
    started: Instant,
    result: Result<wasmtime::Result<R>, tokio::time::error::Elapsed>,
) -> Result<(R, TaskOutcome), RuntimeError> {
    shared
        .log
        .push_stdio(&shared.id, "stdout", &stdout.contents());
    shared
        .log
        .push_stdio(&shared.id, "stderr", &stderr.contents());
    let state = store.data_mut();
    match result {
        Err(_) => Err(RuntimeError::Timeout {
            limit_ms: shared.limits.task_timeout.as_millis() as u64,
        }),
        Ok(Err(trap)) => Err(classify_trap(state, trap)),
        Ok(Ok(value)) => Ok((
            value,
            TaskOutcome {
                reply: String::new(),
                duration_ms: started.elapsed().as_millis() as u64,
                tokens_used: state.tokens,
                hostcalls: state.hostcalls,
            },
        )),
    }
}

/// Turns a trap into the typed error for the limit that caused it.
pub(super) fn classify_trap(state: &mut TaskState, err: wasmtime::Error) -> RuntimeError {
    if let Some(v) = state.violation.take() {
        return v;
    }
    if state.memory.hit {
        return RuntimeError::MemoryLimit {
            limit_bytes: state.memory.limit,
        };
    }
    if let Some(Trap::StackOverflow) = err.downcast_ref::<Trap>() {
        return RuntimeError::StackOverflow;
    }
    if err.chain().any(|c| {
        matches!(
            c.downcast_ref::<ResourceTableError>(),
            Some(ResourceTableError::Full)
        )
    }) {
        return RuntimeError::ResourceLimit {
            limit: state.agent.limits.table_entries,
        };
    }
    let text = format!("{err:#}");
    if text.contains(host::SOCKETS) {
        return RuntimeError::CapabilityDenied {
            capability: "wasi:sockets",
            reason: "agents get no sockets; use outbound HTTP within the grant".into(),
        };
    }
    RuntimeError::Trap(text)
}

impl WasmRuntime {
    pub(super) fn build_store(
        &self,
        shared: &Arc<AgentShared>,
    ) -> Result<(Store<TaskState>, MemoryOutputPipe, MemoryOutputPipe), RuntimeError> {
        // The first of the agent's running tasks measures what its files
        // really hold; the hold ends with the task's store.
        let disk = super::disk::begin(shared);
        let stdout = MemoryOutputPipe::new(shared.limits.stdio_bytes_per_task);
        let stderr = MemoryOutputPipe::new(shared.limits.stdio_bytes_per_task);
        let mut b = WasiCtxBuilder::new();
        // No env, no args, no inherited stdio: a fresh builder has none.
        b.stdout(stdout.clone()).stderr(stderr.clone());
        // wasi:sockets is not linked at all (see host::link_agent); these
        // settings only make sure nothing changes if it ever were.
        b.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        b.socket_addr_check(|_, _| Box::pin(async { false }));
        let setup = |e: wasmtime::Error| RuntimeError::Preopen(format!("{e:#}"));
        b.preopened_dir(
            shared.dir.join("workspace"),
            "/workspace",
            FsPerms::ReadWrite,
        )
        .map_err(setup)?;
        b.preopened_dir(shared.dir.join("team"), "/team", FsPerms::ReadOnly)
            .map_err(setup)?;
        b.preopened_dir(shared.dir.join("memory"), "/memory", FsPerms::ReadWrite)
            .map_err(setup)?;
        let mut table = ResourceTable::new();
        table.set_max_capacity(shared.limits.table_entries);
        let state = TaskState {
            wasi: b.build(),
            http_ctx: wasmtime_wasi_http::WasiHttpCtx::new(),
            http: HttpGate::new(self.http.clone(), shared.clone()),
            table,
            memory: MemoryCap {
                limit: shared.limits.memory_bytes,
                used: 0,
                hit: false,
            },
            agent: shared.clone(),
            disk,
            llm: self.llm.clone(),
            hostcalls: 0,
            tokens: 0,
            violation: None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.memory);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
        Ok((store, stdout, stderr))
    }

    pub(super) async fn run_task(
        &self,
        d: &Deployed,
        task: Task,
    ) -> Result<TaskOutcome, RuntimeError> {
        let shared = &d.shared;
        let (mut store, stdout, stderr) = self.build_store(shared)?;
        let started = Instant::now();
        let wit_task = host::sparebox::agent::types::Task {
            id: task.id,
            thread_id: task.thread_id,
            content: task.content,
            author: task.author,
            context: task
                .context
                .into_iter()
                .map(
                    |(author, content)| host::sparebox::agent::types::ContextMessage {
                        author,
                        content,
                    },
                )
                .collect(),
            mentions: task.mentions,
        };
        let limit = shared.limits.task_timeout;
        let run = async {
            let agent = d.pre.instantiate_async(&mut store).await?;
            agent.call_handle(&mut store, &wit_task).await
        };
        let result = tokio::time::timeout(limit, run).await;
        let (answer, mut outcome) = finish(&mut store, shared, &stdout, &stderr, started, result)?;
        match answer {
            Ok(reply) => {
                outcome.reply = reply.content;
                Ok(outcome)
            }
            Err(host::sparebox::agent::types::AgentError::InvalidInput(m)) => {
                Err(RuntimeError::Agent(format!("invalid input: {m}")))
            }
            Err(host::sparebox::agent::types::AgentError::Failed(m)) => Err(RuntimeError::Agent(m)),
        }
    }
}
