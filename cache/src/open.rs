//! Opening a cache: index, disks, then recovery.
//!
//! Chunk records are written by flushes after the data they name was
//! synced, so recovery trusts a record whose last change is covered by the
//! durable epoch. A record newer than that (a fill that landed in a chunk
//! between a flush's data sync and its index commit) is reconciled with its
//! slots: each valid sector is read back and checked against its crc32c,
//! and a sector that fails, torn by the crash, is dropped. That only ever
//! loses data no flush had promised, because durable sectors are never
//! overwritten in place (see `write`). Slots no record names are free.
//! Then the verified state is made durable, and copy-on-write bases left in
//! the index are merged by a flush.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use parking_lot::{Mutex, RwLock};
use prometheus::Registry;
use tokio::sync::{watch, Notify};

use crate::cache::{Cache, Cell, Durability, Inner, State};
use crate::chunk::{Chunk, SlotData};
use crate::config::CacheConfig;
use crate::disk::{Disk, SlotRef};
use crate::error::{Error, Result};
use crate::eviction::S3Fifo;
use crate::index::{Batch, Index};
use crate::metrics::Metrics;
use crate::types::ChunkId;

pub fn open(config: CacheConfig, registry: &Registry) -> Result<Cache> {
    config.validate()?;
    std::fs::create_dir_all(&config.index_dir)
        .map_err(|source| Error::Disk { path: config.index_dir.display().to_string(), source })?;
    let index = Index::open(&config.index_dir)?;
    let geometry = (u64::from(config.chunk_size) << 32) | u64::from(config.sector_size);
    let cache_id = match index.cache_id()? {
        Some(id) => {
            if index.geometry()? != Some(geometry) {
                return Err(Error::Invalid(format!(
                    "the cache at {} was created with another chunk or sector size",
                    config.index_dir.display()
                )));
            }
            id
        }
        None => {
            let id = std::collections::hash_map::RandomState::new().build_hasher().finish();
            index.init(id, geometry)?;
            id
        }
    };
    let mut disks = Vec::new();
    for (expected_id, record) in index.disks()?.into_iter().enumerate() {
        if record.identity.disk_id as usize != expected_id {
            return Err(Error::BadRecord { what: format!("disk {}", record.identity.disk_id), reason: "disk ids not dense" });
        }
        disks.push(Arc::new(Disk::open(&record.path, record.identity, config.io_faults.clone())?));
    }
    let new_disks: Vec<_> = config.disks.iter().filter(|spec| !disks.iter().any(|d| d.path == spec.path)).cloned().collect();
    let total_slots: u64 = disks.iter().map(|d| u64::from(d.identity.slots)).sum();
    let state = State {
        chunks: BTreeMap::new(),
        free: disks.iter().map(|_| Vec::new()).collect(),
        total_slots,
        free_slots: 0,
        dirty_slots: 0,
        throttling: false,
        dirty_queue: BTreeMap::new(),
        uploading: HashMap::new(),
        next_dirty_seq: 1,
        policy: S3Fifo::new(total_slots as usize),
        pending_merge: HashSet::new(),
        changed: HashSet::new(),
        access_clock: 0,
    };
    let inner = Arc::new(Inner {
        sectors: config.sectors_per_chunk(),
        config,
        cache_id,
        index,
        disks: RwLock::new(disks),
        state: Mutex::new(state),
        gate: RwLock::new(()),
        epoch: AtomicU64::new(1),
        durability: watch::Sender::new(Durability { epoch: 0, failure: None, unrecorded: None }),
        space: Notify::new(),
        flush_leader: tokio::sync::Mutex::new(()),
        metrics: Metrics::register(registry)?,
        offload: OnceLock::new(),
        fault: Mutex::new(None),
    });
    recover(&inner)?;
    for spec in &new_disks {
        inner.add_disk(spec)?;
    }
    if inner.state.lock().total_slots == 0 {
        return Err(Error::Invalid("a cache needs at least one disk".into()));
    }
    if !inner.state.lock().pending_merge.is_empty() {
        inner.flush()?;
    }
    Ok(Cache { inner })
}

