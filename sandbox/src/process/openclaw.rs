//! OpenClaw: the install (Node 24 + a pinned OpenClaw from the npm
//! registry, in a directory of the node's own), each agent's profile, and
//! the gateway command line.
//!
//! Facts this relies on (OpenClaw 2026.9.6):
//! - `openclaw gateway run --port P --bind loopback` runs the gateway in
//!   the foreground; with `OPENCLAW_NO_RESPAWN=1` the pid we start is the
//!   gateway;
//! - config and state live under `$HOME/.openclaw` (`OPENCLAW_HOME` wins);
//!   the token comes from `OPENCLAW_GATEWAY_TOKEN`, which keeps it out of `ps`;
//! - `/readyz` answers 200 when ready; `POST /v1/chat/completions` with
//!   `model: "openclaw"` and the bearer token runs one agent turn, and the
//!   reply carries `usage`;
//! - the config schema is strict: an unknown key makes the gateway exit 78.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::runtime::{OpenClawSettings, RuntimeError};

/// The OpenClaw version `sparebox openclaw install` installs by default.
pub const PINNED_VERSION: &str = "2026.9.6";
/// The Node major version OpenClaw needs (24.16 or newer).
pub const NODE_PACKAGE: &str = "node@24";
/// Tools denied unless the spec grants them.
pub const DENIED_TOOLS: [&str; 3] = ["exec", "process", "browser"];

/// A checked OpenClaw install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install {
    pub dir: PathBuf,
    /// The Node 24 binary.
    pub node: PathBuf,
    /// `openclaw.mjs`, run with `node`.
    pub entry: PathBuf,
    /// As `openclaw --version` reports it, e.g. `2026.9.6`.
    pub version: String,
}

/// Why an OpenClaw install could not be found, checked or made.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("no OpenClaw install in {} (run `sparebox openclaw install`)", .0.display())]
    Missing(PathBuf),
    #[error("cannot run {}: {source}", .program.display())]
    Run {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("`openclaw --version` in {} failed: {output}", .dir.display())]
    Version { dir: PathBuf, output: String },
    #[error("cannot create {}: {source}", .dir.display())]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot run npm (is Node.js's npm installed?): {0}")]
    NoNpm(#[source] std::io::Error),
    #[error("npm install {args} failed: {tail}")]
    Npm { args: String, tail: String },
    #[error("installed OpenClaw reports {found}, not {wanted}")]
    WrongVersion { found: String, wanted: String },
}

fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    (
        dir.join("node_modules/.bin/node"),
        dir.join("node_modules/openclaw/openclaw.mjs"),
    )
}

