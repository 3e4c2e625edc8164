//! Agent records: the in-memory copy of the `agents` tree, the views and
//! totals read from it, and the earnings summary for the dashboard.

use crate::capacity::Reserved;
use crate::store::StoreError;
use sparebox_protocol::rpc::AgentView;
use sparebox_protocol::{ResourceRequest, UsageCounters};

use super::{AgentRecord, Agents, State, db};

impl Agents {
    /// A copy of every agent record, so no lock is held across awaits.
    pub(super) fn snapshot(&self) -> Vec<AgentRecord> {
        self.records
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub(super) fn record(&self, id: &str) -> Option<AgentRecord> {
        self.records
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    pub(super) fn save(&self, r: &AgentRecord) -> Result<(), StoreError> {
        let json = serde_json::to_vec(r).map_err(StoreError::encode("agent"))?;
        self.trees
            .agents
            .insert(r.agent_id.as_bytes(), json)
            .map_err(db("write agent"))?;
        self.trees.agents.flush().map_err(db("flush"))?;
        Ok(())
    }

    pub(super) fn set_state(
        &self,
        id: &str,
        state: State,
        reason: Option<String>,
    ) -> Result<(), StoreError> {
        let mut records = self.records.write().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = records.get_mut(id) {
            r.state = state;
            r.reason = reason;
            self.save(r)?;
        }
        Ok(())
    }

    pub(super) fn view(&self, r: &AgentRecord) -> AgentView {
        AgentView {
            agent_id: r.agent_id.clone(),
            name: r.name.clone(),
            runtime: r.runtime,
            state: r.state.as_str().to_string(),
            reason: r.reason.clone(),
            deployer: r.deployer.to_string(),
            offer_id: r.offer_id,
            created_at: r.created_at,
            usage: self.meter.get(&r.offer_id).unwrap_or_default(),
            cpu_percent: self.sample(r).map(|s| s.cpu_percent),
            rss_bytes: self.sample(r).map(|s| s.rss_bytes),
        }
    }

    /// Every agent, sorted by id.
    pub fn list(&self) -> Vec<AgentView> {
        let records = self.records.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<AgentView> = records.values().map(|r| self.view(r)).collect();
        v.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        v
    }

    /// How many agents this node holds.
    pub fn count(&self) -> usize {
        self.records.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn usage_totals(&self) -> UsageCounters {
        self.meter.totals()
    }

    pub fn tasks_completed(&self) -> u64 {
        self.tasks_done.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// What each paid agreement has earned so far, by its last signed
    /// usage report, and how many reports wait or were refused.
    pub fn earnings(&self) -> serde_json::Value {
        let records = self.records.read().unwrap_or_else(|p| p.into_inner());
        let mut total = 0u64;
        let mut rows = Vec::new();
        for r in records.values() {
            let Some(paid) = &r.paid else { continue };
            let rep = self.billing.reported(&r.offer_id);
            let charged = paid.price.charge_for(&rep.counters);
            total += charged;
            rows.push(serde_json::json!({
                "offerId": r.offer_id.to_string(),
                "agentId": r.agent_id,
                "market": paid.market_url,
                "chargedCents": charged,
                "centsPerHour": paid.price.cents_per_hour,
                "maxTotalCents": paid.cap_cents,
                "seq": rep.seq,
                "lastReportAt": rep.at,
            }));
        }
        serde_json::json!({
            "currency": "usd",
            "earnedCents": total,
            "agreements": rows,
            "pendingReports": self.billing.pending(),
            "rejectedReports": self.billing.rejected(),
        })
    }

    /// Capacity promised to agents, including those being deployed.
    pub fn reserved(&self) -> Reserved {
        let mut r = Reserved::default();
        let mut add = |req: &ResourceRequest| {
            r.resources.cpu_millis += req.resources.cpu_millis;
            r.resources.memory_mib += req.resources.memory_mib;
            r.resources.disk_mib += req.resources.disk_mib;
            r.agents += 1;
        };
        for rec in self
            .records
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            add(&rec.resources);
        }
        for req in self
            .deploying
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            add(req);
        }
        r
    }
}
