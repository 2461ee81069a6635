//! Chunk codec throughput on one core (hash, compress, encrypt, frame),
//! next to its stages alone on the same buffers: raw zstd, raw AES-256-GCM
//! (the gateway's, on ring), keyed BLAKE3 and crc32c. The goals table also
//! shows the aes-gcm crate on the same buffers, the cipher ring replaced
//! (gateway/src/cloud/aead.rs says why). After the criterion groups it prints the issue's
//! goals: ≥ 250 MB/s per core on mixed data (or ≥ 70 % of the slowest stage,
//! whichever is lower) and a text compression ratio ≥ 2.5:1.
//!
//! cargo bench -p sgw-benches --bench codec

#[path = "../../gateway/tests/cloud_support/mod.rs"]
mod cloud_support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use bytes::Bytes;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use gateway::cloud::aead::Aes256GcmKey;
use gateway::cloud::chunk::{ChunkCodec, EncodedChunk};
use gateway::cloud::keys::DataKey;
use gateway::cloud::DEFAULT_ZSTD_LEVEL;

const CHUNK: usize = 1 << 20;

fn datasets() -> Vec<(&'static str, Vec<u8>)> {
    let random = cloud_support::random_bytes(1, CHUNK);
    let text = cloud_support::text_bytes(2, CHUNK);
    // Like a VM disk: already-compressed media next to logs and documents.
    let mixed: Vec<u8> = random
        .chunks(64 * 1024)
        .zip(text.chunks(64 * 1024))
        .enumerate()
        .flat_map(|(i, (r, t))| if i % 2 == 0 { r.to_vec() } else { t.to_vec() })
        .collect();
    vec![("incompressible", random), ("text", text), ("mixed", mixed)]
}

struct Stages {
    codec: ChunkCodec,
    aes: Aes256GcmKey,
    aes_gcm_crate: Aes256Gcm,
    blake3_key: [u8; 32],
}

impl Stages {
    fn new() -> Stages {
        Stages {
            codec: ChunkCodec::new(&DataKey::generate(), DEFAULT_ZSTD_LEVEL),
            aes: Aes256GcmKey::new(&[7u8; 32]),
            aes_gcm_crate: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&[7u8; 32])),
            blake3_key: [9u8; 32],
        }
    }

    fn encode(&self, data: &[u8]) -> usize {
        match self.codec.encode(data) {
            Ok(EncodedChunk::Object { object, .. }) => object.len(),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn zstd(&self, data: &[u8]) -> usize {
        zstd::bulk::compress(data, DEFAULT_ZSTD_LEVEL)
            .map(|c| c.len())
            .unwrap_or(0)
    }

    fn aes_gcm(&self, buf: &mut [u8]) {
        black_box(self.aes.seal(&[1u8; 12], b"aad", buf));
    }

    fn aes_gcm_crate(&self, buf: &mut [u8]) {
        let tag = self
            .aes_gcm_crate
            .encrypt_in_place_detached(Nonce::from_slice(&[1u8; 12]), b"aad", buf);
        black_box(tag.is_ok());
    }

    fn blake3(&self, data: &[u8]) {
        black_box(blake3::keyed_hash(&self.blake3_key, data));
    }
}

fn criterion_groups(c: &mut Criterion, stages: &Stages, datasets: &[(&'static str, Vec<u8>)]) {
    let mut group = c.benchmark_group("codec");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20);
    for (name, data) in datasets {
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_with_input(BenchmarkId::new("encode", name), data, |b, d| {
            b.iter(|| stages.encode(d))
        });
        let EncodedChunk::Object { id, object, .. } = stages.codec.encode(data).expect("encode")
        else {
            panic!("zero chunk")
        };
        // Each run gets its own copy of the object, as a fetch from the
        // store does, so decode decrypts in place.
        group.bench_with_input(BenchmarkId::new("decode", name), &object, |b, o| {
            b.iter_batched(
                || Bytes::copy_from_slice(o),
                |owned| stages.codec.decode(&id, owned).expect("decode").len(),
                BatchSize::LargeInput,
            )
        });
        group.bench_with_input(BenchmarkId::new("raw-zstd-1", name), data, |b, d| {
            b.iter(|| stages.zstd(d))
        });
        let mut buf = data.clone();
        group.bench_function(BenchmarkId::new("raw-aes-256-gcm", name), |b| {
            b.iter(|| stages.aes_gcm(&mut buf))
        });
        group.bench_with_input(BenchmarkId::new("raw-blake3-keyed", name), data, |b, d| {
            b.iter(|| stages.blake3(d))
        });
        group.bench_with_input(BenchmarkId::new("raw-crc32c", name), data, |b, d| {
            b.iter(|| crc32c::crc32c(d))
        });
    }
    group.finish();
}

/// MB/s (10^6 bytes) of `work` on `len`-byte buffers over about a second.
fn mbps(len: usize, mut work: impl FnMut()) -> f64 {
    work();
    let started = Instant::now();
    let mut rounds = 0u64;
    while started.elapsed() < Duration::from_millis(1000) {
        work();
        rounds += 1;
    }
    (rounds as f64 * len as f64) / started.elapsed().as_secs_f64() / 1e6
}

fn report_goals(stages: &Stages, datasets: &[(&'static str, Vec<u8>)]) {
    println!("\n=== codec goals (one core, 1 MiB chunks, zstd level {DEFAULT_ZSTD_LEVEL}) ===");
    println!(
        "{:<15} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>13}",
        "data", "codec", "zstd", "aes-gcm", "blake3", "crc32c", "ratio", "aes-gcm crate"
    );
    let mut verdicts = Vec::new();
    for (name, data) in datasets {
        let codec = mbps(data.len(), || {
            black_box(stages.encode(data));
        });
        let zstd = mbps(data.len(), || {
            black_box(stages.zstd(data));
        });
        let mut buf = data.clone();
        let aes = mbps(data.len(), || stages.aes_gcm(&mut buf));
        let aes_crate = mbps(data.len(), || stages.aes_gcm_crate(&mut buf));
        let hash = mbps(data.len(), || stages.blake3(data));
        let crc = mbps(data.len(), || {
            black_box(crc32c::crc32c(data));
        });
        let ratio = data.len() as f64 / stages.encode(data) as f64;
        println!(
            "{name:<15} {codec:>9.0} {zstd:>9.0} {aes:>9.0} {hash:>9.0} {crc:>9.0} {ratio:>6.2}:1 {aes_crate:>13.0}"
        );
        if *name == "mixed" {
            let slowest = zstd.min(aes).min(hash).min(crc);
            let goal = 250f64.min(0.7 * slowest);
            verdicts.push(format!(
                "mixed: codec {codec:.0} MB/s per core, goal >= {goal:.0} MB/s (min of 250 and 70% of slowest stage {slowest:.0}): {}",
                if codec >= goal { "PASS" } else { "FAIL" }
            ));
        }
        if *name == "text" {
            verdicts.push(format!(
                "text: compression ratio {ratio:.2}:1, goal >= 2.5:1: {}",
                if ratio >= 2.5 { "PASS" } else { "FAIL" }
            ));
        }
    }
    println!("(MB/s = 10^6 bytes per second)");
    for verdict in verdicts {
        println!("GOAL {verdict}");
    }
}

fn main() {
    let stages = Stages::new();
    let datasets = datasets();
    let mut criterion = Criterion::default().configure_from_args();
    criterion_groups(&mut criterion, &stages, &datasets);
    criterion.final_summary();
    report_goals(&stages, &datasets);
}
