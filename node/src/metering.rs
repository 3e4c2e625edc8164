//! Per-agreement usage counters: wall seconds, CPU ms, memory MiB·s,
//! tokens and tasks. They only grow, are persisted in the sled tree
//! `usage` (keyed by offer id), and feed the signed `UsageReport`s.
//!
//! What each counter measures for a WASI agent:
//! - `wall_secs`: seconds the agent was deployed and running;
//! - `cpu_ms`: task execution time (a task runs on one core while it runs,
//!   so its wall time is its CPU time, including time spent waiting on
//!   host calls such as LLM requests);
//! - `memory_mib_secs`: the agent's reserved memory × running seconds;
//! - `tokens` and `tasks`: LLM tokens used and tasks completed or failed.

use crate::store::{Store, StoreError};
use sparebox_protocol::{Id, UsageCounters};

/// The usage counters of every agreement on this node.
#[derive(Debug, Clone)]
pub struct Meter {
    tree: sled::Tree,
}

fn op(op: &'static str) -> impl Fn(sled::Error) -> StoreError {
    move |source| StoreError::Op { op, source }
}

impl Meter {
    pub fn open(store: &Store) -> Result<Meter, StoreError> {
        Ok(Meter {
            tree: store.tree("usage")?,
        })
    }

    /// The counters of one agreement (zero if none yet).
    pub fn get(&self, offer: &Id) -> Result<UsageCounters, StoreError> {
        Ok(self
            .tree
            .get(offer.0)
            .map_err(op("read usage"))?
            .and_then(|v| postcard::from_bytes(&v).ok())
            .unwrap_or_default())
    }

    /// Adds to one agreement's counters atomically.
    pub fn add(&self, offer: &Id, delta: UsageCounters) -> Result<UsageCounters, StoreError> {
        let updated = self
            .tree
            .update_and_fetch(offer.0, |old| {
                let mut c: UsageCounters = old
                    .and_then(|v| postcard::from_bytes(v).ok())
                    .unwrap_or_default();
                c.wall_secs = c.wall_secs.saturating_add(delta.wall_secs);
                c.cpu_ms = c.cpu_ms.saturating_add(delta.cpu_ms);
                c.memory_mib_secs = c.memory_mib_secs.saturating_add(delta.memory_mib_secs);
                c.tokens = c.tokens.saturating_add(delta.tokens);
                c.tasks = c.tasks.saturating_add(delta.tasks);
                Some(sparebox_protocol::encode(&c))
            })
            .map_err(op("update usage"))?;
        Ok(updated
            .and_then(|v| postcard::from_bytes(&v).ok())
            .unwrap_or_default())
    }

    /// Totals over every agreement on this node.
    pub fn totals(&self) -> UsageCounters {
        let mut t = UsageCounters::default();
        for (_, v) in self.tree.iter().flatten() {
            if let Ok(c) = postcard::from_bytes::<UsageCounters>(&v) {
                t.wall_secs += c.wall_secs;
                t.cpu_ms += c.cpu_ms;
                t.memory_mib_secs += c.memory_mib_secs;
                t.tokens += c.tokens;
                t.tasks += c.tasks;
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let id = Id([7; 16]);
        {
            let store = Store::open(dir.path()).unwrap();
            let m = Meter::open(&store).unwrap();
            m.add(
                &id,
                UsageCounters {
                    tasks: 1,
                    tokens: 30,
                    cpu_ms: 5,
                    ..Default::default()
                },
            )
            .unwrap();
            let c = m
                .add(
                    &id,
                    UsageCounters {
                        tasks: 1,
                        wall_secs: 10,
                        memory_mib_secs: 640,
                        ..Default::default()
                    },
                )
                .unwrap();
            assert_eq!(
                c,
                UsageCounters {
                    wall_secs: 10,
                    cpu_ms: 5,
                    memory_mib_secs: 640,
                    tokens: 30,
                    tasks: 2
                }
            );
            store.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let m = Meter::open(&store).unwrap();
        assert_eq!(m.get(&id).unwrap().tasks, 2);
        assert_eq!(m.totals().tokens, 30);
    }
}
