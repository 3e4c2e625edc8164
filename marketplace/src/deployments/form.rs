//! The deploy wizard's form: what the browser sends, and the agent spec it
//! becomes (or every field's problem, named as the form names it).

use serde::Deserialize;
use sparebox_protocol::identity::PublicKey;
use sparebox_protocol::spec::{AgentSpec, Artifact, FileSource, OpenClawSettings, ResourceSpec};
use sparebox_protocol::{ControlAction, Digest, Id, RuntimeKind};

use super::{DeployError, Deployments};

/// What the browser asks to deploy (`POST /api/v1/deployments/prepare`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeployForm {
    pub host: String,
    pub deployer_key: String,
    pub runtime: String,
    pub name: String,
    pub wasi: Option<WasiForm>,
    pub openclaw: Option<OpenClawForm>,
    pub resources: ResourcesForm,
    pub max_total_cents: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasiForm {
    pub sha256: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OpenClawForm {
    pub model: String,
    pub system_prompt: Option<String>,
    #[serde(default)]
    pub files: Vec<FileForm>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileForm {
    pub path: String,
    pub content: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResourcesForm {
    pub cpu_millis: u32,
    pub memory_mib: u32,
}

/// The host facts an offer is priced from.
#[derive(Debug, Clone)]
pub struct HostTerms {
    pub host: PublicKey,
    pub addr: Option<String>,
    pub cents_per_hour: u64,
    pub cents_per_1k_tokens: u64,
}

/// Spec field names → the web form's field names.
fn form_field(spec_field: &str) -> &'static str {
    match spec_field {
        f if f.starts_with("name") => "name",
        f if f.starts_with("runtime") => "runtime",
        f if f.starts_with("artifact") => "component",
        f if f.starts_with("openclaw.model") => "model",
        f if f.starts_with("openclaw.system_prompt") => "systemPrompt",
        f if f.starts_with("openclaw.files") => "files",
        f if f.starts_with("resources.cpu") => "cpuMillis",
        f if f.starts_with("resources.memory") => "memoryMib",
        f if f.starts_with("grants.llm") => "model",
        _ => "spec",
    }
}

impl Deployments {
    /// Builds and validates the agent spec the form describes.
    pub fn spec_for(&self, f: &DeployForm) -> Result<AgentSpec, DeployError> {
        let runtime = match f.runtime.as_str() {
            "wasi" => RuntimeKind::Wasi,
            "openclaw" => RuntimeKind::Openclaw,
            other => {
                return Err(DeployError::Invalid(vec![(
                    "runtime".into(),
                    format!("`{other}` is not wasi or openclaw"),
                )]));
            }
        };
        let mut spec = AgentSpec {
            spec_version: sparebox_protocol::spec::SPEC_VERSION,
            name: f.name.trim().to_string(),
            runtime,
            description: String::new(),
            artifact: None,
            openclaw: None,
            resources: ResourceSpec {
                cpu_millis: f.resources.cpu_millis,
                memory_mib: f.resources.memory_mib,
                ..ResourceSpec::default()
            },
            grants: Default::default(),
            schedule: None,
            secrets: Default::default(),
        };
        match runtime {
            RuntimeKind::Wasi => {
                let w = f.wasi.as_ref().ok_or_else(|| {
                    DeployError::Invalid(vec![(
                        "component".into(),
                        "upload the agent's component".into(),
                    )])
                })?;
                let digest: Option<Digest> = w.sha256.parse().ok();
                let size = digest
                    .and_then(|d| self.artifacts.get(d.0).ok().flatten())
                    .map(|b| b.len() as u64)
                    .ok_or_else(|| {
                        DeployError::Invalid(vec![(
                            "component".into(),
                            "no uploaded component has this sha256; upload it again".into(),
                        )])
                    })?;
                spec.artifact = Some(Artifact {
                    sha256: Some(w.sha256.trim().to_lowercase()),
                    size: Some(size),
                    path: None,
                });
            }
            RuntimeKind::Openclaw => {
                let o = f.openclaw.as_ref().ok_or_else(|| {
                    DeployError::Invalid(vec![("model".into(), "choose a model".into())])
                })?;
                spec.grants.llm_models = vec![o.model.trim().to_string()];
                spec.openclaw = Some(OpenClawSettings {
                    model: o.model.trim().to_string(),
                    system_prompt: o.system_prompt.clone().filter(|p| !p.trim().is_empty()),
                    files: o
                        .files
                        .iter()
                        .map(|x| {
                            (
                                x.path.trim().to_string(),
                                FileSource {
                                    content: Some(x.content.clone()),
                                    path: None,
                                },
                            )
                        })
                        .collect(),
                });
            }
        }
        spec.validate().map_err(|errs| {
            DeployError::Invalid(
                errs.into_iter()
                    .map(|e| (form_field(&e.field).to_string(), e.problem))
                    .collect(),
            )
        })?;
        Ok(spec)
    }
}

/// Parses the web form's command.
pub fn action(
    name: &str,
    tail: Option<u32>,
    content: Option<String>,
) -> Result<ControlAction, DeployError> {
    Ok(match name {
        "start" => ControlAction::Start,
        "stop" => ControlAction::Stop,
        "restart" => ControlAction::Restart,
        "undeploy" => ControlAction::Undeploy,
        "status" => ControlAction::Status,
        "logs" => ControlAction::Logs {
            tail: tail.unwrap_or(200).clamp(1, 5000),
        },
        "message" => {
            let content = content.unwrap_or_default();
            if content.trim().is_empty() {
                return Err(DeployError::Invalid(vec![(
                    "content".into(),
                    "write a message".into(),
                )]));
            }
            if content.len() > 64 * 1024 {
                return Err(DeployError::Invalid(vec![(
                    "content".into(),
                    "messages are at most 64 KiB".into(),
                )]));
            }
            ControlAction::Message {
                content,
                thread_id: None,
            }
        }
        other => {
            return Err(DeployError::Invalid(vec![(
                "action".into(),
                format!("`{other}` is not start, stop, restart, undeploy, status, logs or message"),
            )]));
        }
    })
}

/// Parses an id the browser sends back (hex).
pub fn parse_id(field: &'static str, v: &str) -> Result<Id, DeployError> {
    v.parse().map_err(|_| DeployError::BadId(field))
}
