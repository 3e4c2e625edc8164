//! Deployments made from the web pages, and the relay that carries them.
//!
//! The browser holds the deployer's ed25519 key (WebCrypto, not
//! extractable); the marketplace never does. Every signed message the web
//! flow needs is built here with the node's own protocol types, so there is
//! one encoding of each message:
//! 1. **prepare**: the marketplace builds the message (an offer, a control
//!    command, a key proof) and answers with a [`Signing`] request: the
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

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sparebox_node::identity::PublicKey;
use sparebox_node::protocol::rpc::{
    ARTIFACT_CHUNK, AgentView, ArtifactRequest, ArtifactResponse, ControlRequest, ControlResponse,
    DeployRequest, DeployResponse,
};
use sparebox_node::protocol::{
    Checks, ControlAction, ControlCommand, DeploymentOffer, Digest, ENVELOPE_VERSION, Envelope, Id,
    Message, Payment, PriceTerms, RuntimeKind, SignatureBytes, UsageCounters, Verified, encode,
    sha256,
};
use sparebox_node::spec::{AgentSpec, Artifact, FileSource, OpenClawSettings, ResourceSpec};

use crate::api::ApiError;
use axum::http::StatusCode;

/// Largest component the web upload takes, in bytes.
pub const MAX_UPLOAD_BYTES: usize = 64 * 1024 * 1024;
/// How long a prepared offer or command waits for its signature.
pub const PENDING_SECS: u64 = 600;
/// Lifetime of the voucher a web deployment pays with: the agent can be
/// billed for this long, and what it has not used returns to the account
/// when it ends.
pub const WEB_VOUCHER_SECS: u64 = 30 * 24 * 3600;

/// Something for the browser to sign: `domain || 0x00 || payload`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Signing {
    pub domain: &'static str,
    /// The payload bytes, base64.
    pub payload: String,
    /// The key that must sign, as a PeerId.
    pub signer: String,
}

/// The signing request for `m`, and its payload bytes.
pub fn signing<M: Message>(m: &M) -> (Vec<u8>, Signing) {
    let payload = encode(m);
    let s = Signing {
        domain: M::DOMAIN,
        payload: B64.encode(&payload),
        signer: m.claimed_signer().to_string(),
    };
    (payload, s)
}

/// The envelope made from a payload and a detached base64 signature,
/// verified exactly as its receiver will verify it.
pub fn seal_detached<M: Message>(
    payload: Vec<u8>,
    signer: PublicKey,
    signature_b64: &str,
    checks: &Checks,
) -> Result<Verified<M>, ApiError> {
    let sig = B64
        .decode(signature_b64.trim())
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_signature",
                "`signature` must be 64 bytes, base64",
            )
        })?;
    let env = Envelope {
        version: ENVELOPE_VERSION,
        domain: M::DOMAIN.to_string(),
        payload,
        signer,
        signature: SignatureBytes(sig),
    };
    env.verify::<M>(checks).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            e.code(),
            format!("the browser's signature did not verify: {e}"),
        )
    })
}

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
    records: sled::Tree,
    pending: Mutex<HashMap<Id, Pending>>,
    /// Artifact → hosts that may fetch it.
    fetchers: Mutex<HashMap<Digest, HashSet<PublicKey>>>,
    events: tokio::sync::broadcast::Sender<Event>,
}

fn storage(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string())
}

