//! This node's view of the network, as the dashboard shows it.

/// A connected peer, as the dashboard shows it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerView {
    pub peer_id: String,
    pub addresses: Vec<String>,
    pub agent_version: Option<String>,
    pub rtt_ms: Option<f64>,
    pub gossip_score: Option<f64>,
}

/// This node's view of the network.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetInfo {
    pub peer_id: String,
    pub listen_addrs: Vec<String>,
    pub external_addrs: Vec<String>,
    /// `public`, `private` or `unknown` (autonat).
    pub nat_status: String,
    pub peers: Vec<PeerView>,
}
