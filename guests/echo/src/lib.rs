//! Echo agent: replies with what it is sent, counts tasks in KV, logs each
//! one, and counts scheduled ticks.

wit_bindgen::generate!({ path: "../../wit", world: "scheduled-agent" });

use sparebox::agent::{kv, log};

struct Echo;

impl Guest for Echo {
    fn handle(task: Task) -> Result<Reply, AgentError> {
        let count = match kv::get("count") {
            Ok(Some(v)) => u64::from_le_bytes(v.try_into().unwrap_or([0; 8])),
            Ok(None) => 0,
            Err(e) => return Err(AgentError::Failed(format!("kv get: {e:?}"))),
        } + 1;
        kv::set("count", &count.to_le_bytes()).map_err(|e| AgentError::Failed(format!("kv set: {e:?}")))?;
        log::log(log::Level::Info, &format!("task {} #{count}", task.id));
        Ok(Reply { content: format!("echo: {}", task.content) })
    }

    fn on_tick() {
        let ticks = match kv::get("ticks") {
            Ok(Some(v)) => u64::from_le_bytes(v.try_into().unwrap_or([0; 8])),
            _ => 0,
        } + 1;
        let _ = kv::set("ticks", &ticks.to_le_bytes());
        log::log(log::Level::Info, &format!("tick #{ticks}"));
    }
}

export!(Echo);
