//! `sparebox agents`: list and control agents deployed from this machine,
//! with commands signed by the deployer key and sent over
//! `/sparebox/control/1`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::files;
use sparebox_network::addr::with_peer_id;
use sparebox_network::light::{self as net, Light};
use sparebox_protocol::build::{self, CommandTarget};
use sparebox_protocol::identity::{Keypair, PublicKey, paths};
use sparebox_protocol::rpc::{ControlRequest, ControlResponse};
use sparebox_protocol::{ControlAction, Envelope, Id, now_secs};

#[derive(Debug, clap::Subcommand)]
pub enum AgentsCommand {
    /// List agents deployed from this machine.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show an agent's state and usage.
    Status(Target),
    /// Start a stopped agent.
    Start(Target),
    /// Stop an agent (it keeps its data and can be started again).
    Stop(Target),
    /// Stop and start an agent.
    Restart(Target),
    /// Remove an agent and its data from the host.
    Undeploy(Target),
    /// Replace an agent's spec: grants, schedule and settings (same runtime,
    /// component and resources). Its KV data, files and logs are kept.
    Update {
        #[command(flatten)]
        target: Target,
        /// The new agent spec (TOML).
        #[arg(long, value_name = "FILE")]
        spec: PathBuf,
    },
    /// Show an agent's last log lines.
    Logs {
        #[command(flatten)]
        target: Target,
        /// How many lines.
        #[arg(long, default_value_t = 100)]
        tail: u32,
    },
    /// Send a message to an agent and print its answer.
    Send {
        #[command(flatten)]
        target: Target,
        /// The message.
        #[arg(required = true)]
        message: Vec<String>,
        /// Conversation thread id.
        #[arg(long)]
        thread: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
pub struct Target {
    /// The agent id (see `sparebox agents list`).
    id: String,
    /// Deployer key [default: $XDG_DATA_HOME/sparebox/keys/deployer.key].
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// The host's current address, if it moved since the deploy (the
    /// saved address is updated when the command succeeds).
    #[arg(long, value_name = "MULTIADDR")]
    addr: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: AgentsCommand) -> anyhow::Result<ExitCode> {
    let (target, action) = match cmd {
        AgentsCommand::List { json } => return list(json),
        AgentsCommand::Status(t) => (t, ControlAction::Status),
        AgentsCommand::Start(t) => (t, ControlAction::Start),
        AgentsCommand::Stop(t) => (t, ControlAction::Stop),
        AgentsCommand::Restart(t) => (t, ControlAction::Restart),
        AgentsCommand::Undeploy(t) => (t, ControlAction::Undeploy),
        AgentsCommand::Logs { target, tail } => (target, ControlAction::Logs { tail }),
        AgentsCommand::Update { target, spec } => {
            let parsed = sparebox_protocol::spec::AgentSpec::load(&spec)?;
            let base = spec.parent().unwrap_or_else(|| std::path::Path::new("."));
            let (resolved, _) = parsed.resolve(base)?;
            (
                target,
                ControlAction::UpdateConfig {
                    spec: resolved.document,
                    spec_sha256: resolved.sha256,
                },
            )
        }
        AgentsCommand::Send {
            target,
            message,
            thread,
        } => (
            target,
            ControlAction::Message {
                content: message.join(" "),
                thread_id: thread,
            },
        ),
    };
    control(target, action)
}

fn list(json: bool) -> anyhow::Result<ExitCode> {
    let agents = files::list_agents()?;
    if json {
        let v: Vec<_> = agents
            .iter()
            .map(|a| {
                serde_json::json!({
                    "agentId": a.agent_id, "name": a.name, "host": a.host,
                    "addr": a.addr, "apiUrl": a.api_url, "offerId": a.offer_id,
                    "createdAt": a.created_at,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if agents.is_empty() {
        eprintln!(
            "no agents deployed from this machine yet (deploy one with `sparebox deploy SPEC --host PEERID`)"
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<28} {:<54} API", "AGENT", "HOST");
    for a in agents {
        println!("{:<28} {:<54} {}", a.agent_id, a.host, a.api_url);
    }
    Ok(ExitCode::SUCCESS)
}

fn control(target: Target, action: ControlAction) -> anyhow::Result<ExitCode> {
    let mut file = files::load_agent(&target.id)?;
    let moved = target.addr.is_some();
    let host: PublicKey = file
        .host
        .parse()
        .with_context(|| format!("agent file for {} has a bad host", file.agent_id))?;
    if let Some(a) = &target.addr {
        file.addr = with_peer_id(a, &host);
    }
    let key = Keypair::load(&target.key.clone().unwrap_or_else(paths::deployer_key))?;
    let mut offer_id = [0u8; 16];
    hex::decode_to_slice(&file.offer_id, &mut offer_id)
        .with_context(|| format!("agent file for {} has a bad offer id", file.agent_id))?;
    let name = action.name();
    let is_undeploy = matches!(action, ControlAction::Undeploy);
    let addressee = CommandTarget {
        deployer: key.public(),
        host,
        offer_id: Id(offer_id),
        agent_id: file.agent_id.clone(),
    };
    let cmd = build::control_command(addressee, action, 300, now_secs())?;
    let env = Envelope::seal(&cmd, &key)?;
    let rt = tokio::runtime::Runtime::new()?;
    let reply = rt.block_on(async {
        let client = net::start(Arc::new(Light::default()), vec![file.addr.clone()], false).await?;
        let r = tokio::time::timeout(
            Duration::from_secs(150),
            client.control(
                host,
                Some(file.addr.clone()),
                ControlRequest {
                    command: env.to_bytes(),
                },
            ),
        )
        .await
        .map_err(|_| anyhow::anyhow!("the host did not answer within 150 s"))?;
        client.shutdown().await;
        r.map_err(|e| anyhow::anyhow!("{e} [{}]", e.code()))
    })?;
    match reply {
        ControlResponse::Rejected(r) => {
            eprintln!("error: {name} refused: {} [{}]", r.message, r.code);
            if target.json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "code": r.code, "message": r.message})
                );
            }
            return Ok(ExitCode::FAILURE);
        }
        ControlResponse::Agent(view) => {
            if moved && !is_undeploy {
                files::save_agent(&file)?;
            }
            if is_undeploy {
                let _ = std::fs::remove_file(
                    files::agents_dir().join(format!("{}.json", file.agent_id)),
                );
            }
            if target.json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                println!("{}: {}", view.agent_id, view.state);
                if let Some(r) = &view.reason {
                    println!("  reason: {r}");
                }
                let u = &view.usage;
                println!(
                    "  usage:  {} tasks, {} tokens, {} s running, {} ms CPU, {} MiB·s",
                    u.tasks, u.tokens, u.wall_secs, u.cpu_ms, u.memory_mib_secs
                );
                if let (Some(cpu), Some(rss)) = (view.cpu_percent, view.rss_bytes) {
                    println!("  now:    {cpu:.1}% CPU, {} MiB RSS", rss >> 20);
                }
            }
        }
        ControlResponse::Logs { lines } => {
            if target.json {
                println!("{}", serde_json::to_string_pretty(&lines)?);
            } else {
                for l in lines {
                    println!("{l}");
                }
            }
        }
        ControlResponse::Reply(task) => {
            if target.json {
                println!("{}", serde_json::to_string_pretty(&task)?);
            } else if task.status == "completed" {
                println!("{}", task.result.unwrap_or_default());
            } else {
                eprintln!(
                    "error: the task failed: {} [{}]",
                    task.result.unwrap_or_default(),
                    task.error.unwrap_or_default()
                );
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
