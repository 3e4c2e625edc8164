//! The marketplace ledger: double-entry, integer cents, in sled.
//!
//! Every change is one [`Entry`]: postings to accounts that sum to zero,
//! tied to its cause (a Stripe event id, a usage report id, a transfer id,
//! a voucher id). The cause is the entry's key, and posting writes the entry
//! and every balance it touches in one sled transaction. So:
//! - the same cause can never be posted twice (a webhook delivered again,
//!   or retried after a crash, is a no-op);
//! - a crash between receiving a cause and posting it leaves nothing, and
//!   the retry posts it once.
//!
//! Accounts outside the marketplace (`payments` in from Stripe, `payouts`
//! and `refunds` out to Stripe) carry the other side of every movement, and
//! `fees` is the marketplace's revenue. The invariant
//! `internal balances = payments − payouts − fees − refunds` holds because
//! all balances sum to zero; [`Ledger::check`] recomputes everything from
//! the entries and compares.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sled::Transactional;

/// An account. Internal accounts hold money the marketplace owes; external
/// ones mirror money that crossed the boundary.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Account {
    /// External: card payments received (balance is −total paid in).
    Payments,
    /// External: transfers sent to hosts.
    Payouts,
    /// External: refunds sent back to deployers.
    Refunds,
    /// The marketplace's fee revenue.
    Fees,
    /// A deployer's spendable credit.
    Credit(String),
    /// Funds reserved by a voucher.
    Reserved(String),
    /// A host's earnings not yet paid out.
    Earnings(String),
}

impl Account {
    fn key(&self) -> String {
        match self {
            Account::Payments => "payments".into(),
            Account::Payouts => "payouts".into(),
            Account::Refunds => "refunds".into(),
            Account::Fees => "fees".into(),
            Account::Credit(d) => format!("credit/{d}"),
            Account::Reserved(v) => format!("reserved/{v}"),
            Account::Earnings(h) => format!("earnings/{h}"),
        }
    }

    /// Whether the account is money held for someone (it may not go negative).
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            Account::Credit(_) | Account::Reserved(_) | Account::Earnings(_) | Account::Fees
        )
    }
}

/// What caused an entry; its key is the entry's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "id")]
pub enum Cause {
    StripeEvent(String),
    UsageReport(String),
    Transfer(String),
    VoucherReserve(String),
    VoucherRelease(String),
}

impl Cause {
    pub fn key(&self) -> String {
        match self {
            Cause::StripeEvent(id) => format!("event/{id}"),
            Cause::UsageReport(id) => format!("usage/{id}"),
            Cause::Transfer(id) => format!("transfer/{id}"),
            Cause::VoucherReserve(id) => format!("reserve/{id}"),
            Cause::VoucherRelease(id) => format!("release/{id}"),
        }
    }
}

/// One balanced change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub cause: Cause,
    pub postings: Vec<(Account, i64)>,
    pub at: u64,
    pub memo: String,
}

/// Why an entry was not posted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LedgerError {
    #[error("entry does not balance: postings sum to {0} cents")]
    Unbalanced(i64),
    #[error("{account} has {balance} cents; {needed} needed")]
    Insufficient {
        account: String,
        balance: i64,
        needed: i64,
    },
    #[error("ledger storage: {0}")]
    Storage(String),
    #[error("ledger invariant broken: {0}")]
    Invariant(String),
}

/// The outcome of posting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Posted {
    Applied,
    /// The cause was already posted; nothing changed.
    AlreadyPosted,
}

/// The ledger, in sled trees `ledger_entries` and `ledger_balances`.
#[derive(Debug, Clone)]
pub struct Ledger {
    entries: sled::Tree,
    balances: sled::Tree,
}

fn storage(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Storage(e.to_string())
}

fn read_i64(v: Option<sled::IVec>) -> i64 {
    v.and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
        .map_or(0, i64::from_be_bytes)
}

impl Ledger {
    pub fn open(db: &sled::Db) -> Result<Ledger, LedgerError> {
        Ok(Ledger {
            entries: db.open_tree("ledger_entries").map_err(storage)?,
            balances: db.open_tree("ledger_balances").map_err(storage)?,
        })
    }

