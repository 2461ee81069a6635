//! One virtual tape's storage: its byte stream in the cache, cut into
//! segments of one cache chunk each (cache namespace = the tape id), its
//! segment map (segment → cloud object, in the engine's `MapStore`), and
//! its index in a local file.
//!
//! - Writes go to the cache; the engine uploads dirty segments and calls
//!   [`ChunkOwner::record_uploads`], which records them in the map durably
//!   before the cache may consider them clean (as cached volumes do).
//! - Reads hit the cache, or fetch the segment the map names from the
//!   cloud (the codec verifies it) and fill the cache.
//! - A commit flushes the cache before it replaces the index file, so the
//!   index never points at data a crash could lose.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use cache::{ChunkId as CacheChunkId, ErrorKind as CacheErrorKind, ReadOutcome};
use vtl::format::TapeIndex;
use vtl::media::{TapeStoreError, TapeStream};

use crate::cached::engine::{ChunkOwner, Engine, Uploaded};
use crate::cached::map::{ChunkMap, ChunkRef};
use crate::cloud::{ChunkId, Namespace};

/// A write that meets a sector it covers only in part fills the segment
/// first and tries again; eviction in between can repeat that.
const WRITE_ATTEMPTS: usize = 4;

/// The cloud namespace of a tape: its own data key and objects.
pub fn tape_namespace(id: u64) -> Namespace {
    // 16 hex digits always satisfy the namespace rules.
    Namespace::new(&format!("tape-{id:016x}")).unwrap_or_else(|_| unreachable!("hex names are valid"))
}

pub struct CachedTape {
    id: u64,
    barcode: String,
    namespace: Namespace,
    engine: Arc<Engine>,
    chunk_size: u32,
    sector_size: u32,
    map: Mutex<ChunkMap>,
    index_path: PathBuf,
    /// Upload records and discards, one at a time, so that a discard always
    /// wins over an upload of data it released.
    commit: tokio::sync::Mutex<()>,
    /// The index as of the last commit.
    committed: Mutex<TapeIndex>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn cache_err(e: cache::Error) -> TapeStoreError {
    match e.kind() {
        CacheErrorKind::Corruption => TapeStoreError::Corrupt(e.to_string()),
        _ => TapeStoreError::Io(e.to_string()),
    }
}

fn to_io(e: TapeStoreError) -> io::Error {
    io::Error::other(e.to_string())
}

/// One segment's share of a byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Piece {
    index: u64,
    offset: u32,
    len: u32,
}

fn pieces(start: u64, len: u64, chunk: u32) -> Vec<Piece> {
    let chunk = u64::from(chunk);
    let end = start.saturating_add(len);
    let mut out = Vec::new();
    let mut pos = start;
    while pos < end {
        let offset = pos % chunk;
        let n = (chunk - offset).min(end - pos);
        out.push(Piece { index: pos / chunk, offset: offset as u32, len: n as u32 });
        pos += n;
    }
    out
}

