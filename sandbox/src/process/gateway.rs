//! The client side of the gateway's HTTP contract: a task goes to
//! `POST /v1/chat/completions` on the agent's loopback port, with the
//! agent's bearer token, under the task's time limit.

use std::time::{Duration, Instant};

use crate::runtime::{RuntimeError, Task, TaskOutcome};

/// Sends `task` to the gateway on `port` and reads its answer.
pub(super) async fn chat(
    http: &reqwest::Client,
    port: u16,
    token: &str,
    timeout: Duration,
    task: &Task,
) -> Result<TaskOutcome, RuntimeError> {
    let started = Instant::now();
    let mut messages: Vec<serde_json::Value> = task
        .context
        .iter()
        .map(|(author, content)| {
            serde_json::json!({"role": "user", "content": format!("{author}: {content}")})
        })
        .collect();
    messages.push(serde_json::json!({"role": "user", "content": task.content}));
    let mut body = serde_json::json!({"model": "openclaw", "messages": messages});
    if let Some(t) = &task.thread_id {
        body["user"] = serde_json::Value::String(t.clone());
    }
    let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    let result = http
        .post(url)
        .bearer_auth(token)
        .timeout(timeout)
        .json(&body)
        .send()
        .await;
    match result {
        Err(e) if e.is_timeout() => Err(RuntimeError::Timeout {
            limit_ms: timeout.as_millis() as u64,
        }),
        Err(e) => Err(RuntimeError::Agent(format!("gateway request failed: {e}"))),
        Ok(r) => {
            let status = r.status();
            let v: serde_json::Value = r.json().await.unwrap_or_default();
            if !status.is_success() {
                return Err(RuntimeError::Agent(format!(
                    "gateway answered {status}: {v}"
                )));
            }
            let content = v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let tokens = v["usage"]["prompt_tokens"].as_u64().unwrap_or(0)
                + v["usage"]["completion_tokens"].as_u64().unwrap_or(0);
            Ok(TaskOutcome {
                reply: content,
                duration_ms: started.elapsed().as_millis() as u64,
                tokens_used: tokens,
                hostcalls: 0,
            })
        }
    }
}
