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
}

impl TestNode {
    pub fn api_url(&self) -> String {
        format!("http://{}", self.node.api_addr())
    }
}

/// Starts a node on 127.0.0.1:0 in a fresh temp dir.
pub async fn spawn_node() -> anyhow::Result<TestNode> {
    let dir = tempfile::tempdir()?;
    let mut config = NodeConfig {
        data_dir: Some(dir.path().join("node")),
        ..NodeConfig::default()
    };
    config.api.addr = "127.0.0.1:0".parse()?;
    let node = Node::start(&config).await?;
    Ok(TestNode { node, dir })
}

/// Runs `fut` under a timeout, so a hung scenario fails instead of hanging CI.
pub async fn within<T>(limit: Duration, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("scenario did not finish within {limit:?}"),
    }
}
