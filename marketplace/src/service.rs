//! `sparebox-market serve`: start-up, shared state and background jobs.
//!
//! Start-up: data dir (0700) → the marketplace key (`market.key`, created
//! on first run) → the admin token (`admin.token`, 0600) → sled (`db`) →
//! the ledger, whose invariant is checked before anything is served (a
//! broken ledger refuses to start) → the libp2p peer that indexes adverts
//! → HTTP ([`crate::api`]).
//!
//! Background jobs: voucher expiry (every 10 s) and settlement (every
//! `settle_interval_secs`), which pays every linked host whose Connect
//! account can receive transfers, minus `fee_bps`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sparebox_node::identity::{Keypair, PublicKey};
use sparebox_node::network::{self, NetConfig};
use sparebox_node::protocol::now_secs;

use crate::accounts::{Accounts, SignInLimits};
use crate::billing::{self, Billing, Payee, Payout, TestLedger};
use crate::deployments::Deployments;
use crate::hosts::HostIndex;
use crate::ledger::Ledger;
use crate::stripe::{StripeBilling, StripeConfig};
use crate::usage::Usage;
use crate::vouchers::Vouchers;
use crate::webhooks::Webhooks;

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
            .unwrap_or_else(|| sparebox_node::identity::paths::data_home().join("market"))
    }
}

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

/// A running marketplace.
#[derive(Debug)]
pub struct Market {
    pub addr: SocketAddr,
    pub market: PublicKey,
    pub state: Arc<AppState>,
    /// The libp2p addresses the marketplace listens on (with `/p2p/<id>`).
    pub p2p_addrs: Vec<String>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    jobs: Vec<tokio::task::JoinHandle<()>>,
    net: network::Client,
    db: sled::Db,
}

impl Market {
    /// Stops serving and flushes the database.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await??;
        for j in self.jobs {
            j.abort();
        }
        self.net.shutdown().await;
        self.db.flush()?;
        Ok(())
    }
}

fn load_or_create_token(path: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(t) = std::fs::read_to_string(path) {
        return Ok(t.trim().to_string());
    }
    let mut b = [0u8; 32];
    getrandom::fill(&mut b)?;
    let token = hex::encode(b);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(token.as_bytes())?;
    Ok(token)
}

/// Starts the service. `stripe` is required in Stripe mode (see
/// [`StripeConfig::from_env`]).
pub async fn start(cfg: &MarketConfig, stripe: Option<StripeConfig>) -> anyhow::Result<Market> {
    use std::os::unix::fs::PermissionsExt;
    let data_dir = cfg.data_dir();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700))?;
    let (key, _) = Keypair::load_or_create(&data_dir.join("market.key"))?;
    let admin_token = load_or_create_token(&data_dir.join("admin.token"))?;
    let db = sled::open(data_dir.join("db"))
        .with_context(|| format!("cannot open the database in {}", data_dir.display()))?;
    let ledger = Ledger::open(&db)?;
    let totals = ledger
        .check()
        .context("the ledger failed its invariant check; refusing to start")?;
    tracing::info!(?totals, "ledger checked");

    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let public_url = cfg
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"))
        .trim_end_matches('/')
        .to_string();

    let (billing, webhook_secret): (Arc<dyn Billing>, Option<String>) = match cfg.billing {
        BillingMode::TestLedger => (Arc::new(TestLedger::new(ledger.clone())), None),
        BillingMode::Stripe => {
            let s = stripe.context("--billing stripe needs Stripe keys in the environment")?;
            (Arc::new(StripeBilling::new(&s)?), Some(s.webhook_secret))
        }
    };
    let accounts = Accounts::open(
        &db,
        SignInLimits {
            per_email: cfg.sign_in_per_email,
            per_client: cfg.sign_in_per_client,
        },
    )?;
    let deployments = Arc::new(Deployments::open(&db)?);
    let hosts = Arc::new(
        HostIndex::new(sparebox_node::protocol::DEFAULT_MAX_SKEW_SECS).serving(deployments.clone()),
    );
    let net_cfg = NetConfig {
        listen: cfg.p2p_listen.clone(),
        bootstrap: cfg.bootstrap.clone(),
        mdns: cfg.mdns,
        agent_version: format!("sparebox-market/{}", env!("CARGO_PKG_VERSION")),
        ..NetConfig::default()
    };
    let (net, net_task) = network::start(&key, net_cfg, hosts.clone())
        .await
        .map_err(|e| anyhow::anyhow!("libp2p: {e}"))?;
    let p2p_addrs = net
        .info()
        .await
        .map(|i| {
            i.listen_addrs
                .iter()
                .map(|a| format!("{a}/p2p/{}", i.peer_id))
                .collect()
        })
        .unwrap_or_default();

    let state = Arc::new(AppState {
        vouchers: Vouchers::open(&db, ledger.clone(), key.clone(), public_url.clone())?,
        usage: Usage::open(&db, ledger.clone(), key.public())?,
        webhooks: Webhooks::open(&db, ledger.clone(), accounts.clone())?,
        pending_payouts: db.open_tree("pending_payouts")?,
        voucher_requests: db.open_tree("voucher_requests")?,
        key: key.clone(),
        secure_cookies: public_url.starts_with("https://"),
        public_url,
        cfg: cfg.clone(),
        admin_token,
        ledger,
        accounts,
        hosts,
        billing,
        webhook_secret,
        settle_lock: tokio::sync::Mutex::new(()),
        deployments,
        net: net.clone(),
    });
    let app = crate::api::router(state.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = stopped.await;
        })
        .await
    });
    let jobs = vec![
        net_task,
        tokio::spawn(expire_vouchers(state.clone())),
        tokio::spawn(settle_periodically(state.clone())),
    ];
    Ok(Market {
        addr,
        market: key.public(),
        state,
        p2p_addrs,
        stop,
        task,
        jobs,
        net,
        db,
    })
}

async fn expire_vouchers(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tick.tick().await;
        state.hosts.adverts.purge(now_secs());
        // Offers prepared in the browser and never signed give their
        // reservation back.
        for v in state.deployments.take_abandoned(now_secs()) {
            if let Err(e) = state.vouchers.release(&v, now_secs()) {
                tracing::error!("releasing abandoned voucher {v}: {e}");
            }
        }
        match state.vouchers.release_expired(now_secs()) {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                released = n,
                "expired vouchers returned their unused credit"
            ),
            Err(e) => tracing::error!("voucher expiry: {e}"),
        }
    }
}

async fn settle_periodically(state: Arc<AppState>) {
    let every = Duration::from_secs(state.cfg.settle_interval_secs.max(1));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tick.tick().await;
        if let Err(e) = state.settle().await {
            tracing::error!("settlement: {e:#}");
        }
    }
}
