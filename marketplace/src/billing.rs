//! Billing: how money crosses the marketplace's boundary, behind a trait.
//!
//! - [`Billing`] creates card checkouts (deployers buying credit), Connect
//!   accounts with their onboarding links, and transfers (host payouts).
//!   [`crate::stripe::StripeBilling`] does it with Stripe; [`TestLedger`]
//!   moves money on the ledger alone, for a first run and for development.
//! - [`settle`] is the periodic settlement job: every host whose unpaid
//!   earnings reach the minimum gets one transfer, minus the marketplace
//!   fee. Before asking the provider, the job records the payout it intends
//!   (host, amount, idempotency key) in the sled tree `pending_payouts` and
//!   flushes it; a job that crashes and runs again finds that record and
//!   asks for the very same transfer, and the ledger entry (keyed by the
//!   transfer id) is posted once. The record is removed after posting.

use crate::ledger::{Account, Ledger, LedgerError, Posted, moves};

/// A checkout the deployer completes in the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    pub id: String,
    pub url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("payment provider: {0}")]
    Provider(String),
}

/// Where the browser goes after a checkout or onboarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Return {
    pub success_url: String,
    pub cancel_url: String,
}

/// A host's payout account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    pub id: String,
    /// Whether transfers can be sent now (Stripe: after onboarding, told by
    /// `account.updated`).
    pub payouts_enabled: bool,
}

/// Money in and out.
#[async_trait::async_trait]
pub trait Billing: Send + Sync {
    /// Starts a card payment of `cents` for `account`.
    async fn checkout(
        &self,
        account: &str,
        cents: u64,
        back: &Return,
    ) -> Result<Checkout, BillingError>;
    /// Creates a payout account for a host.
    async fn connect_account(&self, email: &str) -> Result<Connected, BillingError>;
    /// A link where the host completes onboarding.
    async fn onboarding_link(&self, connected: &str, back: &Return)
    -> Result<String, BillingError>;
    /// Sends `cents` to a connected account, once per `idempotency_key`;
    /// returns the transfer id.
    async fn transfer(
        &self,
        destination: &str,
        cents: u64,
        idempotency_key: &str,
    ) -> Result<String, BillingError>;
}

/// Billing without Stripe: a checkout is paid at once (posted as a payment
/// keyed by the checkout id), and a transfer is only recorded.
#[derive(Debug, Clone)]
pub struct TestLedger {
    ledger: Ledger,
}

impl TestLedger {
    pub fn new(ledger: Ledger) -> Self {
        TestLedger { ledger }
    }
}

#[async_trait::async_trait]
impl Billing for TestLedger {
    async fn checkout(
        &self,
        account: &str,
        cents: u64,
        back: &Return,
    ) -> Result<Checkout, BillingError> {
        let mut id = [0u8; 12];
        getrandom::fill(&mut id).map_err(|e| BillingError::Provider(e.to_string()))?;
        let id = format!("test_cs_{}", hex::encode(id));
        let amount = i64::try_from(cents).map_err(|_| BillingError::Provider("amount".into()))?;
        self.ledger
            .post(&moves::payment(&id, account, amount, now()))?;
        Ok(Checkout {
            url: back.success_url.replace("{CHECKOUT_SESSION_ID}", &id),
            id,
        })
    }

    async fn connect_account(&self, _email: &str) -> Result<Connected, BillingError> {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).map_err(|e| BillingError::Provider(e.to_string()))?;
        Ok(Connected {
            id: format!("test_acct_{}", hex::encode(id)),
            payouts_enabled: true,
        })
    }

    async fn onboarding_link(
        &self,
        _connected: &str,
        back: &Return,
    ) -> Result<String, BillingError> {
        Ok(back.success_url.clone())
    }

    async fn transfer(
        &self,
        _destination: &str,
        _cents: u64,
        idempotency_key: &str,
    ) -> Result<String, BillingError> {
        Ok(format!("test_tr_{idempotency_key}"))
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One payout the settlement job made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payout {
    pub host: String,
    pub transfer_id: String,
    /// Earnings settled (the host receives this minus the fee).
    pub earned: u64,
    pub fee: u64,
}

fn provider(e: impl std::fmt::Display) -> BillingError {
    BillingError::Provider(format!("pending payouts: {e}"))
}

/// A host the settlement job may pay: its ledger name (the node key) and
/// the connected account its earnings go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payee {
    pub host: String,
    pub destination: String,
}

