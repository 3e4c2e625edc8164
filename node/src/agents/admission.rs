//! The checks an offer must pass before the host runs it (DESIGN.md,
//! "Identity and signatures"). Each failure is a [`Rejection`] with a stable
//! reason code, which the CLI prints.

use crate::adverts::{Caps, Reserved};
use crate::billing::{Paid, check_voucher};
use crate::config::PricesConfig;
use crate::identity::PublicKey;
use crate::protocol::rpc::Rejection;
use crate::protocol::{Checks, DeploymentOffer, Payment, RuntimeKind, Verified, open};
use crate::spec::ResolvedSpec;

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

/// An offer that passed every check that does not need state: signature,
/// audience, time, spec, runtime, price and payment.
#[derive(Debug)]
pub struct Admitted {
    pub offer: Verified<DeploymentOffer>,
    pub spec: ResolvedSpec,
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
        let checks = Checks::at(now)
            .with_max_skew(self.max_skew_secs)
            .with_audience(self.me);
        let verified = open::<DeploymentOffer>(offer, &checks)
            .map_err(|e| Rejection::new(e.code(), e.to_string()))?;
        let o = &verified.message;
        let spec = ResolvedSpec::from_document(spec, &o.spec_sha256)
            .map_err(|e| Rejection::new("spec_mismatch", e.to_string()))?;
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
            spec,
            paid,
        })
    }

    /// Whether `want` fits beside what is already reserved.
    pub fn fits(&self, reserved: &Reserved, offer: &DeploymentOffer) -> Result<(), Rejection> {
        let (free, slots) = crate::adverts::free(&self.caps, reserved);
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
