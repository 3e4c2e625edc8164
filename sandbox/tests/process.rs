//! The process runtime's supervision, with a stand-in gateway (a small
//! Python server speaking the same HTTP contract as OpenClaw) so each test
//! takes seconds, not the real gateway's 15 s and 1 GB. The real OpenClaw
//! is tested in `tests/openclaw.rs`.
#![allow(clippy::unwrap_used)] // test file: a failed unwrap is a failed test

use std::sync::Arc;
use std::time::Duration;

use sparebox_sandbox::process::openclaw::LlmEndpoint;
use sparebox_sandbox::process::{
    Enforcement, Gateway, ProcState, ProcessConfig, ProcessRuntime, RestartPolicy,
};
use sparebox_sandbox::{AgentLimits, Artifact, DeployRequest, OpenClawSettings, Runtime, Task};

/// Each test gets its own port range, so tests running side by side do not
/// collide.
fn runtime(
    dir: &std::path::Path,
    port_base: u16,
    mode: &str,
    tweak: impl FnOnce(&mut ProcessConfig),
) -> Arc<ProcessRuntime> {
    let script = format!(
        "{}/tests/support/gateway_standin.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut cfg = ProcessConfig::new(
        dir.join("rt"),
        Gateway::Custom {
            program: "/usr/bin/python3".into(),
            args: vec![script, mode.into()],
        },
        LlmEndpoint {
            base_url: "http://127.0.0.1:9/v1".into(),
            api_key: None,
        },
    );
    cfg.ready_timeout = Duration::from_secs(20);
    cfg.port_base = port_base;
    cfg.stop_grace = Duration::from_secs(3);
    cfg.restart = RestartPolicy {
        max_restarts: 3,
        initial_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(2),
        reset_after: Duration::from_secs(300),
    };
    tweak(&mut cfg);
    let db = sled::open(dir.join("db")).unwrap();
    Arc::new(ProcessRuntime::new(cfg, &db).unwrap())
}

fn request(id: &str, memory_mib: usize) -> DeployRequest {
    DeployRequest {
        agent_id: id.into(),
        artifact: Artifact::OpenClaw(OpenClawSettings {
            model: "test-model".into(),
            system_prompt: Some("Be brief.".into()),
            files: [("AGENTS.md".to_string(), "Rules.".to_string())].into(),
            tools: vec![],
        }),
        limits: AgentLimits {
            memory_bytes: memory_mib << 20,
            task_timeout: Duration::from_secs(10),
            cpu_millis: 500,
            pids_max: 64,
            ..AgentLimits::default()
        },
        grants: Default::default(),
    }
}

