//! LLM agent with a small agentic loop: it asks the model, runs the tool the
//! model requests (if any), feeds the result back, and stops when the model
//! answers or after MAX_STEPS.
//!
//! Tool protocol (one line from the model): `TOOL <name> <arg>`; anything
//! else is the final answer. Tools: `remember <text>` and `recall <key>`
//! (both on KV), and `fetch <url>` (an HTTP GET through `wasi:http`, within
//! the agent's `grants.outbound_hosts`; the first 4 KiB of the body).

wit_bindgen::generate!({ path: "../../wit", world: "agent" });

use sparebox::agent::llm::{self, Message, Params, Role};
use sparebox::agent::{kv, log};

const MAX_STEPS: usize = 4;
const MODEL: &str = "test-model";

struct LlmAgent;

fn run_tool(line: &str) -> String {
    let mut parts = line.splitn(3, ' ');
    let _ = parts.next();
    match (parts.next(), parts.next()) {
        (Some("remember"), Some(text)) => match kv::set("memory", text.as_bytes()) {
            Ok(()) => "remembered".into(),
            Err(e) => format!("error: {e:?}"),
        },
        (Some("recall"), Some(key)) => match kv::get(key) {
            Ok(Some(v)) => String::from_utf8_lossy(&v).into_owned(),
            Ok(None) => "nothing stored".into(),
            Err(e) => format!("error: {e:?}"),
        },
        (Some("fetch"), Some(url)) => match fetch::get(url, 4096) {
            Ok(r) => format!("HTTP {}\n{}", r.status, String::from_utf8_lossy(&r.body)),
            Err(e) => format!("error: {e}"),
        },
        (Some(name), _) => format!("error: unknown tool {name}"),
        _ => "error: malformed tool call".into(),
    }
}

impl Guest for LlmAgent {
    fn handle(task: Task) -> Result<Reply, AgentError> {
        let mut messages = vec![
            Message { role: Role::System, content: "You are a Sparebox agent. To use a tool, answer with one line `TOOL <name> <arg>`.".into() },
            Message { role: Role::User, content: task.content },
        ];
        for step in 0..MAX_STEPS {
            let params = Params { model: MODEL.into(), max_tokens: Some(512), temperature: None };
            let completion = llm::chat(&messages, &params).map_err(|e| AgentError::Failed(format!("llm: {e:?}")))?;
            let text = completion.content.trim().to_string();
            log::log(log::Level::Debug, &format!("step {step}: {text}"));
            if text.starts_with("TOOL ") {
                let result = run_tool(&text);
                messages.push(Message { role: Role::Assistant, content: text });
                messages.push(Message { role: Role::Tool, content: result });
                continue;
            }
            return Ok(Reply { content: text });
        }
        Err(AgentError::Failed(format!("no answer after {MAX_STEPS} steps")))
    }
}

export!(LlmAgent);