impl CachedTape {
    /// Opens a tape: its map from the engine's map store, its index from
    /// `index_path` (empty if there is none yet). Data written after the
    /// last commit is released. Registers the tape with the engine.
    pub async fn open(
        engine: Arc<Engine>,
        id: u64,
        barcode: &str,
        capacity: u64,
        index_path: PathBuf,
    ) -> Result<(Arc<CachedTape>, TapeIndex), TapeStoreError> {
        let chunk_size = engine.cache.chunk_size();
        let chunks = capacity.div_ceil(u64::from(chunk_size));
        let maps = engine.maps.clone();
        let path = index_path.clone();
        let (map, index) = tokio::task::spawn_blocking(move || {
            let map = maps.load(id, chunks).map_err(|e| TapeStoreError::Io(e.to_string()))?;
            let index = match std::fs::read(&path) {
                Ok(bytes) => TapeIndex::decode(&bytes)
                    .map_err(|e| TapeStoreError::Corrupt(format!("{}: {e}", path.display())))?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => TapeIndex::new(),
                Err(e) => return Err(TapeStoreError::Io(format!("{}: {e}", path.display()))),
            };
            Ok((map, index))
        })
        .await
        .map_err(|e| TapeStoreError::Io(e.to_string()))??;
        let tape = Arc::new(CachedTape {
            id,
            barcode: barcode.to_owned(),
            namespace: tape_namespace(id),
            sector_size: engine.cache.sector_size(),
            engine: engine.clone(),
            chunk_size,
            map: Mutex::new(map),
            index_path,
            commit: tokio::sync::Mutex::new(()),
            committed: Mutex::new(index.clone()),
        });
        engine.register(tape.clone());
        tape.discard_from(index.data_end()).await?;
        Ok((tape, index))
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// The index as of the last commit.
    pub fn committed_index(&self) -> TapeIndex {
        lock(&self.committed).clone()
    }

    /// Bytes of data as of the last commit.
    pub fn used_bytes(&self) -> u64 {
        lock(&self.committed).data_end()
    }

    /// The segment map now.
    pub fn map(&self) -> ChunkMap {
        lock(&self.map).clone()
    }

    /// Whether every segment written is in the cloud and in the map.
    pub fn all_uploaded(&self) -> bool {
        self.engine.cache.unsynced_chunks(self.id).is_empty()
    }

    fn cache_id(&self, index: u64) -> CacheChunkId {
        CacheChunkId::new(self.id, index)
    }

    /// The segment as the cloud has it (zeros if it was never uploaded),
    /// and whether it came from the cloud.
    async fn fetch_base(&self, index: u64) -> Result<(Bytes, bool), TapeStoreError> {
        let r = lock(&self.map).get(index);
        let ChunkRef::Object(id) = r else {
            return Ok((Bytes::from(vec![0u8; self.chunk_size as usize]), false));
        };
        let data = self.engine.cloud.reader.read_chunk(&self.namespace, &id).await.map_err(|e| match e.kind() {
            crate::cloud::ErrorKind::Corrupt | crate::cloud::ErrorKind::Auth => {
                TapeStoreError::Corrupt(format!("tape {} segment {index}: {e}", self.barcode))
            }
            _ => TapeStoreError::Unavailable(format!("tape {} segment {index}: {e}", self.barcode)),
        })?;
        if data.len() != self.chunk_size as usize {
            return Err(TapeStoreError::Corrupt(format!("segment {index} has {} bytes", data.len())));
        }
        Ok((data, true))
    }

    /// The cached sectors of `outcome` (which covers `piece`) over `base`.
    fn merge(&self, piece: Piece, outcome: &ReadOutcome, base: &Bytes) -> Bytes {
        let mut out = BytesMut::with_capacity(piece.len as usize);
        let end = piece.offset + piece.len;
        let mut pos = piece.offset;
        while pos < end {
            let sector = pos / self.sector_size;
            let next = ((sector + 1) * self.sector_size).min(end);
            if outcome.valid.contains(sector) {
                out.extend_from_slice(&outcome.data[(pos - piece.offset) as usize..(next - piece.offset) as usize]);
            } else {
                out.extend_from_slice(&base[pos as usize..next as usize]);
            }
            pos = next;
        }
        out.freeze()
    }

    /// Reads a piece; returns it and the cache generation seen.
    async fn read_piece(&self, piece: Piece) -> Result<(Bytes, u64), TapeStoreError> {
        let id = self.cache_id(piece.index);
        let outcome = self.engine.cache.read(id, piece.offset, piece.len).await.map_err(cache_err)?;
        if outcome.complete {
            return Ok((outcome.data, outcome.generation));
        }
        let (base, from_cloud) = self.fetch_base(piece.index).await?;
        let data = self.merge(piece, &outcome, &base);
        if from_cloud {
            // Keeping it is an optimisation: a full cache only costs a refetch.
            let _ = self.engine.cache.fill(id, 0, base).await;
        }
        Ok((data, outcome.generation))
    }

    async fn write_piece(&self, piece: Piece, data: Bytes) -> Result<(), TapeStoreError> {
        let id = self.cache_id(piece.index);
        for _ in 0..WRITE_ATTEMPTS {
            match self.engine.cache.write(id, piece.offset, data.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == CacheErrorKind::InvalidInput => {
                    // A sector written in part must hold its old content
                    // (zeros on a fresh segment) first.
                    let (base, _) = self.fetch_base(piece.index).await?;
                    self.engine.cache.fill(id, 0, base).await.map_err(cache_err)?;
                }
                Err(e) => return Err(cache_err(e)),
            }
        }
        Err(TapeStoreError::Io(format!("segment {} kept being evicted during a partial write", piece.index)))
    }

    /// Records finished uploads: the map durably first, then the cache may
    /// call the segments clean. A discard that released a segment while it
    /// uploaded wins.
    async fn record(&self, done: &[Uploaded]) -> io::Result<()> {
        let _commit = self.commit.lock().await;
        let live: Vec<(u64, u64, ChunkRef)> = done
            .iter()
            .filter(|u| !self.engine.discarded_since(self.id, u.index, u.token))
            .filter(|u| self.engine.cache.lookup(self.cache_id(u.index)).is_some())
            .map(|u| (u.index, u.cache_generation, u.chunk))
            .collect();
        let entries: Vec<(u64, ChunkRef)> = live.iter().map(|(i, _, r)| (*i, *r)).collect();
        self.persist_map(entries.clone()).await?;
        {
            let mut map = lock(&self.map);
            for (index, r) in &entries {
                map.set(*index, *r);
            }
        }
        for (index, generation, _) in &live {
            self.engine
                .cache
                .mark_uploaded(self.cache_id(*index), *generation)
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        Ok(())
    }

    async fn persist_map(&self, entries: Vec<(u64, ChunkRef)>) -> io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let maps = self.engine.maps.clone();
        let id = self.id;
        tokio::task::spawn_blocking(move || maps.apply(id, &entries))
            .await
            .map_err(io::Error::other)?
            .map_err(io::Error::other)
    }
}

#[async_trait]
impl ChunkOwner for CachedTape {
    fn id(&self) -> u64 {
        self.id
    }

