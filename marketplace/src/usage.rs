//! Usage ingestion: a host's signed `UsageReport` becomes a charge.
//!
//! A report is accepted only when:
//! 1. it is signed by the host it names;
//! 2. it comes with the agreement it refers to, signed by that host, whose
//!    embedded offer is signed by the deployer and paid with a voucher this
//!    marketplace signed;
//! 3. its `seq` and every counter are at least the last accepted report's
//!    (counters are totals since the agreement began).
//!
//! The charge is the agreement's price applied to the totals, minus what was
//! already charged, capped by the offer's `max_total_cents` and by what the
//! voucher still has reserved. A host can therefore never bill past what
//! the deployer signed. The charge moves reserved funds to the host's
//! earnings in one ledger entry keyed by the report id, so a report
//! delivered twice is charged once.
//!
//! sled tree `usage_last`: offer id → the last accepted report's counters,
//! seq and cumulative charge.

use serde::{Deserialize, Serialize};
use sparebox_protocol::identity::PublicKey;
use sparebox_protocol::{
    Agreement, Checks, DeploymentOffer, Id, Payment, UsageCounters, UsageReport, Voucher, open,
};

use crate::ledger::{Ledger, LedgerError, Posted, moves};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Last {
    seq: u64,
    counters: UsageCounters,
    charged: u64,
}

/// Why a report was refused. `code()` is stable.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("report: {0}")]
    BadReport(String),
    #[error("agreement: {0}")]
    BadAgreement(String),
    #[error("the report is for another agreement or host")]
    Mismatch,
    #[error("the agreement is not paid with a voucher from this marketplace")]
    NotOurVoucher,
    #[error("seq or a counter went backwards (seq {seq}, last {last})")]
    NotMonotone { seq: u64, last: u64 },
    #[error(
        "the report bills {asked} cents in all, over the agreement's cap of {cap} cents, which is already charged in full"
    )]
    OverCap { asked: u64, cap: u64 },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("usage storage: {0}")]
    Storage(String),
}

impl UsageError {
    pub fn code(&self) -> &'static str {
        match self {
            UsageError::BadReport(_) => "bad_report",
            UsageError::BadAgreement(_) => "bad_agreement",
            UsageError::Mismatch => "mismatch",
            UsageError::NotOurVoucher => "not_our_voucher",
            UsageError::NotMonotone { .. } => "not_monotone",
            UsageError::OverCap { .. } => "over_cap",
            UsageError::Ledger(_) => "ledger",
            UsageError::Storage(_) => "storage",
        }
    }
}

fn storage(e: impl std::fmt::Display) -> UsageError {
    UsageError::Storage(e.to_string())
}

/// The outcome of one report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    /// The agreement the report is for.
    pub offer_id: Id,
    /// The report's cumulative counters.
    pub counters: UsageCounters,
    /// Everything charged under the agreement so far, in cents.
    pub total_cents: u64,
    /// Cents moved from the voucher's reservation to the host.
    pub cents: u64,
    /// Whether this report had been charged before (nothing moved now).
    pub duplicate: bool,
    /// Whether the report asked for more than the agreement's cap (or the
    /// voucher's remaining reservation) allowed; only the allowed part moved.
    pub capped: bool,
}

/// One charged report, for usage and spend charts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point {
    pub at: u64,
    pub counters: UsageCounters,
    /// Cumulative cents charged after this report.
    pub charged: u64,
}

/// Ingests usage reports.
#[derive(Debug, Clone)]
pub struct Usage {
    last: sled::Tree,
    /// offer id ‖ seq (big-endian) → [`Point`] (JSON).
    history: sled::Tree,
    ledger: Ledger,
    market: PublicKey,
}

impl Usage {
    pub fn open(db: &sled::Db, ledger: Ledger, market: PublicKey) -> Result<Usage, UsageError> {
        Ok(Usage {
            last: db.open_tree("usage_last").map_err(storage)?,
            history: db.open_tree("usage_history").map_err(storage)?,
            ledger,
            market,
        })
    }

