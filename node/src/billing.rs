//! The host's side of paid agreements (docs/design.md, "Money").
//!
//! - **Vouchers on offers.** [`check_voucher`] verifies a voucher an offer
//!   is paid with: signed by a marketplace in `[market] trusted_keys`, not
//!   expired, issued to the offer's deployer, in the offer's currency, and
//!   with a cap that covers the offer's `max_total_cents`. [`HostBilling::commit`]
//!   then checks the voucher's *remaining* cap on this host: what earlier
//!   agreements on the same voucher may still bill is committed against it.
//! - **Usage reports.** Every `report_interval_secs` (at most 60) each paid
//!   agreement whose counters moved gets a signed, cumulative
//!   [`UsageReport`], written to the sled outbox before anything is sent.
//!   [`HostBilling::run_sender`] posts the outbox to each voucher's
//!   marketplace (`POST {market_url}/api/v1/usage`), oldest first per
//!   agreement, retrying with exponential backoff (1 s doubling to 5 min),
//!   so no report is lost across restarts. A report the marketplace refuses
//!   (4xx) is moved to `usage_rejected` with the reason and logged.
//! - **Running out.** A report that shows the agreement past `warn_at_percent`
//!   of its cap logs a warning (once); when the next interval would run past
//!   the cap, the agent is stopped with reason `voucher_exhausted`, so
//!   nothing runs unpaid for longer than one report interval.
//!
//! sled trees:
//! - `voucher_commits`: voucher id → cents committed on this host (u64 BE);
//! - `usage_reported`: offer id → [`Reported`] (last seq and counters, warned);
//! - `usage_outbox`: offer id ++ seq (u64 BE) → [`Pending`] (JSON);
//! - `usage_rejected`: the same key → the refused [`Pending`] and the reason.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError};
use sparebox_protocol::identity::{Keypair, PublicKey};
use sparebox_protocol::rpc::Rejection;
use sparebox_protocol::{
    Checks, DeploymentOffer, Envelope, Id, Message, Payment, PriceTerms, UsageCounters,
    UsageReport, Voucher,
};

/// The payment terms of one paid agreement, kept in its agent record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paid {
    pub voucher_id: String,
    pub market: PublicKey,
    /// Where usage reports go.
    pub market_url: String,
    pub price: PriceTerms,
    /// What the agreement may bill in all: the offer's `max_total_cents`.
    pub cap_cents: u64,
}

/// Checks the voucher paying for `offer` (everything but the remaining cap,
/// which needs this host's state: see [`HostBilling::commit`]).
pub fn check_voucher(
    trusted: &[PublicKey],
    offer: &DeploymentOffer,
    now: u64,
    max_skew_secs: u64,
) -> Result<Option<(Paid, u64)>, Rejection> {
    let Payment::Voucher(env) = &offer.payment else {
        return Ok(None);
    };
    let untrusted = |why: String| Rejection::new("voucher_untrusted", why);
    if !trusted.contains(&env.signer) {
        return Err(untrusted(if trusted.is_empty() {
            "this host trusts no marketplace ([market] trusted_keys is empty)".into()
        } else {
            format!(
                "the voucher is signed by {}, which is not in this host's [market] trusted_keys",
                env.signer
            )
        }));
    }
    let checks = Checks::at(now).with_max_skew(max_skew_secs);
    let v = env
        .clone()
        .verify::<Voucher>(&checks)
        .map_err(|e| match e.code() {
            "expired" => Rejection::new("voucher_expired", format!("voucher: {e}")),
            _ => untrusted(format!("voucher failed verification: {e} [{}]", e.code())),
        })?;
    let v = v.message;
    if v.deployer != offer.deployer {
        return Err(Rejection::new(
            "voucher_wrong_deployer",
            format!(
                "the voucher was issued to deployer {}, not to the offer's signer {}",
                v.deployer, offer.deployer
            ),
        ));
    }
    if !v.currency.eq_ignore_ascii_case(&offer.price.currency) {
        return Err(Rejection::new(
            "voucher_currency",
            format!(
                "the voucher is in {}, the offer in {}",
                v.currency, offer.price.currency
            ),
        ));
    }
    if offer.price.max_total_cents == 0 || offer.price.max_total_cents > v.cap_cents {
        return Err(Rejection::new(
            "voucher_exhausted",
            format!(
                "the offer may bill up to {} cents; the voucher's cap is {} cents (and must be over 0)",
                offer.price.max_total_cents, v.cap_cents
            ),
        ));
    }
    Ok(Some((
        Paid {
            voucher_id: v.voucher_id.to_string(),
            market: v.market,
            market_url: v.market_url.trim_end_matches('/').to_string(),
            price: offer.price.clone(),
            cap_cents: offer.price.max_total_cents,
        },
        v.cap_cents,
    )))
}

