//! AgentSpec: what a deployer asks a host to run, written in TOML (or JSON).
//!
//! A spec is checked in two steps:
//! - [`AgentSpec::parse`] reads the document; unknown keys and wrong types are
//!   errors that carry the line and the key (from `toml`).
//! - [`AgentSpec::validate`] checks meaning and returns *every* problem, each
//!   naming the field (`resources.memory_mib`) and what is wrong with it.
//!
//! Before a spec is signed into an offer it is *resolved* ([`AgentSpec::resolve`]):
//! local file references (`artifact.path`, `openclaw.files.*.path`) are read,
//! the artifact's sha256 and size are filled in, and the spec is rendered to
//! its canonical TOML document. The offer carries the sha256 of exactly that
//! document, and the host receives the document itself.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::protocol::{Digest, ResourceRequest, Resources, RuntimeKind, sha256};

/// The spec layout version this build reads.
pub const SPEC_VERSION: u16 = 1;
/// Largest artifact accepted, in bytes.
pub const MAX_ARTIFACT_BYTES: u64 = 256 * 1024 * 1024;
/// Largest total size of inline workspace files and prompts, in bytes.
pub const MAX_INLINE_BYTES: usize = 48 * 1024;

/// An agent spec. Every field is documented with its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// Layout version of this document. Default 1.
    #[serde(default = "default_spec_version")]
    pub spec_version: u16,
    /// Agent name: 1–63 characters of `a-z`, `0-9` and `-`, starting with a letter.
    pub name: String,
    /// `wasi` or `openclaw`.
    pub runtime: RuntimeKind,
    /// Free text shown in listings. Default empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The component to run (required for `wasi`, not allowed for `openclaw`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<Artifact>,
    /// OpenClaw settings (required for `openclaw`, not allowed for `wasi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openclaw: Option<OpenClawSettings>,
    /// Resources to reserve.
    #[serde(default)]
    pub resources: ResourceSpec,
    /// What the agent may use. Everything not granted is denied.
    #[serde(default)]
    pub grants: Grants,
    /// Periodic activation (calls the component's `on-tick`). Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Secrets the host injects: variable name → name of the secret on the host.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
}

fn default_spec_version() -> u16 {
    SPEC_VERSION
}

/// The WASI component. Give `sha256` and `size`, or `path` (then `sparebox`
/// computes them), or all three (then they must agree).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// sha256 of the component, 64 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Size of the component in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Local path of the component, relative to the spec file. Never sent to the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

/// OpenClaw gateway settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenClawSettings {
    /// Model id the gateway uses, served by the node's LLM endpoint.
    pub model: String,
    /// System prompt. Default none (the workspace's SOUL.md speaks for the agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// Workspace files (SOUL.md, AGENTS.md, ...): file name → content or path.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, FileSource>,
}

/// A workspace file: inline `content`, or a local `path` relative to the spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

/// Resources to reserve for the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResourceSpec {
    /// CPU in millicores (1000 = one core). Default 500.
    pub cpu_millis: u32,
    /// Memory in MiB. Default 128 (OpenClaw needs at least 1024).
    pub memory_mib: u32,
    /// Disk for the agent's directories in MiB. Default 256.
    pub disk_mib: u32,
    /// Longest a single task may run, e.g. `30s`, `2m`. Default 30s.
    #[serde(with = "duration_str")]
    pub task_timeout: Duration,
}

impl Default for ResourceSpec {
    fn default() -> Self {
        ResourceSpec {
            cpu_millis: 500,
            memory_mib: 128,
            disk_mib: 256,
            task_timeout: Duration::from_secs(30),
        }
    }
}

/// What the agent may use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Grants {
    /// LLM models the agent may call. Default none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub llm_models: Vec<String>,
    /// Key-value store quota.
    pub kv: KvGrant,
    /// Hosts the agent may reach over HTTP (`api.example.com`,
    /// `*.example.com`, optionally with `:port`). Default none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outbound_hosts: Vec<String>,
    /// Tools the agent may use (OpenClaw: `exec`, `process`, `browser` are
    /// denied unless listed). Default none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
}

/// Key-value quota.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KvGrant {
    /// Total bytes of keys and values. Default 1 MiB.
    pub max_bytes: u64,
    /// Number of keys. Default 1024.
    pub max_keys: u32,
}

