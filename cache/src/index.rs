//! The RocksDB index: column family `chunks` maps (namespace, index) to a
//! chunk record, `disks` lists the cache disks, `meta` holds the cache's
//! identity and the last durable flush epoch.
//!
//! Chunk records are written only by flushes, after the data they point at
//! was synced, in one synced batch per flush; deletions (eviction, discard)
//! are synced before their slots are reused. So every record the index
//! holds points at data that reached the disk, except sectors filled after
//! a flush closed its epoch, which recovery verifies.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rocksdb::{ColumnFamilyDescriptor, DBRecoveryMode, IteratorMode, Options, WriteBatch, WriteOptions, DB};

use crate::chunk::{self, Chunk};
use crate::disk::DiskIdentity;
use crate::error::{Error, Result};
use crate::types::ChunkId;

const CF_CHUNKS: &str = "chunks";
const CF_DISKS: &str = "disks";
const CF_META: &str = "meta";
const META_CACHE_ID: &[u8] = b"cache_id";
const META_GEOMETRY: &[u8] = b"geometry";
const META_DURABLE_EPOCH: &[u8] = b"durable_epoch";

pub struct Index {
    db: DB,
}

/// What the index remembers of a disk.
#[derive(Debug, Clone)]
pub struct DiskRecord {
    pub identity: DiskIdentity,
    pub path: PathBuf,
}

/// Index updates applied atomically.
#[derive(Default)]
pub struct Batch {
    batch: WriteBatch,
}

impl Index {
    pub fn open(dir: &Path) -> Result<Index> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // Replay the WAL up to the first damaged record and no further: the
        // index stays a prefix of what was written, which recovery expects.
        opts.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
        let cfs = [CF_CHUNKS, CF_DISKS, CF_META].map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        Ok(Index { db: DB::open_cf_descriptors(&opts, dir, cfs)? })
    }

    fn cf(&self, name: &'static str) -> Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or(Error::BadRecord { what: name.to_string(), reason: "column family missing" })
    }

    fn get_u64(&self, key: &[u8]) -> Result<Option<u64>> {
        let Some(value) = self.db.get_cf(self.cf(CF_META)?, key)? else { return Ok(None) };
        let bytes: [u8; 8] = value
            .as_slice()
            .try_into()
            .map_err(|_| Error::BadRecord { what: String::from_utf8_lossy(key).into(), reason: "not 8 bytes" })?;
        Ok(Some(u64::from_le_bytes(bytes)))
    }

    pub fn cache_id(&self) -> Result<Option<u64>> {
        self.get_u64(META_CACHE_ID)
    }

    /// chunk_size << 32 | sector_size, fixed at creation.
    pub fn geometry(&self) -> Result<Option<u64>> {
        self.get_u64(META_GEOMETRY)
    }

    pub fn durable_epoch(&self) -> Result<u64> {
        Ok(self.get_u64(META_DURABLE_EPOCH)?.unwrap_or(0))
    }

    pub fn init(&self, cache_id: u64, geometry: u64) -> Result<()> {
        let mut batch = Batch::default();
        let meta = self.cf(CF_META)?;
        batch.batch.put_cf(meta, META_CACHE_ID, cache_id.to_le_bytes());
        batch.batch.put_cf(meta, META_GEOMETRY, geometry.to_le_bytes());
        self.commit_synced(batch)
    }

    pub fn disks(&self) -> Result<Vec<DiskRecord>> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_DISKS)?, IteratorMode::Start) {
            let (key, value) = item?;
            out.push(decode_disk(&key, &value)?);
        }
        Ok(out)
    }

    pub fn add_disk(&self, record: &DiskRecord) -> Result<()> {
        let id = record.identity;
        let mut value = Vec::new();
        value.extend_from_slice(&id.slots.to_le_bytes());
        value.extend_from_slice(&id.chunk_size.to_le_bytes());
        value.extend_from_slice(&id.cache_id.to_le_bytes());
        value.extend_from_slice(record.path.as_os_str().as_bytes());
        let mut batch = Batch::default();
        batch.batch.put_cf(self.cf(CF_DISKS)?, id.disk_id.to_be_bytes(), value);
        self.commit_synced(batch)
    }

    /// Every chunk record; a record that does not decode is reported with
    /// its key so that recovery can drop it.
    pub fn chunks(&self, sectors: u32) -> Result<Vec<(ChunkId, Result<Chunk>)>> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_CHUNKS)?, IteratorMode::Start) {
            let (key, value) = item?;
            let id = chunk::decode_key(&key)?;
            out.push((id, chunk::decode(id, &value, sectors)));
        }
        Ok(out)
    }

    pub fn batch_put_chunk(&self, batch: &mut Batch, id: ChunkId, chunk: &Chunk) -> Result<()> {
        batch.batch.put_cf(self.cf(CF_CHUNKS)?, chunk::encode_key(id), chunk::encode(chunk));
        Ok(())
    }

    pub fn batch_delete_chunk(&self, batch: &mut Batch, id: ChunkId) -> Result<()> {
        batch.batch.delete_cf(self.cf(CF_CHUNKS)?, chunk::encode_key(id));
        Ok(())
    }

    pub fn batch_durable_epoch(&self, batch: &mut Batch, epoch: u64) -> Result<()> {
        batch.batch.put_cf(self.cf(CF_META)?, META_DURABLE_EPOCH, epoch.to_le_bytes());
        Ok(())
    }

    /// Applies `batch` and syncs the WAL: this and every earlier update
    /// survive power loss.
    pub fn commit_synced(&self, batch: Batch) -> Result<()> {
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(batch.batch, &opts)?;
        Ok(())
    }
}

fn decode_disk(key: &[u8], value: &[u8]) -> Result<DiskRecord> {
    let bad = || Error::BadRecord { what: format!("disk {key:?}"), reason: "malformed disk record" };
    let disk_id = u32::from_be_bytes(key.try_into().map_err(|_| bad())?);
    let u32_at = |i: usize| value.get(i..i + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
    let slots = u32_at(0).ok_or_else(bad)?;
    let chunk_size = u32_at(4).ok_or_else(bad)?;
    let cache_id = value.get(8..16).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes).ok_or_else(bad)?;
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(value.get(16..).ok_or_else(bad)?));
    Ok(DiskRecord { identity: DiskIdentity { cache_id, disk_id, chunk_size, slots }, path })
}
