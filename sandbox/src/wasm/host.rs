//! Per-task store state and the host capabilities (`llm`, `kv`, `log`).
//!
//! Each capability follows the same three steps: its bindings are linked
//! once (`link`), its grants are checked when the agent is deployed
//! (`AgentShared`), and its per-task state lives in [`TaskState`]. Every
//! host call is charged against the task's host-call budget first, so a
//! guest cannot flood the host with cheap calls.

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{ResourceLimiter, Result as WtResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::AgentShared;
use super::http::HttpGate;
use super::kv::KvRefusal;
use crate::llm::{self, LlmProvider};
use crate::runtime::RuntimeError;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "agent",
    imports: { default: async | trappable },
    exports: { default: async },
});

use sparebox::agent::{kv, llm as wit_llm, log as wit_log};

/// Largest log message accepted from a guest, in bytes.
pub const MAX_LOG_ARG: usize = 64 * 1024;
/// Largest total size of an LLM request from a guest, in bytes.
pub const MAX_LLM_ARG: usize = 1 << 20;

/// Caps linear memory summed over every memory of the store.
#[derive(Debug)]
pub struct MemoryCap {
    pub limit: usize,
    pub used: usize,
    pub hit: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> WtResult<bool> {
        let total = self.used.saturating_sub(current).saturating_add(desired);
        if total > self.limit {
            self.hit = true;
            return Ok(false);
        }
        self.used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> WtResult<bool> {
        Ok(desired <= 100_000)
    }
}

/// Everything one task's store holds.
pub struct TaskState {
    pub wasi: WasiCtx,
    pub http_ctx: WasiHttpCtx,
    pub http: HttpGate,
    pub table: ResourceTable,
    pub memory: MemoryCap,
    pub agent: Arc<AgentShared>,
    /// This task's hold on the agent's disk quota.
    pub disk: super::disk::DiskTask,
    pub llm: Option<Arc<dyn LlmProvider>>,
    pub hostcalls: u64,
    pub tokens: u64,
    /// The limit this task broke, if any: a trap is reported as this error.
    pub violation: Option<RuntimeError>,
}

impl std::fmt::Debug for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskState")
            .field("agent", &self.agent.id)
            .field("hostcalls", &self.hostcalls)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

impl WasiView for TaskState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for TaskState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http_ctx,
            table: &mut self.table,
            hooks: &mut self.http,
        }
    }
}

impl TaskState {
    /// Charges one host call; past the budget, the task traps.
    fn charge(&mut self) -> WtResult<()> {
        self.hostcalls += 1;
        let limit = self.agent.limits.hostcalls_per_task;
        if self.hostcalls > limit {
            self.violation = Some(RuntimeError::HostcallLimit { limit });
            return Err(wasmtime::format_err!(
                "host call budget of {limit} exhausted"
            ));
        }
        Ok(())
    }

    fn too_large(&mut self, call: &'static str, size: usize, max: usize) -> wasmtime::Error {
        self.violation = Some(RuntimeError::ArgumentTooLarge { call, size, max });
        wasmtime::format_err!("argument to {call} too large")
    }
}

/// Interface prefixes the host implements. Anything else a component
/// imports is refused at deploy, except `wasi:sockets`, see [`link_agent`].
pub const PROVIDED_IMPORTS: &[&str] = &[
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:cli/",
    "wasi:filesystem/",
    "wasi:http/types@",
    "wasi:http/outgoing-handler@",
    "sparebox:agent/",
];

/// The interface prefix of `wasi:sockets`, which is never linked.
pub const SOCKETS: &str = "wasi:sockets/";

