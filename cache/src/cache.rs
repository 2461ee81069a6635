//! The [`Cache`] handle, its shared state and the public operations. The
//! blocking halves of the operations live in `write`, `read`, `flush`,
//! `upload`, `space` and `open`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use prometheus::Registry;
use tokio::sync::{watch, Notify};

use crate::chunk::Chunk;
use crate::config::{CacheConfig, DiskSpec};
use crate::disk::Disk;
use crate::error::{Error, ErrorKind, Result};
use crate::eviction::S3Fifo;
use crate::faults::IoOp;
use crate::index::Index;
use crate::metrics::Metrics;
use crate::offload::{Offload, OFFLOAD_MIN_BYTES};
use crate::types::{CacheStats, ChunkId, ChunkInfo, ChunkState, DirtyChunk, ReadOutcome};

/// A handle on an open cache; clones share it. The async operations run
/// their disk and index I/O off the async workers (`block_in_place` on a
/// multi-thread runtime, the blocking pool otherwise), so they must be
/// called inside a tokio runtime; the plain methods touch memory and at
/// most one unsynced index update, and are fine to call from async code.
#[derive(Clone)]
pub struct Cache {
    pub(crate) inner: Arc<Inner>,
}

/// A chunk's lock. `Removed` marks a cell already taken out of the map by
/// eviction or discard, so that a thread that found it just before must
/// look again.
pub(crate) enum Cell {
    Vacant,
    Present(Chunk),
    Removed,
}

pub(crate) type CellGuard = parking_lot::ArcMutexGuard<parking_lot::RawMutex, Cell>;

/// What flushes have achieved, broadcast to writers waiting to
/// copy-on-write a chunk of an epoch still being flushed.
#[derive(Debug, Clone)]
pub(crate) struct Durability {
    pub epoch: u64,
    /// Set when a sync failed; the cache then refuses all work.
    pub failure: Option<String>,
    /// The last flush that closed an epoch but could not record it.
    pub unrecorded: Option<Unrecorded>,
}

/// A flush that failed without failing the cache (see `flush`).
#[derive(Debug, Clone)]
pub(crate) struct Unrecorded {
    pub epoch: u64,
    pub full: bool,
    pub reason: String,
}

/// Why the cache is degraded: its last disk or index failure, kept until
/// [`Cache::probe`] finds the disks and the index working again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheFault {
    /// [`ErrorKind::DiskFull`] or [`ErrorKind::Io`].
    pub kind: ErrorKind,
    pub reason: String,
    /// After a failed fdatasync the cache refuses writes until a restart.
    pub permanent: bool,
}

pub(crate) struct Inner {
    pub config: CacheConfig,
    pub sectors: u32,
    pub cache_id: u64,
    pub index: Index,
    pub disks: RwLock<Vec<Arc<Disk>>>,
    pub state: Mutex<State>,
    /// Writers hold it shared while they pick an epoch and write; a flush
    /// takes it exclusively to close the epoch, so no write of the closed
    /// epoch is still in flight when it syncs.
    pub gate: RwLock<()>,
    /// The open flush epoch.
    pub epoch: AtomicU64,
    pub durability: watch::Sender<Durability>,
    /// Signalled when back-pressure lifts.
    pub space: Notify,
    /// One flush at a time; callers queued here share the next one.
    pub flush_leader: tokio::sync::Mutex<()>,
    pub metrics: Metrics,
    /// Threads for large writes' copies, if the application gave some.
    pub offload: OnceLock<Arc<dyn Offload>>,
    /// The last disk or index failure, until a probe clears it.
    pub fault: Mutex<Option<CacheFault>>,
}

pub(crate) struct State {
    pub chunks: BTreeMap<ChunkId, Arc<Mutex<Cell>>>,
    /// Free slots per disk.
    pub free: Vec<Vec<u32>>,
    pub total_slots: u64,
    pub free_slots: u64,
    pub dirty_slots: u64,
    /// Set when a writer was refused; cleared at the low watermark.
    pub throttling: bool,
    /// Dirty chunks not being uploaded, by first-dirtied order.
    pub dirty_queue: BTreeMap<u64, ChunkId>,
    /// Chunks handed to the uploader, with their place in the queue.
    pub uploading: HashMap<ChunkId, u64>,
    pub next_dirty_seq: u64,
    pub policy: S3Fifo<ChunkId>,
    /// Chunks with a base slot for the next flush to merge.
    pub pending_merge: HashSet<ChunkId>,
    /// Chunks whose index record is older than their state in memory.
    pub changed: HashSet<ChunkId>,
    pub access_clock: u64,
}

