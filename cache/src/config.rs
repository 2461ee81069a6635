//! Cache configuration and its validation.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::faults::FaultHook;

/// One cache disk: a regular file (created and sized here) or a block
/// device (used up to `size_bytes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    pub path: PathBuf,
    pub size_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Directory of the RocksDB index.
    pub index_dir: PathBuf,
    /// Disks to use; disks already known to the index are reopened from it,
    /// new ones are added.
    pub disks: Vec<DiskSpec>,
    /// Bytes per chunk, which is also the slot size. Fixed at creation.
    pub chunk_size: u32,
    /// Granularity of validity and checksums. Fixed at creation.
    pub sector_size: u32,
    /// Writers that would take dirty bytes above this wait for the uploader.
    pub dirty_high_watermark: u64,
    /// Waiting writers resume once dirty bytes fall to this (hysteresis, so
    /// that a stalled writer is not woken for every single upload).
    pub dirty_low_watermark: u64,
    /// Clean chunks evicted at once when the allocator runs dry: one index
    /// sync is shared by the whole batch.
    pub eviction_batch: usize,
    /// Faults to inject into the cache's disk and index I/O (tests only;
    /// empty by default).
    pub io_faults: FaultHook,
}

impl CacheConfig {
    /// Defaults: 1 MiB chunks, 4 KiB sectors, writers stall at 80 % dirty and
    /// resume at 70 % of the disks given.
    pub fn new(index_dir: impl Into<PathBuf>, disks: Vec<DiskSpec>) -> Self {
        let capacity: u64 = disks.iter().map(|d| d.size_bytes).sum();
        CacheConfig {
            index_dir: index_dir.into(),
            disks,
            chunk_size: 1 << 20,
            sector_size: 4096,
            dirty_high_watermark: capacity / 10 * 8,
            dirty_low_watermark: capacity / 10 * 7,
            eviction_batch: 32,
            io_faults: FaultHook::default(),
        }
    }

    pub(crate) fn sectors_per_chunk(&self) -> u32 {
        self.chunk_size / self.sector_size
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let invalid = |m: &str| Err(Error::Invalid(m.to_string()));
        if self.sector_size < 512 || !self.sector_size.is_power_of_two() {
            return invalid("sector_size must be a power of two of at least 512");
        }
        if self.chunk_size < self.sector_size || self.chunk_size % self.sector_size != 0 {
            return invalid("chunk_size must be a multiple of sector_size");
        }
        if self.dirty_low_watermark > self.dirty_high_watermark {
            return invalid("dirty_low_watermark must not exceed dirty_high_watermark");
        }
        if self.dirty_high_watermark - self.dirty_low_watermark < u64::from(self.chunk_size) * 2 {
            // A stalled writer resumes at the low watermark and may need two
            // slots at once (copy-on-write): it must then fit under the high.
            return invalid("dirty_high_watermark must exceed dirty_low_watermark by two chunks");
        }
        if self.eviction_batch == 0 {
            return invalid("eviction_batch must be at least 1");
        }
        Ok(())
    }
}
