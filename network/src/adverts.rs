//! The index of capacity adverts heard from other hosts.
//!
//! An advert is a signed [`CapacityAdvert`] on the gossip topic
//! [`TOPIC`]. Before a node forwards one (gossipsub runs in Strict mode with
//! explicit validation), [`AdvertIndex::validate_gossip`] checks, in order:
//! size, envelope signature, signer = the gossip message's author, the
//! freshness window (`timestamp` .. `timestamp + ttl`, with clock skew), and
//! that `seq` is newer than the last advert from that node. Anything else is
//! rejected, which also lowers the sending peer's gossip score.
//!
//! A node that has just joined asks its peers for their whole index
//! (`/sparebox/sync/1`) and re-verifies every advert in the reply with
//! [`AdvertIndex::insert_synced`], so it sees current hosts at once rather
//! than after the next publish interval.

use std::collections::HashMap;
use std::sync::RwLock;

use serde::Serialize;

use crate::addr::with_peer_id;
use sparebox_protocol::identity::PublicKey;
use sparebox_protocol::{
    CapacityAdvert, Checks, PriceList, Resources, RuntimeKind, RuntimeOffer, Verified, open,
};

/// The gossipsub topic adverts travel on.
pub const TOPIC: &str = "sparebox/adverts/1";

/// What gossip validation decided about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid and new: keep and forward.
    Accept,
    /// Invalid: drop and penalise the sender. The code says why.
    Reject(&'static str),
    /// Harmless but not worth forwarding (e.g. our own advert echoed back).
    Ignore(&'static str),
}

#[derive(Debug, Clone)]
struct Entry {
    advert: CapacityAdvert,
    bytes: Vec<u8>,
    /// When this index first stored an advert from the host (kept across
    /// newer adverts, dropped with the host on expiry).
    first_seen: u64,
}

/// Adverts heard from other hosts, newest per host, dropped when their TTL
/// runs out.
#[derive(Debug)]
pub struct AdvertIndex {
    me: Option<PublicKey>,
    max_skew_secs: u64,
    /// Most hosts held; see [`AdvertIndex::with_capacity`].
    capacity: usize,
    entries: RwLock<HashMap<PublicKey, Entry>>,
}

/// Hosts an index holds by default. Keys cost nothing to make, so the index
/// is bounded; see [`AdvertIndex::with_capacity`] for what gives way.
pub const MAX_HOSTS: usize = 10_000;

/// An advert as the CLI and APIs show it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdvertView {
    pub peer_id: String,
    pub seq: u64,
    pub timestamp: u64,
    pub expires_at: u64,
    pub addresses: Vec<String>,
    pub free: Resources,
    pub free_agent_slots: u32,
    pub runtimes: Vec<RuntimeOffer>,
    pub prices: PriceList,
    pub labels: std::collections::BTreeMap<String, String>,
    pub region: Option<String>,
    pub version: String,
}

impl AdvertView {
    pub fn from_advert(a: &CapacityAdvert) -> Self {
        AdvertView {
            peer_id: a.node.to_string(),
            seq: a.seq,
            timestamp: a.timestamp,
            expires_at: a.timestamp.saturating_add(u64::from(a.ttl_secs)),
            addresses: a.addresses.clone(),
            free: a.free,
            free_agent_slots: a.free_agent_slots,
            runtimes: a.runtimes.clone(),
            prices: a.prices.clone(),
            labels: a.labels.clone(),
            region: a.region.clone(),
            version: a.agent_version.clone(),
        }
    }

    /// The address to dial the host at: its first advertised address that is
    /// not the unspecified `0.0.0.0`, ending in `/p2p/<PeerId>`.
    pub fn dial_addr(&self) -> Option<String> {
        let peer: PublicKey = self.peer_id.parse().ok()?;
        self.addresses
            .iter()
            .find(|x| !x.contains("/ip4/0.0.0.0/"))
            .map(|x| with_peer_id(x, &peer))
    }

    /// The lowest hourly price for `runtime`, if the host offers it.
    pub fn price_for(&self, runtime: RuntimeKind) -> Option<u64> {
        self.prices
            .classes
            .iter()
            .filter(|c| c.runtime == runtime)
            .map(|c| c.cents_per_hour)
            .min()
    }
}

