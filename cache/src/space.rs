//! Slot allocation, eviction and the dirty-bytes accounting behind
//! back-pressure.
//!
//! A slot is reused only after the index record that pointed at it was
//! deleted with a synced write: after power loss an older record can then
//! never point at another chunk's data.

use std::sync::Arc;

use crate::cache::{may_block, Cell, Inner, State};
use crate::config::DiskSpec;
use crate::disk::{Disk, SlotRef};
use crate::error::{Error, Result};
use crate::index::{Batch, DiskRecord};
use crate::types::ChunkId;

impl State {
    pub fn pop_free(&mut self) -> Option<SlotRef> {
        // The disk with the most free slots spreads load across disks.
        let (disk, slots) = self.free.iter_mut().enumerate().max_by_key(|(_, slots)| slots.len())?;
        let slot = slots.pop()?;
        self.free_slots -= 1;
        Some(SlotRef { disk: disk as u32, slot })
    }

    pub fn release_slot(&mut self, slot: SlotRef) {
        if let Some(free) = self.free.get_mut(slot.disk as usize) {
            free.push(slot.slot);
            self.free_slots += 1;
        }
    }

    /// Takes `slots` dirty slots if the high watermark allows.
    pub fn admit_dirty(&mut self, slots: u64, high: u64) -> bool {
        if slots == 0 {
            return true;
        }
        if self.throttling || self.dirty_slots + slots > high {
            self.throttling = true;
            return false;
        }
        self.dirty_slots += slots;
        true
    }

    /// Gives back dirty slots; true when waiting writers should wake.
    pub fn release_dirty(&mut self, slots: u64, low: u64) -> bool {
        self.dirty_slots = self.dirty_slots.saturating_sub(slots);
        if self.throttling && self.dirty_slots <= low {
            self.throttling = false;
            return true;
        }
        false
    }

    /// Tracks a chunk in the eviction policy when it may be evicted.
    pub fn track_evictable(&mut self, id: ChunkId, evictable: bool) {
        if evictable {
            self.policy.insert(id);
        } else {
            self.policy.remove(&id);
        }
    }
}

impl Inner {
    pub fn high_slots(&self) -> u64 {
        self.config.dirty_high_watermark / self.chunk_bytes()
    }

    pub fn low_slots(&self) -> u64 {
        self.config.dirty_low_watermark / self.chunk_bytes()
    }

    /// Changes the dirty slot count by `after - before` for a chunk whose
    /// reservation was already taken (never grows it), waking writers.
    pub fn settle_dirty(&self, state: &mut State, before: u64, after: u64) {
        if after < before && state.release_dirty(before - after, self.low_slots()) {
            self.space.notify_waiters();
        }
        self.publish(state);
    }

    /// A free slot, evicting a batch of clean chunks if there is none.
    /// Called with the writer's chunk locked: victims are only try-locked.
    pub fn allocate(&self) -> Result<SlotRef> {
        loop {
            {
                let mut state = self.state.lock();
                if let Some(slot) = state.pop_free() {
                    self.publish(&state);
                    return Ok(slot);
                }
            }
            // Eviction commits a synced index batch.
            if may_block(|| self.evict(self.config.eviction_batch))?.is_empty() {
                return Err(Error::NoSpace);
            }
        }
    }