impl Inner {
    pub fn chunk_bytes(&self) -> u64 {
        u64::from(self.config.chunk_size)
    }

    pub fn disk(&self, id: u32) -> Result<Arc<Disk>> {
        self.disks
            .read()
            .get(id as usize)
            .cloned()
            .ok_or(Error::BadRecord { what: format!("disk {id}"), reason: "slot on an unknown disk" })
    }

    pub fn check_healthy(&self) -> Result<()> {
        match &self.durability.borrow().failure {
            Some(reason) => Err(Error::Failed(reason.clone())),
            None => Ok(()),
        }
    }

    pub fn durable_epoch(&self) -> u64 {
        self.durability.borrow().epoch
    }

    /// Records a failure after which the on-disk state is unknown.
    pub fn fail(&self, error: &Error) {
        tracing::error!(%error, "cache failed: refusing writes until a restart");
        self.durability.send_modify(|d| d.failure = Some(error.to_string()));
        *self.fault.lock() = Some(CacheFault { kind: ErrorKind::Io, reason: error.to_string(), permanent: true });
        self.space.notify_waiters();
    }

    /// Keeps a disk or index failure as the cache's fault. Logged when
    /// the cache becomes degraded or the kind of failure changes, not at
    /// every failed call: a full disk fails every write.
    pub fn observe<T>(&self, result: Result<T>) -> Result<T> {
        if let Err(error) = &result {
            let kind = error.kind();
            if matches!(kind, ErrorKind::DiskFull | ErrorKind::Io) {
                let mut fault = self.fault.lock();
                if fault.as_ref().is_none_or(|f| !f.permanent && f.kind != kind) {
                    tracing::warn!(%error, "cache degraded: writes fail until the disk works again");
                    *fault = Some(CacheFault { kind, reason: error.to_string(), permanent: false });
                }
            }
        }
        result
    }

    /// A synced index commit, through the fault hook.
    pub fn commit_index(&self, batch: crate::index::Batch) -> Result<()> {
        self.config
            .io_faults
            .check(IoOp::IndexCommit, &self.config.index_dir)
            .map_err(|source| Error::Disk { path: self.config.index_dir.display().to_string(), source })?;
        self.index.commit_synced(batch)
    }

    /// Reserves every disk's blocks again and writes a sector into a free
    /// slot: what a write needs from the disks.
    fn probe_disks(&self) -> Result<()> {
        let disks = self.disks.read().clone();
        for disk in &disks {
            disk.reserve()?;
        }
        let Some(slot) = self.state.lock().pop_free() else { return Ok(()) };
        let zeros = vec![0u8; self.config.sector_size as usize];
        // A free slot holds nothing anyone reads; it goes back at once.
        let written = self.disk(slot.disk).and_then(|disk| disk.write_at(slot.slot, 0, &zeros));
        self.state.lock().release_slot(slot);
        written
    }

    /// Locks a chunk's cell, creating a vacant one if asked. Returns None
    /// for an absent chunk when not creating.
    pub fn lock_cell(&self, id: ChunkId, create: bool) -> Option<CellGuard> {
        loop {
            let cell = {
                let mut state = self.state.lock();
                match state.chunks.get(&id) {
                    Some(cell) => cell.clone(),
                    None if create => {
                        let cell = Arc::new(Mutex::new(Cell::Vacant));
                        state.chunks.insert(id, cell.clone());
                        cell
                    }
                    None => return None,
                }
            };
            let guard = cell.try_lock_arc().unwrap_or_else(|| may_block(|| cell.lock_arc()));
            if !matches!(*guard, Cell::Removed) {
                return Some(guard);
            }
        }
    }

    /// Takes a cell out of the map (its chunk was evicted, discarded, or a
    /// vacant cell was not filled).
    pub fn remove_cell(&self, guard: &mut CellGuard, id: ChunkId) {
        **guard = Cell::Removed;
        self.state.lock().chunks.remove(&id);
    }

    pub fn publish(&self, state: &State) {
        let chunk = self.chunk_bytes() as i64;
        self.metrics.used_bytes.set((state.total_slots - state.free_slots) as i64 * chunk);
        self.metrics.free_bytes.set(state.free_slots as i64 * chunk);
        self.metrics.dirty_bytes.set(state.dirty_slots as i64 * chunk);
    }