impl AdvertIndex {
    /// `me` is this node's key (its own adverts are not indexed); `None` for
    /// a light client.
    pub fn new(me: Option<PublicKey>, max_skew_secs: u64) -> Self {
        AdvertIndex {
            me,
            max_skew_secs,
            capacity: MAX_HOSTS,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// At most `capacity` hosts. When the index is full, expired adverts go
    /// first; then a new host displaces the host seen for the shortest time
    /// (the least established), so a flood of throwaway keys churns among
    /// itself while hosts the index has known longer stay.
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    fn verify(&self, bytes: &[u8], now: u64) -> Result<Verified<CapacityAdvert>, &'static str> {
        open::<CapacityAdvert>(bytes, &Checks::at(now).with_max_skew(self.max_skew_secs))
            .map_err(|e| e.code())
    }

    /// Gossip validation: `author` is the PeerId that signed the gossip
    /// message. On `Accept` the advert is stored.
    pub fn validate_gossip(&self, author: Option<PublicKey>, bytes: &[u8], now: u64) -> Verdict {
        let v = match self.verify(bytes, now) {
            Ok(v) => v,
            Err(code) => return Verdict::Reject(code),
        };
        if author != Some(v.message.node) {
            return Verdict::Reject("author_mismatch");
        }
        if Some(v.message.node) == self.me {
            return Verdict::Ignore("own_advert");
        }
        match self.store(v.message, bytes, now) {
            Ok(()) => Verdict::Accept,
            Err(()) => Verdict::Reject("stale_seq"),
        }
    }

    /// An advert from a sync reply: the same checks except the gossip
    /// author. Returns the reason code when it is not stored; an advert we
    /// already hold is not an error.
    pub fn insert_synced(&self, bytes: &[u8], now: u64) -> Result<bool, &'static str> {
        let v = self.verify(bytes, now)?;
        if Some(v.message.node) == self.me {
            return Ok(false);
        }
        Ok(self.store(v.message, bytes, now).is_ok())
    }

    fn store(&self, advert: CapacityAdvert, bytes: &[u8], now: u64) -> Result<(), ()> {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        let first_seen = match entries.get(&advert.node) {
            Some(old) if old.advert.seq >= advert.seq => return Err(()),
            Some(old) if live(&old.advert, now) => old.first_seen,
            _ => now,
        };
        if !entries.contains_key(&advert.node) && entries.len() >= self.capacity {
            entries.retain(|_, e| live(&e.advert, now));
            if entries.len() >= self.capacity
                && let Some(newest) = entries
                    .iter()
                    .max_by_key(|(k, e)| (e.first_seen, **k))
                    .map(|(k, _)| *k)
            {
                entries.remove(&newest);
            }
        }
        entries.insert(
            advert.node,
            Entry {
                advert,
                bytes: bytes.to_vec(),
                first_seen,
            },
        );
        Ok(())
    }

    /// Drops adverts whose TTL has run out.
    pub fn purge(&self, now: u64) {
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, e| live(&e.advert, now));
    }

    /// Live adverts, newest first.
    pub fn list(&self, now: u64) -> Vec<AdvertView> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<AdvertView> = entries
            .values()
            .filter(|e| live(&e.advert, now))
            .map(|e| AdvertView::from_advert(&e.advert))
            .collect();
        out.sort_by(|a, b| {
            b.timestamp
                .cmp(&a.timestamp)
                .then(a.peer_id.cmp(&b.peer_id))
        });
        out
    }

    /// Runs `f` over every live advert with the time its host was first
    /// seen, without copying the index (for searches over many hosts).
    pub fn query<T>(
        &self,
        now: u64,
        mut f: impl FnMut(&CapacityAdvert, u64) -> Option<T>,
    ) -> Vec<T> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries
            .values()
            .filter(|e| live(&e.advert, now))
            .filter_map(|e| f(&e.advert, e.first_seen))
            .collect()
    }

    /// Runs `f` on `node`'s live advert and its first-seen time.
    pub fn lookup<T>(
        &self,
        node: &PublicKey,
        now: u64,
        f: impl FnOnce(&CapacityAdvert, u64) -> T,
    ) -> Option<T> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries
            .get(node)
            .filter(|e| live(&e.advert, now))
            .map(|e| f(&e.advert, e.first_seen))
    }

    /// The signed bytes of every live advert (a sync reply).
    pub fn snapshot(&self, now: u64) -> Vec<Vec<u8>> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries
            .values()
            .filter(|e| live(&e.advert, now))
            .map(|e| e.bytes.clone())
            .collect()
    }

    /// The latest advert from `node`, if live.
    pub fn get(&self, node: &PublicKey, now: u64) -> Option<AdvertView> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries
            .get(node)
            .filter(|e| live(&e.advert, now))
            .map(|e| AdvertView::from_advert(&e.advert))
    }

    /// Live adverts in the index.
    pub fn len(&self, now: u64) -> usize {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|e| live(&e.advert, now))
            .count()
    }

    pub fn is_empty(&self, now: u64) -> bool {
        self.len(now) == 0
    }
}

