//! The deploy pipeline: an offer is admitted, its artifact fetched, the
//! runtime given the agent, and only then are the record and the agreement
//! persisted, in one transaction. Restoring after a restart is the same
//! pipeline from the stored record.

use std::time::Instant;

use sparebox_sandbox::{Artifact, RuntimeError};

use crate::store::StoreError;
use sparebox_protocol::identity::PublicKey;
use sparebox_protocol::rpc::{DeployRequest, DeployResponse, Rejection};
use sparebox_protocol::{Agreement, Envelope, Id, Message, RuntimeKind, now_secs, sha256};

use super::{Admitted, AgentRecord, Agents, State, db, reject};
use sparebox_protocol::token::random_hex;

pub(super) fn runtime_rejection(e: &RuntimeError) -> Rejection {
    Rejection::new(e.code(), e.to_string())
}

impl Agents {
    /// Re-deploys every persisted agent into the runtime (after a restart)
    /// and removes runtime directories no record owns. Returns how many
    /// agents were restored.
    pub async fn restore(&self) -> usize {
        let records = self.snapshot();
        let mut restored = 0;
        for rec in records {
            let result = self.deploy_into_runtime(&rec).await;
            match result {
                Ok(()) => {
                    if rec.state == State::Stopped
                        && let Ok(rt) = self.runtime(rec.runtime)
                    {
                        let _ = rt.stop(&rec.agent_id).await;
                    }
                    restored += 1;
                }
                Err(e) => {
                    tracing::error!(agent = %rec.agent_id, "cannot restore: {e}");
                    let _ = self.set_state(&rec.agent_id, State::Failed, Some(e.message));
                }
            }
        }
        // Orphans of a deploy that was killed before its record was written.
        let known: Vec<String> = self
            .records
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        let agents_root = self.cfg.data_dir.join("wasm").join("agents");
        if let Ok(dir) = std::fs::read_dir(&agents_root) {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if !known.contains(&name) {
                    tracing::info!(dir = %e.path().display(), "removing leftovers of an unfinished deploy");
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        restored
    }

    pub(super) async fn deploy_into_runtime(&self, rec: &AgentRecord) -> Result<(), Rejection> {
        let plan = rec
            .plan
            .clone()
            .ok_or_else(|| reject("bad_spec", "the stored spec of this agent does not parse"))?;
        let artifact = match rec.runtime {
            RuntimeKind::Wasi => Artifact::Component {
                sha256: rec.artifact_sha256.clone(),
                bytes: std::fs::read(self.artifact_path(&rec.artifact_sha256)).map_err(|e| {
                    reject(
                        "artifact_unavailable",
                        format!("component {}: {e}", rec.artifact_sha256),
                    )
                })?,
            },
            RuntimeKind::Openclaw => Artifact::OpenClaw(
                plan.openclaw
                    .ok_or_else(|| reject("spec_mismatch", "an openclaw spec needs [openclaw]"))?,
            ),
        };
        let (limits, grants) = (plan.limits, plan.grants);
        self.runtime(rec.runtime)?
            .deploy(sparebox_sandbox::DeployRequest {
                agent_id: rec.agent_id.clone(),
                artifact,
                limits,
                grants,
            })
            .await
            .map_err(|e| runtime_rejection(&e))
    }

    /// Handles `/sparebox/deploy/1`: every admission check, then the
    /// artifact fetch, then the runtime, then the signed agreement.
    pub async fn offer(&self, from: PublicKey, req: DeployRequest) -> DeployResponse {
        let started = Instant::now();
        let (r, name) = if self.owner.accepting() {
            self.offer_inner(from, &req).await
        } else {
            let paused = Rejection::new(
                "offers_paused",
                "this host is not taking new offers right now",
            );
            (DeployResponse::Rejected(paused), None)
        };
        self.owner
            .record_offer(crate::owner::OfferRecord::new(&req, &r, name, now_secs()));
        match &r {
            DeployResponse::Accepted { agent_id, .. } => {
                self.metrics.offer("accepted", "none");
                tracing::info!(agent = %agent_id, ms = started.elapsed().as_millis() as u64, "offer accepted");
                self.changed.notify_one();
            }
            DeployResponse::Rejected(rej) => {
                self.metrics.offer("rejected", &rej.code);
                tracing::info!(code = %rej.code, "offer rejected: {}", rej.message);
            }
        }
        r
    }

    /// The deploy pipeline; also returns the agent name the offer's spec
    /// claims, once the spec is known to be the one the offer signed.
    pub(super) async fn offer_inner(
        &self,
        from: PublicKey,
        req: &DeployRequest,
    ) -> (DeployResponse, Option<String>) {
        let now = now_secs();
        let (verified, spec) = match self.cfg.policy.verify(&req.offer, &req.spec, now) {
            Ok(v) => v,
            Err(r) => return (DeployResponse::Rejected(r), None),
        };
        let name = Some(spec.spec.name.clone());
        let prices = self.owner.prices();
        let admitted = match self.cfg.policy.judge(verified, spec, now, &prices) {
            Ok(a) => a,
            Err(r) => return (DeployResponse::Rejected(r), name),
        };
        (self.admit(from, admitted, now).await, name)
    }

    /// Reserves capacity for an admitted offer and deploys it.
    pub(super) async fn admit(
        &self,
        from: PublicKey,
        admitted: Admitted,
        now: u64,
    ) -> DeployResponse {
        let offer = &admitted.offer.message;
        if let Err(r) = self.use_nonce(&offer.nonce, offer.expires_at) {
            return DeployResponse::Rejected(r);
        }
        let spec = &admitted.spec.spec;
        let agent_id = format!("{}-{}", spec.name, &hex::encode(offer.offer_id.0)[..8]);
        {
            // Capacity check and reservation happen together.
            let _guard = self.admission.lock().await;
            if let Err(r) = self.cfg.policy.fits(&self.reserved(), offer) {
                return DeployResponse::Rejected(r);
            }
            if let Some((paid, voucher_cap)) = &admitted.paid
                && let Err(r) = self.billing.commit(paid, *voucher_cap)
            {
                return DeployResponse::Rejected(r);
            }
            self.deploying
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(agent_id.clone(), offer.resources);
        }
        let result = self.finish_deploy(from, &admitted, &agent_id, now).await;
        if result.is_err()
            && let Some((paid, _)) = &admitted.paid
        {
            self.billing.release(paid, 0);
        }
        self.deploying
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&agent_id);
        match result {
            Ok(r) => r,
            Err(r) => DeployResponse::Rejected(r),
        }
    }

    pub(super) async fn finish_deploy(
        &self,
        from: PublicKey,
        admitted: &Admitted,
        agent_id: &str,
        now: u64,
    ) -> Result<DeployResponse, Rejection> {
        let (offer_env, offer, spec) = (
            &admitted.offer.envelope,
            &admitted.offer.message,
            &admitted.spec,
        );
        let paid = admitted.paid.as_ref().map(|(p, _)| p.clone());
        // WASI agents need their component; OpenClaw agents are configured
        // entirely by the spec.
        let artifact = match offer.runtime {
            RuntimeKind::Wasi => {
                let sha = spec
                    .spec
                    .artifact
                    .as_ref()
                    .and_then(|a| a.sha256.clone())
                    .ok_or_else(|| reject("spec_mismatch", "a wasi spec needs artifact.sha256"))?;
                self.ensure_artifact(from, &sha, spec.spec.artifact.as_ref().and_then(|a| a.size))
                    .await?;
                sha
            }
            RuntimeKind::Openclaw => String::new(),
        };
        let token = random_hex(32, "agent token").map_err(|e| reject("internal", e.to_string()))?;
        let rec = AgentRecord {
            agent_id: agent_id.to_string(),
            name: spec.spec.name.clone(),
            runtime: offer.runtime,
            offer_id: offer.offer_id,
            deployer: offer.deployer,
            spec: spec.document.clone(),
            resources: offer.resources,
            state: State::Running,
            reason: None,
            created_at: now,
            token_sha256: sha256(token.as_bytes()),
            artifact_sha256: artifact,
            schedule_every_secs: spec.spec.schedule.as_ref().map(|s| s.every.as_secs()),
            last_tick_at: now,
            paid,
            plan: Some(admitted.plan.clone()),
        };
        self.deploy_into_runtime(&rec).await?;
        let agreement = Agreement {
            version: Agreement::VERSION,
            offer: offer_env.clone(),
            offer_id: offer.offer_id,
            host: self.key.public(),
            deployer: offer.deployer,
            agent_id: agent_id.to_string(),
            accepted_at: now,
            token_sha256: rec.token_sha256,
        };
        let env = match Envelope::seal(&agreement, &self.key) {
            Ok(e) => e,
            Err(e) => {
                if let Ok(rt) = self.runtime(rec.runtime) {
                    let _ = rt.undeploy(agent_id).await;
                }
                return Err(reject("internal", e.to_string()));
            }
        };
        let bytes = env.to_bytes();
        if let Err(e) = self.persist_new(&rec, &bytes) {
            if let Ok(rt) = self.runtime(rec.runtime) {
                let _ = rt.undeploy(agent_id).await;
            }
            return Err(reject("storage", e.to_string()));
        }
        self.records
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(agent_id.to_string(), rec);
        Ok(DeployResponse::Accepted {
            agreement: bytes,
            agent_id: agent_id.to_string(),
            api_url: format!("{}/api/agents/{agent_id}", self.cfg.api_url),
            token,
        })
    }

    pub(super) fn persist_new(
        &self,
        rec: &AgentRecord,
        agreement: &[u8],
    ) -> Result<(), StoreError> {
        use sled::Transactional;
        let json = serde_json::to_vec(rec).map_err(StoreError::encode("agent"))?;
        (&self.trees.agents, &self.trees.agreements)
            .transaction(|(agents, agreements)| {
                agents.insert(rec.agent_id.as_bytes(), json.as_slice())?;
                agreements.insert(&rec.offer_id.0, agreement)?;
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(StoreError::transaction("write agent"))?;
        self.trees.agents.flush().map_err(db("flush"))?;
        Ok(())
    }

    /// Marks a nonce used; fails if it already was. Nonces are kept until
    /// their message expires (plus the clock skew).
    pub(super) fn use_nonce(&self, nonce: &Id, expires_at: u64) -> Result<(), Rejection> {
        let keep = expires_at.saturating_add(self.cfg.policy.max_skew_secs);
        match self.trees.nonces.compare_and_swap(
            nonce.0,
            None as Option<&[u8]>,
            Some(&keep.to_be_bytes()[..]),
        ) {
            Ok(Ok(())) => {
                let _ = self.trees.nonces.flush();
                Ok(())
            }
            Ok(Err(_)) => Err(reject(
                "replayed_nonce",
                format!("nonce {nonce} was already used"),
            )),
            Err(e) => Err(reject("storage", e.to_string())),
        }
    }
}
