//! Node configuration (TOML).
//!
//! Every section has its own `XxxConfig` with `Default`; every field has a
//! documented default, and an unknown key is an error. `sparebox config
//! default` prints [`DEFAULT_CONFIG_TOML`], the commented default file; a test
//! keeps it equal to `NodeConfig::default()`. Command-line flags override the
//! file. Secrets never live here: they come from environment variables or
//! key files.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sparebox_service::logging::LogFormat;

use sparebox_protocol::RuntimeKind;
use sparebox_protocol::identity::{PublicKey, paths};

/// The commented default configuration, as printed by `sparebox config default`.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default.toml");

/// The whole node configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[derive(Default)]
pub struct NodeConfig {
    /// Directory for the node key, database and agent files.
    /// Default: `$XDG_DATA_HOME/sparebox/node` (`~/.local/share/sparebox/node`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// The node's HTTP API and dashboard.
    pub api: ApiConfig,
    /// Logging.
    pub log: LogConfig,
    /// Checks applied to incoming offers and commands.
    pub admission: AdmissionConfig,
    /// Free/direct mode: price-0 offers from allow-listed deployer keys.
    pub direct: DirectConfig,
    /// Paid mode: the marketplaces whose vouchers this host accepts, and
    /// how usage is reported to them.
    pub market: PaidModeConfig,
    /// The libp2p network.
    pub network: NetworkConfig,
    /// What this host offers: caps, runtimes, prices and labels.
    pub capacity: CapacityConfig,
    /// The LLM provider agents' `llm` calls go to.
    pub llm: LlmConfig,
    /// The `openclaw` runtime: gateways as cgroup-limited processes.
    pub openclaw: OpenClawConfig,
}

/// Settings of the `openclaw` runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenClawConfig {
    /// Where `sparebox openclaw install` put Node 24 and OpenClaw.
    /// Default: `<data_dir>/openclaw`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub install_dir: Option<PathBuf>,
    /// Run gateways without cgroups when the node may not create them,
    /// relying on the watchdog alone (weaker: limits are only enforced after
    /// the watchdog window). Default false: no cgroups, no OpenClaw.
    pub allow_monitor_and_kill: bool,
    /// Seconds a gateway may take to answer /readyz. Default 120.
    pub ready_timeout_secs: u64,
    /// Seconds an agent may stay over a limit before the watchdog stops it.
    /// Default 60.
    pub watchdog_window_secs: u64,
}

impl Default for OpenClawConfig {
    fn default() -> Self {
        OpenClawConfig {
            install_dir: None,
            allow_monitor_and_kill: false,
            ready_timeout_secs: 120,
            watchdog_window_secs: 60,
        }
    }
}

/// libp2p settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Multiaddrs to listen on (also `--listen`, repeatable).
    /// Default: TCP and QUIC on port 4001, all interfaces.
    pub listen: Vec<String>,
    /// Peers to join the network through, as multiaddrs ending in
    /// `/p2p/<PeerId>` (also `--bootstrap`, repeatable). Default none.
    pub bootstrap: Vec<String>,
    /// Find peers on the local network with mDNS (`--no-mdns` turns it off).
    /// Default true.
    pub mdns: bool,
    /// Seconds between capacity adverts when nothing changes. Default 30.
    pub advert_interval_secs: u64,
    /// How long peers keep an advert, in seconds; must exceed the interval.
    /// Default 120.
    pub advert_ttl_secs: u32,
    /// Most connections held at once. Default 256.
    pub max_connections: u32,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            listen: vec![
                "/ip4/0.0.0.0/tcp/4001".into(),
                "/ip4/0.0.0.0/udp/4001/quic-v1".into(),
            ],
            bootstrap: Vec::new(),
            mdns: true,
            advert_interval_secs: 30,
            advert_ttl_secs: 120,
            max_connections: 256,
        }
    }
}

/// The host's caps and what it advertises.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CapacityConfig {
    /// Share of this machine's CPUs agents may use together, 0 < share ≤ 1.
    /// Default 0.5.
    pub max_cpu_share: f64,
    /// Memory agents may use together, in MiB. Default: half the machine's
    /// memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_memory_mib: Option<u32>,
    /// Disk agents may use together, in MiB. Default 10240.
    pub max_disk_mib: u32,
    /// Most agents deployed at once. Default 100.
    pub max_agents: u32,
    /// Runtimes offered: "wasi" and/or "openclaw". Default ["wasi"].
    pub runtimes: Vec<RuntimeKind>,
    /// Free-form labels shown to deployers, e.g. { gpu = "none" }.
    pub labels: BTreeMap<String, String>,
    /// Region shown to deployers, e.g. "eu-west". Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The asking price.
    pub prices: PricesConfig,
}

impl Default for CapacityConfig {
    fn default() -> Self {
        CapacityConfig {
            max_cpu_share: 0.5,
            max_memory_mib: None,
            max_disk_mib: 10240,
            max_agents: 100,
            runtimes: vec![RuntimeKind::Wasi],
            labels: BTreeMap::new(),
            region: None,
            prices: PricesConfig::default(),
        }
    }
}

