//! This host's capacity: its caps (from config and the machine), what running
//! agents hold, what is free, its price list, and the signed
//! [`CapacityAdvert`] it publishes. The index of *other* hosts' adverts is
//! `sparebox_network::adverts`.

use crate::config::NodeConfig;
use sparebox_protocol::{
    CapacityAdvert, ClassPrice, ModelPrice, PriceList, Resources, RuntimeKind, RuntimeOffer,
};

/// The host's total caps, from config and the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub resources: Resources,
    pub agents: u32,
}

impl Caps {
    /// Caps from the config, sized against this machine (sysinfo).
    pub fn from_config(cfg: &NodeConfig) -> Caps {
        use sysinfo::{MemoryRefreshKind, RefreshKind, System};
        let sys = System::new_with_specifics(
            RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram()),
        );
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let c = &cfg.capacity;
        // sysinfo fails only on platforms it does not support; then only the
        // configured cap (or 1 GiB) is offered.
        let total_mib = sys
            .map(|s| u32::try_from(s.total_memory() >> 20).unwrap_or(u32::MAX))
            .unwrap_or_else(|_| c.max_memory_mib.unwrap_or(1024));
        Caps {
            resources: Resources {
                cpu_millis: (cpus * 1000.0 * c.max_cpu_share) as u32,
                memory_mib: c.max_memory_mib.unwrap_or(total_mib / 2).min(total_mib),
                disk_mib: c.max_disk_mib,
            },
            agents: c.max_agents,
        }
    }
}

/// What the host has promised to running agents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reserved {
    pub resources: Resources,
    pub agents: u32,
}

/// Resources left under `caps` after `reserved`.
pub fn free(caps: &Caps, reserved: &Reserved) -> (Resources, u32) {
    (
        Resources {
            cpu_millis: caps
                .resources
                .cpu_millis
                .saturating_sub(reserved.resources.cpu_millis),
            memory_mib: caps
                .resources
                .memory_mib
                .saturating_sub(reserved.resources.memory_mib),
            disk_mib: caps
                .resources
                .disk_mib
                .saturating_sub(reserved.resources.disk_mib),
        },
        caps.agents.saturating_sub(reserved.agents),
    )
}

/// The host's price list from config: one class per offered runtime,
/// covering anything up to the host's caps.
pub fn price_list(cfg: &NodeConfig, caps: &Caps, runtimes: &[RuntimeOffer]) -> PriceList {
    let p = &cfg.capacity.prices;
    PriceList {
        currency: p.currency.clone(),
        classes: runtimes
            .iter()
            .map(|r| ClassPrice {
                class: "standard".into(),
                runtime: r.kind,
                max: caps.resources,
                cents_per_hour: match r.kind {
                    RuntimeKind::Wasi => p.wasi_cents_per_hour,
                    RuntimeKind::Openclaw => p.openclaw_cents_per_hour,
                },
            })
            .collect(),
        models: cfg
            .llm
            .models
            .iter()
            .map(|m| ModelPrice {
                model: m.clone(),
                cents_per_1k_tokens: p.cents_per_1k_tokens,
            })
            .collect(),
    }
}

/// This host's advert at `now`, signed. `seq` must grow with every call
/// (the publisher uses milliseconds since the epoch, bumped if needed).
#[allow(clippy::too_many_arguments)]
pub fn sign_advert(
    key: &sparebox_protocol::identity::Keypair,
    cfg: &NodeConfig,
    caps: &Caps,
    reserved: &Reserved,
    runtimes: &[RuntimeOffer],
    addresses: Vec<String>,
    seq: u64,
    now: u64,
) -> Result<Vec<u8>, sparebox_protocol::SealError> {
    use sparebox_protocol::{Envelope, Message};
    let (free, slots) = free(caps, reserved);
    let advert = CapacityAdvert {
        version: CapacityAdvert::VERSION,
        node: key.public(),
        seq,
        timestamp: now,
        ttl_secs: cfg.network.advert_ttl_secs,
        addresses,
        free,
        free_agent_slots: slots,
        runtimes: runtimes.to_vec(),
        prices: price_list(cfg, caps, runtimes),
        labels: cfg.capacity.labels.clone(),
        region: cfg.capacity.region.clone(),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    Ok(Envelope::seal(&advert, key)?.to_bytes())
}
