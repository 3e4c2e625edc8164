//! A light peer, as the CLI (and tests) use it: it listens nowhere, dials,
//! asks, collects adverts, and serves the components it is deploying. It
//! uses a fresh transport identity each run; what it signs (offers,
//! commands) is signed with the deployer key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{Client, Inbound, NetConfig};
use crate::adverts::{AdvertIndex, Verdict};
use crate::identity::{Keypair, PublicKey};
use crate::protocol::rpc::{
    ARTIFACT_CHUNK, ArtifactRequest, ArtifactResponse, ControlRequest, ControlResponse,
    DeployRequest, DeployResponse, Rejection, SyncResponse,
};
use crate::protocol::{Digest, now_secs};

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
        let total = bytes.len() as u64;
        let start = req.offset.min(total) as usize;
        let end = (start + ARTIFACT_CHUNK as usize).min(bytes.len());
        self.served
            .fetch_add((end - start) as u64, Ordering::Relaxed);
        ArtifactResponse::Chunk {
            total,
            data: bytes[start..end].to_vec(),
        }
    }
}

/// Starts a light peer with a fresh identity that dials `bootstrap`.
pub async fn start(
    light: Arc<Light>,
    bootstrap: Vec<String>,
    mdns: bool,
) -> anyhow::Result<Client> {
    start_as(&Keypair::generate()?, light, bootstrap, mdns).await
}

/// Starts a light peer with transport identity `key`.
pub async fn start_as(
    key: &Keypair,
    light: Arc<Light>,
    bootstrap: Vec<String>,
    mdns: bool,
) -> anyhow::Result<Client> {
    let cfg = NetConfig {
        listen: Vec::new(),
        bootstrap: Vec::new(),
        mdns,
        heartbeat: std::time::Duration::from_millis(300),
        ..NetConfig::default()
    };
    let (client, _task) = super::start(key, cfg, light).await?;
    for b in bootstrap {
        client
            .dial(&b)
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach {b}: {e}"))?;
    }
    Ok(client)
}
