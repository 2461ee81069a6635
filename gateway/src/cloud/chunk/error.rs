use crate::cloud::error::ErrorKind;

/// Why a chunk could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk of {0} bytes exceeds the format's limit")]
    TooLarge(usize),
    #[error("object too short to be a chunk")]
    TooShort,
    #[error("not a chunk object (bad magic)")]
    BadMagic,
    #[error("chunk format version {0} is not supported")]
    UnsupportedVersion(u8),
    #[error("chunk uses unknown flags {0:#04x}")]
    UnknownFlags(u8),
    #[error("chunk checksum mismatch (damaged in storage or transit)")]
    ChecksumMismatch,
    #[error("chunk was written with data key {found}, not with the key supplied ({expected})")]
    WrongKey { expected: String, found: String },
    #[error("chunk failed authentication: wrong key or tampered object")]
    AuthenticationFailed,
    #[error("chunk content is inconsistent with its header")]
    Inconsistent,
}

impl ChunkError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ChunkError::WrongKey { .. } | ChunkError::AuthenticationFailed => ErrorKind::Auth,
            ChunkError::TooLarge(_)
            | ChunkError::UnsupportedVersion(_)
            | ChunkError::UnknownFlags(_) => ErrorKind::Permanent,
            ChunkError::TooShort
            | ChunkError::BadMagic
            | ChunkError::ChecksumMismatch
            | ChunkError::Inconsistent => ErrorKind::Corrupt,
        }
    }
}
