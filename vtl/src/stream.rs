//! Two [`TapeStream`]s for tests and for a one-box gateway: one in memory,
//! one in a directory (a sparse data file and an index file).
//!
//! `FileTapeStream` keeps the contract of [`TapeStream::commit`]: the data
//! file is fdatasync'ed before the index that points into it is written to
//! a temporary file, fsync'ed, renamed over the old index and the directory
//! fsync'ed. Opening the directory recovers the tape as of the last
//! completed commit and cuts off whatever was written after it.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;

use crate::format::TapeIndex;
use crate::media::{TapeStoreError, TapeStream};

/// A tape in memory. It remembers the last committed index, so tests can
/// check what a commit made durable.
#[derive(Debug, Default)]
pub struct MemTapeStream {
    state: Mutex<MemState>,
}

#[derive(Debug, Default)]
struct MemState {
    data: Vec<u8>,
    committed: TapeIndex,
    commits: u64,
}

impl MemTapeStream {
    pub fn new() -> MemTapeStream {
        MemTapeStream::default()
    }

    /// The index as of the last commit.
    pub fn committed_index(&self) -> TapeIndex {
        self.state.lock().committed.clone()
    }

    /// How many commits have run.
    pub fn commit_count(&self) -> u64 {
        self.state.lock().commits
    }

    /// Bytes the stream holds (written and not discarded).
    pub fn len(&self) -> u64 {
        self.state.lock().data.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn offset_to_usize(offset: u64) -> Result<usize, TapeStoreError> {
    usize::try_from(offset).map_err(|_| TapeStoreError::Io(format!("offset {offset} beyond memory")))
}

#[async_trait]
impl TapeStream for MemTapeStream {
    async fn write_at(&self, offset: u64, data: Bytes) -> Result<(), TapeStoreError> {
        let start = offset_to_usize(offset)?;
        let end = start.checked_add(data.len()).ok_or(TapeStoreError::Io("write past the address space".into()))?;
        let mut st = self.state.lock();
        if st.data.len() < end {
            st.data.resize(end, 0);
        }
        st.data[start..end].copy_from_slice(&data);
        Ok(())
    }

    async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes, TapeStoreError> {
        let start = offset_to_usize(offset)?;
        let st = self.state.lock();
        let bytes = start.checked_add(len).and_then(|end| st.data.get(start..end));
        bytes
            .map(Bytes::copy_from_slice)
            .ok_or_else(|| TapeStoreError::Corrupt(format!("{len} bytes at {offset} are not on the tape")))
    }

    async fn commit(&self, index: &TapeIndex) -> Result<(), TapeStoreError> {
        let mut st = self.state.lock();
        if (st.data.len() as u64) < index.data_end() {
            return Err(TapeStoreError::Corrupt("index points past the written data".into()));
        }
        st.committed = index.clone();
        st.commits += 1;
        Ok(())
    }

    async fn discard_from(&self, offset: u64) -> Result<(), TapeStoreError> {
        let at = offset_to_usize(offset)?;
        self.state.lock().data.truncate(at);
        Ok(())
    }
}

const DATA_FILE: &str = "data";
const INDEX_FILE: &str = "index";
const INDEX_TEMP: &str = "index.tmp";

/// A tape in a directory: `data` (the byte stream, sparse) and `index`.
#[derive(Debug)]
pub struct FileTapeStream {
    dir: PathBuf,
    data: Arc<File>,
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> TapeStoreError {
    TapeStoreError::Io(format!("{what} {}: {e}", path.display()))
}

impl FileTapeStream {
    /// Opens the tape in `dir`, creating an empty one if there is none, and
    /// recovers it to its last commit. Blocking: call it off the async
    /// threads (it runs when a tape is loaded, not per command).
    pub fn open(dir: &Path) -> Result<(FileTapeStream, TapeIndex), TapeStoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io_error("creating", dir, e))?;
        let index_path = dir.join(INDEX_FILE);
        let index = match std::fs::read(&index_path) {
            Ok(bytes) => TapeIndex::decode(&bytes)
                .map_err(|e| TapeStoreError::Corrupt(format!("{}: {e}", index_path.display())))?,
            Err(e) if e.kind() == ErrorKind::NotFound => TapeIndex::new(),
            Err(e) => return Err(io_error("reading", &index_path, e)),
        };
        let data_path = dir.join(DATA_FILE);
        let data = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&data_path)
            .map_err(|e| io_error("opening", &data_path, e))?;
        let len = data.metadata().map_err(|e| io_error("inspecting", &data_path, e))?.len();
        if len < index.data_end() {
            return Err(TapeStoreError::Corrupt(format!(
                "{} holds {len} bytes, its index needs {}",
                data_path.display(),
                index.data_end()
            )));
        }
        // Bytes written after the last commit are not part of the tape.
        data.set_len(index.data_end()).map_err(|e| io_error("truncating", &data_path, e))?;
        Ok((FileTapeStream { dir: dir.to_path_buf(), data: Arc::new(data) }, index))
    }

    fn data_path(&self) -> PathBuf {
        self.dir.join(DATA_FILE)
    }

