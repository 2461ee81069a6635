//! Chunk format v1: how one chunk of volume or tape data is stored as one
//! object. `docs/FORMAT.md` is the normative description; this module is
//! its reference implementation.

mod codec;
mod error;
mod header;
mod id;

pub use codec::{is_all_zero, ChunkCodec, EncodedChunk, DEFAULT_ZSTD_LEVEL, MAX_CHUNK_LEN};
pub use error::ChunkError;
pub use header::{ChunkHeader, FLAG_ZSTD, FORMAT_VERSION, HEADER_LEN, MAGIC, TAG_LEN};
pub use id::ChunkId;
