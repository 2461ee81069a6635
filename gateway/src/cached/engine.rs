//! What every cached volume shares: the cache, the cloud layer, the chunk
//! maps, and the two tasks that move data up: the *feeder* hands dirty
//! chunks from the cache to the uploader, the *committer* records each
//! upload in the volume's chunk map (durably) before the cache may treat
//! the chunk as clean and evict it.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cache::{Cache, ChunkId as CacheChunkId};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::damage::unreadable_chunk;
use super::map::{ChunkRef, MapStore};
use super::metrics::VolumeMetrics;
use super::upload_errors::{LogOncePerCause, UploadBackoff};
use crate::health::HealthBoard;
use crate::cloud::uploader::{StoredChunk, UploadCompletion};
use crate::cloud::{ChunkId, CloudLayer, Namespace, UploadJob};

/// One finished upload, as [`ChunkOwner::record_uploads`] receives it.
#[derive(Debug, Clone, Copy)]
pub struct Uploaded {
    pub index: u64,
    /// The cache generation the upload read.
    pub cache_generation: u64,
    pub chunk: ChunkRef,
    /// The job's token: see [`Engine::discarded_since`].
    pub token: u64,
}

/// Whatever keeps chunks in the cache under one cache namespace and ships
/// them to the cloud: a cached volume, a virtual tape.
#[async_trait::async_trait]
pub trait ChunkOwner: Send + Sync {
    /// The cache namespace (volume or tape id).
    fn id(&self) -> u64;
    /// Objects of owners in one family share a cloud namespace and may
    /// reference each other's chunks (clones); garbage collection and
    /// tombstones work per family.
    fn family(&self) -> u64;
    fn namespace(&self) -> &Namespace;
    fn name(&self) -> &str;
    /// The whole chunk as it is now and the cache generation read. An
    /// error carrying `damage::ChunkUnreadable` makes the engine hold the
    /// chunk (neither retried nor evicted) until the owner hands it back
    /// with `Cache::abandon_upload`.
    async fn read_whole_chunk(&self, index: u64) -> io::Result<(Bytes, u64)>;
    /// Records finished uploads: durably in the owner's map first, then
    /// `Cache::mark_uploaded`. Uploads of chunks discarded since they were
    /// submitted ([`Engine::discarded_since`]) must be skipped, under the
    /// same lock the discard takes.
    async fn record_uploads(&self, done: &[Uploaded]) -> io::Result<()>;
    /// A copy submitted with [`JobKind::Capture`] finished uploading.
    async fn capture_uploaded(&self, rp_seq: u64, index: u64, result: Result<ChunkRef, String>) {
        let _ = (rp_seq, index, result);
    }
}

/// Chunks handed to the uploader per round.
const FEED_BATCH: usize = 32;
/// How long the feeder sleeps when nothing is dirty and nobody wakes it.
const FEED_IDLE: Duration = Duration::from_millis(200);
/// How often the cache is checked, and probed while it is degraded (see
/// `Cache::probe`).
const CACHE_WATCH: Duration = Duration::from_secs(2);
/// Write-behind: uploads start once writes pause this long...
const WRITE_QUIET: Duration = Duration::from_millis(300);
/// ...or once chunks waiting for upload fill this share (1/n) of the
/// cache, or when someone waits for them (a recovery point, a tape export).
/// Copy-on-write bases do not count: uploads cannot free them. With every
/// chunk copied on write, dirty slots then stand at half the cache when
/// uploads start, well below the writers' high watermark.
const PRESSURE_SHARE: u64 = 4;
/// How long a wake-up keeps the feeder uploading regardless of writes.
const URGENT_FOR: Duration = Duration::from_secs(2);

/// What an upload job was for; its token comes back as the completion's
/// generation.
#[derive(Debug, Clone, Copy)]
pub(crate) enum JobKind {
    /// A dirty chunk of the cache, at this cache generation.
    Dirty { owner: u64, index: u64, cache_generation: u64 },
    /// A recovery point's copy of a chunk taken before a write changed it.
    Capture { owner: u64, rp_seq: u64, index: u64 },
}

