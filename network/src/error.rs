//! Why a network operation failed.

/// Why a network operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NetError {
    #[error("bad multiaddr `{addr}`: {reason}")]
    BadAddr { addr: String, reason: String },
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("cannot reach {peer}: {reason}")]
    Unreachable { peer: String, reason: String },
    #[error("request to {peer} failed: {reason}")]
    Request { peer: String, reason: String },
    #[error("could not publish: {0}")]
    Publish(String),
    #[error("the network could not be set up: {0}")]
    Setup(String),
    #[error("the network task has stopped")]
    Stopped,
}

impl NetError {
    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            NetError::BadAddr { .. } => "bad_addr",
            NetError::Listen { .. } => "listen_failed",
            NetError::Unreachable { .. } => "unreachable",
            NetError::Request { .. } => "request_failed",
            NetError::Publish(_) => "publish_failed",
            NetError::Setup(_) => "setup",
            NetError::Stopped => "stopped",
        }
    }
}