/// Which agreement a report is about.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub offer_id: Id,
    pub deployer: PublicKey,
    pub agent_id: &'a str,
}

/// The last report made for an agreement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reported {
    pub seq: u64,
    pub counters: UsageCounters,
    pub at: u64,
    pub warned: bool,
}

/// A report waiting to be delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub url: String,
    pub offer_id: Id,
    /// The signed report, hex.
    pub report: String,
    pub attempts: u32,
    pub next_at: u64,
    #[serde(default)]
    pub last_error: Option<String>,
}

/// What a report says about the agreement's spending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    Ok,
    /// Past the warning threshold for the first time.
    Warn {
        spent: u64,
        cap: u64,
    },
    /// The next interval would run past the cap: stop the agent.
    Exhausted {
        spent: u64,
        cap: u64,
    },
}

/// Settings for [`HostBilling`].
#[derive(Debug, Clone)]
pub struct BillingConfig {
    pub trusted: Vec<PublicKey>,
    pub report_interval: Duration,
    pub warn_at_percent: u8,
}

/// Voucher commitments, the usage-report outbox and its sender.
#[derive(Debug, Clone)]
pub struct HostBilling {
    key: Keypair,
    pub cfg: BillingConfig,
    commits: sled::Tree,
    reported: sled::Tree,
    outbox: sled::Tree,
    rejected: sled::Tree,
    agreements: sled::Tree,
    http: reqwest::Client,
}

