//! Component bytes: fetched from the deployer over `/sparebox/artifact/1`
//! in chunks, verified against the offer's sha256, kept in
//! `<data>/artifacts/<sha256>.wasm`.

use std::path::PathBuf;

use sparebox_protocol::identity::PublicKey;
use sparebox_protocol::rpc::{ARTIFACT_CHUNK, ArtifactRequest, ArtifactResponse, Rejection};
use sparebox_protocol::{Digest, sha256};

use super::{Agents, MAX_ARTIFACT, reject};

impl Agents {
    pub(super) fn artifacts_dir(&self) -> PathBuf {
        self.cfg.data_dir.join("artifacts")
    }

    pub(super) fn artifact_path(&self, sha: &str) -> PathBuf {
        self.artifacts_dir().join(format!("{sha}.wasm"))
    }

    /// Makes sure `<data>/artifacts/<sha>.wasm` exists, fetching it from the
    /// deployer over `/sparebox/artifact/1` in verified chunks.
    pub(super) async fn ensure_artifact(
        &self,
        from: PublicKey,
        sha: &str,
        size: Option<u64>,
    ) -> Result<(), Rejection> {
        let path = self.artifact_path(sha);
        if path.exists() {
            return Ok(());
        }
        let Some(net) = self.net.get() else {
            return Err(reject(
                "artifact_unavailable",
                "no network to fetch the component",
            ));
        };
        let mut digest_bytes = [0u8; 32];
        hex::decode_to_slice(sha, &mut digest_bytes)
            .map_err(|_| reject("spec_mismatch", format!("bad artifact sha256 {sha}")))?;
        let digest = Digest(digest_bytes);
        let mut data: Vec<u8> = Vec::new();
        let mut total = size.unwrap_or(u64::MAX);
        while (data.len() as u64) < total {
            let resp = net
                .artifact(
                    from,
                    ArtifactRequest {
                        sha256: digest,
                        offset: data.len() as u64,
                    },
                )
                .await
                .map_err(|e| reject("artifact_unavailable", e.to_string()))?;
            match resp {
                ArtifactResponse::Chunk {
                    total: t,
                    data: chunk,
                } => {
                    if t > MAX_ARTIFACT || size.is_some_and(|s| s != t) {
                        return Err(reject(
                            "artifact_mismatch",
                            format!("component size {t} does not match the spec"),
                        ));
                    }
                    total = t;
                    if chunk.is_empty() || chunk.len() > ARTIFACT_CHUNK as usize {
                        return Err(reject("artifact_mismatch", "bad chunk size"));
                    }
                    data.extend_from_slice(&chunk);
                    if data.len() as u64 > total {
                        return Err(reject("artifact_mismatch", "more bytes than announced"));
                    }
                }
                ArtifactResponse::NotFound => {
                    return Err(reject(
                        "artifact_unavailable",
                        format!("the deployer does not serve component {sha}"),
                    ));
                }
            }
        }
        if sha256(&data) != digest {
            return Err(reject(
                "artifact_mismatch",
                format!("the bytes received do not hash to {sha}"),
            ));
        }
        let dir = self.artifacts_dir();
        let tmp = dir.join(format!("{sha}.part"));
        std::fs::create_dir_all(&dir)
            .and_then(|_| std::fs::write(&tmp, &data))
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| reject("storage", format!("{}: {e}", path.display())))?;
        Ok(())
    }
}
