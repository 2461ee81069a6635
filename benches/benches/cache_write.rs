//! Write throughput through the cache against raw pwrite + fdatasync on the
//! same file system, with the same pattern: sequential writes of 1 MiB or
//! 64 KiB over a 256 MiB region, a flush every 16 MiB. The region is
//! rewritten pass after pass, so after the first pass the cache runs its
//! steady state (copy-on-write of flushed chunks). An uploader marks chunks
//! clean as it would after shipping them. Prints the cache/raw ratio
//! (goal: at least 0.8) before the criterion runs.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cache::{Cache, CacheConfig, ChunkId, DiskSpec};
use criterion::{criterion_group, Criterion, Throughput};

const MIB: u64 = 1 << 20;
const REGION: u64 = 256 * MIB;
const FLUSH_EVERY: u64 = 16 * MIB;
const CHUNK: u64 = MIB;

struct CacheTarget {
    rt: tokio::runtime::Runtime,
    cache: Cache,
    position: u64,
    data: Bytes,
}

impl CacheTarget {
    fn new(dir: &Path, write_size: usize) -> Self {
        let disk = DiskSpec { path: dir.join("cache-disk"), size_bytes: 4096 + 2 * REGION };
        let mut config = CacheConfig::new(dir.join("index"), vec![disk]);
        config.chunk_size = CHUNK as u32;
        config.dirty_high_watermark = REGION + 32 * CHUNK;
        config.dirty_low_watermark = REGION;
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let cache = Cache::open(config, &prometheus::Registry::new()).expect("open cache");
        CacheTarget { rt, cache, position: 0, data: Bytes::from(vec![0x5a; write_size]) }
    }

    /// Writes `bytes` sequentially from where the last call stopped.
    fn run(&mut self, bytes: u64) {
        let cache = self.cache.clone();
        let (start, data) = (self.position, self.data.clone());
        self.rt.block_on(async move {
            let mut written = 0;
            while written < bytes {
                let at = (start + written) % REGION;
                let id = ChunkId::new(1, at / CHUNK);
                cache.write(id, (at % CHUNK) as u32, data.clone()).await.expect("cache write");
                written += data.len() as u64;
                if (start + written) % FLUSH_EVERY == 0 {
                    cache.flush().await.expect("flush");
                    // The uploader's part: whatever is dirty is now shipped.
                    for d in cache.dirty_batch(usize::MAX) {
                        cache.mark_uploaded(d.id, d.generation).expect("mark uploaded");
                    }
                }
            }
        });
        self.position += bytes;
    }
}

struct RawTarget {
    file: File,
    position: u64,
    data: Vec<u8>,
}

impl RawTarget {
    fn new(dir: &Path, write_size: usize) -> Self {
        let file = File::options().read(true).write(true).create(true).truncate(true).open(dir.join("raw")).expect("raw file");
        file.set_len(REGION).expect("size raw file");
        RawTarget { file, position: 0, data: vec![0x5a; write_size] }
    }

    fn run(&mut self, bytes: u64) {
        let mut written = 0;
        while written < bytes {
            let at = (self.position + written) % REGION;
            self.file.write_all_at(&self.data, at).expect("pwrite");
            written += self.data.len() as u64;
            if (self.position + written) % FLUSH_EVERY == 0 {
                self.file.sync_data().expect("fdatasync");
            }
        }
        self.position += bytes;
    }
}

/// Best of five 128 MiB runs of each, after two warm-up passes over the
/// whole region: the second is the cache's first copy-on-write pass, which
/// also allocates the file blocks of the slots it moves to (the raw file's
/// blocks are allocated by the first), so neither side's timed runs pay for
/// block allocation.
fn ratio_report() {
    for write_size in [MIB as usize, 64 * 1024] {
        let dir = tempfile::tempdir_in(env_dir()).expect("tempdir");
        let mut cached = CacheTarget::new(dir.path(), write_size);
        let mut raw = RawTarget::new(dir.path(), write_size);
        cached.run(2 * REGION);
        raw.run(2 * REGION);
        let (mut best_cache, mut best_raw) = (Duration::MAX, Duration::MAX);
        for _ in 0..5 {
            let t = Instant::now();
            raw.run(128 * MIB);
            best_raw = best_raw.min(t.elapsed());
            let t = Instant::now();
            cached.run(128 * MIB);
            best_cache = best_cache.min(t.elapsed());
        }
        let mbps = |d: Duration| 128.0 / d.as_secs_f64();
        println!(
            "cache_write {} KiB writes, flush every 16 MiB: cache {:.0} MiB/s, raw pwrite+fdatasync {:.0} MiB/s, ratio {:.2} (goal >= 0.8)",
            write_size / 1024,
            mbps(best_cache),
            mbps(best_raw),
            mbps(best_cache) / mbps(best_raw)
        );
    }
}

/// Where the files go: CACHE_BENCH_DIR, else the system temp directory.
fn env_dir() -> std::path::PathBuf {
    std::env::var_os("CACHE_BENCH_DIR").map(Into::into).unwrap_or_else(std::env::temp_dir)
}

fn bench_writes(c: &mut Criterion) {
    let mut group = c.benchmark_group("cache_write");
    group.sample_size(10).measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Bytes(32 * MIB));
    for write_size in [MIB as usize, 64 * 1024] {
        let dir = tempfile::tempdir_in(env_dir()).expect("tempdir");
        let mut cached = CacheTarget::new(dir.path(), write_size);
        let mut raw = RawTarget::new(dir.path(), write_size);
        group.bench_function(format!("cache_{}k", write_size / 1024), |b| b.iter(|| cached.run(32 * MIB)));
        group.bench_function(format!("raw_{}k", write_size / 1024), |b| b.iter(|| raw.run(32 * MIB)));
    }
    group.finish();
}

criterion_group!(benches, bench_writes);

fn main() {
    ratio_report();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
