//! `tracing` setup: human-readable or JSON lines on stderr.

use tracing_subscriber::EnvFilter;

use serde::{Deserialize, Serialize};

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber. `RUST_LOG` overrides `default_filter`.
/// Unless the filter names libp2p crates itself, kad's routine complaints
/// (such as "no known peers" on a node's first start) are kept to errors.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        if default_filter.contains("libp2p") {
            EnvFilter::new(default_filter)
        } else {
            EnvFilter::new(format!("{default_filter},libp2p_kad=error"))
        }
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // try_init: a second call (tests) is harmless.
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