fn recover(inner: &Inner) -> Result<()> {
    let durable = inner.index.durable_epoch()?;
    let mut last_epoch = durable;
    let mut fixes = Batch::default();
    let mut used: HashSet<SlotRef> = HashSet::new();
    let mut evictable = Vec::new();
    let (mut verified, mut dropped_sectors) = (0u64, 0u64);
    let mut state = inner.state.lock();
    for (id, record) in inner.index.chunks(inner.sectors)? {
        let mut chunk = match record.and_then(|c| check_slots(inner, &used, c)) {
            Ok(chunk) => chunk,
            Err(error) => {
                tracing::warn!(%id, %error, "dropping an unusable cache index record");
                inner.index.batch_delete_chunk(&mut fixes, id)?;
                continue;
            }
        };
        last_epoch = last_epoch.max(chunk.epoch).max(chunk.touched);
        if chunk.touched > durable {
            verified += 1;
            let before = chunk.current.valid.count() + chunk.base.as_ref().map_or(0, |b| b.valid.count());
            verify_slot(inner, id, &mut chunk.current)?;
            if let Some(base) = chunk.base.as_mut() {
                verify_slot(inner, id, base)?;
            }
            if chunk.base.as_ref().is_some_and(|b| b.valid.is_empty()) {
                chunk.base = None;
            }
            let after = chunk.current.valid.count() + chunk.base.as_ref().map_or(0, |b| b.valid.count());
            dropped_sectors += u64::from(before - after);
            if chunk.valid().is_empty() {
                inner.index.batch_delete_chunk(&mut fixes, id)?;
                continue;
            }
            if after != before {
                inner.index.batch_put_chunk(&mut fixes, id, &chunk)?;
            }
        }
        used.insert(chunk.current.slot);
        used.extend(chunk.base.as_ref().map(|b| b.slot));
        state.dirty_slots += chunk.dirty_slots();
        state.access_clock = state.access_clock.max(chunk.last_access);
        if chunk.dirty {
            state.dirty_queue.insert(chunk.dirty_seq, id);
            state.next_dirty_seq = state.next_dirty_seq.max(chunk.dirty_seq + 1);
        }
        if chunk.base.is_some() {
            state.pending_merge.insert(id);
        }
        if chunk.evictable() {
            evictable.push((chunk.last_access, id));
        }
        state.chunks.insert(id, Arc::new(Mutex::new(Cell::Present(chunk))));
    }
    // The coldest chunks enter the FIFOs first and so leave them first.
    evictable.sort_unstable();
    for (_, id) in evictable {
        state.policy.insert(id);
    }
    let disks = inner.disks.read().clone();
    for disk in &disks {
        disk.sync_data()?;
        let free: Vec<u32> =
            (0..disk.identity.slots).rev().filter(|s| !used.contains(&SlotRef { disk: disk.identity.disk_id, slot: *s })).collect();
        state.free_slots += free.len() as u64;
        state.free[disk.identity.disk_id as usize] = free;
    }
    inner.index.batch_durable_epoch(&mut fixes, last_epoch)?;
    inner.index.commit_synced(fixes)?;
    inner.epoch.store(last_epoch + 1, std::sync::atomic::Ordering::Release);
    inner.durability.send_modify(|d| d.epoch = last_epoch);
    inner.publish(&state);
    tracing::info!(chunks = state.chunks.len(), verified, dropped_sectors, "cache recovered");
    Ok(())
}

/// Rejects a record pointing outside the disks or at a slot another record
/// holds.
fn check_slots(inner: &Inner, used: &HashSet<SlotRef>, chunk: Chunk) -> Result<Chunk> {
    let disks = inner.disks.read();
    for data in std::iter::once(&chunk.current).chain(chunk.base.iter()) {
        let known = disks.get(data.slot.disk as usize).is_some_and(|d| data.slot.slot < d.identity.slots);
        if !known || used.contains(&data.slot) {
            return Err(Error::BadRecord { what: format!("{:?}", data.slot), reason: "slot unknown or shared" });
        }
    }
    Ok(chunk)
}

/// Drops the sectors of `data` whose content does not match its checksum.
fn verify_slot(inner: &Inner, id: ChunkId, data: &mut SlotData) -> Result<()> {
    let sector = inner.config.sector_size as usize;
    let disk = inner.disk(data.slot.disk)?;
    for run in data.valid.runs() {
        let mut buffer = vec![0u8; run.len() * sector];
        disk.read_at(data.slot.slot, u64::from(run.start) * sector as u64, &mut buffer)?;
        for (i, s) in run.enumerate() {
            if crate::crc::sector(&buffer[i * sector..(i + 1) * sector]) != data.crcs[s as usize] {
                tracing::debug!(%id, sector = s, "dropping a torn sector of an unflushed write");
                data.valid.remove(s);
            }
        }
    }
    Ok(())
}
