//! The `log` capability's storage: a bounded ring of recent lines per agent,
//! also emitted through `tracing` with the agent id.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Lines kept per agent.
pub const MAX_LINES: usize = 1000;
/// Longest line kept, in bytes (longer lines are cut).
pub const MAX_LINE: usize = 4096;

/// One agent's recent log lines.
#[derive(Debug, Default)]
pub struct LogBuffer {
    lines: Mutex<VecDeque<String>>,
}

impl LogBuffer {
    pub fn push(&self, agent: &str, level: &str, message: &str) {
        let mut line = format!("[{level}] {message}");
        if line.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        tracing::debug!(agent, level, message = %line, "agent log");
        if let Ok(mut lines) = self.lines.lock() {
            if lines.len() == MAX_LINES {
                lines.pop_front();
            }
            lines.push_back(line);
        }
    }

    /// Captured stdout/stderr, one entry per line.
    pub fn push_stdio(&self, agent: &str, stream: &str, bytes: &[u8]) {
        for l in String::from_utf8_lossy(bytes).lines() {
            self.push(agent, stream, l);
        }
    }

    /// The last `n` lines, oldest first.
    pub fn tail(&self, n: usize) -> Vec<String> {
        self.lines
            .lock()
            .map(|l| l.iter().skip(l.len().saturating_sub(n)).cloned().collect())
            .unwrap_or_default()
    }
}