/// The host's asking price; offers below it are rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PricesConfig {
    /// ISO 4217 currency code, lowercase. Default "usd".
    pub currency: String,
    /// Cents per agent-hour for a WASI agent. Default 0 (free).
    pub wasi_cents_per_hour: u64,
    /// Cents per agent-hour for an OpenClaw agent. Default 0 (free).
    pub openclaw_cents_per_hour: u64,
    /// Cents per 1,000 LLM tokens. Default 0 (free).
    pub cents_per_1k_tokens: u64,
}

impl Default for PricesConfig {
    fn default() -> Self {
        PricesConfig {
            currency: "usd".into(),
            wasi_cents_per_hour: 0,
            openclaw_cents_per_hour: 0,
            cents_per_1k_tokens: 0,
        }
    }
}

/// The OpenAI-compatible provider behind agents' `llm` calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// Base URL of an OpenAI-compatible API, e.g. "https://api.openai.com/v1".
    /// Default none: agents' llm calls fail with provider-error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Models offered to agents (an agent also needs them in its grants).
    pub models: Vec<String>,
    /// Environment variable holding the API key. Default "SPAREBOX_LLM_API_KEY".
    pub api_key_env: String,
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig {
            base_url: None,
            models: Vec::new(),
            api_key_env: "SPAREBOX_LLM_API_KEY".into(),
        }
    }
}

/// HTTP API settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address the agent API and dashboard listen on. Default `127.0.0.1:7878`.
    /// Port 0 picks a free port (printed at startup).
    pub addr: SocketAddr,
    /// The URL deployers reach the agent API at, when it differs from
    /// `http://<addr>` (a reverse proxy, say). Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Host names (besides `localhost` and loopback addresses) the dashboard
    /// answers to, e.g. the name a reverse proxy forwards as `Host`. A
    /// request with any other `Host` (a DNS-rebinding page) is refused.
    /// Default empty.
    pub dashboard_hosts: Vec<String>,
    /// Whether dashboard requests that came through a reverse proxy
    /// (`Forwarded`, `X-Forwarded-For` or `X-Real-IP` present) are
    /// answered. Behind a proxy every caller looks like loopback, so this
    /// stays off unless the proxy authenticates the owner. Default false.
    pub trusted_proxy: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 7878)),
            public_url: None,
            dashboard_hosts: Vec::new(),
            trusted_proxy: false,
        }
    }
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `human` or `json`. Default `human`.
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `sparebox_node=debug,info`.
    /// `RUST_LOG`, when set, wins. Default `info`.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Human,
            filter: "info".into(),
        }
    }
}

/// Admission settings for signed messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdmissionConfig {
    /// Clock skew tolerated on `issued_at`, in seconds. Default 60.
    pub max_clock_skew_secs: u64,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            max_clock_skew_secs: sparebox_protocol::DEFAULT_MAX_SKEW_SECS,
        }
    }
}

/// Free/direct mode settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirectConfig {
    /// Accept price-0 offers paid `direct`. Default true.
    pub enabled: bool,
    /// Deployer keys (PeerId or 64 hex digits) whose direct offers are
    /// accepted. Default empty: nobody until you add a key.
    pub allowed_deployers: Vec<String>,
}

impl Default for DirectConfig {
    fn default() -> Self {
        DirectConfig {
            enabled: true,
            allowed_deployers: Vec::new(),
        }
    }
}

/// Paid mode settings: the `[market]` section (which marketplaces this host
/// trusts, and how it reports usage to them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaidModeConfig {
    /// Marketplace keys (PeerId or 64 hex digits) whose vouchers this host
    /// accepts. Default empty: voucher-paid offers are refused with
    /// `voucher_untrusted`. A marketplace shows its key at `/api/health`.
    pub trusted_keys: Vec<String>,
    /// How often each paid agreement's signed usage report is sent, in
    /// seconds (1 to 60). Default 60.
    pub report_interval_secs: u64,
    /// Warn in the log when an agreement has spent this share of its cap,
    /// in percent. Default 80. The agent is stopped before the next report
    /// interval would run past the cap.
    pub warn_at_percent: u8,
}

impl Default for PaidModeConfig {
    fn default() -> Self {
        PaidModeConfig {
            trusted_keys: Vec::new(),
            report_interval_secs: 60,
            warn_at_percent: 80,
        }
    }
}

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path}: {field}: {problem}")]
    Invalid {
        path: PathBuf,
        field: String,
        problem: String,
    },
}

