//! Deployer-signed control commands and the owner's actions on agents.

use std::sync::Arc;

use crate::billing::Subject;
use crate::store::StoreError;
use sparebox_protocol::identity::PublicKey;
use sparebox_protocol::rpc::{ControlRequest, ControlResponse, Rejection};
use sparebox_protocol::spec::ResolvedSpec;
use sparebox_protocol::{Checks, ControlAction, ControlCommand, RuntimeKind, now_secs, open};

use super::deploy::runtime_rejection;
use super::tasks::NewMessage;
use super::{AgentError, AgentPlan, AgentRecord, Agents, State, reject};

impl Agents {
    /// Handles `/sparebox/control/1`: a command signed by the deployer of
    /// the agent's agreement, addressed to this host, with a fresh nonce.
    pub async fn control(
        self: &Arc<Self>,
        _from: PublicKey,
        req: ControlRequest,
    ) -> ControlResponse {
        let checks = Checks::now()
            .with_max_skew(self.cfg.policy.max_skew_secs)
            .with_audience(self.key.public());
        let cmd = match open::<ControlCommand>(&req.command, &checks) {
            Ok(v) => v.message,
            Err(e) => return ControlResponse::Rejected(reject(e.code(), e.to_string())),
        };
        let Some(rec) = self.record(&cmd.agent_id) else {
            return ControlResponse::Rejected(reject(
                "unknown_agent",
                format!("no agent `{}` on this host", cmd.agent_id),
            ));
        };
        if rec.deployer != cmd.deployer || rec.offer_id != cmd.offer_id {
            return ControlResponse::Rejected(reject(
                "not_your_agent",
                format!("agent `{}` belongs to another deployer", cmd.agent_id),
            ));
        }
        if let Err(r) = self.use_nonce(&cmd.nonce, cmd.expires_at) {
            return ControlResponse::Rejected(r);
        }
        tracing::info!(agent = %rec.agent_id, action = cmd.action.name(), "control command");
        match self.apply(&rec, cmd.action).await {
            Ok(r) => r,
            Err(r) => ControlResponse::Rejected(r),
        }
    }

    /// An action by the host's owner (the dashboard, authorized by the
    /// owner token): the same effect as the deployer's command.
    pub async fn owner_action(
        self: &Arc<Self>,
        agent_id: &str,
        action: ControlAction,
    ) -> ControlResponse {
        let Some(rec) = self.record(agent_id) else {
            return ControlResponse::Rejected(reject(
                "unknown_agent",
                format!("no agent `{agent_id}` on this host"),
            ));
        };
        tracing::info!(agent = %rec.agent_id, action = action.name(), "owner action");
        match self.apply(&rec, action).await {
            Ok(r) => r,
            Err(r) => ControlResponse::Rejected(r),
        }
    }

    /// The last `n` log lines of an agent, for the dashboard.
    pub fn agent_logs(&self, agent_id: &str, n: usize) -> Result<Vec<String>, AgentError> {
        let rec = self
            .record(agent_id)
            .ok_or_else(|| AgentError::UnknownAgent(agent_id.to_string()))?;
        self.logs(&rec, n.min(10_000))
            .map_err(|e| AgentError::BadRequest(e.to_string()))
    }