fn live(a: &CapacityAdvert, now: u64) -> bool {
    a.timestamp.saturating_add(u64::from(a.ttl_secs)) > now
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparebox_protocol::identity::Keypair;
    use sparebox_protocol::{Envelope, Message};

    fn advert(key: &Keypair, seq: u64, timestamp: u64) -> Vec<u8> {
        let a = CapacityAdvert {
            version: CapacityAdvert::VERSION,
            node: key.public(),
            seq,
            timestamp,
            ttl_secs: 120,
            addresses: vec!["/ip4/127.0.0.1/tcp/1".into()],
            free: Resources {
                cpu_millis: 1000,
                memory_mib: 512,
                disk_mib: 100,
            },
            free_agent_slots: 3,
            runtimes: vec![RuntimeOffer {
                kind: RuntimeKind::Wasi,
                version: "48".into(),
            }],
            prices: PriceList::default(),
            labels: Default::default(),
            region: None,
            agent_version: "0.1.0".into(),
        };
        Envelope::seal(&a, key).unwrap().to_bytes()
    }

    #[test]
    fn gossip_validation_accepts_new_and_rejects_replay_forgery_and_stale() {
        let host = Keypair::from_seed([1; 32]);
        let other = Keypair::from_seed([2; 32]);
        let idx = AdvertIndex::new(None, 60);
        let now = 1_000_000;
        let a1 = advert(&host, 1, now);
        assert_eq!(
            idx.validate_gossip(Some(host.public()), &a1, now),
            Verdict::Accept
        );
        assert_eq!(
            idx.validate_gossip(Some(host.public()), &a1, now),
            Verdict::Reject("stale_seq"),
            "a replayed seq is not forwarded"
        );
        assert_eq!(
            idx.validate_gossip(Some(other.public()), &advert(&host, 2, now), now),
            Verdict::Reject("author_mismatch")
        );
        assert_eq!(
            idx.validate_gossip(Some(host.public()), &advert(&host, 3, now - 121), now),
            Verdict::Reject("expired")
        );
        let mut forged = advert(&host, 4, now);
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert_eq!(
            idx.validate_gossip(Some(host.public()), &forged, now),
            Verdict::Reject("bad_signature")
        );
        assert_eq!(
            idx.validate_gossip(Some(host.public()), &vec![0u8; 64 * 1024], now),
            Verdict::Reject("too_large")
        );
        assert_eq!(idx.list(now).len(), 1);
        assert_eq!(idx.list(now)[0].seq, 1);
    }

    #[test]
    fn ttl_expiry_and_sync_insert() {
        let host = Keypair::from_seed([3; 32]);
        let idx = AdvertIndex::new(None, 60);
        let now = 2_000_000;
        assert_eq!(idx.insert_synced(&advert(&host, 5, now), now), Ok(true));
        assert_eq!(idx.insert_synced(&advert(&host, 5, now), now), Ok(false));
        assert_eq!(idx.snapshot(now).len(), 1);
        assert_eq!(idx.list(now + 119).len(), 1);
        assert!(idx.list(now + 120).is_empty(), "gone when the TTL runs out");
        idx.purge(now + 120);
        assert!(idx.snapshot(now).is_empty());
    }

    #[test]
    fn a_flood_of_fresh_keys_stays_within_the_bound_and_known_hosts_stay() {
        let idx = AdvertIndex::new(None, 60).with_capacity(50);
        let real = Keypair::from_seed([9; 32]);
        idx.insert_synced(&advert(&real, 1, 1000), 1000).unwrap();
        for i in 0..2000u32 {
            let k = Keypair::from_seed({
                let mut s = [0u8; 32];
                s[..4].copy_from_slice(&i.to_le_bytes());
                s[31] = 1;
                s
            });
            idx.insert_synced(&advert(&k, 1, 1001), 1001).unwrap();
            assert!(idx.len(1001) <= 50);
        }
        assert_eq!(idx.len(1001), 50);
        let views = idx.list(1001);
        assert!(views.iter().any(|v| v.peer_id == real.public().to_string()));
        // The known host still updates.
        assert_eq!(idx.insert_synced(&advert(&real, 2, 1002), 1002), Ok(true));
    }

    #[test]
    fn own_adverts_are_ignored() {
        let me = Keypair::from_seed([4; 32]);
        let idx = AdvertIndex::new(Some(me.public()), 60);
        let now = 3_000_000;
        assert_eq!(
            idx.validate_gossip(Some(me.public()), &advert(&me, 1, now), now),
            Verdict::Ignore("own_advert")
        );
    }
}
