//! The tape format: a tape is a sequence of logical objects (data records
//! of 1 byte to 16 MiB, and filemarks) laid over one byte stream, the
//! concatenation of the record payloads. Filemarks take no bytes.
//!
//! [`TapeIndex`] says where every object sits without scanning data: it
//! keeps run-length runs of consecutive records of equal length, and runs
//! of consecutive filemarks, so a tape written with one block size is a
//! handful of runs whatever its length. Every query is a binary search over
//! the runs. The serialized form ([`TapeIndex::encode`],
//! [`TapeIndex::decode`]) is specified in `docs/FORMAT.md` ("Tapes").

mod codec;
mod index;

pub use index::{RecordSpan, TapeIndex, TapeObject};

/// Largest record the format holds.
pub const MAX_RECORD_LEN: u32 = 16 << 20;

/// Largest number of logical objects on one tape. Far beyond any real
/// tape, and small enough that offsets and counts never overflow.
pub const MAX_OBJECTS: u64 = 1 << 48;

/// Why an index could not be built or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("record length {0} outside 1..={MAX_RECORD_LEN}")]
    RecordLength(u64),
    #[error("more than {MAX_OBJECTS} objects or a stream past 2^64 bytes")]
    TooLarge,
    #[error("not a tape index (bad magic)")]
    BadMagic,
    #[error("unsupported tape index version {0}")]
    UnsupportedVersion(u16),
    #[error("tape index length {actual} does not match its header ({expected})")]
    Length { expected: u64, actual: u64 },
    #[error("tape index checksum mismatch")]
    Checksum,
    #[error("tape index run {run}: {reason}")]
    BadRun { run: u32, reason: &'static str },
    #[error("tape index totals do not match its runs")]
    Totals,
    #[error("reserved field is not zero")]
    Reserved,
}