    /// A tape is a family of its own: nothing is cloned from tapes.
    fn family(&self) -> u64 {
        self.id
    }

    fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    fn name(&self) -> &str {
        &self.barcode
    }

    async fn read_whole_chunk(&self, index: u64) -> io::Result<(Bytes, u64)> {
        self.read_piece(Piece { index, offset: 0, len: self.chunk_size }).await.map_err(to_io)
    }

    async fn record_uploads(&self, done: &[Uploaded]) -> io::Result<()> {
        self.record(done).await
    }
}

#[async_trait]
impl TapeStream for CachedTape {
    async fn write_at(&self, offset: u64, data: Bytes) -> Result<(), TapeStoreError> {
        // The next filemark commits these records: their writeback can
        // overlap the writing instead of waiting for that flush.
        self.engine.cache.expect_flush();
        let mut at = 0usize;
        for p in pieces(offset, data.len() as u64, self.chunk_size) {
            let part = data.slice(at..at + p.len as usize);
            at += p.len as usize;
            self.write_piece(p, part).await?;
        }
        // Uploads follow when writes pause (write-behind); the archive
        // flow wakes the feeder when it waits for them.
        self.engine.note_write();
        Ok(())
    }

    async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes, TapeStoreError> {
        let parts = pieces(offset, len as u64, self.chunk_size);
        if let [one] = parts.as_slice() {
            return Ok(self.read_piece(*one).await?.0);
        }
        let mut out = BytesMut::with_capacity(len);
        for p in parts {
            out.extend_from_slice(&self.read_piece(p).await?.0);
        }
        Ok(out.freeze())
    }

    async fn commit(&self, index: &TapeIndex) -> Result<(), TapeStoreError> {
        // The data the index points at is durable before the index is.
        self.engine.cache.flush().await.map_err(cache_err)?;
        let encoded = index.encode();
        let path = self.index_path.clone();
        tokio::task::spawn_blocking(move || {
            let dir = path.parent().ok_or_else(|| io::Error::other("index path has no directory"))?;
            let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| io::Error::other("bad index name"))?;
            crate::files::write_atomically(dir, name, &encoded)
        })
        .await
        .map_err(|e| TapeStoreError::Io(e.to_string()))?
        .map_err(|e| TapeStoreError::Io(format!("{}: {e}", self.index_path.display())))?;
        *lock(&self.committed) = index.clone();
        Ok(())
    }

    async fn discard_from(&self, offset: u64) -> Result<(), TapeStoreError> {
        let first = offset.div_ceil(u64::from(self.chunk_size));
        let _commit = self.commit.lock().await;
        self.engine.note_discard(self.id, first..u64::MAX);
        self.engine.cache.discard(self.id, first..u64::MAX).await.map_err(cache_err)?;
        let entries: Vec<(u64, ChunkRef)> =
            lock(&self.map).mapped().filter(|(i, _)| *i >= first).map(|(i, _)| (i, ChunkRef::Zero)).collect();
        self.persist_map(entries.clone()).await.map_err(|e| TapeStoreError::Io(e.to_string()))?;
        let mut map = lock(&self.map);
        for (index, r) in entries {
            map.set(index, r);
        }
        Ok(())
    }
}

/// Every object the map references: the tape's segments.
pub fn segment_objects(map: &ChunkMap) -> Vec<ChunkId> {
    let mut ids: Vec<ChunkId> = map.objects().collect();
    ids.sort_unstable_by_key(|id| *id.as_bytes());
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_split_at_segment_boundaries() {
        let p = pieces(1000, 3000, 1024);
        assert_eq!(p.len(), 4);
        assert_eq!(p[0], Piece { index: 0, offset: 1000, len: 24 });
        assert_eq!(p[3], Piece { index: 3, offset: 0, len: 928 });
        assert_eq!(p.iter().map(|p| u64::from(p.len)).sum::<u64>(), 3000);
        assert!(pieces(5, 0, 1024).is_empty());
    }
}
