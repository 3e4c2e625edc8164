//! Reading and writing the signed files of [`sparebox_protocol::files`] on
//! the deployer's machine.

use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use sparebox_protocol::files::{self, AgentFile, MAX_FILE};
use sparebox_protocol::{Envelope, Message};

pub fn agents_dir() -> std::path::PathBuf {
    sparebox_protocol::identity::paths::deployer_state().join("agents")
}

/// Saves an agent file with mode 0600.
pub fn save_agent(file: &AgentFile) -> anyhow::Result<std::path::PathBuf> {
    // A second wall: whatever checked the id before, no path leaves the dir.
    if !files::plain_agent_id(&file.agent_id) {
        bail!(
            "agent id {:?} is not a plain name [bad_agent_id]",
            file.agent_id
        );
    }
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
    if !files::plain_agent_id(id) {
        bail!("agent id {id:?} is not a plain name (see `sparebox agents list`)");
    }
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
    files::envelope_from_hex::<M>(hex_text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
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
