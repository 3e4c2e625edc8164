//! What the host's owner sees and controls from the local dashboard.
//!
//! - **The owner token.** A fresh random token each start, printed in
//!   `sparebox node`'s banner (with a dashboard link carrying it). Owner
//!   actions need it as `Authorization: Bearer <token>`, on top of the
//!   dashboard API's loopback-only rule, so another local user's browser
//!   tab cannot act for the owner.
//! - **Accepting offers.** Paused, the node refuses new offers
//!   (`offers_paused`) and advertises no free capacity; running agents go on.
//! - **Prices.** The asking prices, changed from the dashboard, replace the
//!   config file's `[capacity.prices]` and are kept in sled (tree `owner`)
//!   across restarts. Admission and the advert read them from here.
//! - **Recent offers.** The last [`OFFER_LOG`] offers with their outcome and
//!   rejection reason, newest first (in memory).
//! - **History.** CPU and memory samples every [`SAMPLE_SECS`] for the last
//!   hour, for the dashboard's charts (in memory).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};

use serde::{Deserialize, Serialize};

use crate::config::PricesConfig;
use sparebox_protocol::rpc::{DeployRequest, DeployResponse};
use sparebox_protocol::{DeploymentOffer, Envelope, Message, decode_canonical};

/// How many offers the log keeps.
pub const OFFER_LOG: usize = 100;
/// Seconds between history samples.
pub const SAMPLE_SECS: u64 = 5;
/// Samples kept (one hour).
pub const SAMPLES: usize = 720;

/// Why the owner's settings could not be read or kept.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error("owner settings: {0}")]
    Storage(#[from] sled::Error),
    #[error("owner settings: {0}")]
    Random(String),
}

/// One offer the node answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OfferRecord {
    pub at: u64,
    /// Absent when the offer could not even be decoded.
    pub offer_id: Option<String>,
    pub deployer: Option<String>,
    pub runtime: Option<String>,
    pub name: Option<String>,
    /// `accepted` or `rejected`.
    pub outcome: &'static str,
    pub code: Option<String>,
    pub message: Option<String>,
    pub agent_id: Option<String>,
}

impl OfferRecord {
    /// The record of `req` answered with `reply`. The offer is decoded
    /// without trusting it, only to show what it claimed.
    pub fn new(
        req: &DeployRequest,
        reply: &DeployResponse,
        name: Option<String>,
        at: u64,
    ) -> OfferRecord {
        let offer = Envelope::from_bytes(&req.offer, DeploymentOffer::max_envelope())
            .ok()
            .and_then(|e| decode_canonical::<DeploymentOffer>(&e.payload, "offer").ok());
        let (outcome, code, message, agent_id) = match reply {
            DeployResponse::Accepted { agent_id, .. } => {
                ("accepted", None, None, Some(agent_id.clone()))
            }
            DeployResponse::Rejected(r) => (
                "rejected",
                Some(r.code.clone()),
                Some(r.message.clone()),
                None,
            ),
        };
        OfferRecord {
            at,
            offer_id: offer.as_ref().map(|o| o.offer_id.to_string()),
            deployer: offer.as_ref().map(|o| o.deployer.to_string()),
            runtime: offer.as_ref().map(|o| o.runtime.to_string()),
            name,
            outcome,
            code,
            message,
            agent_id,
        }
    }
}

/// One history sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    pub t: u64,
    /// The whole machine's CPU use, 0–100.
    pub cpu_percent: f32,
    pub memory_used_mib: u64,
    pub memory_total_mib: u64,
    /// Process agents' CPU (sum of their trees), in % of one core.
    pub agents_cpu_percent: f32,
    pub agents_rss_mib: u64,
    pub reserved_cpu_millis: u32,
    pub reserved_memory_mib: u32,
    pub agents: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    accepting: bool,
    prices: PricesConfig,
}

