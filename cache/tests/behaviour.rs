//! Behaviour the later users rely on: partial writes without a fetch,
//! fills, generations across uploads, eviction rules, copy-on-write after
//! a flush, group commit, discard, added disks and metrics.

mod common;

use bytes::Bytes;
use cache::{Cache, ChunkId, ChunkState, DiskSpec, ErrorKind};

const CHUNK: u32 = 64 * 1024;
const SECTOR: usize = 4096;

fn filled(byte: u8, len: usize) -> Bytes {
    Bytes::from(vec![byte; len])
}

fn small_cache(dir: &std::path::Path, slots: u64) -> Cache {
    common::open(&common::config(dir, CHUNK, slots, slots - 2, slots - 4))
}

fn gauge(registry: &prometheus::Registry, name: &str) -> f64 {
    let family = registry.gather().into_iter().find(|f| f.name() == name).expect("metric registered");
    let metric = &family.get_metric()[0];
    if family.get_field_type() == prometheus::proto::MetricType::GAUGE {
        metric.get_gauge().get_value()
    } else {
        metric.get_counter().get_value()
    }
}

#[tokio::test]
async fn small_write_into_uncached_chunk_needs_no_fetch_and_fill_merges_around_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = small_cache(dir.path(), 16);
    let id = ChunkId::new(1, 0);
    cache.write(id, 8192, filled(7, 4096)).await.expect("4 KiB write into an absent chunk");
    let read = cache.read(id, 0, CHUNK).await.expect("read");
    assert!(!read.complete);
    assert_eq!(read.valid.runs(), vec![2..3]);
    assert_eq!(read.valid.gaps(), vec![0..2, 3..16], "what the volume must fetch");
    // The fetched chunk (all 9s) only fills what the cache lacks.
    cache.fill(id, 0, filled(9, CHUNK as usize)).await.expect("fill");
    let read = cache.read(id, 0, CHUNK).await.expect("read");
    assert!(read.complete);
    assert!(read.data[8192..12288].iter().all(|b| *b == 7), "newer write kept");
    assert!(read.data[..8192].iter().chain(&read.data[12288..]).all(|b| *b == 9));
    let info = cache.lookup(id).expect("cached");
    assert_eq!((info.state, info.generation), (ChunkState::Dirty, 1), "fills neither dirty nor bump");
}

#[tokio::test]
async fn unaligned_writes_need_the_sectors_they_touch_in_part() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = small_cache(dir.path(), 16);
    let id = ChunkId::new(1, 0);
    let error = cache.write(id, 512, filled(1, 512)).await.expect_err("sector absent");
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert!(cache.lookup(id).is_none(), "a refused write leaves nothing behind");
    cache.write(id, 0, filled(2, SECTOR)).await.expect("whole sector");
    cache.write(id, 512, filled(3, 512)).await.expect("read-modify-write");
    let read = cache.read(id, 0, SECTOR as u32).await.expect("read");
    assert!(read.data[..512].iter().chain(&read.data[1024..]).all(|b| *b == 2));
    assert!(read.data[512..1024].iter().all(|b| *b == 3));
    let error = cache.write(id, CHUNK - 10, filled(1, 20)).await.expect_err("past the chunk end");
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn rewrite_during_upload_keeps_the_chunk_dirty_in_its_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = small_cache(dir.path(), 16);
    let (a, b, c) = (ChunkId::new(1, 5), ChunkId::new(1, 1), ChunkId::new(2, 0));
    for id in [a, b, c] {
        cache.write(id, 0, filled(1, SECTOR)).await.expect("write");
    }
    let batch = cache.dirty_batch(2);
    assert_eq!(batch.iter().map(|d| d.id).collect::<Vec<_>>(), vec![a, b], "first-dirtied order");
    assert_eq!(cache.lookup(a).expect("a").state, ChunkState::Uploading);
    cache.write(a, 0, filled(2, SECTOR)).await.expect("rewrite during upload");
    assert!(!cache.mark_uploaded(a, batch[0].generation).expect("mark a"), "a shipped a stale generation");
    assert!(cache.mark_uploaded(b, batch[1].generation).expect("mark b"));
    assert_eq!(cache.lookup(b).expect("b").state, ChunkState::Clean);
    let next = cache.dirty_batch(10);
    assert_eq!(next.iter().map(|d| d.id).collect::<Vec<_>>(), vec![a, c], "a keeps its place");
    cache.abandon_upload(c);
    assert_eq!(cache.lookup(c).expect("c").state, ChunkState::Dirty);
}