    /// Writes the index next to the data: temp file, fsync, rename, fsync
    /// of the directory.
    fn replace_index(dir: &Path, encoded: &[u8]) -> Result<(), TapeStoreError> {
        let temp = dir.join(INDEX_TEMP);
        let mut f = File::create(&temp).map_err(|e| io_error("creating", &temp, e))?;
        f.write_all(encoded).map_err(|e| io_error("writing", &temp, e))?;
        f.sync_all().map_err(|e| io_error("syncing", &temp, e))?;
        let index = dir.join(INDEX_FILE);
        std::fs::rename(&temp, &index).map_err(|e| io_error("renaming", &index, e))?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error("syncing", dir, e))
    }
}

/// Runs blocking file work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, TapeStoreError> + Send + 'static,
) -> Result<T, TapeStoreError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| TapeStoreError::Io(format!("I/O task failed: {e}")))?
}

#[async_trait]
impl TapeStream for FileTapeStream {
    async fn write_at(&self, offset: u64, data: Bytes) -> Result<(), TapeStoreError> {
        let file = self.data.clone();
        let path = self.data_path();
        blocking(move || file.write_all_at(&data, offset).map_err(|e| io_error("writing", &path, e))).await
    }

    async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes, TapeStoreError> {
        let file = self.data.clone();
        let path = self.data_path();
        blocking(move || {
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, offset).map_err(|e| match e.kind() {
                ErrorKind::UnexpectedEof => {
                    TapeStoreError::Corrupt(format!("{}: {len} bytes at {offset} missing", path.display()))
                }
                _ => io_error("reading", &path, e),
            })?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn commit(&self, index: &TapeIndex) -> Result<(), TapeStoreError> {
        let file = self.data.clone();
        let dir = self.dir.clone();
        let path = self.data_path();
        let encoded = index.encode();
        blocking(move || {
            // The data the index points at is durable before the index is.
            file.sync_data().map_err(|e| io_error("syncing", &path, e))?;
            FileTapeStream::replace_index(&dir, &encoded)
        })
        .await
    }

    async fn discard_from(&self, offset: u64) -> Result<(), TapeStoreError> {
        let file = self.data.clone();
        let path = self.data_path();
        blocking(move || file.set_len(offset).map_err(|e| io_error("truncating", &path, e))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(idx: &mut TapeIndex, n: u64) {
        idx.append_records(4, n).unwrap();
    }

    #[tokio::test]
    async fn reopen_recovers_the_last_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (s, idx0) = FileTapeStream::open(dir.path()).unwrap();
        assert_eq!(idx0, TapeIndex::new());
        let mut idx = TapeIndex::new();
        s.write_at(0, Bytes::from_static(b"aaaabbbb")).await.unwrap();
        records(&mut idx, 2);
        idx.append_filemarks(1).unwrap();
        s.commit(&idx).await.unwrap();
        let committed = idx.clone();
        // More data, never committed: a crash here loses it.
        s.write_at(8, Bytes::from_static(b"ccccdddd")).await.unwrap();
        records(&mut idx, 2);
        drop(s);
        let (s, recovered) = FileTapeStream::open(dir.path()).unwrap();
        assert_eq!(recovered, committed);
        assert_eq!(s.read_at(0, 8).await.unwrap(), Bytes::from_static(b"aaaabbbb"));
        assert!(matches!(s.read_at(8, 4).await, Err(TapeStoreError::Corrupt(_))));
        assert_eq!(std::fs::metadata(dir.path().join(DATA_FILE)).unwrap().len(), 8);
        assert!(!dir.path().join(INDEX_TEMP).exists());
    }

    #[tokio::test]
    async fn damaged_index_is_corrupt_not_empty() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(INDEX_FILE), b"garbage").unwrap();
        assert!(matches!(FileTapeStream::open(dir.path()), Err(TapeStoreError::Corrupt(_))));
        let mut idx = TapeIndex::new();
        records(&mut idx, 1);
        std::fs::write(dir.path().join(INDEX_FILE), idx.encode()).unwrap();
        // The index needs 4 bytes the data file does not have.
        assert!(matches!(FileTapeStream::open(dir.path()), Err(TapeStoreError::Corrupt(_))));
    }

    #[tokio::test]
    async fn discard_releases_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = FileTapeStream::open(dir.path()).unwrap();
        s.write_at(0, Bytes::from(vec![7u8; 4096])).await.unwrap();
        s.discard_from(100).await.unwrap();
        assert_eq!(std::fs::metadata(dir.path().join(DATA_FILE)).unwrap().len(), 100);
    }

    #[tokio::test]
    async fn memory_stream_round_trip() {
        let s = MemTapeStream::new();
        s.write_at(4, Bytes::from_static(b"xy")).await.unwrap();
        assert_eq!(s.read_at(0, 6).await.unwrap(), Bytes::from_static(b"\0\0\0\0xy"));
        assert!(s.read_at(5, 2).await.is_err());
        let mut idx = TapeIndex::new();
        idx.append_records(6, 1).unwrap();
        s.commit(&idx).await.unwrap();
        assert_eq!(s.committed_index(), idx);
        idx.append_records(6, 1).unwrap();
        assert!(s.commit(&idx).await.is_err(), "commit of data never written");
        s.discard_from(2).await.unwrap();
        assert_eq!(s.len(), 2);
    }
}
