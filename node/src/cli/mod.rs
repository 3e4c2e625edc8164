//! The `sparebox` command line. Each subcommand lives in its own module;
//! `main` parses, sets up logging and maps errors to exit codes.

mod agents;
mod deploy;
pub mod files;
mod hosts;
mod keys;
mod market;
mod node;
mod offer;
mod openclaw;
mod spec;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use sparebox_service::logging::LogFormat;

/// Sparebox: run AI agents on spare machines, peer to peer.
#[derive(Debug, Parser)]
#[command(
    name = "sparebox",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Log format: human-readable lines or one JSON object per line.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a host node: advertise spare capacity and run agents.
    Node(node::NodeArgs),
    /// List hosts on the network, with their free capacity and prices.
    Hosts(hosts::HostsArgs),
    /// Deploy an agent to a host: sign an offer, send it, keep the agreement.
    Deploy(deploy::DeployArgs),
    /// List and control agents deployed from this machine.
    #[command(subcommand)]
    Agents(agents::AgentsCommand),
    /// Install and check OpenClaw for the `openclaw` runtime.
    #[command(subcommand)]
    Openclaw(openclaw::OpenClawCommand),
    /// Create and show ed25519 identity keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Check agent spec files.
    #[command(subcommand)]
    Spec(spec::SpecCommand),
    /// Create and inspect signed deployment offers.
    #[command(subcommand)]
    Offer(offer::OfferCommand),
    /// Show the node configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Marketplace accounts: link this node, register deployer keys.
    #[command(subcommand)]
    Market(market::MarketCommand),
    /// Vouchers that pay for agents: buy credit, fetch a voucher.
    #[command(subcommand)]
    Voucher(market::VoucherCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the complete default config, with a comment on every field.
    Default,
    /// Check a config file and print the effective settings.
    Check {
        /// Config file [default: $XDG_CONFIG_HOME/sparebox/node.toml if it exists].
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Entry point of the `sparebox` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Node(args) => node::run(args, cli.log_format),
        Command::Hosts(args) => {
            sparebox_service::logging::init(cli.log_format.unwrap_or_default(), "warn");
            hosts::run(args)
        }
        Command::Deploy(args) => {
            sparebox_service::logging::init(cli.log_format.unwrap_or_default(), "warn");
            deploy::run(args)
        }
        Command::Agents(cmd) => {
            sparebox_service::logging::init(cli.log_format.unwrap_or_default(), "warn");
            agents::run(cmd)
        }
        Command::Openclaw(cmd) => {
            sparebox_service::logging::init(cli.log_format.unwrap_or_default(), "warn");
            openclaw::run(cmd)
        }
        Command::Keys(cmd) => {
            sparebox_service::logging::init(cli.log_format.unwrap_or_default(), "warn");
            keys::run(cmd)
        }
        Command::Spec(cmd) => {
            sparebox_service::logging::init(cli.log_format.unwrap_or_default(), "warn");
            spec::run(cmd)
        }
        Command::Offer(cmd) => {
            sparebox_service::logging::init(cli.log_format.unwrap_or_default(), "warn");
            offer::run(cmd)
        }
        Command::Market(cmd) => {
            sparebox_service::logging::init(cli.log_format.unwrap_or_default(), "warn");
            market::run_market(cmd)
        }
        Command::Voucher(cmd) => {
            sparebox_service::logging::init(cli.log_format.unwrap_or_default(), "warn");
            market::run_voucher(cmd)
        }
        Command::Config(ConfigCommand::Default) => {
            print!("{}", crate::config::DEFAULT_CONFIG_TOML);
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Check { config }) => {
            let (cfg, used) = crate::config::NodeConfig::load(config.as_deref())?;
            match used {
                Some(p) => eprintln!("config {} is valid", p.display()),
                None => eprintln!("no config file; using the built-in defaults"),
            }
            print!("{}", toml::to_string(&cfg)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