    pub fn balance(&self, account: &Account) -> Result<i64, LedgerError> {
        Ok(read_i64(self.balances.get(account.key()).map_err(storage)?))
    }

    /// Posts `entry` once: atomically, balanced, and never driving an
    /// internal account below zero.
    pub fn post(&self, entry: &Entry) -> Result<Posted, LedgerError> {
        let sum: i64 = entry.postings.iter().map(|(_, c)| c).sum();
        if sum != 0 {
            return Err(LedgerError::Unbalanced(sum));
        }
        let key = entry.cause.key();
        let json = serde_json::to_vec(entry).map_err(storage)?;
        let result = (&self.entries, &self.balances).transaction(|(entries, balances)| {
            use sled::transaction::ConflictableTransactionError as Abort;
            if entries.get(key.as_bytes())?.is_some() {
                return Ok(Posted::AlreadyPosted);
            }
            for (account, cents) in &entry.postings {
                let k = account.key();
                let now = read_i64(balances.get(k.as_bytes())?);
                let next = now + cents;
                // A refund may leave a deployer in debt (negative credit):
                // Stripe has already returned the money, and the ledger must
                // say so. Nothing else may overdraw an internal account.
                let refund_debt = matches!(entry.cause, Cause::StripeEvent(_))
                    && matches!(account, Account::Credit(_));
                if account.is_internal() && next < 0 && !refund_debt {
                    return Err(Abort::Abort(LedgerError::Insufficient {
                        account: k,
                        balance: now,
                        needed: -cents,
                    }));
                }
                balances.insert(k.as_bytes(), &next.to_be_bytes())?;
            }
            entries.insert(key.as_bytes(), json.as_slice())?;
            Ok(Posted::Applied)
        });
        let posted = result.map_err(|e| match e {
            sled::transaction::TransactionError::Abort(e) => e,
            sled::transaction::TransactionError::Storage(e) => storage(e),
        })?;
        // Flushed before the caller replies (a webhook's 200 means "kept").
        self.entries.flush().map_err(storage)?;
        Ok(posted)
    }

    /// Entries posted so far.
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// Totals from the stored balances alone (cheap: one read per account).
    /// [`Ledger::check`] verifies them against the entries.
    pub fn totals(&self) -> Result<Totals, LedgerError> {
        let mut t = Totals {
            payments: 0,
            payouts: 0,
            refunds: 0,
            fees: 0,
            internal: 0,
        };
        for item in self.balances.iter() {
            let (k, v) = item.map_err(storage)?;
            let v = read_i64(Some(v));
            match k.as_ref() {
                b"payments" => t.payments = -v,
                b"payouts" => t.payouts = v,
                b"refunds" => t.refunds = v,
                b"fees" => t.fees = v,
                _ => t.internal += v,
            }
        }
        Ok(t)
    }

    /// Whether an entry for `cause` was posted.
    pub fn has(&self, cause: &Cause) -> Result<bool, LedgerError> {
        self.entries
            .contains_key(cause.key().as_bytes())
            .map_err(storage)
    }

    /// All entries, in key order.
    pub fn entries(&self) -> Result<Vec<Entry>, LedgerError> {
        self.entries
            .iter()
            .values()
            .map(|v| {
                v.map_err(storage)
                    .and_then(|b| serde_json::from_slice(&b).map_err(storage))
            })
            .collect()
    }

