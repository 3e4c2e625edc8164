//! The node's sled database, in `<data-dir>/db`.
//!
//! Trees (each later subsystem adds its own here, documented in one place):
//!
//! | tree | key | value | written by |
//! |---|---|---|---|
//! | `meta` | `starts` | u64 big-endian: how many times the node started | [`Store::record_start`] |
//! | `meta` | `schema` | u16 big-endian: store layout version | [`Store::open`] |
//!
//! Writes that must survive a crash are flushed before the node replies.

use std::path::{Path, PathBuf};

/// The store layout version this build writes.
pub const SCHEMA_VERSION: u16 = 1;

/// Errors from the store, naming the operation and path.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot open the database {path}: another sparebox node may be using this data dir ({source})"
    )]
    Locked { path: PathBuf, source: sled::Error },
    #[error("cannot open the database {path}: {source}")]
    Open { path: PathBuf, source: sled::Error },
    #[error(
        "database {path} has layout version {found}, newer than this build understands ({SCHEMA_VERSION})"
    )]
    NewerSchema { path: PathBuf, found: u16 },
    #[error("database operation `{op}` failed: {source}")]
    Op {
        op: &'static str,
        source: sled::Error,
    },
    #[error("database transaction `{op}` was aborted")]
    Aborted { op: &'static str },
    #[error("cannot encode {what} for the database: {source}")]
    Encode {
        what: &'static str,
        source: serde_json::Error,
    },
}

impl StoreError {
    /// The error of a failed sled transaction that never aborts on purpose.
    pub fn transaction(
        op: &'static str,
    ) -> impl Fn(sled::transaction::TransactionError<()>) -> StoreError {
        move |e| match e {
            sled::transaction::TransactionError::Storage(source) => StoreError::Op { op, source },
            sled::transaction::TransactionError::Abort(()) => StoreError::Aborted { op },
        }
    }

    /// The error of a value that could not be encoded as JSON.
    pub fn encode(what: &'static str) -> impl Fn(serde_json::Error) -> StoreError {
        move |source| StoreError::Encode { what, source }
    }
}

/// The node's database.
#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) the database under `data_dir/db`.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let path = data_dir.join("db");
        let db = sled::Config::new().path(&path).open().map_err(|source| {
            let locked = matches!(&source, sled::Error::Io(e) if e.kind() == std::io::ErrorKind::WouldBlock)
                || source.to_string().contains("lock");
            if locked {
                StoreError::Locked { path: path.clone(), source }
            } else {
                StoreError::Open { path: path.clone(), source }
            }
        })?;
        let store = Store { db, path };
        let meta = store.tree("meta")?;
        match meta.get("schema").map_err(|source| StoreError::Op {
            op: "read schema",
            source,
        })? {
            Some(v) if v.len() == 2 => {
                let found = u16::from_be_bytes([v[0], v[1]]);
                if found > SCHEMA_VERSION {
                    return Err(StoreError::NewerSchema {
                        path: store.path.clone(),
                        found,
                    });
                }
            }
            _ => {
                meta.insert("schema", &SCHEMA_VERSION.to_be_bytes())
                    .map_err(|source| StoreError::Op {
                        op: "write schema",
                        source,
                    })?;
            }
        }
        Ok(store)
    }

    /// Opens a named tree.
    pub fn tree(&self, name: &'static str) -> Result<sled::Tree, StoreError> {
        self.db.open_tree(name).map_err(|source| StoreError::Op {
            op: "open tree",
            source,
        })
    }

    /// Counts a node start and returns the new count (flushed).
    pub fn record_start(&self) -> Result<u64, StoreError> {
        let meta = self.tree("meta")?;
        let next = meta
            .update_and_fetch("starts", |old| {
                let n = old
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map_or(0, u64::from_be_bytes);
                Some((n + 1).to_be_bytes().to_vec())
            })
            .map_err(|source| StoreError::Op {
                op: "count start",
                source,
            })?
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map_or(0, u64::from_be_bytes);
        self.flush()?;
        Ok(next)
    }

    /// Flushes every pending write to disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db
            .flush()
            .map(|_| ())
            .map_err(|source| StoreError::Op {
                op: "flush",
                source,
            })
    }

    /// The sled database (the WASI runtime keeps agents' KV trees in it).
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_count_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            assert_eq!(s.record_start().unwrap(), 1);
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.record_start().unwrap(), 2);
    }

    #[test]
    fn refuses_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.tree("meta")
                .unwrap()
                .insert("schema", &99u16.to_be_bytes())
                .unwrap();
            s.flush().unwrap();
        }
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::NewerSchema { found: 99, .. })
        ));
    }
}
