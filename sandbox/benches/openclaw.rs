//! Cold start to ready, and RSS per agent: an OpenClaw gateway under the
//! process runtime against a WASI agent, in the same run.
//!
//! Run: `SPAREBOX_OPENCLAW_DIR=... cargo bench -p sparebox-sandbox --bench openclaw`
//! (scripts/test installs OpenClaw into ~/.cache/sparebox-openclaw/openclaw).
//! The WASI figure is the deploy of a component not yet in the compile
//! cache (compile + link + first instantiate), and its RSS is measured as
//! the growth of this process over 100 such agents.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sparebox_sandbox::process::openclaw::{Install, LlmEndpoint};
use sparebox_sandbox::process::{Gateway, ProcessConfig, ProcessRuntime};
use sparebox_sandbox::wasm::{WasmConfig, WasmRuntime};
use sparebox_sandbox::{
    AgentGrants, AgentLimits, Artifact, DeployRequest, OpenClawSettings, Runtime, Task,
};

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tmp");
        // WASI: cold deploy (fresh compile cache) and RSS per agent.
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../guests/dist/echo.wasm"
        ))
        .expect("run scripts/build-guests");
        let sha = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&bytes))
        };
        let db = sled::open(dir.path().join("db")).expect("sled");
        let wasm = WasmRuntime::new(WasmConfig::new(dir.path().join("wasm")), db.clone(), None)
            .expect("wasm runtime");
        let req = |id: &str| DeployRequest {
            agent_id: id.into(),
            artifact: Artifact::Component {
                sha256: sha.clone(),
                bytes: bytes.clone(),
            },
            limits: AgentLimits::default(),
            grants: AgentGrants {
                kv_max_bytes: 1 << 16,
                kv_max_keys: 64,
                ..Default::default()
            },
        };
        let t = Instant::now();
        wasm.deploy(req("cold")).await.expect("deploy");
        wasm.execute(
            "cold",
            Task {
                id: "t".into(),
                content: "hi".into(),
                ..Task::default()
            },
        )
        .await
        .expect("first task");
        let wasi_cold = t.elapsed();
        let before = rss_bytes();
        for i in 0..100 {
            wasm.deploy(req(&format!("a{i}"))).await.expect("deploy");
        }
        let wasi_rss = (rss_bytes().saturating_sub(before)) / 100;

        // OpenClaw: cold start of a fresh profile to /readyz, and its tree's RSS.
        let install = Install::locate(std::path::Path::new(
            &std::env::var("SPAREBOX_OPENCLAW_DIR").expect("set SPAREBOX_OPENCLAW_DIR"),
        ))
        .expect("openclaw install");
        let mut cfg = ProcessConfig::new(
            dir.path().join("proc"),
            Gateway::OpenClaw(install),
            LlmEndpoint {
                base_url: "http://127.0.0.1:9/v1".into(),
                api_key: None,
            },
        );
        cfg.port_base = 26001;
        cfg.sample_every = Duration::from_millis(500);
        let procs = Arc::new(ProcessRuntime::new(cfg, &db).expect("process runtime"));
        let t = Instant::now();
        procs
            .deploy(DeployRequest {
                agent_id: "oc".into(),
                artifact: Artifact::OpenClaw(OpenClawSettings {
                    model: "m".into(),
                    ..Default::default()
                }),
                limits: AgentLimits {
                    memory_bytes: 2 << 30,
                    cpu_millis: 2000,
                    ..AgentLimits::default()
                },
                grants: AgentGrants::default(),
            })
            .await
            .expect("openclaw deploy");
        let oc_cold = t.elapsed();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let oc_rss = procs.sample("oc").expect("sample").rss_bytes;
        procs.undeploy("oc").await.expect("undeploy");

        println!(
            "cold start to ready: openclaw {:.2} s, wasi {:.1} ms → {:.0}x",
            oc_cold.as_secs_f64(),
            wasi_cold.as_secs_f64() * 1e3,
            oc_cold.as_secs_f64() / wasi_cold.as_secs_f64()
        );
        println!(
            "RSS per agent: openclaw {} MiB, wasi {:.1} KiB → {:.0}x",
            oc_rss >> 20,
            wasi_rss as f64 / 1024.0,
            oc_rss as f64 / wasi_rss.max(1) as f64
        );
    });
}
