//! `sparebox offer create|inspect`: signed deployment offers as files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, bail};

use super::files;
use sparebox_protocol::build::{self, OfferTerms};
use sparebox_protocol::files::{OFFER_FORMAT, OfferFile, VOUCHER_FORMAT, VoucherFile};
use sparebox_protocol::identity::{Keypair, PublicKey, paths};
use sparebox_protocol::spec::{AgentSpec, ResolvedSpec};
use sparebox_protocol::{
    Checks, DeploymentOffer, Envelope, Message, Payment, PriceTerms, Voucher, now_secs,
};

#[derive(Debug, clap::Subcommand)]
pub enum OfferCommand {
    /// Sign an offer to run SPEC on HOST and write it to a file.
    Create {
        /// The agent spec (TOML).
        #[arg(long, value_name = "FILE")]
        spec: PathBuf,
        /// The host's PeerId (12D3KooW...).
        #[arg(long, value_name = "PEERID")]
        host: PublicKey,
        /// Deployer key [default: $XDG_DATA_HOME/sparebox/keys/deployer.key].
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// How long the offer stays valid, e.g. 10m, 1h (at most 24h).
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// A marketplace voucher file that pays for the agent [default: direct, price 0].
        #[arg(long, value_name = "FILE")]
        voucher: Option<PathBuf>,
        /// Price per agent-hour, in cents.
        #[arg(long, value_name = "CENTS", default_value_t = 0)]
        price_per_hour: u64,
        /// Price per 1k LLM tokens the host provides, in cents.
        #[arg(long, value_name = "CENTS", default_value_t = 0)]
        price_per_1k_tokens: u64,
        /// Most that may ever be billed under this offer, in cents
        /// [default: the voucher's cap, or 0 for direct].
        #[arg(long, value_name = "CENTS")]
        max_total: Option<u64>,
        /// Where to write the signed offer.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Overwrite --out if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Verify an offer file and print it. Exits non-zero if any check fails.
    Inspect {
        /// The offer file.
        file: PathBuf,
        /// Also check the offer is addressed to this host.
        #[arg(long, value_name = "PEERID")]
        host: Option<PublicKey>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: OfferCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        OfferCommand::Create {
            spec,
            host,
            key,
            ttl,
            voucher,
            price_per_hour,
            price_per_1k_tokens,
            max_total,
            out,
            force,
        } => {
            let key = Keypair::load(&key.unwrap_or_else(paths::deployer_key))?;
            let Signed {
                env,
                offer,
                resolved,
                ..
            } = sign(
                &spec,
                host,
                &key,
                ttl,
                voucher.as_deref(),
                Prices {
                    per_hour: price_per_hour,
                    per_1k_tokens: price_per_1k_tokens,
                    max_total,
                },
            )?;
            let file = OfferFile {
                format: OFFER_FORMAT.into(),
                offer: hex::encode(env.to_bytes()),
                spec: resolved.document,
            };
            files::write_json(&out, &file, force)?;
            println!("wrote {}", out.display());
            println!(
                "offer {} for host {} (expires in {})",
                offer.offer_id,
                host,
                humantime::format_duration(ttl)
            );
            Ok(ExitCode::SUCCESS)
        }
        OfferCommand::Inspect { file, host, json } => inspect(&file, host, json),
    }
}

fn inspect(path: &Path, host: Option<PublicKey>, json: bool) -> anyhow::Result<ExitCode> {
    let file: OfferFile = files::read_json(path, "offer")?;
    if file.format != OFFER_FORMAT {
        bail!(
            "{}: format `{}` is not {}",
            path.display(),
            file.format,
            OFFER_FORMAT
        );
    }
    let env = files::envelope_from_hex::<DeploymentOffer>(&file.offer, path)?;
    let mut checks = Checks::now();
    if let Some(h) = host {
        checks = checks.with_audience(h);
    }
    let verified = match env.verify::<DeploymentOffer>(&checks) {
        Ok(v) => v,
        Err(e) => bail!(
            "offer {} failed verification [{}]: {e}",
            path.display(),
            e.code()
        ),
    };
    let offer = &verified.message;
    let spec = ResolvedSpec::from_document(&file.spec, &offer.spec_sha256).map_err(|e| {
        anyhow::anyhow!(
            "offer {} failed verification [spec_mismatch]: {e}",
            path.display()
        )
    })?;
    if spec.spec.runtime != offer.runtime || spec.spec.resource_request() != offer.resources {
        bail!(
            "offer {} failed verification [spec_mismatch]: runtime or resources differ from the spec",
            path.display()
        );
    }

    if json {
        let v = serde_json::json!({
            "valid": true,
            "offer": offer,
            "deployerPeerId": offer.deployer.to_peer_id(),
            "hostPeerId": offer.host.to_peer_id(),
            "spec": spec.spec,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let when =
        |t: u64| humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t)).to_string();
    let r = &offer.resources;
    println!(
        "offer {}: signature valid, not expired{}",
        offer.offer_id,
        if host.is_some() {
            ", addressed to this host"
        } else {
            ""
        }
    );
    println!("  deployer:  {}", offer.deployer);
    println!("  host:      {}", offer.host);
    println!("  issued:    {}", when(offer.issued_at));
    println!("  expires:   {}", when(offer.expires_at));
    println!("  nonce:     {}", offer.nonce);
    println!("  runtime:   {}", offer.runtime);
    println!(
        "  spec:      `{}` sha256 {} (matches)",
        spec.spec.name, offer.spec_sha256
    );
    println!(
        "  resources: {} millicores, {} MiB memory, {} MiB disk, {} ms task timeout",
        r.resources.cpu_millis, r.resources.memory_mib, r.resources.disk_mib, r.task_timeout_ms
    );
    println!(
        "  price:     {} ¢/hour, {} ¢/1k tokens, at most {} ¢ ({})",
        offer.price.cents_per_hour,
        offer.price.cents_per_1k_tokens,
        offer.price.max_total_cents,
        offer.price.currency
    );
    match &offer.payment {
        Payment::Direct => {
            println!("  payment:   direct (free; the host must allow-list this deployer)")
        }
        Payment::Voucher(v) => println!("  payment:   voucher signed by {}", v.signer),
    }
    Ok(ExitCode::SUCCESS)
}

/// Prices an offer names.
#[derive(Debug, Clone, Copy, Default)]
pub struct Prices {
    pub per_hour: u64,
    pub per_1k_tokens: u64,
    pub max_total: Option<u64>,
}

/// A freshly signed offer and what it commits to.
#[derive(Debug)]
pub struct Signed {
    pub env: Envelope,
    pub offer: DeploymentOffer,
    pub resolved: ResolvedSpec,
    /// The WASI component's path, for serving it to the host.
    pub artifact: Option<PathBuf>,
}

/// Resolves `spec` and signs an offer for `host` with `key`.
pub fn sign(
    spec: &Path,
    host: PublicKey,
    key: &Keypair,
    ttl: Duration,
    voucher: Option<&Path>,
    prices: Prices,
) -> anyhow::Result<Signed> {
    let max_ttl = DeploymentOffer::MAX_LIFETIME_SECS.unwrap_or(u64::MAX);
    if ttl.as_secs() == 0 || ttl.as_secs() > max_ttl {
        bail!(
            "--ttl {} is outside 1s..=24h",
            humantime::format_duration(ttl)
        );
    }
    let parsed = AgentSpec::load(spec)?;
    let base = spec.parent().unwrap_or_else(|| Path::new("."));
    let (resolved, artifact) = parsed.resolve(base)?;

    let (payment, currency, cap) = match voucher {
        None => (Payment::Direct, "usd".to_string(), 0),
        Some(path) => {
            let file: VoucherFile = files::read_json(path, "voucher")?;
            if file.format != VOUCHER_FORMAT {
                bail!(
                    "{}: format `{}` is not {}",
                    path.display(),
                    file.format,
                    VOUCHER_FORMAT
                );
            }
            let env = files::envelope_from_hex::<Voucher>(&file.voucher, path)?;
            let v = env
                .verify::<Voucher>(&Checks::now())
                .with_context(|| format!("voucher {} failed verification", path.display()))?;
            if v.message.deployer != key.public() {
                bail!(
                    "voucher {} is for deployer {}, not for this key ({})",
                    path.display(),
                    v.message.deployer,
                    key.public()
                );
            }
            (
                Payment::Voucher(v.envelope),
                v.message.currency,
                v.message.cap_cents,
            )
        }
    };
    if voucher.is_none() && (prices.per_hour > 0 || prices.per_1k_tokens > 0) {
        bail!("a priced offer needs --voucher to pay with; direct offers are free");
    }
    let max_total_cents = prices.max_total.unwrap_or(cap);
    if max_total_cents > cap {
        bail!("--max-total {max_total_cents} is more than the voucher's cap ({cap} cents)");
    }

    let offer = build::offer(
        OfferTerms {
            deployer: key.public(),
            host,
            spec: &resolved,
            price: PriceTerms {
                currency,
                cents_per_hour: prices.per_hour,
                cents_per_1k_tokens: prices.per_1k_tokens,
                max_total_cents,
            },
            payment,
            ttl_secs: ttl.as_secs(),
        },
        now_secs(),
    )?;
    let env = Envelope::seal(&offer, key)?;
    Ok(Signed {
        env,
        offer,
        resolved,
        artifact,
    })
}
