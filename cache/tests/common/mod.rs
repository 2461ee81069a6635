//! Helpers shared by the integration tests.

use std::path::Path;

use cache::{Cache, CacheConfig, DiskSpec};

/// A cache config in `dir` with one disk of `slots` chunks of
/// `chunk_size`, 4 KiB sectors, and dirty watermarks in slots.
pub fn config(dir: &Path, chunk_size: u32, slots: u64, high_slots: u64, low_slots: u64) -> CacheConfig {
    let disk = DiskSpec { path: dir.join("disk0"), size_bytes: 4096 + slots * u64::from(chunk_size) };
    let mut config = CacheConfig::new(dir.join("index"), vec![disk]);
    config.chunk_size = chunk_size;
    config.sector_size = 4096;
    config.dirty_high_watermark = high_slots * u64::from(chunk_size);
    config.dirty_low_watermark = low_slots * u64::from(chunk_size);
    config.eviction_batch = 4;
    config
}

pub fn open(config: &CacheConfig) -> Cache {
    Cache::open(config.clone(), &prometheus::Registry::new()).expect("open cache")
}
