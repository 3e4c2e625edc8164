//! The signed message types and the plain types they carry.
//!
//! Field order is part of the wire format (postcard encodes fields in
//! declaration order); every message starts with `version` so a reader can
//! tell a newer message before decoding it. All times are unix seconds, all
//! money is integer minor units (cents) in the named currency.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::envelope::{Envelope, Message, Validity};
use crate::identity::PublicKey;
use crate::ids::{Digest, Id};

/// Which runtime runs an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// A WASI 0.2 component in wasmtime.
    Wasi,
    /// An OpenClaw gateway process in its own cgroup.
    Openclaw,
}

impl RuntimeKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            RuntimeKind::Wasi => "wasi",
            RuntimeKind::Openclaw => "openclaw",
        }
    }
}

impl std::fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An amount of machine resources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Resources {
    /// CPU in millicores (1000 = one core).
    pub cpu_millis: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Disk in MiB.
    pub disk_mib: u32,
}

/// What an offer asks the host to reserve.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ResourceRequest {
    pub resources: Resources,
    /// Longest a single task may run, in milliseconds.
    pub task_timeout_ms: u32,
}

/// One runtime a host offers, with the version it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct RuntimeOffer {
    pub kind: RuntimeKind,
    /// e.g. the wasmtime version, or the installed OpenClaw version.
    pub version: String,
}

/// The price of an agent-hour for one resource class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ClassPrice {
    /// Class name, e.g. `small`.
    pub class: String,
    pub runtime: RuntimeKind,
    /// The largest request this class covers.
    pub max: Resources,
    pub cents_per_hour: u64,
}

/// The price of LLM tokens for a model the host provides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ModelPrice {
    pub model: String,
    pub cents_per_1k_tokens: u64,
}

/// A host's price list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PriceList {
    /// ISO 4217 code, lowercase (`usd`).
    pub currency: String,
    pub classes: Vec<ClassPrice>,
    pub models: Vec<ModelPrice>,
}

/// The prices a deployer agrees to in an offer. Usage is billed at these
/// rates and never above `max_total_cents`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PriceTerms {
    pub currency: String,
    pub cents_per_hour: u64,
    pub cents_per_1k_tokens: u64,
    /// Hard cap on everything billed under the agreement.
    pub max_total_cents: u64,
}

impl PriceTerms {
    /// What `usage` costs under these terms, in cents, rounded down and
    /// capped at `max_total_cents`. Host and marketplace both bill with this.
    pub fn charge_for(&self, usage: &UsageCounters) -> u64 {
        let hours = u128::from(self.cents_per_hour) * u128::from(usage.wall_secs) / 3600;
        let tokens = u128::from(self.cents_per_1k_tokens) * u128::from(usage.tokens) / 1000;
        u64::try_from(hours + tokens)
            .unwrap_or(u64::MAX)
            .min(self.max_total_cents)
    }
}

/// How an offer is paid for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Payment {
    /// Free/direct mode: price 0, accepted only from allow-listed deployers.
    Direct,
    /// A marketplace-signed [`Voucher`], as its envelope.
    Voucher(Envelope),
}

/// Monotone usage counters for one agreement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct UsageCounters {
    pub wall_secs: u64,
    pub cpu_ms: u64,
    pub memory_mib_secs: u64,
    pub tokens: u64,
    pub tasks: u64,
}

/// A host's signed advertisement of what it can run now.
/// Topic `sparebox/adverts/1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct CapacityAdvert {
    pub version: u16,
    /// The host's key (its PeerId).
    pub node: PublicKey,
    /// Strictly increasing per node; receivers drop anything not newer.
    pub seq: u64,
    pub timestamp: u64,
    /// How long receivers keep this advert, in seconds.
    pub ttl_secs: u32,
    /// Multiaddrs the host can be dialled on.
    pub addresses: Vec<String>,
    /// Capacity free for new agents.
    pub free: Resources,
    /// Agent slots left under the host's `max_agents`.
    pub free_agent_slots: u32,
    pub runtimes: Vec<RuntimeOffer>,
    pub prices: PriceList,
    pub labels: BTreeMap<String, String>,
    pub region: Option<String>,
    /// The `sparebox` software version.
    pub agent_version: String,
}

impl Message for CapacityAdvert {
    const NAME: &'static str = "advert";
    const DOMAIN: &'static str = "sparebox/advert/v1";
    const MAX_PAYLOAD: usize = 8 * 1024;
    const VERSION: u16 = 1;
    const MAX_LIFETIME_SECS: Option<u64> = Some(3600);
    fn claimed_signer(&self) -> &PublicKey {
        &self.node
    }
    fn validity(&self) -> Option<Validity> {
        Some(Validity {
            not_before: self.timestamp,
            not_after: self.timestamp.saturating_add(u64::from(self.ttl_secs)),
        })
    }
}

