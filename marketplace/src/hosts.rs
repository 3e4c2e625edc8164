//! The host index: adverts heard over libp2p gossip (and sync on connect),
//! verified and expired by TTL exactly as a node does it, since it is the
//! node's own [`AdvertIndex`]. The marketplace joins the network as a peer
//! through `sparebox_node::network` and answers deploy and control requests
//! with `not_a_host`.
//!
//! [`HostIndex::search`] filters (runtime, minimum CPU and memory, maximum
//! price, label), sorts and pages without copying the index.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sparebox_node::adverts::{AdvertIndex, AdvertView, Verdict};
use sparebox_node::identity::PublicKey;
use sparebox_node::network::Inbound;
use sparebox_node::protocol::rpc::{
    ArtifactRequest, ArtifactResponse, ControlRequest, ControlResponse, DeployRequest,
    DeployResponse, Rejection, SyncResponse,
};
use sparebox_node::protocol::{CapacityAdvert, RuntimeKind, now_secs};

/// How to order search results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    /// Cheapest hourly price first (for the runtime asked, or any).
    #[default]
    Price,
    /// Most free CPU first.
    Cpu,
    /// Most free memory first.
    Memory,
    /// Most recently advertised first.
    Seen,
    /// Longest known first.
    Age,
}

/// Search filters, as query parameters of `GET /api/v1/hosts`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Query {
    pub runtime: Option<RuntimeKind>,
    /// Free CPU, in millicores.
    pub min_cpu: Option<u32>,
    pub min_memory_mib: Option<u32>,
    /// Hourly price in cents, for `runtime` (or the cheapest class).
    pub max_price: Option<u64>,
    /// `key=value` (or just `key`) the host's labels must contain.
    pub label: Option<String>,
    /// Only hosts whose latest advert is at most this many seconds old.
    pub seen_within_secs: Option<u64>,
    pub sort: Option<Sort>,
    /// 1-based.
    pub page: Option<usize>,
    /// At most 100; default 20.
    pub per_page: Option<usize>,
}

/// One host in search results and the detail view.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostView {
    #[serde(flatten)]
    pub advert: AdvertView,
    /// The lowest hourly price over the runtime asked (or all classes).
    pub price_cents_per_hour: Option<u64>,
    pub first_seen: u64,
    pub last_seen: u64,
}

/// One page of results.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    pub hosts: Vec<HostView>,
    pub total: usize,
    pub page: usize,
    pub per_page: usize,
}

/// Hosts as the marketplace knows them.
#[derive(Debug)]
pub struct HostIndex {
    pub adverts: Arc<AdvertIndex>,
}

fn price_of(a: &CapacityAdvert, runtime: Option<RuntimeKind>) -> Option<u64> {
    a.prices
        .classes
        .iter()
        .filter(|c| runtime.is_none_or(|r| c.runtime == r))
        .map(|c| c.cents_per_hour)
        .min()
}

impl HostIndex {
    pub fn new(max_skew_secs: u64) -> HostIndex {
        HostIndex {
            adverts: Arc::new(AdvertIndex::new(None, max_skew_secs)),
        }
    }

    /// Filters, sorts and pages the live hosts.
    pub fn search(&self, q: &Query, now: u64) -> Result<Page, String> {
        let per_page = q.per_page.unwrap_or(20);
        if !(1..=100).contains(&per_page) {
            return Err(format!("per_page must be 1 to 100, not {per_page}"));
        }
        let page = q.page.unwrap_or(1).max(1);
        let label = q.label.as_deref().map(|l| match l.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), Some(v.trim().to_string())),
            None => (l.trim().to_string(), None),
        });
        // Matching hosts as (sort key, node) so nothing big is copied yet.
        let sort = q.sort.unwrap_or_default();
        let mut hits: Vec<((u64, u64), PublicKey)> = self.adverts.query(now, |a, first_seen| {
            if let Some(r) = q.runtime
                && !a.runtimes.iter().any(|o| o.kind == r)
            {
                return None;
            }
            if q.min_cpu.is_some_and(|m| a.free.cpu_millis < m)
                || q.min_memory_mib.is_some_and(|m| a.free.memory_mib < m)
                || q.seen_within_secs
                    .is_some_and(|s| a.timestamp.saturating_add(s) < now)
            {
                return None;
            }
            let price = price_of(a, q.runtime);
            if let Some(max) = q.max_price
                && price.is_none_or(|p| p > max)
            {
                return None;
            }
            if let Some((k, v)) = &label {
                match (a.labels.get(k), v) {
                    (None, _) => return None,
                    (Some(have), Some(want)) if have != want => return None,
                    _ => {}
                }
            }
            let key = match sort {
                Sort::Price => (price.unwrap_or(u64::MAX), 0),
                Sort::Cpu => (u64::MAX - u64::from(a.free.cpu_millis), 0),
                Sort::Memory => (u64::MAX - u64::from(a.free.memory_mib), 0),
                Sort::Seen => (u64::MAX - a.timestamp, 0),
                Sort::Age => (first_seen, 0),
            };
            Some(((key.0, key.1), a.node))
        });
        hits.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        let total = hits.len();
        let start = (page - 1).saturating_mul(per_page).min(total);
        let end = (start + per_page).min(total);
        let hosts = hits[start..end]
            .iter()
            .filter_map(|(_, node)| self.get(node, q.runtime, now))
            .collect();
        Ok(Page {
            hosts,
            total,
            page,
            per_page,
        })
    }

    /// One live host.
    pub fn get(
        &self,
        node: &PublicKey,
        runtime: Option<RuntimeKind>,
        now: u64,
    ) -> Option<HostView> {
        self.adverts
            .query(now, |a, first_seen| {
                (a.node == *node).then(|| HostView {
                    advert: AdvertView::from_advert(a),
                    price_cents_per_hour: price_of(a, runtime),
                    first_seen,
                    last_seen: a.timestamp,
                })
            })
            .pop()
    }

    /// Live hosts and their free capacity in total (for the landing page).
    pub fn totals(&self, now: u64) -> (usize, u64, u64) {
        let v = self.adverts.query(now, |a, _| {
            Some((u64::from(a.free.cpu_millis), u64::from(a.free.memory_mib)))
        });
        (
            v.len(),
            v.iter().map(|x| x.0).sum(),
            v.iter().map(|x| x.1).sum(),
        )
    }
}

/// The marketplace as a network peer: it collects adverts and hosts nothing.
#[async_trait::async_trait]
impl Inbound for HostIndex {
    fn validate_advert(&self, author: Option<PublicKey>, bytes: &[u8]) -> Verdict {
        self.adverts.validate_gossip(author, bytes, now_secs())
    }
    fn synced(&self, _from: PublicKey, reply: SyncResponse) {
        for a in reply.adverts {
            let _ = self.adverts.insert_synced(&a, now_secs());
        }
    }
    fn sync(&self) -> SyncResponse {
        SyncResponse {
            adverts: self
                .adverts
                .snapshot(now_secs())
                .into_iter()
                .map(Into::into)
                .collect(),
        }
    }
    async fn deploy(&self, _from: PublicKey, _req: DeployRequest) -> DeployResponse {
        DeployResponse::Rejected(Rejection::new("not_a_host", "this peer is a marketplace"))
    }
    async fn control(&self, _from: PublicKey, _req: ControlRequest) -> ControlResponse {
        ControlResponse::Rejected(Rejection::new("not_a_host", "this peer is a marketplace"))
    }
    async fn artifact(&self, _from: PublicKey, _req: ArtifactRequest) -> ArtifactResponse {
        ArtifactResponse::NotFound
    }
}
