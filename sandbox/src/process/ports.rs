//! Port allocation for process agents: base 19001, step 120 (an OpenClaw
//! gateway uses a block of ports above its base). Allocations persist in a
//! sled tree, ports already in use on 127.0.0.1 are skipped, and a port is
//! freed on undeploy.

use crate::runtime::RuntimeError;

pub const BASE: u16 = 19001;
pub const STEP: u16 = 120;

/// The allocator; one per node.
#[derive(Debug, Clone)]
pub struct Ports {
    tree: sled::Tree,
    base: u16,
    step: u16,
}

fn storage(op: &'static str) -> impl Fn(sled::Error) -> RuntimeError {
    move |source| RuntimeError::Storage { op, source }
}

fn free_on_loopback(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

impl Ports {
    pub fn open(db: &sled::Db) -> Result<Ports, RuntimeError> {
        Self::with_range(db, BASE, STEP)
    }

    pub fn with_range(db: &sled::Db, base: u16, step: u16) -> Result<Ports, RuntimeError> {
        Ok(Ports {
            tree: db.open_tree("ports").map_err(storage("open ports"))?,
            base,
            step,
        })
    }

    /// The port held by `agent`, allocating the lowest free slot if none.
    pub fn allocate(&self, agent: &str) -> Result<u16, RuntimeError> {
        if let Some(p) = self.get(agent)? {
            return Ok(p);
        }
        let taken: Vec<u16> = self
            .tree
            .iter()
            .values()
            .flatten()
            .filter_map(|v| <[u8; 2]>::try_from(v.as_ref()).ok().map(u16::from_be_bytes))
            .collect();
        let mut port = self.base;
        loop {
            if !taken.contains(&port) && free_on_loopback(port) {
                self.tree
                    .insert(agent.as_bytes(), &port.to_be_bytes())
                    .map_err(storage("save port"))?;
                self.tree.flush().map_err(storage("flush ports"))?;
                return Ok(port);
            }
            port = port
                .checked_add(self.step)
                .ok_or(RuntimeError::NoFreePort)?;
        }
    }

    pub fn get(&self, agent: &str) -> Result<Option<u16>, RuntimeError> {
        Ok(self
            .tree
            .get(agent.as_bytes())
            .map_err(storage("read port"))?
            .and_then(|v| <[u8; 2]>::try_from(v.as_ref()).ok().map(u16::from_be_bytes)))
    }

    pub fn free(&self, agent: &str) -> Result<(), RuntimeError> {
        self.tree
            .remove(agent.as_bytes())
            .map_err(storage("free port"))?;
        self.tree.flush().map_err(storage("flush ports"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_in_steps_skips_taken_ports_and_reuses_freed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        // A base far from the real one, with the second slot occupied.
        let base = 41001;
        let _busy = std::net::TcpListener::bind(("127.0.0.1", base + 7)).unwrap();
        let ports = Ports::with_range(&db, base, 7).unwrap();
        assert_eq!(ports.allocate("a").unwrap(), base);
        assert_eq!(ports.allocate("a").unwrap(), base, "stable per agent");
        assert_eq!(
            ports.allocate("b").unwrap(),
            base + 14,
            "skips the port in use"
        );
        ports.free("a").unwrap();
        assert_eq!(ports.allocate("c").unwrap(), base, "a freed port is reused");
        drop(ports);
        let again = Ports::with_range(&db, base, 7).unwrap();
        assert_eq!(again.get("b").unwrap(), Some(base + 14), "persisted");
    }
}
