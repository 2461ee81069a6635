//! The public value types of the cache API.

use bytes::Bytes;

use crate::sectors::SectorSet;

/// A chunk's identity: a namespace (a volume, a tape…) and the chunk's
/// number inside it (chunk index of a volume, segment number of a tape).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChunkId {
    pub namespace: u64,
    pub index: u64,
}

impl ChunkId {
    pub fn new(namespace: u64, index: u64) -> Self {
        ChunkId { namespace, index }
    }
}

impl std::fmt::Display for ChunkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "chunk {}/{}", self.namespace, self.index)
    }
}

/// Where a chunk stands with respect to the backing store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkState {
    /// The cache holds nothing the backing store lacks: evictable.
    Clean,
    /// Written since its last upload; waiting in the upload queue.
    Dirty,
    /// Handed to the uploader by [`crate::Cache::dirty_batch`].
    Uploading,
}

/// What [`crate::Cache::lookup`] tells about a cached chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkInfo {
    pub state: ChunkState,
    /// Bumped by every write: the uploader ships a generation.
    pub generation: u64,
    /// Sectors holding data; the rest must come from the backing store.
    pub valid: SectorSet,
    pub pinned: bool,
}

/// The result of a read: the bytes asked for, with zeros where the cache
/// holds nothing, and which of the covered sectors are valid.
#[derive(Debug, Clone)]
pub struct ReadOutcome {
    pub data: Bytes,
    /// Validity of the chunk's sectors overlapping the range read (sectors
    /// outside the range are reported absent).
    pub valid: SectorSet,
    /// The chunk's generation when read; 0 if not cached.
    pub generation: u64,
    /// Whether every byte read came from valid sectors (a cache hit).
    pub complete: bool,
}

/// A chunk handed to the uploader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirtyChunk {
    pub id: ChunkId,
    pub generation: u64,
}

/// Capacity accounting, in bytes of slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    /// Slots holding data the backing store lacks (dirty chunks, and the
    /// copy-on-write base slots awaiting the next flush).
    pub dirty_bytes: u64,
    /// Bytes of the dirty chunks themselves: what the uploader has left to
    /// ship. Unlike `dirty_bytes`, no base slots, which only a flush frees.
    pub upload_backlog_bytes: u64,
    pub free_bytes: u64,
}
