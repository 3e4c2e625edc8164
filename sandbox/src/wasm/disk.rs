//! `resources.disk_mib` as a limit: the bytes an agent keeps in its
//! read-write directories (`/workspace`, `/memory`) are capped.
//!
//! The node's own store shares the disk with every agent, so a guest that
//! could write without bound would make the host fail for every tenant.
//! Usage is what the files really take: allocated blocks, plus
//! [`ENTRY_BYTES`] for every file, directory and link (so inodes cannot be
//! exhausted with empty files either). A task that starts when none of the
//! agent's tasks is running measures it afresh; every way a guest adds to
//! the tree reserves first:
//! - bytes: `descriptor.write` (rounded up to whole blocks, so sparse
//!   writes cannot hide), the streams from `write-via-stream` and
//!   `append-via-stream`, growing a file with `set-size`;
//! - entries: `open-at` with `create`, `create-directory-at`, `symlink-at`
//!   (with its target), `link-at`.
//!
//! A reservation that would pass the cap fails inside the guest with
//! `insufficient-space` (ENOSPC), and the agent's log says why. Overwrites
//! count as new bytes until the next measurement, so the cap errs on the
//! side of refusing.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::WasiFilesystemView as _;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    Descriptor, DescriptorFlags, ErrorCode, HostDescriptor as _, OpenFlags, PathFlags,
};
use wasmtime_wasi::p2::{DynOutputStream, OutputStream, Pollable, StreamError, StreamResult};

use super::host::TaskState;
use crate::runtime::RuntimeError;

/// What one file, directory or link costs besides its data: a block.
pub const ENTRY_BYTES: u64 = 4096;

/// An agent's disk cap and what it holds.
#[derive(Debug)]
pub struct DiskQuota {
    cap: u64,
    used: AtomicU64,
    dirs: Vec<PathBuf>,
    /// Tasks of the agent running now; only the first one measures.
    tasks: AtomicU64,
}

/// A task's hold on the quota: while any is held, usage is not measured
/// again (it would drop the reservations of writes still in flight).
#[derive(Debug)]
pub struct DiskTask(Arc<super::AgentShared>);

impl Drop for DiskTask {
    fn drop(&mut self) {
        self.0.disk.tasks.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Starts a task of `agent`: measures the agent's files if no other of its
/// tasks is running.
pub fn begin(agent: &Arc<super::AgentShared>) -> DiskTask {
    if agent.disk.tasks.fetch_add(1, Ordering::SeqCst) == 0 {
        agent.disk.measure();
    }
    DiskTask(agent.clone())
}

impl DiskQuota {
    /// A cap of `cap` bytes over the files below `dirs`.
    pub fn new(cap: u64, dirs: Vec<PathBuf>) -> DiskQuota {
        let q = DiskQuota {
            cap,
            used: AtomicU64::new(0),
            dirs,
            tasks: AtomicU64::new(0),
        };
        q.measure();
        q
    }

    /// Sets the usage to what the directories hold now.
    pub fn measure(&self) {
        let total = self.dirs.iter().map(|d| size_of_dir(d)).sum();
        self.used.store(total, Ordering::SeqCst);
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }

    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// Reserves `n` bytes; `false` if that would pass the cap.
    pub fn reserve(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                u.checked_add(n).filter(|t| *t <= self.cap)
            })
            .is_ok()
    }
}

/// What the tree below `dir` takes: allocated blocks of every file, and
/// [`ENTRY_BYTES`] per entry (links are not followed).
fn size_of_dir(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            total = total.saturating_add(ENTRY_BYTES);
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) if m.is_file() => total = total.saturating_add(m.blocks() * 512),
                _ => {}
            }
        }
    }
    total
}

/// `n` rounded up to whole blocks.
fn blocks(n: u64) -> u64 {
    n.div_ceil(ENTRY_BYTES).saturating_mul(ENTRY_BYTES)
}

/// Notes a refused write in the agent's log.
fn refused(state: &TaskState, n: u64) {
    log_refusal(&state.agent, n);
}

