//! Running a node: identity, store, the WASI runtime, agents, the network,
//! adverts and the API, started together and stopped cleanly.
//!
//! [`Node::start`] does the work in order (each step depends on the one
//! before): create the data dir (0700, it holds the key) → load or create the
//! node key → open the store (which also takes the data dir's lock) → build
//! the WASI runtime → open the agents and restore those that were running →
//! start the network → bind the API → start the advert publisher and the
//! agents' background duties. [`Node::shutdown`] stops the API gracefully,
//! stops the network and flushes the store.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::agents::{Agents, AgentsConfig, Policy};
use crate::api::{self, ApiState};
use crate::billing::BillingConfig;
use crate::capacity::{self, Caps};
use crate::config::NodeConfig;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use sparebox_network::adverts::{AdvertIndex, Verdict};
use sparebox_network::{self as network, Client, Inbound, NetConfig, NetError};
use sparebox_protocol::identity::{KeyError, Keypair, PublicKey};
use sparebox_protocol::rpc::{
    ArtifactRequest, ArtifactResponse, ControlRequest, ControlResponse, DeployRequest,
    DeployResponse, SyncResponse,
};
use sparebox_protocol::{RuntimeKind, RuntimeOffer, now_secs};

/// Why the node could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot create data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("node key: {0}")]
    Key(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("config: {0}")]
    Config(String),
    #[error("WASI runtime: {0}")]
    Runtime(#[from] sparebox_sandbox::RuntimeError),
    #[error("network: {0}")]
    Network(#[from] NetError),
    #[error("agents: {0}")]
    Agents(#[from] crate::agents::AgentError),
    #[error(
        "cannot listen on {addr}: {source} (is another node running? pick another with --api-addr)"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the API server failed: {0}")]
    Serve(std::io::Error),
}

/// The node's side of the network: gossip validation and sync go to the
/// advert index, deploy and control to the agents. A node serves no
/// artifacts (deployers do).
struct NodeInbound {
    adverts: Arc<AdvertIndex>,
    agents: Arc<Agents>,
    own_advert: Arc<RwLock<Option<Vec<u8>>>>,
}

#[async_trait::async_trait]
impl Inbound for NodeInbound {
    fn validate_advert(&self, author: Option<PublicKey>, bytes: &[u8]) -> Verdict {
        self.adverts.validate_gossip(author, bytes, now_secs())
    }
    fn synced(&self, from: PublicKey, reply: SyncResponse) {
        let now = now_secs();
        for a in reply.adverts {
            if let Err(code) = self.adverts.insert_synced(&a, now) {
                tracing::debug!(%from, code, "synced advert refused");
            }
        }
    }
    fn sync(&self) -> SyncResponse {
        let mut adverts: Vec<serde_bytes::ByteBuf> = self
            .adverts
            .snapshot(now_secs())
            .into_iter()
            .map(serde_bytes::ByteBuf::from)
            .collect();
        if let Some(own) = self
            .own_advert
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            adverts.push(serde_bytes::ByteBuf::from(own));
        }
        SyncResponse { adverts }
    }
    async fn deploy(&self, from: PublicKey, req: DeployRequest) -> DeployResponse {
        self.agents.offer(from, req).await
    }
    async fn control(&self, from: PublicKey, req: ControlRequest) -> ControlResponse {
        self.agents.control(from, req).await
    }
    async fn artifact(&self, _from: PublicKey, _req: ArtifactRequest) -> ArtifactResponse {
        ArtifactResponse::NotFound
    }
}

/// Why this host does not offer the OpenClaw runtime.
#[derive(Debug, thiserror::Error)]
enum ProcessUnavailable {
    #[error(transparent)]
    Install(#[from] sparebox_sandbox::process::openclaw::InstallError),
    #[error("OpenClaw agents need an LLM endpoint: set [llm] base_url")]
    NoLlm,
    #[error("{0}; or set [openclaw] allow_monitor_and_kill = true (weaker: watchdog only)")]
    NoCgroups(String),
    #[error(transparent)]
    Runtime(#[from] sparebox_sandbox::RuntimeError),
}

/// The OpenClaw process runtime, if this host can run it: a checked install,
/// an LLM endpoint, and cgroups (or the explicit monitor-and-kill opt-in).
fn process_runtime(
    config: &NodeConfig,
    data_dir: &Path,
    store: &Store,
) -> Result<Arc<sparebox_sandbox::process::ProcessRuntime>, ProcessUnavailable> {
    use sparebox_sandbox::process::{
        Enforcement, Gateway, ProcessConfig, ProcessRuntime, cgroup, openclaw,
    };
    let dir = config
        .openclaw
        .install_dir
        .clone()
        .unwrap_or_else(|| data_dir.join("openclaw"));
    let install = openclaw::Install::locate(&dir)?;
    let Some(base_url) = config.llm.base_url.clone() else {
        return Err(ProcessUnavailable::NoLlm);
    };
    let enforcement = match cgroup::probe() {
        cgroup::CgroupSupport::Unavailable(why) => {
            if config.openclaw.allow_monitor_and_kill {
                tracing::warn!("{why}; running OpenClaw in monitor-and-kill mode (watchdog only)");
                Enforcement::MonitorAndKill
            } else {
                return Err(ProcessUnavailable::NoCgroups(why));
            }
        }
        _ => Enforcement::Cgroups,
    };
    let mut cfg = ProcessConfig::new(
        data_dir.join("process"),
        Gateway::OpenClaw(install),
        openclaw::LlmEndpoint {
            base_url,
            api_key: std::env::var(&config.llm.api_key_env).ok(),
        },
    );
    cfg.enforcement = enforcement;
    cfg.ready_timeout = Duration::from_secs(config.openclaw.ready_timeout_secs);
    cfg.watchdog_window = Duration::from_secs(config.openclaw.watchdog_window_secs);
    Ok(Arc::new(ProcessRuntime::new(cfg, store.db())?))
}

/// A running node.
#[derive(Debug)]
pub struct Node {
    /// What the HTTP API serves from, for [`Node::app`].
    api: Arc<ApiState>,
    key: Keypair,
    store: Store,
    data_dir: PathBuf,
    api_addr: SocketAddr,
    key_created: bool,
    net: Client,
    listen_addrs: Vec<String>,
    agents: Arc<Agents>,
    restored: usize,
    stop_api: Option<oneshot::Sender<()>>,
    api_task: JoinHandle<std::io::Result<()>>,
    tasks: Vec<JoinHandle<()>>,
    owner_token: String,
}

/// The LLM provider from config, if one is configured.
fn llm_provider(
    cfg: &NodeConfig,
) -> Result<Option<Arc<dyn sparebox_sandbox::llm::LlmProvider>>, NodeError> {
    let Some(url) = &cfg.llm.base_url else {
        return Ok(None);
    };
    let key = std::env::var(&cfg.llm.api_key_env).ok();
    let p = sparebox_sandbox::llm::OpenAiProvider::new(
        url,
        key,
        cfg.llm.models.clone(),
        Duration::from_secs(120),
    )
    .map_err(|e| NodeError::Config(format!("llm.base_url: {e}")))?;
    Ok(Some(Arc::new(p)))
}

impl Node {
    /// Starts a node with `config`, its data in `config.data_dir()`.
    pub async fn start(config: &NodeConfig) -> Result<Node, NodeError> {
        let data_dir = config.data_dir();
        create_private_dir(&data_dir)?;
        let (key, key_created) = Keypair::load_or_create(&data_dir.join("node.key"))?;
        let store = Store::open(&data_dir)?;
        let starts = store.record_start()?;
        let me = key.public();

        let trusted_markets = config
            .trusted_market_keys()
            .map_err(|(i, e)| NodeError::Config(format!("market.trusted_keys[{i}]: {e}")))?;
        let allowed = config
            .allowed_deployer_keys()
            .map_err(|(i, e)| NodeError::Config(format!("direct.allowed_deployers[{i}]: {e}")))?;
        let caps = Caps::from_config(config);
        let mut wasm_cfg = sparebox_sandbox::wasm::WasmConfig::new(data_dir.join("wasm"));
        // A WASI agent may use up to the host's memory cap, but at most 2 GiB:
        // the pooling allocator reserves address space per memory (4 GiB) and
        // falls back to slower on-demand allocation above that.
        wasm_cfg.max_memory_per_agent = (caps.resources.memory_mib.min(2048) as usize) << 20;
        let wasm = Arc::new(sparebox_sandbox::wasm::WasmRuntime::new(
            wasm_cfg,
            store.db().clone(),
            llm_provider(config)?,
        )?);
        let metrics = Arc::new(Metrics::default());
        let process = if config.capacity.runtimes.contains(&RuntimeKind::Openclaw) {
            match process_runtime(config, &data_dir, &store) {
                Ok(p) => Some(p),
                Err(why) => {
                    tracing::warn!("the openclaw runtime is not offered: {why}");
                    eprintln!("warning: the openclaw runtime is not offered: {why}");
                    None
                }
            }
        } else {
            None
        };
        let mut runtimes: Vec<RuntimeOffer> = Vec::new();
        if config.capacity.runtimes.contains(&RuntimeKind::Wasi) {
            runtimes.push(RuntimeOffer {
                kind: RuntimeKind::Wasi,
                version: "wasmtime-48".into(),
            });
        }
        if let Some(p) = &process
            && let sparebox_sandbox::process::Gateway::OpenClaw(i) = p.gateway()
        {
            runtimes.push(RuntimeOffer {
                kind: RuntimeKind::Openclaw,
                version: format!("openclaw-{}", i.version),
            });
        }
        let api_url = config
            .api
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.api.addr));
        let listener = tokio::net::TcpListener::bind(config.api.addr)
            .await
            .map_err(|source| NodeError::Bind {
                addr: config.api.addr,
                source,
            })?;
        let api_addr = listener.local_addr().map_err(|source| NodeError::Bind {
            addr: config.api.addr,
            source,
        })?;
        let api_url = if config.api.public_url.is_none() {
            format!("http://{api_addr}")
        } else {
            api_url
        };
        let owner = Arc::new(
            crate::owner::Owner::open(store.tree("owner")?, &config.capacity.prices)
                .map_err(|e| NodeError::Config(e.to_string()))?,
        );
        let agents = Agents::open(
            key.clone(),
            AgentsConfig {
                policy: Policy {
                    me,
                    max_skew_secs: config.admission.max_clock_skew_secs,
                    direct_enabled: config.direct.enabled,
                    allowed_deployers: allowed,
                    runtimes: runtimes.iter().map(|r| r.kind).collect(),
                    prices: config.capacity.prices.clone(),
                    caps,
                    trusted_markets: trusted_markets.clone(),
                },
                api_url,
                data_dir: data_dir.clone(),
                billing: BillingConfig {
                    trusted: trusted_markets,
                    report_interval: Duration::from_secs(config.market.report_interval_secs),
                    warn_at_percent: config.market.warn_at_percent,
                },
            },
            &store,
            wasm,
            process,
            metrics,
            owner.clone(),
        )?;
        let restored = agents.restore().await;

        let adverts = Arc::new(AdvertIndex::new(
            Some(me),
            config.admission.max_clock_skew_secs,
        ));
        let own_advert = Arc::new(RwLock::new(None));
        let inbound = Arc::new(NodeInbound {
            adverts: adverts.clone(),
            agents: agents.clone(),
            own_advert: own_advert.clone(),
        });
        let net_cfg = NetConfig {
            listen: config.network.listen.clone(),
            bootstrap: config.network.bootstrap.clone(),
            mdns: config.network.mdns,
            max_connections: config.network.max_connections,
            ..NetConfig::default()
        };
        let (net, net_task) = network::start(&key, net_cfg, inbound).await?;
        agents.set_network(net.clone());
        let listen_addrs = net.info().await.map(|i| i.listen_addrs).unwrap_or_default();

        let state = Arc::new(ApiState {
            dashboard_hosts: config.api.dashboard_hosts.clone(),
            trusted_proxy: config.api.trusted_proxy,
            started: Instant::now(),
            node: me,
            agents: agents.clone(),
            adverts: adverts.clone(),
            net: net.clone(),
            caps,
        });
        let api_state = state.clone();
        let (stop_api, stopped) = oneshot::channel::<()>();
        let api_task = tokio::spawn(async move {
            axum::serve(
                listener,
                api::app(api_state).into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
        });

        let publisher = tokio::spawn(publish_adverts(
            key.clone(),
            config.clone(),
            caps,
            runtimes,
            agents.clone(),
            adverts,
            net.clone(),
            own_advert,
        ));
        let background = tokio::spawn(agents.clone().run_background());
        let sampler = tokio::spawn(sample_history(agents.clone()));
        let reports = tokio::spawn(agents.billing().clone().run_sender(Duration::from_secs(1)));
        tracing::info!(peer_id = %me, data_dir = %data_dir.display(), %api_addr, starts, restored, "node started");
        Ok(Node {
            api: state,
            key,
            store,
            data_dir,
            api_addr,
            key_created,
            net,
            listen_addrs,
            agents,
            restored,
            stop_api: Some(stop_api),
            api_task,
            tasks: vec![publisher, background, reports, net_task, sampler],
            owner_token: owner.token().to_string(),
        })
    }

    pub fn public_key(&self) -> PublicKey {
        self.key.public()
    }
    /// The token owner actions on the dashboard need (new each start).
    pub fn owner_token(&self) -> &str {
        &self.owner_token
    }
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }
    /// The node's HTTP API as a router over its live state: what the
    /// listener serves, for tests that send requests without a socket.
    pub fn app(&self) -> axum::Router {
        api::app(self.api.clone())
    }
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
    /// Whether this start created the node key.
    pub fn key_created(&self) -> bool {
        self.key_created
    }
    /// The libp2p listen addresses, each ending in `/p2p/<PeerId>`.
    pub fn listen_addrs(&self) -> Vec<String> {
        let id = self.key.public().to_peer_id();
        self.listen_addrs
            .iter()
            .map(|a| format!("{a}/p2p/{id}"))
            .collect()
    }
    /// Agents restored from the store at start.
    pub fn restored(&self) -> usize {
        self.restored
    }
    pub fn agents(&self) -> &Arc<Agents> {
        &self.agents
    }
    pub fn network(&self) -> &Client {
        &self.net
    }

    /// Stops the API (letting requests in flight finish), the network and
    /// the background tasks, and flushes the store.
    pub async fn shutdown(mut self) -> Result<(), NodeError> {
        if let Some(stop) = self.stop_api.take() {
            let _ = stop.send(());
        }
        match (&mut self.api_task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(NodeError::Serve(e)),
            Err(e) => return Err(NodeError::Serve(std::io::Error::other(e))),
        }
        self.net.shutdown().await;
        for t in &self.tasks {
            t.abort();
        }
        // Wait for every task to drop what it holds, so the database (and
        // its lock) is released when this returns.
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        self.store.flush()?;
        tracing::info!("node stopped");
        Ok(())
    }
}

/// Publishes this host's advert when capacity changes and on the interval.
/// `seq` is milliseconds since the epoch (bumped if the clock stalls), so it
/// keeps growing across restarts.
#[allow(clippy::too_many_arguments)]
async fn publish_adverts(
    key: Keypair,
    cfg: NodeConfig,
    caps: Caps,
    runtimes: Vec<RuntimeOffer>,
    agents: Arc<Agents>,
    index: Arc<AdvertIndex>,
    net: Client,
    own: Arc<RwLock<Option<Vec<u8>>>>,
) {
    let interval = Duration::from_secs(cfg.network.advert_interval_secs);
    let mut seq = 0u64;
    let mut published = false;
    loop {
        let info = net.info().await.ok();
        let addrs: Vec<String> = info
            .as_ref()
            .map(|i| {
                i.listen_addrs
                    .iter()
                    .chain(i.external_addrs.iter())
                    .map(|a| format!("{a}/p2p/{}", i.peer_id))
                    .collect()
            })
            .unwrap_or_default();
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        seq = millis.max(seq + 1);
        // The owner's prices; paused, the host advertises no free capacity.
        let mut cfg = cfg.clone();
        cfg.capacity.prices = agents.owner.prices();
        let reserved = if agents.owner.accepting() {
            agents.reserved()
        } else {
            capacity::Reserved {
                resources: caps.resources,
                agents: caps.agents,
            }
        };
        match capacity::sign_advert(
            &key,
            &cfg,
            &caps,
            &reserved,
            &runtimes,
            addrs,
            seq,
            now_secs(),
        ) {
            Ok(bytes) => {
                *own.write().unwrap_or_else(|p| p.into_inner()) = Some(bytes.clone());
                match net.publish_advert(bytes).await {
                    Ok(sent) => published |= sent,
                    Err(e) => tracing::warn!("advert not published: {e}"),
                }
            }
            Err(e) => tracing::error!("cannot sign the advert: {e}"),
        }
        index.purge(now_secs());
        // Until the first advert reaches a peer, retry every second.
        let wait = if published {
            interval
        } else {
            Duration::from_secs(1)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = agents.changed.notified() => {}
        }
    }
}

/// Samples the machine's and the agents' CPU and memory for the
/// dashboard's charts, every [`crate::owner::SAMPLE_SECS`].
async fn sample_history(agents: Arc<Agents>) {
    use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};
    let mut sys = match System::new_with_specifics(
        RefreshKind::nothing()
            .with_cpu(CpuRefreshKind::nothing().with_usage())
            .with_memory(MemoryRefreshKind::nothing().with_ram()),
    ) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("no CPU and memory history for the dashboard: {e}");
            return;
        }
    };
    let mut tick = tokio::time::interval(Duration::from_secs(crate::owner::SAMPLE_SECS));
    loop {
        tick.tick().await;
        sys.refresh_cpu_usage();
        sys.refresh_memory();
        let list = agents.list();
        let reserved = agents.reserved();
        agents.owner.sample(crate::owner::Sample {
            t: now_secs(),
            cpu_percent: sys.global_cpu_usage(),
            memory_used_mib: sys.used_memory() >> 20,
            memory_total_mib: sys.total_memory() >> 20,
            agents_cpu_percent: list.iter().filter_map(|a| a.cpu_percent).sum(),
            agents_rss_mib: list.iter().filter_map(|a| a.rss_bytes).sum::<u64>() >> 20,
            reserved_cpu_millis: reserved.resources.cpu_millis,
            reserved_memory_mib: reserved.resources.memory_mib,
            agents: u32::try_from(list.len()).unwrap_or(u32::MAX),
        });
    }
}

fn create_private_dir(path: &Path) -> Result<(), NodeError> {
    let err = |source| NodeError::DataDir {
        path: path.to_path_buf(),
        source,
    };
    if !path.exists() {
        std::fs::create_dir_all(path).map_err(err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}
