//! Writes and fills. They change the slot and the chunk in memory; the
//! next flush records the chunk in the index once the data is synced, so
//! data always reaches its slot before the record that points at it.
//!
//! A write never overwrites a sector that a completed flush made durable:
//! the first write to a chunk in a new flush epoch moves it to a fresh slot
//! (copy-on-write, with the old slot kept as the chunk's base until the
//! next flush merges it). Within an epoch, writes go in place. A fill only
//! writes sectors that are invalid, so it always goes in place.

use std::ops::Range;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::cache::{may_block, Cell, CellGuard, Inner, WriteStep};
use crate::chunk::{Chunk, SlotData};
use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::sectors::SectorSet;
use crate::types::ChunkId;

impl Inner {
    /// The sectors `offset..offset + len` touches, after checking the range
    /// lies in the chunk.
    pub fn sector_range(&self, offset: u32, len: usize) -> Result<Range<u32>> {
        let end = u64::from(offset) + len as u64;
        if len == 0 || end > self.chunk_bytes() {
            return Err(Error::Invalid(format!(
                "range {offset}+{len} is empty or outside the {}-byte chunk",
                self.config.chunk_size
            )));
        }
        let sector = u64::from(self.config.sector_size);
        Ok((u64::from(offset) / sector) as u32..end.div_ceil(sector) as u32)
    }

    pub fn write(&self, id: ChunkId, offset: u32, data: &Bytes, crcs: Option<&[u32]>) -> Result<WriteStep> {
        self.check_healthy()?;
        let sectors = self.sector_range(offset, data.len())?;
        // A flush takes the gate only to close its epoch, but waits for the
        // writes inside it: do not wait for those on an async worker.
        let _gate = self.gate.try_read().unwrap_or_else(|| may_block(|| self.gate.read()));
        let epoch = self.epoch.load(Ordering::Acquire);
        let Some(mut guard) = self.lock_cell(id, true) else {
            return Err(Error::Failed("chunk cell vanished while created".into()));
        };
        let existing = match &*guard {
            Cell::Present(chunk) => Some(chunk.clone()),
            _ => None,
        };
        let copy_on_write = existing.as_ref().is_some_and(|c| c.epoch < epoch);
        if let Some(chunk) = existing.as_ref().filter(|_| copy_on_write) {
            if self.durable_epoch() < chunk.epoch {
                // Its slot is still being flushed: once the flush is done
                // the slot is durable and can serve as the base.
                return Ok(WriteStep::AwaitDurable(chunk.epoch));
            }
            if chunk.base.is_some() {
                return Err(Error::Failed(format!("{id}: copy-on-write over an unmerged base")));
            }
        }
        let buffer = match self.assemble(id, existing.as_ref(), offset, data, &sectors) {
            Ok(buffer) => buffer,
            Err(error) => {
                self.abandon_vacant(&mut guard, id);
                return Err(error);
            }
        };

        let before = existing.as_ref().map_or(0, Chunk::dirty_slots);
        let after = existing.as_ref().map_or(1, |c| c.slots() + u64::from(copy_on_write));
        if !self.state.lock().admit_dirty(after - before, self.high_slots()) {
            self.abandon_vacant(&mut guard, id);
            return Ok(WriteStep::AwaitSpace);
        }
        let refund = |inner: &Inner| {
            let mut state = inner.state.lock();
            inner.settle_dirty(&mut state, after, before);
        };
        let mut fresh_slot = None;
        if existing.is_none() || copy_on_write {
            match self.allocate() {
                Ok(slot) => fresh_slot = Some(slot),
                Err(error) => {
                    refund(self);
                    self.abandon_vacant(&mut guard, id);
                    return Err(error);
                }
            }
        }
        let mut chunk = match (existing, fresh_slot) {
            (Some(mut chunk), Some(slot)) => {
                let old = std::mem::replace(&mut chunk.current, SlotData::empty(slot, self.sectors));
                chunk.base = Some(old);
                chunk.epoch = epoch;
                chunk
            }
            (Some(chunk), None) => chunk,
            (None, Some(slot)) => new_chunk(SlotData::empty(slot, self.sectors), epoch),
            (None, None) => return Err(Error::Failed(format!("{id}: new chunk without a slot"))),
        };

        // The caller's checksums fit only a write of whole sectors, which
        // `assemble` passes through unwidened.
        let sector = self.config.sector_size as usize;
        let whole_sectors = (offset as usize).is_multiple_of(sector) && data.len().is_multiple_of(sector);
        let crcs = crcs.filter(|c| whole_sectors && c.len() == sectors.len());
        let write_result = self
            .disk(chunk.current.slot.disk)
            .and_then(|disk| self.checksum_and_write(&disk, &mut chunk.current, sectors.start, &buffer, crcs));
        if let Err(error) = write_result {
            if let Some(slot) = fresh_slot {
                self.state.lock().release_slot(slot);
            }
            refund(self);
            self.abandon_vacant(&mut guard, id);
            return Err(error);
        }
        chunk.current.valid.insert_range(sectors);
        chunk.generation += 1;
        chunk.touched = epoch;
        {
            let mut state = self.state.lock();
            chunk.last_access = state.tick();
            if !chunk.dirty {
                chunk.dirty = true;
                chunk.dirty_seq = state.next_dirty_seq;
                state.next_dirty_seq += 1;
                state.dirty_queue.insert(chunk.dirty_seq, id);
                state.policy.remove(&id);
            }
            if copy_on_write {
                state.pending_merge.insert(id);
            }
            state.changed.insert(id);
            self.publish(&state);
        }
        *guard = Cell::Present(chunk);
        Ok(WriteStep::Done)
    }