/// A random id for a message; the error names what it was for.
fn fresh_id(what: &str) -> Result<Id, ApiError> {
    Id::random().map_err(|e| storage(format!("no randomness for the {what}: {e}")))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the browser asks to deploy (`POST /api/v1/deployments/prepare`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeployForm {
    pub host: String,
    pub deployer_key: String,
    pub runtime: String,
    pub name: String,
    pub wasi: Option<WasiForm>,
    pub openclaw: Option<OpenClawForm>,
    pub resources: ResourcesForm,
    pub max_total_cents: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasiForm {
    pub sha256: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OpenClawForm {
    pub model: String,
    pub system_prompt: Option<String>,
    #[serde(default)]
    pub files: Vec<FileForm>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileForm {
    pub path: String,
    pub content: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResourcesForm {
    pub cpu_millis: u32,
    pub memory_mib: u32,
}

/// The host facts an offer is priced from.
#[derive(Debug, Clone)]
pub struct HostTerms {
    pub host: PublicKey,
    pub addr: Option<String>,
    pub cents_per_hour: u64,
    pub cents_per_1k_tokens: u64,
}

/// Spec field names → the web form's field names.
fn form_field(spec_field: &str) -> &'static str {
    match spec_field {
        f if f.starts_with("name") => "name",
        f if f.starts_with("runtime") => "runtime",
        f if f.starts_with("artifact") => "component",
        f if f.starts_with("openclaw.model") => "model",
        f if f.starts_with("openclaw.system_prompt") => "systemPrompt",
        f if f.starts_with("openclaw.files") => "files",
        f if f.starts_with("resources.cpu") => "cpuMillis",
        f if f.starts_with("resources.memory") => "memoryMib",
        f if f.starts_with("grants.llm") => "model",
        _ => "spec",
    }
}

impl Deployments {
    pub fn open(db: &sled::Db) -> sled::Result<Deployments> {
        let (events, _) = tokio::sync::broadcast::channel(256);
        Ok(Deployments {
            artifacts: db.open_tree("artifacts")?,
            records: db.open_tree("deployments")?,
            pending: Mutex::new(HashMap::new()),
            fetchers: Mutex::new(HashMap::new()),
            events,
        })
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Stores an uploaded component; returns its sha256 and size.
    pub fn upload(&self, bytes: &[u8]) -> Result<(Digest, usize), ApiError> {
        if bytes.is_empty() {
            return Err(ApiError::invalid(vec![(
                "component".into(),
                "the file is empty".into(),
            )]));
        }
        if bytes.len() > MAX_UPLOAD_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "the component is {} bytes; the limit is {MAX_UPLOAD_BYTES}",
                    bytes.len()
                ),
            ));
        }
        // A WebAssembly component starts with `\0asm` and layer 1.
        if bytes.len() < 8 || &bytes[..4] != b"\0asm" || bytes[6..8] != [1, 0] {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "not_a_component",
                "this is not a WebAssembly component (build it for wasm32-wasip2)",
            ));
        }
        let digest = sha256(bytes);
        self.artifacts.insert(digest.0, bytes).map_err(storage)?;
        self.artifacts.flush().map_err(storage)?;
        Ok((digest, bytes.len()))
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
        let total = bytes.len() as u64;
        let start = usize::try_from(req.offset.min(total)).unwrap_or(bytes.len());
        let end = (start + ARTIFACT_CHUNK as usize).min(bytes.len());
        ArtifactResponse::Chunk {
            total,
            data: bytes[start..end].to_vec(),
        }
    }

    /// Builds and validates the agent spec the form describes.
    pub fn spec_for(&self, f: &DeployForm) -> Result<AgentSpec, ApiError> {
        let runtime = match f.runtime.as_str() {
            "wasi" => RuntimeKind::Wasi,
            "openclaw" => RuntimeKind::Openclaw,
            other => {
                return Err(ApiError::invalid(vec![(
                    "runtime".into(),
                    format!("`{other}` is not wasi or openclaw"),
                )]));
            }
        };
        let mut spec = AgentSpec {
            spec_version: sparebox_node::spec::SPEC_VERSION,
            name: f.name.trim().to_string(),
            runtime,
            description: String::new(),
            artifact: None,
            openclaw: None,
            resources: ResourceSpec {
                cpu_millis: f.resources.cpu_millis,
                memory_mib: f.resources.memory_mib,
                ..ResourceSpec::default()
            },
            grants: Default::default(),
            schedule: None,
            secrets: Default::default(),
        };
        match runtime {
            RuntimeKind::Wasi => {
                let w = f.wasi.as_ref().ok_or_else(|| {
                    ApiError::invalid(vec![(
                        "component".into(),
                        "upload the agent's component".into(),
                    )])
                })?;
                let digest: Option<Digest> = w.sha256.parse().ok();
                let size = digest
                    .and_then(|d| self.artifacts.get(d.0).ok().flatten())
                    .map(|b| b.len() as u64)
                    .ok_or_else(|| {
                        ApiError::invalid(vec![(
                            "component".into(),
                            "no uploaded component has this sha256; upload it again".into(),
                        )])
                    })?;
                spec.artifact = Some(Artifact {
                    sha256: Some(w.sha256.trim().to_lowercase()),
                    size: Some(size),
                    path: None,
                });
            }
            RuntimeKind::Openclaw => {
                let o = f.openclaw.as_ref().ok_or_else(|| {
                    ApiError::invalid(vec![("model".into(), "choose a model".into())])
                })?;
                spec.grants.llm_models = vec![o.model.trim().to_string()];
                spec.openclaw = Some(OpenClawSettings {
                    model: o.model.trim().to_string(),
                    system_prompt: o.system_prompt.clone().filter(|p| !p.trim().is_empty()),
                    files: o
                        .files
                        .iter()
                        .map(|x| {
                            (
                                x.path.trim().to_string(),
                                FileSource {
                                    content: Some(x.content.clone()),
                                    path: None,
                                },
                            )
                        })
                        .collect(),
                });
            }
        }
        spec.validate().map_err(|errs| {
            ApiError::invalid(
                errs.into_iter()
                    .map(|e| (form_field(&e.field).to_string(), e.problem))
                    .collect(),
            )
        })?;
        Ok(spec)
    }

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
    ) -> Result<(Id, Value, Signing), ApiError> {
        let (resolved, _) = spec
            .resolve(std::path::Path::new("/nonexistent"))
            .map_err(|e| ApiError::invalid(vec![("spec".into(), e.to_string())]))?;
        let offer = DeploymentOffer {
            version: DeploymentOffer::VERSION,
            offer_id: fresh_id("offer id")?,
            deployer,
            host: terms.host,
            issued_at: now,
            expires_at: now + PENDING_SECS,
            nonce: fresh_id("nonce")?,
            spec_sha256: resolved.sha256,
            runtime: spec.runtime,
            resources: spec.resource_request(),
            price: PriceTerms {
                currency: "usd".into(),
                cents_per_hour: terms.cents_per_hour,
                cents_per_1k_tokens: terms.cents_per_1k_tokens,
                max_total_cents,
            },
            payment: Payment::Voucher(voucher.0),
        };
        let (payload, sign) = signing(&offer);
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
        net: &sparebox_node::network::Client,
        account: &str,
        offer_id: Id,
        signature: &str,
        now: u64,
    ) -> Result<(Deployment, String), ApiError> {
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
        let verified = seal_detached::<DeploymentOffer>(
            payload,
            offer.deployer,
            signature,
            &Checks::at(now).with_audience(offer.host),
        )?;
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
            DeployResponse::Rejected(r) => Err(ApiError::new(
                StatusCode::CONFLICT,
                r.code,
                format!("the host refused the offer: {}", r.message),
            )),
        }
    }

    fn key(account: &str, offer_id: &str) -> String {
        format!("{account}/{offer_id}")
    }

    /// Stores a deployment and tells the account's pages.
    pub fn save(&self, d: &Deployment) -> Result<(), ApiError> {
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
    pub fn get(&self, account: &str, agent_id: &str) -> Result<Deployment, ApiError> {
        self.list(account)
            .into_iter()
            .find(|d| d.agent_id == agent_id)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "unknown_agent",
                    format!("you have no agent {agent_id}"),
                )
            })
    }

    /// A usage report was charged: update the deployment it belongs to.
    pub fn usage_reported(
        &self,
        offer_id: &Id,
        counters: UsageCounters,
        spent_cents: u64,
        now: u64,
    ) -> Result<(), ApiError> {
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

    /// Prepares a control command for one of the account's agents.
    pub fn prepare_command(
        &self,
        account: &str,
        d: &Deployment,
        action: ControlAction,
        now: u64,
    ) -> Result<(Id, Signing), ApiError> {
        let parse = |what: &str, v: &str| -> Result<PublicKey, ApiError> {
            v.parse()
                .map_err(|e| storage(format!("stored {what} `{v}` is not a key: {e}")))
        };
        let offer_id: Id = d
            .offer_id
            .parse()
            .map_err(|e| storage(format!("stored offer id `{}`: {e}", d.offer_id)))?;
        let command = ControlCommand {
            version: ControlCommand::VERSION,
            command_id: fresh_id("command id")?,
            deployer: parse("deployer", &d.deployer)?,
            host: parse("host", &d.host)?,
            offer_id,
            agent_id: d.agent_id.clone(),
            issued_at: now,
            expires_at: now + PENDING_SECS,
            nonce: fresh_id("nonce")?,
            action,
        };
        let (payload, sign) = signing(&command);
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
        net: &sparebox_node::network::Client,
        account: &str,
        command_id: Id,
        signature: &str,
        now: u64,
    ) -> Result<Value, ApiError> {
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
        let verified = seal_detached::<ControlCommand>(
            payload,
            command.deployer,
            signature,
            &Checks::at(now).with_audience(command.host),
        )?;
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
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    r.code,
                    format!("the host refused: {}", r.message),
                ));
            }
        })
    }

    fn apply_view(&self, d: &mut Deployment, v: &AgentView, now: u64) -> Result<(), ApiError> {
        d.state = v.state.clone();
        d.reason = v.reason.clone();
        d.usage = v.usage.into();
        d.updated_at = now;
        self.save(d)
    }
}

