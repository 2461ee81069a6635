//! A cached volume: the primary copy lives in the cloud, the cache holds
//! hot data and data not yet uploaded (DESIGN.md §1, §4).
//!
//! - Writes land dirty in the cache and are acknowledged under the cache's
//!   durability contract (FUA and SYNCHRONIZE CACHE flush it).
//! - Reads hit the cache, or fetch the chunk named by the chunk map,
//!   verify it (the codec does), serve it and fill the cache; sequential
//!   reads fetch ahead.
//! - The engine uploads dirty chunks and records them in the chunk map.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use cache::{ChunkId as CacheChunkId, ChunkState, ErrorKind as CacheErrorKind, ReadOutcome};
use iscsi_target::scsi::block::{BlockDevice, Provisioning};
use iscsi_target::scsi::{BlockCount, DataOutChecksums, Lba};
use tokio::sync::{Notify, OnceCell, RwLock};

use super::damage::{unreadable_chunk, ChunkUnreadable, DamageRegistry, DamagedChunk};
use super::engine::{ChunkOwner, Engine, JobKind, Uploaded};
use super::manifest::ManifestRoot;
use super::map::{ChunkMap, ChunkRef};
use super::metrics::VolumeSeries;
use crate::cloud::{ChunkId, CloudError, ErrorKind as CloudErrorKind, Namespace};

/// Logical block size of cached volumes.
pub const BLOCK_SIZE: u32 = 512;
/// Chunks fetched ahead of a sequential reader.
const PREFETCH_CHUNKS: u64 = 8;
/// A write that meets a sector it covers only in part fetches and fills
/// the chunk, then tries again; eviction between the two can repeat that.
const WRITE_ATTEMPTS: usize = 4;

static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

/// Identity of a cached volume.
#[derive(Debug, Clone)]
pub struct VolumeIdentity {
    /// Cache namespace and NAA id.
    pub id: u64,
    /// The family of volumes cloned from one another; they share a cloud
    /// namespace (and data key), so clones reference their source's chunks.
    pub family: u64,
    pub name: String,
    pub size_bytes: u64,
}

pub fn family_namespace(family: u64) -> Namespace {
    // 16 hex digits always satisfy the namespace rules.
    Namespace::new(&format!("vol-{family:016x}")).unwrap_or_else(|_| unreachable!("hex names are valid"))
}

/// A chunk fetched from the cloud, or why not (the message and its kind).
type FetchResult = Result<Bytes, (String, CloudErrorKind)>;

/// State of one chunk in a recovery point being built.
#[derive(Debug)]
enum PendingChunk {
    /// Dirty at the recovery point's instant, with this cache generation:
    /// its upload resolves it.
    Waiting(u64),
    /// A writer is copying it before changing it.
    Capturing,
    /// Copied; the copy is being uploaded (kept to submit again on failure).
    Captured(Bytes),
    Resolved(ChunkRef),
}

pub(crate) struct PendingRp {
    pub seq: u64,
    pub map: ChunkMap,
    chunks: HashMap<u64, PendingChunk>,
    remaining: usize,
}

/// The last committed recovery point.
#[derive(Clone)]
pub struct CommittedRp {
    pub root: ManifestRoot,
    pub map: ChunkMap,
    pub key: String,
    pub at: std::time::SystemTime,
}

