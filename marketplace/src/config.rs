//! `sparebox-market serve`'s configuration: every field with its default.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// How money moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BillingMode {
    /// Stripe Checkout and Connect (keys from the environment).
    Stripe,
    /// No Stripe: credit is granted and paid out on the ledger only.
    TestLedger,
}

impl BillingMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            BillingMode::Stripe => "stripe",
            BillingMode::TestLedger => "test-ledger",
        }
    }
}

/// The marketplace's TOML config (`--config FILE`). Every field has a
/// default; an unknown key is an error; flags override the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MarketConfig {
    /// Data directory. Default `$XDG_DATA_HOME/sparebox/market`.
    pub data_dir: Option<PathBuf>,
    /// HTTP address. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// The URL users and hosts reach this service at (links, voucher
    /// `market_url`). Default `http://<listen address>`. An `https://` URL
    /// makes session cookies `Secure`.
    pub public_url: Option<String>,
    /// `stripe` or `test-ledger` (default).
    pub billing: BillingMode,
    /// libp2p multiaddrs to listen on. Default none (dial out only).
    pub p2p_listen: Vec<String>,
    /// libp2p peers to join through.
    pub bootstrap: Vec<String>,
    /// Find hosts on the local network with mDNS. Default true.
    pub mdns: bool,
    /// Marketplace fee on payouts, in basis points. Default 1000 (10 %).
    pub fee_bps: u64,
    /// Earnings below this are carried to the next settlement. Default 100.
    pub min_payout_cents: u64,
    /// Seconds between settlement runs. Default 3600.
    pub settle_interval_secs: u64,
    /// Smallest credit purchase, in cents. Default 500.
    pub min_checkout_cents: u64,
    /// Sign-in attempts per minute, per email. Default 5.
    pub sign_in_per_email: u32,
    /// Sign-in attempts per minute, per client address. Default 30.
    pub sign_in_per_client: u32,
    /// Sign-ups per minute, per client address. Default 5.
    pub sign_ups_per_client: u32,
    /// Sign-ups per minute in all. Default 60.
    pub sign_ups_per_minute: u32,
}

impl Default for MarketConfig {
    fn default() -> Self {
        MarketConfig {
            data_dir: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            billing: BillingMode::TestLedger,
            p2p_listen: Vec::new(),
            bootstrap: Vec::new(),
            mdns: true,
            fee_bps: 1000,
            min_payout_cents: 100,
            settle_interval_secs: 3600,
            min_checkout_cents: 500,
            sign_in_per_email: 5,
            sign_ups_per_client: 5,
            sign_ups_per_minute: 60,
            sign_in_per_client: 30,
        }
    }
}

impl MarketConfig {
    pub fn load(path: &std::path::Path) -> anyhow::Result<MarketConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let c: MarketConfig = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "config {} is not valid: {}",
                path.display(),
                e.to_string().trim_end()
            )
        })?;
        if c.fee_bps > 10_000 {
            anyhow::bail!(
                "config {}: fee_bps {} is over 10000 (100 %)",
                path.display(),
                c.fee_bps
            );
        }
        Ok(c)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| sparebox_protocol::identity::paths::data_home().join("market"))
    }
}