fn log_refusal(agent: &super::AgentShared, n: u64) {
    let q = &agent.disk;
    agent.log.push(
        &agent.id,
        "warn",
        &format!(
            "disk: a write of {n} bytes refused: the agent's files hold {} of its {} bytes (resources.disk_mib)",
            q.used(),
            q.cap()
        ),
    );
}

const TYPES: &str = "wasi:filesystem/types@0.2.12";

/// Puts the quota in front of every host function that adds bytes to a
/// file. Call after the WASI filesystem is linked: these shadow it.
pub fn link(linker: &mut Linker<TaskState>) -> Result<(), RuntimeError> {
    let err = |e: wasmtime::Error| RuntimeError::Linker {
        what: "the disk quota",
        reason: format!("{e:#}"),
    };
    linker.allow_shadowing(true);
    let mut types = linker.instance(TYPES).map_err(err)?;
    types
        .func_wrap_async(
            "[method]descriptor.write",
            |mut store, (fd, buf, offset): (Resource<Descriptor>, Vec<u8>, u64)| {
                Box::new(async move {
                    let state = store.data_mut();
                    let n = blocks(buf.len() as u64);
                    if !state.agent.disk.reserve(n) {
                        refused(state, n);
                        return Ok((Err(ErrorCode::InsufficientSpace),));
                    }
                    let r = state.filesystem().write(fd, buf, offset).await;
                    Ok((code(r)?,))
                })
            },
        )
        .map_err(err)?;
    types
        .func_wrap_async(
            "[method]descriptor.write-via-stream",
            |mut store, (fd, offset): (Resource<Descriptor>, u64)| {
                Box::new(async move {
                    let state = store.data_mut();
                    let r = state.filesystem().write_via_stream(fd, offset);
                    Ok((wrap(state, code(r)?)?,))
                })
            },
        )
        .map_err(err)?;
    types
        .func_wrap_async(
            "[method]descriptor.append-via-stream",
            |mut store, (fd,): (Resource<Descriptor>,)| {
                Box::new(async move {
                    let state = store.data_mut();
                    let r = state.filesystem().append_via_stream(fd);
                    Ok((wrap(state, code(r)?)?,))
                })
            },
        )
        .map_err(err)?;
    types
        .func_wrap_async(
            "[method]descriptor.set-size",
            |mut store, (fd, size): (Resource<Descriptor>, u64)| {
                Box::new(async move {
                    let state = store.data_mut();
                    let own = Resource::<Descriptor>::new_borrow(fd.rep());
                    let now = match state.filesystem().stat(own).await {
                        Ok(s) => s.size,
                        Err(e) => return Ok((Err(e.downcast()?),)),
                    };
                    if size > now && !state.agent.disk.reserve(size - now) {
                        refused(state, size - now);
                        return Ok((Err(ErrorCode::InsufficientSpace),));
                    }
                    let r = state.filesystem().set_size(fd, size).await;
                    Ok((code(r)?,))
                })
            },
        )
        .map_err(err)?;
    types
        .func_wrap_async(
            "[method]descriptor.open-at",
            |mut store,
             (fd, path_flags, path, oflags, flags): (
                Resource<Descriptor>,
                PathFlags,
                String,
                OpenFlags,
                DescriptorFlags,
            )| {
                Box::new(async move {
                    let state = store.data_mut();
                    if oflags.contains(OpenFlags::CREATE) && !state.agent.disk.reserve(ENTRY_BYTES)
                    {
                        refused(state, ENTRY_BYTES);
                        return Ok((Err(ErrorCode::InsufficientSpace),));
                    }
                    let r = state
                        .filesystem()
                        .open_at(fd, path_flags, path, oflags, flags)
                        .await;
                    Ok((code(r)?,))
                })
            },
        )
        .map_err(err)?;
    types
        .func_wrap_async(
            "[method]descriptor.create-directory-at",
            |mut store, (fd, path): (Resource<Descriptor>, String)| {
                Box::new(async move {
                    let state = store.data_mut();
                    if !state.agent.disk.reserve(ENTRY_BYTES) {
                        refused(state, ENTRY_BYTES);
                        return Ok((Err(ErrorCode::InsufficientSpace),));
                    }
                    let r = state.filesystem().create_directory_at(fd, path).await;
                    Ok((code(r)?,))
                })
            },
        )
        .map_err(err)?;
    types
        .func_wrap_async(
            "[method]descriptor.symlink-at",
            |mut store, (fd, target, path): (Resource<Descriptor>, String, String)| {
                Box::new(async move {
                    let state = store.data_mut();
                    let n = ENTRY_BYTES + blocks(target.len() as u64);
                    if !state.agent.disk.reserve(n) {
                        refused(state, n);
                        return Ok((Err(ErrorCode::InsufficientSpace),));
                    }
                    let r = state.filesystem().symlink_at(fd, target, path).await;
                    Ok((code(r)?,))
                })
            },
        )
        .map_err(err)?;
    types
        .func_wrap_async(
            "[method]descriptor.link-at",
            |mut store,
             (fd, old_flags, old, new_fd, new): (
                Resource<Descriptor>,
                PathFlags,
                String,
                Resource<Descriptor>,
                String,
            )| {
                Box::new(async move {
                    let state = store.data_mut();
                    if !state.agent.disk.reserve(ENTRY_BYTES) {
                        refused(state, ENTRY_BYTES);
                        return Ok((Err(ErrorCode::InsufficientSpace),));
                    }
                    let r = state
                        .filesystem()
                        .link_at(fd, old_flags, old, new_fd, new)
                        .await;
                    Ok((code(r)?,))
                })
            },
        )
        .map_err(err)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// A filesystem result as the guest sees it; a trap stays a trap.
fn code<T>(r: wasmtime_wasi::p2::FsResult<T>) -> wasmtime::Result<Result<T, ErrorCode>> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(e) => Ok(Err(e.downcast()?)),
    }
}

