//! Errors of the cloud layer.
//!
//! Each backend keeps the full story of a failure (operation, key, the
//! backend's own code and message, the underlying error as `source`), but
//! callers decide what to do from a handful of kinds only: retry, restore
//! first, fix credentials or keys, or give up.

use std::fmt;

/// What a caller can do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The object (or multipart upload) does not exist.
    NotFound,
    /// The object is in an archive storage class and has no restored copy
    /// (S3's `InvalidObjectState`): restore it, then read again.
    NotRestored,
    /// Credentials were refused, or key material does not match the data.
    Auth,
    /// Worth retrying: 5xx, SlowDown, timeouts, dropped connections.
    Transient,
    /// Data came back but fails verification (checksum, format, tampering
    /// that is not an authentication failure).
    Corrupt,
    /// Retrying will not help: bad request, bad configuration, unsupported.
    Permanent,
}

impl ErrorKind {
    /// A stable lower-case name, used as a metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::NotRestored => "not_restored",
            ErrorKind::Auth => "auth",
            ErrorKind::Transient => "transient",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Permanent => "permanent",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failed object-store operation.
#[derive(Debug)]
pub struct StoreError {
    kind: ErrorKind,
    op: &'static str,
    key: String,
    detail: String,
    source: Option<Source>,
}

impl StoreError {
    pub fn new(kind: ErrorKind, op: &'static str, key: &str, detail: impl Into<String>) -> Self {
        StoreError {
            kind,
            op,
            key: key.to_owned(),
            detail: detail.into(),
            source: None,
        }
    }

    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn op(&self) -> &'static str {
        self.op
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// The failure without the key it happened on.
    pub fn cause(&self) -> String {
        let mut cause = format!("{}: {}: {}", self.op, self.kind, self.detail);
        if let Some(source) = &self.source {
            cause.push_str(&format!(": {source}"));
        }
        cause
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:?}: {}: {}",
            self.op, self.key, self.kind, self.detail
        )?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn std::error::Error + 'static))
    }
}

/// Any failure of the cloud layer above the object store: the store itself,
/// the chunk codec, or the key hierarchy.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Chunk(#[from] crate::cloud::chunk::ChunkError),
    #[error(transparent)]
    Key(#[from] crate::cloud::keys::KeyError),
    #[error(transparent)]
    Name(#[from] crate::cloud::layout::InvalidName),
    /// A CPU worker thread died (a panic in the codec).
    #[error("codec worker failed: {0}")]
    Worker(String),
    /// A manifest, page or catalog that does not parse.
    #[error("malformed metadata object: {0}")]
    Malformed(String),
    /// Chunk objects that cannot be read back block the operation (a
    /// recovery point needing a damaged chunk's held writes); the message
    /// names the volume and the LBA ranges.
    #[error("{0}")]
    Damaged(String),
}

impl CloudError {
    /// What failed, without the object it failed on (see
    /// [`StoreError::cause`]).
    pub fn cause(&self) -> String {
        match self {
            CloudError::Store(e) => e.cause(),
            other => other.to_string(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            CloudError::Store(e) => e.kind(),
            CloudError::Chunk(e) => e.kind(),
            CloudError::Key(e) => e.kind(),
            CloudError::Name(_) | CloudError::Worker(_) => ErrorKind::Permanent,
            CloudError::Malformed(_) | CloudError::Damaged(_) => ErrorKind::Corrupt,
        }
    }
}
