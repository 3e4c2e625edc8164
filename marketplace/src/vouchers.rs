//! Vouchers: marketplace-signed promises to pay, backed by reserved credit.
//!
//! Issuing a voucher reserves its cap from the deployer's credit in the
//! [`Ledger`] (so a voucher can never promise more than the deployer has),
//! then signs a [`Voucher`] with the marketplace key. When a voucher
//! expires, whatever usage did not consume goes back to the deployer's
//! credit ([`Vouchers::release_expired`]).
//!
//! sled tree `vouchers`: voucher id (hex) → [`VoucherRecord`] (JSON).

use serde::{Deserialize, Serialize};
use sparebox_protocol::identity::{Keypair, PublicKey};
use sparebox_protocol::{Envelope, Id, Message, Voucher};

use crate::ledger::{Account, Ledger, LedgerError, Posted, moves};

/// What the marketplace keeps about a voucher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoucherRecord {
    pub voucher_id: String,
    /// The account that paid (the deployer's account id).
    pub account: String,
    pub deployer: PublicKey,
    pub cap_cents: u64,
    pub issued_at: u64,
    pub expires_at: u64,
    pub released: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum VoucherError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("voucher cap must be over 0 cents and the lifetime within 90 days")]
    Invalid,
    #[error("voucher storage: {0}")]
    Storage(String),
    #[error("cannot sign the voucher: {0}")]
    Sign(String),
}

fn storage(e: impl std::fmt::Display) -> VoucherError {
    VoucherError::Storage(e.to_string())
}

/// Issues and expires vouchers.
#[derive(Debug)]
pub struct Vouchers {
    tree: sled::Tree,
    ledger: Ledger,
    key: Keypair,
    market_url: String,
}

impl Vouchers {
    pub fn open(
        db: &sled::Db,
        ledger: Ledger,
        key: Keypair,
        market_url: impl Into<String>,
    ) -> Result<Vouchers, VoucherError> {
        Ok(Vouchers {
            tree: db.open_tree("vouchers").map_err(storage)?,
            ledger,
            key,
            market_url: market_url.into(),
        })
    }

    /// Reserves `cap_cents` of `account`'s credit and returns the signed
    /// voucher's wire bytes. Fails with `Insufficient` if the credit is short.
    pub fn issue(
        &self,
        account: &str,
        deployer: PublicKey,
        cap_cents: u64,
        currency: &str,
        lifetime_secs: u64,
        now: u64,
    ) -> Result<(Vec<u8>, VoucherRecord), VoucherError> {
        let max_life = Voucher::MAX_LIFETIME_SECS.unwrap_or(u64::MAX);
        if cap_cents == 0 || lifetime_secs == 0 || lifetime_secs > max_life {
            return Err(VoucherError::Invalid);
        }
        let id = Id::random().map_err(|e| VoucherError::Sign(e.to_string()))?;
        let voucher = Voucher {
            version: Voucher::VERSION,
            voucher_id: id,
            market: self.key.public(),
            market_url: self.market_url.clone(),
            deployer,
            currency: currency.to_string(),
            cap_cents,
            issued_at: now,
            expires_at: now + lifetime_secs,
        };
        let envelope =
            Envelope::seal(&voucher, &self.key).map_err(|e| VoucherError::Sign(e.to_string()))?;
        let vid = id.to_string();
        let cents = i64::try_from(cap_cents).map_err(|_| VoucherError::Invalid)?;
        self.ledger
            .post(&moves::reserve(&vid, account, cents, now))?;
        let record = VoucherRecord {
            voucher_id: vid.clone(),
            account: account.to_string(),
            deployer,
            cap_cents,
            issued_at: now,
            expires_at: voucher.expires_at,
            released: false,
        };
        self.save(&record)?;
        Ok((envelope.to_bytes(), record))
    }

    fn save(&self, r: &VoucherRecord) -> Result<(), VoucherError> {
        let json = serde_json::to_vec(r).map_err(storage)?;
        self.tree
            .insert(r.voucher_id.as_bytes(), json)
            .map_err(storage)?;
        self.tree.flush().map_err(storage)?;
        Ok(())
    }

    pub fn get(&self, id: &str) -> Result<Option<VoucherRecord>, VoucherError> {
        self.tree
            .get(id.as_bytes())
            .map_err(storage)?
            .map(|v| serde_json::from_slice(&v).map_err(storage))
            .transpose()
    }

    /// Every voucher `account` paid for.
    pub fn for_account(&self, account: &str) -> Vec<VoucherRecord> {
        self.tree
            .iter()
            .filter_map(|r| r.ok())
            .filter_map(|(_, v)| serde_json::from_slice::<VoucherRecord>(&v).ok())
            .filter(|r| r.account == account)
            .collect()
    }

    /// Funds still reserved by a voucher.
    pub fn remaining(&self, id: &str) -> Result<i64, VoucherError> {
        Ok(self.ledger.balance(&Account::Reserved(id.to_string()))?)
    }