impl Default for KvGrant {
    fn default() -> Self {
        KvGrant {
            max_bytes: 1024 * 1024,
            max_keys: 1024,
        }
    }
}

/// Periodic activation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Interval, e.g. `4h`, at least `1m`.
    #[serde(with = "duration_str")]
    pub every: Duration,
}

/// Durations as human strings (`30s`, `4h`, `1h 30m`).
mod duration_str {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!("`{s}` is not a duration like `30s` or `4h`: {e}"))
        })
    }
}

/// One problem with a spec: the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub problem: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

/// Why a spec could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read spec {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("spec {origin} is not valid {format}: {message}")]
    Parse {
        origin: String,
        format: &'static str,
        message: String,
    },
    #[error("spec {origin} has {} problem(s):\n{}", .errors.len(), list(.errors))]
    Invalid {
        origin: String,
        errors: Vec<FieldError>,
    },
    #[error("cannot read {field} file {path}: {source}")]
    ReadReferenced {
        field: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{field}: {problem}")]
    Resolve { field: String, problem: String },
}

fn list(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A spec ready to sign: the canonical document and its digest.
#[derive(Debug, Clone)]
pub struct ResolvedSpec {
    pub spec: AgentSpec,
    /// The canonical TOML document sent to the host.
    pub document: String,
    /// sha256 of `document`.
    pub sha256: Digest,
}

impl AgentSpec {
    /// Parses a TOML document (or JSON, if it starts with `{`) and validates it.
    pub fn parse(text: &str, origin: &str) -> Result<AgentSpec, SpecError> {
        let spec: AgentSpec = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| SpecError::Parse {
                origin: origin.to_string(),
                format: "JSON",
                message: e.to_string(),
            })?
        } else {
            toml::from_str(text).map_err(|e| SpecError::Parse {
                origin: origin.to_string(),
                format: "TOML",
                message: e.to_string().trim_end().to_string(),
            })?
        };
        spec.validate().map_err(|errors| SpecError::Invalid {
            origin: origin.to_string(),
            errors,
        })?;
        Ok(spec)
    }

    /// Reads, parses and validates a spec file.
    pub fn load(path: &Path) -> Result<AgentSpec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Checks the spec's meaning; returns every problem found.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errs = Vec::new();
        let mut bad = |field: &str, problem: String| {
            errs.push(FieldError {
                field: field.to_string(),
                problem,
            })
        };

        if self.spec_version != SPEC_VERSION {
            bad(
                "spec_version",
                format!(
                    "version {} is not supported (this build reads {SPEC_VERSION})",
                    self.spec_version
                ),
            );
        }
        if let Err(p) = check_name(&self.name) {
            bad("name", p);
        }
        if self.description.len() > 1024 {
            bad("description", "longer than 1024 bytes".into());
        }

        match self.runtime {
            RuntimeKind::Wasi => {
                if self.openclaw.is_some() {
                    bad(
                        "openclaw",
                        "only allowed with runtime = \"openclaw\"".into(),
                    );
                }
                match &self.artifact {
                    None => bad(
                        "artifact",
                        "required for runtime = \"wasi\" (give sha256 and size, or path)".into(),
                    ),
                    Some(a) => {
                        if a.sha256.is_none() && a.path.is_none() {
                            bad("artifact", "give sha256 and size, or path".into());
                        }
                        if a.sha256.is_some() != a.size.is_some() && a.path.is_none() {
                            bad(
                                "artifact",
                                "sha256 and size go together (or give path)".into(),
                            );
                        }
                        if let Some(h) = &a.sha256
                            && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
                        {
                            bad("artifact.sha256", format!("`{h}` is not 64 hex digits"));
                        }
                        if let Some(size) = a.size
                            && (size == 0 || size > MAX_ARTIFACT_BYTES)
                        {
                            bad(
                                "artifact.size",
                                format!("{size} is outside 1..={MAX_ARTIFACT_BYTES} bytes"),
                            );
                        }
                    }
                }
            }
            RuntimeKind::Openclaw => {
                if self.artifact.is_some() {
                    bad("artifact", "only allowed with runtime = \"wasi\"".into());
                }
                match &self.openclaw {
                    None => bad(
                        "openclaw",
                        "required for runtime = \"openclaw\" (at least `model`)".into(),
                    ),
                    Some(oc) => {
                        if oc.model.trim().is_empty() {
                            bad("openclaw.model", "must not be empty".into());
                        }
                        let mut inline = oc.system_prompt.as_ref().map_or(0, String::len);
                        for (name, src) in &oc.files {
                            let field = format!("openclaw.files.\"{name}\"");
                            if let Err(p) = check_file_name(name) {
                                bad(&field, p);
                            }
                            match (&src.content, &src.path) {
                                (Some(c), None) => inline += c.len(),
                                (None, Some(_)) => {}
                                _ => bad(&field, "give exactly one of `content` or `path`".into()),
                            }
                        }
                        if inline > MAX_INLINE_BYTES {
                            bad(
                                "openclaw",
                                format!(
                                    "prompt and inline files total {inline} bytes, over {MAX_INLINE_BYTES}"
                                ),
                            );
                        }
                    }
                }
                if self.resources.memory_mib < 1024 {
                    bad(
                        "resources.memory_mib",
                        format!(
                            "{} MiB is too little for OpenClaw; a gateway needs at least 1024 MiB",
                            self.resources.memory_mib
                        ),
                    );
                }
            }
        }

        let r = &self.resources;
        if !(10..=256_000).contains(&r.cpu_millis) {
            bad(
                "resources.cpu_millis",
                format!("{} is outside 10..=256000 millicores", r.cpu_millis),
            );
        }
        if !(1..=1_048_576).contains(&r.memory_mib) {
            bad(
                "resources.memory_mib",
                format!("{} is outside 1..=1048576 MiB", r.memory_mib),
            );
        }
        if r.disk_mib > 16 * 1_048_576 {
            bad(
                "resources.disk_mib",
                format!("{} is over 16 TiB", r.disk_mib),
            );
        }
        if r.task_timeout < Duration::from_millis(100) || r.task_timeout > Duration::from_secs(3600)
        {
            bad(
                "resources.task_timeout",
                format!(
                    "{} is outside 100ms..=1h",
                    humantime::format_duration(r.task_timeout)
                ),
            );
        }

        for (i, m) in self.grants.llm_models.iter().enumerate() {
            if m.trim().is_empty() || m.len() > 128 {
                bad(
                    &format!("grants.llm_models[{i}]"),
                    "must be a model id of 1–128 characters".into(),
                );
            }
        }
        if self.grants.kv.max_bytes > 1 << 30 {
            bad(
                "grants.kv.max_bytes",
                format!("{} is over 1 GiB", self.grants.kv.max_bytes),
            );
        }
        for (i, h) in self.grants.outbound_hosts.iter().enumerate() {
            if let Err(p) = check_host_pattern(h) {
                bad(&format!("grants.outbound_hosts[{i}]"), p);
            }
        }
        for (i, t) in self.grants.tools.iter().enumerate() {
            if t.is_empty()
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                bad(
                    &format!("grants.tools[{i}]"),
                    format!("`{t}` is not a tool name (letters, digits, `_`, `-`)"),
                );
            }
        }
        if let Some(s) = &self.schedule
            && s.every < Duration::from_secs(60)
        {
            bad(
                "schedule.every",
                format!("{} is shorter than 1m", humantime::format_duration(s.every)),
            );
        }
        for (var, secret) in &self.secrets {
            let ok = var
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_uppercase() || b == b'_')
                && var
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            if !ok {
                bad(
                    &format!("secrets.{var}"),
                    "variable names are UPPER_SNAKE_CASE".into(),
                );
            }
            if secret.trim().is_empty() {
                bad(
                    &format!("secrets.{var}"),
                    "must name a secret on the host".into(),
                );
            }
        }

        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }

    /// The resource request an offer for this spec carries.
    pub fn resource_request(&self) -> ResourceRequest {
        ResourceRequest {
            resources: Resources {
                cpu_millis: self.resources.cpu_millis,
                memory_mib: self.resources.memory_mib,
                disk_mib: self.resources.disk_mib,
            },
            task_timeout_ms: u32::try_from(self.resources.task_timeout.as_millis())
                .unwrap_or(u32::MAX),
        }
    }

    /// Reads local references relative to `base_dir`, fills in the artifact's
    /// digest and size, and renders the canonical document.
    /// Returns the resolved spec and, for `wasi`, the artifact's path.
    pub fn resolve(&self, base_dir: &Path) -> Result<(ResolvedSpec, Option<PathBuf>), SpecError> {
        let mut spec = self.clone();
        let mut artifact_path = None;
        if let Some(a) = spec.artifact.as_mut() {
            if let Some(rel) = a.path.take() {
                let path = base_dir.join(&rel);
                let bytes = std::fs::read(&path).map_err(|source| SpecError::ReadReferenced {
                    field: "artifact.path".into(),
                    path: path.clone(),
                    source,
                })?;
                let digest = sha256(&bytes).to_hex();
                let size = bytes.len() as u64;
                if let Some(given) = &a.sha256
                    && !given.eq_ignore_ascii_case(&digest)
                {
                    return Err(SpecError::Resolve {
                        field: "artifact.sha256".into(),
                        problem: format!(
                            "{given} does not match {} (sha256 {digest})",
                            path.display()
                        ),
                    });
                }
                if let Some(given) = a.size
                    && given != size
                {
                    return Err(SpecError::Resolve {
                        field: "artifact.size".into(),
                        problem: format!(
                            "{given} does not match {} ({size} bytes)",
                            path.display()
                        ),
                    });
                }
                if size == 0 || size > MAX_ARTIFACT_BYTES {
                    return Err(SpecError::Resolve {
                        field: "artifact.path".into(),
                        problem: format!(
                            "{} is {size} bytes, outside 1..={MAX_ARTIFACT_BYTES}",
                            path.display()
                        ),
                    });
                }
                a.sha256 = Some(digest);
                a.size = Some(size);
                artifact_path = Some(path);
            } else if let Some(h) = a.sha256.as_mut() {
                *h = h.to_ascii_lowercase();
            }
        }
        if let Some(oc) = spec.openclaw.as_mut() {
            for (name, src) in oc.files.iter_mut() {
                if let Some(rel) = src.path.take() {
                    let path = base_dir.join(&rel);
                    let text = std::fs::read_to_string(&path).map_err(|source| {
                        SpecError::ReadReferenced {
                            field: format!("openclaw.files.\"{name}\".path"),
                            path,
                            source,
                        }
                    })?;
                    src.content = Some(text);
                }
            }
        }
        spec.validate().map_err(|errors| SpecError::Invalid {
            origin: "(resolved)".into(),
            errors,
        })?;
        let document = toml::to_string(&spec).map_err(|e| SpecError::Resolve {
            field: "(document)".into(),
            problem: e.to_string(),
        })?;
        let sha256 = sha256(document.as_bytes());
        Ok((
            ResolvedSpec {
                spec,
                document,
                sha256,
            },
            artifact_path,
        ))
    }
}

