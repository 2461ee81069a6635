//! Index lookups per second: `Cache::lookup` (the per-I/O question "what
//! does the cache hold of this chunk") and a 4 KiB read hit (lookup, pread
//! and checksum), over 16 384 cached chunks.

use std::time::Duration;

use bytes::Bytes;
use cache::{Cache, CacheConfig, ChunkId, DiskSpec};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{Rng, SeedableRng};

const CHUNK: u32 = 64 * 1024;
const CHUNKS: u64 = 16_384;

fn bench_lookups(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = DiskSpec { path: dir.path().join("disk"), size_bytes: 4096 + CHUNKS * u64::from(CHUNK) };
    let mut config = CacheConfig::new(dir.path().join("index"), vec![disk]);
    config.chunk_size = CHUNK;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let cache = Cache::open(config, &prometheus::Registry::new()).expect("open");
    rt.block_on(async {
        for i in 0..CHUNKS {
            cache.fill(ChunkId::new(1, i), 0, Bytes::from(vec![i as u8; 4096])).await.expect("fill");
        }
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut group = c.benchmark_group("cache_index");
    group.throughput(Throughput::Elements(1)).measurement_time(Duration::from_secs(5));
    group.bench_function("lookup", |b| {
        b.iter(|| cache.lookup(ChunkId::new(1, rng.gen_range(0..CHUNKS))).expect("cached"))
    });
    group.bench_function("lookup_absent", |b| b.iter(|| cache.lookup(ChunkId::new(2, rng.gen_range(0..CHUNKS)))));
    group.bench_function("read_4k_hit", |b| {
        b.iter(|| rt.block_on(cache.read(ChunkId::new(1, rng.gen_range(0..CHUNKS)), 0, 4096)).expect("read"))
    });
    group.finish();
}

criterion_group!(benches, bench_lookups);
criterion_main!(benches);