/// Links the WASI interfaces an agent may use, our `sparebox:agent`
/// imports, and outbound `wasi:http`. `wasi:sockets` is deliberately not
/// linked: see [`link_agent`].
pub fn link(linker: &mut Linker<TaskState>) -> Result<(), RuntimeError> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView as _};
    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView as _};
    use wasmtime_wasi::p2::bindings::{cli, filesystem, random};
    use wasmtime_wasi::random::WasiRandom;

    let l = &mut *linker;
    let wasi = |e: wasmtime::Error| RuntimeError::Linker {
        what: "WASI",
        reason: format!("{e:#}"),
    };
    // io, clocks, random, stdin/stdout/stderr.
    wasmtime_wasi::p2::add_to_linker_proxy_interfaces_async(l).map_err(wasi)?;
    filesystem::types::add_to_linker::<TaskState, WasiFilesystem>(l, TaskState::filesystem)
        .map_err(wasi)?;
    filesystem::preopens::add_to_linker::<TaskState, WasiFilesystem>(l, TaskState::filesystem)
        .map_err(wasi)?;
    // The disk quota shadows the filesystem functions that add bytes.
    super::disk::link(l)?;
    random::insecure::add_to_linker::<TaskState, WasiRandom>(l, |t| t.wasi.random())
        .map_err(wasi)?;
    random::insecure_seed::add_to_linker::<TaskState, WasiRandom>(l, |t| t.wasi.random())
        .map_err(wasi)?;
    cli::exit::add_to_linker::<TaskState, WasiCli>(l, TaskState::cli).map_err(wasi)?;
    cli::environment::add_to_linker::<TaskState, WasiCli>(l, TaskState::cli).map_err(wasi)?;
    cli::terminal_input::add_to_linker::<TaskState, WasiCli>(l, TaskState::cli).map_err(wasi)?;
    cli::terminal_output::add_to_linker::<TaskState, WasiCli>(l, TaskState::cli).map_err(wasi)?;
    cli::terminal_stdin::add_to_linker::<TaskState, WasiCli>(l, TaskState::cli).map_err(wasi)?;
    cli::terminal_stdout::add_to_linker::<TaskState, WasiCli>(l, TaskState::cli).map_err(wasi)?;
    cli::terminal_stderr::add_to_linker::<TaskState, WasiCli>(l, TaskState::cli).map_err(wasi)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(l).map_err(|e| RuntimeError::Linker {
        what: "wasi:http",
        reason: format!("{e:#}"),
    })?;
    Agent::add_to_linker::<TaskState, HasSelf<TaskState>>(l, |s| s).map_err(|e| {
        RuntimeError::Linker {
            what: "sparebox:agent",
            reason: format!("{e:#}"),
        }
    })?;
    Ok(())
}

/// The linker for one component. An import the host does not provide is
/// refused with its name. `wasi:sockets` imports (Rust's std and wasi-libc
/// pull them in freely) are bound to stubs that trap when called, so a
/// component that merely imports them deploys, and one that opens a socket
/// fails that task with `capability_denied`.
/// Why a component cannot be linked against this host.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the component imports `{0}`, which this host does not provide")]
    NotProvided(String),
    #[error("cannot stub the component's socket imports: {0}")]
    Stub(String),
}

pub fn link_agent<'a>(
    base: &'a Linker<TaskState>,
    engine: &wasmtime::Engine,
    component: &wasmtime::component::Component,
) -> Result<std::borrow::Cow<'a, Linker<TaskState>>, LinkError> {
    let mut sockets = false;
    for (name, _) in component.component_type().imports(engine) {
        if name.starts_with(SOCKETS) {
            sockets = true;
        } else if !PROVIDED_IMPORTS.iter().any(|p| name.starts_with(p)) {
            return Err(LinkError::NotProvided(name.to_string()));
        }
    }
    if !sockets {
        return Ok(std::borrow::Cow::Borrowed(base));
    }
    let mut linker = base.clone();
    stub_imports(&mut linker, engine, component, SOCKETS)
        .map_err(|e| LinkError::Stub(format!("{e:#}")))?;
    Ok(std::borrow::Cow::Owned(linker))
}