    pub fn stats(&self) -> CacheStats {
        let state = self.state.lock();
        let chunk = self.chunk_bytes();
        CacheStats {
            capacity_bytes: state.total_slots * chunk,
            used_bytes: (state.total_slots - state.free_slots) * chunk,
            dirty_bytes: state.dirty_slots * chunk,
            upload_backlog_bytes: (state.dirty_queue.len() + state.uploading.len()) as u64 * chunk,
            free_bytes: state.free_slots * chunk,
        }
    }
}

impl State {
    pub fn tick(&mut self) -> u64 {
        self.access_clock += 1;
        self.access_clock
    }
}

/// Runs blocking work off the async workers. On a multi-thread runtime
/// `block_in_place` runs it on the calling thread and moves the worker's
/// other tasks elsewhere, which spares a thread hand-off per call (a third
/// of the time of a 64 KiB write); elsewhere it goes to the blocking pool.
/// Writes do not come here: they run inline (see [`may_block`]).
async fn blocking<T: Send + 'static>(inner: &Arc<Inner>, f: impl FnOnce(&Inner) -> Result<T> + Send + 'static) -> Result<T> {
    if tokio::runtime::Handle::current().runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
        return tokio::task::block_in_place(|| f(inner));
    }
    let inner = inner.clone();
    tokio::task::spawn_blocking(move || f(&inner)).await.map_err(|e| Error::Task(e.to_string()))?
}

/// Runs `f`, which may block the thread for a while (disk I/O the page
/// cache cannot absorb, a synced index write, a lock held across either),
/// from code that runs inline on an async worker. On a multi-thread
/// runtime's worker, `block_in_place` first hands the worker's other tasks
/// to another thread; anywhere else (a blocking-pool thread, a
/// current-thread runtime, no runtime) `f` just runs.
///
/// Writes run inline and call this only around the parts that may block:
/// handing every write to `block_in_place` cost a thread wake-up and two
/// context switches per command, a quarter of the CPU time of cache-hit
/// 1 MiB writes.
pub(crate) fn may_block<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// What a write attempt needs before it can proceed.
pub(crate) enum WriteStep {
    Done,
    /// Wait for a flush to make this epoch durable, then retry.
    AwaitDurable(u64),
    /// Wait for back-pressure to lift, then retry.
    AwaitSpace,
}

impl Cache {
    /// Opens (or creates) the cache and recovers it: see the `open` module.
    /// Blocking: call it from `spawn_blocking` in async code.
    pub fn open(config: CacheConfig, registry: &Registry) -> Result<Cache> {
        crate::open::open(config, registry)
    }

    pub fn chunk_size(&self) -> u32 {
        self.inner.config.chunk_size
    }

    pub fn sector_size(&self) -> u32 {
        self.inner.config.sector_size
    }

    /// The share of the cache that may hold data not yet uploaded: the
    /// upload buffer, in AWS's terms (writers wait above it).
    pub fn upload_buffer_bytes(&self) -> u64 {
        self.inner.config.dirty_high_watermark
    }

    /// Writes `data` at `offset` in the chunk and returns once it is in the
    /// cache (not yet durable, not even across a process crash: see
    /// [`Cache::flush`]). Sectors the write
    /// covers become valid; a write that covers a sector only in part needs
    /// that sector valid already. Waits, without error, while dirty data is
    /// above the high watermark.
    ///
    /// Runs on the calling task, like a buffered write to a file: it takes
    /// short locks and copies into the page cache, and only the parts that
    /// may block leave the async worker (see [`may_block`]); a large write
    /// runs on the [`Offload`] threads, if the cache was given some.
    pub async fn write(&self, id: ChunkId, offset: u32, data: Bytes) -> Result<()> {
        self.write_checksummed(id, offset, data, None).await
    }

    /// [`write`](Self::write), with the CRC-32C of each sector of `data`
    /// (from its start) computed by the caller while the data was still in
    /// the CPU's caches; the cache then need not read `data` once more to
    /// checksum it. They are used when the write covers whole sectors and
    /// there is one per sector; otherwise the cache computes its own.
    pub async fn write_checksummed(&self, id: ChunkId, offset: u32, data: Bytes, crcs: Option<&[u32]>) -> Result<()> {
        let result = self.write_attempts(id, offset, data, crcs).await;
        self.inner.observe(result)
    }

