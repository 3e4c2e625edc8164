//! The host index: adverts heard over libp2p gossip (and sync on connect),
//! verified and expired by TTL exactly as a node does it, since it is the
//! node's own [`AdvertIndex`]. The marketplace joins the network as a peer
//! through `sparebox_network`, answers deploy and control requests
//! with `not_a_host`, and serves components uploaded for web deployments
//! to the hosts they were offered to.
//!
//! [`HostIndex::search`] filters (runtime, minimum CPU and memory, maximum
//! price, label), sorts and pages without copying the index.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sparebox_network::Inbound;
use sparebox_network::adverts::{AdvertIndex, AdvertView, Verdict};
use sparebox_protocol::identity::PublicKey;
use sparebox_protocol::rpc::{
    ArtifactRequest, ArtifactResponse, ControlRequest, ControlResponse, DeployRequest,
    DeployResponse, Rejection, SyncResponse,
};
use sparebox_protocol::{CapacityAdvert, RuntimeKind, now_secs};

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

/// A search the index cannot answer.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("per_page must be 1 to 100, not {0}")]
    PerPage(usize),
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
    /// Components uploaded for web deployments, served to their hosts.
    uploads: Option<Arc<crate::deployments::Deployments>>,
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
            uploads: None,
        }
    }

    /// Also answer artifact requests from `uploads`.
    pub fn serving(mut self, uploads: Arc<crate::deployments::Deployments>) -> HostIndex {
        self.uploads = Some(uploads);
        self
    }

    /// Filters, sorts and pages the live hosts.
    pub fn search(&self, q: &Query, now: u64) -> Result<Page, SearchError> {
        let per_page = q.per_page.unwrap_or(20);
        if !(1..=100).contains(&per_page) {
            return Err(SearchError::PerPage(per_page));
        }
        let page = q.page.unwrap_or(1).max(1);
        let label = q.label.as_deref().map(|l| match l.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), Some(v.trim().to_string())),
            None => (l.trim().to_string(), None),
        });
        // Matching hosts as (sort key, node) so nothing big is copied yet.
        let sort = q.sort.unwrap_or_default();
        let mut hits: Vec<(u64, PublicKey)> = self.adverts.query(now, |a, first_seen| {
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
                Sort::Price => price.unwrap_or(u64::MAX),
                Sort::Cpu => u64::MAX - u64::from(a.free.cpu_millis),
                Sort::Memory => u64::MAX - u64::from(a.free.memory_mib),
                Sort::Seen => u64::MAX - a.timestamp,
                Sort::Age => first_seen,
            };
            Some((key, a.node))
        });
        let total = hits.len();
        let start = (page - 1).saturating_mul(per_page).min(total);
        let end = (start + per_page).min(total);
        // Only the first `end` need ordering: select them, then sort those.
        // By key, then by node so equal keys page stably.
        let order = |a: &(u64, PublicKey), b: &(u64, PublicKey)| a.cmp(b);
        if end > 0 && end < total {
            hits.select_nth_unstable_by(end - 1, order);
        }
        hits[..end].sort_unstable_by(order);
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
        self.adverts.lookup(node, now, |a, first_seen| HostView {
            advert: AdvertView::from_advert(a),
            price_cents_per_hour: price_of(a, runtime),
            first_seen,
            last_seen: a.timestamp,
        })
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
    async fn artifact(&self, from: PublicKey, req: ArtifactRequest) -> ArtifactResponse {
        match &self.uploads {
            Some(u) => u.artifact(from, &req),
            None => ArtifactResponse::NotFound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparebox_protocol::identity::Keypair;
    use sparebox_protocol::{ClassPrice, Envelope, Message, PriceList, Resources, RuntimeOffer};

    /// Host `i`: CPU 100·i, memory 64·i, price 10·(i mod 7), label tier=i mod 3;
    /// even hosts also offer openclaw.
    fn index(n: u64, now: u64) -> HostIndex {
        let idx = HostIndex::new(60);
        for i in 1..=n {
            let mut seed = [0u8; 32];
            seed[0] = i as u8;
            let key = Keypair::from_seed(seed);
            let free = Resources {
                cpu_millis: 100 * i as u32,
                memory_mib: 64 * i as u32,
                disk_mib: 1000,
            };
            let mut runtimes = vec![RuntimeOffer {
                kind: RuntimeKind::Wasi,
                version: "w".into(),
            }];
            if i % 2 == 0 {
                runtimes.push(RuntimeOffer {
                    kind: RuntimeKind::Openclaw,
                    version: "o".into(),
                });
            }
            let a = CapacityAdvert {
                version: CapacityAdvert::VERSION,
                node: key.public(),
                seq: 1,
                timestamp: now - i,
                ttl_secs: 600,
                addresses: vec![],
                free,
                free_agent_slots: 1,
                runtimes,
                prices: PriceList {
                    currency: "usd".into(),
                    classes: vec![ClassPrice {
                        class: "all".into(),
                        runtime: RuntimeKind::Wasi,
                        max: free,
                        cents_per_hour: 10 * (i % 7),
                    }],
                    models: vec![],
                },
                labels: [("tier".to_string(), (i % 3).to_string())].into(),
                region: None,
                agent_version: "t".into(),
            };
            let bytes = Envelope::seal(&a, &key).unwrap().to_bytes();
            assert!(idx.adverts.insert_synced(&bytes, now).unwrap());
        }
        idx
    }

    fn q(v: serde_json::Value) -> Query {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn filters_sort_and_pages() {
        let now = 10_000;
        let idx = index(40, now);
        let all = idx
            .search(&q(serde_json::json!({"per_page": 100})), now)
            .unwrap();
        assert_eq!(all.total, 40);
        let oc = idx
            .search(
                &q(serde_json::json!({"runtime": "openclaw", "per_page": 100})),
                now,
            )
            .unwrap();
        assert_eq!(oc.total, 20);
        let big = idx
            .search(
                &q(serde_json::json!({"min_cpu": 3000, "min_memory_mib": 2048, "per_page": 100})),
                now,
            )
            .unwrap();
        assert_eq!(big.total, 9, "i = 32..=40");
        assert!(big.hosts.iter().all(|h| h.advert.free.cpu_millis >= 3000));
        let cheap = idx
            .search(
                &q(serde_json::json!({"max_price": 20, "per_page": 100})),
                now,
            )
            .unwrap();
        assert!(
            cheap
                .hosts
                .iter()
                .all(|h| h.price_cents_per_hour.unwrap() <= 20)
        );
        assert_eq!(cheap.total, (1..=40).filter(|i| 10 * (i % 7) <= 20).count());
        let tier = idx
            .search(
                &q(serde_json::json!({"label": "tier=2", "per_page": 100})),
                now,
            )
            .unwrap();
        assert_eq!(tier.total, (1..=40).filter(|i| i % 3 == 2).count());
        let seen = idx
            .search(
                &q(serde_json::json!({"seen_within_secs": 5, "per_page": 100})),
                now,
            )
            .unwrap();
        assert_eq!(seen.total, 5);

        // Price ascending; CPU descending; newest advert first.
        let by_price = idx
            .search(
                &q(serde_json::json!({"sort": "price", "per_page": 100})),
                now,
            )
            .unwrap();
        let prices: Vec<u64> = by_price
            .hosts
            .iter()
            .map(|h| h.price_cents_per_hour.unwrap())
            .collect();
        assert!(prices.windows(2).all(|w| w[0] <= w[1]), "{prices:?}");
        let by_cpu = idx
            .search(&q(serde_json::json!({"sort": "cpu", "per_page": 3})), now)
            .unwrap();
        let cpus: Vec<u32> = by_cpu
            .hosts
            .iter()
            .map(|h| h.advert.free.cpu_millis)
            .collect();
        assert_eq!(cpus, [4000, 3900, 3800]);
        let by_seen = idx
            .search(&q(serde_json::json!({"sort": "seen", "per_page": 1})), now)
            .unwrap();
        assert_eq!(by_seen.hosts[0].last_seen, now - 1);

        // Pages cover everything once, in the same order as one big page.
        let mut paged = Vec::new();
        for page in 1..=5 {
            let p = idx
                .search(
                    &q(serde_json::json!({"sort": "price", "page": page, "per_page": 9})),
                    now,
                )
                .unwrap();
            paged.extend(p.hosts.into_iter().map(|h| h.advert.peer_id));
        }
        let whole: Vec<String> = by_price
            .hosts
            .into_iter()
            .map(|h| h.advert.peer_id)
            .collect();
        assert_eq!(paged, whole);
        assert!(
            idx.search(&q(serde_json::json!({"per_page": 0})), now)
                .is_err()
        );
        assert!(
            idx.search(&q(serde_json::json!({"per_page": 101})), now)
                .is_err()
        );
        // Expired adverts are gone.
        assert_eq!(
            idx.search(&q(serde_json::json!({})), now + 600)
                .unwrap()
                .total,
            0
        );
    }
}
