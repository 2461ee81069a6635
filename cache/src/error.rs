//! Errors: a rich internal [`Error`] for logs and a few public [`ErrorKind`]s
//! that callers branch on (the volume layer maps them to SCSI sense).

use crate::types::ChunkId;

/// What a caller can do about an error, without parsing messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request itself is wrong (range outside the chunk, bad config…).
    InvalidInput,
    /// Stored data failed its checksum: it is not served.
    Corruption,
    /// Every slot holds dirty or pinned data: nothing can be evicted.
    NoSpace,
    /// The file system under a cache disk or the index is out of space
    /// (ENOSPC, EDQUOT): the write or flush failed, earlier data is intact,
    /// and the same call works again once space returns.
    DiskFull,
    /// A cache disk or the index failed; after a failed fdatasync the
    /// cache refuses writes for good (it cannot be retried safely).
    Io,
}

/// The cache's error, with enough context to diagnose it from a log line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("checksum mismatch in {chunk} sector {sector}: data not served")]
    ChecksumMismatch { chunk: ChunkId, sector: u32 },
    #[error("undecodable index record for {what}: {reason}")]
    BadRecord { what: String, reason: &'static str },
    #[error("cache disk {path}: {source}")]
    Disk { path: String, source: std::io::Error },
    #[error("cache disk {path} does not belong to this cache: {reason}")]
    ForeignDisk { path: String, reason: String },
    #[error("index: {0}")]
    Index(#[from] rocksdb::Error),
    #[error("no evictable slot: every slot is dirty, uploading, pinned or awaiting a flush")]
    NoSpace,
    #[error("metrics registration: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cache failed earlier and refuses work: {0}")]
    Failed(String),
    #[error("blocking task failed: {0}")]
    Task(String),
    /// A flush this write waited for could not record its epoch in the
    /// index; `full` when for lack of space.
    #[error("a flush failed: {reason}")]
    FlushFailed { full: bool, reason: String },
}

impl Error {
    /// The public category of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Invalid(_) | Error::Metrics(_) => ErrorKind::InvalidInput,
            Error::ChecksumMismatch { .. } | Error::BadRecord { .. } | Error::ForeignDisk { .. } => {
                ErrorKind::Corruption
            }
            Error::NoSpace => ErrorKind::NoSpace,
            Error::Disk { source, .. } if is_out_of_space(source) => ErrorKind::DiskFull,
            // RocksDB reports ENOSPC as an IOError whose text says so
            // (Status::SubCode::kNoSpace), and keeps answering with that
            // background error until space returns.
            Error::Index(e) if e.to_string().contains("No space left") => ErrorKind::DiskFull,
            Error::FlushFailed { full: true, .. } => ErrorKind::DiskFull,
            Error::Disk { .. } | Error::Index(_) | Error::Failed(_) | Error::Task(_) | Error::FlushFailed { .. } => {
                ErrorKind::Io
            }
        }
    }
}

/// ENOSPC or EDQUOT, however the error was built.
fn is_out_of_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || matches!(e.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
}

pub type Result<T> = std::result::Result<T, Error>;
