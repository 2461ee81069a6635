//! A hook on the cache's own I/O, so that tests can make a disk full or
//! failing at a chosen moment without a real broken disk: every read,
//! write and sync of a cache disk, and every synced index commit, asks the
//! hook first and fails with the error it returns. In production there is
//! no hook and nothing is asked.

use std::path::Path;
use std::sync::Arc;

/// Which operation is about to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOp {
    /// A read from a cache disk.
    Read,
    /// A write into a cache disk (slot data, a copy-on-write merge).
    Write,
    /// fdatasync of a cache disk.
    Sync,
    /// A synced commit to the index (flush, eviction, discard).
    IndexCommit,
}

/// Decides whether an operation on `path` (a cache disk, or the index
/// directory for [`IoOp::IndexCommit`]) fails, and with which error
/// (`ErrorKind::StorageFull` or a raw `ENOSPC` reads as a full disk, any
/// other error as a failing one).
pub trait IoFaults: Send + Sync {
    fn check(&self, op: IoOp, path: &Path) -> std::io::Result<()>;
}

/// The optional hook, as [`crate::CacheConfig`] carries it.
#[derive(Clone, Default)]
pub struct FaultHook(pub Option<Arc<dyn IoFaults>>);

impl FaultHook {
    pub fn check(&self, op: IoOp, path: &Path) -> std::io::Result<()> {
        match &self.0 {
            Some(faults) => faults.check(op, path),
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for FaultHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "FaultHook(set)" } else { "FaultHook(none)" })
    }
}