/// The relay could not deliver to the host.
fn unreachable(e: sparebox_node::network::NetError) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "host_unreachable",
        format!("could not reach the host: {e}"),
    )
}

fn unknown_pending(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_request",
        format!("no prepared {what} with this id (it may have expired; prepare it again)"),
    )
}

/// Parses the web form's command.
pub fn action(
    name: &str,
    tail: Option<u32>,
    content: Option<String>,
) -> Result<ControlAction, ApiError> {
    Ok(match name {
        "start" => ControlAction::Start,
        "stop" => ControlAction::Stop,
        "restart" => ControlAction::Restart,
        "undeploy" => ControlAction::Undeploy,
        "status" => ControlAction::Status,
        "logs" => ControlAction::Logs {
            tail: tail.unwrap_or(200).clamp(1, 5000),
        },
        "message" => {
            let content = content.unwrap_or_default();
            if content.trim().is_empty() {
                return Err(ApiError::invalid(vec![(
                    "content".into(),
                    "write a message".into(),
                )]));
            }
            if content.len() > 64 * 1024 {
                return Err(ApiError::invalid(vec![(
                    "content".into(),
                    "messages are at most 64 KiB".into(),
                )]));
            }
            ControlAction::Message {
                content,
                thread_id: None,
            }
        }
        other => {
            return Err(ApiError::invalid(vec![(
                "action".into(),
                format!("`{other}` is not start, stop, restart, undeploy, status, logs or message"),
            )]));
        }
    })
}