impl NodeConfig {
    /// Parses and validates config text; `path` is used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<NodeConfig, ConfigError> {
        let config: NodeConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Loads `path` if given (it must exist); otherwise the XDG default file
    /// if it exists; otherwise the defaults. Returns the file used, if any.
    pub fn load(path: Option<&Path>) -> Result<(NodeConfig, Option<PathBuf>), ConfigError> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (paths::node_config(), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok((Self::parse(&text, &path)?, Some(path))),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                Ok((NodeConfig::default(), None))
            }
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |field: &str, problem: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            field: field.to_string(),
            problem,
        };
        let c = &self.capacity;
        if !(c.max_cpu_share > 0.0 && c.max_cpu_share <= 1.0) {
            return Err(invalid(
                "capacity.max_cpu_share",
                format!("{} is not within 0 < share <= 1", c.max_cpu_share),
            ));
        }
        if c.runtimes.is_empty() {
            return Err(invalid(
                "capacity.runtimes",
                "offer at least one runtime (\"wasi\")".into(),
            ));
        }
        let n = &self.network;
        if u64::from(n.advert_ttl_secs) <= n.advert_interval_secs || n.advert_interval_secs == 0 {
            return Err(invalid(
                "network.advert_ttl_secs",
                format!(
                    "{} must be longer than advert_interval_secs ({}), which must be over 0",
                    n.advert_ttl_secs, n.advert_interval_secs
                ),
            ));
        }
        for (field, list) in [
            ("network.listen", &n.listen),
            ("network.bootstrap", &n.bootstrap),
        ] {
            for (i, a) in list.iter().enumerate() {
                if let Err(e) = a.parse::<libp2p::Multiaddr>() {
                    return Err(invalid(&format!("{field}[{i}]"), format!("`{a}`: {e}")));
                }
            }
        }
        let m = &self.market;
        if !(1..=60).contains(&m.report_interval_secs) {
            return Err(invalid(
                "market.report_interval_secs",
                format!("{} is not within 1..=60", m.report_interval_secs),
            ));
        }
        if !(1..=100).contains(&m.warn_at_percent) {
            return Err(invalid(
                "market.warn_at_percent",
                format!("{} is not within 1..=100", m.warn_at_percent),
            ));
        }
        self.trusted_market_keys()
            .map_err(|(i, problem)| ConfigError::Invalid {
                path: path.to_path_buf(),
                field: format!("market.trusted_keys[{i}]"),
                problem,
            })?;
        self.allowed_deployer_keys()
            .map_err(|(i, problem)| ConfigError::Invalid {
                path: path.to_path_buf(),
                field: format!("direct.allowed_deployers[{i}]"),
                problem,
            })?;
        Ok(())
    }

    /// The allow-listed deployer keys, parsed.
    pub fn allowed_deployer_keys(&self) -> Result<Vec<PublicKey>, (usize, String)> {
        self.direct
            .allowed_deployers
            .iter()
            .enumerate()
            .map(|(i, s)| s.parse::<PublicKey>().map_err(|e| (i, e.to_string())))
            .collect()
    }

    /// The trusted marketplace keys, parsed.
    pub fn trusted_market_keys(&self) -> Result<Vec<PublicKey>, (usize, String)> {
        self.market
            .trusted_keys
            .iter()
            .enumerate()
            .map(|(i, s)| s.parse::<PublicKey>().map_err(|e| (i, e.to_string())))
            .collect()
    }

    /// The data directory in effect.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(paths::node_data_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn keys(prefix: &str, v: &toml::Value, out: &mut BTreeSet<String>) {
        if let toml::Value::Table(t) = v {
            for (k, v) in t {
                let key = format!("{prefix}{k}");
                keys(&format!("{key}."), v, out);
                out.insert(key);
            }
        }
    }

    #[test]
    fn default_file_equals_default_struct() {
        let parsed = NodeConfig::parse(DEFAULT_CONFIG_TOML, Path::new("default.toml")).unwrap();
        assert_eq!(parsed, NodeConfig::default());
    }

    #[test]
    fn default_file_lists_every_field() {
        let mut from_struct = BTreeSet::new();
        keys(
            "",
            &toml::Value::try_from(NodeConfig::default()).unwrap(),
            &mut from_struct,
        );
        let mut from_file = BTreeSet::new();
        keys(
            "",
            &toml::from_str::<toml::Value>(DEFAULT_CONFIG_TOML).unwrap(),
            &mut from_file,
        );
        assert_eq!(from_struct, from_file);
        // Optional fields appear commented out.
        assert!(DEFAULT_CONFIG_TOML.contains("# data_dir = "));
    }

    #[test]
    fn every_field_in_default_file_has_a_comment() {
        let lines: Vec<&str> = DEFAULT_CONFIG_TOML.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') || l.starts_with('[') {
                continue;
            }
            assert!(
                i > 0 && lines[i - 1].trim_start().starts_with('#'),
                "no comment above `{l}`"
            );
        }
    }

    #[test]
    fn rejects_unknown_key_naming_it() {
        let err = NodeConfig::parse("[api]\nadress = \"127.0.0.1:1\"\n", Path::new("x.toml"))
            .unwrap_err();
        assert!(err.to_string().contains("adress"), "{err}");
    }

    #[test]
    fn rejects_bad_deployer_key_naming_the_entry() {
        let err = NodeConfig::parse(
            "[direct]\nallowed_deployers = [\"nope\"]\n",
            Path::new("x.toml"),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("direct.allowed_deployers[0]"),
            "{err}"
        );
    }
}
