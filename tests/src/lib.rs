//! Helpers for cross-crate scenarios: nodes (and, later, a marketplace)
//! started in-process on 127.0.0.1 port 0, each in its own temp dir.

use std::time::Duration;

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