    /// Evicts up to `max` chunks: forgets them in memory, deletes their
    /// records with one synced write, then frees their slots.
    pub fn evict(&self, max: usize) -> Result<Vec<ChunkId>> {
        self.check_healthy()?;
        let mut victims = Vec::new();
        let mut busy = Vec::new();
        {
            let mut state = self.state.lock();
            while victims.len() < max {
                let Some(id) = state.policy.pop_victim() else { break };
                let Some(cell) = state.chunks.get(&id).cloned() else { continue };
                // Lock order is cell then state: only try here.
                let Some(mut guard) = cell.try_lock_arc() else {
                    busy.push(id);
                    continue;
                };
                match &*guard {
                    Cell::Present(chunk) if chunk.evictable() => {
                        victims.push((id, chunk.current.slot));
                        *guard = Cell::Removed;
                        state.chunks.remove(&id);
                    }
                    _ => {}
                }
            }
            for id in busy {
                state.policy.insert(id);
            }
        }
        if victims.is_empty() {
            return Ok(Vec::new());
        }
        let mut batch = Batch::default();
        for (id, _) in &victims {
            self.index.batch_delete_chunk(&mut batch, *id)?;
        }
        // On failure the victims' records stay in the index, naming their
        // slots: those stay taken until a restart, which finds the chunks
        // again (clean, so nothing is lost).
        self.commit_index(batch)?;
        let mut state = self.state.lock();
        for (_, slot) in &victims {
            state.release_slot(*slot);
        }
        self.metrics.evictions.inc_by(victims.len() as u64);
        self.publish(&state);
        Ok(victims.into_iter().map(|(id, _)| id).collect())
    }

    pub fn discard(&self, namespace: u64, indexes: std::ops::Range<u64>) -> Result<()> {
        self.check_healthy()?;
        let ids: Vec<ChunkId> = {
            let state = self.state.lock();
            state
                .chunks
                .range(ChunkId::new(namespace, indexes.start)..ChunkId::new(namespace, indexes.end))
                .map(|(id, _)| *id)
                .collect()
        };
        let mut batch = Batch::default();
        let mut freed = Vec::new();
        for id in ids {
            let Some(mut guard) = self.lock_cell(id, false) else { continue };
            let Cell::Present(chunk) = std::mem::replace(&mut *guard, Cell::Removed) else {
                self.remove_cell(&mut guard, id);
                continue;
            };
            self.index.batch_delete_chunk(&mut batch, id)?;
            freed.push(chunk.current.slot);
            freed.extend(chunk.base.as_ref().map(|b| b.slot));
            let mut state = self.state.lock();
            state.chunks.remove(&id);
            // A clean chunk keeps the sequence number it was last dirty
            // under, which a dirty chunk may have been given since (after a
            // reopen): only this chunk's own queue entry goes.
            if state.dirty_queue.get(&chunk.dirty_seq) == Some(&id) {
                state.dirty_queue.remove(&chunk.dirty_seq);
            }
            state.uploading.remove(&id);
            state.pending_merge.remove(&id);
            state.policy.remove(&id);
            self.settle_dirty(&mut state, chunk.dirty_slots(), 0);
        }
        if freed.is_empty() {
            return Ok(());
        }
        // On failure, as for eviction, the slots stay taken while records
        // may name them. The discard failed, so the data may come back
        // after a restart, which a failed UNMAP allows.
        self.commit_index(batch)?;
        let mut state = self.state.lock();
        for slot in freed {
            state.release_slot(slot);
        }
        self.publish(&state);
        Ok(())
    }

    pub fn add_disk(&self, spec: &DiskSpec) -> Result<()> {
        self.check_healthy()?;
        let mut disks = self.disks.write();
        if disks.iter().any(|d| d.path == spec.path) {
            return Err(Error::Invalid(format!("{} is already a cache disk", spec.path.display())));
        }
        let disk_id = disks.len() as u32;
        let disk = Disk::create(&spec.path, spec.size_bytes, self.cache_id, disk_id, self.config.chunk_size, self.config.io_faults.clone())?;
        self.index.add_disk(&DiskRecord { identity: disk.identity, path: spec.path.clone() })?;
        let slots = disk.identity.slots;
        disks.push(Arc::new(disk));
        let mut state = self.state.lock();
        // Pop order is the reverse: hand out low slots first.
        state.free.push((0..slots).rev().collect());
        state.free_slots += u64::from(slots);
        state.total_slots += u64::from(slots);
        let total = state.total_slots as usize;
        state.policy.set_capacity(total);
        self.publish(&state);
        tracing::info!(path = %spec.path.display(), slots, "cache disk added");
        Ok(())
    }
}
