//! The chunk map of a cached volume: chunk index → where its content is in
//! the cloud. Kept in memory as copy-on-write pages (a recovery point keeps
//! the pages of its instant for the price of an `Arc` clone each) and
//! persisted locally in RocksDB, so that a chunk the cache evicts after its
//! upload is never read from an older version after a restart.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{Options, WriteBatch, WriteOptions, DB};

use crate::cloud::ChunkId;

/// Entries per manifest page: 1024 chunks of 1 MiB cover 1 GiB.
pub const PAGE_ENTRIES: usize = 1024;

/// Where one chunk's content is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChunkRef {
    /// All zeros: never written, unmapped, or written with zeros.
    Zero,
    /// An object in the volume's namespace.
    Object(ChunkId),
}

type Page = [ChunkRef; PAGE_ENTRIES];

/// Copy-on-write pages of chunk refs. Absent pages are all zero.
#[derive(Clone, Default)]
pub struct ChunkMap {
    pages: Vec<Option<Arc<Page>>>,
}

impl ChunkMap {
    pub fn new(chunks: u64) -> ChunkMap {
        ChunkMap { pages: vec![None; page_count(chunks)] }
    }

    pub fn chunks_capacity(&self) -> u64 {
        (self.pages.len() * PAGE_ENTRIES) as u64
    }

    pub fn get(&self, index: u64) -> ChunkRef {
        let (p, e) = split(index);
        match self.pages.get(p) {
            Some(Some(page)) => page[e],
            _ => ChunkRef::Zero,
        }
    }

    /// Sets one entry; returns the previous one.
    pub fn set(&mut self, index: u64, r: ChunkRef) -> ChunkRef {
        let (p, e) = split(index);
        if p >= self.pages.len() {
            if r == ChunkRef::Zero {
                return ChunkRef::Zero;
            }
            self.pages.resize(p + 1, None);
        }
        let slot = &mut self.pages[p];
        if slot.is_none() {
            if r == ChunkRef::Zero {
                return ChunkRef::Zero;
            }
            *slot = Some(Arc::new([ChunkRef::Zero; PAGE_ENTRIES]));
        }
        let page = slot.as_mut().map(Arc::make_mut);
        match page {
            Some(page) => std::mem::replace(&mut page[e], r),
            None => ChunkRef::Zero,
        }
    }

    /// Grows the map to cover `chunks` (a volume resized by a clone).
    pub fn grow(&mut self, chunks: u64) {
        let n = page_count(chunks);
        if n > self.pages.len() {
            self.pages.resize(n, None);
        }
    }

    pub fn page_count(&self) -> usize {
        self.pages.len()
    }

    /// Page `p`, or `None` when it is all zeros.
    pub fn page(&self, p: usize) -> Option<&Arc<Page>> {
        self.pages.get(p).and_then(Option::as_ref)
    }

    /// Installs a whole page (loading a manifest).
    pub fn set_page(&mut self, p: usize, page: Option<Arc<Page>>) {
        if p >= self.pages.len() {
            self.pages.resize(p + 1, None);
        }
        self.pages[p] = page;
    }

    /// Every object the map references.
    pub fn objects(&self) -> impl Iterator<Item = ChunkId> + '_ {
        self.pages.iter().flatten().flat_map(|p| p.iter()).filter_map(|r| match r {
            ChunkRef::Object(id) => Some(*id),
            ChunkRef::Zero => None,
        })
    }

    /// Indexes with an object, in order.
    pub fn mapped(&self) -> impl Iterator<Item = (u64, ChunkId)> + '_ {
        self.pages.iter().enumerate().filter_map(|(p, page)| page.as_ref().map(|pg| (p, pg))).flat_map(|(p, page)| {
            page.iter().enumerate().filter_map(move |(e, r)| match r {
                ChunkRef::Object(id) => Some(((p * PAGE_ENTRIES + e) as u64, *id)),
                ChunkRef::Zero => None,
            })
        })
    }

    /// Takes `other`'s allocation for every page with equal content, so
    /// that a map loaded from disk and a manifest loaded from the cloud
    /// share what did not change (a later manifest reuses those pages).
    pub fn share_equal_pages(&mut self, other: &ChunkMap) {
        for p in 0..self.pages.len().min(other.pages.len()) {
            let equal = match (&self.pages[p], &other.pages[p]) {
                (Some(a), Some(b)) => a[..] == b[..],
                (None, None) => false,
                (None, Some(b)) => b.iter().all(|r| *r == ChunkRef::Zero),
                (Some(a), None) => a.iter().all(|r| *r == ChunkRef::Zero),
            };
            if equal {
                self.pages[p] = other.pages[p].clone();
            }
        }
    }

    /// Whether page `p` is the same allocation in both maps (unchanged since
    /// `other` was cloned from this map or the reverse).
    pub fn same_page(&self, other: &ChunkMap, p: usize) -> bool {
        match (self.page(p), other.page(p)) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

fn page_count(chunks: u64) -> usize {
    chunks.div_ceil(PAGE_ENTRIES as u64) as usize
}

fn split(index: u64) -> (usize, usize) {
    ((index / PAGE_ENTRIES as u64) as usize, (index % PAGE_ENTRIES as u64) as usize)
}

/// Maps of every cached volume, durable in one RocksDB.
/// Key: volume id, chunk index (big-endian). Value: empty for zero, or the
/// 32-byte object id. Only entries that are not zero are stored.
pub struct MapStore {
    db: DB,
}

#[derive(Debug, thiserror::Error)]
#[error("chunk map store: {0}")]
pub struct MapStoreError(String);

impl From<rocksdb::Error> for MapStoreError {
    fn from(e: rocksdb::Error) -> Self {
        MapStoreError(e.to_string())
    }
}

fn key(volume: u64, index: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&volume.to_be_bytes());
    k[8..].copy_from_slice(&index.to_be_bytes());
    k
}

