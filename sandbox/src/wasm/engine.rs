//! The wasmtime engine and the on-disk compile cache.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::WasmConfig;
use crate::runtime::RuntimeError;

/// The epoch tick: how often running guests are interrupted to yield.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Which instance allocator the engine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AllocatorKind {
    Pooling,
    OnDemand,
}

/// Builds the engine: component model, epoch interruption, a bounded wasm
/// stack, copy-on-write memory images, and the pooling allocator — falling
/// back to on-demand allocation when the pool's address-space reservation
/// fails (small `ulimit -v`, 32-bit hosts).
pub fn build_engine(cfg: &WasmConfig) -> Result<(Engine, AllocatorKind), RuntimeError> {
    let base = || {
        let mut c = Config::new();
        c.wasm_component_model(true);
        c.epoch_interruption(true);
        c.max_wasm_stack(cfg.max_wasm_stack);
        c.memory_init_cow(true);
        c
    };
    if cfg.pooling {
        let mut pool = PoolingAllocationConfig::default();
        let n = cfg.pool_instances;
        pool.total_component_instances(n);
        pool.total_core_instances(n * 8);
        pool.total_memories(n * 2);
        pool.total_tables(n * 8);
        pool.max_core_instances_per_component(32);
        pool.max_memories_per_component(4);
        pool.max_tables_per_component(16);
        pool.max_memory_size(cfg.max_memory_per_agent);
        let mut c = base();
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        match Engine::new(&c) {
            Ok(engine) => {
                tracing::info!(slots = n, "wasm engine: pooling allocator");
                return Ok((engine, AllocatorKind::Pooling));
            }
            Err(e) => {
                tracing::warn!(error = %e, "pooling allocator unavailable; falling back to on-demand allocation")
            }
        }
    }
    let engine = Engine::new(&base()).map_err(|e| RuntimeError::Engine {
        op: "on-demand engine",
        reason: format!("{e:#}"),
    })?;
    tracing::info!("wasm engine: on-demand allocator");
    Ok((engine, AllocatorKind::OnDemand))
}

/// Starts the thread that advances the engine's epoch every [`EPOCH_TICK`].
/// It ends on its own once the engine is dropped.
pub fn spawn_epoch_ticker(engine: &Engine) -> Result<(), RuntimeError> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map(|_| ())
        .map_err(|e| RuntimeError::Engine {
            op: "epoch ticker",
            reason: e.to_string(),
        })
}

/// Compiled components, in memory (shared by agents with the same artifact)
/// and on disk under `dir`, keyed by the artifact's sha256 and the engine's
/// compatibility hash. A disk entry is used only if its own sha256 sidecar
/// matches; anything stale or corrupt is recompiled and rewritten.
#[derive(Debug)]
pub struct ComponentCache {
    dir: PathBuf,
    engine_tag: String,
    memory: Mutex<HashMap<String, Component>>,
}

/// Where a component came from, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSource {
    Memory,
    Disk,
    Compiled,
}

impl ComponentCache {
    pub fn new(dir: &Path, engine: &Engine) -> Result<Self, RuntimeError> {
        std::fs::create_dir_all(dir).map_err(|source| RuntimeError::Io {
            op: "create cache dir",
            path: dir.to_path_buf(),
            source,
        })?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Ok(ComponentCache {
            dir: dir.to_path_buf(),
            engine_tag: format!("{:016x}", h.finish()),
            memory: Mutex::new(HashMap::new()),
        })
    }

    fn paths(&self, sha256: &str) -> (PathBuf, PathBuf) {
        let stem = format!("{sha256}-{}", self.engine_tag);
        (
            self.dir.join(format!("{stem}.cwasm")),
            self.dir.join(format!("{stem}.cwasm.sha256")),
        )
    }

    /// The compiled component for `bytes` (whose sha256 the caller verified).
    pub fn get_or_compile(
        &self,
        engine: &Engine,
        agent: &str,
        sha256: &str,
        bytes: &[u8],
    ) -> Result<(Component, CacheSource), RuntimeError> {
        if let Some(c) = self
            .memory
            .lock()
            .map_err(|_| RuntimeError::Poisoned("component cache"))?
            .get(sha256)
        {
            return Ok((c.clone(), CacheSource::Memory));
        }
        let (bin, sum) = self.paths(sha256);
        let (component, source) = match self.load_from_disk(engine, &bin, &sum) {
            Some(c) => (c, CacheSource::Disk),
            None => {
                let compiled =
                    engine
                        .precompile_component(bytes)
                        .map_err(|e| RuntimeError::Compile {
                            agent: agent.into(),
                            reason: format!("{e:#}"),
                        })?;
                let c =
                    deserialize_trusted(engine, &compiled).map_err(|e| RuntimeError::Compile {
                        agent: agent.into(),
                        reason: format!("{e:#}"),
                    })?;
                if let Err(e) = write_entry(&bin, &sum, &compiled) {
                    tracing::warn!(error = %e, path = %bin.display(), "cannot write compile cache entry");
                }
                (c, CacheSource::Compiled)
            }
        };
        self.memory
            .lock()
            .map_err(|_| RuntimeError::Poisoned("component cache"))?
            .insert(sha256.to_string(), component.clone());
        Ok((component, source))
    }

    fn load_from_disk(&self, engine: &Engine, bin: &Path, sum: &Path) -> Option<Component> {
        let bytes = std::fs::read(bin).ok()?;
        let expected = std::fs::read_to_string(sum).ok()?;
        if hex::encode(Sha256::digest(&bytes)) != expected.trim() {
            tracing::warn!(path = %bin.display(), "compile cache entry is corrupt; recompiling");
            return None;
        }
        match deserialize_trusted(engine, &bytes) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %bin.display(), error = %e, "compile cache entry is stale; recompiling");
                None
            }
        }
    }
}

/// Deserializes bytes this process produced with `precompile_component`,
/// or read back from the cache after their sha256 matched the sidecar
/// written next to them.
#[allow(unsafe_code)]
fn deserialize_trusted(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `Component::deserialize` runs native code from `bytes`, so they
    // must come from wasmtime's own compiler. They do: either they were just
    // produced by `precompile_component`, or they are a cache file whose
    // sha256 equals the digest recorded when we wrote it. wasmtime itself
    // additionally checks the header and engine compatibility.
    unsafe { Component::deserialize(engine, bytes) }
}

fn write_entry(bin: &Path, sum: &Path, compiled: &[u8]) -> std::io::Result<()> {
    // Write-then-rename so a crash never leaves a half-written entry that
    // matches its digest.
    let tmp = bin.with_extension("tmp");
    std::fs::write(&tmp, compiled)?;
    std::fs::write(sum, hex::encode(Sha256::digest(compiled)))?;
    std::fs::rename(&tmp, bin)
}