impl ResolvedSpec {
    /// Parses a document received with an offer, checking it against the
    /// offer's digest first. The document must be fully resolved.
    pub fn from_document(document: &str, expected: &Digest) -> Result<ResolvedSpec, SpecError> {
        let actual = sha256(document.as_bytes());
        if &actual != expected {
            return Err(SpecError::Resolve {
                field: "spec".into(),
                problem: format!(
                    "sha256 {actual} does not match the offer's spec_sha256 {expected}"
                ),
            });
        }
        let spec = AgentSpec::parse(document, "(offer)")?;
        if spec
            .artifact
            .as_ref()
            .is_some_and(|a| a.path.is_some() || a.sha256.is_none())
            || spec
                .openclaw
                .as_ref()
                .is_some_and(|o| o.files.values().any(|f| f.path.is_some()))
        {
            return Err(SpecError::Resolve {
                field: "spec".into(),
                problem: "document still refers to local files; resolve it before signing".into(),
            });
        }
        Ok(ResolvedSpec {
            spec,
            document: document.to_string(),
            sha256: actual,
        })
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = (1..=63).contains(&name.len())
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` must be 1–63 characters of a-z, 0-9 and `-`, start with a letter and not end with `-`"
        ))
    }
}

fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 128
        || name.contains('/')
        || name.contains('\\')
        || name == "."
        || name == ".."
        || name.contains('\0')
    {
        Err("must be a plain file name (no directories)".into())
    } else {
        Ok(())
    }
}

fn check_host_pattern(h: &str) -> Result<(), String> {
    if h.contains("://") || h.contains('/') {
        return Err(format!(
            "`{h}` must be a host name, not a URL (drop the scheme and path)"
        ));
    }
    let (host, port) = match h.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (h, None),
    };
    if let Some(p) = port
        && p.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err(format!("`{h}` has an invalid port"));
    }
    let host = host.strip_prefix("*.").unwrap_or(host);
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(format!(
            "`{h}` is not a host name like `api.example.com` or `*.example.com`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const WASI: &str = r#"
name = "echo"
runtime = "wasi"
[artifact]
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
size = 10
"#;

    #[test]
    fn accepts_minimal_wasi_spec_with_defaults() {
        let s = AgentSpec::parse(WASI, "t").unwrap();
        assert_eq!(s.resources, ResourceSpec::default());
        assert_eq!(s.resource_request().task_timeout_ms, 30_000);
    }

    #[test]
    fn errors_name_the_field_and_problem() {
        let text = r#"
name = "Bad Name"
runtime = "openclaw"
[openclaw]
model = ""
[resources]
memory_mib = 512
task_timeout = "2h"
[grants]
outbound_hosts = ["https://example.com/x"]
"#;
        let err = AgentSpec::parse(text, "t").unwrap_err();
        let SpecError::Invalid { errors, .. } = &err else {
            panic!("{err}")
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "name",
                "openclaw.model",
                "resources.memory_mib",
                "resources.task_timeout",
                "grants.outbound_hosts[0]"
            ]
        );
        assert!(err.to_string().contains("at least 1024 MiB"), "{err}");
    }

    #[test]
    fn unknown_key_is_an_error_with_its_name() {
        let err =
            AgentSpec::parse(&format!("{WASI}\n[resources]\nmemroy_mib = 3\n"), "t").unwrap_err();
        assert!(err.to_string().contains("memroy_mib"), "{err}");
    }

    #[test]
    fn bad_duration_is_explained() {
        let err =
            AgentSpec::parse(&format!("{WASI}\n[schedule]\nevery = \"often\"\n"), "t").unwrap_err();
        assert!(err.to_string().contains("not a duration"), "{err}");
    }

    #[test]
    fn runtime_sections_must_match() {
        let text = "name = \"a\"\nruntime = \"wasi\"\n[openclaw]\nmodel = \"m\"\n";
        let SpecError::Invalid { errors, .. } = AgentSpec::parse(text, "t").unwrap_err() else {
            panic!()
        };
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    #[test]
    fn resolve_hashes_artifact_and_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.wasm"), b"\0asm\x0d\0\x01\0").unwrap();
        let text = "name = \"a\"\nruntime = \"wasi\"\n[artifact]\npath = \"a.wasm\"\n";
        let spec = AgentSpec::parse(text, "t").unwrap();
        let (r1, path) = spec.resolve(dir.path()).unwrap();
        let (r2, _) = spec.resolve(dir.path()).unwrap();
        assert_eq!(r1.sha256, r2.sha256);
        assert_eq!(path.unwrap(), dir.path().join("a.wasm"));
        let a = r1.spec.artifact.as_ref().unwrap();
        assert_eq!(a.size, Some(8));
        assert!(a.path.is_none());
        let back = ResolvedSpec::from_document(&r1.document, &r1.sha256).unwrap();
        assert_eq!(back.spec, r1.spec);
        let mut tampered = r1.document.clone();
        tampered.push('\n');
        assert!(ResolvedSpec::from_document(&tampered, &r1.sha256).is_err());
    }

    #[test]
    fn resolve_rejects_mismatched_digest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.wasm"), b"abc").unwrap();
        let text = format!(
            "name = \"a\"\nruntime = \"wasi\"\n[artifact]\npath = \"a.wasm\"\nsha256 = \"{}\"\n",
            "1".repeat(64)
        );
        let err = AgentSpec::parse(&text, "t")
            .unwrap()
            .resolve(dir.path())
            .unwrap_err();
        assert!(err.to_string().starts_with("artifact.sha256"), "{err}");
    }

    #[test]
    fn host_patterns() {
        assert!(check_host_pattern("api.example.com").is_ok());
        assert!(check_host_pattern("*.example.com:8443").is_ok());
        assert!(check_host_pattern("http://x").is_err());
        assert!(check_host_pattern("a..b").is_err());
        assert!(check_host_pattern("x:0").is_err());
    }
}
