//! Running a node: identity, store and API, started together and stopped
//! cleanly.
//!
//! [`Node::start`] does the work in order (each step depends on the one
//! before): create the data dir (0700, it holds the key) → load or create the
//! node key → open the store (which also takes the data dir's lock) → bind the
//! API. [`Node::shutdown`] stops the API gracefully and flushes the store.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::api::{self, ApiState};
use crate::config::NodeConfig;
use crate::identity::{KeyError, Keypair, PublicKey};
use crate::store::{Store, StoreError};

/// Why the node could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot create data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("node key: {0}")]
    Key(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "cannot listen on {addr}: {source} (is another node running? pick another with --api-addr)"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the API server failed: {0}")]
    Serve(std::io::Error),
}

/// A running node.
#[derive(Debug)]
pub struct Node {
    key: Keypair,
    store: Store,
    data_dir: PathBuf,
    api_addr: SocketAddr,
    key_created: bool,
    stop_api: Option<oneshot::Sender<()>>,
    api_task: JoinHandle<std::io::Result<()>>,
}

impl Node {
    /// Starts a node with `config`, its data in `config.data_dir()`.
    pub async fn start(config: &NodeConfig) -> Result<Node, NodeError> {
        let data_dir = config.data_dir();
        create_private_dir(&data_dir)?;
        let (key, key_created) = Keypair::load_or_create(&data_dir.join("node.key"))?;
        let store = Store::open(&data_dir)?;
        let starts = store.record_start()?;

        let listener = tokio::net::TcpListener::bind(config.api.addr)
            .await
            .map_err(|source| NodeError::Bind {
                addr: config.api.addr,
                source,
            })?;
        let api_addr = listener.local_addr().map_err(|source| NodeError::Bind {
            addr: config.api.addr,
            source,
        })?;
        let state = Arc::new(ApiState {
            started: Instant::now(),
            node: key.public(),
        });
        let (stop_api, stopped) = oneshot::channel::<()>();
        let api_task = tokio::spawn(async move {
            axum::serve(listener, api::app(state))
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        tracing::info!(peer_id = %key.public(), data_dir = %data_dir.display(), %api_addr, starts, "node started");
        Ok(Node {
            key,
            store,
            data_dir,
            api_addr,
            key_created,
            stop_api: Some(stop_api),
            api_task,
        })
    }

    pub fn public_key(&self) -> PublicKey {
        self.key.public()
    }
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
    /// Whether this start created the node key.
    pub fn key_created(&self) -> bool {
        self.key_created
    }

    /// Stops the API (letting requests in flight finish) and flushes the store.
    pub async fn shutdown(mut self) -> Result<(), NodeError> {
        if let Some(stop) = self.stop_api.take() {
            let _ = stop.send(());
        }
        match (&mut self.api_task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(NodeError::Serve(e)),
            Err(e) => return Err(NodeError::Serve(std::io::Error::other(e))),
        }
        self.store.flush()?;
        tracing::info!("node stopped");
        Ok(())
    }
}

fn create_private_dir(path: &Path) -> Result<(), NodeError> {
    let err = |source| NodeError::DataDir {
        path: path.to_path_buf(),
        source,
    };
    if !path.exists() {
        std::fs::create_dir_all(path).map_err(err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

/// Installs SIGINT and SIGTERM handlers now and returns a future that
/// resolves on the first of them. Install it *before* announcing the node, so
/// a signal sent as soon as the banner appears is never lost to the default
/// action (which would kill the process without flushing the store).
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT received, stopping"),
            _ = term.recv() => tracing::info!("SIGTERM received, stopping"),
        }
    })
}
