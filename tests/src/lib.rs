//! Helpers for cross-crate scenarios: nodes and a marketplace (with a fake
//! Stripe) started in-process on 127.0.0.1 port 0, each in its own temp dir.

use std::time::Duration;

pub mod browser;
pub mod fake_stripe;
pub mod market;

use sparebox_node::config::NodeConfig;
use sparebox_node::daemon::Node;

/// A node running in this process, with its temp data dir.
#[derive(Debug)]
pub struct TestNode {
    pub node: Node,
    pub dir: tempfile::TempDir,
    pub config: NodeConfig,
}

impl TestNode {
    pub fn api_url(&self) -> String {
        format!("http://{}", self.node.api_addr())
    }
}

/// Starts a node on 127.0.0.1:0 in a fresh temp dir.
pub async fn spawn_node() -> anyhow::Result<TestNode> {
    spawn_node_with(|_| {}).await
}

/// The config tests start from: API and libp2p on 127.0.0.1 port 0, no
/// mDNS (no traffic beyond loopback), data in `dir`.
pub fn test_config(dir: &std::path::Path) -> NodeConfig {
    let mut config = NodeConfig {
        data_dir: Some(dir.join("node")),
        ..NodeConfig::default()
    };
    config.api.addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.network.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    config.network.mdns = false;
    config
}

/// Starts a node like [`spawn_node`], after `tweak` edits its config.
pub async fn spawn_node_with(tweak: impl FnOnce(&mut NodeConfig)) -> anyhow::Result<TestNode> {
    let dir = tempfile::tempdir()?;
    let mut config = test_config(dir.path());
    tweak(&mut config);
    let node = Node::start(&config).await?;
    Ok(TestNode { node, dir, config })
}

/// Restarts a stopped node on the same data dir and config.
pub async fn restart(dir: tempfile::TempDir, config: NodeConfig) -> anyhow::Result<TestNode> {
    let node = Node::start(&config).await?;
    Ok(TestNode { node, dir, config })
}

/// Runs `fut` under a timeout, so a hung scenario fails instead of hanging CI.
pub async fn within<T>(limit: Duration, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("scenario did not finish within {limit:?}"),
    }
}

/// The `sparebox` binary next to this test executable (cargo builds every
/// workspace binary before running workspace tests).
pub fn sparebox_bin() -> std::path::PathBuf {
    workspace_bin("sparebox")
}

/// The `sparebox-market` binary, like [`sparebox_bin`].
pub fn market_bin() -> std::path::PathBuf {
    workspace_bin("sparebox-market")
}

fn workspace_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(|d| {
            if d.ends_with("deps") {
                d.parent()
            } else {
                Some(d)
            }
        })
        .expect("target dir");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} not built; run the tests with `cargo nextest run --workspace`",
        bin.display()
    );
    bin
}

/// A deployer: a key in a temp XDG home, and the CLI run with that home.
#[derive(Debug)]
pub struct Deployer {
    pub home: tempfile::TempDir,
    pub key: sparebox_protocol::identity::Keypair,
}

impl Deployer {
    pub fn new() -> anyhow::Result<Deployer> {
        let home = tempfile::tempdir()?;
        let key = sparebox_protocol::identity::Keypair::generate()?;
        key.save(&home.path().join("data/sparebox/keys/deployer.key"), false)?;
        Ok(Deployer { home, key })
    }

    /// Runs `sparebox ARGS` as this deployer; returns (success, stdout, stderr).
    pub async fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = tokio::process::Command::new(sparebox_bin())
            .args(args)
            .env("HOME", self.home.path())
            .env("XDG_DATA_HOME", self.home.path().join("data"))
            .env("XDG_CONFIG_HOME", self.home.path().join("config"))
            .env_remove("RUST_LOG")
            .output()
            .await
            .expect("run sparebox");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// The repository root (for example specs and guest components).
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{what}: not within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A direct (free) offer from `deployer` to `host` for `spec`, valid for
/// ten minutes, with a fresh id and nonce.
pub fn direct_offer(
    deployer: &sparebox_protocol::identity::Keypair,
    host: sparebox_protocol::identity::PublicKey,
    spec: &sparebox_protocol::spec::ResolvedSpec,
) -> sparebox_protocol::DeploymentOffer {
    use sparebox_protocol::{DeploymentOffer, Id, Message, Payment, PriceTerms, now_secs};
    let now = now_secs();
    DeploymentOffer {
        version: DeploymentOffer::VERSION,
        offer_id: Id::random().expect("random"),
        deployer: deployer.public(),
        host,
        issued_at: now,
        expires_at: now + 600,
        nonce: Id::random().expect("random"),
        spec_sha256: spec.sha256,
        runtime: spec.spec.runtime,
        resources: spec.spec.resource_request(),
        price: PriceTerms {
            currency: "usd".into(),
            ..PriceTerms::default()
        },
        payment: Payment::Direct,
    }
}

/// Polls `GET {node_api}/api/tasks/{task_id}` with `token` until the task
/// has completed or failed (at most `limit`), and returns it.
pub async fn wait_task(
    node_api: &str,
    task_id: &str,
    token: &str,
    limit: Duration,
) -> serde_json::Value {
    eventually(limit, "task done", || {
        let url = format!("{node_api}/api/tasks/{task_id}");
        let token = token.to_string();
        async move {
            let t: serde_json::Value = reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (t["status"] == "completed" || t["status"] == "failed").then_some(t)
        }
    })
    .await
}

/// Sends `content` to the agent whose API is `agent_api`
/// (`{node}/api/agents/{id}`, as `deploy` prints it) with its bearer token,
/// and waits (at most `limit`) for the task to end; returns the task.
pub async fn ask_agent(
    node_api: &str,
    agent_api: &str,
    token: &str,
    content: &str,
    limit: Duration,
) -> serde_json::Value {
    let r: serde_json::Value = reqwest::Client::new()
        .post(format!("{agent_api}/messages"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "content": content }))
        .send()
        .await
        .expect("message sent")
        .json()
        .await
        .expect("message answered");
    let task = r["taskId"].as_str().expect("a task id").to_string();
    wait_task(node_api, &task, token, limit).await
}
