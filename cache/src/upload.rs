//! The uploader's side: the dirty queue, upload states and pins.

use crate::cache::{Cell, Inner};
use crate::error::Result;
use crate::types::{ChunkId, DirtyChunk};

impl Inner {
    pub fn dirty_batch(&self, max: usize) -> Vec<DirtyChunk> {
        let picked: Vec<(u64, ChunkId)> = {
            let mut state = self.state.lock();
            let picked: Vec<_> = state.dirty_queue.iter().take(max).map(|(seq, id)| (*seq, *id)).collect();
            for (seq, id) in &picked {
                state.dirty_queue.remove(seq);
                state.uploading.insert(*id, *seq);
            }
            picked
        };
        // Generations are read under each chunk's lock (lock order is cell
        // then state); a chunk discarded meanwhile is skipped.
        picked
            .into_iter()
            .filter_map(|(_, id)| {
                let guard = self.lock_cell(id, false)?;
                match &*guard {
                    Cell::Present(chunk) => Some(DirtyChunk { id, generation: chunk.generation }),
                    _ => None,
                }
            })
            .collect()
    }

    pub fn unsynced_chunks(&self, namespace: u64) -> Vec<DirtyChunk> {
        let ids: Vec<ChunkId> = {
            let state = self.state.lock();
            let in_ns = |id: &ChunkId| id.namespace == namespace;
            state.dirty_queue.values().copied().filter(in_ns).chain(state.uploading.keys().copied().filter(in_ns)).collect()
        };
        // Lock order is cell then state, so generations are read after the
        // state lock is released.
        ids.into_iter()
            .filter_map(|id| {
                let guard = self.lock_cell(id, false)?;
                match &*guard {
                    Cell::Present(chunk) if chunk.dirty => Some(DirtyChunk { id, generation: chunk.generation }),
                    _ => None,
                }
            })
            .collect()
    }

    pub fn mark_uploaded(&self, id: ChunkId, generation: u64) -> Result<bool> {
        self.check_healthy()?;
        let Some(mut guard) = self.lock_cell(id, false) else { return Ok(false) };
        let Cell::Present(chunk) = &mut *guard else { return Ok(false) };
        let mut state = self.state.lock();
        let seq = state.uploading.remove(&id);
        if !chunk.dirty {
            return Ok(chunk.generation == generation);
        }
        if chunk.generation != generation {
            // Rewritten during the upload: back in the queue, in its place.
            if let Some(seq) = seq {
                state.dirty_queue.insert(seq, id);
            }
            return Ok(false);
        }
        if state.dirty_queue.get(&chunk.dirty_seq) == Some(&id) {
            state.dirty_queue.remove(&chunk.dirty_seq);
        }
        let before = chunk.dirty_slots();
        chunk.dirty = false;
        state.track_evictable(id, chunk.evictable());
        self.settle_dirty(&mut state, before, chunk.dirty_slots());
        // Recorded by the next flush: a crash before it only means
        // uploading the chunk again.
        state.changed.insert(id);
        Ok(true)
    }

    pub fn abandon_upload(&self, id: ChunkId) {
        let mut state = self.state.lock();
        if let Some(seq) = state.uploading.remove(&id) {
            state.dirty_queue.insert(seq, id);
        }
    }

    pub fn pin(&self, id: ChunkId) -> bool {
        let Some(mut guard) = self.lock_cell(id, false) else { return false };
        let Cell::Present(chunk) = &mut *guard else { return false };
        chunk.pins += 1;
        self.state.lock().policy.remove(&id);
        true
    }

    pub fn unpin(&self, id: ChunkId) {
        let Some(mut guard) = self.lock_cell(id, false) else { return };
        let Cell::Present(chunk) = &mut *guard else { return };
        chunk.pins = chunk.pins.saturating_sub(1);
        let evictable = chunk.evictable();
        self.state.lock().track_evictable(id, evictable);
    }
}
