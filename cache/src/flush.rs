//! Flush: the durability barrier.
//!
//! 1. Close the epoch: with the write gate held exclusively, bump the
//!    epoch, so every write of the closed epoch has finished and later
//!    writes copy-on-write instead of touching its slots.
//! 2. Copy each copy-on-write chunk's base-only sectors into its current
//!    slot. Memory and the index still point at the base meanwhile.
//! 3. fdatasync every cache disk.
//! 4. Point the chunks at their merged slots in memory, then record every
//!    chunk changed in the closed epoch, with the new durable epoch, in one
//!    synced index batch.
//! 5. Free the base slots; wake writers waiting for this epoch.
//!
//! Only a failed step 3 fails the cache for good. A failed step 2 or 4
//! (a full file system, an index that refuses writes) leaves the chunks
//! changed in memory for the next flush; writers waiting for the epoch get
//! the error.
//!
//! Callers that queue while a flush runs share the next one (group commit,
//! in `Cache::flush`).

use std::sync::atomic::Ordering;

use crate::cache::{Cell, Inner, Unrecorded};
use crate::disk::SlotRef;
use crate::error::{Error, ErrorKind, Result};
use crate::index::Batch;
use crate::sectors::SectorSet;
use crate::types::ChunkId;

/// A base copied into its chunk's current slot, awaiting step 4.
struct Merged {
    id: ChunkId,
    current: SlotRef,
    base: SlotRef,
    sectors: SectorSet,
    crcs: Vec<u32>,
}

impl Inner {
    /// Flushes; a failed fdatasync fails the cache for good (the kernel may
    /// have dropped the dirty pages, so nothing written since the last
    /// flush can be trusted), while a failure before it (copying bases) or
    /// after it (recording in the index) leaves the cache as it was: the
    /// chunks stay changed in memory and the next flush records them.
    pub fn flush(&self) -> Result<()> {
        self.check_healthy()?;
        let (closing, pending, changed) = {
            let _gate = self.gate.write();
            let closing = self.epoch.fetch_add(1, Ordering::AcqRel);
            let mut state = self.state.lock();
            (closing, std::mem::take(&mut state.pending_merge), std::mem::take(&mut state.changed))
        };
        let mut merged = Vec::new();
        for id in &pending {
            match self.copy_base(*id, closing) {
                Ok(m) => merged.extend(m),
                Err(error) => {
                    let mut state = self.state.lock();
                    state.pending_merge.extend(pending.iter().copied());
                    state.changed.extend(changed.iter().copied());
                    drop(state);
                    return Err(self.flush_unrecorded(closing, error));
                }
            }
        }
        let disks = self.disks.read().clone();
        for disk in &disks {
            if let Err(error) = disk.sync_data() {
                self.fail(&error);
                return Err(error);
            }
        }
        let mut recorded = changed;
        let mut freed = Vec::new();
        for m in merged {
            let Some(mut guard) = self.lock_cell(m.id, false) else { continue };
            let Cell::Present(chunk) = &mut *guard else { continue };
            let Some(base) = chunk.base.as_ref().filter(|b| b.slot == m.base && chunk.current.slot == m.current) else {
                continue;
            };
            let before = chunk.dirty_slots();
            freed.push(base.slot);
            for s in m.sectors.iter() {
                chunk.current.crcs[s as usize] = m.crcs[s as usize];
                chunk.current.valid.insert_range(s..s + 1);
            }
            chunk.base = None;
            // Its base slot is freed below: the record must stop naming it
            // (chunks merged at open were not changed by a write).
            recorded.insert(m.id);
            let mut state = self.state.lock();
            state.track_evictable(m.id, chunk.evictable());
            self.settle_dirty(&mut state, before, chunk.dirty_slots());
        }
        let mut batch = Batch::default();
        for id in &recorded {
            let Some(guard) = self.lock_cell(*id, false) else { continue };
            if let Cell::Present(chunk) = &*guard {
                self.index.batch_put_chunk(&mut batch, *id, chunk)?;
            }
        }
        self.index.batch_durable_epoch(&mut batch, closing)?;
        if let Err(error) = self.commit_index(batch) {
            // The next flush records these chunks. The base slots merged
            // away stay taken: the index may still name them, and a restart
            // frees whatever no record names.
            self.state.lock().changed.extend(recorded);
            return Err(self.flush_unrecorded(closing, error));
        }
        {
            let mut state = self.state.lock();
            for slot in freed {
                state.release_slot(slot);
            }
            self.publish(&state);
        }
        self.durability.send_modify(|d| d.epoch = d.epoch.max(closing));
        self.metrics.flushes.inc();
        Ok(())
    }

    /// A flush that closed epoch `closing` did not make it durable: writers
    /// waiting for that epoch get the error instead of waiting for a flush
    /// that may not come soon.
    fn flush_unrecorded(&self, closing: u64, error: Error) -> Error {
        let full = error.kind() == ErrorKind::DiskFull;
        let reason = error.to_string();
        self.durability.send_modify(|d| d.unrecorded = Some(Unrecorded { epoch: closing, full, reason }));
        error
    }

    /// Copies the sectors only the base holds into the current slot of a
    /// chunk whose epoch is closed. A base sector failing its checksum is
    /// reported and left invalid.
    fn copy_base(&self, id: ChunkId, closing: u64) -> Result<Option<Merged>> {
        let Some(guard) = self.lock_cell(id, false) else { return Ok(None) };
        let Cell::Present(chunk) = &*guard else { return Ok(None) };
        let Some(base) = chunk.base.as_ref().filter(|_| chunk.epoch <= closing) else { return Ok(None) };
        let sector = self.config.sector_size as usize;
        let mut only_in_base = SectorSet::new(self.sectors);
        for s in base.valid.iter().filter(|s| !chunk.current.valid.contains(*s)) {
            only_in_base.insert_range(s..s + 1);
        }
        let mut sectors = SectorSet::new(self.sectors);
        let mut crcs = vec![0; self.sectors as usize];
        let current = self.disk(chunk.current.slot.disk)?;
        let from = self.disk(base.slot.disk)?;
        for run in only_in_base.runs() {
            let mut buffer = vec![0u8; run.len() * sector];
            from.read_at(base.slot.slot, u64::from(run.start) * sector as u64, &mut buffer)?;
            // A sector failing its checksum is copied but not marked valid.
            for (i, s) in run.clone().enumerate() {
                if self.verify(id, base, s, &buffer[i * sector..(i + 1) * sector]).is_ok() {
                    sectors.insert_range(s..s + 1);
                    crcs[s as usize] = base.crcs[s as usize];
                }
            }
            current.write_at(chunk.current.slot.slot, u64::from(run.start) * sector as u64, &buffer)?;
        }
        Ok(Some(Merged { id, current: chunk.current.slot, base: base.slot, sectors, crcs }))
    }
}
