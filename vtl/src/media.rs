//! What the library's devices need from the rest of the gateway: the
//! contract between the changer, the drives and the tape store that
//! `gateway` implements (DESIGN.md §2: `vtl` knows nothing of S3 or the
//! cache).
//!
//! A tape's data is one byte stream (the concatenation of its records) plus
//! a [`crate::format::TapeIndex`] that says where each record and filemark
//! sits in it. The store keeps the stream in fixed-size segments; the
//! drive only sees byte offsets.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use iscsi_target::scsi::Sense;

/// Errors from a tape store. The drive maps them to sense (MEDIUM ERROR,
/// HARDWARE ERROR); they never reach the transport.
#[derive(Debug, thiserror::Error)]
pub enum TapeStoreError {
    #[error("tape data unavailable: {0}")]
    Unavailable(String),
    #[error("tape data corrupt: {0}")]
    Corrupt(String),
    #[error("tape store I/O: {0}")]
    Io(String),
}

/// One virtual tape's storage, as a loaded drive uses it.
#[async_trait]
pub trait TapeStream: Send + Sync {
    /// Writes `data` at byte `offset` of the stream. Writes are
    /// sequential in practice, but the stream does not require it.
    async fn write_at(&self, offset: u64, data: Bytes) -> Result<(), TapeStoreError>;
    /// Reads exactly `len` bytes at `offset` (the index says they exist).
    async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes, TapeStoreError>;
    /// Makes the stream up to `index.data_end()` durable, then the index
    /// with it, atomically: after a crash the tape reads back as of the last
    /// completed commit. Called on WRITE FILEMARKS, on a flush-type request
    /// (WRITE FILEMARKS 0), on REWIND/UNLOAD after writing, and so on.
    async fn commit(&self, index: &crate::format::TapeIndex) -> Result<(), TapeStoreError>;
    /// Bytes past `offset` are no longer part of the tape (an overwrite in
    /// the middle, ERASE): the store may release them. The drive calls it
    /// only after committing an index that ends at `offset`, and before
    /// writing there again, so no committed index ever points at released
    /// or rewritten bytes.
    async fn discard_from(&self, offset: u64) -> Result<(), TapeStoreError>;
}

/// A tape as a drive holds it.
#[derive(Clone)]
pub struct LoadedMedium {
    pub barcode: String,
    /// Native capacity in bytes; early warning sits a little before it.
    pub capacity: u64,
    /// Retrieved tapes are read-only.
    pub write_protected: bool,
    /// Write once, read many: appends only, never overwrites.
    pub worm: bool,
    /// The index as of the last commit.
    pub index: crate::format::TapeIndex,
    pub stream: Arc<dyn TapeStream>,
}

impl std::fmt::Debug for LoadedMedium {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedMedium")
            .field("barcode", &self.barcode)
            .field("capacity", &self.capacity)
            .field("write_protected", &self.write_protected)
            .field("worm", &self.worm)
            .finish_non_exhaustive()
    }
}

/// The gateway's side of the library: opens tapes for drives, and hears
/// about changes the changer makes.
#[async_trait]
pub trait MediaLibrary: Send + Sync {
    /// Opens the tape with this barcode for a drive.
    async fn open(&self, barcode: &str) -> Result<LoadedMedium, TapeStoreError>;
    /// A drive gave the tape back (unloaded); its last index was committed.
    async fn release(&self, barcode: &str) -> Result<(), TapeStoreError>;
    /// The library's element map changed (a move, an import, an export):
    /// persist it so that it survives a restart.
    async fn save_elements(&self, state: &crate::library::ElementMap) -> Result<(), TapeStoreError>;
    /// The application moved this tape into an import/export slot: the
    /// gateway takes it out of the library and archives it.
    async fn exported(&self, barcode: &str);
}

/// What the changer sees of a drive (a data transfer element).
#[async_trait]
pub trait DataTransferElement: Send + Sync {
    /// Puts a tape in the drive (MOVE MEDIUM into the drive). The drive
    /// reports NOT READY → unit attention MEDIUM MAY HAVE CHANGED as a real
    /// one does.
    async fn load(&self, medium: LoadedMedium) -> Result<(), Sense>;
    /// Takes the tape out (MOVE MEDIUM out of the drive): commits what is
    /// pending first. Refused with MEDIUM REMOVAL PREVENTED while the drive's
    /// PREVENT ALLOW MEDIUM REMOVAL is in force.
    async fn unload(&self) -> Result<String, Sense>;
    /// The barcode of the tape inside, if any.
    fn loaded(&self) -> Option<String>;
    /// The drive's identity as READ ELEMENT STATUS reports it with DVCID:
    /// vendor (8), product (16), serial number.
    fn device_identifier(&self) -> DriveIdentifier;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveIdentifier {
    pub vendor: String,
    pub product: String,
    pub serial: String,
}