#[tokio::test]
async fn eviction_takes_only_clean_unpinned_chunks_and_runs_when_slots_run_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = small_cache(dir.path(), 8);
    for i in 0..8 {
        cache.fill(ChunkId::new(1, i), 0, filled(i as u8, SECTOR)).await.expect("fill");
    }
    assert!(cache.pin(ChunkId::new(1, 0)));
    // All 8 slots hold clean chunks: new writes evict, never the pinned one.
    for i in 0..3 {
        cache.write(ChunkId::new(2, i), 0, filled(1, SECTOR)).await.expect("write evicts");
    }
    assert!(cache.lookup(ChunkId::new(1, 0)).is_some(), "pinned chunk evicted");
    let evicted = cache.evict(100).await.expect("evict");
    assert!(evicted.iter().all(|id| id.namespace == 1 && id.index != 0), "evicted {evicted:?}");
    assert!((0..3).all(|i| cache.lookup(ChunkId::new(2, i)).is_some()), "dirty chunk evicted");
    cache.unpin(ChunkId::new(1, 0));
    assert_eq!(cache.evict(100).await.expect("evict"), vec![ChunkId::new(1, 0)]);
}

#[tokio::test]
async fn a_cache_full_of_pinned_chunks_reports_no_space() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = small_cache(dir.path(), 6);
    for i in 0..6 {
        let id = ChunkId::new(1, i);
        cache.fill(id, 0, filled(1, SECTOR)).await.expect("fill");
        assert!(cache.pin(id));
    }
    let error = cache.write(ChunkId::new(2, 0), 0, filled(1, SECTOR)).await.expect_err("nothing evictable");
    assert_eq!(error.kind(), ErrorKind::NoSpace);
    assert_eq!(cache.stats().dirty_bytes, 0, "the refused write's reservation is returned");
}

#[tokio::test]
async fn overwrite_after_flush_copies_on_write_and_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::config(dir.path(), CHUNK, 16, 12, 8);
    let cache = common::open(&config);
    let id = ChunkId::new(3, 3);
    cache.write(id, 0, filled(1, CHUNK as usize)).await.expect("write");
    cache.flush().await.expect("flush");
    let slots_before = cache.stats().used_bytes;
    cache.write(id, 4096, filled(2, SECTOR)).await.expect("overwrite");
    assert_eq!(cache.stats().used_bytes, slots_before + u64::from(CHUNK), "a base slot is kept until the flush");
    let read = cache.read(id, 0, 3 * SECTOR as u32).await.expect("read across slots");
    assert!(read.data[..4096].iter().chain(&read.data[8192..]).all(|b| *b == 1));
    assert!(read.data[4096..8192].iter().all(|b| *b == 2));
    cache.flush().await.expect("flush merges");
    assert_eq!(cache.stats().used_bytes, slots_before, "the base slot is freed by the flush");
    drop(cache);
    let cache = common::open(&config);
    let read = cache.read(id, 0, CHUNK).await.expect("read after reopen");
    assert!(read.complete);
    assert!(read.data[4096..8192].iter().all(|b| *b == 2) && read.data[8192..].iter().all(|b| *b == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_flushes_share_a_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = prometheus::Registry::new();
    let cache = Cache::open(common::config(dir.path(), CHUNK, 32, 28, 16), &registry).expect("open");
    for i in 0..8 {
        cache.write(ChunkId::new(1, i), 0, filled(1, CHUNK as usize)).await.expect("write");
    }
    let flushes: Vec<_> = (0..8).map(|_| cache.clone()).map(|c| tokio::spawn(async move { c.flush().await })).collect();
    for flush in flushes {
        flush.await.expect("task").expect("flush");
    }
    let syncs = gauge(&registry, "cache_flushes_total");
    assert!((1.0..=3.0).contains(&syncs), "8 concurrent flushes took {syncs} syncs");
}

#[tokio::test]
async fn discard_forgets_chunks_whatever_their_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::config(dir.path(), CHUNK, 16, 12, 8);
    let cache = common::open(&config);
    for i in 0..4 {
        cache.write(ChunkId::new(9, i), 0, filled(1, SECTOR)).await.expect("write");
    }
    cache.fill(ChunkId::new(9, 4), 0, filled(1, SECTOR)).await.expect("fill");
    let uploading = cache.dirty_batch(1);
    cache.discard(9, 0..4).await.expect("discard");
    assert!((0..4).all(|i| cache.lookup(ChunkId::new(9, i)).is_none()));
    assert!(cache.lookup(ChunkId::new(9, 4)).is_some(), "outside the range");
    assert!(!cache.mark_uploaded(uploading[0].id, uploading[0].generation).expect("mark"));
    assert!(cache.dirty_batch(10).is_empty());
    let stats = cache.stats();
    assert_eq!((stats.dirty_bytes, stats.used_bytes), (0, u64::from(CHUNK)));
    drop(cache);
    let cache = common::open(&config);
    assert!(cache.lookup(ChunkId::new(9, 0)).is_none(), "discard is durable");
}

