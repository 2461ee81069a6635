//! Chunks whose cloud object cannot be read back: it fails verification
//! (a flipped byte fails authentication) or is missing from the bucket.
//!
//! Such a chunk is recorded on its volume when a read, an upload or a scrub
//! meets it. Reads of its sectors the cache does not hold fail with MEDIUM
//! ERROR; sectors written since are kept in the cache. While some of its
//! sectors are missing, the chunk cannot be uploaded (an upload stores
//! whole chunks): the engine *holds* it instead of retrying it, so the
//! other chunks go on uploading, and a recovery point that needs it fails
//! naming its range. Writing the whole chunk again, or unmapping it, ends
//! the damage: the chunk then uploads from the cache alone.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::cloud::ChunkId;

/// A damaged chunk as the API and `sgw volume show` report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DamagedChunk {
    /// The chunk's index in the volume.
    pub chunk: u64,
    /// The chunk's logical blocks (512 bytes), first and last inclusive.
    pub first_lba: u64,
    pub last_lba: u64,
    /// The cloud object the chunk map names (hex id).
    pub object: String,
    /// Why it cannot be read.
    pub error: String,
    /// Writes since the damage are kept in the cache but cannot be
    /// uploaded until the whole chunk is written again or unmapped.
    pub writes_held: bool,
}

/// The error a read or upload of a damaged chunk fails with; the engine
/// recognises it (through `io::Error::get_ref`) to hold the chunk instead
/// of retrying it.
#[derive(Debug, Clone)]
pub struct ChunkUnreadable {
    pub chunk: u64,
    pub object: ChunkId,
    pub reason: String,
}

impl fmt::Display for ChunkUnreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "chunk {} (object {}) cannot be read from the cloud: {}",
            self.chunk, self.object, self.reason
        )
    }
}

impl std::error::Error for ChunkUnreadable {}

/// Whether `e` says a chunk's cloud copy is damaged.
pub fn unreadable_chunk(e: &std::io::Error) -> Option<&ChunkUnreadable> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<ChunkUnreadable>())
}

#[derive(Debug, Clone)]
struct Entry {
    object: ChunkId,
    reason: String,
    held: bool,
}

/// The damaged chunks of one volume.
#[derive(Debug, Default)]
pub struct DamageRegistry {
    chunks: BTreeMap<u64, Entry>,
}

impl DamageRegistry {
    /// Records that chunk `index`'s object `object` cannot be read; true
    /// when this is news (the caller logs it once, not per attempt).
    pub fn record(&mut self, index: u64, object: ChunkId, reason: &str) -> bool {
        match self.chunks.get_mut(&index) {
            Some(e) if e.object == object => false,
            Some(e) => {
                e.object = object;
                e.reason = reason.to_owned();
                true
            }
            None => {
                self.chunks.insert(
                    index,
                    Entry {
                        object,
                        reason: reason.to_owned(),
                        held: false,
                    },
                );
                true
            }
        }
    }

    /// The engine holds the chunk's dirty data (it cannot be uploaded);
    /// false if the chunk is not recorded as damaged, so nothing would
    /// ever release it.
    pub fn hold(&mut self, index: u64) -> bool {
        self.chunks.get_mut(&index).map(|e| e.held = true).is_some()
    }

    pub fn is_held(&self, index: u64) -> bool {
        self.chunks.get(&index).is_some_and(|e| e.held)
    }

    /// The chunk no longer needs its damaged object (written whole, so it
    /// can upload): true if it was held, and must be handed back to the
    /// upload queue.
    pub fn release(&mut self, index: u64) -> bool {
        self.chunks
            .get_mut(&index)
            .is_some_and(|e| std::mem::replace(&mut e.held, false))
    }

    /// Forgets chunk `index` (a new object replaced it, or it was unmapped).
    pub fn clear(&mut self, index: u64) -> bool {
        self.chunks.remove(&index).is_some()
    }