    /// Verifies `report` against `agreement` and charges it.
    pub fn ingest(&self, report: &[u8], agreement: &[u8], now: u64) -> Result<Charge, UsageError> {
        let r = open::<UsageReport>(report, &Checks::at(now))
            .map_err(|e| UsageError::BadReport(format!("{e} [{}]", e.code())))?
            .message;
        let a = open::<Agreement>(agreement, &Checks::at(now))
            .map_err(|e| UsageError::BadAgreement(format!("{e} [{}]", e.code())))?
            .message;
        if a.offer_id != r.offer_id || a.host != r.host || a.deployer != r.deployer {
            return Err(UsageError::Mismatch);
        }
        // The offer may have expired since it was accepted; check it as of then.
        let offer = a
            .offer
            .clone()
            .verify::<DeploymentOffer>(&Checks::at(a.accepted_at).with_audience(a.host))
            .map_err(|e| UsageError::BadAgreement(format!("embedded offer: {e}")))?
            .message;
        if offer.deployer != a.deployer {
            return Err(UsageError::Mismatch);
        }
        let Payment::Voucher(venv) = &offer.payment else {
            return Err(UsageError::NotOurVoucher);
        };
        let voucher = venv
            .clone()
            .verify::<Voucher>(&Checks::at(offer.issued_at))
            .map_err(|_| UsageError::NotOurVoucher)?
            .message;
        if voucher.market != self.market || voucher.deployer != offer.deployer {
            return Err(UsageError::NotOurVoucher);
        }
        let key = r.offer_id.0;
        let last: Last = self
            .last
            .get(key)
            .map_err(storage)?
            .map(|v| serde_json::from_slice(&v).map_err(storage))
            .transpose()?
            .unwrap_or_default();
        let c = &r.counters;
        let l = &last.counters;
        let grew = c.wall_secs >= l.wall_secs
            && c.cpu_ms >= l.cpu_ms
            && c.memory_mib_secs >= l.memory_mib_secs
            && c.tokens >= l.tokens
            && c.tasks >= l.tasks;
        if (r.seq <= last.seq && last.seq != 0) || !grew {
            // A report charged before is not an error.
            let entry = crate::ledger::Cause::UsageReport(r.report_id.to_string());
            if self.ledger.has(&entry)? {
                return Ok(Charge {
                    offer_id: r.offer_id,
                    counters: last.counters,
                    total_cents: last.charged,
                    cents: 0,
                    duplicate: true,
                    capped: false,
                });
            }
            return Err(UsageError::NotMonotone {
                seq: r.seq,
                last: last.seq,
            });
        }
        let total = offer.price.charge_for(c);
        let asked = sparebox_protocol::PriceTerms {
            max_total_cents: u64::MAX,
            ..offer.price.clone()
        }
        .charge_for(c);
        let voucher_id = voucher.voucher_id.to_string();
        let reserved = self
            .ledger
            .balance(&crate::ledger::Account::Reserved(voucher_id.clone()))?;
        let due = total
            .saturating_sub(last.charged)
            .min(u64::try_from(reserved).unwrap_or(0));
        let capped = asked.saturating_sub(last.charged) > due;
        if capped && due == 0 {
            return Err(UsageError::OverCap {
                asked,
                cap: offer.price.max_total_cents,
            });
        }
        let posted = if due > 0 {
            self.ledger.post(&moves::usage(
                &r.report_id.to_string(),
                &voucher_id,
                &r.host.to_string(),
                i64::try_from(due).unwrap_or(i64::MAX),
                now,
            ))?
        } else {
            Posted::Applied
        };
        let next = Last {
            seq: r.seq,
            counters: *c,
            charged: last.charged + if posted == Posted::Applied { due } else { 0 },
        };
        self.last
            .insert(key, serde_json::to_vec(&next).map_err(storage)?)
            .map_err(storage)?;
        let mut hkey = key.to_vec();
        hkey.extend_from_slice(&r.seq.to_be_bytes());
        let point = Point {
            at: now,
            counters: *c,
            charged: next.charged,
        };
        self.history
            .insert(hkey, serde_json::to_vec(&point).map_err(storage)?)
            .map_err(storage)?;
        // One flush covers both trees (sled flushes the whole database).
        self.last.flush().map_err(storage)?;
        Ok(Charge {
            offer_id: r.offer_id,
            counters: *c,
            total_cents: next.charged,
            cents: due,
            duplicate: posted == Posted::AlreadyPosted,
            capped,
        })
    }
}