pub struct CachedVolume {
    identity: VolumeIdentity,
    namespace: Namespace,
    engine: Arc<Engine>,
    chunk_size: u32,
    sector_size: u32,
    pub(crate) map: Mutex<ChunkMap>,
    /// Writers hold it shared; a recovery point takes it exclusively for
    /// the instant it fixes its content.
    gate: RwLock<()>,
    /// Map updates and cache state changes that must look atomic to a
    /// recovery point starting (upload records, unmaps).
    commit: tokio::sync::Mutex<()>,
    pub(crate) pending: Mutex<Option<PendingRp>>,
    pending_changed: Notify,
    pub(crate) last_rp: Mutex<Option<CommittedRp>>,
    /// One recovery point at a time.
    pub(crate) rp_lock: tokio::sync::Mutex<()>,
    pub(crate) next_rp_seq: AtomicU64,
    /// Ids the live map stopped referencing: garbage candidates.
    pub(crate) replaced: Mutex<HashSet<ChunkId>>,
    /// Fetches in flight; a failure keeps its kind, so that a damaged
    /// object is told from an outage.
    fetches: Mutex<HashMap<u64, Arc<OnceCell<FetchResult>>>>,
    /// Chunks whose cloud object cannot be read back (`damage`).
    pub(crate) damage: Mutex<DamageRegistry>,
    last_read_end: AtomicU64,
    series: VolumeSeries,
    /// Itself, for tasks (prefetch) that outlive a call.
    me: std::sync::Weak<CachedVolume>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn cache_err(e: cache::Error) -> io::Error {
    match e.kind() {
        CacheErrorKind::Corruption => io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
        // The SCSI layer answers SPACE ALLOCATION FAILED for this kind.
        CacheErrorKind::DiskFull => io::Error::new(io::ErrorKind::StorageFull, e.to_string()),
        _ => io::Error::other(e.to_string()),
    }
}

/// One chunk's share of a byte range.
#[derive(Debug, Clone, Copy)]
struct Piece {
    index: u64,
    offset: u32,
    len: u32,
}

fn pieces(start: u64, len: u64, chunk: u32) -> impl Iterator<Item = Piece> {
    let chunk = u64::from(chunk);
    let end = start + len;
    let mut pos = start;
    std::iter::from_fn(move || {
        if pos >= end {
            return None;
        }
        let index = pos / chunk;
        let offset = pos % chunk;
        let n = (chunk - offset).min(end - pos);
        pos += n;
        Some(Piece { index, offset: offset as u32, len: n as u32 })
    })
}

impl CachedVolume {
    pub(crate) fn new(identity: VolumeIdentity, engine: Arc<Engine>, map: ChunkMap) -> Arc<CachedVolume> {
        let chunk_size = engine.cache.chunk_size();
        let sector_size = engine.cache.sector_size();
        let v = Arc::new_cyclic(|me| CachedVolume {
            namespace: family_namespace(identity.family),
            series: VolumeSeries::new(&engine.metrics, &identity.name),
            identity,
            engine: engine.clone(),
            chunk_size,
            sector_size,
            map: Mutex::new(map),
            gate: RwLock::new(()),
            commit: tokio::sync::Mutex::new(()),
            pending: Mutex::new(None),
            pending_changed: Notify::new(),
            last_rp: Mutex::new(None),
            rp_lock: tokio::sync::Mutex::new(()),
            next_rp_seq: AtomicU64::new(1),
            replaced: Mutex::new(HashSet::new()),
            fetches: Mutex::new(HashMap::new()),
            damage: Mutex::new(DamageRegistry::default()),
            last_read_end: AtomicU64::new(u64::MAX),
            me: me.clone(),
        });
        engine.register(v.clone());
        v
    }

    pub fn size_bytes(&self) -> u64 {
        self.identity.size_bytes
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub(crate) fn gate(&self) -> &RwLock<()> {
        &self.gate
    }

    pub(crate) fn commit_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.commit
    }

    pub(crate) fn chunks(&self) -> u64 {
        self.identity.size_bytes.div_ceil(u64::from(self.chunk_size))
    }

    fn cache_id(&self, index: u64) -> CacheChunkId {
        CacheChunkId::new(self.identity.id, index)
    }

    /// Bytes of chunk `index` inside the volume (the last one may be short).
    fn chunk_len(&self, index: u64) -> u32 {
        let start = index * u64::from(self.chunk_size);
        (self.identity.size_bytes.saturating_sub(start)).min(u64::from(self.chunk_size)) as u32
    }

    /// The chunk's content as the cloud has it (zeros if none), fetched once
    /// however many readers ask at the same time.
    async fn fetch_base(&self, index: u64) -> io::Result<Bytes> {
        Ok(self.fetch_base_ref(index).await?.0)
    }

