//! The upload pipeline: hash, compress, encrypt, PUT.
//!
//! Callers (the local cache) submit typed jobs and receive one completion
//! per job. Memory is bounded by the bytes accepted but not yet stored:
//! `submit` waits when the budget is spent, which is the back-pressure the
//! cache needs instead of dropping data. CPU work runs on the uploader's own
//! encoder threads, at most `encode_threads` chunks at once, so the async
//! I/O threads (and the iSCSI sessions on them) never wait for zstd or AES.
//!
//! The encoder threads run at a lower priority (nice [`ENCODER_NICENESS`]):
//! uploads are background work, and on a small appliance they shared the
//! cores with the backup job that made them. A tape read straight after a
//! write lost a third of its throughput to the uploads of that write. At a
//! lower priority the uploads take the cores the foreground leaves idle and
//! still all of them when it waits, as writers do once the cache's dirty
//! share reaches its limit.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::chunk::{ChunkCodec, ChunkId, EncodedChunk, MAX_CHUNK_LEN};
use super::cloud_store::CloudStore;
use super::error::{CloudError, ErrorKind};
use super::keyring::Keyring;
use super::layout::Namespace;
use super::metrics::CloudMetrics;
use super::store::{ObjectStore, StorageClass};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UploaderConfig {
    /// Requests in flight at once.
    pub upload_concurrency: usize,
    /// Chunks encoded at once; 0 means one per CPU.
    pub encode_threads: usize,
    /// Bytes accepted and not yet stored before `submit` waits.
    pub max_queued_bytes: u64,
    /// HEAD before PUT, to skip uploading content the bucket already holds
    /// from an earlier run. Costs a request per chunk; pays off for data
    /// that repeats across runs.
    pub probe_before_put: bool,
    /// Stored chunk ids remembered to skip repeats within a run.
    pub remembered_ids: usize,
}

impl Default for UploaderConfig {
    fn default() -> Self {
        UploaderConfig {
            upload_concurrency: 16,
            encode_threads: 0,
            max_queued_bytes: 256 * 1024 * 1024,
            probe_before_put: false,
            remembered_ids: 65_536,
        }
    }
}

/// One chunk to store. `chunk_index` and `generation` are the caller's and
/// come back unchanged in the completion, so a chunk rewritten during its
/// upload can be told apart from the version that was uploaded.
#[derive(Debug, Clone)]
pub struct UploadJob {
    pub namespace: Namespace,
    pub chunk_index: u64,
    pub generation: u64,
    pub data: Bytes,
}

/// Where a chunk's content ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredChunk {
    /// All zero: nothing stored; a manifest records it as a hole.
    Zero,
    Object {
        id: ChunkId,
        /// Size of the chunk object in the bucket.
        stored_size: u64,
        /// An identical chunk was already stored or being stored.
        deduplicated: bool,
    },
}

/// Why a job failed after the store's retries; the caller keeps the chunk
/// dirty and submits it again later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct UploadFailure {
    pub kind: ErrorKind,
    pub message: String,
    /// The message without the object it is about: one cause failing
    /// every chunk reads the same here, so it is logged once.
    pub cause: String,
}

impl From<&CloudError> for UploadFailure {
    fn from(e: &CloudError) -> Self {
        UploadFailure {
            kind: e.kind(),
            message: e.to_string(),
            cause: e.cause(),
        }
    }
}

#[derive(Debug)]
pub struct UploadCompletion {
    pub namespace: Namespace,
    pub chunk_index: u64,
    pub generation: u64,
    pub result: Result<StoredChunk, UploadFailure>,
}

/// `submit` after `close`, or a job the format cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the uploader is shut down")]
    Closed,
    #[error("chunk of {0} bytes exceeds the format's limit")]
    TooLarge(usize),
}

/// Objects claimed for deletion; uploads of them wait until it is dropped.
pub struct DeleteClaim {
    shared: Arc<Shared>,
    namespace: Namespace,
    ids: Vec<ChunkId>,
}