    /// Recomputes every balance from the entries and checks them against
    /// the stored ones, that they sum to zero, that no internal account is
    /// negative, and that internal balances = payments − payouts − fees −
    /// refunds. Run at startup and in tests.
    pub fn check(&self) -> Result<Totals, LedgerError> {
        let mut computed: BTreeMap<String, i64> = BTreeMap::new();
        let mut internal = 0i64;
        for e in self.entries()? {
            for (a, c) in &e.postings {
                *computed.entry(a.key()).or_default() += c;
                if matches!(
                    a,
                    Account::Credit(_) | Account::Reserved(_) | Account::Earnings(_)
                ) {
                    internal += c;
                }
            }
        }
        for (k, v) in self.balances.iter().flatten() {
            let key = String::from_utf8_lossy(&k).to_string();
            let stored = read_i64(Some(v));
            let want = computed.get(&key).copied().unwrap_or(0);
            if stored != want {
                return Err(LedgerError::Invariant(format!(
                    "{key}: stored {stored}, entries say {want}"
                )));
            }
        }
        let sum: i64 = computed.values().sum();
        if sum != 0 {
            return Err(LedgerError::Invariant(format!("balances sum to {sum}")));
        }
        let get = |k: &str| computed.get(k).copied().unwrap_or(0);
        let t = Totals {
            payments: -get("payments"),
            payouts: get("payouts"),
            refunds: get("refunds"),
            fees: get("fees"),
            internal,
        };
        if t.internal != t.payments - t.payouts - t.fees - t.refunds {
            return Err(LedgerError::Invariant(format!(
                "internal {} != payments {} - payouts {} - fees {} - refunds {}",
                t.internal, t.payments, t.payouts, t.fees, t.refunds
            )));
        }
        Ok(t)
    }
}

/// Totals from [`Ledger::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub payments: i64,
    pub payouts: i64,
    pub refunds: i64,
    pub fees: i64,
    /// Credit + reservations + unpaid earnings.
    pub internal: i64,
}

/// Entries for the marketplace's money movements.
pub mod moves {
    use super::{Account, Cause, Entry};

    /// A card payment (Checkout completed): credit the deployer.
    pub fn payment(event: &str, deployer: &str, cents: i64, at: u64) -> Entry {
        Entry {
            cause: Cause::StripeEvent(event.into()),
            postings: vec![
                (Account::Payments, -cents),
                (Account::Credit(deployer.into()), cents),
            ],
            at,
            memo: "card payment".into(),
        }
    }

    /// A voucher reserves credit.
    pub fn reserve(voucher: &str, deployer: &str, cents: i64, at: u64) -> Entry {
        Entry {
            cause: Cause::VoucherReserve(voucher.into()),
            postings: vec![
                (Account::Credit(deployer.into()), -cents),
                (Account::Reserved(voucher.into()), cents),
            ],
            at,
            memo: "voucher reservation".into(),
        }
    }

    /// Metered usage moves reserved funds to the host's earnings.
    pub fn usage(report: &str, voucher: &str, host: &str, cents: i64, at: u64) -> Entry {
        Entry {
            cause: Cause::UsageReport(report.into()),
            postings: vec![
                (Account::Reserved(voucher.into()), -cents),
                (Account::Earnings(host.into()), cents),
            ],
            at,
            memo: "usage".into(),
        }
    }

    /// An expired voucher's unused reservation goes back to credit.
    pub fn release(voucher: &str, deployer: &str, cents: i64, at: u64) -> Entry {
        Entry {
            cause: Cause::VoucherRelease(voucher.into()),
            postings: vec![
                (Account::Reserved(voucher.into()), -cents),
                (Account::Credit(deployer.into()), cents),
            ],
            at,
            memo: "voucher released".into(),
        }
    }

    /// A payout to a host, minus the marketplace fee (basis points).
    pub fn payout(transfer: &str, host: &str, earned: i64, fee_bps: i64, at: u64) -> Entry {
        let fee = earned * fee_bps / 10_000;
        Entry {
            cause: Cause::Transfer(transfer.into()),
            postings: vec![
                (Account::Earnings(host.into()), -earned),
                (Account::Payouts, earned - fee),
                (Account::Fees, fee),
            ],
            at,
            memo: format!("payout, fee {fee_bps} bps"),
        }
    }