impl MapStore {
    pub fn open(dir: &Path) -> Result<MapStore, MapStoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        Ok(MapStore { db: DB::open(&opts, dir)? })
    }

    /// Loads a volume's map.
    pub fn load(&self, volume: u64, chunks: u64) -> Result<ChunkMap, MapStoreError> {
        let mut map = ChunkMap::new(chunks);
        let start = key(volume, 0);
        let iter = self.db.iterator(rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward));
        for item in iter {
            let (k, v) = item?;
            if k.len() != 16 || k[..8] != volume.to_be_bytes() {
                break;
            }
            let mut idx = [0u8; 8];
            idx.copy_from_slice(&k[8..]);
            let id: [u8; 32] =
                v.as_ref().try_into().map_err(|_| MapStoreError(format!("bad entry for volume {volume:x}")))?;
            map.set(u64::from_be_bytes(idx), ChunkRef::Object(ChunkId(id)));
        }
        Ok(map)
    }

    /// Applies entries durably (one synced batch).
    pub fn apply(&self, volume: u64, entries: &[(u64, ChunkRef)]) -> Result<(), MapStoreError> {
        let mut batch = WriteBatch::default();
        for (index, r) in entries {
            match r {
                ChunkRef::Zero => batch.delete(key(volume, *index)),
                ChunkRef::Object(id) => batch.put(key(volume, *index), id.as_bytes()),
            }
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        Ok(self.db.write_opt(batch, &opts)?)
    }

    /// Replaces a volume's whole map (a clone, a recovery).
    pub fn replace(&self, volume: u64, map: &ChunkMap) -> Result<(), MapStoreError> {
        self.delete_volume(volume)?;
        let entries: Vec<(u64, ChunkRef)> = map.mapped().map(|(i, id)| (i, ChunkRef::Object(id))).collect();
        for part in entries.chunks(65_536) {
            self.apply(volume, part)?;
        }
        Ok(())
    }

    pub fn delete_volume(&self, volume: u64) -> Result<(), MapStoreError> {
        let mut batch = WriteBatch::default();
        // Volume ids are below 2^60, so `volume + 1` never wraps.
        batch.delete_range(key(volume, 0), key(volume + 1, 0));
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        Ok(self.db.write_opt(batch, &opts)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ChunkRef {
        ChunkRef::Object(ChunkId([n; 32]))
    }

    #[test]
    fn pages_are_copied_on_write() {
        let mut m = ChunkMap::new(3000);
        assert_eq!(m.page_count(), 3);
        m.set(5, id(1));
        let snapshot = m.clone();
        assert!(m.same_page(&snapshot, 0));
        m.set(6, id(2));
        assert!(!m.same_page(&snapshot, 0));
        assert!(m.same_page(&snapshot, 1));
        assert_eq!(snapshot.get(6), ChunkRef::Zero);
        assert_eq!(m.get(6), id(2));
        assert_eq!(m.mapped().count(), 2);
        assert_eq!(m.set(5, ChunkRef::Zero), id(1));
        assert_eq!(m.objects().count(), 1);
    }

    #[test]
    fn store_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = MapStore::open(dir.path()).unwrap();
        s.apply(7, &[(0, id(1)), (4000, id(2))]).unwrap();
        s.apply(8, &[(1, id(3))]).unwrap();
        s.apply(7, &[(0, ChunkRef::Zero)]).unwrap();
        let m = s.load(7, 5000).unwrap();
        assert_eq!(m.get(0), ChunkRef::Zero);
        assert_eq!(m.get(4000), id(2));
        assert_eq!(m.get(1), ChunkRef::Zero);
        s.delete_volume(7).unwrap();
        assert_eq!(s.load(7, 5000).unwrap().mapped().count(), 0);
        assert_eq!(s.load(8, 10).unwrap().get(1), id(3));
    }
}
