//! Uploader throughput into a local moto server, next to `rclone copy` of
//! the same bytes (1 MiB random chunks / files, 16 in flight for both),
//! alternating A B A B in one run. moto is started on loopback by the bench.
//!
//! cargo bench -p sgw-benches --bench uploader

#[path = "../../gateway/tests/cloud_support/mod.rs"]
mod cloud_support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use gateway::cloud::store::S3Config;
use gateway::cloud::{
    CloudConfig, CloudLayer, MasterKey, Namespace, StoreConfig, UploadCompletion, UploadJob,
    UploaderConfig,
};
use tokio::runtime::Runtime;
use tokio::sync::mpsc::Receiver;

const CHUNK: usize = 1 << 20;
const CHUNKS: usize = 64;
const IN_FLIGHT: usize = 16;

struct Bench {
    layer: CloudLayer,
    completions: Receiver<UploadCompletion>,
    namespace: Namespace,
    round: u64,
}

impl Bench {
    /// Fresh content every round, so deduplication never short-cuts a PUT.
    fn next_data(&mut self) -> Vec<Bytes> {
        self.round += 1;
        (0..CHUNKS as u64)
            .map(|i| Bytes::from(cloud_support::random_bytes(self.round * 1000 + i, CHUNK)))
            .collect()
    }

    async fn upload(&mut self, data: Vec<Bytes>) -> Duration {
        let started = Instant::now();
        for (index, data) in data.into_iter().enumerate() {
            let job = UploadJob {
                namespace: self.namespace.clone(),
                chunk_index: index as u64,
                generation: self.round,
                data,
            };
            self.layer.uploader.submit(job).await.expect("submit");
        }
        for _ in 0..CHUNKS {
            let completion = self.completions.recv().await.expect("completion");
            completion.result.expect("chunk stored");
        }
        started.elapsed()
    }
}

fn rclone_copy(rclone: &Path, endpoint: &str, round: u64) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    for i in 0..CHUNKS as u64 {
        std::fs::write(
            dir.path().join(format!("f{i:03}")),
            cloud_support::random_bytes(round * 1000 + i, CHUNK),
        )
        .expect("write");
    }
    let remote = format!(
        ":s3,provider=Other,endpoint='{endpoint}',access_key_id=testing,secret_access_key=testing,region=us-east-1,force_path_style=true:{}/rclone-{round}",
        cloud_support::BUCKET
    );
    let started = Instant::now();
    let status = Command::new(rclone)
        .args([
            "copy",
            "--config",
            "/dev/null",
            "--transfers",
            &IN_FLIGHT.to_string(),
            "--s3-upload-concurrency",
            "1",
        ])
        .arg(dir.path())
        .arg(&remote)
        .status()
        .expect("run rclone");
    assert!(status.success(), "rclone copy failed");
    started.elapsed()
}

fn mib_per_s(elapsed: Duration) -> f64 {
    (CHUNKS * CHUNK) as f64 / elapsed.as_secs_f64() / (1 << 20) as f64
}

fn main() {
    let runtime = Runtime::new().expect("tokio runtime");
    let Some(moto) = runtime.block_on(cloud_support::start_moto()) else {
        return;
    };
    let config = CloudConfig {
        store: StoreConfig::S3(S3Config::with_endpoint(
            cloud_support::BUCKET,
            &moto.endpoint,
            "testing",
            "testing",
        )),
        prefix: "bench".into(),
        retry: Default::default(),
        bandwidth: Default::default(),
        uploader: UploaderConfig {
            upload_concurrency: IN_FLIGHT,
            ..UploaderConfig::default()
        },
        zstd_level: gateway::cloud::DEFAULT_ZSTD_LEVEL,
    };
    let registry = prometheus::Registry::new();
    let (layer, completions) = runtime
        .block_on(CloudLayer::start(&config, MasterKey::generate(), &registry))
        .expect("cloud layer");
    let mut bench = Bench {
        layer,
        completions,
        namespace: Namespace::new("vol-bench").expect("namespace"),
        round: 0,
    };

    let mut criterion = Criterion::default().configure_from_args();
    {
        let mut group = criterion.benchmark_group("uploader");
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(20))
            .warm_up_time(Duration::from_secs(2));
        group.throughput(Throughput::Bytes((CHUNKS * CHUNK) as u64));
        group.bench_function("moto-64x1MiB-random", |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let data = bench.next_data();
                        runtime.block_on(bench.upload(data))
                    })
                    .sum()
            })
        });
        group.finish();
    }
    criterion.final_summary();

    let Some(rclone) = cloud_support::peer_binary("rclone") else {
        return;
    };
    println!("\n=== uploader vs rclone copy into moto: {CHUNKS} x 1 MiB random, {IN_FLIGHT} in flight ===");
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let data = bench.next_data();
        ours.push(mib_per_s(runtime.block_on(bench.upload(data))));
        theirs.push(mib_per_s(rclone_copy(&rclone, &moto.endpoint, bench.round)));
    }
    ours.sort_by(f64::total_cmp);
    theirs.sort_by(f64::total_cmp);
    println!(
        "sgw uploader (hash+zstd+AES-GCM+PUT): runs {ours:.1?} MiB/s, median {:.1}",
        ours[1]
    );
    println!(
        "rclone copy (plain PUT):              runs {theirs:.1?} MiB/s, median {:.1}",
        theirs[1]
    );
    println!("ratio sgw/rclone: {:.2}", ours[1] / theirs[1]);
    runtime.block_on(bench.layer.uploader.close());
}