#[tokio::test]
async fn a_disk_added_while_running_serves_and_is_reopened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = common::config(dir.path(), CHUNK, 4, 3, 1);
    let registry = prometheus::Registry::new();
    let cache = Cache::open(config.clone(), &registry).expect("open");
    for i in 0..3 {
        cache.write(ChunkId::new(1, i), 0, filled(i as u8, CHUNK as usize)).await.expect("write");
    }
    let spec = DiskSpec { path: dir.path().join("disk1"), size_bytes: 4096 + 8 * u64::from(CHUNK) };
    cache.add_disk(spec.clone()).await.expect("add disk");
    assert_eq!(cache.stats().capacity_bytes, 12 * u64::from(CHUNK));
    assert_eq!(gauge(&registry, "cache_free_bytes"), 9.0 * f64::from(CHUNK));
    assert_eq!(gauge(&registry, "cache_used_bytes"), 3.0 * f64::from(CHUNK));
    assert_eq!(gauge(&registry, "cache_dirty_bytes"), 3.0 * f64::from(CHUNK));
    for i in 3..9 {
        cache.fill(ChunkId::new(1, i), 0, filled(i as u8, CHUNK as usize)).await.expect("fill onto the new disk");
    }
    cache.close().await.expect("close");
    // Reopened from the index, even with the config listing only disk0.
    config.dirty_high_watermark = 10 * u64::from(CHUNK);
    let cache = common::open(&config);
    for i in 0..9 {
        let read = cache.read(ChunkId::new(1, i), 0, CHUNK).await.expect("read");
        assert!(read.complete && read.data.iter().all(|b| *b == i as u8), "chunk {i}");
    }
}

/// An [`Offload`] that runs each job on a thread of its own and counts
/// them.
struct CountingThreads(std::sync::atomic::AtomicUsize);

impl cache::Offload for CountingThreads {
    fn spawn(&self, job: Box<dyn FnOnce() + Send>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::thread::spawn(job);
    }
}

/// With offload threads, writes of OFFLOAD_MIN_BYTES or more run there and
/// smaller ones inline; both read back, and survive a flush and reopen.
#[tokio::test]
async fn large_writes_run_on_the_offload_threads_and_small_ones_inline() {
    const BIG: u32 = 4 * cache::OFFLOAD_MIN_BYTES as u32;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::config(dir.path(), BIG, 8, 6, 4);
    let cache = common::open(&config);
    let threads = std::sync::Arc::new(CountingThreads(Default::default()));
    cache.offload_large_writes(threads.clone());
    let (big, small) = (ChunkId::new(3, 0), ChunkId::new(3, 1));
    cache.write(big, 0, filled(5, BIG as usize)).await.expect("large write");
    cache.write(small, 4096, filled(6, SECTOR)).await.expect("small write");
    assert_eq!(threads.0.load(std::sync::atomic::Ordering::SeqCst), 1, "only the large write goes to a thread");
    cache.flush().await.expect("flush");
    drop(cache);
    let cache = common::open(&config);
    assert_eq!(cache.read(big, 0, BIG).await.expect("read").data, filled(5, BIG as usize));
    assert_eq!(cache.read(small, 4096, SECTOR as u32).await.expect("read").data, filled(6, SECTOR));
}