    /// A refund (charge.refunded) takes back the deployer's credit (which
    /// may go negative if it was already spent: the deployer then owes it).
    pub fn refund(event: &str, deployer: &str, cents: i64, at: u64) -> Entry {
        Entry {
            cause: Cause::StripeEvent(event.into()),
            postings: vec![
                (Account::Credit(deployer.into()), -cents),
                (Account::Refunds, cents),
            ],
            at,
            memo: "refund".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::moves::*;
    use super::*;

    fn ledger() -> (tempfile::TempDir, sled::Db, Ledger) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let l = Ledger::open(&db).unwrap();
        (dir, db, l)
    }

    #[test]
    fn money_moves_balance_and_the_invariant_holds() {
        let (_d, _db, l) = ledger();
        assert_eq!(
            l.post(&payment("evt_1", "dep", 5000, 1)).unwrap(),
            Posted::Applied
        );
        l.post(&reserve("v1", "dep", 3000, 2)).unwrap();
        l.post(&usage("r1", "v1", "host", 1200, 3)).unwrap();
        l.post(&usage("r2", "v1", "host", 300, 4)).unwrap();
        l.post(&release("v1", "dep", 1500, 5)).unwrap();
        l.post(&payout("tr_1", "host", 1500, 1000, 6)).unwrap();
        l.post(&refund("evt_2", "dep", 500, 7)).unwrap();
        assert_eq!(l.balance(&Account::Credit("dep".into())).unwrap(), 3000);
        assert_eq!(l.balance(&Account::Reserved("v1".into())).unwrap(), 0);
        assert_eq!(l.balance(&Account::Earnings("host".into())).unwrap(), 0);
        assert_eq!(l.balance(&Account::Fees).unwrap(), 150);
        let t = l.check().unwrap();
        assert_eq!(
            l.totals().unwrap(),
            t,
            "balances alone give the same totals"
        );
        assert_eq!(l.entry_count(), 7);
        assert_eq!(
            t,
            Totals {
                payments: 5000,
                payouts: 1350,
                refunds: 500,
                fees: 150,
                internal: 3000
            }
        );
    }

    #[test]
    fn a_cause_is_posted_once_even_when_delivered_again() {
        let (_d, _db, l) = ledger();
        assert_eq!(
            l.post(&payment("evt_9", "dep", 700, 1)).unwrap(),
            Posted::Applied
        );
        assert_eq!(
            l.post(&payment("evt_9", "dep", 700, 2)).unwrap(),
            Posted::AlreadyPosted
        );
        assert_eq!(l.balance(&Account::Credit("dep".into())).unwrap(), 700);
        l.check().unwrap();
    }

    #[test]
    fn nothing_moves_past_what_an_account_holds() {
        let (_d, _db, l) = ledger();
        l.post(&payment("evt_1", "dep", 1000, 1)).unwrap();
        assert_eq!(
            l.post(&reserve("v1", "dep", 1001, 2)),
            Err(LedgerError::Insufficient {
                account: "credit/dep".into(),
                balance: 1000,
                needed: 1001
            })
        );
        assert_eq!(
            l.post(&reserve("v1", "dep", 1000, 2)).unwrap(),
            Posted::Applied
        );
        assert!(
            l.post(&usage("r1", "v1", "h", 1001, 3)).is_err(),
            "cannot charge past the reservation"
        );
        assert_eq!(l.balance(&Account::Reserved("v1".into())).unwrap(), 1000);
        let bad = Entry {
            cause: Cause::Transfer("x".into()),
            postings: vec![(Account::Fees, 1)],
            at: 0,
            memo: String::new(),
        };
        assert_eq!(l.post(&bad), Err(LedgerError::Unbalanced(1)));
        l.check().unwrap();
    }

    #[test]
    fn state_survives_a_reopen_and_tampering_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            let l = Ledger::open(&db).unwrap();
            l.post(&payment("evt_1", "dep", 1000, 1)).unwrap();
            db.flush().unwrap();
        }
        // sled's flusher thread can hold the file lock for a moment after
        // the handle is dropped.
        let db = (0..50)
            .find_map(|_| {
                sled::open(dir.path()).ok().or_else(|| {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    None
                })
            })
            .expect("reopen");
        let l = Ledger::open(&db).unwrap();
        assert_eq!(
            l.post(&payment("evt_1", "dep", 1000, 2)).unwrap(),
            Posted::AlreadyPosted
        );
        l.check().unwrap();
        db.open_tree("ledger_balances")
            .unwrap()
            .insert("credit/dep", &5000i64.to_be_bytes())
            .unwrap();
        assert!(matches!(l.check(), Err(LedgerError::Invariant(_))));
    }
}
