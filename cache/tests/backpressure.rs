//! Back-pressure: writers that outpace a slow uploader stall and resume
//! without errors, and dirty bytes never pass the high watermark.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cache::ChunkId;

const CHUNK: u32 = 64 * 1024;
const HIGH_SLOTS: u64 = 16;

fn counter(registry: &prometheus::Registry, name: &str) -> f64 {
    registry
        .gather()
        .iter()
        .find(|f| f.name() == name)
        .and_then(|f| f.get_metric().first().map(|m| m.get_counter().get_value()))
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_stall_until_the_uploader_catches_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::config(dir.path(), CHUNK, 64, HIGH_SLOTS, 8);
    let registry = prometheus::Registry::new();
    let cache = cache::Cache::open(config.clone(), &registry).expect("open");
    let high = HIGH_SLOTS * u64::from(CHUNK);
    let peak = Arc::new(AtomicU64::new(0));
    let writers_done = Arc::new(AtomicBool::new(false));

    let uploader = {
        let (cache, peak, writers_done) = (cache.clone(), peak.clone(), writers_done.clone());
        tokio::spawn(async move {
            let mut uploaded = 0u64;
            loop {
                let batch = cache.dirty_batch(2);
                if batch.is_empty() && writers_done.load(Ordering::SeqCst) {
                    return uploaded;
                }
                for d in batch {
                    // A slow link.
                    tokio::time::sleep(Duration::from_millis(4)).await;
                    let read = cache.read(d.id, 0, CHUNK).await.expect("upload read");
                    if cache.mark_uploaded(d.id, read.generation).expect("mark uploaded") {
                        uploaded += 1;
                    }
                    peak.fetch_max(cache.stats().dirty_bytes, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let sampler = {
        let (cache, peak, writers_done) = (cache.clone(), peak.clone(), writers_done.clone());
        tokio::spawn(async move {
            while !writers_done.load(Ordering::SeqCst) {
                peak.fetch_max(cache.stats().dirty_bytes, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        })
    };
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let (cache, peak) = (cache.clone(), peak.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..40u64 {
                let data = Bytes::from(vec![(w * 40 + i) as u8; CHUNK as usize]);
                cache.write(ChunkId::new(w, i), 0, data).await.expect("write under back-pressure");
                peak.fetch_max(cache.stats().dirty_bytes, Ordering::SeqCst);
                if i % 8 == 7 {
                    cache.flush().await.expect("flush");
                }
            }
        }));
    }
    let all_written = async {
        for writer in writers {
            writer.await.expect("writer task");
        }
    };
    tokio::time::timeout(Duration::from_secs(60), all_written).await.expect("writers deadlocked");
    writers_done.store(true, Ordering::SeqCst);
    let uploaded = tokio::time::timeout(Duration::from_secs(60), uploader).await.expect("uploader stuck").expect("uploader");
    sampler.await.expect("sampler");

    assert!(uploaded >= 160, "every chunk uploaded at least once, got {uploaded}");
    assert!(peak.load(Ordering::SeqCst) <= high, "dirty peaked at {} > {high}", peak.load(Ordering::SeqCst));
    assert!(counter(&registry, "cache_backpressure_waits_total") > 0.0, "writers never waited");
    assert!(counter(&registry, "cache_backpressure_wait_seconds_total") > 0.0);
    assert!(counter(&registry, "cache_evictions_total") > 0.0, "160 chunks in 64 slots must evict");
    cache.flush().await.expect("final flush");
    assert_eq!(cache.stats().dirty_bytes, 0);
    // Whatever eviction left cached (which chunks depends on how the
    // writers interleaved) reads back whole and intact.
    let mut cached = 0;
    for (w, i) in (0..4u64).flat_map(|w| (0..40u64).map(move |i| (w, i))) {
        let id = ChunkId::new(w, i);
        if cache.lookup(id).is_none() {
            continue;
        }
        let read = cache.read(id, 0, CHUNK).await.expect("read");
        assert!(read.complete && read.data.iter().all(|b| *b == (w * 40 + i) as u8), "{id} damaged");
        cached += 1;
    }
    assert!(cached > 0, "nothing left cached");
    drop(cache);
    common::open(&config);
}