/// A deployer's signed request that a host run an agent.
/// Protocol `/sparebox/deploy/1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DeploymentOffer {
    pub version: u16,
    pub offer_id: Id,
    pub deployer: PublicKey,
    /// The audience: the host's key (its PeerId).
    pub host: PublicKey,
    pub issued_at: u64,
    pub expires_at: u64,
    /// Single-use; hosts persist the nonces they have seen.
    pub nonce: Id,
    /// sha256 of the agent spec document sent with the offer.
    pub spec_sha256: Digest,
    pub runtime: RuntimeKind,
    pub resources: ResourceRequest,
    pub price: PriceTerms,
    pub payment: Payment,
}

impl Message for DeploymentOffer {
    const NAME: &'static str = "offer";
    const DOMAIN: &'static str = "sparebox/offer/v1";
    const MAX_PAYLOAD: usize = 16 * 1024;
    const VERSION: u16 = 1;
    const MAX_LIFETIME_SECS: Option<u64> = Some(24 * 3600);
    fn claimed_signer(&self) -> &PublicKey {
        &self.deployer
    }
    fn validity(&self) -> Option<Validity> {
        Some(Validity {
            not_before: self.issued_at,
            not_after: self.expires_at,
        })
    }
    fn audience(&self) -> Option<&PublicKey> {
        Some(&self.host)
    }
}

/// The host's signed acceptance of an offer. Both sides keep it: usage
/// reports and billing refer to it by `offer_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Agreement {
    pub version: u16,
    /// The deployer-signed offer, as received.
    pub offer: Envelope,
    pub offer_id: Id,
    pub host: PublicKey,
    /// The audience: the deployer who signed the offer.
    pub deployer: PublicKey,
    pub agent_id: String,
    pub accepted_at: u64,
    /// sha256 of the agent's API bearer token (the token itself is sent only
    /// to the deployer, never signed into shared records).
    pub token_sha256: Digest,
}

impl Message for Agreement {
    const NAME: &'static str = "agreement";
    const DOMAIN: &'static str = "sparebox/agreement/v1";
    const MAX_PAYLOAD: usize = 32 * 1024;
    const VERSION: u16 = 1;
    fn claimed_signer(&self) -> &PublicKey {
        &self.host
    }
    fn audience(&self) -> Option<&PublicKey> {
        Some(&self.deployer)
    }
}

/// What a control command asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum ControlAction {
    Start,
    Stop,
    Restart,
    Undeploy,
    /// Replace the agent's spec (same runtime); `spec` is the new document.
    UpdateConfig {
        spec: String,
        spec_sha256: Digest,
    },
    Status,
    /// The last `tail` log lines.
    Logs {
        tail: u32,
    },
    /// A chat message to the agent.
    Message {
        content: String,
        thread_id: Option<String>,
    },
}

impl ControlAction {
    pub fn name(&self) -> &'static str {
        match self {
            ControlAction::Start => "start",
            ControlAction::Stop => "stop",
            ControlAction::Restart => "restart",
            ControlAction::Undeploy => "undeploy",
            ControlAction::UpdateConfig { .. } => "update-config",
            ControlAction::Status => "status",
            ControlAction::Logs { .. } => "logs",
            ControlAction::Message { .. } => "message",
        }
    }
}

/// A deployer-signed command for one agent. Protocol `/sparebox/control/1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ControlCommand {
    pub version: u16,
    pub command_id: Id,
    /// Must be the deployer of the agreement `offer_id`.
    pub deployer: PublicKey,
    /// The audience: the host.
    pub host: PublicKey,
    pub offer_id: Id,
    pub agent_id: String,
    pub issued_at: u64,
    pub expires_at: u64,
    pub nonce: Id,
    pub action: ControlAction,
}

impl Message for ControlCommand {
    const NAME: &'static str = "control command";
    const DOMAIN: &'static str = "sparebox/control/v1";
    const MAX_PAYLOAD: usize = 128 * 1024;
    const VERSION: u16 = 1;
    const MAX_LIFETIME_SECS: Option<u64> = Some(3600);
    fn claimed_signer(&self) -> &PublicKey {
        &self.deployer
    }
    fn validity(&self) -> Option<Validity> {
        Some(Validity {
            not_before: self.issued_at,
            not_after: self.expires_at,
        })
    }
    fn audience(&self) -> Option<&PublicKey> {
        Some(&self.host)
    }
}