    /// Forgets the entry for `index` if it names `object` and holds no
    /// writes: a scrub found that object readable after all.
    pub fn clear_if_readable(&mut self, index: u64, object: &ChunkId) -> bool {
        if self
            .chunks
            .get(&index)
            .is_some_and(|e| e.object == *object && !e.held)
        {
            self.chunks.remove(&index);
            return true;
        }
        false
    }

    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The damaged chunks in volume order, with their LBA ranges for
    /// chunks of `chunk_blocks` blocks in a volume of `volume_blocks`.
    pub fn report(&self, chunk_blocks: u64, volume_blocks: u64) -> Vec<DamagedChunk> {
        self.chunks
            .iter()
            .map(|(index, e)| {
                let first_lba = index * chunk_blocks;
                let last_lba = ((index + 1) * chunk_blocks)
                    .min(volume_blocks)
                    .saturating_sub(1)
                    .max(first_lba);
                DamagedChunk {
                    chunk: *index,
                    first_lba,
                    last_lba,
                    object: e.object.to_string(),
                    error: e.reason.clone(),
                    writes_held: e.held,
                }
            })
            .collect()
    }
}

/// "LBA a-b (chunk n, object x)" for each damaged chunk, for messages.
pub fn ranges_text(damaged: &[DamagedChunk]) -> String {
    damaged
        .iter()
        .map(|d| {
            format!(
                "LBA {}-{} (chunk {}, object {})",
                d.first_lba, d.last_lba, d.chunk, d.object
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> ChunkId {
        ChunkId([b; 32])
    }

    #[test]
    fn a_chunk_is_news_once_per_object() {
        let mut r = DamageRegistry::default();
        assert!(r.record(3, id(1), "failed authentication"));
        assert!(!r.record(3, id(1), "failed authentication"));
        assert!(
            r.record(3, id(2), "not found"),
            "another object for the same chunk is news"
        );
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn held_chunks_are_released_once_and_not_cleared_by_a_scrub() {
        let mut r = DamageRegistry::default();
        r.record(5, id(1), "bad");
        assert!(!r.is_held(5));
        assert!(r.hold(5));
        assert!(r.is_held(5));
        assert!(
            !r.clear_if_readable(5, &id(1)),
            "held writes keep the entry"
        );
        assert!(r.release(5));
        assert!(!r.release(5), "released once");
        assert!(r.clear_if_readable(5, &id(1)));
        assert!(r.is_empty());
    }

    #[test]
    fn holding_an_unknown_chunk_does_nothing() {
        let mut r = DamageRegistry::default();
        assert!(!r.hold(9));
        assert!(!r.is_held(9));
        assert!(r.is_empty());
    }

    #[test]
    fn report_gives_lba_ranges_and_clips_the_last_chunk() {
        let mut r = DamageRegistry::default();
        r.record(2, id(7), "failed authentication");
        r.record(0, id(8), "not found");
        // 1 MiB chunks of 512-byte blocks; a 2.5 MiB volume.
        let report = r.report(2048, 5120);
        assert_eq!(report.len(), 2);
        assert_eq!(
            (report[0].chunk, report[0].first_lba, report[0].last_lba),
            (0, 0, 2047)
        );
        assert_eq!(
            (report[1].chunk, report[1].first_lba, report[1].last_lba),
            (2, 4096, 5119)
        );
        assert_eq!(report[1].object, id(7).to_string());
        let text = ranges_text(&report);
        assert!(text.contains("LBA 4096-5119 (chunk 2"), "{text}");
    }

    #[test]
    fn the_engine_recognises_the_error() {
        let e = std::io::Error::other(ChunkUnreadable {
            chunk: 4,
            object: id(1),
            reason: "bad".into(),
        });
        assert_eq!(unreadable_chunk(&e).map(|u| u.chunk), Some(4));
        assert!(unreadable_chunk(&std::io::Error::other("something else")).is_none());
    }
}
