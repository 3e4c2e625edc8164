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

mod resolve;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Digest, ResourceRequest, Resources, RuntimeKind};

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
}

#[cfg(test)]
mod tests {
    use super::validate::check_host_pattern;
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
        // Addresses in any spelling, and non-canonical names, are refused
        // with a reason; only names are granted.
        for (h, says) in [
            ("127.1:7878", "IP address (127.0.0.1)"),
            ("127.0.0.1", "IP address (127.0.0.1)"),
            ("2130706433", "IP address (127.0.0.1)"),
            ("0x7f.1", "IP address (127.0.0.1)"),
            ("0177.0.0.1", "IP address (127.0.0.1)"),
            ("10.1", "IP address (10.0.0.1)"),
            ("2852039166:80", "IP address (169.254.169.254)"),
            ("*.10.1", "IP address"),
            ("API.example.com", "lower case: `api.example.com`"),
            ("example.123", "not a host name"),
            ("%6c%6f%63%61%6c%68%6f%73%74", "not a host name"),
            ("a.b\\c", "not a host name"),
        ] {
            let e = check_host_pattern(h).expect_err(h);
            assert!(e.contains(says), "{h}: {e}");
        }
    }
}
