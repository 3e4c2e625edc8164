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
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sparebox_network::{self as network, NetConfig};
use sparebox_protocol::identity::{Keypair, PublicKey};
use sparebox_protocol::now_secs;

use crate::accounts::{Accounts, SignInLimits};
use crate::billing::{Billing, TestLedger};
use crate::config::{BillingMode, MarketConfig};
use crate::deployments::Deployments;
use crate::hosts::HostIndex;
use crate::ledger::Ledger;
use crate::state::AppState;
use crate::stripe::{StripeBilling, StripeConfig};
use crate::usage::Usage;
use crate::vouchers::Vouchers;
use crate::webhooks::Webhooks;

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
    let token = sparebox_protocol::token::random_hex(32, "admin token")?;
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
            sign_ups_per_client: cfg.sign_ups_per_client,
            sign_ups: cfg.sign_ups_per_minute,
        },
    )?;
    let deployments = Arc::new(Deployments::open(&db)?);
    let hosts = Arc::new(
        HostIndex::new(sparebox_protocol::DEFAULT_MAX_SKEW_SECS).serving(deployments.clone()),
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
        hashing: tokio::sync::Semaphore::new(2),
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
        // A scan of sled trees: off the async workers.
        let accounts = state.accounts.clone();
        match tokio::task::spawn_blocking(move || accounts.purge(now_secs())).await {
            Ok(Err(e)) => tracing::error!("purging expired sessions and challenges: {e}"),
            Err(e) => tracing::error!("purging expired sessions and challenges: {e}"),
            Ok(Ok(_)) => {}
        }
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
