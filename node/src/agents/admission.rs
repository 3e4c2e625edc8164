//! The checks an offer must pass before the host runs it (docs/design.md,
//! "Trust zones"). Each failure is a [`Rejection`] with a stable reason
//! code, which the CLI prints. An offer that passes is resolved, once, into
//! the [`AgentPlan`] the runtime is given; nothing parses the spec again.

use crate::billing::{Paid, check_voucher};
use crate::capacity::{Caps, Reserved};
use crate::config::PricesConfig;
use serde::{Deserialize, Serialize};
use sparebox_protocol::identity::PublicKey;
use sparebox_protocol::rpc::Rejection;
use sparebox_protocol::spec::{AgentSpec, ResolvedSpec};
use sparebox_protocol::{Checks, DeploymentOffer, Payment, RuntimeKind, Verified, open};
use sparebox_sandbox::{AgentGrants, AgentLimits, OpenClawSettings};

/// The host's admission policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub me: PublicKey,
    pub max_skew_secs: u64,
    pub direct_enabled: bool,
    pub allowed_deployers: Vec<PublicKey>,
    pub runtimes: Vec<RuntimeKind>,
    pub prices: PricesConfig,
    pub caps: Caps,
    /// Marketplaces whose vouchers are accepted.
    pub trusted_markets: Vec<PublicKey>,
}

/// What an agent's spec resolves to for the runtime: its limits, its
/// grants and (for process agents) its OpenClaw profile. Made once, at
/// admission (or when a WASI agent's config is updated), and kept in the
/// agent's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentPlan {
    pub limits: AgentLimits,
    pub grants: AgentGrants,
    /// The OpenClaw profile; `None` for WASI agents.
    #[serde(default)]
    pub openclaw: Option<OpenClawSettings>,
}

impl AgentPlan {
    /// The plan for a (validated) spec.
    pub fn from_spec(spec: &AgentSpec) -> AgentPlan {
        let limits = AgentLimits {
            memory_bytes: (spec.resources.memory_mib as usize) << 20,
            task_timeout: spec.resources.task_timeout,
            cpu_millis: spec.resources.cpu_millis,
            disk_bytes: u64::from(spec.resources.disk_mib) << 20,
            ..AgentLimits::default()
        };
        let grants = AgentGrants {
            llm_models: spec.grants.llm_models.clone(),
            kv_max_bytes: spec.grants.kv.max_bytes,
            kv_max_keys: u64::from(spec.grants.kv.max_keys),
            outbound_hosts: spec.grants.outbound_hosts.clone(),
        };
        let openclaw = spec.openclaw.as_ref().map(|oc| OpenClawSettings {
            model: oc.model.clone(),
            system_prompt: oc.system_prompt.clone(),
            files: oc
                .files
                .iter()
                .map(|(k, v)| (k.clone(), v.content.clone().unwrap_or_default()))
                .collect(),
            tools: spec.grants.tools.clone(),
        });
        AgentPlan {
            limits,
            grants,
            openclaw,
        }
    }
}

/// An offer that passed every check that does not need state: signature,
/// audience, time, spec, runtime, price and payment.
#[derive(Debug)]
pub struct Admitted {
    pub offer: Verified<DeploymentOffer>,
    pub spec: ResolvedSpec,
    /// The spec resolved into the runtime's inputs.
    pub plan: AgentPlan,
    /// The payment terms and the voucher's cap, for voucher-paid offers.
    pub paid: Option<(Paid, u64)>,
}

impl Policy {
    /// Verifies the offer bytes and the spec document against each other
    /// and against the host's policy.
    pub fn check(&self, offer: &[u8], spec: &str, now: u64) -> Result<Admitted, Rejection> {
        self.check_at(offer, spec, now, &self.prices)
    }

    /// [`Policy::check`] at `prices` (the owner's current asking prices).
    pub fn check_at(
        &self,
        offer: &[u8],
        spec: &str,
        now: u64,
        prices: &PricesConfig,
    ) -> Result<Admitted, Rejection> {
        let (verified, spec) = self.verify(offer, spec, now)?;
        self.judge(verified, spec, now, prices)
    }

