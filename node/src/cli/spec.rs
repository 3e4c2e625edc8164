//! `sparebox spec validate`.

use std::path::PathBuf;
use std::process::ExitCode;

use sparebox_protocol::spec::{AgentSpec, SpecError};

#[derive(Debug, clap::Subcommand)]
pub enum SpecCommand {
    /// Check an agent spec file; print every problem with its field.
    Validate {
        /// The spec (TOML, or JSON).
        file: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: SpecCommand) -> anyhow::Result<ExitCode> {
    let SpecCommand::Validate { file, json } = cmd;
    match AgentSpec::load(&file) {
        Ok(spec) => {
            let base = file.parent().unwrap_or_else(|| std::path::Path::new("."));
            let missing = spec
                .artifact
                .as_ref()
                .and_then(|a| a.path.as_ref())
                .map(|p| base.join(p))
                .filter(|p| !p.exists());
            if json {
                let v = serde_json::json!({
                    "valid": true,
                    "name": spec.name,
                    "runtime": spec.runtime,
                    "warnings": missing.iter().map(|p| format!("artifact.path: {} does not exist yet", p.display())).collect::<Vec<_>>(),
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{}: valid {} spec `{}`",
                    file.display(),
                    spec.runtime,
                    spec.name
                );
                if let Some(p) = missing {
                    println!(
                        "warning: artifact.path: {} does not exist yet; build it before `sparebox offer create`",
                        p.display()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if json => {
            let errors = match &e {
                SpecError::Invalid { errors, .. } => errors
                    .iter()
                    .map(|f| serde_json::json!({"field": f.field, "problem": f.problem}))
                    .collect(),
                other => vec![serde_json::json!({"field": null, "problem": other.to_string()})],
            };
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"valid": false, "errors": errors})
                )?
            );
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}