    /// Returns the unused part of every expired voucher to its deployer's
    /// credit. Safe to run repeatedly (and after a crash): each release is
    /// a ledger entry keyed by the voucher. Returns how many were released.
    pub fn release_expired(&self, now: u64) -> Result<usize, VoucherError> {
        let mut released = 0;
        for item in self.tree.iter() {
            let (_, v) = item.map_err(storage)?;
            let r: VoucherRecord = serde_json::from_slice(&v).map_err(storage)?;
            if r.released || r.expires_at > now {
                continue;
            }
            if self.release_record(r, now)? {
                released += 1;
            }
        }
        Ok(released)
    }

    /// Returns the unused part of one voucher now, before it expires (an
    /// offer prepared for it was never signed). Same ledger entry as expiry,
    /// so it happens once. Returns whether credit moved.
    pub fn release(&self, id: &str, now: u64) -> Result<bool, VoucherError> {
        match self.get(id)? {
            Some(r) if !r.released => self.release_record(r, now),
            _ => Ok(false),
        }
    }

    fn release_record(&self, mut r: VoucherRecord, now: u64) -> Result<bool, VoucherError> {
        let left = self.remaining(&r.voucher_id)?;
        let mut moved = false;
        if left > 0 {
            let posted = self
                .ledger
                .post(&moves::release(&r.voucher_id, &r.account, left, now))?;
            moved = posted == Posted::Applied;
        }
        r.released = true;
        self.save(&r)?;
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparebox_protocol::{Checks, open};

    fn setup() -> (tempfile::TempDir, Ledger, Vouchers, Keypair) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let ledger = Ledger::open(&db).unwrap();
        let market = Keypair::from_seed([9; 32]);
        let v =
            Vouchers::open(&db, ledger.clone(), market.clone(), "http://127.0.0.1:8080").unwrap();
        (dir, ledger, v, market)
    }

    #[test]
    fn a_voucher_reserves_its_cap_and_verifies_as_the_node_sees_it() {
        let (_d, ledger, v, market) = setup();
        let deployer = Keypair::from_seed([1; 32]).public();
        ledger
            .post(&moves::payment("evt_1", "acct", 5000, 1))
            .unwrap();
        let now = sparebox_protocol::now_secs();
        let (bytes, rec) = v.issue("acct", deployer, 2000, "usd", 3600, now).unwrap();
        let voucher = open::<Voucher>(&bytes, &Checks::at(now)).unwrap();
        assert_eq!(voucher.signer(), market.public());
        assert_eq!(voucher.message.cap_cents, 2000);
        assert_eq!(voucher.message.deployer, deployer);
        assert_eq!(
            ledger.balance(&Account::Credit("acct".into())).unwrap(),
            3000
        );
        assert_eq!(v.remaining(&rec.voucher_id).unwrap(), 2000);
        ledger.check().unwrap();
    }

    #[test]
    fn no_voucher_beyond_the_available_balance() {
        let (_d, ledger, v, _) = setup();
        let deployer = Keypair::from_seed([1; 32]).public();
        ledger
            .post(&moves::payment("evt_1", "acct", 1000, 1))
            .unwrap();
        assert!(matches!(
            v.issue("acct", deployer, 1001, "usd", 60, 10),
            Err(VoucherError::Ledger(LedgerError::Insufficient { .. }))
        ));
        v.issue("acct", deployer, 1000, "usd", 60, 10).unwrap();
        assert!(
            v.issue("acct", deployer, 1, "usd", 60, 10).is_err(),
            "all reserved"
        );
        assert!(matches!(
            v.issue("acct", deployer, 0, "usd", 60, 10),
            Err(VoucherError::Invalid)
        ));
    }

    #[test]
    fn an_expired_voucher_returns_what_was_not_used_once() {
        let (_d, ledger, v, _) = setup();
        let deployer = Keypair::from_seed([1; 32]).public();
        ledger
            .post(&moves::payment("evt_1", "acct", 1000, 1))
            .unwrap();
        let (_, rec) = v.issue("acct", deployer, 800, "usd", 60, 100).unwrap();
        ledger
            .post(&moves::usage("r1", &rec.voucher_id, "host", 300, 120))
            .unwrap();
        assert_eq!(v.release_expired(159).unwrap(), 0, "not expired yet");
        assert_eq!(v.release_expired(160).unwrap(), 1);
        assert_eq!(v.release_expired(161).unwrap(), 0, "released once");
        assert_eq!(
            ledger.balance(&Account::Credit("acct".into())).unwrap(),
            700
        );
        assert_eq!(v.remaining(&rec.voucher_id).unwrap(), 0);
        assert!(v.get(&rec.voucher_id).unwrap().unwrap().released);
        let t = ledger.check().unwrap();
        assert_eq!(t.internal, 1000);
    }
}
