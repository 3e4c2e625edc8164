//! Tasks: messages for an agent become tasks that move `queued →
//! processing → completed | failed`, kept in the `tasks` tree for
//! [`TASK_RETENTION_SECS`].

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sparebox_sandbox::Task;

use crate::metrics::StateLabels;
use crate::store::StoreError;
use sparebox_protocol::rpc::TaskView;
use sparebox_protocol::{RuntimeKind, UsageCounters, now_secs, sha256};

use super::{AgentError, AgentRecord, Agents, State, db};
use sparebox_protocol::token::random_hex;

/// Largest task result the node stores, in bytes (1 MiB).
pub const MAX_RESULT_BYTES: usize = 1 << 20;

/// A message for an agent, as the agent API takes it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewMessage {
    pub content: String,
    pub thread_id: Option<String>,
    pub author: Option<String>,
    #[serde(default)]
    pub context: Vec<ContextMessage>,
    #[serde(default)]
    pub mentions: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextMessage {
    pub author: String,
    pub content: String,
}

/// A stored task, with its creation time for retention.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct TaskRecord {
    pub(super) view: TaskView,
    pub(super) created_at: u64,
}

impl Agents {
    /// Checks the agent API bearer token.
    pub fn authorize(
        &self,
        agent_id: &str,
        token: Option<&str>,
    ) -> Result<AgentRecord, AgentError> {
        let rec = self
            .record(agent_id)
            .ok_or_else(|| AgentError::UnknownAgent(agent_id.to_string()))?;
        match token {
            Some(t) if sha256(t.as_bytes()) == rec.token_sha256 => Ok(rec),
            _ => Err(AgentError::Unauthorized(agent_id.to_string())),
        }
    }

    /// Queues a message for an agent and returns the task at once.
    pub fn submit(
        self: &Arc<Self>,
        agent_id: &str,
        msg: NewMessage,
    ) -> Result<TaskView, AgentError> {
        let (view, task) = self.new_task(agent_id, msg)?;
        let this = self.clone();
        let id = agent_id.to_string();
        let task_id = view.task_id.clone();
        tokio::spawn(async move {
            this.execute(&id, task_id, task).await;
        });
        Ok(view)
    }

    /// Runs a message to completion (control `message`).
    pub async fn run_message(
        self: Arc<Self>,
        agent_id: &str,
        msg: NewMessage,
    ) -> Result<TaskView, AgentError> {
        let (view, task) = self.new_task(agent_id, msg)?;
        Ok(self.execute(agent_id, view.task_id, task).await)
    }

    pub(super) fn new_task(
        &self,
        agent_id: &str,
        msg: NewMessage,
    ) -> Result<(TaskView, Task), AgentError> {
        let rec = self
            .record(agent_id)
            .ok_or_else(|| AgentError::UnknownAgent(agent_id.to_string()))?;
        if rec.state != State::Running {
            return Err(AgentError::NotRunning(agent_id.to_string()));
        }
        if msg.content.len() > 256 * 1024 {
            return Err(AgentError::BadRequest("content is over 256 KiB".into()));
        }
        let task_id = format!("t-{}", random_hex(12, "task id")?);
        let view = TaskView {
            task_id: task_id.clone(),
            agent_id: agent_id.to_string(),
            status: "queued".into(),
            result: None,
            error: None,
            duration_ms: None,
            tokens_used: 0,
        };
        self.put_task(&view)?;
        let task = Task {
            id: task_id,
            thread_id: msg.thread_id,
            content: msg.content,
            author: msg.author,
            context: msg
                .context
                .into_iter()
                .map(|c| (c.author, c.content))
                .collect(),
            mentions: msg.mentions,
        };
        Ok((view, task))
    }

    pub(super) async fn execute(&self, agent_id: &str, task_id: String, task: Task) -> TaskView {
        let mut view = TaskView {
            task_id: task_id.clone(),
            agent_id: agent_id.to_string(),
            status: "processing".into(),
            result: None,
            error: None,
            duration_ms: None,
            tokens_used: 0,
        };
        let _ = self.put_task(&view);
        let started = Instant::now();
        let runtime = self
            .record(agent_id)
            .map_or(RuntimeKind::Wasi, |r| r.runtime);
        // A failure is its stable code and its message.
        let outcome = match self.runtime(runtime) {
            Ok(rt) => rt
                .execute(agent_id, task)
                .await
                .map_err(|e| (e.code().to_string(), e.to_string())),
            // The code and wording a missing runtime has always had.
            Err(r) => Err((
                "setup".to_string(),
                format!("the runtime could not be set up: {}", r.message),
            )),
        };
        let elapsed = started.elapsed();
        self.metrics.task_seconds.observe(elapsed.as_secs_f64());
        let ms = elapsed.as_millis() as u64;
        view.duration_ms = Some(ms);
        match outcome {
            // A reply is kept in the node's store: past the cap the task
            // fails with a reason instead of filling the disk the node's
            // store shares with every tenant.
            Ok(o) if o.reply.len() > MAX_RESULT_BYTES => {
                view.status = "failed".into();
                view.error = Some("result_too_large".into());
                view.result = Some(format!(
                    "the agent's reply was {} bytes; the limit is {MAX_RESULT_BYTES}",
                    o.reply.len()
                ));
                view.tokens_used = o.tokens_used;
            }
            Ok(o) => {
                view.status = "completed".into();
                view.result = Some(o.reply);
                view.tokens_used = o.tokens_used;
            }
            Err((code, message)) => {
                view.status = "failed".into();
                view.error = Some(code);
                view.result = Some(message);
            }
        }
        self.metrics
            .tasks
            .get_or_create(&StateLabels {
                state: view.status.clone(),
            })
            .inc();
        self.metrics.tokens.inc_by(view.tokens_used);
        self.tasks_done
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(rec) = self.record(agent_id) {
            let _ = self.meter.add(
                &rec.offer_id,
                UsageCounters {
                    cpu_ms: ms,
                    tokens: view.tokens_used,
                    tasks: 1,
                    ..Default::default()
                },
            );
        }
        let _ = self.put_task(&view);
        view
    }

    pub(super) fn put_task(&self, view: &TaskView) -> Result<(), StoreError> {
        let rec = TaskRecord {
            view: view.clone(),
            created_at: now_secs(),
        };
        let json = serde_json::to_vec(&rec).unwrap_or_default();
        self.trees
            .tasks
            .insert(view.task_id.as_bytes(), json)
            .map_err(db("write task"))?;
        Ok(())
    }

    /// A task by id, with the agent's bearer token.
    pub fn task(&self, task_id: &str, token: Option<&str>) -> Result<TaskView, AgentError> {
        let unknown = || AgentError::BadRequest(format!("no task `{task_id}`"));
        let v = self
            .trees
            .tasks
            .get(task_id.as_bytes())
            .map_err(db("read task"))?
            .ok_or_else(unknown)?;
        let rec: TaskRecord = serde_json::from_slice(&v).map_err(|_| unknown())?;
        self.authorize(&rec.view.agent_id, token)?;
        Ok(rec.view)
    }
}
