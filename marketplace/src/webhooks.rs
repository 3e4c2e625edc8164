//! What verified Stripe events do to the ledger and accounts.
//!
//! - `checkout.session.completed` (paid): credits the account named by the
//!   session's `client_reference_id`, and remembers the payment intent.
//! - `charge.refunded`: takes back what was newly refunded on the charge
//!   (`amount_refunded` is a running total, so an older event arriving after
//!   a newer one moves nothing). A refund whose payment is not known yet
//!   (events out of order) is parked and applied when the payment arrives.
//! - `account.updated`: records whether the host's Connect account can
//!   receive transfers, unless a newer event was already applied.
//!
//! Exactly once: every ledger entry is keyed by the event id, and the id is
//! recorded as handled only after the entry is flushed. A crash in between
//! makes Stripe retry; the retry finds the entry and posts nothing twice.
//!
//! sled trees: `stripe_events` (event id → handled at), `payment_intents`
//! (payment intent → account id), `charge_refunds` (charge → cents refunded
//! so far), `parked_refunds` (payment intent → [`Parked`] list, JSON).

use serde::{Deserialize, Serialize};

use crate::accounts::Accounts;
use crate::ledger::{Cause, Ledger, LedgerError, Posted, moves};
use crate::stripe::{EventKind, StripeEvent};

/// Crash-test hook: when `SPAREBOX_MARKET_CRASH_AT` names this point, the
/// process aborts here, as a power cut would stop it. Used by the crash
/// tests; unset in normal runs.
fn crash_point(name: &str) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if AT
        .get_or_init(|| std::env::var("SPAREBOX_MARKET_CRASH_AT").ok())
        .as_deref()
        == Some(name)
    {
        eprintln!("crash point {name}: aborting");
        std::process::abort();
    }
}

/// What a handled event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied(String),
    /// Seen before; nothing done.
    Duplicate,
    /// A refund waiting for its payment.
    Parked,
    /// Acknowledged without effect, and why.
    Ignored(String),
}

#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("webhook storage: {0}")]
    Storage(String),
    #[error("{0}")]
    Invalid(String),
}

fn storage(e: impl std::fmt::Display) -> HandleError {
    HandleError::Storage(e.to_string())
}

/// A refund event waiting for its payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parked {
    pub event: String,
    pub charge: String,
    pub amount_refunded: i64,
    pub at: u64,
}

#[derive(Debug, Clone)]
pub struct Webhooks {
    events: sled::Tree,
    intents: sled::Tree,
    /// Checkout session id → (account, cents) once its payment is credited.
    checkouts: sled::Tree,
    refunds: sled::Tree,
    parked: sled::Tree,
    ledger: Ledger,
    accounts: Accounts,
}

impl Webhooks {
    /// The account and amount a Checkout session credited, once its
    /// `checkout.session.completed` event has been applied.
    pub fn checkout(&self, session: &str) -> Result<Option<(String, i64)>, HandleError> {
        self.checkouts
            .get(session.as_bytes())
            .map_err(storage)?
            .map(|v| serde_json::from_slice(&v).map_err(storage))
            .transpose()
    }

    pub fn open(
        db: &sled::Db,
        ledger: Ledger,
        accounts: Accounts,
    ) -> Result<Webhooks, HandleError> {
        Ok(Webhooks {
            events: db.open_tree("stripe_events").map_err(storage)?,
            intents: db.open_tree("payment_intents").map_err(storage)?,
            checkouts: db.open_tree("checkout_sessions").map_err(storage)?,
            refunds: db.open_tree("charge_refunds").map_err(storage)?,
            parked: db.open_tree("parked_refunds").map_err(storage)?,
            ledger,
            accounts,
        })
    }

    /// Whether event `id` was handled.
    pub fn seen(&self, id: &str) -> bool {
        self.events.contains_key(id.as_bytes()).unwrap_or(false)
    }

