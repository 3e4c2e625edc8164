//! Prometheus metrics, served on `/metrics` in the OpenMetrics text format.
//!
//! Counters and the latency histogram are updated where things happen;
//! gauges that describe current state (peers, adverts, agents by state) are
//! set just before each scrape.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OfferLabels {
    /// `accepted` or `rejected`.
    pub outcome: String,
    /// The rejection code, or `none`.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AgentLabels {
    pub agent: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

/// Every metric the node exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub peers: Gauge,
    pub adverts: Gauge,
    pub offers: Family<OfferLabels, Counter>,
    pub agents: Family<StateLabels, Gauge>,
    pub task_seconds: Histogram,
    pub tasks: Family<StateLabels, Counter>,
    pub tokens: Counter,
    pub agent_rss: Family<AgentLabels, Gauge>,
    pub agent_cpu: Family<AgentLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub agent_tasks_running: Family<AgentLabels, Gauge>,
    pub agent_tasks_waiting: Family<AgentLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sparebox");
        let peers = Gauge::default();
        let adverts = Gauge::default();
        let offers = Family::<OfferLabels, Counter>::default();
        let agents = Family::<StateLabels, Gauge>::default();
        let task_seconds = Histogram::new([
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0,
        ]);
        let tasks = Family::<StateLabels, Counter>::default();
        let tokens = Counter::default();
        let agent_rss = Family::<AgentLabels, Gauge>::default();
        let agent_cpu = Family::<AgentLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let agent_tasks_running = Family::<AgentLabels, Gauge>::default();
        let agent_tasks_waiting = Family::<AgentLabels, Gauge>::default();
        registry.register(
            "agent_tasks_running",
            "Tasks of a WASI agent holding a slot",
            agent_tasks_running.clone(),
        );
        registry.register(
            "agent_tasks_waiting",
            "Tasks of a WASI agent waiting for a slot (its queue depth)",
            agent_tasks_waiting.clone(),
        );
        registry.register("peers", "Connected libp2p peers", peers.clone());
        registry.register(
            "adverts",
            "Live capacity adverts in the index",
            adverts.clone(),
        );
        registry.register(
            "offers",
            "Deployment offers by outcome and reason",
            offers.clone(),
        );
        registry.register("agents", "Agents by state", agents.clone());
        registry.register(
            "task_duration_seconds",
            "Time from a task starting to its end",
            task_seconds.clone(),
        );
        registry.register("tasks", "Tasks finished, by final status", tasks.clone());
        registry.register("llm_tokens", "LLM tokens used by agents", tokens.clone());
        registry.register(
            "agent_rss_bytes",
            "RSS of a process agent's process tree",
            agent_rss.clone(),
        );
        registry.register(
            "agent_cpu_percent",
            "CPU % of a process agent's process tree (100 = one core)",
            agent_cpu.clone(),
        );
        Metrics {
            registry,
            peers,
            adverts,
            offers,
            agents,
            task_seconds,
            tasks,
            tokens,
            agent_rss,
            agent_cpu,
            agent_tasks_running,
            agent_tasks_waiting,
        }
    }
}

impl Metrics {
    pub fn offer(&self, outcome: &str, reason: &str) {
        self.offers
            .get_or_create(&OfferLabels {
                outcome: outcome.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// The registry in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