    async fn write_attempts(&self, id: ChunkId, offset: u32, data: Bytes, crcs: Option<&[u32]>) -> Result<()> {
        let offload = self.inner.offload.get().filter(|_| data.len() >= OFFLOAD_MIN_BYTES);
        loop {
            let step = match offload {
                Some(offload) => self.write_elsewhere(offload.as_ref(), id, offset, &data, crcs).await?,
                None => self.inner.write(id, offset, &data, crcs)?,
            };
            match step {
                WriteStep::Done => return Ok(()),
                WriteStep::AwaitDurable(epoch) => self.await_durable(epoch).await?,
                WriteStep::AwaitSpace => self.await_space().await?,
            }
        }
    }

    /// One attempt of a write, on an [`Offload`] thread.
    async fn write_elsewhere(
        &self,
        offload: &dyn Offload,
        id: ChunkId,
        offset: u32,
        data: &Bytes,
        crcs: Option<&[u32]>,
    ) -> Result<WriteStep> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (inner, data, crcs) = (self.inner.clone(), data.clone(), crcs.map(<[u32]>::to_vec));
        offload.spawn(Box::new(move || {
            let _ = tx.send(inner.write(id, offset, &data, crcs.as_deref()));
        }));
        rx.await.map_err(|_| Error::Task("the write's thread ended without an answer".into()))?
    }

    /// Gives the cache threads for the copies of large writes (see
    /// [`Offload`]); without them every write runs inline. The first call
    /// counts.
    pub fn offload_large_writes(&self, offload: Arc<dyn Offload>) {
        let _ = self.inner.offload.set(offload);
    }

    /// Tells the cache a flush follows the writes now under way (a tape's
    /// records are committed at its next filemark): the disks start
    /// writing back at once, so that the flush finds little left to do.
    pub fn expect_flush(&self) {
        for disk in self.inner.disks.read().iter() {
            disk.expect_flush();
        }
    }

    /// Stores data fetched from the backing store into the sectors of
    /// `offset..offset + data.len()` (sector-aligned) that are not valid,
    /// leaving valid ones, which may be newer, untouched. Neither dirties
    /// the chunk nor changes its generation.
    pub async fn fill(&self, id: ChunkId, offset: u32, data: Bytes) -> Result<()> {
        self.inner.observe(blocking(&self.inner, move |inner| inner.fill(id, offset, &data)).await)
    }

    /// Reads `len` bytes at `offset` in the chunk, verifying every sector's
    /// checksum; a mismatch is an [`crate::ErrorKind::Corruption`] error.
    /// Reads go on while the cache is degraded or failed: what they return
    /// is verified either way.
    pub async fn read(&self, id: ChunkId, offset: u32, len: u32) -> Result<ReadOutcome> {
        self.inner.observe(blocking(&self.inner, move |inner| inner.read(id, offset, len)).await)
    }

    /// The cache's fault, if a disk or index operation failed since the
    /// last successful [`probe`](Self::probe).
    pub fn fault(&self) -> Option<CacheFault> {
        self.inner.fault.lock().clone()
    }

    /// While the cache is degraded, checks whether it works again: every
    /// disk's blocks can be reserved, a sector can be written, and a flush
    /// (data sync and index commit) succeeds. Then the fault is cleared.
    /// The caller runs it periodically, so that the cache recovers without
    /// a restart once space returns or the disk answers again. A cache
    /// failed for good (a failed fdatasync) stays failed.
    pub async fn probe(&self) -> Result<()> {
        let Some(fault) = self.fault() else { return Ok(()) };
        self.inner.check_healthy()?;
        self.inner.observe(blocking(&self.inner, |inner| inner.probe_disks()).await)?;
        self.flush().await?;
        let mut current = self.inner.fault.lock();
        if current.as_ref().is_some_and(|f| !f.permanent) {
            *current = None;
            tracing::info!(was = %fault.reason, "cache works again");
        }
        Ok(())
    }

    /// Makes every write that completed before this call durable: slot data
    /// fdatasync'd, then the index WAL synced. Concurrent callers share one
    /// sync (group commit).
    pub async fn flush(&self) -> Result<()> {
        let target = self.inner.epoch.load(Ordering::Acquire);
        let _leader = self.inner.flush_leader.lock().await;
        self.inner.check_healthy()?;
        if self.inner.durable_epoch() >= target {
            return Ok(());
        }
        self.inner.observe(blocking(&self.inner, |inner| inner.flush()).await)
    }

    /// Flushes, then lets go of this handle. The state a cache dropped
    /// without closing reopens with is that of its last flush.
    pub async fn close(self) -> Result<()> {
        self.flush().await
    }

    /// Drops chunks `indexes` of `namespace` (UNMAP, a deleted tape or
    /// volume) whatever their state, durably.
    pub async fn discard(&self, namespace: u64, indexes: Range<u64>) -> Result<()> {
        self.inner.observe(blocking(&self.inner, move |inner| inner.discard(namespace, indexes)).await)
    }

    /// Evicts up to `max` clean, unpinned chunks chosen by the policy
    /// (the cache also evicts by itself when it needs slots).
    pub async fn evict(&self, max: usize) -> Result<Vec<ChunkId>> {
        self.inner.observe(blocking(&self.inner, move |inner| inner.evict(max)).await)
    }

    /// Adds a cache disk while running.
    pub async fn add_disk(&self, spec: DiskSpec) -> Result<()> {
        blocking(&self.inner, move |inner| inner.add_disk(&spec)).await
    }

    pub fn lookup(&self, id: ChunkId) -> Option<ChunkInfo> {
        let guard = self.inner.lock_cell(id, false)?;
        let Cell::Present(chunk) = &*guard else { return None };
        let uploading = self.inner.state.lock().uploading.contains_key(&id);
        let state = match (chunk.dirty, uploading) {
            (false, _) => ChunkState::Clean,
            (true, false) => ChunkState::Dirty,
            (true, true) => ChunkState::Uploading,
        };
        Some(ChunkInfo { state, generation: chunk.generation, valid: chunk.valid(), pinned: chunk.pins > 0 })
    }

    /// Hands out up to `max` dirty chunks, oldest first-dirtied first, and
    /// marks them uploading. The uploader reads each one (the read tells the
    /// generation it got) and then calls [`Cache::mark_uploaded`] with that
    /// generation, or [`Cache::abandon_upload`].
    pub fn dirty_batch(&self, max: usize) -> Vec<DirtyChunk> {
        self.inner.dirty_batch(max)
    }

    /// Every chunk of `namespace` the backing store lacks (dirty or being
    /// uploaded), with its generation now. A recovery point starts from
    /// this list: these are the chunks whose current content must still
    /// reach the store.
    pub fn unsynced_chunks(&self, namespace: u64) -> Vec<DirtyChunk> {
        self.inner.unsynced_chunks(namespace)
    }

    /// Records that `generation` of the chunk is safely in the backing
    /// store. Returns false, leaving the chunk dirty, if it was written
    /// again meanwhile.
    pub fn mark_uploaded(&self, id: ChunkId, generation: u64) -> Result<bool> {
        self.inner.mark_uploaded(id, generation)
    }

    /// Returns a chunk handed out by [`Cache::dirty_batch`] to the queue, in
    /// its original place.
    pub fn abandon_upload(&self, id: ChunkId) {
        self.inner.abandon_upload(id)
    }

    /// Protects a cached chunk from eviction until a matching unpin; false
    /// if the chunk is not cached.
    pub fn pin(&self, id: ChunkId) -> bool {
        self.inner.pin(id)
    }

    pub fn unpin(&self, id: ChunkId) {
        self.inner.unpin(id)
    }

    pub fn stats(&self) -> CacheStats {
        self.inner.stats()
    }

    async fn await_durable(&self, epoch: u64) -> Result<()> {
        let mut rx = self.inner.durability.subscribe();
        let unrecorded = |d: &Durability| d.unrecorded.as_ref().is_some_and(|u| u.epoch >= epoch);
        let durability = rx
            .wait_for(|d| d.epoch >= epoch || d.failure.is_some() || unrecorded(d))
            .await
            .map_err(|_| Error::Failed("cache closed".into()))?
            .clone();
        if let Some(reason) = durability.failure {
            return Err(Error::Failed(reason));
        }
        match durability.unrecorded.filter(|u| durability.epoch < epoch && u.epoch >= epoch) {
            Some(u) => Err(Error::FlushFailed { full: u.full, reason: u.reason }),
            None => Ok(()),
        }
    }

    /// Waits until back-pressure lifts. Base slots of copy-on-write chunks
    /// count as dirty until a flush frees them, so a waiter that sees some
    /// flushes rather than wait for an upload that cannot free them.
    async fn await_space(&self) -> Result<()> {
        let started = Instant::now();
        self.inner.metrics.backpressure_waits.inc();
        loop {
            let notified = self.inner.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (throttling, bases) = {
                let state = self.inner.state.lock();
                (state.throttling, !state.pending_merge.is_empty())
            };
            self.inner.check_healthy()?;
            if !throttling {
                break;
            }
            if bases {
                self.flush().await?;
                continue;
            }
            notified.await;
        }
        self.inner.metrics.backpressure_seconds.inc_by(started.elapsed().as_secs_f64());
        Ok(())
    }
}