    /// Like [`Self::fetch_base`], with the map entry the content came from.
    async fn fetch_base_ref(&self, index: u64) -> io::Result<(Bytes, ChunkRef)> {
        let r = lock(&self.map).get(index);
        let id = match r {
            ChunkRef::Zero => return Ok((Bytes::from_static(&ZEROS[..self.chunk_size as usize]), r)),
            ChunkRef::Object(id) => id,
        };
        let cell = lock(&self.fetches).entry(index).or_insert_with(|| Arc::new(OnceCell::new())).clone();
        let result = cell
            .get_or_init(|| async {
                self.series.cloud_reads.inc();
                self.engine.cloud.reader.read_chunk(&self.namespace, &id).await.map_err(|e| (e.to_string(), e.kind()))
            })
            .await
            .clone();
        {
            let mut f = lock(&self.fetches);
            if f.get(&index).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                f.remove(&index);
            }
        }
        let data = match result {
            Ok(data) => data,
            // Retrying cannot help a chunk that fails verification or is
            // gone: it is recorded as damaged and its reads fail.
            Err((reason, CloudErrorKind::Corrupt | CloudErrorKind::NotFound)) => {
                self.note_damage(index, id, &reason);
                return Err(io::Error::other(ChunkUnreadable { chunk: index, object: id, reason }));
            }
            // The store is out of reach for now: the initiator retries
            // (ABORTED COMMAND) instead of failing the I/O as a bad medium.
            Err((reason, CloudErrorKind::Transient)) => return Err(io::Error::new(io::ErrorKind::TimedOut, reason)),
            Err((reason, _)) => return Err(io_err(reason)),
        };
        if data.len() != self.chunk_size as usize {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("chunk {index} has {} bytes", data.len())));
        }
        Ok((data, r))
    }

    /// Records that chunk `index`'s object cannot be read back: logged
    /// (once per chunk and object) and counted.
    pub(crate) fn note_damage(&self, index: u64, object: ChunkId, reason: &str) {
        // An object the map no longer names may be gone for a good reason
        // (replaced, then garbage collected while it was read).
        if lock(&self.map).get(index) != ChunkRef::Object(object) {
            return;
        }
        let (news, count) = {
            let mut damage = lock(&self.damage);
            (damage.record(index, object, reason), damage.len())
        };
        self.series.damaged_chunks.set(count as i64);
        if news {
            let chunk_blocks = u64::from(self.chunk_size / BLOCK_SIZE);
            tracing::error!(
                volume = self.name(),
                chunk = index,
                first_lba = index * chunk_blocks,
                last_lba = (index + 1) * chunk_blocks - 1,
                %object,
                error = reason,
                "a chunk of the volume cannot be read back from the cloud: reads of its sectors not in the cache fail; \
                 rewrite or unmap the range, see `sgw volume show`"
            );
        }
    }

    /// Forgets damage the chunks `indexes` no longer have (uploaded anew,
    /// unmapped, or found readable by a scrub).
    pub(crate) fn clear_damage(&self, indexes: impl IntoIterator<Item = u64>) {
        let count = {
            let mut damage = lock(&self.damage);
            if damage.is_empty() {
                return;
            }
            for index in indexes {
                if damage.clear(index) {
                    tracing::info!(volume = self.name(), chunk = index, "damaged chunk replaced; no longer damaged");
                }
            }
            damage.len()
        };
        self.series.damaged_chunks.set(count as i64);
    }

    /// A scrub read chunk `index`'s `object` back fine: damage recorded
    /// against it is forgotten, unless writes are held on it.
    pub(crate) fn forget_damage_if_readable(&self, index: u64, object: &ChunkId) {
        let (cleared, count) = {
            let mut damage = lock(&self.damage);
            (damage.clear_if_readable(index, object), damage.len())
        };
        if cleared {
            self.series.damaged_chunks.set(count as i64);
            tracing::info!(volume = self.name(), chunk = index, "chunk reads back fine; no longer damaged");
        }
    }

    /// The damaged chunks, with their LBA ranges.
    pub fn damaged_chunks(&self) -> Vec<DamagedChunk> {
        let chunk_blocks = u64::from(self.chunk_size / BLOCK_SIZE);
        let volume_blocks = self.identity.size_bytes / u64::from(BLOCK_SIZE);
        lock(&self.damage).report(chunk_blocks, volume_blocks)
    }

    /// Whether `ref` is a cloud object (worth keeping in the cache).
    fn in_cloud(&self, index: u64) -> bool {
        matches!(lock(&self.map).get(index), ChunkRef::Object(_))
    }

    /// Merges the cached sectors of `outcome` (which covers `piece`) over
    /// `base` (the whole chunk).
    fn merge(&self, piece: Piece, outcome: &ReadOutcome, base: &Bytes) -> Bytes {
        let mut out = BytesMut::with_capacity(piece.len as usize);
        let sector = self.sector_size;
        let mut pos = piece.offset;
        let end = piece.offset + piece.len;
        while pos < end {
            let s = pos / sector;
            let next = ((s + 1) * sector).min(end);
            let rel = (pos - piece.offset) as usize..(next - piece.offset) as usize;
            if outcome.valid.contains(s) {
                out.extend_from_slice(&outcome.data[rel]);
            } else {
                out.extend_from_slice(&base[pos as usize..next as usize]);
            }
            pos = next;
        }
        out.freeze()
    }

    async fn read_piece(&self, piece: Piece) -> io::Result<(Bytes, bool)> {
        let id = self.cache_id(piece.index);
        // Not cached at all (the common cold read): straight from the cloud
        // copy, without reading an empty cache entry first.
        let outcome = match self.engine.cache.lookup(id) {
            None => None,
            Some(info) => {
                let outcome = match self.engine.cache.read(id, piece.offset, piece.len).await {
                    Ok(outcome) => outcome,
                    // A clean chunk is what the map names (a chunk becomes
                    // clean once the map records its upload): while the
                    // cache disk fails, reads of it come from the cloud.
                    Err(e) if e.kind() == CacheErrorKind::Io && info.state == ChunkState::Clean => {
                        let (base, _) = self.fetch_base_ref(piece.index).await?;
                        return Ok((base.slice(piece.offset as usize..(piece.offset + piece.len) as usize), false));
                    }
                    Err(e) => return Err(cache_err(e)),
                };
                if outcome.complete {
                    return Ok((outcome.data, true));
                }
                Some(outcome)
            }
        };
        let (base, from) = self.fetch_base_ref(piece.index).await?;
        let from_cloud = matches!(from, ChunkRef::Object(_));
        let data = match &outcome {
            Some(outcome) if !outcome.valid.is_empty() => self.merge(piece, outcome, &base),
            _ => base.slice(piece.offset as usize..(piece.offset + piece.len) as usize),
        };
        if from_cloud {
            // In the background: the reader does not wait for the cache.
            // A fill only touches sectors that are not valid, so a write
            // that lands first is never undone.
            if let Some(me) = self.me.upgrade() {
                tokio::spawn(async move { me.fill(piece.index, from, base).await });
            }
        }
        Ok((data, false))
    }

    /// Keeps fetched data in the cache; a full cache only costs a refetch.
    /// Only while the map still names what was fetched: otherwise the chunk
    /// was rewritten, uploaded and maybe evicted meanwhile, and the old
    /// content must not come back as if it were current. (The commit lock
    /// keeps the map from changing between the check and the fill.)
    async fn fill(&self, index: u64, from: ChunkRef, base: Bytes) {
        let _commit = self.commit.lock().await;
        if lock(&self.map).get(index) != from {
            return;
        }
        let len = self.chunk_len(index) as usize;
        let _ = self.engine.cache.fill(self.cache_id(index), 0, base.slice(..len.min(base.len()))).await;
    }

    /// Fetches the chunks after `index` that are neither cached nor zero.
    fn prefetch_after(self: &Arc<Self>, index: u64) {
        let last = self.chunks();
        for next in index + 1..(index + 1 + PREFETCH_CHUNKS).min(last) {
            if !self.in_cloud(next) || self.engine.cache.lookup(self.cache_id(next)).is_some() {
                continue;
            }
            if lock(&self.fetches).contains_key(&next) {
                continue;
            }
            let v = self.clone();
            tokio::spawn(async move {
                if let Ok((base, from)) = v.fetch_base_ref(next).await {
                    v.series.prefetched_chunks.inc();
                    v.fill(next, from, base).await;
                }
            });
        }
    }

    /// The whole chunk as it is now (cache over cloud) and the cache
    /// generation read: what an upload or a capture stores.
    async fn whole_chunk(&self, index: u64) -> io::Result<(Bytes, u64)> {
        let len = self.chunk_len(index);
        let id = self.cache_id(index);
        let outcome = self.engine.cache.read(id, 0, len).await.map_err(cache_err)?;
        let data = if outcome.complete {
            outcome.data.clone()
        } else {
            let base = self.fetch_base(index).await?;
            self.merge(Piece { index, offset: 0, len }, &outcome, &base)
        };
        // Chunks are stored whole, so a short last chunk is padded.
        let data = if data.len() < self.chunk_size as usize {
            let mut full = BytesMut::from(&data[..]);
            full.resize(self.chunk_size as usize, 0);
            full.freeze()
        } else {
            data
        };
        Ok((data, outcome.generation))
    }

    /// Writes map entries to the local map store, durably.
    async fn persist_map(&self, entries: Vec<(u64, ChunkRef)>) -> io::Result<()> {
        let maps = self.engine.maps.clone();
        let volume = self.id();
        tokio::task::spawn_blocking(move || maps.apply(volume, &entries)).await.map_err(io_err)?.map_err(io_err)
    }

    /// Records completed uploads: the chunk map durably first, then the
    /// cache may consider the chunks clean.
    async fn record(&self, done: &[Uploaded]) -> io::Result<()> {
        let _commit = self.commit.lock().await;
        // An unmap that discarded the chunk while it uploaded wins, even if
        // the chunk was written again since (its generations start over).
        let live: Vec<(u64, u64, ChunkRef)> = done
            .iter()
            .filter(|u| !self.engine.discarded_since(self.id(), u.index, u.token))
            .filter(|u| self.engine.cache.lookup(self.cache_id(u.index)).is_some())
            .map(|u| (u.index, u.cache_generation, u.chunk))
            .collect();
        let entries: Vec<(u64, ChunkRef)> = live.iter().map(|(i, _, r)| (*i, *r)).collect();
        self.persist_map(entries.clone()).await?;
        {
            let mut map = lock(&self.map);
            let mut replaced = lock(&self.replaced);
            for (index, r) in &entries {
                if let ChunkRef::Object(old) = map.set(*index, *r) {
                    if ChunkRef::Object(old) != *r {
                        replaced.insert(old);
                    }
                }
            }
        }
        self.resolve_pending(&live);
        // An upload is made of a whole chunk, so it no longer needs a
        // damaged object.
        self.clear_damage(live.iter().map(|(index, _, _)| *index));
        for (index, generation, _) in &live {
            self.engine.cache.mark_uploaded(self.cache_id(*index), *generation).map_err(cache_err)?;
        }
        Ok(())
    }

    fn resolve_pending(&self, uploads: &[(u64, u64, ChunkRef)]) {
        let mut pending = lock(&self.pending);
        let Some(rp) = pending.as_mut() else { return };
        let mut changed = false;
        for (index, generation, r) in uploads {
            if let Some(c) = rp.chunks.get_mut(index) {
                if matches!(c, PendingChunk::Waiting(g) if g == generation) {
                    *c = PendingChunk::Resolved(*r);
                    rp.remaining -= 1;
                    changed = true;
                }
            }
        }
        drop(pending);
        if changed {
            self.pending_changed.notify_waiters();
        }
    }

    /// A recovery point's copy finished uploading.
    async fn capture_done(&self, rp_seq: u64, index: u64, result: Result<ChunkRef, String>) {
        let resubmit = {
            let mut pending = lock(&self.pending);
            let Some(rp) = pending.as_mut().filter(|rp| rp.seq == rp_seq) else { return };
            let Some(c) = rp.chunks.get_mut(&index) else { return };
            match (result, &*c) {
                (Ok(r), PendingChunk::Captured(_)) => {
                    *c = PendingChunk::Resolved(r);
                    rp.remaining -= 1;
                    None
                }
                (Err(e), PendingChunk::Captured(data)) => {
                    tracing::warn!(volume = self.name(), chunk = index, error = %e, "recovery point copy failed; again");
                    Some(data.clone())
                }
                _ => None,
            }
        };
        match resubmit {
            Some(data) => {
                let kind = JobKind::Capture { owner: self.id(), rp_seq, index };
                self.engine.submit(kind, &self.namespace, index, data).await;
            }
            None => self.pending_changed.notify_waiters(),
        }
    }

    /// Before chunk `index` changes: if a recovery point still needs its
    /// current content, copy it out first.
    async fn capture_if_pending(&self, index: u64) -> io::Result<()> {
        loop {
            let notified = self.pending_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let claimed = {
                let mut pending = lock(&self.pending);
                let Some(rp) = pending.as_mut() else { return Ok(()) };
                match rp.chunks.get_mut(&index) {
                    Some(c @ PendingChunk::Waiting(_)) => {
                        let PendingChunk::Waiting(generation) = std::mem::replace(c, PendingChunk::Capturing) else {
                            return Ok(());
                        };
                        Some((rp.seq, generation))
                    }
                    Some(PendingChunk::Capturing) => None,
                    _ => return Ok(()),
                }
            };
            let Some((seq, generation)) = claimed else {
                notified.await;
                continue;
            };
            let data = match self.whole_chunk(index).await {
                Ok((data, _)) => data,
                Err(e) => {
                    // Not copied: the upload of that generation (or the
                    // next writer's copy) still resolves it.
                    self.set_pending(seq, index, PendingChunk::Waiting(generation));
                    return Err(e);
                }
            };
            self.set_pending(seq, index, PendingChunk::Captured(data.clone()));
            let kind = JobKind::Capture { owner: self.id(), rp_seq: seq, index };
            self.engine.submit(kind, &self.namespace, index, data).await;
            return Ok(());
        }
    }

    fn set_pending(&self, seq: u64, index: u64, state: PendingChunk) {
        if let Some(rp) = lock(&self.pending).as_mut().filter(|rp| rp.seq == seq) {
            rp.chunks.insert(index, state);
        }
        self.pending_changed.notify_waiters();
    }

    /// Fixes a recovery point's content: the map now, plus the chunks that
    /// are still dirty, which resolve as they upload or are copied.
    /// Called with the gate held exclusively and the commit lock held.
    pub(crate) fn begin_pending(&self, seq: u64) {
        let map = lock(&self.map).clone();
        let chunks: HashMap<u64, PendingChunk> = self
            .engine
            .cache
            .unsynced_chunks(self.id())
            .into_iter()
            .map(|d| (d.id.index, PendingChunk::Waiting(d.generation)))
            .collect();
        let remaining = chunks.len();
        *lock(&self.pending) = Some(PendingRp { seq, map, chunks, remaining });
    }

    /// Waits until every chunk of the pending recovery point resolved, and
    /// returns its map; fails, naming the ranges, if one of them is a
    /// damaged chunk whose writes the engine holds (it would never
    /// resolve).
    pub(crate) async fn finish_pending(&self) -> Result<ChunkMap, CloudError> {
        loop {
            let notified = self.pending_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut pending = lock(&self.pending);
                if pending.as_ref().is_some_and(|rp| rp.remaining == 0) {
                    if let Some(rp) = pending.take() {
                        let mut map = rp.map;
                        for (index, c) in rp.chunks {
                            if let PendingChunk::Resolved(r) = c {
                                map.set(index, r);
                            }
                        }
                        return Ok(map);
                    }
                }
                if let Some(blocked) = self.blocked_by_damage(pending.as_ref()) {
                    *pending = None;
                    drop(pending);
                    self.pending_changed.notify_waiters();
                    return Err(CloudError::Damaged(blocked));
                }
            }
            self.engine.wake_feeder();
            // Completions notify; the timeout only bounds a lost wakeup.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(500), notified).await;
        }
    }

    /// The message a recovery point fails with when chunks it waits for are
    /// damaged and held.
    fn blocked_by_damage(&self, rp: Option<&PendingRp>) -> Option<String> {
        let rp = rp?;
        let held: Vec<DamagedChunk> = self
            .damaged_chunks()
            .into_iter()
            .filter(|d| d.writes_held && matches!(rp.chunks.get(&d.chunk), Some(PendingChunk::Waiting(_))))
            .collect();
        if held.is_empty() {
            return None;
        }
        Some(format!(
            "recovery point of volume {} not made: {} cannot be read back from the cloud and has writes that need the \
             rest of the chunk; write the whole range again or unmap it (see `sgw volume show {}`)",
            self.name(),
            super::damage::ranges_text(&held),
            self.name()
        ))
    }

    /// Every id the pending recovery point may still reference.
    pub(crate) fn pending_objects(&self) -> Vec<ChunkId> {
        let pending = lock(&self.pending);
        let Some(rp) = pending.as_ref() else { return Vec::new() };
        let mut ids: Vec<ChunkId> = rp.map.objects().collect();
        ids.extend(rp.chunks.values().filter_map(|c| match c {
            PendingChunk::Resolved(ChunkRef::Object(id)) => Some(*id),
            _ => None,
        }));
        ids
    }

    /// A command's write, cut at chunk boundaries. `checksums` (in cache
    /// sectors, from the start of `data`) go with each piece that is whole
    /// sectors.
    async fn write_blocks(&self, lba: Lba, data: Bytes, fua: bool, checksums: Option<&DataOutChecksums>) -> io::Result<()> {
        let started = Instant::now();
        let start = lba.0 * u64::from(BLOCK_SIZE);
        let len = data.len() as u64;
        {
            let _gate = self.gate.read().await;
            let mut at = 0usize;
            for p in pieces(start, len, self.chunk_size) {
                let part = data.slice(at..at + p.len as usize);
                let crcs = checksums.and_then(|c| c.range(at, part.len()));
                at += p.len as usize;
                self.write_piece(p, part, crcs).await?;
            }
        }
        if fua {
            self.engine.cache.flush().await.map_err(cache_err)?;
        }
        self.engine.note_write();
        self.series.write_bytes.inc_by(len);
        self.series.write_seconds.observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Writes one chunk's part of a command; `crcs`, the transport's
    /// checksums of `data`'s sectors, spare the cache reading it again.
    async fn write_piece(&self, piece: Piece, data: Bytes, crcs: Option<&[u32]>) -> io::Result<()> {
        self.capture_if_pending(piece.index).await?;
        let id = self.cache_id(piece.index);
        for _ in 0..WRITE_ATTEMPTS {
            match self.engine.cache.write_checksummed(id, piece.offset, data.clone(), crcs).await {
                Ok(()) => {
                    self.release_if_whole(piece.index);
                    return Ok(());
                }
                Err(e) if e.kind() == CacheErrorKind::InvalidInput => {
                    // A sector written in part must hold its old content.
                    let (base, from) = self.fetch_base_ref(piece.index).await?;
                    self.fill(piece.index, from, base).await;
                }
                Err(e) => return Err(cache_err(e)),
            }
        }
        Err(io::Error::other(format!("chunk {} kept being evicted during a partial write", piece.index)))
    }

    /// A damaged chunk the engine holds becomes uploadable once the cache
    /// holds all of it: it goes back to the upload queue.
    fn release_if_whole(&self, index: u64) {
        if !lock(&self.damage).is_held(index) {
            return;
        }
        let id = self.cache_id(index);
        let sectors = self.chunk_len(index).div_ceil(self.sector_size);
        let whole = self.engine.cache.lookup(id).is_some_and(|info| info.valid.contains_range(0..sectors));
        if whole && lock(&self.damage).release(index) {
            self.engine.cache.abandon_upload(id);
            self.engine.wake_feeder();
        }
    }

    /// Deallocates whole chunks: the cache forgets them and the map records
    /// zeros, durably, before the command completes.
    async fn unmap_chunks(&self, range: std::ops::Range<u64>) -> io::Result<()> {
        for index in range.clone() {
            self.capture_if_pending(index).await?;
        }
        let _commit = self.commit.lock().await;
        self.engine.note_discard(self.id(), range.clone());
        self.engine.cache.discard(self.id(), range.clone()).await.map_err(cache_err)?;
        self.clear_damage(range.clone());
        let entries: Vec<(u64, ChunkRef)> = {
            let map = lock(&self.map);
            range.clone().filter(|i| map.get(*i) != ChunkRef::Zero).map(|i| (i, ChunkRef::Zero)).collect()
        };
        if entries.is_empty() {
            return Ok(());
        }
        self.persist_map(entries.clone()).await?;
        let mut map = lock(&self.map);
        let mut replaced = lock(&self.replaced);
        for (index, _) in entries {
            if let ChunkRef::Object(old) = map.set(index, ChunkRef::Zero) {
                replaced.insert(old);
            }
        }
        Ok(())
    }

    fn provisioning_of(&self, index: u64) -> Provisioning {
        if self.engine.cache.lookup(self.cache_id(index)).is_some() || self.in_cloud(index) {
            Provisioning::Mapped
        } else {
            Provisioning::Deallocated
        }
    }

    /// Shares of the cache metrics that admins read as percentages.
    pub(crate) fn publish_cache_gauges(engine: &Engine) {
        let s = engine.cache.stats();
        let m = &engine.metrics;
        let percent = |part: u64, whole: u64| if whole == 0 { 0.0 } else { part as f64 * 100.0 / whole as f64 };
        m.cache_total_bytes.set(s.capacity_bytes as i64);
        m.cache_percent_used.set(percent(s.used_bytes, s.capacity_bytes));
        m.cache_percent_dirty.set(percent(s.dirty_bytes, s.capacity_bytes));
        let buffer = engine.cache.upload_buffer_bytes();
        m.upload_buffer_percent_used.set(percent(s.dirty_bytes, buffer).min(100.0));
        m.upload_buffer_percent_dirty.set(percent(s.upload_backlog_bytes, buffer).min(100.0));
        m.upload_buffer_used_bytes.set(s.dirty_bytes as i64);
        m.upload_buffer_free_bytes.set(buffer.saturating_sub(s.dirty_bytes) as i64);
        engine.metrics.queued_writes_bytes.set(s.upload_backlog_bytes as i64);
    }
}