async fn wait_for(
    rt: &ProcessRuntime,
    id: &str,
    what: &str,
    f: impl Fn(&ProcState) -> bool,
) -> ProcState {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = rt.state(id).unwrap();
        if f(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn task(content: &str) -> Task {
    Task {
        id: "t".into(),
        content: content.into(),
        ..Task::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_message_stop_start_undeploy_with_separate_profiles_and_ports() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), 20001, "normal", |_| {});
    rt.deploy(request("a", 128)).await.unwrap();
    rt.deploy(request("b", 128)).await.unwrap();
    assert_eq!(rt.state("a").unwrap(), ProcState::Running);
    let out = rt.execute("a", task("hello")).await.unwrap();
    assert_eq!(out.reply, "standin: hello");
    assert_eq!(out.tokens_used, 15);

    let (pa, da) = rt.endpoint("a").unwrap();
    let (pb, db) = rt.endpoint("b").unwrap();
    assert_eq!(pb, pa + 120, "ports step by 120");
    assert_ne!(da, db);
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(da.join("home/.openclaw/openclaw.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["gateway"]["bind"], "loopback");
    assert_eq!(cfg["gateway"]["auth"]["mode"], "token");
    assert_eq!(
        cfg["gateway"]["http"]["endpoints"]["chatCompletions"]["enabled"],
        true
    );
    assert_eq!(cfg["agents"]["defaults"]["heartbeat"]["every"], "0m");
    assert_eq!(
        cfg["tools"]["deny"],
        serde_json::json!(["exec", "process", "browser"])
    );
    assert_eq!(
        cfg["models"]["providers"]["sparebox"]["baseUrl"],
        "http://127.0.0.1:9/v1"
    );
    assert_eq!(
        std::fs::read_to_string(da.join("home/.openclaw/workspace/SOUL.md")).unwrap(),
        "Be brief."
    );

    rt.stop("a").await.unwrap();
    assert_eq!(rt.state("a").unwrap(), ProcState::Stopped);
    assert!(rt.execute("a", task("x")).await.is_err());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", pa)).is_err(),
        "gateway gone"
    );
    rt.start("a").await.unwrap();
    assert_eq!(
        rt.execute("a", task("again")).await.unwrap().reply,
        "standin: again"
    );

    rt.undeploy("a").await.unwrap();
    assert!(!da.exists());
    rt.deploy(request("c", 128)).await.unwrap();
    assert_eq!(rt.endpoint("c").unwrap().0, pa, "the freed port is reused");
    for id in ["b", "c"] {
        rt.undeploy(id).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_is_reported_then_restarted_with_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), 21001, "crash-once", |_| {});
    rt.deploy(request("c", 128)).await.unwrap();
    let failed = wait_for(&rt, "c", "crash seen", |s| {
        matches!(s, ProcState::Failed { .. })
    })
    .await;
    match failed {
        ProcState::Failed {
            exit_code,
            last_lines,
            ..
        } => {
            assert_eq!(exit_code, Some(3));
            assert!(
                last_lines.iter().any(|l| l.contains("crashing on purpose")),
                "{last_lines:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    wait_for(&rt, "c", "restarted", |s| *s == ProcState::Running).await;
    assert_eq!(
        rt.execute("c", task("back")).await.unwrap().reply,
        "standin: back"
    );
    assert!(
        rt.logs("c", 50)
            .unwrap()
            .iter()
            .any(|l| l.contains("restarting in 200 ms"))
    );
    rt.undeploy("c").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_keeps_crashing_stays_failed() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), 22001, "crash", |c| c.restart.max_restarts = 1);
    rt.deploy(request("k", 128)).await.unwrap();
    // Crash, one restart, crash again: then it stays failed.
    tokio::time::sleep(Duration::from_secs(5)).await;
    match rt.state("k").unwrap() {
        ProcState::Failed { exit_code, .. } => assert_eq!(exit_code, Some(3)),
        other => panic!("{other:?}"),
    }
    let restarts = rt
        .logs("k", 100)
        .unwrap()
        .iter()
        .filter(|l| l.contains("restarting in"))
        .count();
    assert_eq!(restarts, 1);
    rt.undeploy("k").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hog_is_killed_by_its_cgroup_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), 23001, "hog", |c| c.restart.max_restarts = 0);
    rt.deploy(request("h", 96)).await.unwrap();
    let s = wait_for(&rt, "h", "OOM kill", |s| {
        matches!(s, ProcState::Failed { .. })
    })
    .await;
    match s {
        ProcState::Failed {
            exit_code, reason, ..
        } => {
            assert_eq!(exit_code, Some(137), "{reason}");
            assert!(reason.contains("SIGKILL"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    rt.undeploy("h").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_stops_an_agent_over_its_limit_after_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), 24001, "hog", |c| {
        c.enforcement = Enforcement::MonitorAndKill;
        c.watchdog_window = Duration::from_secs(1);
        c.sample_every = Duration::from_millis(200);
    });
    rt.deploy(request("w", 96)).await.unwrap();
    let started = std::time::Instant::now();
    let s = wait_for(&rt, "w", "watchdog", |s| {
        matches!(s, ProcState::Failed { .. })
    })
    .await;
    match s {
        ProcState::Failed { reason, .. } => {
            assert!(reason.starts_with("over_limit: RSS"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "not before the window"
    );
    assert!(rt.sample("w").unwrap().rss_bytes > 96 << 20);
    rt.undeploy("w").await.unwrap();
}