    /// The bytes to write for `sectors`: `data`, widened to whole sectors
    /// with the chunk's current content where the write covers a sector
    /// only in part.
    fn assemble(&self, id: ChunkId, chunk: Option<&Chunk>, offset: u32, data: &Bytes, sectors: &Range<u32>) -> Result<Bytes> {
        let sector = self.config.sector_size as usize;
        let start = sectors.start as usize * sector;
        let head = offset as usize - start;
        let tail = sectors.end as usize * sector - (offset as usize + data.len());
        if head == 0 && tail == 0 {
            return Ok(data.clone());
        }
        let mut buffer = vec![0u8; sectors.len() * sector];
        let mut partial = vec![];
        if head != 0 {
            partial.push(sectors.start);
        }
        if tail != 0 && (sectors.end - 1 != sectors.start || head == 0) {
            partial.push(sectors.end - 1);
        }
        for s in partial {
            let held = chunk.is_some_and(|c| c.valid().contains(s));
            let Some(chunk) = chunk.filter(|_| held) else {
                return Err(Error::Invalid(format!(
                    "{id}: write covers sector {s} in part but the cache does not hold it; fill it first"
                )));
            };
            let at = (s - sectors.start) as usize * sector;
            // The sector may have left the page cache: a disk read.
            may_block(|| self.read_sector(id, chunk, s, &mut buffer[at..at + sector]))?;
        }
        buffer[head..head + data.len()].copy_from_slice(data);
        Ok(Bytes::from(buffer))
    }

    fn abandon_vacant(&self, guard: &mut CellGuard, id: ChunkId) {
        if matches!(**guard, Cell::Vacant) {
            self.remove_cell(guard, id);
        }
    }

    pub fn fill(&self, id: ChunkId, offset: u32, data: &Bytes) -> Result<()> {
        self.check_healthy()?;
        let sectors = self.sector_range(offset, data.len())?;
        let sector = self.config.sector_size as usize;
        if offset as usize % sector != 0 || data.len() % sector != 0 {
            return Err(Error::Invalid("fills must cover whole sectors".into()));
        }
        let _gate = self.gate.read();
        let epoch = self.epoch.load(Ordering::Acquire);
        let Some(mut guard) = self.lock_cell(id, true) else {
            return Err(Error::Failed("chunk cell vanished while created".into()));
        };
        let mut chunk = match &*guard {
            Cell::Present(chunk) => chunk.clone(),
            _ => match self.allocate() {
                Ok(slot) => new_chunk(SlotData::empty(slot, self.sectors), epoch),
                Err(error) => {
                    self.abandon_vacant(&mut guard, id);
                    return Err(error);
                }
            },
        };
        let valid = chunk.valid();
        let mut missing = SectorSet::new(self.sectors);
        for s in sectors.clone().filter(|s| !valid.contains(*s)) {
            missing.insert_range(s..s + 1);
        }
        if let Err(error) = self.write_runs(&mut chunk, &missing, sectors.start, data) {
            if matches!(*guard, Cell::Vacant) {
                self.state.lock().release_slot(chunk.current.slot);
                self.remove_cell(&mut guard, id);
            }
            return Err(error);
        }
        let was_vacant = matches!(*guard, Cell::Vacant);
        if missing.is_empty() && !was_vacant {
            return Ok(());
        }
        chunk.touched = epoch;
        {
            let mut state = self.state.lock();
            chunk.last_access = state.tick();
            state.track_evictable(id, chunk.evictable());
            state.changed.insert(id);
            self.publish(&state);
        }
        *guard = Cell::Present(chunk);
        Ok(())
    }
}

impl Inner {
    /// Records the checksums of `data`, whole sectors from sector `first`,
    /// in the slot's checksums (`given`, the caller's, one per sector, or
    /// computed here), then writes it into the slot: checksummed before the
    /// copy into the page cache, the data is read from memory once more at
    /// most. On failure the caller drops `slot` (this write's copy of the
    /// chunk's slot data), checksums and all.
    fn checksum_and_write(&self, disk: &Disk, slot: &mut SlotData, first: u32, data: &[u8], given: Option<&[u32]>) -> Result<()> {
        let sector = self.config.sector_size as usize;
        let first = first as usize;
        let crcs = &mut slot.crcs[first..first + data.len() / sector];
        match given {
            Some(given) => crcs.copy_from_slice(given),
            None => crate::crc::sectors(data, sector, crcs),
        }
        disk.write_at(slot.slot.slot, (first * sector) as u64, data)
    }

    /// Writes the sectors of `runs` from `data` (which starts at sector
    /// `first`) into the chunk's current slot and records their checksums.
    fn write_runs(&self, chunk: &mut Chunk, runs: &SectorSet, first: u32, data: &[u8]) -> Result<()> {
        let sector = self.config.sector_size as usize;
        let disk = self.disk(chunk.current.slot.disk)?;
        for run in runs.runs() {
            let from = (run.start - first) as usize * sector;
            let bytes = &data[from..from + run.len() * sector];
            self.checksum_and_write(&disk, &mut chunk.current, run.start, bytes, None)?;
            chunk.current.valid.insert_range(run);
        }
        Ok(())
    }
}

/// A clean, empty chunk; a write then dirties it.
fn new_chunk(current: SlotData, epoch: u64) -> Chunk {
    Chunk {
        current,
        base: None,
        dirty: false,
        generation: 0,
        dirty_seq: 0,
        epoch,
        touched: epoch,
        last_access: 0,
        pins: 0,
    }
}
