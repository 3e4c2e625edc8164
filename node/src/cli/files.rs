//! The CLI's signed-file formats: JSON with the envelope's wire bytes in hex,
//! so files are readable, diffable and safe to paste.
//!
//! - offer file: `{"format": "sparebox-offer/1", "offer": HEX, "spec": TOML}`
//! - voucher file: `{"format": "sparebox-voucher/1", "voucher": HEX}`

use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::protocol::{Envelope, Message};

pub const OFFER_FORMAT: &str = "sparebox-offer/1";
pub const VOUCHER_FORMAT: &str = "sparebox-voucher/1";
/// Largest signed file read, in bytes.
const MAX_FILE: u64 = 1024 * 1024;

/// A signed offer with the spec document it commits to.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferFile {
    pub format: String,
    /// Hex of the offer envelope's wire bytes.
    pub offer: String,
    /// The resolved spec document; its sha256 is the offer's `spec_sha256`.
    pub spec: String,
}

/// A signed voucher.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoucherFile {
    pub format: String,
    pub voucher: String,
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path, what: &str) -> anyhow::Result<T> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read {what} file {}", path.display()))?;
    if meta.len() > MAX_FILE {
        bail!(
            "{what} file {} is {} bytes, over the {MAX_FILE}-byte limit",
            path.display(),
            meta.len()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {what} file {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a sparebox {what} file", path.display()))
}

/// Decodes a hex envelope field, capped at `M`'s envelope size.
pub fn envelope_from_hex<M: Message>(hex_text: &str, path: &Path) -> anyhow::Result<Envelope> {
    let bytes = hex::decode(hex_text.trim())
        .with_context(|| format!("{}: the {} field is not hex", path.display(), M::NAME))?;
    Envelope::from_bytes(&bytes, M::max_envelope())
        .with_context(|| format!("{}: cannot read the {}", path.display(), M::NAME))
}

/// Writes `value` as pretty JSON to `path`, refusing to overwrite unless `force`.
pub fn write_json<T: Serialize>(path: &Path, value: &T, force: bool) -> anyhow::Result<()> {
    if path.exists() && !force {
        bail!(
            "{} already exists; pass --force to overwrite it",
            path.display()
        );
    }
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
