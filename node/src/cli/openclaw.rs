//! `sparebox openclaw install`: Node 24 and a pinned OpenClaw from the npm
//! registry, into the node's data dir (never globally).

use std::path::PathBuf;
use std::process::ExitCode;

use sparebox_sandbox::process::openclaw;

#[derive(Debug, clap::Subcommand)]
pub enum OpenClawCommand {
    /// Install Node 24 and OpenClaw into <data-dir>/openclaw (needs npm on PATH).
    #[command(disable_version_flag = true)]
    Install {
        /// The node's data directory [default: $XDG_DATA_HOME/sparebox/node].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// OpenClaw version.
        #[arg(long, value_name = "V", default_value = openclaw::PINNED_VERSION)]
        version: String,
    },
    /// Check the install and print its versions.
    Check {
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

/// Where a node keeps its OpenClaw install.
pub fn install_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("openclaw")
}

pub fn run(cmd: OpenClawCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        OpenClawCommand::Install { data_dir, version } => {
            let dir = install_dir(
                &data_dir.unwrap_or_else(sparebox_protocol::identity::paths::node_data_dir),
            );
            let started = std::time::Instant::now();
            let i = openclaw::install(&dir, &version, |line| eprintln!("  {line}"))
                .map_err(|e| anyhow::anyhow!(e))?;
            println!(
                "OpenClaw {} installed in {} ({:.0} s)",
                i.version,
                i.dir.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        OpenClawCommand::Check { data_dir } => {
            let dir = install_dir(
                &data_dir.unwrap_or_else(sparebox_protocol::identity::paths::node_data_dir),
            );
            match openclaw::Install::locate(&dir) {
                Ok(i) => {
                    println!(
                        "OpenClaw {} in {} (node {})",
                        i.version,
                        i.dir.display(),
                        i.node.display()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
