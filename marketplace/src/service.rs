//! `sparebox-market serve`: the marketplace's HTTP service.
//!
//! Start-up: data dir (0700) → the marketplace key (`market.key`, created
//! on first run) → sled (`db`) → the ledger, whose invariant is checked
//! before anything is served (a broken ledger refuses to start) → HTTP.
//!
//! Served so far: `GET /api/health` and `GET /metrics` (ledger totals).
//! Accounts, hosts, credit, vouchers and usage over HTTP, and Stripe, are
//! still to come.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use sparebox_node::identity::{Keypair, PublicKey};

use crate::ledger::Ledger;

/// How money moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BillingMode {
    /// Stripe Checkout and Connect (keys from the environment).
    Stripe,
    /// No Stripe: credit is granted and paid out on the ledger only.
    TestLedger,
}

/// Settings for `serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub billing: BillingMode,
}

struct AppState {
    market: PublicKey,
    ledger: Ledger,
    billing: BillingMode,
}

/// A running marketplace.
#[derive(Debug)]
pub struct Market {
    pub addr: SocketAddr,
    pub market: PublicKey,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    db: sled::Db,
}

impl Market {
    /// Stops serving and flushes the database.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await??;
        self.db.flush()?;
        Ok(())
    }
}

/// Starts the service.
pub async fn start(cfg: &ServeConfig) -> anyhow::Result<Market> {
    use anyhow::Context;
    use std::os::unix::fs::PermissionsExt;
    if cfg.billing == BillingMode::Stripe {
        anyhow::bail!("--billing stripe is not implemented yet; run with --billing test-ledger");
    }
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create {}", cfg.data_dir.display()))?;
    std::fs::set_permissions(&cfg.data_dir, std::fs::Permissions::from_mode(0o700))?;
    let (key, _) = Keypair::load_or_create(&cfg.data_dir.join("market.key"))?;
    let db = sled::open(cfg.data_dir.join("db"))
        .with_context(|| format!("cannot open the database in {}", cfg.data_dir.display()))?;
    let ledger = Ledger::open(&db)?;
    let totals = ledger
        .check()
        .context("the ledger failed its invariant check; refusing to start")?;
    tracing::info!(?totals, "ledger checked");
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let state = Arc::new(AppState {
        market: key.public(),
        ledger,
        billing: cfg.billing,
    });
    let app = Router::new()
        .route("/api/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(state);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    Ok(Market {
        addr,
        market: key.public(),
        stop,
        task,
        db,
    })
}

/// The full invariant check ran at start-up; requests read the stored
/// balances only.
async fn health(State(s): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let ok = s.ledger.totals().is_ok();
    Json(serde_json::json!({
        "status": if ok { "ok" } else { "ledger_unreadable" },
        "version": env!("CARGO_PKG_VERSION"),
        "marketId": s.market.to_string(),
        "billing": match s.billing { BillingMode::Stripe => "stripe", BillingMode::TestLedger => "test-ledger" },
    }))
}

async fn metrics(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    let mut out = String::new();
    match s.ledger.totals() {
        Ok(t) => {
            for (name, help, v) in [
                (
                    "sparebox_market_payments_cents",
                    "Card payments received",
                    t.payments,
                ),
                (
                    "sparebox_market_payouts_cents",
                    "Transfers sent to hosts",
                    t.payouts,
                ),
                (
                    "sparebox_market_refunds_cents",
                    "Refunds sent to deployers",
                    t.refunds,
                ),
                (
                    "sparebox_market_fees_cents",
                    "Marketplace fee revenue",
                    t.fees,
                ),
                (
                    "sparebox_market_held_cents",
                    "Credit, reservations and unpaid earnings",
                    t.internal,
                ),
            ] {
                out.push_str(&format!(
                    "# HELP {name} {help}.\n# TYPE {name} gauge\n{name} {v}\n"
                ));
            }
            out.push_str("# HELP sparebox_market_ledger_ok Whether the ledger's balances can be read (its invariant is checked at start-up).\n# TYPE sparebox_market_ledger_ok gauge\nsparebox_market_ledger_ok 1\n");
        }
        Err(_) => {
            out.push_str("# TYPE sparebox_market_ledger_ok gauge\nsparebox_market_ledger_ok 0\n")
        }
    }
    out.push_str("# EOF\n");
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
}
