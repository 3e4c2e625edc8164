//! `sparebox node`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use std::io::Write as _;

use anyhow::Context;

use crate::config::NodeConfig;
use crate::daemon::Node;
use sparebox_service::logging::LogFormat;
use sparebox_service::shutdown_signal;

#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// Config file [default: $XDG_CONFIG_HOME/sparebox/node.toml if it exists,
    /// else built-in defaults; see `sparebox config default`].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory [default: $XDG_DATA_HOME/sparebox/node].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// API and dashboard address [default: 127.0.0.1:7878]. Port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    api_addr: Option<SocketAddr>,
    /// libp2p address to listen on, e.g. /ip4/0.0.0.0/tcp/4001; repeatable
    /// [default: TCP and QUIC on port 4001].
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<String>,
    /// Peer to join the network through (…/p2p/<PeerId>); repeatable.
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<String>,
    /// Do not look for peers on the local network with mDNS.
    #[arg(long)]
    no_mdns: bool,
}

pub fn run(args: NodeArgs, log_format: Option<LogFormat>) -> anyhow::Result<ExitCode> {
    let (mut config, used) = NodeConfig::load(args.config.as_deref())?;
    if let Some(dir) = args.data_dir {
        config.data_dir = Some(dir);
    }
    if let Some(addr) = args.api_addr {
        config.api.addr = addr;
    }
    if !args.listen.is_empty() {
        config.network.listen = args.listen;
    }
    config.network.bootstrap.extend(args.bootstrap);
    if args.no_mdns {
        config.network.mdns = false;
    }
    for a in config
        .network
        .listen
        .iter()
        .chain(&config.network.bootstrap)
    {
        a.parse::<libp2p::Multiaddr>()
            .with_context(|| format!("`{a}` is not a multiaddr"))?;
    }
    if let Some(f) = log_format {
        config.log.format = f;
    }
    sparebox_service::logging::init(config.log.format, &config.log.filter);
    if let Some(p) = &used {
        tracing::info!(config = %p.display(), "loaded config");
    }
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async {
        let stop = shutdown_signal().context("cannot install signal handlers")?;
        let node = Node::start(&config).await?;
        // The banner goes to stdout (logs go to stderr); tests and scripts read it.
        // A closed stdout (`sparebox node | head -3`) must not stop the node,
        // so write errors are ignored rather than panicking like println!.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "sparebox node {}", env!("CARGO_PKG_VERSION"));
        let _ = writeln!(out, "  peer id:  {}", node.public_key());
        let _ = writeln!(out, "  data dir: {}", node.data_dir().display());
        let _ = writeln!(out, "  api:      http://{}", node.api_addr());
        let _ = writeln!(
            out,
            "  dashboard: http://{}/#token={}",
            node.api_addr(),
            node.owner_token()
        );
        let _ = writeln!(
            out,
            "  owner token: {} (for owner actions on the dashboard; new each start)",
            node.owner_token()
        );
        for a in node.listen_addrs() {
            let _ = writeln!(out, "  listen:   {a}");
        }
        if node.restored() > 0 {
            let _ = writeln!(out, "  restored: {} agents", node.restored());
        }
        if node.key_created() {
            let _ = writeln!(out, "  (created a new node key in the data dir)");
        }
        drop(out);
        stop.await;
        node.shutdown().await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
