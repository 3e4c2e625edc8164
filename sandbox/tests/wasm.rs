//! The WASI runtime against real guest components (built by
//! `scripts/build-guests` into `guests/dist`).
#![allow(clippy::unwrap_used)] // test file: a failed unwrap is a failed test

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sparebox_sandbox::llm::{LlmProvider, OpenAiProvider};
use sparebox_sandbox::wasm::{CacheSource, WasmConfig, WasmRuntime};
use sparebox_sandbox::{
    AgentGrants, AgentLimits, Artifact, DeployRequest, Runtime, RuntimeError, Task,
};

fn guest(name: &str) -> Vec<u8> {
    let path = format!("{}/../guests/dist/{name}.wasm", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}; run scripts/build-guests first"))
}

async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .expect("test timed out")
}

struct Harness {
    rt: WasmRuntime,
    _dir: tempfile::TempDir,
}

fn runtime_in(
    dir: &std::path::Path,
    cfg: impl FnOnce(&mut WasmConfig),
    llm: Option<Arc<dyn LlmProvider>>,
) -> WasmRuntime {
    let mut c = WasmConfig::new(dir.join("rt"));
    cfg(&mut c);
    let db = sled::open(dir.join("db")).unwrap();
    WasmRuntime::new(c, db, llm).unwrap()
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    Harness {
        rt: runtime_in(dir.path(), |_| {}, None),
        _dir: dir,
    }
}

fn limits() -> AgentLimits {
    AgentLimits {
        memory_bytes: 32 << 20,
        task_timeout: Duration::from_millis(500),
        hostcalls_per_task: 1000,
        table_entries: 200,
        ..AgentLimits::default()
    }
}

fn grants() -> AgentGrants {
    AgentGrants {
        llm_models: vec!["test-model".into()],
        kv_max_bytes: 10_000,
        kv_max_keys: 100,
        outbound_hosts: vec![],
    }
}

fn request(id: &str, name: &str, grants: AgentGrants) -> DeployRequest {
    let bytes = guest(name);
    let sha256 = hex::encode(Sha256::digest(&bytes));
    DeployRequest {
        agent_id: id.into(),
        artifact: Artifact::Component { sha256, bytes },
        limits: limits(),
        grants,
    }
}

async fn deploy(rt: &WasmRuntime, id: &str, name: &str) {
    rt.deploy(request(id, name, grants())).await.unwrap();
}

fn task(content: &str) -> Task {
    Task {
        id: "t1".into(),
        content: content.into(),
        ..Task::default()
    }
}

/// Runs `content` on the hostile agent, then checks the agent still works.
async fn attempt(h: &Harness, content: &str) -> Result<String, RuntimeError> {
    let r = h.rt.execute("bad", task(content)).await.map(|o| o.reply);
    let next = h.rt.execute("bad", task("ping")).await.unwrap();
    assert_eq!(next.reply, "pong", "agent broken after `{content}`");
    r
}

async fn hostile() -> Harness {
    let h = harness();
    deploy(&h.rt, "bad", "hostile").await;
    h
}