/// The owner's controls and the dashboard's memory.
#[derive(Debug)]
pub struct Owner {
    token: String,
    tree: sled::Tree,
    accepting: AtomicBool,
    prices: RwLock<PricesConfig>,
    offers: Mutex<VecDeque<OfferRecord>>,
    history: Mutex<VecDeque<Sample>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Owner {
    /// Loads saved settings from `tree` (or starts from `prices`) and makes
    /// a new token.
    pub fn open(tree: sled::Tree, prices: &PricesConfig) -> Result<Owner, OwnerError> {
        let saved: Option<Saved> = tree
            .get("settings")?
            .and_then(|v| serde_json::from_slice(&v).ok());
        let mut b = [0u8; 24];
        getrandom::fill(&mut b).map_err(|e| OwnerError::Random(e.to_string()))?;
        let (accepting, prices) = match saved {
            Some(s) => (s.accepting, s.prices),
            None => (true, prices.clone()),
        };
        Ok(Owner {
            token: hex::encode(b),
            tree,
            accepting: AtomicBool::new(accepting),
            prices: RwLock::new(prices),
            offers: Mutex::new(VecDeque::new()),
            history: Mutex::new(VecDeque::new()),
        })
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Whether an `Authorization` header carries the token (constant time).
    pub fn authorized(&self, header: Option<&str>) -> bool {
        sparebox_protocol::token::bearer_matches(header, &self.token)
    }

    pub fn accepting(&self) -> bool {
        self.accepting.load(Ordering::SeqCst)
    }

    pub fn prices(&self) -> PricesConfig {
        self.prices
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn save(&self) -> Result<(), OwnerError> {
        let s = Saved {
            accepting: self.accepting(),
            prices: self.prices(),
        };
        let v = serde_json::to_vec(&s).map_err(|e| OwnerError::Random(e.to_string()))?;
        self.tree.insert("settings", v)?;
        self.tree.flush()?;
        Ok(())
    }

    pub fn set_accepting(&self, on: bool) -> Result<(), OwnerError> {
        self.accepting.store(on, Ordering::SeqCst);
        self.save()
    }

    pub fn set_prices(&self, prices: PricesConfig) -> Result<(), OwnerError> {
        *self.prices.write().unwrap_or_else(|p| p.into_inner()) = prices;
        self.save()
    }

    pub fn record_offer(&self, r: OfferRecord) {
        let mut log = lock(&self.offers);
        log.push_front(r);
        log.truncate(OFFER_LOG);
    }

    /// Recent offers, newest first.
    pub fn offers(&self) -> Vec<OfferRecord> {
        lock(&self.offers).iter().cloned().collect()
    }

    pub fn sample(&self, s: Sample) {
        let mut h = lock(&self.history);
        h.push_back(s);
        while h.len() > SAMPLES {
            h.pop_front();
        }
    }

    /// Samples, oldest first.
    pub fn history(&self) -> Vec<Sample> {
        lock(&self.history).iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_survive_a_restart_and_the_token_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let start = PricesConfig::default();
        let o = Owner::open(db.open_tree("owner").unwrap(), &start).unwrap();
        assert!(o.accepting());
        assert!(o.authorized(Some(&format!("Bearer {}", o.token()))));
        assert!(!o.authorized(Some("Bearer nope")));
        assert!(!o.authorized(None));
        o.set_accepting(false).unwrap();
        o.set_prices(PricesConfig {
            wasi_cents_per_hour: 7,
            ..start.clone()
        })
        .unwrap();
        let token = o.token().to_string();
        drop(o);
        let o = Owner::open(db.open_tree("owner").unwrap(), &start).unwrap();
        assert!(!o.accepting());
        assert_eq!(o.prices().wasi_cents_per_hour, 7);
        assert_ne!(o.token(), token);
    }

    #[test]
    fn the_offer_log_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let o = Owner::open(db.open_tree("owner").unwrap(), &PricesConfig::default()).unwrap();
        let req = DeployRequest {
            offer: vec![1, 2, 3],
            spec: "not a spec".into(),
        };
        for i in 0..(OFFER_LOG as u64 + 5) {
            let reply = DeployResponse::Rejected(sparebox_protocol::rpc::Rejection::new(
                "malformed",
                format!("offer {i}"),
            ));
            o.record_offer(OfferRecord::new(&req, &reply, None, i));
        }
        let log = o.offers();
        assert_eq!(log.len(), OFFER_LOG);
        assert_eq!(log[0].at, OFFER_LOG as u64 + 4);
        assert_eq!(log[0].outcome, "rejected");
        assert_eq!(log[0].offer_id, None);
    }
}