impl Install {
    /// Checks the install in `dir` by running `openclaw --version` with its
    /// own Node.
    pub fn locate(dir: &Path) -> Result<Install, InstallError> {
        let (node, entry) = paths(dir);
        if !node.exists() || !entry.exists() {
            return Err(InstallError::Missing(dir.to_path_buf()));
        }
        let out = Command::new(&node)
            .arg(&entry)
            .arg("--version")
            .env("PATH", path_with(&node))
            .env("OPENCLAW_NO_AUTO_UPDATE", "1")
            .output()
            .map_err(|source| InstallError::Run {
                program: node.clone(),
                source,
            })?;
        let text = String::from_utf8_lossy(&out.stdout);
        let version = text
            .split_whitespace()
            .skip_while(|w| *w != "OpenClaw")
            .nth(1)
            .map(str::to_string);
        match (out.status.success(), version) {
            (true, Some(version)) => Ok(Install {
                dir: dir.to_path_buf(),
                node,
                entry,
                version,
            }),
            _ => Err(InstallError::Version {
                dir: dir.to_path_buf(),
                output: format!(
                    "{}{}",
                    text.trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            }),
        }
    }
}

/// `PATH` with the install's Node first.
pub fn path_with(node: &Path) -> String {
    let bin = node
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    format!("{bin}:/usr/local/bin:/usr/bin:/bin")
}

/// Installs Node 24 and `openclaw@version` into `dir` with npm (which must
/// be on PATH), reporting each line npm prints to `progress`, and checks
/// the result. Does nothing if `dir` already holds that version.
pub fn install(
    dir: &Path,
    version: &str,
    mut progress: impl FnMut(&str),
) -> Result<Install, InstallError> {
    if let Ok(i) = Install::locate(dir)
        && i.version == version
    {
        progress(&format!(
            "OpenClaw {version} is already installed in {}",
            dir.display()
        ));
        return Ok(i);
    }
    std::fs::create_dir_all(dir).map_err(|source| InstallError::CreateDir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let npm = |args: &[&str], path: Option<String>, progress: &mut dyn FnMut(&str)| {
        use std::io::{BufRead, BufReader};
        let mut cmd = Command::new("npm");
        cmd.args(["install", "--prefix"])
            .arg(dir)
            .args(["--no-audit", "--no-fund", "--loglevel=http"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if let Some(p) = path {
            cmd.env("PATH", p);
        }
        let mut child = cmd.spawn().map_err(InstallError::NoNpm)?;
        let stderr = child.stderr.take();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            if let Some(s) = stderr {
                for l in BufReader::new(s).lines().map_while(Result::ok) {
                    lines.push(l);
                }
            }
            lines
        });
        if let Some(out) = child.stdout.take() {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                progress(&l);
            }
        }
        let status = child.wait().map_err(InstallError::NoNpm)?;
        let errs = reader.join().unwrap_or_default();
        for l in errs.iter().filter(|l| l.contains("http fetch")).take(200) {
            progress(l);
        }
        if !status.success() {
            return Err(InstallError::Npm {
                args: args.join(" "),
                tail: errs
                    .iter()
                    .rev()
                    .take(10)
                    .rev()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n"),
            });
        }
        Ok(())
    };
    progress(&format!("installing {NODE_PACKAGE} into {}", dir.display()));
    npm(&[NODE_PACKAGE], None, &mut progress)?;
    let (node, _) = paths(dir);
    progress(&format!("installing openclaw@{version} with Node 24"));
    let path = format!(
        "{}:{}",
        path_with(&node),
        std::env::var("PATH").unwrap_or_default()
    );
    npm(&[&format!("openclaw@{version}")], Some(path), &mut progress)?;
    let i = Install::locate(dir)?;
    if i.version != version {
        return Err(InstallError::WrongVersion {
            found: i.version,
            wanted: version.to_string(),
        });
    }
    Ok(i)
}

/// The LLM endpoint gateways use: any OpenAI-compatible server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmEndpoint {
    /// e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// Passed to the gateway in its environment, never written to disk.
    pub api_key: Option<String>,
}

/// One agent's OpenClaw profile on disk.
#[derive(Debug, Clone)]
pub struct Profile {
    pub dir: PathBuf,
    pub home: PathBuf,
    pub tmp: PathBuf,
    pub config: PathBuf,
    pub workspace: PathBuf,
    pub log_file: PathBuf,
}

impl Profile {
    pub fn at(dir: &Path) -> Profile {
        let home = dir.join("home");
        Profile {
            dir: dir.to_path_buf(),
            tmp: dir.join("tmp"),
            config: home.join(".openclaw/openclaw.json"),
            workspace: home.join(".openclaw/workspace"),
            log_file: dir.join("logs/openclaw.log"),
            home,
        }
    }
}