#[async_trait]
impl ChunkOwner for CachedVolume {
    fn id(&self) -> u64 {
        self.identity.id
    }

    fn family(&self) -> u64 {
        self.identity.family
    }

    fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    fn name(&self) -> &str {
        &self.identity.name
    }

    async fn read_whole_chunk(&self, index: u64) -> io::Result<(Bytes, u64)> {
        match self.whole_chunk(index).await {
            Err(e) if unreadable_chunk(&e).is_some() => {
                if lock(&self.damage).hold(index) {
                    // The engine keeps it out of the queue (see `damage`);
                    // a recovery point waiting for it learns why.
                    self.pending_changed.notify_waiters();
                    return Err(e);
                }
                // Not recorded (the map moved on meanwhile): nothing would
                // release a held chunk, so it is retried like any failure.
                Err(io::Error::other(e.to_string()))
            }
            result => result,
        }
    }

    async fn record_uploads(&self, done: &[Uploaded]) -> io::Result<()> {
        self.record(done).await
    }

    async fn capture_uploaded(&self, rp_seq: u64, index: u64, result: Result<ChunkRef, String>) {
        self.capture_done(rp_seq, index, result).await
    }
}

#[async_trait]
impl BlockDevice for CachedVolume {
    fn block_size(&self) -> u32 {
        BLOCK_SIZE
    }