pub struct Engine {
    pub cache: Arc<Cache>,
    pub cloud: Arc<CloudLayer>,
    pub maps: Arc<MapStore>,
    pub metrics: VolumeMetrics,
    owners: Mutex<HashMap<u64, Weak<dyn ChunkOwner>>>,
    jobs: Mutex<HashMap<u64, JobKind>>,
    next_token: AtomicU64,
    /// Deleted object ids and the first token issued after each deletion:
    /// an upload with an older token may have stored its object before the
    /// delete, so its chunk is uploaded again.
    tombstones: Mutex<HashMap<(u64, ChunkId), u64>>,
    /// Chunks discarded (UNMAP, a tape cut short), with the first token
    /// issued after: an upload with an older token carries content from
    /// before the discard, which a rewrite of the chunk (whose cache
    /// generations start again) must not be mistaken for.
    discards: Mutex<Vec<(u64, std::ops::Range<u64>, u64)>>,
    wake: Notify,
    /// Milliseconds since `epoch` of the last write, and until when the
    /// feeder uploads regardless.
    last_write_ms: AtomicU64,
    urgent_until_ms: AtomicU64,
    epoch: std::time::Instant,
    /// Held while completions are applied and while garbage collection
    /// decides what nothing references, so neither sees the other half-done.
    pub gc_lock: tokio::sync::Mutex<()>,
    /// After failed uploads the feeder pauses (see `upload_errors`).
    upload_backoff: Mutex<UploadBackoff>,
    upload_log: Mutex<LogOncePerCause>,
    /// The cause of the last round of uploads, while it failed.
    upload_fault: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Engine {
    pub fn new(cache: Arc<Cache>, cloud: Arc<CloudLayer>, maps: Arc<MapStore>, metrics: VolumeMetrics) -> Arc<Engine> {
        Arc::new(Engine {
            cache,
            cloud,
            maps,
            metrics,
            owners: Mutex::new(HashMap::new()),
            jobs: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
            tombstones: Mutex::new(HashMap::new()),
            discards: Mutex::new(Vec::new()),
            wake: Notify::new(),
            last_write_ms: AtomicU64::new(0),
            urgent_until_ms: AtomicU64::new(0),
            epoch: std::time::Instant::now(),
            gc_lock: tokio::sync::Mutex::new(()),
            upload_backoff: Mutex::new(UploadBackoff::default()),
            upload_log: Mutex::new(LogOncePerCause::default()),
            upload_fault: Mutex::new(None),
        })
    }

    /// Reports the cache's and the uploads' health to `board` (and through
    /// it to `gauge`, `sgw_health`) until `shutdown`, probing a degraded
    /// cache so that it recovers by itself once its disk has room or
    /// answers again.
    pub fn watch_health(self: &Arc<Self>, board: Arc<HealthBoard>, gauge: prometheus::IntGaugeVec, shutdown: CancellationToken) {
        board.export_to(gauge);
        let engine = self.clone();
        tokio::spawn(async move {
            loop {
                if engine.cache.fault().is_some() {
                    // Failing probes leave the fault in place; nothing to log.
                    let _ = engine.cache.probe().await;
                }
                board.report(crate::health::CACHE, engine.cache.fault().map(|f| f.reason));
                board.report(crate::health::UPLOADS, lock(&engine.upload_fault).clone());
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(CACHE_WATCH) => {}
                }
            }
        });
    }

    /// Logs an upload failure unless its cause was logged within the last
    /// minute (then at debug level).
    fn log_upload_failure(&self, what: &str, volume: &str, chunk: u64, cause: &str, error: &str) {
        if lock(&self.upload_log).admit(cause, Instant::now()) {
            warn!(volume, chunk, error, "{what}; uploads pause and retry, the same cause is logged once a minute");
        } else {
            debug!(volume, chunk, error, "{what}");
        }
    }

    /// A round of uploads failed: the feeder pauses, longer each time.
    fn uploads_failed(&self, cause: &str) {
        *lock(&self.upload_fault) = Some(cause.to_owned());
        let pause = lock(&self.upload_backoff).failed(Instant::now());
        debug!(?pause, cause, "uploads pause");
    }

    fn uploads_succeeded(&self) {
        *lock(&self.upload_fault) = None;
        lock(&self.upload_backoff).succeeded();
    }

    /// Starts the feeder and the committer; they end with `shutdown`.
    pub fn start(self: &Arc<Self>, completions: mpsc::Receiver<UploadCompletion>, shutdown: CancellationToken) {
        tokio::spawn(self.clone().feeder(shutdown.clone()));
        tokio::spawn(self.clone().committer(completions, shutdown));
    }

    /// Makes the engine upload `owner`'s dirty chunks.
    pub fn register(&self, owner: Arc<dyn ChunkOwner>) {
        lock(&self.owners).insert(owner.id(), Arc::downgrade(&owner));
    }

    pub fn unregister(&self, id: u64) {
        lock(&self.owners).remove(&id);
    }