/// Writes the profile: directories, `openclaw.json`, workspace files.
pub fn write_profile(
    dir: &Path,
    port: u16,
    settings: &OpenClawSettings,
    llm: &LlmEndpoint,
) -> Result<Profile, RuntimeError> {
    let p = Profile::at(dir);
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| RuntimeError::Io { op, path, source }
    };
    for d in [
        &p.tmp,
        &p.workspace,
        p.log_file.parent().unwrap_or(dir),
        p.config.parent().unwrap_or(dir),
    ] {
        std::fs::create_dir_all(d).map_err(io("create", d))?;
    }
    let deny: Vec<&str> = DENIED_TOOLS
        .iter()
        .copied()
        .filter(|t| !settings.tools.iter().any(|g| g == t))
        .collect();
    let config = json!({
        "gateway": {
            "mode": "local",
            "port": port,
            "bind": "loopback",
            "auth": { "mode": "token" },
            "http": { "endpoints": { "chatCompletions": { "enabled": true } } },
            "controlUi": { "enabled": false },
            "reload": { "mode": "off" }
        },
        "update": { "checkOnStart": false },
        "discovery": { "mdns": { "mode": "off" } },
        "logging": { "file": p.log_file },
        "cron": { "enabled": false },
        "skills": { "workshop": { "autonomous": { "mode": "off" } } },
        "models": {
            "mode": "merge",
            "catalogRefresh": { "enabled": false },
            "providers": {
                "sparebox": {
                    "baseUrl": llm.base_url,
                    "apiKey": "${SPAREBOX_LLM_KEY}",
                    "api": "openai-completions",
                    "models": [{
                        "id": settings.model,
                        "name": settings.model,
                        "reasoning": false,
                        "input": ["text"],
                        "cost": { "input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0 },
                        "contextWindow": 128000,
                        "maxTokens": 4096
                    }]
                }
            }
        },
        "agents": { "defaults": {
            "workspace": p.workspace,
            "model": { "primary": format!("sparebox/{}", settings.model) },
            "heartbeat": { "every": "0m" },
            "skipBootstrap": true
        } },
        "tools": { "deny": deny }
    });
    let text = serde_json::to_string_pretty(&config).unwrap_or_default();
    std::fs::write(&p.config, text).map_err(io("write", &p.config))?;
    let mut files = settings.files.clone();
    if let Some(prompt) = &settings.system_prompt {
        files
            .entry("SOUL.md".into())
            .or_insert_with(|| prompt.clone());
    }
    for (name, content) in &files {
        if name.contains('/') || name.starts_with('.') {
            return Err(RuntimeError::BadFileName(name.clone()));
        }
        let path = p.workspace.join(name);
        std::fs::write(&path, content).map_err(io("write", &path))?;
    }
    Ok(p)
}

/// Environment for a gateway: nothing inherited but what it needs.
pub fn environment(
    install: &Install,
    profile: &Profile,
    token: &str,
    llm: &LlmEndpoint,
) -> Vec<(String, String)> {
    vec![
        ("PATH".into(), path_with(&install.node)),
        ("HOME".into(), profile.home.display().to_string()),
        ("OPENCLAW_HOME".into(), profile.home.display().to_string()),
        ("TMPDIR".into(), profile.tmp.display().to_string()),
        ("OPENCLAW_NO_RESPAWN".into(), "1".into()),
        ("OPENCLAW_DISABLE_BONJOUR".into(), "1".into()),
        ("OPENCLAW_SKIP_CHANNELS".into(), "1".into()),
        ("OPENCLAW_NO_AUTO_UPDATE".into(), "1".into()),
        ("OPENCLAW_SKIP_CRON".into(), "1".into()),
        ("OPENCLAW_GATEWAY_TOKEN".into(), token.into()),
        (
            "SPAREBOX_LLM_KEY".into(),
            llm.api_key.clone().unwrap_or_else(|| "none".into()),
        ),
    ]
}

/// Arguments after the Node binary.
pub fn arguments(install: &Install, port: u16) -> Vec<String> {
    vec![
        install.entry.display().to_string(),
        "gateway".into(),
        "run".into(),
        "--port".into(),
        port.to_string(),
        "--bind".into(),
        "loopback".into(),
    ]
}

/// How long a gateway is given to drain on SIGTERM before SIGKILL.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);