    fn num_blocks(&self) -> u64 {
        self.identity.size_bytes / u64::from(BLOCK_SIZE)
    }

    async fn read(&self, lba: Lba, count: BlockCount) -> io::Result<Bytes> {
        let started = Instant::now();
        let start = lba.0 * u64::from(BLOCK_SIZE);
        let len = count.0 * u64::from(BLOCK_SIZE);
        let mut parts: Vec<Piece> = pieces(start, len, self.chunk_size).collect();
        let sequential = self.last_read_end.swap(start + len, Ordering::Relaxed) == start;
        let mut hit = true;
        let data = if parts.len() == 1 {
            let (data, h) = self.read_piece(parts.remove(0)).await?;
            hit = h;
            data
        } else {
            let mut out = BytesMut::with_capacity(len as usize);
            for p in parts {
                let (data, h) = self.read_piece(p).await?;
                hit &= h;
                out.extend_from_slice(&data);
            }
            out.freeze()
        };
        let m = &self.series;
        m.reads.inc();
        if hit {
            m.cache_hits.inc();
        }
        m.read_bytes.inc_by(len);
        m.read_seconds.observe(started.elapsed().as_secs_f64());
        if sequential || !hit {
            // Not `self: Arc`: the prefetch holds the volume through the
            // engine's registry instead.
            if sequential {
                if let Some(me) = self.me.upgrade() {
                    me.prefetch_after((start + len - 1) / u64::from(self.chunk_size));
                }
            }
        }
        Ok(data)
    }

