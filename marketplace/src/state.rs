//! The state every request handler and background job shares.

use std::sync::Arc;

use sparebox_network::{self as network};
use sparebox_protocol::identity::{Keypair, PublicKey};

use crate::accounts::Accounts;
use crate::billing::{self, Billing, Payee, Payout};
use crate::config::MarketConfig;
use crate::deployments::Deployments;
use crate::hosts::HostIndex;
use crate::ledger::Ledger;
use crate::usage::Usage;
use crate::vouchers::Vouchers;
use crate::webhooks::Webhooks;

/// Everything the HTTP handlers share.
pub struct AppState {
    pub key: Keypair,
    pub cfg: MarketConfig,
    pub public_url: String,
    pub secure_cookies: bool,
    pub admin_token: String,
    pub ledger: Ledger,
    pub accounts: Accounts,
    pub vouchers: Vouchers,
    pub usage: Usage,
    pub hosts: Arc<HostIndex>,
    pub billing: Arc<dyn Billing>,
    pub webhooks: Webhooks,
    pub webhook_secret: Option<String>,
    pub pending_payouts: sled::Tree,
    pub voucher_requests: sled::Tree,
    pub settle_lock: tokio::sync::Mutex<()>,
    /// Web deployments, uploads and the relay's pending signatures.
    pub deployments: Arc<Deployments>,
    /// The marketplace's libp2p peer (host index, relay).
    pub net: network::Client,
    /// Password hashes running at once (argon2id is memory-hard).
    pub hashing: tokio::sync::Semaphore,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl AppState {
    pub fn market(&self) -> PublicKey {
        self.key.public()
    }

    /// Hosts that can be paid: linked nodes of accounts whose Connect
    /// account takes transfers.
    pub fn payees(&self) -> Vec<Payee> {
        let mut out = Vec::new();
        for a in self.accounts.all() {
            let Some(dest) = a.connect_account.clone().filter(|_| a.payouts_enabled) else {
                continue;
            };
            for n in &a.nodes {
                out.push(Payee {
                    host: n.to_string(),
                    destination: dest.clone(),
                });
            }
        }
        out
    }

    /// One settlement run (the periodic job, and `admin settle`).
    pub async fn settle(&self) -> anyhow::Result<Vec<Payout>> {
        let _one_at_a_time = self.settle_lock.lock().await;
        let payees = self.payees();
        let paid = billing::settle(
            &self.ledger,
            &self.pending_payouts,
            self.billing.as_ref(),
            &payees,
            self.cfg.min_payout_cents,
            self.cfg.fee_bps,
        )
        .await?;
        for p in &paid {
            tracing::info!(host = %p.host, transfer = %p.transfer_id, earned = p.earned, fee = p.fee, "payout sent");
        }
        Ok(paid)
    }
}