/// A host's signed, cumulative usage for one agreement. `seq` and every
/// counter only grow; the marketplace bills the difference to the last one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct UsageReport {
    pub version: u16,
    pub report_id: Id,
    pub host: PublicKey,
    pub deployer: PublicKey,
    pub offer_id: Id,
    pub agent_id: String,
    pub seq: u64,
    pub period_start: u64,
    pub period_end: u64,
    /// Totals since the agreement began.
    pub counters: UsageCounters,
    pub issued_at: u64,
}

impl Message for UsageReport {
    const NAME: &'static str = "usage report";
    const DOMAIN: &'static str = "sparebox/usage/v1";
    const MAX_PAYLOAD: usize = 2 * 1024;
    const VERSION: u16 = 1;
    fn claimed_signer(&self) -> &PublicKey {
        &self.host
    }
}

/// A marketplace-signed promise to pay, up to `cap_cents`, for offers the
/// named deployer signs before `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Voucher {
    pub version: u16,
    pub voucher_id: Id,
    pub market: PublicKey,
    /// Where hosts post usage reports for this voucher.
    pub market_url: String,
    pub deployer: PublicKey,
    pub currency: String,
    pub cap_cents: u64,
    pub issued_at: u64,
    pub expires_at: u64,
}

impl Message for Voucher {
    const NAME: &'static str = "voucher";
    const DOMAIN: &'static str = "sparebox/voucher/v1";
    const MAX_PAYLOAD: usize = 2 * 1024;
    const VERSION: u16 = 1;
    const MAX_LIFETIME_SECS: Option<u64> = Some(90 * 24 * 3600);
    fn claimed_signer(&self) -> &PublicKey {
        &self.market
    }
    fn validity(&self) -> Option<Validity> {
        Some(Validity {
            not_before: self.issued_at,
            not_after: self.expires_at,
        })
    }
}

/// What a [`KeyProof`] proves a key for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum ProofPurpose {
    /// A deployer key, registered to the account that asked for the challenge.
    DeployerKey,
    /// A node key: the host is linked to the account (`sparebox market link`).
    LinkNode,
}

impl ProofPurpose {
    pub fn as_str(&self) -> &'static str {
        match self {
            ProofPurpose::DeployerKey => "deployer-key",
            ProofPurpose::LinkNode => "link-node",
        }
    }
}

/// A key's answer to a marketplace challenge: "I hold this key, and bind
/// it to the account that was given `challenge`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct KeyProof {
    pub version: u16,
    pub key: PublicKey,
    /// The audience: the marketplace's key.
    pub market: PublicKey,
    pub purpose: ProofPurpose,
    /// The one-time challenge the marketplace issued to the account.
    pub challenge: String,
    pub issued_at: u64,
    pub expires_at: u64,
}

impl Message for KeyProof {
    const NAME: &'static str = "key proof";
    const DOMAIN: &'static str = "sparebox/key-proof/v1";
    const MAX_PAYLOAD: usize = 1024;
    const VERSION: u16 = 1;
    const MAX_LIFETIME_SECS: Option<u64> = Some(3600);
    fn claimed_signer(&self) -> &PublicKey {
        &self.key
    }
    fn validity(&self) -> Option<Validity> {
        Some(Validity {
            not_before: self.issued_at,
            not_after: self.expires_at,
        })
    }
    fn audience(&self) -> Option<&PublicKey> {
        Some(&self.market)
    }
}

/// A deployer's signed request for a voucher (`sparebox voucher fetch`),
/// paid from the account the deployer key is registered to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct VoucherRequest {
    pub version: u16,
    /// Single use; the marketplace remembers it until `expires_at`.
    pub request_id: Id,
    pub deployer: PublicKey,
    /// The audience: the marketplace's key.
    pub market: PublicKey,
    pub cap_cents: u64,
    pub currency: String,
    pub lifetime_secs: u64,
    pub issued_at: u64,
    pub expires_at: u64,
}

impl Message for VoucherRequest {
    const NAME: &'static str = "voucher request";
    const DOMAIN: &'static str = "sparebox/voucher-request/v1";
    const MAX_PAYLOAD: usize = 1024;
    const VERSION: u16 = 1;
    const MAX_LIFETIME_SECS: Option<u64> = Some(3600);
    fn claimed_signer(&self) -> &PublicKey {
        &self.deployer
    }
    fn validity(&self) -> Option<Validity> {
        Some(Validity {
            not_before: self.issued_at,
            not_after: self.expires_at,
        })
    }
    fn audience(&self) -> Option<&PublicKey> {
        Some(&self.market)
    }
}