/// Why the host's billing could not be opened or could not queue a report.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot build the HTTP client for usage reports: {0}")]
    HttpClient(#[source] reqwest::Error),
    #[error("no randomness for a usage report id: {0}")]
    Random(#[source] getrandom::Error),
    #[error("cannot sign a usage report: {0}")]
    Seal(#[from] sparebox_protocol::SealError),
}

fn db(op: &'static str) -> impl Fn(sled::Error) -> StoreError {
    move |source| StoreError::Op { op, source }
}

fn outbox_key(offer: &Id, seq: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..16].copy_from_slice(&offer.0);
    k[16..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Backoff after `attempts` failures: 1 s doubling, at most 5 minutes.
pub fn backoff_secs(attempts: u32) -> u64 {
    1u64.checked_shl(attempts.saturating_sub(1))
        .unwrap_or(u64::MAX)
        .min(300)
}

impl HostBilling {
    pub fn open(
        key: Keypair,
        cfg: BillingConfig,
        store: &Store,
    ) -> Result<HostBilling, BillingError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(BillingError::HttpClient)?;
        Ok(HostBilling {
            key,
            cfg,
            commits: store.tree("voucher_commits")?,
            reported: store.tree("usage_reported")?,
            outbox: store.tree("usage_outbox")?,
            rejected: store.tree("usage_rejected")?,
            agreements: store.tree("agreements")?,
            http,
        })
    }

    /// Commits `paid.cap_cents` against the voucher's `voucher_cap` on this
    /// host; refuses with `voucher_exhausted` if earlier agreements on the
    /// same voucher leave too little.
    pub fn commit(&self, paid: &Paid, voucher_cap: u64) -> Result<(), Rejection> {
        let mut short = None;
        self.commits
            .fetch_and_update(paid.voucher_id.as_bytes(), |old| {
                let used = old
                    .and_then(|v| <[u8; 8]>::try_from(v).ok())
                    .map_or(0, u64::from_be_bytes);
                if used.saturating_add(paid.cap_cents) > voucher_cap {
                    short = Some(voucher_cap.saturating_sub(used));
                    return old.map(<[u8]>::to_vec);
                }
                short = None;
                Some((used + paid.cap_cents).to_be_bytes().to_vec())
            })
            .map_err(|e| Rejection::new("storage", e.to_string()))?;
        if let Some(left) = short {
            return Err(Rejection::new(
                "voucher_exhausted",
                format!(
                    "the voucher has {left} cents left on this host; the offer may bill up to {}",
                    paid.cap_cents
                ),
            ));
        }
        let _ = self.commits.flush();
        Ok(())
    }

    /// Returns what an ended agreement did not spend to its voucher.
    pub fn release(&self, paid: &Paid, spent: u64) {
        let unused = paid.cap_cents.saturating_sub(spent);
        let _ = self
            .commits
            .fetch_and_update(paid.voucher_id.as_bytes(), |old| {
                let used = old
                    .and_then(|v| <[u8; 8]>::try_from(v).ok())
                    .map_or(0, u64::from_be_bytes);
                Some(used.saturating_sub(unused).to_be_bytes().to_vec())
            });
        let _ = self.commits.flush();
    }

    pub fn reported(&self, offer: &Id) -> Reported {
        self.reported
            .get(offer.0)
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default()
    }

    /// Signs a report of `counters` for one agreement and queues it, unless
    /// nothing changed since the last one (`force` reports anyway, once).
    /// Returns what the totals mean for the agreement's cap.
    pub fn report(
        &self,
        paid: &Paid,
        subject: &Subject<'_>,
        counters: UsageCounters,
        running: bool,
        now: u64,
    ) -> Result<Spend, BillingError> {
        let Subject {
            offer_id,
            deployer,
            agent_id,
        } = *subject;
        let mut last = self.reported(&offer_id);
        if last.seq == 0 || last.counters != counters {
            let report = UsageReport {
                version: UsageReport::VERSION,
                report_id: Id::random().map_err(BillingError::Random)?,
                host: self.key.public(),
                deployer,
                offer_id,
                agent_id: agent_id.to_string(),
                seq: last.seq + 1,
                period_start: if last.seq == 0 { now } else { last.at },
                period_end: now,
                counters,
                issued_at: now,
            };
            let env = Envelope::seal(&report, &self.key)?;
            let pending = Pending {
                url: format!("{}/api/v1/usage", paid.market_url),
                offer_id,
                report: hex::encode(env.to_bytes()),
                attempts: 0,
                next_at: now,
                last_error: None,
            };
            let json = serde_json::to_vec(&pending).map_err(StoreError::encode("report"))?;
            self.outbox
                .insert(outbox_key(&offer_id, report.seq), json)
                .map_err(db("queue usage report"))?;
            last.seq = report.seq;
            last.counters = counters;
            last.at = now;
        }
        let spent = paid.price.charge_for(&counters);
        let cap = paid.cap_cents;
        let spend = if running && self.exhausted(paid, &counters) {
            Spend::Exhausted { spent, cap }
        } else if !last.warned
            && u128::from(spent) * 100 >= u128::from(cap) * u128::from(self.cfg.warn_at_percent)
        {
            last.warned = true;
            Spend::Warn { spent, cap }
        } else {
            Spend::Ok
        };
        self.reported
            .insert(
                offer_id.0,
                serde_json::to_vec(&last).map_err(StoreError::encode("report state"))?,
            )
            .map_err(db("save report state"))?;
        self.outbox.flush().map_err(db("flush usage outbox"))?;
        Ok(spend)
    }

    /// Whether running one more report interval could bill past the cap.
    pub fn exhausted(&self, paid: &Paid, usage: &UsageCounters) -> bool {
        let spent = paid.price.charge_for(usage);
        let next = u128::from(paid.price.cents_per_hour)
            * u128::from(self.cfg.report_interval.as_secs().max(1))
            / 3600;
        u128::from(spent) + next.max(1) > u128::from(paid.cap_cents)
    }

    /// Reports waiting to be delivered.
    pub fn pending(&self) -> usize {
        self.outbox.len()
    }

    /// Reports the marketplace refused.
    pub fn rejected(&self) -> usize {
        self.rejected.len()
    }

    /// Delivers due reports until the process ends; `tick` is the polling
    /// period (1 s in production).
    pub async fn run_sender(self, tick: Duration) {
        loop {
            self.send_due(sparebox_protocol::now_secs()).await;
            tokio::time::sleep(tick).await;
        }
    }

    /// One pass over the outbox: each agreement's reports in seq order; an
    /// agreement whose oldest report is waiting out a backoff is skipped.
    pub async fn send_due(&self, now: u64) {
        let mut blocked: Vec<Id> = Vec::new();
        for item in self.outbox.iter() {
            let Ok((k, v)) = item else { break };
            let Ok(mut p) = serde_json::from_slice::<Pending>(&v) else {
                let _ = self.outbox.remove(&k);
                continue;
            };
            if blocked.contains(&p.offer_id) {
                continue;
            }
            if p.next_at > now {
                blocked.push(p.offer_id);
                continue;
            }
            match self.deliver(&p).await {
                Delivery::Done => {
                    let _ = self.outbox.remove(&k);
                }
                Delivery::Refused(why) => {
                    tracing::warn!(offer = %p.offer_id, url = %p.url, "usage report refused by the marketplace: {why}");
                    p.last_error = Some(why);
                    if let Ok(json) = serde_json::to_vec(&p) {
                        let _ = self.rejected.insert(&k, json);
                    }
                    let _ = self.outbox.remove(&k);
                }
                Delivery::Retry(why) => {
                    p.attempts += 1;
                    p.next_at = now + backoff_secs(p.attempts);
                    tracing::info!(offer = %p.offer_id, attempts = p.attempts, "usage report not delivered, retrying in {} s: {why}", p.next_at - now);
                    p.last_error = Some(why);
                    if let Ok(json) = serde_json::to_vec(&p) {
                        let _ = self.outbox.insert(&k, json);
                    }
                    blocked.push(p.offer_id);
                }
            }
        }
        let _ = self.outbox.flush();
    }

    async fn deliver(&self, p: &Pending) -> Delivery {
        let agreement = match self.agreements.get(p.offer_id.0) {
            Ok(Some(a)) => hex::encode(a),
            Ok(None) => return Delivery::Refused("the agreement is no longer stored".into()),
            Err(e) => return Delivery::Retry(e.to_string()),
        };
        let body = serde_json::json!({ "report": p.report, "agreement": agreement });
        match self.http.post(&p.url).json(&body).send().await {
            Ok(r) if r.status().is_success() => Delivery::Done,
            Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                Delivery::Refused(format!(
                    "{status}: {}",
                    text.chars().take(300).collect::<String>()
                ))
            }
            Ok(r) => Delivery::Retry(format!("HTTP {}", r.status())),
            Err(e) => Delivery::Retry(e.to_string()),
        }
    }
}

enum Delivery {
    Done,
    Refused(String),
    Retry(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn backoff_doubles_to_five_minutes() {
        assert_eq!(
            (1..=10).map(backoff_secs).collect::<Vec<_>>(),
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]
        );
        assert_eq!(backoff_secs(200), 300);
    }

    fn config(report_interval_secs: u64) -> BillingConfig {
        BillingConfig {
            trusted: vec![],
            report_interval: Duration::from_secs(report_interval_secs),
            warn_at_percent: 80,
        }
    }

    fn paid(cap: u64, per_hour: u64) -> Paid {
        Paid {
            voucher_id: "v1".into(),
            market: Keypair::from_seed([3; 32]).public(),
            market_url: "http://127.0.0.1:9".into(),
            price: PriceTerms {
                currency: "usd".into(),
                cents_per_hour: per_hour,
                cents_per_1k_tokens: 0,
                max_total_cents: cap,
            },
            cap_cents: cap,
        }
    }

    /// A marketplace stand-in: answers 503 `fail` times, then 200, and
    /// records the reports it accepted.
    async fn flaky_market(fail: usize) -> (String, Arc<Mutex<Vec<String>>>) {
        use axum::http::StatusCode;
        let got: Arc<Mutex<Vec<String>>> = Arc::default();
        let left = Arc::new(Mutex::new(fail));
        let g = got.clone();
        let app = axum::Router::new().route(
            "/api/v1/usage",
            axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
                let (g, left) = (g.clone(), left.clone());
                async move {
                    let mut l = left.lock().unwrap();
                    if *l > 0 {
                        *l -= 1;
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    g.lock()
                        .unwrap()
                        .push(v["report"].as_str().unwrap().to_string());
                    StatusCode::OK
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        (url, got)
    }

    #[tokio::test]
    async fn the_outbox_survives_a_restart_and_retries_with_backoff_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (url, got) = flaky_market(1).await;
        let mut p = paid(1_000_000, 3600);
        p.market_url = url;
        let offer = Id([6; 16]);
        let deployer = Keypair::from_seed([2; 32]).public();
        let subject = Subject {
            offer_id: offer,
            deployer,
            agent_id: "a",
        };
        let cfg = config(1);
        let at = |secs| UsageCounters {
            wall_secs: secs,
            ..Default::default()
        };
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .tree("agreements")
                .unwrap()
                .insert(offer.0, &b"agreement"[..])
                .unwrap();
            let b = HostBilling::open(Keypair::from_seed([1; 32]), cfg.clone(), &store).unwrap();
            b.report(&p, &subject, at(1), true, 100).unwrap();
            b.report(&p, &subject, at(2), true, 101).unwrap();
            store.flush().unwrap();
        } // the node stops before sending anything
        let store = Store::open(dir.path()).unwrap();
        let b = HostBilling::open(Keypair::from_seed([1; 32]), cfg, &store).unwrap();
        assert_eq!(b.pending(), 2, "queued reports survive the restart");
        b.send_due(200).await; // 503: retry in 1 s; the later report waits behind it
        assert_eq!(b.pending(), 2);
        assert!(got.lock().unwrap().is_empty());
        b.send_due(200).await; // still backing off
        assert_eq!(b.pending(), 2);
        b.send_due(201).await;
        assert_eq!(b.pending(), 0);
        let got = got.lock().unwrap().clone();
        assert_eq!(got.len(), 2);
        let seqs: Vec<u64> = got
            .iter()
            .map(|h| {
                sparebox_protocol::open::<UsageReport>(&hex::decode(h).unwrap(), &Checks::at(300))
                    .unwrap()
                    .message
                    .seq
            })
            .collect();
        assert_eq!(seqs, [1, 2], "delivered in order");
    }

    #[test]
    fn commitments_respect_the_voucher_cap_and_are_released() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cfg = config(60);
        let b = HostBilling::open(Keypair::from_seed([1; 32]), cfg, &store).unwrap();
        b.commit(&paid(600, 1), 1000).unwrap();
        let e = b.commit(&paid(600, 1), 1000).unwrap_err();
        assert_eq!(e.code, "voucher_exhausted");
        assert!(e.message.contains("400 cents left"), "{}", e.message);
        b.release(&paid(600, 1), 100); // 500 unused comes back
        b.commit(&paid(600, 1), 1000).unwrap();
    }

    #[test]
    fn reports_queue_only_on_change_and_warn_then_exhaust() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cfg = config(60);
        let b = HostBilling::open(Keypair::from_seed([1; 32]), cfg, &store).unwrap();
        let deployer = Keypair::from_seed([2; 32]).public();
        let offer = Id([5; 16]);
        let subject = Subject {
            offer_id: offer,
            deployer,
            agent_id: "a",
        };
        // 3600 ¢/hour = 1 ¢/s; cap 100 ¢; the next interval costs 60 ¢.
        let p = paid(100, 3600);
        let at = |secs| UsageCounters {
            wall_secs: secs,
            ..Default::default()
        };
        assert_eq!(b.report(&p, &subject, at(0), true, 1).unwrap(), Spend::Ok);
        assert_eq!(b.pending(), 1);
        assert_eq!(b.report(&p, &subject, at(0), true, 2).unwrap(), Spend::Ok);
        assert_eq!(b.pending(), 1, "unchanged counters are not re-reported");
        assert_eq!(b.report(&p, &subject, at(30), false, 3).unwrap(), Spend::Ok);
        assert_eq!(
            b.report(&p, &subject, at(85), false, 4).unwrap(),
            Spend::Warn {
                spent: 85,
                cap: 100
            }
        );
        assert_eq!(
            b.report(&p, &subject, at(86), true, 5).unwrap(),
            Spend::Exhausted {
                spent: 86,
                cap: 100
            }
        );
        assert_eq!(b.pending(), 4);
        assert_eq!(b.reported(&offer).seq, 4);
    }
}
