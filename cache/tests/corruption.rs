//! Corruption: bytes flipped in a slot file are detected on read and
//! reported, never served, before and after a restart; data of writes no
//! flush covered is never exposed after a crash, torn or not.

mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;
use cache::{ChunkId, ErrorKind};

const CHUNK: u32 = 64 * 1024;

/// Flips the byte at `offset` in the first occurrence of `needle` in the
/// disk file.
fn flip_byte_of(disk: &Path, needle: &[u8], offset: usize) {
    let bytes = std::fs::read(disk).expect("read disk");
    let at = bytes.windows(needle.len()).position(|w| w == needle).expect("data in disk file");
    let file = std::fs::OpenOptions::new().write(true).open(disk).expect("open disk");
    file.write_all_at(&[bytes[at + offset] ^ 0x40], (at + offset) as u64).expect("flip");
}

fn pattern(tag: u8) -> Vec<u8> {
    (0..8192u32).map(|i| (i % 97) as u8 ^ tag).collect()
}

#[tokio::test]
async fn flipped_byte_in_flushed_data_is_reported_not_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::config(dir.path(), CHUNK, 16, 8, 4);
    let registry = prometheus::Registry::new();
    let cache = cache::Cache::open(config.clone(), &registry).expect("open");
    let id = ChunkId::new(7, 3);
    cache.write(id, 8192, Bytes::from(pattern(0xA5))).await.expect("write");
    cache.flush().await.expect("flush");
    flip_byte_of(&dir.path().join("disk0"), &pattern(0xA5), 100);

    let error = cache.read(id, 0, CHUNK).await.expect_err("corrupt data served");
    assert_eq!(error.kind(), ErrorKind::Corruption);
    // A read that avoids the damaged sector still works.
    let clean = cache.read(id, 12288, 4096).await.expect("undamaged sector");
    assert!(clean.complete);
    let errors = registry.gather().into_iter().find(|f| f.name() == "cache_checksum_errors_total").expect("metric");
    assert_eq!(errors.get_metric()[0].get_counter().get_value(), 1.0);

    // Still detected after a restart: recovery does not launder it.
    drop(cache);
    let cache = common::open(&config);
    assert_eq!(cache.read(id, 8192, 4096).await.expect_err("served after reopen").kind(), ErrorKind::Corruption);
}

#[tokio::test]
async fn torn_data_of_an_unflushed_write_is_never_exposed_after_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::config(dir.path(), CHUNK, 16, 8, 4);
    let cache = common::open(&config);
    let (flushed, unflushed) = (ChunkId::new(1, 1), ChunkId::new(1, 2));
    cache.write(flushed, 0, Bytes::from(pattern(0x22))).await.expect("write");
    cache.flush().await.expect("flush");
    // Rewritten after the flush: copy-on-write keeps the flushed version.
    cache.write(flushed, 0, Bytes::from(pattern(0x33))).await.expect("rewrite");
    cache.write(unflushed, 0, Bytes::from(pattern(0x11))).await.expect("write");
    // A crash (no close), with the unflushed sectors torn on disk.
    drop(cache);
    flip_byte_of(&dir.path().join("disk0"), &pattern(0x11), 4096 + 100);
    flip_byte_of(&dir.path().join("disk0"), &pattern(0x33), 100);

    let cache = common::open(&config);
    let read = cache.read(unflushed, 0, 8192).await.expect("read");
    assert!(read.valid.is_empty(), "unflushed write exposed: {:?}", read.valid);
    let read = cache.read(flushed, 0, 8192).await.expect("flushed version intact");
    assert!(read.complete);
    assert_eq!(&read.data[..], &pattern(0x22)[..]);
}

/// Checksums the caller computed (`write_checksummed`) are kept as given
/// for a write of whole sectors: right ones read back, and a wrong one is
/// caught as corruption, so they are not recomputed behind the caller's
/// back. A write that is not whole sectors ignores them.
#[tokio::test]
async fn caller_checksums_are_kept_for_whole_sector_writes_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::config(dir.path(), CHUNK, 16, 8, 4);
    let cache = common::open(&config);
    let data = Bytes::from(pattern(0x3C));
    let mut crcs: Vec<u32> = data.chunks(4096).map(crc32c::crc32c).collect();

    let good = ChunkId::new(2, 0);
    cache.write_checksummed(good, 4096, data.clone(), Some(&crcs)).await.expect("write");
    cache.flush().await.expect("flush");
    drop(cache);
    let cache = common::open(&config);
    let read = cache.read(good, 4096, 8192).await.expect("read after reopen");
    assert_eq!(read.data, data);

    let bad = ChunkId::new(2, 1);
    crcs[1] ^= 1;
    cache.write_checksummed(bad, 0, data.clone(), Some(&crcs)).await.expect("write");
    assert_eq!(cache.read(bad, 0, 4096).await.expect("first sector").data, data.slice(..4096));
    assert_eq!(cache.read(bad, 4096, 4096).await.expect_err("wrong checksum kept").kind(), ErrorKind::Corruption);

    // Not whole sectors: the sector is read, merged and checksummed by the
    // cache itself, whatever the caller passed.
    cache.write_checksummed(good, 4096 + 512, data.slice(..512), Some(&crcs[..1])).await.expect("partial write");
    let read = cache.read(good, 4096, 4096).await.expect("merged sector");
    let mut want = data.slice(..4096).to_vec();
    want[512..1024].copy_from_slice(&data[..512]);
    assert_eq!(read.data, want);
}
