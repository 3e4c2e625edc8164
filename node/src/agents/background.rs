//! The background loop: usage reports, scheduled ticks, task retention and
//! gauges, once a second.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::billing::{Spend, Subject};
use crate::metrics::StateLabels;
use sparebox_protocol::{UsageCounters, now_secs};

use super::tasks::TaskRecord;
use super::{AgentRecord, Agents, State, TASK_RETENTION_SECS};

/// Whether a scheduled agent is due a tick.
pub fn tick_due(last_tick_at: u64, every_secs: u64, now: u64) -> bool {
    now >= last_tick_at.saturating_add(every_secs.max(1))
}

impl Agents {
    /// Background duties, every second: scheduled ticks, usage metering of
    /// running agents, and expiry of old tasks and nonces.
    pub async fn run_background(self: Arc<Self>) {
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_meter = Instant::now();
        let mut last_report = Instant::now();
        let mut last_purge = Instant::now();
        let report_every = self.cfg.billing.report_interval;
        let meter_every = report_every.min(Duration::from_secs(10)).as_secs().max(1);
        loop {
            interval.tick().await;
            let now = now_secs();
            let records = self.snapshot();
            for r in &records {
                if r.state == State::Running
                    && let Some(every) = r.schedule_every_secs
                    && tick_due(r.last_tick_at, every, now)
                {
                    self.tick(&r.agent_id, now).await;
                }
            }
            let secs = last_meter.elapsed().as_secs();
            if secs >= meter_every {
                last_meter += Duration::from_secs(secs);
                for r in records.iter().filter(|r| r.state == State::Running) {
                    // Process agents are metered from their samples; WASI
                    // agents by reservation (their CPU is counted per task).
                    let (cpu_ms, mib) = match self.sample(r) {
                        Some(s) => (
                            (f64::from(s.cpu_percent) * 10.0 * secs as f64) as u64,
                            s.rss_bytes >> 20,
                        ),
                        None => (0, u64::from(r.resources.resources.memory_mib)),
                    };
                    let _ = self.meter.add(
                        &r.offer_id,
                        UsageCounters {
                            wall_secs: secs,
                            cpu_ms,
                            memory_mib_secs: secs * mib,
                            ..Default::default()
                        },
                    );
                }
            }
            if last_report.elapsed() >= report_every {
                last_report = Instant::now();
                self.report_usage(&records, now).await;
            }
            if last_purge.elapsed() >= Duration::from_secs(600) {
                last_purge = Instant::now();
                self.purge(now);
            }
        }
    }

    /// Signs and queues each paid agreement's usage report; warns near the
    /// cap and stops an agent before it would run past it.
    pub(super) async fn report_usage(&self, records: &[AgentRecord], now: u64) {
        for r in records {
            let Some(paid) = &r.paid else { continue };
            let usage = self.meter.get(&r.offer_id).unwrap_or_default();
            let running = r.state == State::Running;
            let subject = Subject {
                offer_id: r.offer_id,
                deployer: r.deployer,
                agent_id: &r.agent_id,
            };
            match self.billing.report(paid, &subject, usage, running, now) {
                Ok(Spend::Ok) => {}
                Ok(Spend::Warn { spent, cap }) => tracing::warn!(
                    agent = %r.agent_id,
                    spent, cap,
                    "the agreement has spent {spent} of its {cap} cents; it will be stopped before it runs past the cap"
                ),
                Ok(Spend::Exhausted { spent, cap }) => {
                    tracing::warn!(agent = %r.agent_id, spent, cap, "voucher exhausted: stopping the agent");
                    if let Ok(rt) = self.runtime(r.runtime) {
                        let _ = rt.stop(&r.agent_id).await;
                    }
                    let _ = self.set_state(
                        &r.agent_id,
                        State::Stopped,
                        Some(format!(
                            "voucher_exhausted: spent {spent} of {cap} cents; deploy with a new voucher to continue"
                        )),
                    );
                    self.changed.notify_one();
                }
                Err(e) => tracing::error!(agent = %r.agent_id, "cannot queue a usage report: {e}"),
            }
        }
    }

    pub(super) async fn tick(&self, agent_id: &str, now: u64) {
        // Record the tick first: a tick missed while the node was down fires
        // once after restart, never in a burst.
        {
            let mut records = self.records.write().unwrap_or_else(|p| p.into_inner());
            if let Some(r) = records.get_mut(agent_id) {
                r.last_tick_at = now;
                let _ = self.save(r);
            }
        }
        match self.wasm.tick(agent_id).await {
            Ok(_) => tracing::debug!(agent = %agent_id, "tick"),
            Err(e) => tracing::warn!(agent = %agent_id, code = e.code(), "tick failed: {e}"),
        }
    }

    pub(super) fn purge(&self, now: u64) {
        for (k, v) in self.trees.nonces.iter().flatten() {
            let keep = <[u8; 8]>::try_from(v.as_ref()).map_or(0, u64::from_be_bytes);
            if keep < now {
                let _ = self.trees.nonces.remove(k);
            }
        }
        for (k, v) in self.trees.tasks.iter().flatten() {
            let old = serde_json::from_slice::<TaskRecord>(&v)
                .map_or(true, |t| t.created_at + TASK_RETENTION_SECS < now);
            if old {
                let _ = self.trees.tasks.remove(k);
            }
        }
    }

    /// Sets the agents-by-state gauges (before a metrics scrape).
    pub fn update_gauges(&self) {
        let mut counts: HashMap<&'static str, i64> =
            HashMap::from([("running", 0), ("stopped", 0), ("failed", 0)]);
        for r in self
            .records
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            *counts.entry(r.state.as_str()).or_default() += 1;
        }
        let deploying = self
            .deploying
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len() as i64;
        counts.insert("deploying", deploying);
        for r in self
            .records
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            if let Some(q) = self.wasm.queue_depth(&r.agent_id) {
                let l = crate::metrics::AgentLabels {
                    agent: r.agent_id.clone(),
                };
                let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
                self.metrics
                    .agent_tasks_running
                    .get_or_create(&l)
                    .set(n(q.running));
                self.metrics
                    .agent_tasks_waiting
                    .get_or_create(&l)
                    .set(n(q.waiting));
            }
            if let Some(smp) = self.sample(r) {
                let l = crate::metrics::AgentLabels {
                    agent: r.agent_id.clone(),
                };
                self.metrics
                    .agent_rss
                    .get_or_create(&l)
                    .set(smp.rss_bytes as i64);
                self.metrics
                    .agent_cpu
                    .get_or_create(&l)
                    .set(f64::from(smp.cpu_percent));
            }
        }
        for (state, n) in counts {
            self.metrics
                .agents
                .get_or_create(&StateLabels {
                    state: state.into(),
                })
                .set(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn a_missed_tick_fires_once() {
        // Every 4h; the node was down for 10h.
        let every = 4 * 3600;
        assert!(!tick_due(1000, every, 1000 + every - 1));
        assert!(tick_due(1000, every, 1000 + every));
        let now = 1000 + 10 * 3600;
        assert!(tick_due(1000, every, now));
        // After it fires, last_tick_at = now, so the next is `every` later.
        assert!(!tick_due(now, every, now + 1));
    }
}
