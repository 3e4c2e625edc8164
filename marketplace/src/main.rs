use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sparebox_market::config::{BillingMode, MarketConfig};
use sparebox_market::service;
use sparebox_market::stripe::StripeConfig;
use sparebox_service::logging::LogFormat;

/// The Sparebox marketplace: host index, accounts, billing and settlement.
#[derive(Debug, Parser)]
#[command(name = "sparebox-market", version)]
struct Cli {
    /// Log format: human-readable lines or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value = "human")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the marketplace service.
    ///
    /// Stripe mode reads STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET (and
    /// optionally STRIPE_API_BASE) from the environment.
    Serve {
        /// TOML config file; flags override it.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Data directory (key, admin token, database) [default: $XDG_DATA_HOME/sparebox/market].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Address to serve HTTP on [default: 127.0.0.1:8080]. Port 0 picks a free port.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// How money moves [default: test-ledger].
        #[arg(long, value_enum)]
        billing: Option<BillingMode>,
        /// A libp2p peer to join through (repeatable).
        #[arg(long, value_name = "MULTIADDR")]
        bootstrap: Vec<String>,
        /// A libp2p address to listen on (repeatable).
        #[arg(long, value_name = "MULTIADDR")]
        p2p_listen: Vec<String>,
        /// Do not look for hosts on the local network with mDNS.
        #[arg(long)]
        no_mdns: bool,
        /// The URL users reach this service at [default: http://LISTEN].
        #[arg(long, value_name = "URL")]
        public_url: Option<String>,
    },
    /// Operator commands, sent to a running marketplace with its admin token.
    Admin {
        /// The marketplace's URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        market: String,
        /// Its data directory, where `admin.token` is [default: $XDG_DATA_HOME/sparebox/market].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[command(subcommand)]
        action: Admin,
    },
}

#[derive(Debug, Subcommand)]
enum Admin {
    /// Add credit to an account without a payment (test-ledger mode only).
    GrantCredit { email: String, cents: u64 },
    /// Run settlement now: pay every host over the minimum.
    Settle,
}

async fn serve(mut cfg: MarketConfig) -> anyhow::Result<()> {
    let stripe = match cfg.billing {
        BillingMode::Stripe => Some(StripeConfig::from_env()?),
        BillingMode::TestLedger => None,
    };
    let stop = sparebox_service::shutdown_signal()?;
    let market = service::start(&cfg, stripe).await?;
    cfg.data_dir = Some(cfg.data_dir());
    // Write errors (a closed stdout) must not stop the service.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "sparebox-market {}", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(out, "  market id: {}", market.market);
    let _ = writeln!(out, "  data dir:  {}", cfg.data_dir().display());
    let _ = writeln!(out, "  billing:   {}", cfg.billing.as_str());
    let _ = writeln!(out, "  http:      http://{}", market.addr);
    let _ = writeln!(out, "  public:    {}", market.state.public_url);
    for a in &market.p2p_addrs {
        let _ = writeln!(out, "  p2p:       {a}");
    }
    if cfg.billing == BillingMode::TestLedger {
        let _ = writeln!(
            out,
            "  (test-ledger mode: no real payments; `sparebox-market admin grant-credit EMAIL CENTS` adds credit)"
        );
    }
    drop(out);
    stop.await;
    market.shutdown().await
}

async fn admin(market: &str, data_dir: PathBuf, action: Admin) -> anyhow::Result<()> {
    let token_path = data_dir.join("admin.token");
    let token = std::fs::read_to_string(&token_path)
        .with_context(|| format!("cannot read the admin token {}", token_path.display()))?;
    let (path, body) = match action {
        Admin::GrantCredit { email, cents } => (
            "/api/admin/grant-credit",
            serde_json::json!({"email": email, "cents": cents}),
        ),
        Admin::Settle => ("/api/admin/settle", serde_json::json!({})),
    };
    let url = format!("{}{path}", market.trim_end_matches('/'));
    let r = reqwest::Client::new()
        .post(&url)
        .bearer_auth(token.trim())
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = r.status();
    let v: serde_json::Value = r.json().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!(
            "{}: {}",
            v["error"]["code"].as_str().unwrap_or("error"),
            v["error"]["message"].as_str().unwrap_or(status.as_str())
        );
    }
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    sparebox_service::logging::init(cli.log_format, "info");
    let run = async {
        match cli.command {
            Command::Serve {
                config,
                data_dir,
                listen,
                billing,
                bootstrap,
                p2p_listen,
                no_mdns,
                public_url,
            } => {
                let mut cfg = match &config {
                    Some(p) => MarketConfig::load(p)?,
                    None => MarketConfig::default(),
                };
                if data_dir.is_some() {
                    cfg.data_dir = data_dir;
                }
                if let Some(l) = listen {
                    cfg.listen = l;
                }
                if let Some(b) = billing {
                    cfg.billing = b;
                }
                cfg.bootstrap.extend(bootstrap);
                cfg.p2p_listen.extend(p2p_listen);
                if no_mdns {
                    cfg.mdns = false;
                }
                if public_url.is_some() {
                    cfg.public_url = public_url;
                }
                serve(cfg).await
            }
            Command::Admin {
                market,
                data_dir,
                action,
            } => {
                let dir = data_dir.unwrap_or_else(|| MarketConfig::default().data_dir());
                admin(&market, dir, action).await
            }
        }
    };
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