    fn owner(&self, id: u64) -> Option<Arc<dyn ChunkOwner>> {
        lock(&self.owners).get(&id).and_then(Weak::upgrade)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A write happened: uploads wait until writes pause (write-behind
    /// coalesces rewrites of hot chunks and keeps upload work off the
    /// write path during bursts), unless the cache fills.
    pub fn note_write(&self) {
        self.last_write_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Someone waits for uploads (a recovery point, a tape export): the
    /// feeder uploads at once, whatever the writers do.
    pub fn wake_feeder(&self) {
        self.urgent_until_ms.store(self.now_ms() + URGENT_FOR.as_millis() as u64, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// Whether the feeder should upload now (see [`Engine::note_write`]).
    fn upload_now(&self) -> bool {
        let now = self.now_ms();
        if now < self.urgent_until_ms.load(Ordering::Relaxed)
            || now.saturating_sub(self.last_write_ms.load(Ordering::Relaxed)) >= WRITE_QUIET.as_millis() as u64
        {
            return true;
        }
        let s = self.cache.stats();
        s.upload_backlog_bytes >= s.capacity_bytes / PRESSURE_SHARE
    }

    /// Submits a job, returning its token.
    pub(crate) async fn submit(&self, kind: JobKind, namespace: &Namespace, index: u64, data: Bytes) -> bool {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        lock(&self.jobs).insert(token, kind);
        let job = UploadJob { namespace: namespace.clone(), chunk_index: index, generation: token, data };
        if let Err(e) = self.cloud.uploader.submit(job).await {
            warn!(error = %e, "upload submit failed");
            lock(&self.jobs).remove(&token);
            return false;
        }
        true
    }

    /// Records that objects were deleted (garbage collection), so that
    /// uploads racing with the delete are repeated.
    pub fn tombstone(&self, volume_family: u64, ids: &[ChunkId]) {
        let next = self.next_token.load(Ordering::Relaxed);
        let mut t = lock(&self.tombstones);
        for id in ids {
            t.insert((volume_family, *id), next);
        }
    }

    /// Records that `owner`'s chunks `range` were discarded: call it before
    /// the discard, under the lock `record_uploads` takes.
    pub fn note_discard(&self, owner: u64, range: std::ops::Range<u64>) {
        let next = self.next_token.load(Ordering::Relaxed);
        lock(&self.discards).push((owner, range, next));
    }

    /// Whether the upload with `token` of `owner`'s chunk `index` was
    /// submitted before a discard of that chunk.
    pub fn discarded_since(&self, owner: u64, index: u64, token: u64) -> bool {
        lock(&self.discards).iter().any(|(o, r, after)| *o == owner && r.contains(&index) && token < *after)
    }

    /// Drops tombstones and discard marks no outstanding job can race with
    /// any more.
    fn prune_tombstones(&self) {
        let oldest = lock(&self.jobs).keys().min().copied().unwrap_or(u64::MAX);
        lock(&self.tombstones).retain(|_, after| *after > oldest);
        lock(&self.discards).retain(|(_, _, after)| *after > oldest);
    }

    fn tombstoned(&self, family: u64, id: &ChunkId, token: u64) -> bool {
        lock(&self.tombstones).get(&(family, *id)).is_some_and(|after| token < *after)
    }

    async fn feeder(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let pause = lock(&self.upload_backoff).remaining(Instant::now());
            if let Some(pause) = pause {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                continue;
            }
            if !self.upload_now() {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(WRITE_QUIET / 3) => {}
                }
                continue;
            }
            let batch = self.cache.dirty_batch(FEED_BATCH);
            if batch.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(FEED_IDLE) => {}
                }
                continue;
            }
            let mut failed = None;
            for dirty in batch {
                let Some(volume) = self.owner(dirty.id.namespace) else {
                    // A volume being deleted; its chunks go with it.
                    self.cache.abandon_upload(dirty.id);
                    continue;
                };
                match volume.read_whole_chunk(dirty.id.index).await {
                    Ok((data, generation)) => {
                        let kind =
                            JobKind::Dirty { owner: volume.id(), index: dirty.id.index, cache_generation: generation };
                        if !self.submit(kind, volume.namespace(), dirty.id.index, data).await {
                            self.cache.abandon_upload(dirty.id);
                            failed = Some("upload submit failed".to_owned());
                        }
                    }
                    Err(e) if unreadable_chunk(&e).is_some() => {
                        // Its cloud copy is damaged and the cache lacks part
                        // of it: retrying cannot help. It stays out of the
                        // queue (still dirty, so never evicted) until the
                        // volume hands it back, and the other chunks go on;
                        // the volume has recorded and logged it.
                        debug!(volume = volume.name(), chunk = dirty.id.index, error = %e, "dirty chunk held: damaged in the cloud");
                    }
                    Err(e) => {
                        let what = "cannot read a dirty chunk for upload";
                        // The message names the chunk's object; the kind
                        // is the cause logged once a minute.
                        let cause = format!("{what}: {}", e.kind());
                        self.log_upload_failure(what, volume.name(), dirty.id.index, &cause, &e.to_string());
                        self.cache.abandon_upload(dirty.id);
                        failed = Some(format!("{what}: {e}"));
                    }
                }
            }
            if let Some(cause) = failed {
                self.uploads_failed(&cause);
            }
        }
    }

    async fn committer(self: Arc<Self>, mut completions: mpsc::Receiver<UploadCompletion>, shutdown: CancellationToken) {
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => return,
                c = completions.recv() => match c { Some(c) => c, None => return },
            };
            let mut batch = vec![first];
            while batch.len() < 256 {
                match completions.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            self.commit_batch(batch).await;
            self.prune_tombstones();
        }
    }