    pub(super) async fn apply(
        self: &Arc<Self>,
        rec: &AgentRecord,
        action: ControlAction,
    ) -> Result<ControlResponse, Rejection> {
        let id = rec.agent_id.as_str();
        let state_err = |e: StoreError| reject("storage", e.to_string());
        let rt = self.runtime(rec.runtime)?;
        match action {
            ControlAction::Start | ControlAction::Restart
                if rec.paid.as_ref().is_some_and(|p| {
                    self.billing
                        .exhausted(p, &self.meter.get(&rec.offer_id).unwrap_or_default())
                }) =>
            {
                return Err(reject(
                    "voucher_exhausted",
                    "the agreement has spent its cap; deploy with a new voucher to continue",
                ));
            }
            ControlAction::Start => {
                rt.start(id).await.map_err(|e| runtime_rejection(&e))?;
                self.set_state(id, State::Running, None)
                    .map_err(state_err)?;
            }
            ControlAction::Stop => {
                rt.stop(id).await.map_err(|e| runtime_rejection(&e))?;
                self.set_state(id, State::Stopped, None)
                    .map_err(state_err)?;
            }
            ControlAction::Restart => {
                rt.stop(id).await.map_err(|e| runtime_rejection(&e))?;
                rt.start(id).await.map_err(|e| runtime_rejection(&e))?;
                self.set_state(id, State::Running, None)
                    .map_err(state_err)?;
            }
            ControlAction::Undeploy => {
                let _ = rt.undeploy(id).await;
                // The last report, then what the agreement did not spend
                // goes back to its voucher.
                if let Some(paid) = &rec.paid {
                    let usage = self.meter.get(&rec.offer_id).unwrap_or_default();
                    let subject = Subject {
                        offer_id: rec.offer_id,
                        deployer: rec.deployer,
                        agent_id: id,
                    };
                    if let Err(e) = self
                        .billing
                        .report(paid, &subject, usage, false, now_secs())
                    {
                        tracing::error!(agent = %id, "cannot queue the final usage report: {e}");
                    }
                    self.billing.release(paid, paid.price.charge_for(&usage));
                }
                self.trees
                    .agents
                    .remove(id.as_bytes())
                    .map_err(|e| reject("storage", e.to_string()))?;
                let _ = self.trees.agents.flush();
                self.records
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(id);
                self.changed.notify_one();
                let mut view = self.view(rec);
                view.state = "undeployed".into();
                return Ok(ControlResponse::Agent(view));
            }
            ControlAction::UpdateConfig { spec, spec_sha256 } => {
                let new = ResolvedSpec::from_document(&spec, &spec_sha256)
                    .map_err(|e| reject("spec_mismatch", e.to_string()))?;
                if new.spec.runtime != rec.runtime
                    || rec.runtime != RuntimeKind::Wasi
                    || new.spec.artifact.as_ref().and_then(|a| a.sha256.clone())
                        != Some(rec.artifact_sha256.clone())
                    || new.spec.resource_request() != rec.resources
                {
                    return Err(reject(
                        "update_not_supported",
                        "update-config may change a WASI agent's grants, schedule and settings, not its runtime, artifact or resources, and not an OpenClaw agent (deploy a new offer for those)",
                    ));
                }
                let plan = AgentPlan::from_spec(&new.spec);
                self.wasm
                    .reconfigure(id, plan.limits.clone(), plan.grants.clone())
                    .map_err(|e| runtime_rejection(&e))?;
                let mut records = self.records.write().unwrap_or_else(|p| p.into_inner());
                if let Some(r) = records.get_mut(id) {
                    r.spec = new.document;
                    r.plan = Some(plan);
                    r.schedule_every_secs = new.spec.schedule.as_ref().map(|s| s.every.as_secs());
                    self.save(r).map_err(state_err)?;
                }
            }
            ControlAction::Status => {}
            ControlAction::Logs { tail } => {
                let lines = self
                    .logs(rec, tail.min(10_000) as usize)
                    .map_err(|e| runtime_rejection(&e))?;
                return Ok(ControlResponse::Logs { lines });
            }
            ControlAction::Message { content, thread_id } => {
                let msg = NewMessage {
                    content,
                    thread_id,
                    author: Some(rec.deployer.to_string()),
                    ..Default::default()
                };
                let task = self
                    .clone()
                    .run_message(id, msg)
                    .await
                    .map_err(|e| reject(e.code(), e.to_string()))?;
                return Ok(ControlResponse::Reply(task));
            }
        }
        let rec = self.record(id).ok_or_else(|| reject("unknown_agent", id))?;
        Ok(ControlResponse::Agent(self.view(&rec)))
    }
}
