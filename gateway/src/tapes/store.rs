//! The tape store: the book of tape records, the tapes whose data is in
//! the cache (each a [`CachedTape`]), and the library's element map on
//! disk. It is the [`MediaLibrary`] the changer and drives use; exports
//! it hears of go to the library's archive flow through a channel, so the
//! store never holds the changer (no reference cycle).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::mpsc;
use vtl::library::ElementMap;
use vtl::media::{LoadedMedium, MediaLibrary, TapeStoreError};

use super::cached_tape::CachedTape;
use super::records::{TapeBook, TapeError, TapeRecord, TapeState};
use crate::cached::Engine;

const ELEMENTS_FILE: &str = "library.json";
const INDEX_DIR: &str = "tapes";

pub struct TapeStore {
    data_dir: PathBuf,
    pub(crate) engine: Arc<Engine>,
    book: Mutex<TapeBook>,
    /// Tapes whose data is in the cache, by barcode.
    open: Mutex<HashMap<String, Arc<CachedTape>>>,
    exports: mpsc::UnboundedSender<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl TapeStore {
    /// Loads the book and opens every tape whose data is in the cache (the
    /// engine must know them all before it uploads anything of theirs).
    /// Exported barcodes arrive on the returned receiver.
    pub async fn open(
        data_dir: &Path,
        engine: Arc<Engine>,
    ) -> Result<(Arc<TapeStore>, mpsc::UnboundedReceiver<String>), TapeError> {
        std::fs::create_dir_all(data_dir.join(INDEX_DIR))?;
        let book = TapeBook::load(data_dir)?;
        let (exports, rx) = mpsc::unbounded_channel();
        let store = Arc::new(TapeStore {
            data_dir: data_dir.to_path_buf(),
            engine,
            book: Mutex::new(TapeBook::default()),
            open: Mutex::new(HashMap::new()),
            exports,
        });
        for r in book.tapes.iter().filter(|r| r.state.in_cache()) {
            store.open_tape(r).await?;
        }
        *lock(&store.book) = book;
        Ok((store, rx))
    }

    pub fn index_path(&self, id: u64) -> PathBuf {
        self.data_dir.join(INDEX_DIR).join(format!("{id:016x}.index"))
    }

    /// Opens a tape's cached data (idempotent).
    pub async fn open_tape(&self, r: &TapeRecord) -> Result<Arc<CachedTape>, TapeError> {
        if let Some(t) = self.tape(&r.barcode) {
            return Ok(t);
        }
        let (tape, _) = CachedTape::open(self.engine.clone(), r.id, &r.barcode, r.size_bytes, self.index_path(r.id))
            .await
            .map_err(|e| TapeError::Io(std::io::Error::other(e.to_string())))?;
        lock(&self.open).insert(r.barcode.clone(), tape.clone());
        Ok(tape)
    }

    pub fn tape(&self, barcode: &str) -> Option<Arc<CachedTape>> {
        lock(&self.open).get(barcode).cloned()
    }

    /// Drops a tape's data from the cache, its segment map and its local
    /// index (the tape left the library, or is deleted).
    pub async fn close_tape(&self, barcode: &str, id: u64) -> Result<(), TapeError> {
        lock(&self.open).remove(barcode);
        self.engine.unregister(id);
        self.engine.cache.discard(id, 0..u64::MAX).await.map_err(std::io::Error::other)?;
        let maps = self.engine.maps.clone();
        tokio::task::spawn_blocking(move || maps.delete_volume(id))
            .await
            .map_err(std::io::Error::other)?
            .map_err(std::io::Error::other)?;
        match std::fs::remove_file(self.index_path(id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub fn record(&self, barcode: &str) -> Option<TapeRecord> {
        lock(&self.book).get(barcode).cloned()
    }

    pub fn records(&self) -> Vec<TapeRecord> {
        lock(&self.book).tapes.clone()
    }

    /// Reads the book under its lock (validation of new barcodes).
    pub fn with_book<T>(&self, f: impl FnOnce(&TapeBook) -> T) -> T {
        f(&lock(&self.book))
    }

    /// Adds new tapes and marks their barcodes used, durably.
    pub fn add(&self, records: &[TapeRecord]) -> Result<(), TapeError> {
        let mut book = lock(&self.book);
        for r in records {
            book.check_new(&r.barcode)?;
        }
        let before = (book.tapes.len(), book.used_barcodes.clone());
        for r in records {
            book.used_barcodes.insert(r.barcode.clone());
            book.tapes.push(r.clone());
        }
        if let Err(e) = book.save(&self.data_dir) {
            book.tapes.truncate(before.0);
            book.used_barcodes = before.1;
            return Err(e);
        }
        Ok(())
    }

    /// Changes a record durably; returns it as saved.
    pub fn update(&self, barcode: &str, change: impl FnOnce(&mut TapeRecord)) -> Result<TapeRecord, TapeError> {
        let mut book = lock(&self.book);
        let r = book.get_mut(barcode).ok_or_else(|| TapeError::NotFound(barcode.to_owned()))?;
        let before = r.clone();
        change(r);
        let after = r.clone();
        if let Err(e) = book.save(&self.data_dir) {
            if let Some(r) = book.get_mut(barcode) {
                *r = before;
            }
            return Err(e);
        }
        Ok(after)
    }

    pub fn set_state(&self, barcode: &str, state: TapeState) -> Result<TapeRecord, TapeError> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let r = self.update(barcode, |r| {
            r.state = state;
            r.state_since_unix = now;
        })?;
        tracing::info!(barcode, state = state.name(), "tape state");
        Ok(r)
    }

    /// Removes a record; its barcode stays used.
    pub fn remove(&self, barcode: &str) -> Result<(), TapeError> {
        let mut book = lock(&self.book);
        let at = book.tapes.iter().position(|t| t.barcode == barcode).ok_or_else(|| TapeError::NotFound(barcode.into()))?;
        let removed = book.tapes.remove(at);
        if let Err(e) = book.save(&self.data_dir) {
            book.tapes.insert(at, removed);
            return Err(e);
        }
        Ok(())
    }

    /// The element map saved last (empty on a new gateway).
    pub fn load_elements(&self) -> Result<ElementMap, TapeError> {
        match std::fs::read(self.data_dir.join(ELEMENTS_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| TapeError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ElementMap::new()),
            Err(e) => Err(e.into()),
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> TapeStoreError {
    TapeStoreError::Io(e.to_string())
}

#[async_trait]
impl MediaLibrary for TapeStore {
    async fn open(&self, barcode: &str) -> Result<LoadedMedium, TapeStoreError> {
        let r = self.record(barcode).ok_or_else(|| TapeStoreError::Unavailable(format!("no tape {barcode}")))?;
        if !matches!(r.state, TapeState::Available | TapeState::Retrieved) {
            return Err(TapeStoreError::Unavailable(format!("tape {barcode} is {}", r.state.name())));
        }
        let tape = self.open_tape(&r).await.map_err(unavailable)?;
        Ok(LoadedMedium {
            barcode: r.barcode.clone(),
            capacity: r.size_bytes,
            write_protected: r.state == TapeState::Retrieved,
            worm: r.worm,
            index: tape.committed_index(),
            stream: tape,
        })
    }

    async fn release(&self, barcode: &str) -> Result<(), TapeStoreError> {
        let Some(tape) = self.tape(barcode) else { return Ok(()) };
        let used = tape.used_bytes();
        self.update(barcode, |r| r.used_bytes = used).map(|_| ()).map_err(unavailable)
    }

    async fn save_elements(&self, state: &ElementMap) -> Result<(), TapeStoreError> {
        let bytes = serde_json::to_vec_pretty(state).map_err(unavailable)?;
        let dir = self.data_dir.clone();
        tokio::task::spawn_blocking(move || crate::files::write_atomically(&dir, ELEMENTS_FILE, &bytes))
            .await
            .map_err(unavailable)?
            .map_err(unavailable)
    }

    async fn exported(&self, barcode: &str) {
        if self.exports.send(barcode.to_owned()).is_err() {
            tracing::warn!(barcode, "exported tape: the archive flow is not running; it resumes at the next start");
        }
    }
}