    async fn write(&self, lba: Lba, data: Bytes, fua: bool) -> io::Result<()> {
        self.write_blocks(lba, data, fua, None).await
    }

    /// The cache's sectors: the transport checksums WRITE data in them.
    fn checksum_granule(&self) -> Option<u32> {
        Some(self.sector_size)
    }

    async fn write_checksummed(&self, lba: Lba, data: Bytes, fua: bool, checksums: &DataOutChecksums) -> io::Result<()> {
        let fits = checksums.granule == self.sector_size;
        self.write_blocks(lba, data, fua, Some(checksums).filter(|_| fits)).await
    }

    async fn flush(&self) -> io::Result<()> {
        self.engine.cache.flush().await.map_err(cache_err)
    }

    async fn unmap(&self, lba: Lba, count: BlockCount) -> io::Result<()> {
        let start = lba.0 * u64::from(BLOCK_SIZE);
        let len = count.0 * u64::from(BLOCK_SIZE);
        let _gate = self.gate.read().await;
        let mut whole_start = None;
        let mut whole_end = 0;
        for p in pieces(start, len, self.chunk_size) {
            if p.offset == 0 && p.len == self.chunk_len(p.index) {
                whole_start.get_or_insert(p.index);
                whole_end = p.index + 1;
            } else {
                // Part of a chunk reads back as zeros: write them.
                self.write_piece(p, Bytes::from_static(&ZEROS[..p.len as usize]), None).await?;
            }
        }
        if let Some(first) = whole_start {
            self.unmap_chunks(first..whole_end).await?;
        }
        self.engine.note_write();
        Ok(())
    }

    async fn provisioning(&self, lba: Lba, max: BlockCount) -> io::Result<(Provisioning, BlockCount)> {
        let chunk_blocks = u64::from(self.chunk_size / BLOCK_SIZE);
        let first = lba.0 / chunk_blocks;
        let status = self.provisioning_of(first);
        let mut end = (first + 1) * chunk_blocks;
        while end < lba.0 + max.0 && self.provisioning_of(end / chunk_blocks) == status {
            end += chunk_blocks;
        }
        Ok((status, BlockCount(end.min(lba.0 + max.0) - lba.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_ranges() {
        let p: Vec<Piece> = pieces(1000, 3000, 1024).collect();
        assert_eq!(p.len(), 4);
        assert_eq!((p[0].index, p[0].offset, p[0].len), (0, 1000, 24));
        assert_eq!((p[3].index, p[3].offset, p[3].len), (3, 0, 928));
        assert_eq!(p.iter().map(|p| p.len as u64).sum::<u64>(), 3000);
    }
}