/// Pays out every host in `payees` whose earnings reach `min_cents`, minus
/// `fee_bps` basis points. Safe to run again after a crash at any point:
/// an intended payout is recorded in `pending` before the provider is asked.
pub async fn settle(
    ledger: &Ledger,
    pending: &sled::Tree,
    billing: &dyn Billing,
    payees: &[Payee],
    min_cents: u64,
    fee_bps: u64,
) -> Result<Vec<Payout>, BillingError> {
    let mut out = Vec::new();
    for Payee { host, destination } in payees {
        // A payout intended before a crash is finished first, unchanged.
        let (earned_u, key) = match pending.get(host.as_bytes()).map_err(provider)? {
            Some(v) => {
                let text = String::from_utf8_lossy(&v).to_string();
                let (amount, key) = text.split_once(' ').unwrap_or(("0", ""));
                (amount.parse::<u64>().unwrap_or(0), key.to_string())
            }
            None => {
                let earned = ledger.balance(&Account::Earnings(host.clone()))?;
                let Ok(earned_u) = u64::try_from(earned) else {
                    continue;
                };
                if earned_u == 0 || earned_u < min_cents {
                    continue;
                }
                let position = ledger.entry_count();
                let key = format!("{host}-{earned_u}-{position}");
                pending
                    .insert(host.as_bytes(), format!("{earned_u} {key}").as_bytes())
                    .map_err(provider)?;
                pending.flush().map_err(provider)?;
                (earned_u, key)
            }
        };
        let earned = i64::try_from(earned_u).unwrap_or(i64::MAX);
        let fee = earned_u * fee_bps / 10_000;
        let transfer_id = billing.transfer(destination, earned_u - fee, &key).await?;
        let posted = ledger.post(&moves::payout(
            &transfer_id,
            host,
            earned,
            i64::try_from(fee_bps).unwrap_or(0),
            now(),
        ))?;
        pending.remove(host.as_bytes()).map_err(provider)?;
        pending.flush().map_err(provider)?;
        if posted == Posted::Applied {
            out.push(Payout {
                host: host.clone(),
                transfer_id,
                earned: earned_u,
                fee,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) fn back() -> Return {
    Return {
        success_url: "http://127.0.0.1:8080/credit/done?session={CHECKOUT_SESSION_ID}".into(),
        cancel_url: "http://127.0.0.1:8080/credit".into(),
    }
}

#[cfg(test)]
pub(crate) fn payee(host: &str) -> Payee {
    Payee {
        host: host.into(),
        destination: format!("acct_{host}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn test_ledger_checkout_credits_and_settlement_pays_out_minus_fee_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let ledger = Ledger::open(&db).unwrap();
        let billing = TestLedger::new(ledger.clone());
        let c = billing.checkout("dep", 5000, &back()).await.unwrap();
        assert!(c.url.contains(&c.id));
        assert_eq!(
            ledger.balance(&Account::Credit("dep".into())).unwrap(),
            5000
        );
        ledger.post(&moves::reserve("v1", "dep", 3000, 1)).unwrap();
        ledger
            .post(&moves::usage("r1", "v1", "hostA", 2000, 2))
            .unwrap();
        ledger
            .post(&moves::usage("r2", "v1", "hostB", 50, 3))
            .unwrap();

        let hosts = vec![payee("hostA"), payee("hostB")];
        let pending = db.open_tree("pending_payouts").unwrap();
        let paid = settle(&ledger, &pending, &billing, &hosts, 100, 1000)
            .await
            .unwrap();
        assert_eq!(paid.len(), 1, "hostB is under the minimum");
        assert_eq!(paid[0].earned, 2000);
        assert_eq!(paid[0].fee, 200);
        assert_eq!(
            ledger.balance(&Account::Earnings("hostA".into())).unwrap(),
            0
        );
        assert_eq!(ledger.balance(&Account::Payouts).unwrap(), 1800);
        assert_eq!(ledger.balance(&Account::Fees).unwrap(), 200);
        // Running again pays nothing more.
        assert!(
            settle(&ledger, &pending, &billing, &hosts, 100, 1000)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(pending.is_empty());
        let t = ledger.check().unwrap();
        assert_eq!(t.payments, 5000);
        assert_eq!(t.internal, 5000 - 1800 - 200);
    }
}

#[cfg(test)]
mod crash_tests {
    use super::*;

    #[tokio::test]
    async fn a_payout_interrupted_after_the_intent_is_finished_with_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let ledger = Ledger::open(&db).unwrap();
        let billing = TestLedger::new(ledger.clone());
        billing.checkout("dep", 1000, &back()).await.unwrap();
        ledger.post(&moves::reserve("v", "dep", 1000, 1)).unwrap();
        ledger.post(&moves::usage("r", "v", "h", 500, 2)).unwrap();
        // The job recorded its intent, then crashed before the transfer.
        let pending = db.open_tree("pending_payouts").unwrap();
        pending.insert("h", "500 h-500-3").unwrap();
        // More usage arrives before the job runs again.
        ledger.post(&moves::usage("r2", "v", "h", 100, 3)).unwrap();
        let paid = settle(&ledger, &pending, &billing, &[payee("h")], 1, 0)
            .await
            .unwrap();
        assert_eq!(
            paid[0].transfer_id, "test_tr_h-500-3",
            "the recorded key is reused"
        );
        assert_eq!(paid[0].earned, 500);
        assert_eq!(ledger.balance(&Account::Earnings("h".into())).unwrap(), 100);
        // The next run pays the rest under a new key.
        let paid = settle(&ledger, &pending, &billing, &[payee("h")], 1, 0)
            .await
            .unwrap();
        assert_eq!(paid[0].earned, 100);
        ledger.check().unwrap();
    }
}
