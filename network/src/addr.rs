//! Multiaddr strings as the rest of Sparebox passes them around.

use sparebox_protocol::identity::PublicKey;

/// `addr` ending in `/p2p/<peer>`, so dialling it checks who answers.
pub fn with_peer_id(addr: &str, peer: &PublicKey) -> String {
    if addr.contains("/p2p/") {
        addr.to_string()
    } else {
        format!("{}/p2p/{}", addr.trim_end_matches('/'), peer.to_peer_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_the_peer_id_once() {
        let peer = sparebox_protocol::identity::Keypair::from_seed([1; 32]).public();
        let a = with_peer_id("/ip4/1.2.3.4/tcp/4001/", &peer);
        assert_eq!(
            a,
            format!("/ip4/1.2.3.4/tcp/4001/p2p/{}", peer.to_peer_id())
        );
        assert_eq!(with_peer_id(&a, &peer), a);
    }
}
