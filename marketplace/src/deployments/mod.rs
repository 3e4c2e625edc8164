//! Deployments made from the web pages, and the relay that carries them.
//!
//! The browser holds the deployer's ed25519 key (WebCrypto, not
//! extractable); the marketplace never does. Every signed message the web
//! flow needs is built here with the node's own protocol types, so there is
//! one encoding of each message:
//! 1. **prepare**: the marketplace builds the message (an offer, a control
//!    command, a key proof) and answers with a detached signing request (`sparebox_protocol::build::Detached`): the
//!    domain and the exact payload bytes;
//! 2. the browser signs `domain || 0x00 || payload` with its key;
//! 3. **submit**: the marketplace puts the payload and the detached
//!    signature into an [`Envelope`], verifies it as a host would, and
//!    relays it to the host over libp2p (`/sparebox/deploy/1`,
//!    `/sparebox/control/1`).
//!
//! The browser runs the marketplace's JavaScript, so a deployer who does not
//! trust the marketplace uses the CLI instead; what the relay cannot do is
//! sign anything the browser did not sign.
//!
//! Uploaded WASI components are kept by sha256 (`artifacts` tree) and served
//! over `/sparebox/artifact/1` only to hosts an offer for them was prepared
//! for. Deployments are kept per account (`deployments` tree, key
//! `account/offer-id`); their state comes from the host's answers to relayed
//! commands and from its usage reports, and changes are broadcast to the
//! account's open pages ([`Event`], served as SSE by `GET /api/v1/events`).

mod artifacts;
mod form;
mod relay;

pub use form::{
    DeployForm, FileForm, HostTerms, OpenClawForm, ResourcesForm, WasiForm, action, parse_id,
};

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sparebox_network::NetError;
use sparebox_protocol::build::{BuildError, DetachedError};
use sparebox_protocol::identity::PublicKey;
use sparebox_protocol::{ControlCommand, DeploymentOffer, Digest, Id, RuntimeKind, UsageCounters};

/// Why a web deployment step failed. The HTTP layer maps each variant to a
/// status and a stable code; `Storage` and `Build` are internal.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The form (or spec) has problems: (form field, message) for each.
    #[error("{}", .0.iter().map(|(f, m)| format!("{f}: {m}")).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<(String, String)>),
    #[error("the component is {size} bytes; the limit is {max}")]
    TooLarge { size: usize, max: usize },
    #[error("this is not a WebAssembly component (build it for wasm32-wasip2)")]
    NotAComponent,
    #[error("your uploads hold {used} bytes; an account may keep {max}")]
    UploadQuota { used: u64, max: u64 },
    #[error("no prepared {0} with this id (it may have expired; prepare it again)")]
    UnknownPending(&'static str),
    #[error("you have no agent {0}")]
    UnknownAgent(String),
    #[error("`{0}` must be 32 hex digits")]
    BadId(&'static str),
    /// The browser's detached signature did not make a valid envelope.
    #[error("{0}")]
    Signature(DetachedError),
    #[error("could not reach the host: {0}")]
    Unreachable(NetError),
    /// The host answered with a rejection; `code` is the host's.
    #[error("{message}")]
    Refused { code: String, message: String },
    #[error("deployment storage: {0}")]
    Storage(String),
    #[error(transparent)]
    Build(#[from] BuildError),
}

impl DeployError {
    /// The stable code the API answers with.
    pub fn code(&self) -> &str {
        match self {
            DeployError::Invalid(_) => "invalid",
            DeployError::TooLarge { .. } => "too_large",
            DeployError::NotAComponent => "not_a_component",
            DeployError::UploadQuota { .. } => "upload_quota",
            DeployError::UnknownPending(_) => "unknown_request",
            DeployError::UnknownAgent(_) => "unknown_agent",
            DeployError::BadId(_) => "bad_request",
            DeployError::Signature(e) => e.code(),
            DeployError::Unreachable(_) => "host_unreachable",
            DeployError::Refused { code, .. } => code,
            DeployError::Storage(_) => "storage",
            DeployError::Build(_) => "internal",
        }
    }

    /// The per-field problems of an `Invalid` form; empty otherwise.
    pub fn fields(&self) -> &[(String, String)] {
        match self {
            DeployError::Invalid(f) => f,
            _ => &[],
        }
    }
}

fn storage(e: impl std::fmt::Display) -> DeployError {
    DeployError::Storage(e.to_string())
}

/// Most bytes of distinct components one account may have uploaded.
pub const MAX_ACCOUNT_UPLOAD_BYTES: u64 = 256 * 1024 * 1024;
/// Largest component the web upload takes, in bytes.
pub const MAX_UPLOAD_BYTES: usize = 64 * 1024 * 1024;
/// How long a prepared offer or command waits for its signature.
pub const PENDING_SECS: u64 = 600;
/// Lifetime of the voucher a web deployment pays with: the agent can be
/// billed for this long, and what it has not used returns to the account
/// when it ends.
pub const WEB_VOUCHER_SECS: u64 = 30 * 24 * 3600;

/// Usage counters as the web pages read them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageView {
    pub wall_secs: u64,
    pub cpu_ms: u64,
    pub memory_mib_secs: u64,
    pub tokens: u64,
    pub tasks: u64,
}

impl From<UsageCounters> for UsageView {
    fn from(c: UsageCounters) -> Self {
        UsageView {
            wall_secs: c.wall_secs,
            cpu_ms: c.cpu_ms,
            memory_mib_secs: c.memory_mib_secs,
            tokens: c.tokens,
            tasks: c.tasks,
        }
    }
}

/// One agent deployed from the web, as the marketplace last heard of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub agent_id: String,
    pub offer_id: String,
    /// The marketplace account (not shown to pages; see [`Deployment::view`]).
    pub account: String,
    pub name: String,
    pub runtime: RuntimeKind,
    /// The host's PeerId.
    pub host: String,
    /// The deployer key's PeerId.
    pub deployer: String,
    /// `running`, `stopped`, `failed`, `undeployed` (the host's words).
    pub state: String,
    pub reason: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
    pub usage: UsageView,
    pub spent_cents: u64,
    pub max_total_cents: u64,
    pub cents_per_hour: u64,
    pub voucher_id: String,
    /// The address the host was reached at (for commands).
    pub host_addr: Option<String>,
}

