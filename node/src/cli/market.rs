//! `sparebox market` and `sparebox voucher`: the CLI side of a marketplace.
//!
//! - `market link` proves this host's node key to the marketplace account
//!   that asked for the challenge (signed [`KeyProof`], purpose link-node).
//! - `market register-key` does the same for a deployer key.
//! - `voucher fetch` asks for a voucher with a deployer-signed
//!   [`VoucherRequest`], paid from the account the key is registered to,
//!   and writes the voucher file `sparebox deploy --voucher` takes.
//! - `voucher buy` prints the page where credit is bought by card.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

use super::files;
use crate::config::NodeConfig;
use sparebox_protocol::build;
use sparebox_protocol::files::{VOUCHER_FORMAT, VoucherFile};
use sparebox_protocol::identity::{Keypair, PublicKey, paths};
use sparebox_protocol::{Envelope, ProofPurpose, now_secs};

#[derive(Debug, clap::Subcommand)]
pub enum MarketCommand {
    /// Link this host's node to your marketplace account, so its earnings
    /// are paid to you. Get CHALLENGE from the marketplace's host page (or
    /// `POST /api/v1/account/challenges {"purpose":"link-node"}`).
    Link {
        /// The marketplace URL, e.g. https://market.example.
        #[arg(long, value_name = "URL")]
        market: String,
        /// The one-time challenge the marketplace gave your account.
        #[arg(long)]
        challenge: String,
        /// Node config (for its data dir, where node.key is).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The node's data dir [default: from the config].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Register a deployer key with your marketplace account (challenge
    /// purpose `deployer-key`).
    RegisterKey {
        /// The marketplace URL.
        #[arg(long, value_name = "URL")]
        market: String,
        /// The one-time challenge the marketplace gave your account.
        #[arg(long)]
        challenge: String,
        /// Deployer key [default: $XDG_DATA_HOME/sparebox/keys/deployer.key].
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum VoucherCommand {
    /// Get a voucher signed by the marketplace, paid from the credit of the
    /// account your deployer key is registered to. Writes a voucher file
    /// for `sparebox deploy --voucher`.
    Fetch {
        /// The marketplace URL.
        #[arg(long, value_name = "URL")]
        market: String,
        /// The voucher's spend cap, in cents (reserved from your credit).
        #[arg(long, value_name = "CENTS")]
        cap: u64,
        /// How long the voucher is valid; what is unused comes back after.
        #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// Deployer key [default: $XDG_DATA_HOME/sparebox/keys/deployer.key].
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Where to write the voucher file.
        #[arg(long, value_name = "FILE", default_value = "voucher.json")]
        out: PathBuf,
        /// Overwrite --out if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Buy credit by card: prints the marketplace page to open in a browser.
    Buy {
        /// The marketplace URL.
        #[arg(long, value_name = "URL")]
        market: String,
    },
}

fn base(url: &str) -> String {
    url.trim_end_matches('/').to_string()
}

/// The marketplace's key, from its health endpoint.
async fn market_key(http: &reqwest::Client, market: &str) -> anyhow::Result<PublicKey> {
    let url = format!("{}/api/health", base(market));
    let v: serde_json::Value = http
        .get(&url)
        .send()
        .await
        .with_context(|| format!("cannot reach the marketplace at {url}"))?
        .json()
        .await
        .with_context(|| format!("{url} did not answer like a Sparebox marketplace"))?;
    let id = v["marketId"]
        .as_str()
        .with_context(|| format!("{url} did not give a marketId"))?;
    id.parse()
        .map_err(|e| anyhow::anyhow!("{url} gave a bad marketId `{id}`: {e}"))
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    body: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let r = http
        .post(url)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = r.status();
    let v: serde_json::Value = r.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!(
            "the marketplace refused: {} [{}]",
            v["error"]["message"].as_str().unwrap_or(status.as_str()),
            v["error"]["code"].as_str().unwrap_or("error")
        );
    }
    Ok(v)
}

async fn prove(
    market: &str,
    challenge: &str,
    key: &Keypair,
    purpose: ProofPurpose,
) -> anyhow::Result<serde_json::Value> {
    let http = reqwest::Client::new();
    let market_pk = market_key(&http, market).await?;
    let proof = build::key_proof(key.public(), market_pk, purpose, challenge, 600, now_secs())?;
    let env = Envelope::seal(&proof, key)?;
    let route = match purpose {
        ProofPurpose::LinkNode => "nodes",
        ProofPurpose::DeployerKey => "keys",
    };
    post(
        &http,
        &format!("{}/api/v1/{route}", base(market)),
        serde_json::json!({ "proof": hex::encode(env.to_bytes()) }),
    )
    .await
}

pub fn run_market(cmd: MarketCommand) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    match cmd {
        MarketCommand::Link {
            market,
            challenge,
            config,
            data_dir,
        } => {
            let dir = match data_dir {
                Some(d) => d,
                None => NodeConfig::load(config.as_deref())?.0.data_dir(),
            };
            let path = dir.join("node.key");
            let key = Keypair::load(&path).with_context(|| {
                format!(
                    "cannot load the node key {} (has `sparebox node` run here?)",
                    path.display()
                )
            })?;
            let v = rt.block_on(prove(&market, &challenge, &key, ProofPurpose::LinkNode))?;
            println!(
                "linked node {} to {}",
                key.public(),
                v["email"].as_str().unwrap_or("your account")
            );
            println!("its earnings are paid to that account's payout account");
        }
        MarketCommand::RegisterKey {
            market,
            challenge,
            key,
        } => {
            let key = Keypair::load(&key.unwrap_or_else(paths::deployer_key))?;
            let v = rt.block_on(prove(&market, &challenge, &key, ProofPurpose::DeployerKey))?;
            println!(
                "registered deployer key {} to {}",
                key.public(),
                v["email"].as_str().unwrap_or("your account")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_voucher(cmd: VoucherCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        VoucherCommand::Buy { market } => {
            println!("Buy credit in your browser: {}/credit", base(&market));
            println!(
                "Then: sparebox voucher fetch --market {} --cap CENTS",
                base(&market)
            );
        }
        VoucherCommand::Fetch {
            market,
            cap,
            ttl,
            key,
            out,
            force,
        } => {
            if out.exists() && !force {
                bail!("{} exists; pass --force to overwrite it", out.display());
            }
            let key = Keypair::load(&key.unwrap_or_else(paths::deployer_key))?;
            let rt = tokio::runtime::Runtime::new()?;
            let v = rt.block_on(async {
                let http = reqwest::Client::new();
                let market_pk = market_key(&http, &market).await?;
                let req = build::voucher_request(
                    key.public(),
                    market_pk,
                    cap,
                    "usd",
                    ttl.as_secs(),
                    300,
                    now_secs(),
                )?;
                let env = Envelope::seal(&req, &key)?;
                post(
                    &http,
                    &format!("{}/api/v1/vouchers", base(&market)),
                    serde_json::json!({ "request": hex::encode(env.to_bytes()) }),
                )
                .await
            })?;
            let voucher = v["voucher"]
                .as_str()
                .context("the marketplace returned no voucher")?;
            files::write_json(
                &out,
                &VoucherFile {
                    format: VOUCHER_FORMAT.into(),
                    voucher: voucher.into(),
                },
                force,
            )?;
            println!(
                "voucher {} for {} cents, valid until {}, written to {}",
                v["voucherId"].as_str().unwrap_or("?"),
                cap,
                v["expiresAt"],
                out.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
