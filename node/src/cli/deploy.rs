//! `sparebox deploy`: sign an offer, send it to a host, serve the component
//! while the host fetches it, and keep the signed agreement.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};

use super::files;
use super::offer::{self, Prices};
use sparebox_network::addr::with_peer_id;
use sparebox_network::light::{self as net, Light};
use sparebox_protocol::files::{AGENT_FORMAT, AgentFile};
use sparebox_protocol::identity::{Keypair, PublicKey, paths};
use sparebox_protocol::rpc::{DeployRequest, DeployResponse};
use sparebox_protocol::{Agreement, Checks, open, sha256};

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The agent spec (TOML).
    spec: PathBuf,
    /// The host's PeerId (12D3KooW...), e.g. from `sparebox hosts`.
    #[arg(long, value_name = "PEERID")]
    host: PublicKey,
    /// The host's address (a multiaddr). Without it, the host's advert is
    /// looked up through --bootstrap (or mDNS).
    #[arg(long, value_name = "MULTIADDR")]
    addr: Option<String>,
    /// A peer to find the host through; repeatable.
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<String>,
    /// Deployer key [default: $XDG_DATA_HOME/sparebox/keys/deployer.key].
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// A marketplace voucher file that pays for the agent [default: direct, free].
    #[arg(long, value_name = "FILE")]
    voucher: Option<PathBuf>,
    /// How long the offer stays valid.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// Price per agent-hour you agree to, in cents (at least the host's
    /// ask, shown by `sparebox hosts`). Needs --voucher when over 0.
    #[arg(long, value_name = "CENTS", default_value_t = 0)]
    price_per_hour: u64,
    /// Price per 1k LLM tokens you agree to, in cents.
    #[arg(long, value_name = "CENTS", default_value_t = 0)]
    price_per_1k_tokens: u64,
    /// Most that may ever be billed for this agent, in cents
    /// [default: the voucher's cap].
    #[arg(long, value_name = "CENTS")]
    max_total: Option<u64>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let key = Keypair::load(&args.key.clone().unwrap_or_else(paths::deployer_key))?;
    let signed = offer::sign(
        &args.spec,
        args.host,
        &key,
        args.ttl,
        args.voucher.as_deref(),
        Prices {
            per_hour: args.price_per_hour,
            per_1k_tokens: args.price_per_1k_tokens,
            max_total: args.max_total,
        },
    )?;
    let artifact = match &signed.artifact {
        Some(p) => std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?,
        None => Vec::new(),
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let addr = match &args.addr {
            Some(a) => with_peer_id(a, &args.host),
            None => {
                let hosts = super::hosts::collect(args.bootstrap.clone(), Duration::from_secs(5)).await?;
                let peer = args.host.to_string();
                let Some(h) = hosts.into_iter().find(|h| h.peer_id == peer) else {
                    bail!("host {peer} not found on the network; pass its address with --addr");
                };
                let Some(a) = h.dial_addr() else {
                    bail!("host {peer} advertises no address; pass one with --addr");
                };
                a
            }
        };
        let light = Arc::new(Light::default());
        let size = artifact.len() as u64;
        if !artifact.is_empty() {
            light
                .artifacts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(sha256(&artifact), Arc::new(artifact));
        }
        let client = net::start(light.clone(), vec![addr.clone()], false).await?;
        let bar = if args.json || size == 0 {
            indicatif::ProgressBar::hidden()
        } else {
            let b = indicatif::ProgressBar::new(size);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "sending component {bar:30} {bytes}/{total_bytes}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        };
        let req = DeployRequest {
            offer: signed.env.to_bytes(),
            spec: signed.resolved.document.clone(),
        };
        let send = client.deploy(args.host, Some(addr.clone()), req);
        tokio::pin!(send);
        let reply = loop {
            tokio::select! {
                r = &mut send => break r,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    bar.set_position(light.served.load(Ordering::Relaxed));
                }
            }
        };
        bar.finish_and_clear();
        client.shutdown().await;
        let reply = reply.map_err(|e| anyhow::anyhow!("{e} [{}]", e.code()))?;
        match reply {
            DeployResponse::Rejected(r) => {
                eprintln!("error: host rejected the offer: {} [{}]", r.message, r.code);
                if args.json {
                    println!("{}", serde_json::json!({"accepted": false, "code": r.code, "message": r.message}));
                }
                Ok(ExitCode::FAILURE)
            }
            DeployResponse::Accepted { agreement, agent_id, api_url, token } => {
                let checks = Checks::now().with_audience(key.public());
                let a = open::<Agreement>(&agreement, &checks)
                    .map_err(|e| anyhow::anyhow!("the host's agreement does not verify [{}]: {e}", e.code()))?;
                if a.message.host != args.host
                    || a.message.offer_id != signed.offer.offer_id
                    || a.message.token_sha256 != sha256(token.as_bytes())
                {
                    bail!("the host's agreement does not match the offer [agreement_mismatch]");
                }
                // Nothing the host said reaches the disk or the screen unchecked.
                sparebox_protocol::files::check_accepted(
                    &agent_id,
                    &a.message.agent_id,
                    &api_url,
                    &token,
                    dialed_ip(&addr),
                )
                .map_err(|e| anyhow::anyhow!("the host's answer was refused: {e}"))?;
                let file = AgentFile {
                    format: AGENT_FORMAT.into(),
                    agent_id: agent_id.clone(),
                    name: signed.resolved.spec.name.clone(),
                    host: args.host.to_string(),
                    addr,
                    offer_id: signed.offer.offer_id.to_string(),
                    agreement: hex::encode(&agreement),
                    api_url: api_url.clone(),
                    token: token.clone(),
                    created_at: a.message.accepted_at,
                };
                let path = files::save_agent(&file)?;
                if args.json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&serde_json::json!({
                            "accepted": true,
                            "agentId": agent_id,
                            "apiUrl": api_url,
                            "token": token,
                            "host": file.host,
                            "offerId": file.offer_id,
                        }))?
                    );
                } else {
                    println!("deployed {agent_id} on {}", args.host);
                    println!("  api:    {api_url}");
                    println!("  token:  {token}");
                    println!("  saved:  {}", path.display());
                    println!(
                        "try:     curl -H 'Authorization: Bearer {token}' -d '{{\"content\":\"hi\"}}' {api_url}/messages"
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

/// The IP address in a multiaddr (`/ip4/A/...` or `/ip6/A/...`), if any.
fn dialed_ip(addr: &str) -> Option<std::net::IpAddr> {
    let mut parts = addr.split('/').skip(1);
    match (parts.next(), parts.next()) {
        (Some("ip4" | "ip6"), Some(a)) => a.parse().ok(),
        _ => None,
    }
}
