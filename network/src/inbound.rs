//! How the network hands inbound traffic to its owner.

use crate::adverts::Verdict;
use sparebox_protocol::identity::PublicKey;
use sparebox_protocol::rpc::{
    ArtifactRequest, ArtifactResponse, ControlRequest, ControlResponse, DeployRequest,
    DeployResponse, SyncResponse,
};

/// How the network hands inbound traffic to the node. Requests are served
/// on their own tasks; `validate_advert` runs on the event loop and must be
/// quick (it checks one signature).
#[async_trait::async_trait]
pub trait Inbound: Send + Sync + 'static {
    /// Gossip validation for an advert; `author` signed the gossip message.
    fn validate_advert(&self, author: Option<PublicKey>, bytes: &[u8]) -> Verdict;
    /// Adverts a peer sent in reply to our sync request.
    fn synced(&self, from: PublicKey, reply: SyncResponse);
    /// Our advert index, for a peer's sync request.
    fn sync(&self) -> SyncResponse;
    async fn deploy(&self, from: PublicKey, req: DeployRequest) -> DeployResponse;
    async fn control(&self, from: PublicKey, req: ControlRequest) -> ControlResponse;
    async fn artifact(&self, from: PublicKey, req: ArtifactRequest) -> ArtifactResponse;
}