fn assert_denied(r: Result<String, RuntimeError>) {
    match r {
        Err(RuntimeError::Agent(m)) if m.starts_with("denied") => {}
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[tokio::test]
async fn echo_replies_counts_in_kv_and_logs() {
    within(async {
        let h = harness();
        deploy(&h.rt, "echo", "echo").await;
        let out = h.rt.execute("echo", task("hello")).await.unwrap();
        assert_eq!(out.reply, "echo: hello");
        assert_eq!(out.hostcalls, 3, "kv get + kv set + log");
        h.rt.execute("echo", task("again")).await.unwrap();
        let status = h.rt.status("echo").await.unwrap();
        assert_eq!(status.tasks_completed, 2);
        let logs = h.rt.logs("echo", 10).unwrap();
        assert_eq!(logs.last().unwrap(), "[info] task t1 #2");
        assert!(!h.rt.capabilities().shell);
    })
    .await;
}

#[tokio::test]
async fn infinite_loop_is_stopped_by_the_timeout() {
    within(async {
        let h = hostile().await;
        let started = std::time::Instant::now();
        assert!(matches!(
            attempt(&h, "loop").await,
            Err(RuntimeError::Timeout { limit_ms: 500 })
        ));
        assert!(started.elapsed() < Duration::from_secs(3));
    })
    .await;
}

#[tokio::test]
async fn memory_is_capped_across_the_store_just_under_passes_just_over_fails() {
    within(async {
        let h = hostile().await;
        // The cap is 32 MiB for all memories together; the guest's own data
        // and allocator take a little, so 24 MiB fits and 33 MiB cannot.
        assert_eq!(attempt(&h, "alloc:24").await.unwrap(), "allocated 24 MiB");
        let r = attempt(&h, "alloc:33").await;
        assert!(
            matches!(r, Err(RuntimeError::MemoryLimit { limit_bytes }) if limit_bytes == 32 << 20),
            "{r:?}"
        );
        assert!(matches!(
            attempt(&h, "membomb").await,
            Err(RuntimeError::MemoryLimit { .. })
        ));
    })
    .await;
}

#[tokio::test]
async fn deep_recursion_overflows_the_bounded_stack() {
    within(async {
        let h = hostile().await;
        assert_eq!(attempt(&h, "recurse:1000").await.unwrap(), "depth 1000");
        let r = attempt(&h, "recurse").await;
        assert!(matches!(r, Err(RuntimeError::StackOverflow)), "{r:?}");
    })
    .await;
}

#[tokio::test]
async fn filesystem_escapes_are_denied() {
    within(async {
        let h = hostile().await;
        let dir = h.rt.agent_dir("bad").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("workspace/escape")).unwrap();
        for path in [
            "/workspace/../../etc/passwd",
            "../../etc/passwd",
            "/etc/passwd",
            "/workspace/escape",
        ] {
            assert_denied(attempt(&h, &format!("read:{path}")).await);
        }
        assert_denied(attempt(&h, "write:/team/x").await);
        assert_eq!(
            attempt(&h, "write:/workspace/ok").await.unwrap(),
            "wrote /workspace/ok"
        );
        assert_eq!(
            attempt(&h, "write:/memory/ok").await.unwrap(),
            "wrote /memory/ok"
        );
        assert!(dir.join("workspace/ok").exists() && dir.join("memory/ok").exists());
        assert!(!dir.join("team/x").exists());
    })
    .await;
}

#[tokio::test]
async fn sockets_and_environment_are_not_available() {
    within(async {
        let h = hostile().await;
        for target in ["socket", "socket:169.254.169.254:80", "socket:1.1.1.1:443"] {
            match attempt(&h, target).await {
                Err(e @ RuntimeError::CapabilityDenied { .. }) => {
                    assert_eq!(e.code(), "capability_denied")
                }
                other => panic!("{target}: expected capability_denied, got {other:?}"),
            }
        }
        assert_eq!(attempt(&h, "env").await.unwrap(), "env: []");
    })
    .await;
}

#[tokio::test]
async fn log_flood_exhausts_the_hostcall_budget() {
    within(async {
        let h = hostile().await;
        assert!(matches!(
            attempt(&h, "logflood").await,
            Err(RuntimeError::HostcallLimit { limit: 1000 })
        ));
        assert!(
            h.rt.logs("bad", 100_000).unwrap().len() <= 1000,
            "the log ring stays bounded"
        );
    })
    .await;
}

#[tokio::test]
async fn kv_writes_stop_at_the_quota() {
    within(async {
        let h = hostile().await;
        // 10_000 bytes; each entry is a 2-byte key plus 1024 bytes: 9 fit.
        match attempt(&h, "kvflood").await {
            Err(RuntimeError::Agent(m)) => {
                assert_eq!(m, "kv refused after 9 writes: Error::QuotaExceeded")
            }
            other => panic!("{other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn huge_hostcall_argument_is_refused() {
    within(async {
        let h = hostile().await;
        let r = attempt(&h, "hugearg:8").await;
        assert!(matches!(r, Err(RuntimeError::ArgumentTooLarge { call: "log.log", size, .. }) if size == 8 << 20), "{r:?}");
    })
    .await;
}

#[tokio::test]
async fn resource_table_is_capped() {
    within(async {
        let h = hostile().await;
        let r = attempt(&h, "files").await;
        assert!(
            matches!(r, Err(RuntimeError::ResourceLimit { limit: 200 })),
            "{r:?}"
        );
    })
    .await;
}

// Multi-thread, as in the node: on a current-thread runtime a guest that
// yields every epoch tick keeps the scheduler busy and delays its timers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_queues_then_refuses_when_full() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let rt = Arc::new(runtime_in(
            dir.path(),
            |c| {
                c.max_concurrent = 1;
                c.queue_capacity = 1;
            },
            None,
        ));
        deploy(&rt, "bad", "hostile").await;
        let a = tokio::spawn({
            let rt = rt.clone();
            async move { rt.execute("bad", task("loop")).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let b = tokio::spawn({
            let rt = rt.clone();
            async move { rt.execute("bad", task("ping")).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let c = rt.execute("bad", task("ping")).await;
        assert!(
            matches!(c, Err(RuntimeError::QueueFull { capacity: 1 })),
            "{c:?}"
        );
        assert!(matches!(
            a.await.unwrap(),
            Err(RuntimeError::Timeout { .. })
        ));
        assert_eq!(
            b.await.unwrap().unwrap().reply,
            "pong",
            "the queued task waited and ran"
        );
    })
    .await;
}

#[tokio::test]
async fn lifecycle_stop_start_undeploy_and_bad_artifact() {
    within(async {
        let h = harness();
        deploy(&h.rt, "echo", "echo").await;
        h.rt.stop("echo").await.unwrap();
        assert!(matches!(
            h.rt.execute("echo", task("x")).await,
            Err(RuntimeError::NotRunning(_))
        ));
        h.rt.start("echo").await.unwrap();
        h.rt.execute("echo", task("x")).await.unwrap();
        let dir = h.rt.agent_dir("echo").unwrap();
        h.rt.undeploy("echo").await.unwrap();
        assert!(!dir.exists());
        assert!(matches!(
            h.rt.execute("echo", task("x")).await,
            Err(RuntimeError::UnknownAgent(_))
        ));
        let mut bad = request("x", "echo", grants());
        bad.artifact = Artifact::Component {
            sha256: "00".repeat(32),
            bytes: guest("echo"),
        };
        assert_eq!(
            h.rt.deploy(bad).await.unwrap_err().code(),
            "artifact_mismatch"
        );
        let junk = b"not wasm".to_vec();
        let mut bad = request("y", "echo", grants());
        bad.artifact = Artifact::Component {
            sha256: hex::encode(Sha256::digest(&junk)),
            bytes: junk,
        };
        assert_eq!(h.rt.deploy(bad).await.unwrap_err().code(), "compile_failed");
    })
    .await;
}

#[tokio::test]
async fn compile_cache_survives_restart_and_recompiles_corrupt_entries() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let bytes = guest("echo");
        let sha = hex::encode(Sha256::digest(&bytes));
        {
            let rt = runtime_in(dir.path(), |_| {}, None);
            assert_eq!(
                rt.compile("a", &sha, &bytes).unwrap(),
                CacheSource::Compiled
            );
            assert_eq!(rt.compile("a", &sha, &bytes).unwrap(), CacheSource::Memory);
        }
        {
            let rt = runtime_in(dir.path(), |_| {}, None);
            assert_eq!(rt.compile("a", &sha, &bytes).unwrap(), CacheSource::Disk);
        }
        let entry = std::fs::read_dir(dir.path().join("rt/cache"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
            .unwrap();
        let mut data = std::fs::read(&entry).unwrap();
        let mid = data.len() / 2;
        data[mid] ^= 0xff;
        std::fs::write(&entry, data).unwrap();
        let rt = runtime_in(dir.path(), |_| {}, None);
        assert_eq!(
            rt.compile("a", &sha, &bytes).unwrap(),
            CacheSource::Compiled
        );
        deploy(&rt, "echo", "echo").await;
        assert_eq!(
            rt.execute("echo", task("ok")).await.unwrap().reply,
            "echo: ok"
        );
    })
    .await;
}

type Seen = Arc<std::sync::Mutex<Vec<serde_json::Value>>>;

/// A fake OpenAI-compatible server on 127.0.0.1:0 answering from a script.
async fn fake_llm(script: Vec<&'static str>) -> (String, Seen) {
    use axum::{Json, Router, routing::post};
    let seen: Seen = Arc::default();
    let answers = Arc::new(std::sync::Mutex::new(script.into_iter()));
    let s = seen.clone();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |Json(body): Json<serde_json::Value>| {
            let s = s.clone();
            let answers = answers.clone();
            async move {
                s.lock().unwrap().push(body);
                let content = answers.lock().unwrap().next().unwrap_or("out of script");
                Json(serde_json::json!({
                    "choices": [{"message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5}
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/v1"), seen)
}

fn provider(url: &str) -> Arc<dyn LlmProvider> {
    Arc::new(
        OpenAiProvider::new(
            url,
            Some("test-key".into()),
            vec!["test-model".into()],
            Duration::from_secs(5),
        )
        .unwrap(),
    )
}

#[tokio::test]
async fn llm_agent_runs_its_loop_against_a_fake_provider_and_counts_tokens() {
    within(async {
        let (url, seen) =
            fake_llm(vec!["TOOL remember blue", "Your favourite colour is blue."]).await;
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime_in(dir.path(), |_| {}, Some(provider(&url)));
        deploy(&rt, "llm", "llm-agent").await;
        let out = rt
            .execute("llm", task("Remember that I like blue."))
            .await
            .unwrap();
        assert_eq!(out.reply, "Your favourite colour is blue.");
        assert_eq!(
            out.tokens_used, 30,
            "two calls of 10 prompt + 5 completion tokens"
        );
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0]["model"], "test-model");
        assert_eq!(seen[1]["messages"][3]["role"], "tool");
        assert_eq!(seen[1]["messages"][3]["content"], "remembered");
    })
    .await;
}

#[tokio::test]
async fn llm_call_for_a_model_not_granted_is_refused() {
    within(async {
        let (url, seen) = fake_llm(vec!["never"]).await;
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime_in(dir.path(), |_| {}, Some(provider(&url)));
        rt.deploy(request(
            "llm",
            "llm-agent",
            AgentGrants {
                llm_models: vec![],
                ..grants()
            },
        ))
        .await
        .unwrap();
        match rt.execute("llm", task("hi")).await {
            Err(RuntimeError::Agent(m)) => assert!(m.contains("ModelNotAllowed"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(
            seen.lock().unwrap().is_empty(),
            "the provider was never called"
        );
    })
    .await;
}

#[tokio::test]
async fn on_tick_runs_for_scheduled_agents_and_is_refused_for_others() {
    within(async {
        let h = harness();
        deploy(&h.rt, "echo", "echo").await;
        deploy(&h.rt, "bad", "hostile").await;
        h.rt.tick("echo").await.unwrap();
        h.rt.tick("echo").await.unwrap();
        assert_eq!(h.rt.logs("echo", 1).unwrap(), ["[info] tick #2"]);
        assert!(matches!(
            h.rt.tick("bad").await,
            Err(RuntimeError::NoTick(_))
        ));
    })
    .await;
}

// ---- outbound HTTP -------------------------------------------------------

/// A plain HTTP server on 127.0.0.1:0: `/bytes/N` answers N bytes of `a`,
/// `/weather` a short text, `/redirect` a 302 to the metadata service.
async fn web_server() -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use axum::{Router, extract::Path, routing::get};
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    let app = Router::new()
        .route("/weather", get(|| async { "sunny, 21C" }))
        .route(
            "/bytes/{n}",
            get(|Path(n): Path<usize>| async move { "a".repeat(n) }),
        )
        .route(
            "/redirect",
            get(|| async {
                (
                    axum::http::StatusCode::FOUND,
                    [("location", "http://169.254.169.254/latest/meta-data/")],
                )
            }),
        )
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let h = h.clone();
                async move {
                    h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    next.run(req).await
                }
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, hits)
}

/// The hostile agent with `outbound_hosts`, on a runtime with `http` tweaks.
fn http_harness(cfg: impl FnOnce(&mut sparebox_sandbox::wasm::http::HttpConfig)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_in(dir.path(), |c| cfg(&mut c.http), None);
    Harness { rt, _dir: dir }
}

async fn deploy_hostile_with(h: &Harness, hosts: &[&str]) {
    h.rt.deploy(request(
        "bad",
        "hostile",
        AgentGrants {
            outbound_hosts: hosts.iter().map(|s| s.to_string()).collect(),
            ..grants()
        },
    ))
    .await
    .unwrap();
}

fn assert_http_error(r: Result<String, RuntimeError>, code: &str) {
    match r {
        Err(RuntimeError::Agent(m)) if m.starts_with("denied: http:") => {
            assert!(m.contains(code), "expected {code}, got {m}")
        }
        other => panic!("expected the http error {code}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_to_a_host_outside_the_grant_is_denied() {
    within(async {
        let (addr, hits) = web_server().await;
        let h = http_harness(|c| c.exempt_addrs = vec![addr.ip()]);
        deploy_hostile_with(&h, &["api.example.com"]).await;
        let r = attempt(&h, &format!("http:http://{addr}/weather")).await;
        assert_http_error(r, "HttpRequestDenied");
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert!(
            h.rt.logs("bad", 10)
                .unwrap()
                .iter()
                .any(|l| l.contains("is not in grants.outbound_hosts")),
            "the denial is in the agent's log"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_to_loopback_and_metadata_is_blocked_even_when_granted() {
    within(async {
        let (addr, hits) = web_server().await;
        let h = http_harness(|_| {});
        deploy_hostile_with(&h, &["127.0.0.1", "169.254.169.254", "localhost"]).await;
        // Literal addresses.
        assert_http_error(
            attempt(&h, &format!("http:http://{addr}/weather")).await,
            "DestinationIpProhibited",
        );
        assert_http_error(
            attempt(&h, "http:http://169.254.169.254/latest/meta-data/").await,
            "DestinationIpProhibited",
        );
        // A name that resolves to loopback: blocked after DNS.
        assert_http_error(
            attempt(
                &h,
                &format!("http:http://localhost:{}/weather", addr.port()),
            )
            .await,
            "DestinationIpProhibited",
        );
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    })
    .await;
}

/// The egress corpus through the hostile guest: a loopback server stands in
/// for the node's own API; every spelling of its address, or of the cloud
/// metadata address, is refused by the host (`destination-IP-prohibited`
/// when it is judged by address, `HTTP-request-denied` when no grant can
/// match it), the server is never reached, and the agent's next task works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_to_any_spelling_of_a_private_address_is_refused() {
    within(async {
        let (addr, hits) = web_server().await;
        let port = addr.port();
        let h = http_harness(|_| {});
        deploy_hostile_with(
            &h,
            &[
                "127.0.0.1",
                "localhost",
                "api.example.com",
                "*.example.com",
                "169.254.169.254",
            ],
        )
        .await;
        let by_address = [
            "127.0.0.1",
            "127.1",
            "127.0.1",
            "2130706433",
            "0x7f.1",
            "0x7f000001",
            "0177.0.0.1",
            "017700000001",
            "127.0.0.1.",
            "localhost",
            "LOCALHOST",
        ];
        for host in by_address {
            let r = attempt(&h, &format!("http:http://{host}:{port}/weather")).await;
            assert_http_error(r, "DestinationIpProhibited");
        }
        let ungrantable = [
            "[::1]",
            "[0:0:0:0:0:0:0:1]",
            "[::ffff:127.0.0.1]",
            "[::ffff:7f00:1]",
            "[::7f00:1]",
            "[64:ff9b::7f00:1]",
            "10.1",
        ];
        for host in ungrantable {
            let r = attempt(&h, &format!("http:http://{host}:{port}/weather")).await;
            let text = format!("{r:?}");
            assert!(
                text.contains("DestinationIpProhibited") || text.contains("HttpRequestDenied"),
                "{host}: {text}"
            );
        }
        for metadata in [
            "2852039166",
            "0xa9fea9fe",
            "169.254.43518",
            "0251.0376.0251.0376",
        ] {
            let r = attempt(&h, &format!("http:http://{metadata}/latest/meta-data/")).await;
            assert_http_error(r, "DestinationIpProhibited");
        }
        // Userinfo naming a granted host, or a percent-encoded address:
        // refused (by `wasi:http`'s authority check or by the gate).
        for host in ["api.example.com@127.0.0.1", "%31%32%37.0.0.1"] {
            let r = attempt(&h, &format!("http:http://{host}:{port}/weather")).await;
            assert!(r.is_err(), "{host}: {r:?}");
        }
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert!(
            h.rt.logs("bad", 200)
                .unwrap()
                .iter()
                .any(|l| l.contains("127.0.0.1 is 127.0.0.1, which is not a public address")),
            "the refusal names the address"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_within_the_grant_works_and_does_not_follow_redirects() {
    within(async {
        let (addr, hits) = web_server().await;
        let h = http_harness(|c| c.exempt_addrs = vec![addr.ip()]);
        deploy_hostile_with(&h, &["127.0.0.1"]).await;
        assert_eq!(
            attempt(&h, &format!("http:http://{addr}/weather"))
                .await
                .unwrap(),
            "HTTP 200 sunny, 21C"
        );
        // The 302 reaches the guest as it is; the metadata service is not asked.
        assert_eq!(
            attempt(&h, &format!("http:http://{addr}/redirect"))
                .await
                .unwrap(),
            "HTTP 302 "
        );
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_response_body_cap_is_exact() {
    within(async {
        let (addr, _) = web_server().await;
        let h = http_harness(|c| {
            c.exempt_addrs = vec![addr.ip()];
            c.max_response_body = 1000;
        });
        deploy_hostile_with(&h, &["127.0.0.1"]).await;
        let ok = attempt(&h, &format!("http:http://{addr}/bytes/1000"))
            .await
            .unwrap();
        assert_eq!(ok.len(), "HTTP 200 ".len() + 1000);
        assert_http_error(
            attempt(&h, &format!("http:http://{addr}/bytes/1001")).await,
            "HttpResponseBodySize",
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_timeout_and_request_budget_hold() {
    within(async {
        // A listener that accepts and never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_addr = silent.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = silent.accept().await {
                held.push(s);
            }
        });
        let (addr, _) = web_server().await;
        let h = http_harness(|c| {
            c.exempt_addrs = vec![addr.ip()];
            c.request_timeout = Duration::from_millis(200);
            c.max_requests_per_task = 2;
        });
        // The task may take longer than the HTTP timeout.
        let mut req = request(
            "bad",
            "hostile",
            AgentGrants {
                outbound_hosts: vec!["127.0.0.1".into()],
                ..grants()
            },
        );
        req.limits.task_timeout = Duration::from_secs(5);
        h.rt.deploy(req).await.unwrap();
        assert_http_error(
            attempt(&h, &format!("http:http://{silent_addr}/")).await,
            "HttpResponseTimeout",
        );
        assert_eq!(
            attempt(&h, &format!("httpn:2:http://{addr}/weather"))
                .await
                .unwrap(),
            "2 requests",
            "just at the budget"
        );
        let over = attempt(&h, &format!("httpn:3:http://{addr}/weather")).await;
        let text = format!("{over:?}");
        assert_http_error(over, "HttpRequestDenied");
        assert!(text.contains("request #3"), "{text}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_agent_uses_http_as_a_tool() {
    within(async {
        let (addr, _) = web_server().await;
        let (url, seen) = fake_llm(vec![
            Box::leak(format!("TOOL fetch http://{addr}/weather").into_boxed_str()),
            "It is sunny and 21C.",
        ])
        .await;
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime_in(
            dir.path(),
            |c| c.http.exempt_addrs = vec![addr.ip()],
            Some(provider(&url)),
        );
        rt.deploy(request(
            "llm",
            "llm-agent",
            AgentGrants {
                outbound_hosts: vec![format!("127.0.0.1:{}", addr.port())],
                ..grants()
            },
        ))
        .await
        .unwrap();
        let out = rt.execute("llm", task("Weather?")).await.unwrap();
        assert_eq!(out.reply, "It is sunny and 21C.");
        assert_eq!(out.tokens_used, 30);
        let seen = seen.lock().unwrap();
        assert_eq!(seen[1]["messages"][3]["content"], "HTTP 200\nsunny, 21C");
    })
    .await;
}

/// p99 of `n` sequential `ping`s of `agent`, in microseconds.
async fn ping_p99(rt: &WasmRuntime, agent: &str, n: usize) -> u128 {
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = std::time::Instant::now();
        let out = rt.execute(agent, task("ping")).await.unwrap();
        assert_eq!(out.reply, "pong");
        lat.push(t.elapsed().as_micros());
    }
    lat.sort_unstable();
    lat[(n * 99).div_ceil(100) - 1]
}

/// A noisy agent that fills its share with long tasks queues behind
/// itself: a quiet agent's tasks still get a slot at once, and its p99 stays
/// within 2× its p99 without the noise (plus 25 ms of scheduling slack).
/// With one global queue the quiet pings would wait for the noisy tasks'
/// whole timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noisy_agent_queues_behind_itself_not_in_front_of_others() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let rt = Arc::new(runtime_in(
            dir.path(),
            |c| {
                c.max_concurrent = 4;
                c.max_concurrent_per_agent = 2;
            },
            None,
        ));
        rt.deploy(request("quiet", "hostile", grants()))
            .await
            .unwrap();
        let mut noisy = request("noisy", "hostile", grants());
        noisy.limits.cpu_millis = 1000; // a share of one slot
        noisy.limits.task_timeout = Duration::from_secs(3);
        rt.deploy(noisy).await.unwrap();

        ping_p99(&rt, "quiet", 20).await; // warm up
        let quiet_alone = ping_p99(&rt, "quiet", 100).await;

        let mut loops = Vec::new();
        for _ in 0..8 {
            let rt = rt.clone();
            loops.push(tokio::spawn(async move {
                rt.execute("noisy", task("loop")).await
            }));
        }
        // Every noisy task is admitted: one runs, the rest wait on its share.
        let depth = loop {
            let q = rt.queue_depth("noisy").unwrap();
            if q.running + q.waiting == 8 {
                break q;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert_eq!((depth.running, depth.waiting, depth.share), (1, 7, 1));
        let quiet_noisy = ping_p99(&rt, "quiet", 100).await;
        assert!(
            quiet_noisy <= 2 * quiet_alone + 25_000,
            "quiet p99 {quiet_noisy} µs with a noisy neighbour, {quiet_alone} µs alone"
        );
        for h in loops {
            h.abort();
        }
        rt.undeploy("noisy").await.unwrap();
        assert_eq!(
            rt.execute("quiet", task("ping")).await.unwrap().reply,
            "pong"
        );
    })
    .await;
}

/// `disk_bytes` is a limit: a guest appending 1 MiB chunks stops at its
/// cap with an error, its log says why, the host holds no more than the
/// cap, and the next task, another agent's writes and a fresh deploy work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_filling_its_disk_stops_at_disk_mib() {
    within(async {
        let h = harness();
        let mut req = request("bad", "hostile", grants());
        // 4 MiB of data and the one file's entry (4 KiB).
        req.limits.disk_bytes = (4 << 20) + 4096;
        req.limits.task_timeout = Duration::from_secs(20);
        h.rt.deploy(req).await.unwrap();
        match attempt(&h, "fill:/workspace/big").await {
            Err(RuntimeError::Agent(m)) => {
                assert!(m.starts_with("denied: fill: after 4 MiB"), "{m}")
            }
            other => panic!("the fill must stop at the cap, got {other:?}"),
        }
        let on_host = h.rt.agent_dir("bad").unwrap().join("workspace/big");
        assert!(std::fs::metadata(&on_host).unwrap().len() <= 4 << 20);
        assert!(
            h.rt.logs("bad", 50)
                .unwrap()
                .iter()
                .any(|l| l.contains("resources.disk_mib")),
            "the agent's log says why"
        );
        // The cap covers /memory too, and the next task starts from what
        // the files hold: nothing more fits.
        match attempt(&h, "fill:/memory/more").await {
            Err(RuntimeError::Agent(m)) => assert!(
                m.starts_with("denied: fill: after 0 MiB") || m.contains("No space left"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        // Another agent, and a fresh deploy, are not affected.
        let mut other = request("other", "hostile", grants());
        other.limits.disk_bytes = 8 << 20;
        other.limits.task_timeout = Duration::from_secs(20);
        h.rt.deploy(other).await.unwrap();
        let r =
            h.rt.execute("other", task("write:/workspace/x"))
                .await
                .unwrap();
        assert_eq!(r.reply, "wrote /workspace/x");
        deploy(&h.rt, "fresh", "hostile").await;
        assert_eq!(
            h.rt.execute("fresh", task("ping")).await.unwrap().reply,
            "pong"
        );
    })
    .await;
}

/// Entries cost too: an agent cannot exhaust the host's inodes with empty
/// files or directories under a small cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_files_count_against_disk_mib() {
    within(async {
        let h = harness();
        let mut req = request("bad", "hostile", grants());
        req.limits.disk_bytes = 10 * 4096;
        h.rt.deploy(req).await.unwrap();
        let mut made = 0;
        for i in 0..20 {
            match h
                .rt
                .execute("bad", task(&format!("write:/workspace/f{i}")))
                .await
            {
                Ok(_) => made += 1,
                Err(RuntimeError::Agent(m)) => {
                    assert!(m.contains("No space left"), "{m}");
                    break;
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        // Each 1-byte file takes an entry and a block: 5 fit in 10 blocks.
        assert_eq!(made, 5);
    })
    .await;
}
