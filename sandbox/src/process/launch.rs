//! Starting one gateway process: its program, arguments and a cleared
//! environment, in the agent's cgroup, with its output captured into the
//! agent's log.

use std::path::PathBuf;

use tokio::io::{AsyncBufReadExt, BufReader};

use super::cgroup::AgentCgroup;
use super::config::Gateway;
use super::openclaw::{self};
use super::supervisor::{Agent, Shared};
use crate::runtime::RuntimeError;

impl Shared {
    pub(super) fn spawn(
        &self,
        a: &Agent,
        cgroup: Option<&AgentCgroup>,
    ) -> Result<tokio::process::Child, RuntimeError> {
        let profile = openclaw::Profile::at(&a.dir);
        let (program, args, env): (PathBuf, Vec<String>, Vec<(String, String)>) =
            match &self.cfg.gateway {
                Gateway::OpenClaw(install) => (
                    install.node.clone(),
                    openclaw::arguments(install, a.port),
                    openclaw::environment(install, &profile, &a.token, &self.cfg.llm),
                ),
                Gateway::Custom { program, args } => (
                    program.clone(),
                    args.clone(),
                    vec![
                        ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
                        ("HOME".into(), profile.home.display().to_string()),
                        ("TMPDIR".into(), profile.tmp.display().to_string()),
                        ("PORT".into(), a.port.to_string()),
                        ("GATEWAY_TOKEN".into(), a.token.clone()),
                        ("LLM_BASE_URL".into(), self.cfg.llm.base_url.clone()),
                    ],
                ),
            };
        let mut cmd = match cgroup {
            Some(cg) => cg.launcher(&program),
            None => std::process::Command::new(&program),
        };
        cmd.args(&args)
            .env_clear()
            .envs(env)
            .current_dir(&profile.home)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if let Some(cg) = cgroup {
            // env_clear dropped the launcher's variable; put it back.
            let files: Vec<String> = cg
                .procs_files()
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            cmd.env("SPAREBOX_CGROUP_PROCS", files.join(" "));
        }
        let mut child = tokio::process::Command::from(cmd)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| RuntimeError::Io {
                op: "spawn",
                path: program.clone(),
                source,
            })?;
        for (stream, level) in [
            (
                child
                    .stdout
                    .take()
                    .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
                "info",
            ),
            (
                child
                    .stderr
                    .take()
                    .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
                "warn",
            ),
        ] {
            if let Some(s) = stream {
                let log = a.log.clone();
                let id = a.id.clone();
                tokio::spawn(async move {
                    let mut lines = BufReader::new(s).lines();
                    while let Ok(Some(l)) = lines.next_line().await {
                        log.push(&id, level, &l);
                    }
                });
            }
        }
        Ok(child)
    }
}