    /// Handles one verified event, exactly once.
    pub fn handle(&self, ev: &StripeEvent, now: u64) -> Result<Outcome, HandleError> {
        if self.seen(&ev.id) {
            return Ok(Outcome::Duplicate);
        }
        let outcome = match &ev.kind {
            EventKind::CheckoutCompleted {
                session,
                account,
                paid,
                amount_total,
                payment_intent,
            } => {
                if !paid {
                    Outcome::Ignored(format!("checkout {session} is not paid yet"))
                } else {
                    let account = account.as_deref().ok_or_else(|| {
                        HandleError::Invalid(format!("checkout {session} names no account"))
                    })?;
                    if self.accounts.get(account).map_err(storage)?.is_none() {
                        return Err(HandleError::Invalid(format!(
                            "checkout {session} is for unknown account {account}"
                        )));
                    }
                    let cents = amount_total.filter(|c| *c > 0).ok_or_else(|| {
                        HandleError::Invalid(format!("checkout {session} has no amount"))
                    })?;
                    crash_point("webhook-before-ledger");
                    let posted = self
                        .ledger
                        .post(&moves::payment(&ev.id, account, cents, now))?;
                    crash_point("webhook-after-ledger");
                    if let Some(pi) = payment_intent {
                        self.intents
                            .insert(pi.as_bytes(), account.as_bytes())
                            .map_err(storage)?;
                        self.intents.flush().map_err(storage)?;
                        self.apply_parked(pi, account)?;
                    }
                    let done = serde_json::to_vec(&(account, cents)).map_err(storage)?;
                    self.checkouts
                        .insert(session.as_bytes(), done)
                        .map_err(storage)?;
                    match posted {
                        Posted::Applied => {
                            Outcome::Applied(format!("credited {cents} cents to {account}"))
                        }
                        Posted::AlreadyPosted => Outcome::Duplicate,
                    }
                }
            }
            EventKind::ChargeRefunded {
                charge,
                payment_intent,
                amount_refunded,
            } => {
                let account = match payment_intent {
                    Some(pi) => self.intents.get(pi.as_bytes()).map_err(storage)?,
                    None => None,
                };
                match (account, payment_intent) {
                    (Some(a), _) => {
                        let a = String::from_utf8_lossy(&a).to_string();
                        self.refund(&ev.id, charge, &a, *amount_refunded, now)?
                    }
                    (None, Some(pi)) => {
                        self.park(
                            pi,
                            Parked {
                                event: ev.id.clone(),
                                charge: charge.clone(),
                                amount_refunded: *amount_refunded,
                                at: now,
                            },
                        )?;
                        Outcome::Parked
                    }
                    (None, None) => Outcome::Ignored(format!(
                        "charge {charge} has no payment intent; not a Sparebox checkout"
                    )),
                }
            }
            EventKind::AccountUpdated {
                account,
                payouts_enabled,
            } => match self.accounts.by_connect_account(account) {
                Some(mut a) => {
                    let created = u64::try_from(ev.created).unwrap_or(0);
                    if created < a.connect_updated_at {
                        Outcome::Ignored(format!("older than the state applied for {account}"))
                    } else {
                        a.payouts_enabled = *payouts_enabled;
                        a.connect_updated_at = created;
                        self.accounts.save(&a).map_err(storage)?;
                        Outcome::Applied(format!("{account}: payouts enabled = {payouts_enabled}"))
                    }
                }
                None => Outcome::Ignored(format!("no account uses Connect account {account}")),
            },
            EventKind::Other(kind) => Outcome::Ignored(format!("`{kind}` is not handled")),
        };
        // Recorded last: a crash before this line makes Stripe retry, and
        // the retry finds the ledger entry already posted.
        self.events
            .insert(ev.id.as_bytes(), &now.to_be_bytes())
            .map_err(storage)?;
        self.events.flush().map_err(storage)?;
        Ok(outcome)
    }

