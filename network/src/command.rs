//! What a [`crate::Client`] asks the event loop to do; each command carries
//! its oneshot reply.

use tokio::sync::oneshot;

use crate::behaviour;
use crate::error::NetError;
use crate::info::NetInfo;
use sparebox_protocol::identity::PublicKey;
use sparebox_protocol::rpc::{
    ArtifactRequest, ArtifactResponse, ControlRequest, ControlResponse, DeployRequest,
    DeployResponse,
};

pub(crate) type Reply<T> = oneshot::Sender<Result<T, NetError>>;

pub(crate) enum Command {
    Dial {
        addr: String,
        reply: Reply<()>,
    },
    Publish {
        data: Vec<u8>,
        reply: Reply<bool>,
    },
    Deploy {
        peer: PublicKey,
        addr: Option<String>,
        req: DeployRequest,
        reply: Reply<DeployResponse>,
    },
    Control {
        peer: PublicKey,
        addr: Option<String>,
        req: ControlRequest,
        reply: Reply<ControlResponse>,
    },
    Artifact {
        peer: PublicKey,
        req: ArtifactRequest,
        reply: Reply<ArtifactResponse>,
    },
    Info {
        reply: Reply<NetInfo>,
    },
    Shutdown,
    // Replies to inbound requests, produced by handler tasks.
    RespondDeploy(behaviour::Channel<DeployResponse>, DeployResponse),
    RespondControl(behaviour::Channel<ControlResponse>, ControlResponse),
    RespondArtifact(behaviour::Channel<ArtifactResponse>, ArtifactResponse),
}