impl Usage {
    /// The charged reports of one agreement, oldest first.
    pub fn history(&self, offer_id: &Id) -> Vec<Point> {
        self.history
            .scan_prefix(offer_id.0)
            .filter_map(|r| r.ok())
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Account;
    use crate::vouchers::Vouchers;
    use sparebox_protocol::identity::Keypair;
    use sparebox_protocol::{
        Digest, Envelope, Id, Message, PriceTerms, ResourceRequest, RuntimeKind, now_secs,
    };

    struct World {
        _dir: tempfile::TempDir,
        ledger: Ledger,
        usage: Usage,
        host: Keypair,
        agreement: Vec<u8>,
        offer_id: Id,
        voucher_id: String,
    }

    /// A deployer with 10,000 ¢ credit, a 5,000 ¢ voucher, and an agreement
    /// at 600 ¢/hour and 2 ¢/1k tokens, capped at 4,000 ¢.
    fn world() -> World {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let ledger = Ledger::open(&db).unwrap();
        let market = Keypair::from_seed([9; 32]);
        let vouchers = Vouchers::open(&db, ledger.clone(), market.clone(), "http://m").unwrap();
        let deployer = Keypair::from_seed([1; 32]);
        let host = Keypair::from_seed([2; 32]);
        let now = now_secs();
        ledger
            .post(&moves::payment("evt_1", "acct", 10_000, now))
            .unwrap();
        let (vbytes, vrec) = vouchers
            .issue("acct", deployer.public(), 5_000, "usd", 3600, now)
            .unwrap();
        let offer = DeploymentOffer {
            version: DeploymentOffer::VERSION,
            offer_id: Id([5; 16]),
            deployer: deployer.public(),
            host: host.public(),
            issued_at: now,
            expires_at: now + 600,
            nonce: Id([6; 16]),
            spec_sha256: Digest([0; 32]),
            runtime: RuntimeKind::Wasi,
            resources: ResourceRequest::default(),
            price: PriceTerms {
                currency: "usd".into(),
                cents_per_hour: 600,
                cents_per_1k_tokens: 2,
                max_total_cents: 4_000,
            },
            payment: Payment::Voucher(Envelope::from_bytes(&vbytes, usize::MAX).unwrap()),
        };
        let agreement = Agreement {
            version: Agreement::VERSION,
            offer: Envelope::seal(&offer, &deployer).unwrap(),
            offer_id: offer.offer_id,
            host: host.public(),
            deployer: deployer.public(),
            agent_id: "a".into(),
            accepted_at: now,
            token_sha256: Digest([0; 32]),
        };
        World {
            _dir: dir,
            usage: Usage::open(&db, ledger.clone(), market.public()).unwrap(),
            ledger,
            agreement: Envelope::seal(&agreement, &host).unwrap().to_bytes(),
            host,
            offer_id: offer.offer_id,
            voucher_id: vrec.voucher_id,
        }
    }

    fn report(w: &World, signer: &Keypair, seq: u64, wall: u64, tokens: u64) -> Vec<u8> {
        let r = UsageReport {
            version: UsageReport::VERSION,
            report_id: Id([seq as u8; 16]),
            host: w.host.public(),
            deployer: Keypair::from_seed([1; 32]).public(),
            offer_id: w.offer_id,
            agent_id: "a".into(),
            seq,
            period_start: 0,
            period_end: wall,
            counters: UsageCounters {
                wall_secs: wall,
                tokens,
                ..Default::default()
            },
            issued_at: now_secs(),
        };
        Envelope::seal(&r, signer).unwrap().to_bytes()
    }

    #[test]
    fn reports_are_charged_by_delta_and_capped_by_the_agreement() {
        let w = world();
        let now = now_secs();
        // 1 h + 10k tokens = 600 + 20.
        let c = w
            .usage
            .ingest(&report(&w, &w.host, 1, 3600, 10_000), &w.agreement, now)
            .unwrap();
        assert_eq!(
            (c.cents, c.duplicate, c.capped, c.total_cents, c.offer_id),
            (620, false, false, 620, w.offer_id)
        );
        assert_eq!(c.counters.wall_secs, 3600);
        // 2 h + 10k tokens total: 600 more.
        let c = w
            .usage
            .ingest(&report(&w, &w.host, 2, 7200, 10_000), &w.agreement, now)
            .unwrap();
        assert_eq!(c.cents, 600);
        // 10 h would be 6,020; the agreement caps the total at 4,000.
        let c = w
            .usage
            .ingest(&report(&w, &w.host, 3, 36_000, 10_000), &w.agreement, now)
            .unwrap();
        assert_eq!(c.cents, 4_000 - 1_220);
        assert!(c.capped);
        // Past the cap with nothing left to charge: a clear refusal.
        let e = w
            .usage
            .ingest(&report(&w, &w.host, 4, 40_000, 10_000), &w.agreement, now)
            .unwrap_err();
        assert_eq!(e.code(), "over_cap", "{e}");
        assert_eq!(
            w.ledger
                .balance(&Account::Earnings(w.host.public().to_string()))
                .unwrap(),
            4_000
        );
        assert_eq!(
            w.ledger
                .balance(&Account::Reserved(w.voucher_id.clone()))
                .unwrap(),
            1_000
        );
        w.ledger.check().unwrap();
        // Every charged report is kept for the charts, cumulative.
        let h = w.usage.history(&w.offer_id);
        assert!(h.len() >= 2, "{h:?}");
        assert_eq!((h[0].charged, h[1].charged), (620, 1220));
        assert!(h.windows(2).all(|p| p[0].charged <= p[1].charged));
    }

    #[test]
    fn replays_forgeries_and_backwards_counters_are_refused() {
        let w = world();
        let now = now_secs();
        let first = report(&w, &w.host, 1, 3600, 0);
        assert_eq!(
            w.usage.ingest(&first, &w.agreement, now).unwrap().cents,
            600
        );
        // The same report again: charged once.
        assert!(w.usage.ingest(&first, &w.agreement, now).unwrap().duplicate);
        // Signed by someone else than the host.
        let mallory = Keypair::from_seed([7; 32]);
        assert_eq!(
            w.usage
                .ingest(&report(&w, &mallory, 2, 7200, 0), &w.agreement, now)
                .unwrap_err()
                .code(),
            "bad_report"
        );
        // Counters going backwards.
        assert_eq!(
            w.usage
                .ingest(&report(&w, &w.host, 3, 1800, 0), &w.agreement, now)
                .unwrap_err()
                .code(),
            "not_monotone"
        );
        assert_eq!(
            w.ledger
                .balance(&Account::Earnings(w.host.public().to_string()))
                .unwrap(),
            600
        );
        w.ledger.check().unwrap();
    }
}