impl DeleteClaim {
    pub fn ids(&self) -> &[ChunkId] {
        &self.ids
    }
}

impl Drop for DeleteClaim {
    fn drop(&mut self) {
        let mut deleting = lock(&self.shared.deleting);
        for id in &self.ids {
            deleting.remove(&(self.namespace.clone(), *id));
        }
        drop(deleting);
        self.shared.deleted.notify_waiters();
    }
}

struct Queued {
    job: UploadJob,
    _budget: OwnedSemaphorePermit,
}

type ObjectKey = (Namespace, ChunkId);
type Waiters = Vec<oneshot::Sender<Result<u64, UploadFailure>>>;

/// Ids stored recently, oldest forgotten first.
struct RecentIds {
    set: HashSet<ObjectKey>,
    order: VecDeque<ObjectKey>,
    capacity: usize,
}

impl RecentIds {
    fn insert(&mut self, key: ObjectKey) {
        if self.capacity == 0 || !self.set.insert(key.clone()) {
            return;
        }
        self.order.push_back(key);
        if self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

struct Shared {
    store: CloudStore,
    keyring: Arc<Keyring>,
    metrics: CloudMetrics,
    probe_before_put: bool,
    cpu: Semaphore,
    encoders: rayon::ThreadPool,
    in_flight: Mutex<HashMap<ObjectKey, Waiters>>,
    recent: Mutex<RecentIds>,
    /// Objects being deleted (garbage collection): an upload of the same
    /// content waits until the delete is done, so that a PUT never races
    /// a DELETE of its key.
    deleting: Mutex<HashSet<ObjectKey>>,
    deleted: tokio::sync::Notify,
    completions: mpsc::Sender<UploadCompletion>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub struct Uploader {
    shared: Arc<Shared>,
    jobs: mpsc::UnboundedSender<Queued>,
    budget: Arc<Semaphore>,
    budget_max: u32,
    metrics: CloudMetrics,
    workers: Vec<JoinHandle<()>>,
}

impl Uploader {
    /// Starts the workers. Completions arrive on the returned receiver, one
    /// per submitted job, in no particular order.
    pub fn start(
        config: &UploaderConfig,
        store: CloudStore,
        keyring: Arc<Keyring>,
    ) -> Result<(Uploader, mpsc::Receiver<UploadCompletion>), rayon::ThreadPoolBuildError> {
        let encode_threads = match config.encode_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let encoders = encoder_pool(encode_threads)?;
        let budget_max = u32::try_from(config.max_queued_bytes.max(1)).unwrap_or(u32::MAX);
        let concurrency = config.upload_concurrency.max(1);
        let (completions, completion_rx) = mpsc::channel(1024);
        let metrics = store.metrics().clone();
        let shared = Arc::new(Shared {
            store,
            keyring,
            metrics: metrics.clone(),
            probe_before_put: config.probe_before_put,
            cpu: Semaphore::new(encode_threads),
            encoders,
            in_flight: Mutex::new(HashMap::new()),
            recent: Mutex::new(RecentIds {
                set: HashSet::new(),
                order: VecDeque::new(),
                capacity: config.remembered_ids,
            }),
            deleting: Mutex::new(HashSet::new()),
            deleted: tokio::sync::Notify::new(),
            completions,
        });
        let (jobs, job_rx) = mpsc::unbounded_channel();
        let job_rx = Arc::new(tokio::sync::Mutex::new(job_rx));
        let workers = (0..concurrency)
            .map(|_| tokio::spawn(worker(shared.clone(), job_rx.clone())))
            .collect();
        let uploader = Uploader {
            shared,
            jobs,
            budget: Arc::new(Semaphore::new(budget_max as usize)),
            budget_max,
            metrics,
            workers,
        };
        Ok((uploader, completion_rx))
    }

    /// Queues a job, waiting while the queued-bytes budget is spent.
    pub async fn submit(&self, job: UploadJob) -> Result<(), SubmitError> {
        let len = job.data.len();
        if len > MAX_CHUNK_LEN {
            return Err(SubmitError::TooLarge(len));
        }
        // A job larger than the whole budget takes all of it.
        let permits = u32::try_from(len).unwrap_or(u32::MAX).min(self.budget_max);
        let budget = self
            .budget
            .clone()
            .acquire_many_owned(permits)
            .await
            .map_err(|_| SubmitError::Closed)?;
        self.metrics.queued_bytes.add(len as i64);
        self.jobs
            .send(Queued {
                job,
                _budget: budget,
            })
            .map_err(|_| SubmitError::Closed)
    }

    /// Claims objects for deletion. It forgets that they were stored, so
    /// content that hashes to them is uploaded again, and holds uploads of
    /// them until the claim is dropped. Objects being uploaded right now
    /// are left out (the upload may be for a chunk that needs them); the
    /// claim's `ids` are the ones that may be deleted.
    pub fn claim_for_delete(&self, namespace: &Namespace, ids: &[ChunkId]) -> DeleteClaim {
        let in_flight = lock(&self.shared.in_flight);
        let mut recent = lock(&self.shared.recent);
        let mut deleting = lock(&self.shared.deleting);
        let mut claimed = Vec::new();
        for id in ids {
            let key = (namespace.clone(), *id);
            if in_flight.contains_key(&key) || !deleting.insert(key.clone()) {
                continue;
            }
            if recent.set.remove(&key) {
                recent.order.retain(|k| *k != key);
            }
            claimed.push(*id);
        }
        DeleteClaim { shared: self.shared.clone(), namespace: namespace.clone(), ids: claimed }
    }

    /// Stops accepting jobs, finishes the queued ones and waits for the
    /// workers; the completion receiver then ends.
    pub async fn close(self) {
        drop(self.jobs);
        for worker in self.workers {
            if let Err(e) = worker.await {
                tracing::error!(error = %e, "upload worker failed");
            }
        }
    }
}

async fn worker(
    shared: Arc<Shared>,
    jobs: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Queued>>>,
) {
    loop {
        let next = jobs.lock().await.recv().await;
        let Some(queued) = next else { return };
        let job = queued.job;
        let result = store_chunk(&shared, &job.namespace, job.data.clone()).await;
        shared.metrics.queued_bytes.sub(job.data.len() as i64);
        let completion = UploadCompletion {
            namespace: job.namespace,
            chunk_index: job.chunk_index,
            generation: job.generation,
            result,
        };
        // A caller that dropped the receiver no longer wants completions;
        // the chunk is stored all the same.
        let _ = shared.completions.send(completion).await;
    }
}

async fn store_chunk(
    shared: &Shared,
    namespace: &Namespace,
    data: Bytes,
) -> Result<StoredChunk, UploadFailure> {
    let codec = shared
        .keyring
        .codec_for_writing(namespace)
        .await
        .map_err(|e| UploadFailure::from(&e))?;
    let (id, object) = match encode(shared, codec, data)
        .await
        .map_err(|e| UploadFailure::from(&e))?
    {
        EncodedChunk::Zero { .. } => {
            shared.metrics.zero_chunks.inc();
            return Ok(StoredChunk::Zero);
        }
        EncodedChunk::Object { id, object, .. } => (id, object),
    };
    let key = (namespace.clone(), id);
    wait_while_deleting(shared, &key).await;
    let deduplicated = |stored_size| {
        shared.metrics.chunks_deduplicated.inc();
        Ok(StoredChunk::Object {
            id,
            stored_size,
            deduplicated: true,
        })
    };
    if lock(&shared.recent).set.contains(&key) {
        return deduplicated(object.len() as u64);
    }
    // The same content already on its way: wait for that upload rather than
    // report success for an object that may not exist yet.
    let waiter = {
        let mut in_flight = lock(&shared.in_flight);
        match in_flight.get_mut(&key) {
            Some(waiters) => {
                let (tx, rx) = oneshot::channel();
                waiters.push(tx);
                Some(rx)
            }
            None => {
                in_flight.insert(key.clone(), Vec::new());
                None
            }
        }
    };
    if let Some(rx) = waiter {
        return match rx.await {
            Ok(Ok(size)) => deduplicated(size),
            Ok(Err(failure)) => Err(failure),
            Err(_) => Err(UploadFailure {
                kind: ErrorKind::Transient,
                message: "concurrent upload vanished".into(),
                cause: "concurrent upload vanished".into(),
            }),
        };
    }
    let outcome = put_object(shared, namespace, &id, object).await;
    let waiters = lock(&shared.in_flight).remove(&key).unwrap_or_default();
    if outcome.is_ok() {
        lock(&shared.recent).insert(key);
    }
    for waiter in waiters {
        let _ = waiter.send(
            outcome
                .as_ref()
                .map(|(size, _)| *size)
                .map_err(Clone::clone),
        );
    }
    let (stored_size, deduplicated) = outcome?;
    Ok(StoredChunk::Object {
        id,
        stored_size,
        deduplicated,
    })
}

/// Waits while garbage collection deletes `key` (a claim's lifetime: the
/// DELETE requests, bounded by the store's timeouts).
async fn wait_while_deleting(shared: &Shared, key: &ObjectKey) {
    loop {
        let notified = shared.deleted.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if !lock(&shared.deleting).contains(key) {
            return;
        }
        notified.await;
    }
}

async fn encode(
    shared: &Shared,
    codec: Arc<ChunkCodec>,
    data: Bytes,
) -> Result<EncodedChunk, CloudError> {
    let _cpu = shared
        .cpu
        .acquire()
        .await
        .map_err(|e| CloudError::Worker(e.to_string()))?;
    let (done, encoded) = oneshot::channel();
    shared.encoders.spawn(move || {
        let _ = done.send(codec.encode(&data));
    });
    let encoded = encoded
        .await
        .map_err(|_| CloudError::Worker("an encoder thread failed".into()))?;
    Ok(encoded?)
}

/// How much lower than the daemon's the encoder threads' priority is.
const ENCODER_NICENESS: i32 = 10;

fn encoder_pool(threads: usize) -> Result<rayon::ThreadPool, rayon::ThreadPoolBuildError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("sgw-encode-{i}"))
        .start_handler(|_| lower_this_threads_priority())
        // A panicking job drops its sender, so its upload fails as a
        // worker error; the default would abort the daemon.
        .panic_handler(|_| tracing::error!("a chunk encoder panicked"))
        .build()
}

fn lower_this_threads_priority() {
    // On Linux the nice value belongs to the thread; `who = 0` is the
    // calling thread. Raising it needs no privilege; failing leaves the
    // thread at the normal priority, which costs only foreground speed.
    // SAFETY: a plain syscall on the calling thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, ENCODER_NICENESS) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "encoder priority unchanged");
    }
}

/// PUTs one chunk object (content-addressed, so repeating it is harmless);
/// returns its stored size and whether the bucket already had it.
async fn put_object(
    shared: &Shared,
    namespace: &Namespace,
    id: &ChunkId,
    object: Bytes,
) -> Result<(u64, bool), UploadFailure> {
    let key = shared.keyring.layout().chunk_key(namespace, id);
    if shared.probe_before_put {
        match shared.store.head(&key).await {
            Ok(meta) => {
                shared.metrics.chunks_deduplicated.inc();
                return Ok((meta.size, true));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(UploadFailure::from(&CloudError::from(e))),
        }
    }
    let size = object.len() as u64;
    shared
        .store
        .put(&key, object, &StorageClass::Standard)
        .await
        .map_err(|e| UploadFailure::from(&CloudError::from(e)))?;
    shared.metrics.chunks_uploaded.inc();
    Ok((size, false))
}
