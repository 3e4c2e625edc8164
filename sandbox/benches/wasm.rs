//! WASI runtime benchmarks, each against a baseline measured in the same run.
//!
//! `cargo bench -p sparebox-sandbox --bench wasm` (needs `scripts/build-guests`).
//! 1. Per-task cost: `Runtime::execute` of the hostile guest's `ping` (no
//!    host calls) against raw wasmtime with the same engine settings
//!    (pooling, `InstancePre`, minimal WASI, other imports as traps).
//! 2. Density: RSS per idle deployed agent over 1,000 agents.
//! 3. Throughput: tasks/s and p50/p99 latency with 100 agents.
//! 4. Egress gate: the cost of judging one request (one WHATWG parse, the
//!    grant and the address literal) against the parse alone.
//! 5. Fair slots: a quiet agent's `ping` p99 while a noisy agent keeps its
//!    share busy with long tasks, against the same p99 with no noise.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sparebox_sandbox::wasm::{WasmConfig, WasmRuntime};
use sparebox_sandbox::{AgentGrants, AgentLimits, Artifact, DeployRequest, Runtime, Task};
use wasmtime::component::{Component, Linker, ResourceTable, Val};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

fn guest(name: &str) -> Vec<u8> {
    let path = format!("{}/../guests/dist/{name}.wasm", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}; run scripts/build-guests first"))
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn request(id: &str, bytes: &[u8]) -> DeployRequest {
    DeployRequest {
        agent_id: id.into(),
        artifact: Artifact::Component {
            sha256: hex::encode(Sha256::digest(bytes)),
            bytes: bytes.to_vec(),
        },
        limits: AgentLimits {
            memory_bytes: 16 << 20,
            ..AgentLimits::default()
        },
        grants: AgentGrants {
            kv_max_bytes: 1 << 20,
            kv_max_keys: 100,
            ..AgentGrants::default()
        },
    }
}

fn ping() -> Task {
    Task {
        id: "b".into(),
        content: "ping".into(),
        ..Task::default()
    }
}

struct Raw {
    wasi: WasiCtx,
    table: ResourceTable,
}
impl WasiView for Raw {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

async fn raw_baseline(bytes: &[u8], n: u32) -> Duration {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(64)
        .max_memory_size(256 << 20)
        .max_core_instances_per_component(32)
        .max_memories_per_component(4)
        .max_tables_per_component(16);
    let mut c = Config::new();
    c.wasm_component_model(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    let engine = Engine::new(&c).unwrap();
    let component = Component::new(&engine, bytes).unwrap();
    let mut linker: Linker<Raw> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    // The baseline links all of WASI (sockets included) but not wasi:http.
    for prefix in ["sparebox:agent/", "wasi:http/"] {
        sparebox_sandbox::wasm::host::stub_imports(&mut linker, &engine, &component, prefix)
            .unwrap();
    }
    let pre = linker.instantiate_pre(&component).unwrap();
    let task = Val::Record(vec![
        ("id".into(), Val::String("b".into())),
        ("thread-id".into(), Val::Option(None)),
        ("content".into(), Val::String("ping".into())),
        ("author".into(), Val::Option(None)),
        ("context".into(), Val::List(vec![])),
        ("mentions".into(), Val::List(vec![])),
    ]);
    let start = Instant::now();
    for _ in 0..n {
        let mut store = Store::new(
            &engine,
            Raw {
                wasi: WasiCtx::builder().build(),
                table: ResourceTable::new(),
            },
        );
        let instance = pre.instantiate_async(&mut store).await.unwrap();
        let f = instance.get_func(&mut store, "handle").unwrap();
        let mut out = [Val::Bool(false)];
        f.call_async(&mut store, std::slice::from_ref(&task), &mut out)
            .await
            .unwrap();
    }
    start.elapsed() / n
}

fn main() {
    let rt_tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt_tokio.block_on(async {
        let bytes = guest("hostile");
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let rt = Arc::new(WasmRuntime::new(WasmConfig::new(dir.path().join("rt")), db, None).unwrap());
        println!("allocator: {:?}", rt.allocator());

        // 1. Per-task cost.
        rt.deploy(request("a0", &bytes)).await.unwrap();
        let n = 2000;
        for _ in 0..100 {
            rt.execute("a0", ping()).await.unwrap();
        }
        let raw = raw_baseline(&bytes, n).await;
        let start = Instant::now();
        for _ in 0..n {
            rt.execute("a0", ping()).await.unwrap();
        }
        let ours = start.elapsed() / n;
        println!("per-task: sparebox Runtime::execute {:?}, raw wasmtime {:?}, overhead {:.2}x (goal <= 2x)", ours, raw, ours.as_secs_f64() / raw.as_secs_f64());

        // 2. Density.
        let before = rss_bytes();
        for i in 1..=1000 {
            rt.deploy(request(&format!("d{i}"), &bytes)).await.unwrap();
        }
        let after = rss_bytes();
        println!(
            "density: 1000 idle agents added {:.1} MiB RSS, {:.1} KiB per agent (goal <= 1024 KiB)",
            (after - before) as f64 / 1048576.0,
            (after - before) as f64 / 1000.0 / 1024.0
        );

        // 3. Throughput over 100 agents.
        let total = 5000usize;
        let start = Instant::now();
        let mut handles = Vec::new();
        for w in 0..50 {
            let rt = rt.clone();
            handles.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                for i in 0..total / 50 {
                    let agent = format!("d{}", 1 + (w * 7 + i) % 100);
                    let t = Instant::now();
                    rt.execute(&agent, ping()).await.unwrap();
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for h in handles {
            lat.extend(h.await.unwrap());
        }
        let secs = start.elapsed().as_secs_f64();
        lat.sort();
        println!(
            "throughput: {:.0} tasks/s over 100 agents, p50 {:?}, p99 {:?} ({} tasks, 50 concurrent callers)",
            total as f64 / secs,
            lat[lat.len() / 2],
            lat[lat.len() * 99 / 100],
            total
        );

        // 4. Egress gate.
        {
            use sparebox_sandbox::egress::{Destination, Egress, HostPattern};
            let gate = Egress::default();
            let grant: Vec<HostPattern> = ["api.example.com", "*.example.org", "8.8.8.8"]
                .iter()
                .map(|p| HostPattern::parse(p).unwrap())
                .collect();
            let urls = [
                "https://api.example.com/v1/chat?x=1",
                "http://0x7f.1:7878/api/health",
                "https://a.b.example.org/",
                "http://2852039166/latest/meta-data/",
            ];
            let n = 200_000u32;
            let start = Instant::now();
            for i in 0..n {
                let u = url::Url::parse(urls[i as usize % urls.len()]).unwrap();
                std::hint::black_box(u);
            }
            let parse = start.elapsed() / n;
            let start = Instant::now();
            for i in 0..n {
                let d = Destination::parse(urls[i as usize % urls.len()]).unwrap();
                std::hint::black_box(gate.authorize(&grant, &d).is_ok());
            }
            let judged = start.elapsed() / n;
            println!(
                "egress gate: parse + grant + address {:?} per request, WHATWG parse alone {:?}, ratio {:.2}x",
                judged,
                parse,
                judged.as_secs_f64() / parse.as_secs_f64()
            );
        }

        // 5. Fair slots.
        {
            let dir = tempfile::tempdir().unwrap();
            let db = sled::open(dir.path().join("db")).unwrap();
            let mut cfg = WasmConfig::new(dir.path().join("rt"));
            cfg.max_concurrent = 4;
            cfg.max_concurrent_per_agent = 2;
            let rt = Arc::new(WasmRuntime::new(cfg, db, None).unwrap());
            rt.deploy(request("quiet", &bytes)).await.unwrap();
            let mut noisy = request("noisy", &bytes);
            noisy.limits.cpu_millis = 1000;
            noisy.limits.task_timeout = Duration::from_secs(30);
            rt.deploy(noisy).await.unwrap();
            async fn p99(rt: &WasmRuntime, n: usize) -> Duration {
                let mut lat = Vec::with_capacity(n);
                for _ in 0..n {
                    let t = Instant::now();
                    rt.execute("quiet", ping()).await.unwrap();
                    lat.push(t.elapsed());
                }
                lat.sort();
                lat[n * 99 / 100]
            }
            p99(&rt, 200).await;
            let alone = p99(&rt, 2000).await;
            let mut loops = Vec::new();
            for _ in 0..8 {
                let rt = rt.clone();
                loops.push(tokio::spawn(async move {
                    let _ = rt
                        .execute(
                            "noisy",
                            Task {
                                id: "n".into(),
                                content: "loop".into(),
                                ..Task::default()
                            },
                        )
                        .await;
                }));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            let noisy = p99(&rt, 2000).await;
            let q = rt.queue_depth("noisy").unwrap();
            println!(
                "fair slots: quiet ping p99 {:?} alone, {:?} beside a noisy agent ({} running, {} waiting on its share of {}), ratio {:.2}x",
                alone,
                noisy,
                q.running,
                q.waiting,
                q.share,
                noisy.as_secs_f64() / alone.as_secs_f64()
            );
            for l in loops {
                l.abort();
            }
        }
    });
}