    /// Applies a batch of completions: chunk maps first (one synced write
    /// per volume), then the cache learns which chunks are clean.
    async fn commit_batch(&self, batch: Vec<UploadCompletion>) {
        let _gc = self.gc_lock.lock().await;
        // Per chunk: index, cache generation, outcome (an error with its
        // cause), token.
        type Outcome = (u64, u64, Result<ChunkRef, (String, String)>, u64);
        let mut per_volume: HashMap<u64, Vec<Outcome>> = HashMap::new();
        let mut failure = None;
        let mut stored = false;
        for c in batch {
            let Some(kind) = lock(&self.jobs).remove(&c.generation) else { continue };
            let outcome = match c.result {
                Ok(StoredChunk::Zero) => Ok(ChunkRef::Zero),
                Ok(StoredChunk::Object { id, .. }) => Ok(ChunkRef::Object(id)),
                Err(e) => {
                    failure = Some(e.cause.clone());
                    Err((e.to_string(), e.cause))
                }
            };
            stored |= outcome.is_ok();
            match kind {
                JobKind::Capture { owner, rp_seq, index } => {
                    if let Some(v) = self.owner(owner) {
                        let result = match outcome.map_err(|(message, _)| message) {
                            Ok(ChunkRef::Object(id)) if self.tombstoned(v.family(), &id, c.generation) => {
                                Err("object deleted while it was uploaded".to_owned())
                            }
                            r => r,
                        };
                        v.capture_uploaded(rp_seq, index, result).await;
                    }
                }
                JobKind::Dirty { owner, index, cache_generation } => {
                    per_volume.entry(owner).or_default().push((index, cache_generation, outcome, c.generation));
                }
            }
        }
        for (volume_id, items) in per_volume {
            let Some(volume) = self.owner(volume_id) else {
                for (index, _, _, _) in items {
                    self.cache.abandon_upload(CacheChunkId::new(volume_id, index));
                }
                continue;
            };
            let mut done = Vec::new();
            let mut retry = Vec::new();
            for (index, generation, result, token) in items {
                match result {
                    Ok(ChunkRef::Object(id)) if self.tombstoned(volume.family(), &id, token) => {
                        debug!(volume = volume.name(), chunk = index, "upload raced with garbage collection: again");
                        retry.push(index);
                    }
                    Ok(r) => done.push(Uploaded { index, cache_generation: generation, chunk: r, token }),
                    Err((message, cause)) => {
                        self.log_upload_failure("upload failed", volume.name(), index, &cause, &message);
                        retry.push(index);
                    }
                }
            }
            for index in retry {
                self.cache.abandon_upload(CacheChunkId::new(volume_id, index));
            }
            if let Err(e) = volume.record_uploads(&done).await {
                let what = "cannot record uploads; they will be repeated";
                let cause = format!("{what}: {e}");
                let first = done.first().map_or(0, |u| u.index);
                self.log_upload_failure(what, volume.name(), first, &cause, &e.to_string());
                failure = Some(cause);
                for u in done {
                    self.cache.abandon_upload(CacheChunkId::new(volume_id, u.index));
                }
            }
        }
        match failure {
            Some(cause) => self.uploads_failed(&cause),
            None if stored => self.uploads_succeeded(),
            None => {}
        }
    }
}
