//! The real OpenClaw gateway under the process runtime. Needs the install
//! that `scripts/test` makes (`sparebox openclaw install`); its directory
//! comes from SPAREBOX_OPENCLAW_DIR. Takes about a minute: a gateway needs
//! 10–30 s to become ready on 2 cores.
#![allow(clippy::unwrap_used)] // test file: a failed unwrap is a failed test

use std::sync::Arc;
use std::time::{Duration, Instant};

use sparebox_sandbox::process::openclaw::{Install, LlmEndpoint};
use sparebox_sandbox::process::{Gateway, ProcState, ProcessConfig, ProcessRuntime};
use sparebox_sandbox::{AgentLimits, Artifact, DeployRequest, OpenClawSettings, Runtime, Task};

fn install() -> Install {
    let dir = std::env::var("SPAREBOX_OPENCLAW_DIR").expect(
        "SPAREBOX_OPENCLAW_DIR is not set: run scripts/test, which installs OpenClaw, or \
         `sparebox openclaw install --data-dir D` and set it to D/openclaw",
    );
    Install::locate(std::path::Path::new(&dir)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openclaw_agent_answers_through_its_gateway_and_survives_stop_and_restart() {
    let install = install();
    assert_eq!(install.version, "2026.9.6");
    let (llm_url, seen) = sparebox_testkit::fake_llm("hello from the fake model").await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ProcessConfig::new(
        dir.path().join("rt"),
        Gateway::OpenClaw(install),
        LlmEndpoint {
            base_url: llm_url,
            api_key: Some("sk-test".into()),
        },
    );
    cfg.port_base = 25001;
    cfg.ready_timeout = Duration::from_secs(120);
    let db = sled::open(dir.path().join("db")).unwrap();
    let rt = Arc::new(ProcessRuntime::new(cfg, &db).unwrap());
    let req = DeployRequest {
        agent_id: "assistant".into(),
        artifact: Artifact::OpenClaw(OpenClawSettings {
            model: "test-model".into(),
            system_prompt: Some("You are terse.".into()),
            files: [("AGENTS.md".to_string(), "Answer briefly.".to_string())].into(),
            tools: vec![],
        }),
        limits: AgentLimits {
            memory_bytes: 2 << 30,
            task_timeout: Duration::from_secs(60),
            cpu_millis: 2000,
            pids_max: 256,
            ..AgentLimits::default()
        },
        grants: Default::default(),
    };
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(150), rt.deploy(req))
        .await
        .unwrap()
        .unwrap();
    eprintln!(
        "openclaw: ready after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(rt.state("assistant").unwrap(), ProcState::Running);

    let out = rt
        .execute(
            "assistant",
            Task {
                id: "t1".into(),
                content: "Say hello.".into(),
                ..Task::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(out.reply, "hello from the fake model");
    assert_eq!(out.tokens_used, 15);
    {
        let seen = seen.lock().unwrap();
        let sent = seen.last().unwrap();
        assert_eq!(sent["model"], "test-model");
        let system = sent["messages"][0]["content"].to_string();
        assert!(
            system.contains("Answer briefly."),
            "workspace AGENTS.md reaches the model"
        );
        let tools: Vec<String> = sent["tools"]
            .as_array()
            .map(|t| {
                t.iter()
                    .map(|x| x["function"]["name"].to_string())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            !tools.iter().any(|t| t.contains("exec")),
            "exec is denied: {tools:?}"
        );
    }

    // The profile is the agent's own.
    let (_, profile) = rt.endpoint("assistant").unwrap();
    assert!(profile.join("home/.openclaw/openclaw.json").exists());
    assert!(profile.join("home/.openclaw/workspace/SOUL.md").exists());
    assert!(
        profile.join("logs/openclaw.log").exists()
            || profile.join("home/.openclaw").read_dir().unwrap().count() > 1
    );
    let sample = rt.sample("assistant").unwrap();
    eprintln!(
        "openclaw: RSS {} MiB over {} processes",
        sample.rss_bytes >> 20,
        sample.processes
    );

    rt.stop("assistant").await.unwrap();
    assert_eq!(rt.state("assistant").unwrap(), ProcState::Stopped);
    let restarted = Instant::now();
    rt.start("assistant").await.unwrap();
    eprintln!(
        "openclaw: restarted in {:.1} s",
        restarted.elapsed().as_secs_f64()
    );
    let again = rt
        .execute(
            "assistant",
            Task {
                id: "t2".into(),
                content: "Again.".into(),
                ..Task::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(again.reply, "hello from the fake model");
    rt.undeploy("assistant").await.unwrap();
    assert!(!profile.exists());
}
