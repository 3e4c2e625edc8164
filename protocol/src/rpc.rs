//! Requests and replies of the point-to-point protocols (CBOR on the wire,
//! through libp2p request-response):
//!
//! | protocol | request | reply |
//! |---|---|---|
//! | `/sparebox/deploy/1` | a signed offer + the spec document | `accepted` (signed agreement, agent id, API URL, token) or `rejected` (reason code) |
//! | `/sparebox/control/1` | a signed control command | the command's result, or `rejected` |
//! | `/sparebox/artifact/1` | sha256 + offset | one chunk of the component, or `not-found` |
//! | `/sparebox/sync/1` | – | every advert the peer holds, as signed envelopes |
//!
//! Signed things travel as their envelope bytes, and the receiver verifies
//! those exact bytes. Reason codes are stable snake_case strings: the
//! `VerifyError` codes plus the admission codes in [`Rejection`].

use serde::{Deserialize, Serialize};

use super::{Digest, Id, RuntimeKind, UsageCounters};

pub const DEPLOY_PROTOCOL: &str = "/sparebox/deploy/1";
pub const CONTROL_PROTOCOL: &str = "/sparebox/control/1";
pub const ARTIFACT_PROTOCOL: &str = "/sparebox/artifact/1";
pub const SYNC_PROTOCOL: &str = "/sparebox/sync/1";

/// Bytes of a component sent per artifact chunk.
pub const ARTIFACT_CHUNK: u32 = 256 * 1024;

/// A signed offer and the spec document its `spec_sha256` names.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployRequest {
    #[serde(with = "serde_bytes")]
    pub offer: Vec<u8>,
    pub spec: String,
}

/// The host's answer to an offer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployResponse {
    Accepted {
        /// The host-signed [`super::Agreement`] envelope.
        #[serde(with = "serde_bytes")]
        agreement: Vec<u8>,
        agent_id: String,
        /// Where the agent's HTTP API is (`POST {api_url}/messages`).
        api_url: String,
        /// Bearer token for the agent API; only its sha256 is in the agreement.
        token: String,
    },
    Rejected(Rejection),
}

/// Why a host refused an offer or a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// Stable snake_case code, e.g. `bad_signature`, `replayed_nonce`,
    /// `over_capacity`, `runtime_not_offered`, `not_your_agent`.
    pub code: String,
    /// A sentence for people.
    pub message: String,
}

impl Rejection {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Rejection {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} [{}]", self.message, self.code)
    }
}

/// A signed [`super::ControlCommand`] envelope.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlRequest {
    #[serde(with = "serde_bytes")]
    pub command: Vec<u8>,
}

/// The host's answer to a control command.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlResponse {
    /// start, stop, restart, undeploy, update-config and status.
    Agent(AgentView),
    Logs {
        lines: Vec<String>,
    },
    /// The agent's answer to a message.
    Reply(TaskView),
    Rejected(Rejection),
}

/// An agent as the host reports it (control replies and the node API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentView {
    pub agent_id: String,
    pub name: String,
    pub runtime: RuntimeKind,
    /// `deploying`, `running`, `stopped`, `failed` or `undeployed`.
    pub state: String,
    /// Why the agent failed, when it did.
    pub reason: Option<String>,
    pub deployer: String,
    pub offer_id: Id,
    pub created_at: u64,
    pub usage: UsageCounters,
    /// Latest CPU % of the agent's process tree (process agents).
    pub cpu_percent: Option<f32>,
    /// Latest RSS of the agent's process tree in bytes (process agents).
    pub rss_bytes: Option<u64>,
}

/// A task as the host reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskView {
    pub task_id: String,
    pub agent_id: String,
    /// `queued`, `processing`, `completed` or `failed`.
    pub status: String,
    pub result: Option<String>,
    /// Stable error code when failed.
    pub error: Option<String>,
    pub duration_ms: Option<u64>,
    pub tokens_used: u64,
}

/// A request for bytes `offset..` of the component with this sha256.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArtifactRequest {
    pub sha256: Digest,
    pub offset: u64,
}

/// One chunk of an artifact.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactResponse {
    Chunk {
        /// The whole artifact's size.
        total: u64,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    NotFound,
}

impl ArtifactResponse {
    /// The chunk of `bytes` that starts at `offset` (clamped to the end),
    /// at most [`ARTIFACT_CHUNK`] long. Every server of artifacts answers
    /// with this, so a chunk means the same thing whoever serves it.
    pub fn chunk_of(bytes: &[u8], offset: u64) -> ArtifactResponse {
        let total = bytes.len() as u64;
        let start = usize::try_from(offset.min(total)).unwrap_or(bytes.len());
        let end = start
            .saturating_add(ARTIFACT_CHUNK as usize)
            .min(bytes.len());
        ArtifactResponse::Chunk {
            total,
            data: bytes[start..end].to_vec(),
        }
    }
}

/// Asks a peer for its advert index.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct SyncRequest {}

/// Every advert a peer holds, as signed envelope bytes; the requester
/// verifies each one as if it came from gossip.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SyncResponse {
    pub adverts: Vec<serde_bytes::ByteBuf>,
}