impl Deployment {
    /// The deployment as the web pages see it (no account id or address).
    pub fn view(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(o) = v.as_object_mut() {
            o.remove("account");
            o.remove("hostAddr");
        }
        v
    }
}

/// A change an account's open pages hear about.
#[derive(Debug, Clone)]
pub struct Event {
    pub account: String,
    /// SSE event name: `deployment`.
    pub kind: &'static str,
    pub data: Value,
}

/// What was prepared and waits for the browser's signature.
#[derive(Debug)]
enum Pending {
    Offer {
        account: String,
        offer: Box<DeploymentOffer>,
        payload: Vec<u8>,
        spec: String,
        name: String,
        host_addr: Option<String>,
        voucher_id: String,
        until: u64,
    },
    Command {
        account: String,
        key: String,
        command: ControlCommand,
        payload: Vec<u8>,
        until: u64,
    },
}

/// The web flow's store.
#[derive(Debug)]
pub struct Deployments {
    artifacts: sled::Tree,
    /// `account/sha256` → size: what each account has uploaded.
    uploads: sled::Tree,
    upload_quota: u64,
    records: sled::Tree,
    pending: Mutex<HashMap<Id, Pending>>,
    /// Artifact → hosts that may fetch it.
    fetchers: Mutex<HashMap<Digest, HashSet<PublicKey>>>,
    events: tokio::sync::broadcast::Sender<Event>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Deployments {
    pub fn open(db: &sled::Db) -> sled::Result<Deployments> {
        let (events, _) = tokio::sync::broadcast::channel(256);
        Ok(Deployments {
            artifacts: db.open_tree("artifacts")?,
            uploads: db.open_tree("uploads")?,
            upload_quota: MAX_ACCOUNT_UPLOAD_BYTES,
            records: db.open_tree("deployments")?,
            pending: Mutex::new(HashMap::new()),
            fetchers: Mutex::new(HashMap::new()),
            events,
        })
    }

    /// Bytes of distinct components one account may keep uploaded.
    pub fn with_upload_quota(mut self, bytes: u64) -> Self {
        self.upload_quota = bytes;
        self
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn key(account: &str, offer_id: &str) -> String {
        format!("{account}/{offer_id}")
    }

    /// Stores a deployment and tells the account's pages.
    pub fn save(&self, d: &Deployment) -> Result<(), DeployError> {
        let v = serde_json::to_vec(d).map_err(storage)?;
        self.records
            .insert(Self::key(&d.account, &d.offer_id), v)
            .map_err(storage)?;
        let _ = self.events.send(Event {
            account: d.account.clone(),
            kind: "deployment",
            data: d.view(),
        });
        Ok(())
    }

    /// Web deployments whose agent was running when last heard of.
    pub fn running(&self) -> usize {
        self.records
            .iter()
            .filter_map(|r| r.ok())
            .filter_map(|(_, v)| serde_json::from_slice::<Deployment>(&v).ok())
            .filter(|d| d.state == "running")
            .count()
    }

    /// The account's deployments, newest first.
    pub fn list(&self, account: &str) -> Vec<Deployment> {
        let mut v: Vec<Deployment> = self
            .records
            .scan_prefix(format!("{account}/"))
            .filter_map(|r| r.ok())
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect();
        v.sort_by_key(|d| std::cmp::Reverse(d.created_at));
        v
    }

    /// One of the account's deployments, by agent id.
    pub fn get(&self, account: &str, agent_id: &str) -> Result<Deployment, DeployError> {
        self.list(account)
            .into_iter()
            .find(|d| d.agent_id == agent_id)
            .ok_or_else(|| DeployError::UnknownAgent(agent_id.to_string()))
    }

    /// A usage report was charged: update the deployment it belongs to.
    pub fn usage_reported(
        &self,
        offer_id: &Id,
        counters: UsageCounters,
        spent_cents: u64,
        now: u64,
    ) -> Result<(), DeployError> {
        let suffix = format!("/{offer_id}");
        let found = self
            .records
            .iter()
            .filter_map(|r| r.ok())
            .find_map(|(k, v)| {
                k.ends_with(suffix.as_bytes())
                    .then(|| serde_json::from_slice::<Deployment>(&v).ok())
                    .flatten()
            });
        if let Some(mut d) = found {
            d.usage = counters.into();
            d.spent_cents = spent_cents;
            d.updated_at = now;
            self.save(&d)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sparebox_protocol::identity::Keypair;
    use sparebox_protocol::rpc::{ARTIFACT_CHUNK, ArtifactRequest, ArtifactResponse};

    #[test]
    fn deployments_round_trip_through_storage_and_hide_the_account() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let store = Deployments::open(&db).unwrap();
        let mut rx = store.subscribe();
        let d = Deployment {
            agent_id: "echo-1".into(),
            offer_id: "00".repeat(16),
            account: "acct_1".into(),
            name: "echo".into(),
            runtime: RuntimeKind::Wasi,
            host: "h".into(),
            deployer: "d".into(),
            state: "running".into(),
            reason: None,
            created_at: 1,
            updated_at: 1,
            usage: UsageView::default(),
            spent_cents: 0,
            max_total_cents: 200,
            cents_per_hour: 3600,
            voucher_id: "v".into(),
            host_addr: Some("/ip4/127.0.0.1/tcp/1".into()),
        };
        store.save(&d).unwrap();
        assert_eq!(store.list("acct_1"), vec![d.clone()]);
        assert!(store.list("acct_2").is_empty());
        assert_eq!(store.get("acct_1", "echo-1").unwrap(), d);
        assert_eq!(
            store.get("acct_2", "echo-1").unwrap_err().code(),
            "unknown_agent"
        );
        let ev = rx.try_recv().unwrap();
        assert_eq!(ev.account, "acct_1");
        assert!(ev.data.get("account").is_none() && ev.data.get("hostAddr").is_none());
        assert_eq!(ev.data["agentId"], "echo-1");
        let counters = UsageCounters {
            wall_secs: 5,
            tasks: 2,
            ..Default::default()
        };
        store.usage_reported(&Id([0; 16]), counters, 5, 9).unwrap();
        let after = store.get("acct_1", "echo-1").unwrap();
        assert_eq!(
            (after.spent_cents, after.usage.tasks, after.updated_at),
            (5, 2, 9)
        );
        assert_eq!(store.running(), 1);
    }

    #[test]
    fn the_wizard_form_becomes_a_spec_or_field_errors() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let store = Deployments::open(&db).unwrap();
        let form = |v: serde_json::Value| -> DeployForm { serde_json::from_value(v).unwrap() };
        let ok = store
            .spec_for(&form(json!({
                "host": "h", "deployerKey": "k", "runtime": "openclaw", "name": "helper",
                "openclaw": {"model": "gpt-test", "systemPrompt": "Be brief.",
                             "files": [{"path": "SOUL.md", "content": "calm"}]},
                "resources": {"cpuMillis": 500, "memoryMib": 1024}, "maxTotalCents": 100
            })))
            .unwrap();
        let oc = ok.openclaw.as_ref().unwrap();
        assert_eq!(oc.model, "gpt-test");
        assert_eq!(ok.grants.llm_models, vec!["gpt-test".to_string()]);
        assert_eq!(oc.files["SOUL.md"].content.as_deref(), Some("calm"));
        let (resolved, _) = ok.resolve(std::path::Path::new("/nonexistent")).unwrap();
        assert!(
            resolved.document.contains("SOUL.md"),
            "{}",
            resolved.document
        );

        let e = store
            .spec_for(&form(json!({
                "host": "h", "deployerKey": "k", "runtime": "wasi", "name": "9 bad name",
                "wasi": {"sha256": "00".repeat(32)},
                "resources": {"cpuMillis": 0, "memoryMib": 0}, "maxTotalCents": 100
            })))
            .unwrap_err();
        assert_eq!(e.code(), "invalid");
        assert_eq!(e.fields()[0].0, "component", "{:?}", e.fields());
        let e = store
            .spec_for(&form(json!({
                "host": "h", "deployerKey": "k", "runtime": "openclaw", "name": "9 bad name",
                "openclaw": {"model": "m"},
                "resources": {"cpuMillis": 0, "memoryMib": 0}, "maxTotalCents": 100
            })))
            .unwrap_err();
        let fields: Vec<&str> = e.fields().iter().map(|(f, _)| f.as_str()).collect();
        for want in ["name", "cpuMillis", "memoryMib"] {
            assert!(fields.contains(&want), "{want} missing from {fields:?}");
        }
        let e = store
            .spec_for(&form(json!({
                "host": "h", "deployerKey": "k", "runtime": "docker", "name": "x",
                "resources": {"cpuMillis": 100, "memoryMib": 64}, "maxTotalCents": 1
            })))
            .unwrap_err();
        assert_eq!(e.fields()[0].0, "runtime");
    }

    #[test]
    fn an_accounts_uploads_stop_at_its_quota_and_repeats_are_free() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let d = Deployments::open(&db).unwrap().with_upload_quota(4 * 1024);
        let component = |n: usize, fill: u8| {
            let mut b = vec![fill; n];
            b[..8].copy_from_slice(b"\0asm\x0d\0\x01\0");
            b
        };
        let big = 1024;
        for i in 0..4u8 {
            d.upload_for("acct_1", &component(big, i + 1)).unwrap();
        }
        // The same component again costs nothing; a new one is refused.
        d.upload_for("acct_1", &component(big, 1)).unwrap();
        let e = d.upload_for("acct_1", &component(1024, 9)).unwrap_err();
        assert_eq!(e.code(), "upload_quota");
        // Another account has its own quota.
        d.upload_for("acct_2", &component(1024, 9)).unwrap();
    }

    #[test]
    fn uploads_must_be_components_and_are_served_only_to_offered_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let d = Deployments::open(&db).unwrap();
        assert_eq!(
            d.upload(b"hello world!").unwrap_err().code(),
            "not_a_component"
        );
        assert_eq!(d.upload(b"").unwrap_err().code(), "invalid");
        let mut wasm = b"\0asm\x0d\x00\x01\x00".to_vec();
        wasm.extend(std::iter::repeat_n(7u8, 300_000));
        let (digest, size) = d.upload(&wasm).unwrap();
        assert_eq!(size, wasm.len());
        let host = Keypair::from_seed([5; 32]).public();
        let req = ArtifactRequest {
            sha256: digest,
            offset: 0,
        };
        assert!(matches!(d.artifact(host, &req), ArtifactResponse::NotFound));
        lock(&d.fetchers).entry(digest).or_default().insert(host);
        let ArtifactResponse::Chunk { total, data } = d.artifact(host, &req) else {
            panic!("expected a chunk");
        };
        assert_eq!(total, wasm.len() as u64);
        assert_eq!(data.len(), ARTIFACT_CHUNK as usize);
        let stranger = Keypair::from_seed([6; 32]).public();
        assert!(matches!(
            d.artifact(stranger, &req),
            ArtifactResponse::NotFound
        ));
    }
}
