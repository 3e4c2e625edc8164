//! `sparebox hosts`: join the network as a light client and list hosts.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sparebox_network::adverts::{AdvertIndex, AdvertView};
use sparebox_protocol::{RuntimeKind, now_secs};

use sparebox_network::light::{self as net, Light};

#[derive(Debug, clap::Args)]
pub struct HostsArgs {
    /// A peer to join through (multiaddr ending in /p2p/<PeerId>); repeatable.
    /// Without one, hosts on the local network are found with mDNS.
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<String>,
    /// Only hosts offering this runtime.
    #[arg(long, value_enum)]
    runtime: Option<RuntimeArg>,
    /// Only hosts with at least this much free memory, in MiB.
    #[arg(long, value_name = "MIB")]
    min_memory: Option<u32>,
    /// Only hosts asking at most this many cents per agent-hour.
    #[arg(long, value_name = "CENTS")]
    max_price: Option<u64>,
    /// How long to wait for adverts.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    wait: Duration,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RuntimeArg {
    Wasi,
    Openclaw,
}

impl From<RuntimeArg> for RuntimeKind {
    fn from(r: RuntimeArg) -> Self {
        match r {
            RuntimeArg::Wasi => RuntimeKind::Wasi,
            RuntimeArg::Openclaw => RuntimeKind::Openclaw,
        }
    }
}

/// Collects adverts for up to `wait`: it returns early once adverts have
/// arrived and none has come in for half a second.
pub async fn collect(bootstrap: Vec<String>, wait: Duration) -> anyhow::Result<Vec<AdvertView>> {
    let index = Arc::new(AdvertIndex::new(None, 60));
    let light = Arc::new(Light {
        adverts: Some(index.clone()),
        ..Light::default()
    });
    let mdns = bootstrap.is_empty();
    let client = net::start(light, bootstrap, mdns).await?;
    let started = Instant::now();
    let mut last = (0, Instant::now());
    while started.elapsed() < wait {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let n = index.len(now_secs());
        if n != last.0 {
            last = (n, Instant::now());
        } else if n > 0 && last.1.elapsed() > Duration::from_millis(500) {
            break;
        }
    }
    client.shutdown().await;
    Ok(index.list(now_secs()))
}

pub fn run(args: HostsArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    let mut hosts = rt.block_on(collect(args.bootstrap.clone(), args.wait))?;
    hosts.retain(|h| {
        let runtime_ok = args.runtime.is_none_or(|r| {
            let r = RuntimeKind::from(r);
            h.runtimes.iter().any(|o| o.kind == r)
        });
        let mem_ok = args.min_memory.is_none_or(|m| h.free.memory_mib >= m);
        let price_ok = args.max_price.is_none_or(|max| {
            let r = args.runtime.map_or(RuntimeKind::Wasi, RuntimeKind::from);
            h.price_for(r).is_some_and(|p| p <= max)
        });
        runtime_ok && mem_ok && price_ok
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&hosts)?);
        return Ok(ExitCode::SUCCESS);
    }
    if hosts.is_empty() {
        eprintln!(
            "no hosts found in {} (join through a known peer with --bootstrap /ip4/.../tcp/.../p2p/<PeerId>)",
            humantime::format_duration(args.wait)
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<54} {:>7} {:>9} {:>6} {:<14} {:>9}  ADDRESS",
        "PEER ID", "CPU m", "MEM MiB", "SLOTS", "RUNTIMES", "¢/HOUR"
    );
    for h in hosts {
        let runtimes: Vec<&str> = h.runtimes.iter().map(|r| r.kind.as_str()).collect();
        let price = h
            .price_for(RuntimeKind::Wasi)
            .map_or("-".to_string(), |p| p.to_string());
        println!(
            "{:<54} {:>7} {:>9} {:>6} {:<14} {:>9}  {}",
            h.peer_id,
            h.free.cpu_millis,
            h.free.memory_mib,
            h.free_agent_slots,
            runtimes.join(","),
            price,
            h.addresses.first().map_or("", |s| s.as_str())
        );
    }
    Ok(ExitCode::SUCCESS)
}