    /// The first half of a check: the offer's signature, audience and time,
    /// and the spec document against the offer's sha256. What passes is
    /// authentic; whether this host takes it is [`Policy::judge`]'s call.
    pub fn verify(
        &self,
        offer: &[u8],
        spec: &str,
        now: u64,
    ) -> Result<(Verified<DeploymentOffer>, ResolvedSpec), Rejection> {
        let checks = Checks::at(now)
            .with_max_skew(self.max_skew_secs)
            .with_audience(self.me);
        let verified = open::<DeploymentOffer>(offer, &checks)
            .map_err(|e| Rejection::new(e.code(), e.to_string()))?;
        let spec = ResolvedSpec::from_document(spec, &verified.message.spec_sha256)
            .map_err(|e| Rejection::new("spec_mismatch", e.to_string()))?;
        Ok((verified, spec))
    }

    /// The second half: runtime, price and payment against this host's
    /// policy at `prices`.
    pub fn judge(
        &self,
        verified: Verified<DeploymentOffer>,
        spec: ResolvedSpec,
        now: u64,
        prices: &PricesConfig,
    ) -> Result<Admitted, Rejection> {
        let o = &verified.message;
        if spec.spec.runtime != o.runtime || spec.spec.resource_request() != o.resources {
            return Err(Rejection::new(
                "spec_mismatch",
                "the offer's runtime or resources differ from its spec",
            ));
        }
        if !self.runtimes.contains(&o.runtime) {
            return Err(Rejection::new(
                "runtime_not_offered",
                format!("this host does not offer the `{}` runtime", o.runtime),
            ));
        }
        let ask = match o.runtime {
            RuntimeKind::Wasi => prices.wasi_cents_per_hour,
            RuntimeKind::Openclaw => prices.openclaw_cents_per_hour,
        };
        if o.price.cents_per_hour < ask || o.price.cents_per_1k_tokens < prices.cents_per_1k_tokens
        {
            return Err(Rejection::new(
                "price_too_low",
                format!(
                    "this host asks {ask} ¢/hour and {} ¢/1k tokens",
                    prices.cents_per_1k_tokens
                ),
            ));
        }
        match &o.payment {
            Payment::Direct => {
                if !self.direct_enabled {
                    return Err(Rejection::new(
                        "direct_disabled",
                        "this host does not accept direct (unpaid) offers",
                    ));
                }
                if !self.allowed_deployers.contains(&o.deployer) {
                    return Err(Rejection::new(
                        "deployer_not_allowed",
                        format!(
                            "deployer {} is not in this host's direct.allowed_deployers",
                            o.deployer
                        ),
                    ));
                }
                if o.price.cents_per_hour > 0 || o.price.cents_per_1k_tokens > 0 {
                    return Err(Rejection::new(
                        "payment_required",
                        "a priced offer must be paid with a voucher",
                    ));
                }
            }
            Payment::Voucher(_) => {}
        }
        let paid = check_voucher(&self.trusted_markets, o, now, self.max_skew_secs)?;
        Ok(Admitted {
            offer: verified,
            plan: AgentPlan::from_spec(&spec.spec),
            spec,
            paid,
        })
    }

    /// Whether `want` fits beside what is already reserved.
    pub fn fits(&self, reserved: &Reserved, offer: &DeploymentOffer) -> Result<(), Rejection> {
        let (free, slots) = crate::capacity::free(&self.caps, reserved);
        let want = offer.resources.resources;
        let mut short = Vec::new();
        if slots == 0 {
            short.push(format!("agent slots (max {})", self.caps.agents));
        }
        if want.cpu_millis > free.cpu_millis {
            short.push(format!(
                "CPU ({} millicores asked, {} free)",
                want.cpu_millis, free.cpu_millis
            ));
        }
        if want.memory_mib > free.memory_mib {
            short.push(format!(
                "memory ({} MiB asked, {} free)",
                want.memory_mib, free.memory_mib
            ));
        }
        if want.disk_mib > free.disk_mib {
            short.push(format!(
                "disk ({} MiB asked, {} free)",
                want.disk_mib, free.disk_mib
            ));
        }
        if short.is_empty() {
            Ok(())
        } else {
            Err(Rejection::new(
                "over_capacity",
                format!("not enough {}", short.join(", ")),
            ))
        }
    }
}
