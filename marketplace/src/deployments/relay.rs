//! The relay: offers and control commands prepared for the browser to
//! sign, then assembled, verified as the host will verify them, and carried
//! to the host over libp2p. Prepared messages wait in memory for
//! [`PENDING_SECS`].

use serde_json::{Value, json};
use sparebox_protocol::build::{self, CommandTarget, Detached, OfferTerms};
use sparebox_protocol::identity::PublicKey;
use sparebox_protocol::rpc::{
    AgentView, ControlRequest, ControlResponse, DeployRequest, DeployResponse,
};
use sparebox_protocol::spec::AgentSpec;
use sparebox_protocol::{
    Checks, ControlAction, ControlCommand, DeploymentOffer, Digest, Envelope, Id, Payment,
    PriceTerms,
};

use super::form::HostTerms;
use super::{
    DeployError, Deployment, Deployments, PENDING_SECS, Pending, UsageView, lock, storage,
};

impl Deployments {
    /// Prepares an offer; `voucher` is the issued voucher's envelope and id.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare_offer(
        &self,
        account: &str,
        deployer: PublicKey,
        spec: &AgentSpec,
        terms: &HostTerms,
        max_total_cents: u64,
        voucher: (Envelope, String),
        now: u64,
    ) -> Result<(Id, Value, Detached), DeployError> {
        let (resolved, _) = spec
            .resolve(std::path::Path::new("/nonexistent"))
            .map_err(|e| DeployError::Invalid(vec![("spec".into(), e.to_string())]))?;
        let offer = build::offer(
            OfferTerms {
                deployer,
                host: terms.host,
                spec: &resolved,
                price: PriceTerms {
                    currency: "usd".into(),
                    cents_per_hour: terms.cents_per_hour,
                    cents_per_1k_tokens: terms.cents_per_1k_tokens,
                    max_total_cents,
                },
                payment: Payment::Voucher(voucher.0),
                ttl_secs: PENDING_SECS,
            },
            now,
        )?;
        let (payload, sign) = build::detached(&offer);
        if let Some(a) = &spec.artifact
            && let Some(d) = a.sha256.as_deref().and_then(|h| h.parse::<Digest>().ok())
        {
            lock(&self.fetchers)
                .entry(d)
                .or_default()
                .insert(terms.host);
        }
        let review = json!({
            "host": terms.host.to_string(),
            "runtime": spec.runtime,
            "name": spec.name,
            "resources": {"cpuMillis": spec.resources.cpu_millis, "memoryMib": spec.resources.memory_mib},
            "centsPerHour": terms.cents_per_hour,
            "centsPer1kTokens": terms.cents_per_1k_tokens,
            "maxTotalCents": max_total_cents,
            "currency": "usd",
            "expiresAt": offer.expires_at,
            "spec": resolved.document,
        });
        let id = offer.offer_id;
        let mut pending = lock(&self.pending);
        pending.retain(|_, p| match p {
            Pending::Offer { until, .. } | Pending::Command { until, .. } => *until > now,
        });
        pending.insert(
            id,
            Pending::Offer {
                account: account.to_string(),
                offer: Box::new(offer),
                payload,
                spec: resolved.document,
                name: spec.name.clone(),
                host_addr: terms.addr.clone(),
                voucher_id: voucher.1,
                until: now + PENDING_SECS,
            },
        );
        Ok((id, review, sign))
    }

    /// Vouchers of offers that were prepared and never signed, past their
    /// time; the caller releases them.
    pub fn take_abandoned(&self, now: u64) -> Vec<String> {
        let mut out = Vec::new();
        lock(&self.pending).retain(|_, p| match p {
            Pending::Offer {
                until, voucher_id, ..
            } if *until <= now => {
                out.push(voucher_id.clone());
                false
            }
            Pending::Command { until, .. } => *until > now,
            _ => true,
        });
        out
    }

    /// Signs (with the browser's signature) and relays a prepared offer.
    pub async fn submit_offer(
        &self,
        net: &sparebox_network::Client,
        account: &str,
        offer_id: Id,
        signature: &str,
        now: u64,
    ) -> Result<(Deployment, String), DeployError> {
        let p = lock(&self.pending).remove(&offer_id);
        let Some(Pending::Offer {
            account: owner,
            offer,
            payload,
            spec,
            name,
            host_addr,
            voucher_id,
            ..
        }) = p
        else {
            return Err(unknown_pending("offer"));
        };
        if owner != account {
            return Err(unknown_pending("offer"));
        }
        let verified = build::seal_detached::<DeploymentOffer>(
            payload,
            offer.deployer,
            signature,
            &Checks::at(now).with_audience(offer.host),
        )
        .map_err(DeployError::Signature)?;
        let req = DeployRequest {
            offer: verified.envelope.to_bytes(),
            spec,
        };
        let reply = net
            .deploy(offer.host, host_addr.clone(), req)
            .await
            .map_err(unreachable)?;
        match reply {
            DeployResponse::Accepted {
                agent_id, token, ..
            } => {
                let d = Deployment {
                    agent_id,
                    offer_id: offer.offer_id.to_string(),
                    account: account.to_string(),
                    name,
                    runtime: offer.runtime,
                    host: offer.host.to_string(),
                    deployer: offer.deployer.to_string(),
                    state: "running".into(),
                    reason: None,
                    created_at: now,
                    updated_at: now,
                    usage: UsageView::default(),
                    spent_cents: 0,
                    max_total_cents: offer.price.max_total_cents,
                    cents_per_hour: offer.price.cents_per_hour,
                    voucher_id,
                    host_addr,
                };
                self.save(&d)?;
                Ok((d, token))
            }
            DeployResponse::Rejected(r) => Err(DeployError::Refused {
                code: r.code,
                message: format!("the host refused the offer: {}", r.message),
            }),
        }
    }

    /// Prepares a control command for one of the account's agents.
    pub fn prepare_command(
        &self,
        account: &str,
        d: &Deployment,
        action: ControlAction,
        now: u64,
    ) -> Result<(Id, Detached), DeployError> {
        let parse = |what: &str, v: &str| -> Result<PublicKey, DeployError> {
            v.parse()
                .map_err(|e| storage(format!("stored {what} `{v}` is not a key: {e}")))
        };
        let offer_id: Id = d
            .offer_id
            .parse()
            .map_err(|e| storage(format!("stored offer id `{}`: {e}", d.offer_id)))?;
        let target = CommandTarget {
            deployer: parse("deployer", &d.deployer)?,
            host: parse("host", &d.host)?,
            offer_id,
            agent_id: d.agent_id.clone(),
        };
        let command = build::control_command(target, action, PENDING_SECS, now)?;
        let (payload, sign) = build::detached(&command);
        let id = command.command_id;
        lock(&self.pending).insert(
            id,
            Pending::Command {
                account: account.to_string(),
                key: Self::key(account, &d.offer_id),
                command,
                payload,
                until: now + PENDING_SECS,
            },
        );
        Ok((id, sign))
    }

    /// Relays a signed command and returns what the host answered.
    pub async fn submit_command(
        &self,
        net: &sparebox_network::Client,
        account: &str,
        command_id: Id,
        signature: &str,
        now: u64,
    ) -> Result<Value, DeployError> {
        let p = lock(&self.pending).remove(&command_id);
        let Some(Pending::Command {
            account: owner,
            key,
            command,
            payload,
            ..
        }) = p
        else {
            return Err(unknown_pending("command"));
        };
        if owner != account {
            return Err(unknown_pending("command"));
        }
        let verified = build::seal_detached::<ControlCommand>(
            payload,
            command.deployer,
            signature,
            &Checks::at(now).with_audience(command.host),
        )
        .map_err(DeployError::Signature)?;
        let mut d: Deployment = self
            .records
            .get(&key)
            .map_err(storage)?
            .and_then(|v| serde_json::from_slice(&v).ok())
            .ok_or_else(|| unknown_pending("agent"))?;
        let reply = net
            .control(
                command.host,
                d.host_addr.clone(),
                ControlRequest {
                    command: verified.envelope.to_bytes(),
                },
            )
            .await
            .map_err(unreachable)?;
        Ok(match reply {
            ControlResponse::Agent(view) => {
                self.apply_view(&mut d, &view, now)?;
                json!({"result": "agent", "agent": view, "deployment": d.view()})
            }
            ControlResponse::Logs { lines } => json!({"result": "logs", "lines": lines}),
            ControlResponse::Reply(task) => json!({"result": "reply", "task": task}),
            ControlResponse::Rejected(r) => {
                return Err(DeployError::Refused {
                    code: r.code,
                    message: format!("the host refused: {}", r.message),
                });
            }
        })
    }

    fn apply_view(&self, d: &mut Deployment, v: &AgentView, now: u64) -> Result<(), DeployError> {
        d.state = v.state.clone();
        d.reason = v.reason.clone();
        d.usage = v.usage.into();
        d.updated_at = now;
        self.save(d)
    }
}

/// The relay could not deliver to the host.
fn unreachable(e: sparebox_network::NetError) -> DeployError {
    DeployError::Unreachable(e)
}

fn unknown_pending(what: &'static str) -> DeployError {
    DeployError::UnknownPending(what)
}