/// Replaces a new file stream in the table with one that reserves its
/// bytes before writing them.
fn wrap(
    state: &mut TaskState,
    r: Result<Resource<DynOutputStream>, ErrorCode>,
) -> wasmtime::Result<Result<Resource<DynOutputStream>, ErrorCode>> {
    let Ok(res) = r else {
        return Ok(r);
    };
    let inner: DynOutputStream = state.table.delete(res)?;
    let stream: DynOutputStream = Box::new(QuotaStream {
        inner,
        agent: state.agent.clone(),
    });
    Ok(Ok(state.table.push(stream)?))
}

/// A file stream that reserves every write against the agent's quota.
struct QuotaStream {
    inner: DynOutputStream,
    agent: Arc<super::AgentShared>,
}

#[async_trait::async_trait]
impl Pollable for QuotaStream {
    async fn ready(&mut self) {
        self.inner.ready().await
    }
}

#[async_trait::async_trait]
impl OutputStream for QuotaStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let n = bytes.len() as u64;
        if !self.agent.disk.reserve(n) {
            log_refusal(&self.agent, n);
            return Err(StreamError::LastOperationFailed(wasmtime::format_err!(
                "no space left: the agent's disk_mib cap is reached"
            )));
        }
        self.inner.write(bytes)
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.inner.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.inner.check_write()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stop_at_the_cap_and_measuring_resets_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/f"), vec![0u8; 100]).unwrap();
        // Two entries (a, a/b), the file, and its one 4 KiB block.
        let held = 3 * ENTRY_BYTES + 4096;
        let q = DiskQuota::new(held + 50, vec![dir.path().to_path_buf()]);
        assert_eq!(q.used(), held);
        assert!(q.reserve(50));
        assert!(!q.reserve(1));
        q.measure();
        assert_eq!(q.used(), held);
        assert!(!q.reserve(51));
        assert!(q.reserve(50));
        assert_eq!((blocks(1), blocks(4096), blocks(4097)), (4096, 4096, 8192));
    }
}
