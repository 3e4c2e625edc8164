//! Uploaded WASI components: kept by sha256 (`artifacts` tree) and served
//! over `/sparebox/artifact/1` only to hosts an offer for them was prepared
//! for.

use sparebox_protocol::identity::PublicKey;
use sparebox_protocol::rpc::{ArtifactRequest, ArtifactResponse};
use sparebox_protocol::{Digest, sha256};

use super::{DeployError, Deployments, MAX_UPLOAD_BYTES, lock, storage};

impl Deployments {
    /// Stores an uploaded component; returns its sha256 and size.
    pub fn upload(&self, bytes: &[u8]) -> Result<(Digest, usize), DeployError> {
        if bytes.is_empty() {
            return Err(DeployError::Invalid(vec![(
                "component".into(),
                "the file is empty".into(),
            )]));
        }
        if bytes.len() > MAX_UPLOAD_BYTES {
            return Err(DeployError::TooLarge {
                size: bytes.len(),
                max: MAX_UPLOAD_BYTES,
            });
        }
        // A WebAssembly component starts with `\0asm` and layer 1.
        if bytes.len() < 8 || &bytes[..4] != b"\0asm" || bytes[6..8] != [1, 0] {
            return Err(DeployError::NotAComponent);
        }
        let digest = sha256(bytes);
        self.artifacts.insert(digest.0, bytes).map_err(storage)?;
        self.artifacts.flush().map_err(storage)?;
        Ok((digest, bytes.len()))
    }

    /// [`Deployments::upload`] for `account`, within its quota: the
    /// distinct components an account has uploaded may hold at most the
    /// upload quota ([`super::MAX_ACCOUNT_UPLOAD_BYTES`] unless set with
    /// [`Deployments::with_upload_quota`]); uploading one it already has is
    /// free.
    pub fn upload_for(&self, account: &str, bytes: &[u8]) -> Result<(Digest, usize), DeployError> {
        let digest = sha256(bytes);
        let key = format!("{account}/{}", digest.to_hex());
        if self.uploads.get(&key).map_err(storage)?.is_none() {
            let used: u64 = self
                .uploads
                .scan_prefix(format!("{account}/"))
                .filter_map(|r| r.ok())
                .filter_map(|(_, v)| <[u8; 8]>::try_from(v.as_ref()).ok())
                .map(u64::from_be_bytes)
                .sum();
            if used + bytes.len() as u64 > self.upload_quota {
                return Err(DeployError::UploadQuota {
                    used,
                    max: self.upload_quota,
                });
            }
        }
        let out = self.upload(bytes)?;
        self.uploads
            .insert(key, &(bytes.len() as u64).to_be_bytes())
            .map_err(storage)?;
        Ok(out)
    }

    /// One chunk of a stored component, for a host an offer was made to.
    pub fn artifact(&self, from: PublicKey, req: &ArtifactRequest) -> ArtifactResponse {
        let allowed = lock(&self.fetchers)
            .get(&req.sha256)
            .is_some_and(|hosts| hosts.contains(&from));
        if !allowed {
            return ArtifactResponse::NotFound;
        }
        let Ok(Some(bytes)) = self.artifacts.get(req.sha256.0) else {
            return ArtifactResponse::NotFound;
        };
        ArtifactResponse::chunk_of(&bytes, req.offset)
    }
}
