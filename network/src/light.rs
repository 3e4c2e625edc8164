//! A light peer, as the CLI (and tests) use it: it listens nowhere, dials,
//! asks, collects adverts, and serves the components it is deploying. It
//! uses a fresh transport identity each run; what it signs (offers,
//! commands) is signed with the deployer key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::adverts::{AdvertIndex, Verdict};
use crate::client::{self, Client};
use crate::config::NetConfig;
use crate::error::NetError;
use crate::inbound::Inbound;
use sparebox_protocol::identity::{Keypair, PublicKey};
use sparebox_protocol::rpc::{
    ArtifactRequest, ArtifactResponse, ControlRequest, ControlResponse, DeployRequest,
    DeployResponse, Rejection, SyncResponse,
};
use sparebox_protocol::{Digest, now_secs};

/// What a light client serves and collects.
#[derive(Debug, Default)]
pub struct Light {
    pub adverts: Option<Arc<AdvertIndex>>,
    /// Components served over `/sparebox/artifact/1`, by sha256.
    pub artifacts: Mutex<HashMap<Digest, Arc<Vec<u8>>>>,
    /// Bytes of artifacts served so far (for the progress bar).
    pub served: AtomicU64,
}

#[async_trait::async_trait]
impl Inbound for Light {
    fn validate_advert(&self, author: Option<PublicKey>, bytes: &[u8]) -> Verdict {
        match &self.adverts {
            Some(idx) => idx.validate_gossip(author, bytes, now_secs()),
            None => Verdict::Ignore("not collecting"),
        }
    }
    fn synced(&self, _from: PublicKey, reply: SyncResponse) {
        if let Some(idx) = &self.adverts {
            for a in reply.adverts {
                let _ = idx.insert_synced(&a, now_secs());
            }
        }
    }
    fn sync(&self) -> SyncResponse {
        SyncResponse::default()
    }
    async fn deploy(&self, _from: PublicKey, _req: DeployRequest) -> DeployResponse {
        DeployResponse::Rejected(Rejection::new(
            "not_a_host",
            "this peer is a CLI, not a host",
        ))
    }
    async fn control(&self, _from: PublicKey, _req: ControlRequest) -> ControlResponse {
        ControlResponse::Rejected(Rejection::new(
            "not_a_host",
            "this peer is a CLI, not a host",
        ))
    }
    async fn artifact(&self, _from: PublicKey, req: ArtifactRequest) -> ArtifactResponse {
        let bytes = self
            .artifacts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&req.sha256)
            .cloned();
        let Some(bytes) = bytes else {
            return ArtifactResponse::NotFound;
        };
        let chunk = ArtifactResponse::chunk_of(&bytes, req.offset);
        if let ArtifactResponse::Chunk { data, .. } = &chunk {
            self.served.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        chunk
    }
}

/// Starts a light peer with a fresh identity that dials `bootstrap`.
pub async fn start(
    light: Arc<Light>,
    bootstrap: Vec<String>,
    mdns: bool,
) -> Result<Client, NetError> {
    let key = Keypair::generate().map_err(|e| NetError::Setup(format!("transport key: {e}")))?;
    start_as(&key, light, bootstrap, mdns).await
}

/// Starts a light peer with transport identity `key`.
pub async fn start_as(
    key: &Keypair,
    light: Arc<Light>,
    bootstrap: Vec<String>,
    mdns: bool,
) -> Result<Client, NetError> {
    let cfg = NetConfig {
        listen: Vec::new(),
        bootstrap: Vec::new(),
        mdns,
        heartbeat: std::time::Duration::from_millis(300),
        ..NetConfig::default()
    };
    let (client, _task) = client::start(key, cfg, light).await?;
    for b in bootstrap {
        client.dial(&b).await.map_err(|e| NetError::Unreachable {
            peer: b.clone(),
            reason: e.to_string(),
        })?;
    }
    Ok(client)
}
