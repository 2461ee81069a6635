//! Full and failing cache disks, injected through the cache's fault hook
//! (`CacheConfig::io_faults`): the failing call gets an error of the right
//! kind, data written earlier still reads back, the cache reports its
//! fault, and a probe clears it once the disk works again.

mod common;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use cache::{Cache, ChunkId, ErrorKind, FaultHook, IoFaults, IoOp};
use parking_lot::Mutex;

const CHUNK: u32 = 64 * 1024;

/// Fails one kind of operation with an OS error while armed.
#[derive(Default)]
struct Switch {
    armed: Mutex<Option<(IoOp, i32)>>,
}

impl Switch {
    fn arm(&self, op: IoOp, errno: i32) {
        *self.armed.lock() = Some((op, errno));
    }

    fn clear(&self) {
        *self.armed.lock() = None;
    }
}

impl IoFaults for Switch {
    fn check(&self, op: IoOp, _path: &Path) -> std::io::Result<()> {
        match *self.armed.lock() {
            Some((armed, errno)) if armed == op => Err(std::io::Error::from_raw_os_error(errno)),
            _ => Ok(()),
        }
    }
}

fn faulty_cache(dir: &Path) -> (Cache, Arc<Switch>) {
    let switch = Arc::new(Switch::default());
    let mut config = common::config(dir, CHUNK, 32, 24, 20);
    config.io_faults = FaultHook(Some(switch.clone()));
    (common::open(&config), switch)
}

fn filled(byte: u8) -> Bytes {
    Bytes::from(vec![byte; CHUNK as usize])
}

async fn assert_reads(cache: &Cache, id: ChunkId, byte: u8) {
    let read = cache.read(id, 0, CHUNK).await.expect("earlier data still reads");
    assert!(read.complete);
    assert!(read.data.iter().all(|b| *b == byte), "chunk {id} holds {byte}");
}

/// A write failing with `errno` gets `kind`; earlier data reads back;
/// the fault is reported until the disk works and a probe sees it.
async fn write_fault_then_recovery(errno: i32, kind: ErrorKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cache, switch) = faulty_cache(dir.path());
    let (flushed, unflushed, refused) = (ChunkId::new(1, 0), ChunkId::new(1, 1), ChunkId::new(1, 2));
    cache.write(flushed, 0, filled(1)).await.expect("write");
    cache.flush().await.expect("flush");
    cache.write(unflushed, 0, filled(2)).await.expect("write");

    switch.arm(IoOp::Write, errno);
    let error = cache.write(refused, 0, filled(3)).await.expect_err("the disk refuses the write");
    assert_eq!(error.kind(), kind, "{error}");
    assert!(cache.lookup(refused).is_none(), "a failed write leaves no chunk behind");
    let error = cache.write(flushed, 0, filled(4)).await.expect_err("a rewrite fails too");
    assert_eq!(error.kind(), kind, "{error}");
    assert_reads(&cache, flushed, 1).await;
    assert_reads(&cache, unflushed, 2).await;
    let fault = cache.fault().expect("the cache reports its fault");
    assert_eq!(fault.kind, kind);
    assert!(!fault.permanent);
    assert!(cache.probe().await.is_err(), "still failing: the probe says so");
    assert!(cache.fault().is_some());

    switch.clear();
    cache.probe().await.expect("the disk works again");
    assert_eq!(cache.fault(), None, "recovered without a reopen");
    cache.write(refused, 0, filled(3)).await.expect("writes work again");
    cache.flush().await.expect("flush");
    drop(cache);
    let cache = common::open(&common::config(dir.path(), CHUNK, 32, 24, 20));
    for (id, byte) in [(flushed, 1), (unflushed, 2), (refused, 3)] {
        assert_reads(&cache, id, byte).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enospc_on_write_is_disk_full_and_recovers() {
    write_fault_then_recovery(libc::ENOSPC, ErrorKind::DiskFull).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eio_on_write_is_io_and_recovers() {
    write_fault_then_recovery(libc::EIO, ErrorKind::Io).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_index_fails_the_flush_without_failing_the_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cache, switch) = faulty_cache(dir.path());
    let (a, b) = (ChunkId::new(1, 0), ChunkId::new(1, 1));
    cache.write(a, 0, filled(1)).await.expect("write");
    cache.flush().await.expect("flush");

    switch.arm(IoOp::IndexCommit, libc::ENOSPC);
    cache.write(b, 0, filled(2)).await.expect("data still fits in its slot");
    let error = cache.flush().await.expect_err("the index cannot record the flush");
    assert_eq!(error.kind(), ErrorKind::DiskFull, "{error}");
    // Rewriting a chunk of the epoch that could not be recorded needs that
    // flush: the write fails with it instead of waiting.
    let error = cache.write(b, 0, filled(3)).await.expect_err("needs the failed flush");
    assert_eq!(error.kind(), ErrorKind::DiskFull, "{error}");
    assert_reads(&cache, a, 1).await;
    assert_reads(&cache, b, 2).await;
    assert_eq!(cache.fault().map(|f| f.kind), Some(ErrorKind::DiskFull));

    switch.clear();
    cache.probe().await.expect("the index takes writes again");
    assert_eq!(cache.fault(), None);
    cache.write(b, 0, filled(3)).await.expect("rewrite after recovery");
    cache.flush().await.expect("flush");
    drop(cache);
    let cache = common::open(&common::config(dir.path(), CHUNK, 32, 24, 20));
    assert_reads(&cache, a, 1).await;
    assert_reads(&cache, b, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_data_sync_fails_writes_for_good_but_reads_go_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cache, switch) = faulty_cache(dir.path());
    let a = ChunkId::new(1, 0);
    cache.write(a, 0, filled(1)).await.expect("write");
    cache.flush().await.expect("flush");

    switch.arm(IoOp::Sync, libc::EIO);
    cache.write(ChunkId::new(1, 1), 0, filled(2)).await.expect("write");
    assert_eq!(cache.flush().await.expect_err("fdatasync fails").kind(), ErrorKind::Io);
    switch.clear();
    let fault = cache.fault().expect("fault reported");
    assert!(fault.permanent, "the kernel may have dropped the pages: no retry");
    assert!(cache.write(a, 0, filled(3)).await.is_err(), "writes refused");
    assert!(cache.probe().await.is_err(), "a probe cannot clear it");
    assert_reads(&cache, a, 1).await;
}

#[test]
fn a_cache_disk_file_is_reserved_not_sparse() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::config(dir.path(), CHUNK, 64, 48, 40);
    drop(common::open(&config));
    let meta = std::fs::metadata(dir.path().join("disk0")).expect("disk file");
    assert!(meta.blocks() * 512 >= meta.len(), "{} bytes allocated of {}", meta.blocks() * 512, meta.len());
}
