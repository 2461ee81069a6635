//! The gateway's local disk cache: every byte of a cached volume, the upload
//! buffer of a stored volume and a virtual tape passes through it. It knows
//! nothing of SCSI or S3.
//!
//! # Model
//!
//! Data lives in **chunks** named by a [`ChunkId`]: a namespace (a volume,
//! a tape) and an index (a volume's chunk number, a tape's segment number).
//! All chunks of a cache have the same size, [`CacheConfig::chunk_size`]
//! (1 MiB by default; a tape library wanting larger segments opens its own
//! cache). A chunk occupies one **slot** on one of the cache **disks**
//! (files or block devices; more can be added while running). A RocksDB
//! **index** maps each chunk to its slot, state, generation and the
//! crc32c of each valid sector.
//!
//! Validity is tracked per **sector** ([`CacheConfig::sector_size`], 4 KiB
//! by default): a 4 KiB write into a chunk that is not cached is accepted at
//! once, and [`Cache::read`] says which sectors are valid so that the caller
//! fetches the rest and merges it with [`Cache::fill`], which only writes
//! sectors still invalid.
//!
//! # Using it
//!
//! ```no_run
//! # async fn demo() -> cache::Result<()> {
//! use bytes::Bytes;
//! use cache::{Cache, CacheConfig, ChunkId, DiskSpec};
//!
//! let disk = DiskSpec { path: "/var/cache/sgw/disk0".into(), size_bytes: 64 << 30 };
//! let cache = Cache::open(CacheConfig::new("/var/cache/sgw/index", vec![disk]), &prometheus::Registry::new())?;
//! let chunk = ChunkId::new(7, 42);
//! cache.write(chunk, 8192, Bytes::from(vec![1; 4096])).await?; // may wait: back-pressure
//! cache.flush().await?; // SYNCHRONIZE CACHE / FUA
//! let read = cache.read(chunk, 0, cache.chunk_size()).await?;
//! for gap in read.valid.gaps() {
//!     // fetch sectors `gap` from the backing store, then cache.fill(...)
//! #   let _ = gap;
//! }
//! // The uploader:
//! for dirty in cache.dirty_batch(16) {
//!     let data = cache.read(dirty.id, 0, cache.chunk_size()).await?;
//!     // ... upload data.data (after filling gaps) ...
//!     cache.mark_uploaded(dirty.id, data.generation)?; // false: rewritten meanwhile, stays dirty
//! }
//! # Ok(()) }
//! ```
//!
//! The I/O operations are `async` and run their blocking disk and index
//! work off the async workers (`tokio::task::block_in_place` on a
//! multi-thread runtime, which saves a thread hand-off per call, else the
//! blocking pool). Writes run inline, like buffered writes to a file, and
//! leave the worker only for what may block; [`Cache::open`] is blocking.
//! Errors carry
//! detail for logs and an [`ErrorKind`] for decisions.
//!
//! # Guarantees
//!
//! - **Durability.** A write returns once its data is in the cache's slot
//!   (page cache). [`Cache::flush`] makes every write that returned before
//!   it durable: fdatasync of the disks, then one synced index batch that
//!   records the chunks changed since the previous flush. Concurrent
//!   flushes share one sync. A crash loses at most the writes after the
//!   last completed flush, and never exposes data that no flush covered.
//! - **Never overwrite durable data.** The first write to a chunk after a
//!   flush goes to a fresh slot; the old one stays as the chunk's base until
//!   the next flush merges it (see the `chunk` module). A crash at any
//!   instant finds every flushed sector intact where the index points.
//! - **Checksums.** Every read verifies each sector's crc32c; a mismatch is
//!   an [`ErrorKind::Corruption`] error and the data is not returned.
//!   Recovery verifies the sectors whose records are newer than the last
//!   durable flush and drops the torn ones.
//! - **Upload state.** Dirty chunks come out of [`Cache::dirty_batch`] in the
//!   order they were first dirtied; [`Cache::mark_uploaded`] cleans a chunk
//!   only at the generation that was shipped.
//! - **Eviction** takes only clean, unpinned chunks, chosen by S3-FIFO
//!   ([`eviction`]), when slots run out or on [`Cache::evict`].
//! - **Back-pressure.** A write that would take dirty bytes (dirty chunks'
//!   slots plus copy-on-write bases) above the high watermark waits, without
//!   error, until uploads bring them down to the low watermark.
//! - **Metrics** on the caller's `prometheus::Registry`: `cache_used_bytes`,
//!   `cache_dirty_bytes`, `cache_free_bytes`, `cache_read_hits_total`,
//!   `cache_read_misses_total`, `cache_evictions_total`,
//!   `cache_backpressure_waits_total`, `cache_backpressure_wait_seconds_total`,
//!   `cache_checksum_errors_total`, `cache_flushes_total`.
//!
//! - **Full and failing disks.** Disk files are reserved (fallocate), so
//!   a file system filled later cannot fail slot writes. A disk or index
//!   failure ([`ErrorKind::DiskFull`] or [`ErrorKind::Io`]) fails only the
//!   call that met it and is kept as [`Cache::fault`] until
//!   [`Cache::probe`] finds the disks and the index working; only a failed
//!   fdatasync fails the cache's writes for good. Tests inject failures
//!   through [`CacheConfig::io_faults`].
//!
//! Pins and the uploading state live in memory: after a restart every dirty
//! chunk is queued again and nothing is pinned.

mod cache;
mod chunk;
mod config;
mod crc;
mod disk;
mod error;
pub mod eviction;
mod faults;
mod flush;
mod index;
mod metrics;
mod offload;
mod open;
mod read;
mod sectors;
mod space;
mod types;
mod upload;
mod write;
mod writeback;

pub use cache::{Cache, CacheFault};
pub use config::{CacheConfig, DiskSpec};
pub use disk::disk_file_bytes;
pub use error::{Error, ErrorKind, Result};
pub use faults::{FaultHook, IoFaults, IoOp};
pub use offload::{Offload, OFFLOAD_MIN_BYTES};
pub use sectors::SectorSet;
pub use types::{CacheStats, ChunkId, ChunkInfo, ChunkState, DirtyChunk, ReadOutcome};
