//! A cached volume over a cache whose disk fails, injected through the
//! cache's fault hook: reads of uploaded (clean) chunks come from the
//! cloud, a full disk fails writes as out of space (which the SCSI layer
//! answers with SPACE ALLOCATION FAILED), the health board and the volume
//! service report it, and the engine's watcher probes the cache back to
//! health once the fault clears.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cache::{Cache, CacheConfig, ChunkId, ChunkState, DiskSpec, FaultHook, IoFaults, IoOp};
use gateway::cached::map::MapStore;
use gateway::cached::metrics::VolumeMetrics;
use gateway::cached::{CachedVolume, CachedVolumes, Engine, VolumeIdentity};
use gateway::cloud::{CloudLayer, MasterKey};
use gateway::config::Config;
use gateway::health::{HealthBoard, CACHE};
use iscsi_target::scsi::block::BlockDevice;
use iscsi_target::scsi::types::{BlockCount, Lba};

const MIB: usize = 1 << 20;

/// Fails one kind of cache operation with an OS error while armed.
#[derive(Default)]
struct Switch(Mutex<Option<(IoOp, i32)>>);

impl Switch {
    fn arm(&self, op: IoOp, errno: i32) {
        *self.0.lock().expect("switch") = Some((op, errno));
    }

    fn clear(&self) {
        *self.0.lock().expect("switch") = None;
    }
}

impl IoFaults for Switch {
    fn check(&self, op: IoOp, _path: &Path) -> std::io::Result<()> {
        match *self.0.lock().expect("switch") {
            Some((armed, errno)) if armed == op => Err(std::io::Error::from_raw_os_error(errno)),
            _ => Ok(()),
        }
    }
}

struct Setup {
    engine: Arc<Engine>,
    service: Arc<CachedVolumes>,
    volume: Arc<CachedVolume>,
    switch: Arc<Switch>,
    board: Arc<HealthBoard>,
    gauge: prometheus::IntGaugeVec,
    shutdown: tokio_util::sync::CancellationToken,
}

/// A volume on the embedded store in `dir`, its cache behind a switch.
async fn setup(dir: &Path) -> Setup {
    let config = Config { data_dir: dir.to_path_buf(), ..Config::default() };
    let registry = prometheus::Registry::new();
    let (cloud, completions) = CloudLayer::start(&config.cloud(), MasterKey::generate(), &registry).await.expect("cloud");
    let cache_dir = dir.join("cache");
    std::fs::create_dir_all(&cache_dir).expect("cache dir");
    let switch = Arc::new(Switch::default());
    let mut cache_config =
        CacheConfig::new(cache_dir.join("index"), vec![DiskSpec { path: cache_dir.join("disk0.img"), size_bytes: 32 << 20 }]);
    cache_config.io_faults = FaultHook(Some(switch.clone()));
    let cache = Arc::new(Cache::open(cache_config, &registry).expect("cache"));
    let maps = Arc::new(MapStore::open(&cache_dir.join("maps")).expect("maps"));
    let engine = Engine::new(cache, Arc::new(cloud), maps, VolumeMetrics::register(&registry).expect("metrics"));
    let shutdown = tokio_util::sync::CancellationToken::new();
    engine.start(completions, shutdown.clone());
    let board = Arc::new(HealthBoard::default());
    let gauge = prometheus::IntGaugeVec::new(prometheus::Opts::new("sgw_health", "test"), &["component"]).expect("gauge");
    engine.watch_health(board.clone(), gauge.clone(), shutdown.clone());
    let service = CachedVolumes::new(engine.clone(), dir).expect("service");
    let identity = VolumeIdentity { id: 7, family: 7, name: "v".into(), size_bytes: 16 << 20 };
    let volume = service.create(identity, None).await.expect("volume");
    Setup { engine, service, volume, switch, board, gauge, shutdown }
}

fn pattern(byte: u8) -> Bytes {
    Bytes::from(vec![byte; MIB])
}

async fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check()
}

const MIB_BLOCKS: u64 = (MIB / 512) as u64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_clean_chunks_come_from_the_cloud_while_the_cache_disk_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = setup(dir.path()).await;
    s.volume.write(Lba(0), pattern(0xa1), true).await.expect("write");
    let uploaded = wait_for(Duration::from_secs(30), || {
        s.engine.cache.lookup(ChunkId::new(7, 0)).is_some_and(|c| c.state == ChunkState::Clean)
    })
    .await;
    assert!(uploaded, "chunk 0 uploaded");
    s.volume.write(Lba(MIB_BLOCKS), pattern(0xb2), true).await.expect("write a chunk that stays dirty");

    s.switch.arm(IoOp::Read, libc::EIO);
    let read = s.volume.read(Lba(0), BlockCount(MIB_BLOCKS)).await.expect("clean chunk from the cloud");
    assert!(read.iter().all(|b| *b == 0xa1));
    // Only the cache has the dirty chunk: that read fails, it is not
    // served from an older cloud copy.
    assert!(s.volume.read(Lba(MIB_BLOCKS), BlockCount(MIB_BLOCKS)).await.is_err());
    assert!(s.service.cache_failed(), "the volume's state says CACHE_FAILED");
    s.switch.clear();
    let recovered = wait_for(Duration::from_secs(10), || !s.service.cache_failed()).await;
    assert!(recovered, "the watcher's probe clears the fault");
    let read = s.volume.read(Lba(MIB_BLOCKS), BlockCount(MIB_BLOCKS)).await.expect("dirty chunk from the cache");
    assert!(read.iter().all(|b| *b == 0xb2));
    s.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cache_disk_is_reported_and_recovers_by_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = setup(dir.path()).await;
    s.volume.write(Lba(0), pattern(0xa1), true).await.expect("write");

    s.switch.arm(IoOp::Write, libc::ENOSPC);
    let error = s.volume.write(Lba(2 * MIB_BLOCKS), pattern(0xc3), false).await.expect_err("the disk is full");
    assert_eq!(error.kind(), std::io::ErrorKind::StorageFull, "{error}");
    let read = s.volume.read(Lba(0), BlockCount(MIB_BLOCKS)).await.expect("earlier data");
    assert!(read.iter().all(|b| *b == 0xa1));
    let reported = wait_for(Duration::from_secs(10), || {
        s.board.faults().iter().any(|f| f.component == CACHE && f.reason.contains("No space left"))
    })
    .await;
    assert!(reported, "health: {:?}", s.board.faults());
    assert_eq!(s.gauge.with_label_values(&[CACHE]).get(), 0);

    s.switch.clear();
    let recovered = wait_for(Duration::from_secs(10), || s.board.faults().iter().all(|f| f.component != CACHE)).await;
    assert!(recovered, "health: {:?}", s.board.faults());
    assert_eq!(s.gauge.with_label_values(&[CACHE]).get(), 1);
    s.volume.write(Lba(2 * MIB_BLOCKS), pattern(0xc3), true).await.expect("writes work again");
    s.shutdown.cancel();
}