/// Parses an id the browser sends back (hex).
pub fn parse_id(field: &str, v: &str) -> Result<Id, ApiError> {
    v.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("`{field}` must be 32 hex digits"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparebox_node::identity::Keypair;
    use sparebox_node::protocol::now_secs;

    #[test]
    fn a_detached_signature_makes_the_envelope_seal_would() {
        let key = Keypair::from_seed([4; 32]);
        let host = Keypair::from_seed([5; 32]).public();
        let cmd = ControlCommand {
            version: ControlCommand::VERSION,
            command_id: Id([1; 16]),
            deployer: key.public(),
            host,
            offer_id: Id([2; 16]),
            agent_id: "echo-1".into(),
            issued_at: now_secs(),
            expires_at: now_secs() + 60,
            nonce: Id([3; 16]),
            action: ControlAction::Stop,
        };
        let (payload, s) = signing(&cmd);
        assert_eq!(s.domain, ControlCommand::DOMAIN);
        // What the browser does: sign domain || 0 || payload.
        let mut input = s.domain.as_bytes().to_vec();
        input.push(0);
        input.extend_from_slice(&payload);
        let sig = B64.encode(key.sign_raw(&input));
        let checks = Checks::now().with_audience(host);
        let v =
            seal_detached::<ControlCommand>(payload.clone(), key.public(), &sig, &checks).unwrap();
        assert_eq!(v.message, cmd);
        assert_eq!(
            v.envelope.to_bytes(),
            Envelope::seal(&cmd, &key).unwrap().to_bytes()
        );
        // A signature by another key, or over other bytes, is refused.
        let other = B64.encode(Keypair::from_seed([6; 32]).sign_raw(&input));
        let e = seal_detached::<ControlCommand>(payload.clone(), key.public(), &other, &checks)
            .unwrap_err();
        assert_eq!(e.code, "bad_signature");
        let e =
            seal_detached::<ControlCommand>(payload, key.public(), "AAAA", &checks).unwrap_err();
        assert_eq!(e.code, "bad_signature");
    }

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
            store.get("acct_2", "echo-1").unwrap_err().code,
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
        assert_eq!(e.code, "invalid");
        assert_eq!(e.fields[0].0, "component", "{:?}", e.fields);
        let e = store
            .spec_for(&form(json!({
                "host": "h", "deployerKey": "k", "runtime": "openclaw", "name": "9 bad name",
                "openclaw": {"model": "m"},
                "resources": {"cpuMillis": 0, "memoryMib": 0}, "maxTotalCents": 100
            })))
            .unwrap_err();
        let fields: Vec<&str> = e.fields.iter().map(|(f, _)| f.as_str()).collect();
        for want in ["name", "cpuMillis", "memoryMib"] {
            assert!(fields.contains(&want), "{want} missing from {fields:?}");
        }
        let e = store
            .spec_for(&form(json!({
                "host": "h", "deployerKey": "k", "runtime": "docker", "name": "x",
                "resources": {"cpuMillis": 100, "memoryMib": 64}, "maxTotalCents": 1
            })))
            .unwrap_err();
        assert_eq!(e.fields[0].0, "runtime");
    }

    #[test]
    fn uploads_must_be_components_and_are_served_only_to_offered_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let d = Deployments::open(&db).unwrap();
        assert_eq!(
            d.upload(b"hello world!").unwrap_err().code,
            "not_a_component"
        );
        assert_eq!(d.upload(b"").unwrap_err().code, "invalid");
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
