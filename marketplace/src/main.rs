use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sparebox_market::service::{self, BillingMode, ServeConfig};
use sparebox_node::config::LogFormat;

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
    Serve {
        /// Data directory (key and database) [default: $XDG_DATA_HOME/sparebox/market].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Address to serve HTTP on. Port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// How money moves.
        #[arg(long, value_enum, default_value = "test-ledger")]
        billing: BillingMode,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    sparebox_node::cli::logging::init(cli.log_format, "info");
    let Command::Serve {
        data_dir,
        listen,
        billing,
    } = cli.command;
    let cfg = ServeConfig {
        data_dir: data_dir
            .unwrap_or_else(|| sparebox_node::identity::paths::data_home().join("market")),
        listen,
        billing,
    };
    let run = async {
        let stop = sparebox_node::daemon::shutdown_signal()?;
        let market = service::start(&cfg).await?;
        println!("sparebox-market {}", env!("CARGO_PKG_VERSION"));
        println!("  market id: {}", market.market);
        println!("  data dir:  {}", cfg.data_dir.display());
        println!("  http:      http://{}", market.addr);
        stop.await;
        market.shutdown().await
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
