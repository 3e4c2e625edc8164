//! What the network needs to start.

use std::time::Duration;

/// What the network needs to start.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Multiaddrs to listen on; empty for a client that only dials.
    pub listen: Vec<String>,
    /// Multiaddrs (ending in `/p2p/<PeerId>`) dialled at start.
    pub bootstrap: Vec<String>,
    pub mdns: bool,
    pub max_connections: u32,
    /// Gossipsub heartbeat. Default 1 s; tests and benches use less.
    pub heartbeat: Duration,
    /// Timeout for a request-response exchange.
    pub request_timeout: Duration,
    /// Agent version string sent by identify.
    pub agent_version: String,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            listen: Vec::new(),
            bootstrap: Vec::new(),
            mdns: false,
            max_connections: 256,
            heartbeat: Duration::from_secs(1),
            request_timeout: Duration::from_secs(120),
            agent_version: format!("sparebox/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}
