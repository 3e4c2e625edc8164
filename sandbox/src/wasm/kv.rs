//! The `kv` capability's storage: a sled tree per agent with byte and key quotas.

use std::sync::Mutex;

use crate::runtime::RuntimeError;

/// Longest key, in bytes.
pub const MAX_KEY: usize = 256;
/// Largest value, in bytes.
pub const MAX_VALUE: usize = 64 * 1024;

/// Why a KV operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvRefusal {
    QuotaExceeded,
    TooLarge,
    Other(String),
}

/// One agent's key-value store.
#[derive(Debug)]
pub struct KvStore {
    tree: sled::Tree,
    max_bytes: u64,
    max_keys: u64,
    /// (bytes, keys) in use; writes hold the lock so quotas are exact.
    usage: Mutex<(u64, u64)>,
}

impl KvStore {
    /// Opens the agent's tree `kv/<agent>` and counts what it holds.
    pub fn open(
        db: &sled::Db,
        agent: &str,
        max_bytes: u64,
        max_keys: u64,
    ) -> Result<Self, RuntimeError> {
        let tree = db
            .open_tree(format!("kv/{agent}"))
            .map_err(|source| RuntimeError::Storage {
                op: "open kv tree",
                source,
            })?;
        let (mut bytes, mut keys) = (0u64, 0u64);
        for item in tree.iter() {
            let (k, v) = item.map_err(|source| RuntimeError::Storage {
                op: "scan kv tree",
                source,
            })?;
            bytes += (k.len() + v.len()) as u64;
            keys += 1;
        }
        Ok(KvStore {
            tree,
            max_bytes,
            max_keys,
            usage: Mutex::new((bytes, keys)),
        })
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvRefusal> {
        if key.len() > MAX_KEY {
            return Err(KvRefusal::TooLarge);
        }
        self.tree
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| KvRefusal::Other(e.to_string()))
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), KvRefusal> {
        if key.len() > MAX_KEY || value.len() > MAX_VALUE {
            return Err(KvRefusal::TooLarge);
        }
        let mut usage = self
            .usage
            .lock()
            .map_err(|_| KvRefusal::Other("lock poisoned".into()))?;
        let old = self
            .tree
            .get(key)
            .map_err(|e| KvRefusal::Other(e.to_string()))?;
        let old_size = old.as_ref().map_or(0, |v| (key.len() + v.len()) as u64);
        let new_bytes = usage.0 - old_size + (key.len() + value.len()) as u64;
        let new_keys = usage.1 + u64::from(old.is_none());
        if new_bytes > self.max_bytes || new_keys > self.max_keys {
            return Err(KvRefusal::QuotaExceeded);
        }
        self.tree
            .insert(key, value)
            .map_err(|e| KvRefusal::Other(e.to_string()))?;
        *usage = (new_bytes, new_keys);
        Ok(())
    }

    pub fn delete(&self, key: &str) -> Result<(), KvRefusal> {
        let mut usage = self
            .usage
            .lock()
            .map_err(|_| KvRefusal::Other("lock poisoned".into()))?;
        if let Some(v) = self
            .tree
            .remove(key)
            .map_err(|e| KvRefusal::Other(e.to_string()))?
        {
            *usage = (usage.0 - (key.len() + v.len()) as u64, usage.1 - 1);
        }
        Ok(())
    }

    /// Keys with `prefix`, at most 1000.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, KvRefusal> {
        self.tree
            .scan_prefix(prefix)
            .keys()
            .take(1000)
            .map(|k| {
                k.map(|k| String::from_utf8_lossy(&k).into_owned())
                    .map_err(|e| KvRefusal::Other(e.to_string()))
            })
            .collect()
    }

    /// (bytes, keys) in use.
    pub fn usage(&self) -> (u64, u64) {
        self.usage.lock().map(|u| *u).unwrap_or((0, 0))
    }

    /// Deletes everything (on undeploy).
    pub fn clear(&self) -> Result<(), RuntimeError> {
        self.tree.clear().map_err(|source| RuntimeError::Storage {
            op: "clear kv tree",
            source,
        })?;
        if let Ok(mut u) = self.usage.lock() {
            *u = (0, 0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_is_exact_at_the_edge() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let kv = KvStore::open(&db, "a", 10, 2).unwrap();
        kv.set("k", b"123456789").unwrap(); // 10 bytes: exactly the quota
        assert_eq!(kv.set("k2", b""), Err(KvRefusal::QuotaExceeded));
        kv.set("k", b"12345678").unwrap(); // overwrite shrinks
        assert_eq!(kv.usage(), (9, 1));
        kv.delete("k").unwrap();
        assert_eq!(kv.usage(), (0, 0));
        kv.set("a", b"").unwrap();
        kv.set("b", b"").unwrap();
        assert_eq!(kv.set("c", b""), Err(KvRefusal::QuotaExceeded), "key quota");
        let reopened = KvStore::open(&db, "a", 10, 2).unwrap();
        assert_eq!(reopened.usage(), (2, 2));
    }
}
