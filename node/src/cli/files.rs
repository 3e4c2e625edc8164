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
pub const AGENT_FORMAT: &str = "sparebox-agent/1";
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

/// What the CLI keeps about an agent it deployed, in
/// `$XDG_DATA_HOME/sparebox/deployer/agents/<agent-id>.json` (mode 0600: it
/// holds the agent's bearer token).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentFile {
    pub format: String,
    pub agent_id: String,
    pub name: String,
    /// The host's PeerId.
    pub host: String,
    /// A multiaddr the host was reached at.
    pub addr: String,
    pub offer_id: String,
    /// Hex of the host-signed agreement envelope.
    pub agreement: String,
    pub api_url: String,
    pub token: String,
    pub created_at: u64,
}

pub fn agents_dir() -> std::path::PathBuf {
    crate::identity::paths::deployer_state().join("agents")
}

/// Saves an agent file with mode 0600.
pub fn save_agent(file: &AgentFile) -> anyhow::Result<std::path::PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = agents_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{}.json", file.agent_id));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let mut text = serde_json::to_string_pretty(file)?;
    text.push('\n');
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Every saved agent, sorted by id.
pub fn list_agents() -> anyhow::Result<Vec<AgentFile>> {
    let dir = agents_dir();
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(out);
    };
    for e in entries.flatten() {
        if e.path().extension().is_some_and(|x| x == "json") {
            out.push(read_json::<AgentFile>(&e.path(), "agent")?);
        }
    }
    out.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
    Ok(out)
}

/// One saved agent, by id.
pub fn load_agent(id: &str) -> anyhow::Result<AgentFile> {
    let path = agents_dir().join(format!("{id}.json"));
    if !path.exists() {
        bail!(
            "no agent `{id}` deployed from this machine (see `sparebox agents list`; files in {})",
            agents_dir().display()
        );
    }
    read_json(&path, "agent")
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