/// Defines every instance the component imports whose name starts with
/// `prefix` (`wasi:sockets/` here) with functions that trap (`unknown
/// import: ...`, reported as `capability_denied` for sockets). Resources
/// borrowed from `wasi:io` keep their real types so the imports still
/// type-check; the stubbed interfaces' own resources get a placeholder that
/// no call can create. (wasmtime's `define_unknown_imports_as_traps` cannot
/// be used: it also stubs older-versioned `wasi:io` imports that the linker
/// would have matched by semver, breaking their resource types.)
pub fn stub_imports<T: 'static>(
    linker: &mut Linker<T>,
    engine: &wasmtime::Engine,
    component: &wasmtime::component::Component,
    prefix: &str,
) -> WtResult<()> {
    use wasmtime::component::ResourceType;
    use wasmtime::component::types::ComponentItem;
    use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, IoError};

    struct NoSocket;
    let ty = component.component_type();
    for (name, import) in ty.imports(engine) {
        if !name.starts_with(prefix) {
            continue;
        }
        let ComponentItem::ComponentInstance(instance) = import.ty else {
            continue;
        };
        let mut inst = linker.instance(name)?;
        for (item, export) in instance.exports(engine) {
            match export.ty {
                ComponentItem::ComponentFunc(_) => {
                    let what = format!("{name}#{item}");
                    inst.func_new(item, move |_, _, _, _| {
                        Err(wasmtime::format_err!(
                            "unknown import: `{what}` has not been defined"
                        ))
                    })?;
                }
                ComponentItem::Resource(_) => {
                    let host = match item {
                        "pollable" => ResourceType::host::<DynPollable>(),
                        "input-stream" => ResourceType::host::<DynInputStream>(),
                        "output-stream" => ResourceType::host::<DynOutputStream>(),
                        "error" | "io-error" => ResourceType::host::<IoError>(),
                        _ => ResourceType::host::<NoSocket>(),
                    };
                    inst.resource(item, host, |_, _| Ok(()))?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

impl sparebox::agent::types::Host for TaskState {}

impl wit_log::Host for TaskState {
    async fn log(&mut self, level: wit_log::Level, message: String) -> WtResult<()> {
        self.charge()?;
        if message.len() > MAX_LOG_ARG {
            return Err(self.too_large("log.log", message.len(), MAX_LOG_ARG));
        }
        let level = match level {
            wit_log::Level::Trace => "trace",
            wit_log::Level::Debug => "debug",
            wit_log::Level::Info => "info",
            wit_log::Level::Warn => "warn",
            wit_log::Level::Error => "error",
        };
        self.agent.log.push(&self.agent.id, level, &message);
        Ok(())
    }
}

fn kv_err(r: KvRefusal) -> kv::Error {
    match r {
        KvRefusal::QuotaExceeded => kv::Error::QuotaExceeded,
        KvRefusal::TooLarge => kv::Error::TooLarge,
        KvRefusal::Other(m) => kv::Error::Other(m),
    }
}

impl kv::Host for TaskState {
    async fn get(&mut self, key: String) -> WtResult<Result<Option<Vec<u8>>, kv::Error>> {
        self.charge()?;
        Ok(self.agent.kv.get(&key).map_err(kv_err))
    }
    async fn set(&mut self, key: String, value: Vec<u8>) -> WtResult<Result<(), kv::Error>> {
        self.charge()?;
        Ok(self.agent.kv.set(&key, &value).map_err(kv_err))
    }
    async fn delete(&mut self, key: String) -> WtResult<Result<(), kv::Error>> {
        self.charge()?;
        Ok(self.agent.kv.delete(&key).map_err(kv_err))
    }
    async fn list_keys(&mut self, prefix: String) -> WtResult<Result<Vec<String>, kv::Error>> {
        self.charge()?;
        Ok(self.agent.kv.list(&prefix).map_err(kv_err))
    }
}

impl wit_llm::Host for TaskState {
    async fn chat(
        &mut self,
        messages: Vec<wit_llm::Message>,
        params: wit_llm::Params,
    ) -> WtResult<Result<wit_llm::Completion, wit_llm::Error>> {
        self.charge()?;
        let size: usize = messages.iter().map(|m| m.content.len()).sum();
        if size > MAX_LLM_ARG {
            return Err(self.too_large("llm.chat", size, MAX_LLM_ARG));
        }
        if !self
            .agent
            .grants
            .llm_models
            .iter()
            .any(|m| m == &params.model)
        {
            return Ok(Err(wit_llm::Error::ModelNotAllowed(params.model)));
        }
        let budget = self.agent.limits.tokens_per_task;
        if self.tokens >= budget {
            return Ok(Err(wit_llm::Error::QuotaExceeded));
        }
        if messages.is_empty() {
            return Ok(Err(wit_llm::Error::InvalidInput("no messages".into())));
        }
        if params
            .temperature
            .is_some_and(|t| !(0.0..=2.0).contains(&t))
        {
            return Ok(Err(wit_llm::Error::InvalidInput(
                "temperature must be within 0..=2".into(),
            )));
        }
        let Some(provider) = self.llm.clone() else {
            return Ok(Err(wit_llm::Error::ProviderError(
                "this host has no LLM provider configured".into(),
            )));
        };
        let left = u32::try_from(budget - self.tokens).unwrap_or(u32::MAX);
        let request = llm::ChatRequest {
            model: params.model,
            messages: messages
                .into_iter()
                .map(|m| llm::ChatMessage {
                    role: match m.role {
                        wit_llm::Role::System => llm::Role::System,
                        wit_llm::Role::User => llm::Role::User,
                        wit_llm::Role::Assistant => llm::Role::Assistant,
                        wit_llm::Role::Tool => llm::Role::Tool,
                    },
                    content: m.content,
                })
                .collect(),
            max_tokens: Some(params.max_tokens.map_or(left, |m| m.min(left))),
            temperature: params.temperature,
        };
        match provider.chat(request).await {
            Ok(r) => {
                self.tokens += u64::from(r.prompt_tokens) + u64::from(r.completion_tokens);
                Ok(Ok(wit_llm::Completion {
                    content: r.content,
                    usage: wit_llm::Usage {
                        prompt_tokens: r.prompt_tokens,
                        completion_tokens: r.completion_tokens,
                    },
                }))
            }
            Err(llm::LlmError::UnknownModel(m)) => Ok(Err(wit_llm::Error::ModelNotAllowed(m))),
            Err(llm::LlmError::Provider(m)) => Ok(Err(wit_llm::Error::ProviderError(m))),
        }
    }
}