    fn refund(
        &self,
        event: &str,
        charge: &str,
        account: &str,
        amount_refunded: i64,
        now: u64,
    ) -> Result<Outcome, HandleError> {
        let before = self
            .refunds
            .get(charge.as_bytes())
            .map_err(storage)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, i64::from_be_bytes);
        let delta = amount_refunded - before;
        // A retry after a crash between posting and recording finds its entry.
        let already = self.ledger.has(&Cause::StripeEvent(event.to_string()))?;
        if delta <= 0 && !already {
            return Ok(Outcome::Ignored(format!(
                "charge {charge}: {amount_refunded} cents refunded in all, {before} already taken back"
            )));
        }
        let posted = if already {
            Posted::AlreadyPosted
        } else {
            self.ledger
                .post(&moves::refund(event, account, delta, now))?
        };
        if amount_refunded > before {
            self.refunds
                .insert(charge.as_bytes(), &amount_refunded.to_be_bytes())
                .map_err(storage)?;
            self.refunds.flush().map_err(storage)?;
        }
        Ok(match posted {
            Posted::Applied => Outcome::Applied(format!("refunded {delta} cents from {account}")),
            Posted::AlreadyPosted => Outcome::Duplicate,
        })
    }

    fn park(&self, pi: &str, p: Parked) -> Result<(), HandleError> {
        let mut list: Vec<Parked> = self
            .parked
            .get(pi.as_bytes())
            .map_err(storage)?
            .and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default();
        if !list.iter().any(|x| x.event == p.event) {
            list.push(p);
        }
        self.parked
            .insert(pi.as_bytes(), serde_json::to_vec(&list).map_err(storage)?)
            .map_err(storage)?;
        self.parked.flush().map_err(storage)?;
        Ok(())
    }

    fn apply_parked(&self, pi: &str, account: &str) -> Result<(), HandleError> {
        let Some(v) = self.parked.get(pi.as_bytes()).map_err(storage)? else {
            return Ok(());
        };
        let mut list: Vec<Parked> = serde_json::from_slice(&v).unwrap_or_default();
        // Largest running total last, so earlier ones are not skipped.
        list.sort_by_key(|p| p.amount_refunded);
        for p in list {
            let o = self.refund(&p.event, &p.charge, account, p.amount_refunded, p.at)?;
            tracing::info!(event = %p.event, "parked refund applied: {o:?}");
        }
        self.parked.remove(pi.as_bytes()).map_err(storage)?;
        self.parked.flush().map_err(storage)?;
        Ok(())
    }

    /// Refund events still waiting for their payment.
    pub fn parked_count(&self) -> usize {
        self.parked.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::SignInLimits;
    use crate::ledger::Account;

    fn setup() -> (tempfile::TempDir, Ledger, Accounts, Webhooks, String) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let ledger = Ledger::open(&db).unwrap();
        let accounts = Accounts::open(&db, SignInLimits::default()).unwrap();
        let a = accounts
            .sign_up("ada@example.com", "correct horse battery", 1)
            .unwrap();
        let w = Webhooks::open(&db, ledger.clone(), accounts.clone()).unwrap();
        (dir, ledger, accounts, w, a.id)
    }

    fn paid(id: &str, account: &str, cents: i64, pi: &str) -> StripeEvent {
        StripeEvent {
            id: id.into(),
            created: 10,
            kind: EventKind::CheckoutCompleted {
                session: format!("cs_{id}"),
                account: Some(account.into()),
                paid: true,
                amount_total: Some(cents),
                payment_intent: Some(pi.into()),
            },
        }
    }

    fn refunded(id: &str, total: i64, pi: &str) -> StripeEvent {
        StripeEvent {
            id: id.into(),
            created: 20,
            kind: EventKind::ChargeRefunded {
                charge: "ch_1".into(),
                payment_intent: Some(pi.into()),
                amount_refunded: total,
            },
        }
    }

    #[test]
    fn a_payment_is_credited_once() {
        let (_d, ledger, _, w, acct) = setup();
        let ev = paid("evt_1", &acct, 5000, "pi_1");
        assert!(matches!(w.handle(&ev, 1).unwrap(), Outcome::Applied(_)));
        assert_eq!(w.handle(&ev, 2).unwrap(), Outcome::Duplicate);
        assert_eq!(ledger.balance(&Account::Credit(acct)).unwrap(), 5000);
        ledger.check().unwrap();
    }

    #[test]
    fn refunds_out_of_order_and_before_their_payment() {
        let (_d, ledger, _, w, acct) = setup();
        // The full refund (running total 3000) arrives first, then the
        // partial one (1000), both before the payment itself.
        assert_eq!(
            w.handle(&refunded("evt_r2", 3000, "pi_1"), 1).unwrap(),
            Outcome::Parked
        );
        assert_eq!(
            w.handle(&refunded("evt_r1", 1000, "pi_1"), 2).unwrap(),
            Outcome::Parked
        );
        assert!(matches!(
            w.handle(&paid("evt_p", &acct, 5000, "pi_1"), 3).unwrap(),
            Outcome::Applied(_)
        ));
        assert_eq!(w.parked_count(), 0);
        assert_eq!(
            ledger.balance(&Account::Credit(acct.clone())).unwrap(),
            2000
        );
        assert_eq!(ledger.balance(&Account::Refunds).unwrap(), 3000);
        // A late duplicate delivery moves nothing.
        assert_eq!(
            w.handle(&refunded("evt_r1", 1000, "pi_1"), 4).unwrap(),
            Outcome::Duplicate
        );
        let t = ledger.check().unwrap();
        assert_eq!(t.internal, 5000 - 3000);
    }

    #[test]
    fn a_crash_after_posting_before_recording_is_not_credited_twice() {
        let (_d, ledger, _, w, acct) = setup();
        // The entry was posted, then the process died before the event id
        // was recorded; Stripe delivers the event again.
        ledger
            .post(&moves::payment("evt_1", &acct, 5000, 1))
            .unwrap();
        assert!(!w.seen("evt_1"));
        w.handle(&paid("evt_1", &acct, 5000, "pi_1"), 2).unwrap();
        assert!(w.seen("evt_1"));
        assert_eq!(ledger.balance(&Account::Credit(acct)).unwrap(), 5000);
        ledger.check().unwrap();
    }

    #[test]
    fn an_older_account_update_does_not_undo_a_newer_one() {
        let (_d, _, accounts, w, acct) = setup();
        let mut a = accounts.get(&acct).unwrap().unwrap();
        a.connect_account = Some("acct_x".into());
        accounts.save(&a).unwrap();
        let upd = |id: &str, created, on| StripeEvent {
            id: id.into(),
            created,
            kind: EventKind::AccountUpdated {
                account: "acct_x".into(),
                payouts_enabled: on,
            },
        };
        assert!(matches!(
            w.handle(&upd("e2", 200, true), 1).unwrap(),
            Outcome::Applied(_)
        ));
        assert!(matches!(
            w.handle(&upd("e1", 100, false), 2).unwrap(),
            Outcome::Ignored(_)
        ));
        assert!(accounts.get(&acct).unwrap().unwrap().payouts_enabled);
    }

    #[test]
    fn a_refund_of_spent_credit_leaves_a_debt_and_the_invariant_holds() {
        let (_d, ledger, _, w, acct) = setup();
        w.handle(&paid("evt_p", &acct, 1000, "pi_1"), 1).unwrap();
        ledger.post(&moves::reserve("v1", &acct, 800, 2)).unwrap();
        w.handle(&refunded("evt_r", 1000, "pi_1"), 3).unwrap();
        assert_eq!(ledger.balance(&Account::Credit(acct)).unwrap(), -800);
        ledger.check().unwrap();
    }
}
