//! Encoding and decoding of chunk objects.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};
use rand::rngs::OsRng;
use rand::RngCore;

use super::header::{object_crc, ChunkHeader, AUTHENTICATED_HEADER_LEN, FLAG_ZSTD, HEADER_LEN, TAG_LEN};
use super::{ChunkError, ChunkId};
use crate::cloud::aead::Aes256GcmKey;
use crate::cloud::keys::{DataKey, CHUNK_ENCRYPTION_CONTEXT, CHUNK_ID_CONTEXT};

/// The largest chunk the format accepts; it bounds what a decoder
/// allocates for an object it has not authenticated yet.
pub const MAX_CHUNK_LEN: usize = 64 * 1024 * 1024;

/// zstd level 1: the fastest level; higher levels cost far more CPU per
/// byte than they save in upload time on the links a gateway sits behind.
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;

thread_local! {
    // zstd contexts are costly to set up; each worker thread keeps its own.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// True when every byte is zero. Such chunks are never stored.
pub fn is_all_zero(data: &[u8]) -> bool {
    // OR-folding fixed blocks vectorises; the early exit per block keeps
    // non-zero data cheap to reject.
    data.chunks(256)
        .all(|block| block.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

/// What encoding produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodedChunk {
    /// All zero: nothing to store.
    Zero { len: usize },
    /// The object to store under the id's key.
    Object {
        id: ChunkId,
        object: Bytes,
        plain_len: usize,
    },
}

/// Encodes and decodes the chunks of one namespace (one data key).
pub struct ChunkCodec {
    key_id: [u8; 8],
    id_key: [u8; 32],
    cipher: Aes256GcmKey,
    zstd_level: i32,
}

impl std::fmt::Debug for ChunkCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ChunkCodec(key {}, zstd {})",
            hex::encode(self.key_id),
            self.zstd_level
        )
    }
}

impl ChunkCodec {
    pub fn new(key: &DataKey, zstd_level: i32) -> ChunkCodec {
        ChunkCodec {
            key_id: key.id(),
            id_key: key.derive(CHUNK_ID_CONTEXT),
            cipher: Aes256GcmKey::new(&key.derive(CHUNK_ENCRYPTION_CONTEXT)),
            zstd_level,
        }
    }

    pub fn key_id(&self) -> [u8; 8] {
        self.key_id
    }

    /// The keyed BLAKE3 hash of the plaintext.
    pub fn chunk_id(&self, plain: &[u8]) -> ChunkId {
        ChunkId(*blake3::keyed_hash(&self.id_key, plain).as_bytes())
    }

    /// Hashes, compresses (when that saves at least 1/32), encrypts and
    /// frames one chunk. CPU-bound: call it off the async I/O threads.
    pub fn encode(&self, plain: &[u8]) -> Result<EncodedChunk, ChunkError> {
        if plain.len() > MAX_CHUNK_LEN {
            return Err(ChunkError::TooLarge(plain.len()));
        }
        if is_all_zero(plain) {
            return Ok(EncodedChunk::Zero { len: plain.len() });
        }
        let id = self.chunk_id(plain);
        let worth_it = plain.len() - plain.len() / 32;
        let mut out = Vec::with_capacity(HEADER_LEN + plain.len() + TAG_LEN);
        out.resize(HEADER_LEN + worth_it, 0);
        let flags = match self.compress_into(plain, &mut out[HEADER_LEN..]) {
            Some(n) => {
                out.truncate(HEADER_LEN + n);
                FLAG_ZSTD
            }
            None => {
                out.truncate(HEADER_LEN);
                out.extend_from_slice(plain);
                0
            }
        };
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let header = ChunkHeader {
            flags,
            key_id: self.key_id,
            // MAX_CHUNK_LEN fits in u32.
            plain_len: plain.len() as u32,
            nonce,
        };
        let authenticated = header.authenticated_bytes();
        out[..AUTHENTICATED_HEADER_LEN].copy_from_slice(&authenticated);
        let tag = self.cipher.seal(&nonce, &aad(&id, &authenticated), &mut out[HEADER_LEN..]);
        out.extend_from_slice(&tag);
        let crc = object_crc(&authenticated, &out[HEADER_LEN..]);
        out[AUTHENTICATED_HEADER_LEN..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
        Ok(EncodedChunk::Object {
            id,
            object: Bytes::from(out),
            plain_len: plain.len(),
        })
    }

    /// Compresses into `dest`; `None` if the result would not fit (the data
    /// does not compress well enough) or zstd failed.
    fn compress_into(&self, plain: &[u8], dest: &mut [u8]) -> Option<usize> {
        COMPRESSOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            if !matches!(slot.as_ref(), Some((level, _)) if *level == self.zstd_level) {
                *slot = Some((
                    self.zstd_level,
                    zstd::bulk::Compressor::new(self.zstd_level).ok()?,
                ));
            }
            let (_, compressor) = slot.as_mut()?;
            compressor.compress_to_buffer(plain, dest).ok()
        })
    }

    /// Checks, decrypts, decompresses and verifies a chunk object stored
    /// under `id`. CPU-bound: call it off the async I/O threads.
    pub fn decode(&self, id: &ChunkId, object: Bytes) -> Result<Bytes, ChunkError> {
        let header = ChunkHeader::parse(&object)?;
        if header.key_id != self.key_id {
            return Err(ChunkError::WrongKey {
                expected: hex::encode(self.key_id),
                found: hex::encode(header.key_id),
            });
        }
        let plain_len = header.plain_len as usize;
        if plain_len > MAX_CHUNK_LEN {
            return Err(ChunkError::Inconsistent);
        }
        // Decrypted in place: an object fresh from the store is its
        // buffer's only owner, so this costs no copy (a shared one is
        // copied once).
        let mut payload = object
            .try_into_mut()
            .unwrap_or_else(|shared| BytesMut::from(&shared[..]))
            .split_off(HEADER_LEN);
        let tag = payload.split_off(payload.len() - TAG_LEN);
        let tag: &[u8; TAG_LEN] = tag[..].try_into().map_err(|_| ChunkError::Inconsistent)?;
        self.cipher
            .open(&header.nonce, &aad(id, &header.authenticated_bytes()), &mut payload, tag)
            .map_err(|_| ChunkError::AuthenticationFailed)?;
        let plain = if header.is_compressed() {
            Bytes::from(decompress(&payload, plain_len)?)
        } else {
            payload.freeze()
        };
        if plain.len() != plain_len || self.chunk_id(&plain) != *id {
            return Err(ChunkError::Inconsistent);
        }
        Ok(plain)
    }
}

/// Associated data: the chunk id, then the header's first 32 bytes. An
/// object moved to another id's key, or with any header field changed,
/// fails authentication.
fn aad(id: &ChunkId, authenticated_header: &[u8; AUTHENTICATED_HEADER_LEN]) -> [u8; 64] {
    let mut aad = [0u8; 64];
    aad[..32].copy_from_slice(id.as_bytes());
    aad[32..].copy_from_slice(authenticated_header);
    aad
}

fn decompress(payload: &[u8], plain_len: usize) -> Result<Vec<u8>, ChunkError> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().map_err(|_| ChunkError::Inconsistent)?);
        }
        let decompressor = slot.as_mut().ok_or(ChunkError::Inconsistent)?;
        decompressor
            .decompress(payload, plain_len)
            .map_err(|_| ChunkError::Inconsistent)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn codec() -> ChunkCodec {
        ChunkCodec::new(&DataKey::generate(), DEFAULT_ZSTD_LEVEL)
    }

    fn random(len: usize) -> Vec<u8> {
        let mut data = vec![0u8; len];
        rand::rngs::StdRng::seed_from_u64(7).fill(&mut data[..]);
        data
    }

    fn object(encoded: EncodedChunk) -> (ChunkId, Bytes) {
        match encoded {
            EncodedChunk::Object { id, object, .. } => (id, object),
            EncodedChunk::Zero { .. } => panic!("expected an object"),
        }
    }

    #[test]
    fn zero_chunks_are_not_objects() {
        assert_eq!(
            codec().encode(&[0u8; 4096]),
            Ok(EncodedChunk::Zero { len: 4096 })
        );
        assert_eq!(codec().encode(&[]), Ok(EncodedChunk::Zero { len: 0 }));
        let mut almost = vec![0u8; 4096];
        almost[4095] = 1;
        assert!(matches!(
            codec().encode(&almost),
            Ok(EncodedChunk::Object { .. })
        ));
    }

    #[test]
    fn random_data_is_stored_raw_and_round_trips() {
        let codec = codec();
        let data = random(65536);
        let (id, obj) = object(codec.encode(&data).unwrap());
        let header = ChunkHeader::parse(&obj).unwrap();
        assert!(!header.is_compressed());
        assert_eq!(obj.len(), HEADER_LEN + data.len() + TAG_LEN);
        assert_eq!(codec.decode(&id, obj).unwrap(), data);
    }

    #[test]
    fn text_is_compressed_and_round_trips() {
        let codec = codec();
        let data = "the quick brown fox jumps over the lazy dog\n"
            .repeat(2000)
            .into_bytes();
        let (id, obj) = object(codec.encode(&data).unwrap());
        assert!(ChunkHeader::parse(&obj).unwrap().is_compressed());
        assert!(obj.len() < data.len() / 10);
        assert_eq!(codec.decode(&id, obj).unwrap(), data);
    }

    #[test]
    fn same_content_same_id_different_nonce() {
        let codec = codec();
        let data = random(1000);
        let (id1, obj1) = object(codec.encode(&data).unwrap());
        let (id2, obj2) = object(codec.encode(&data).unwrap());
        assert_eq!(id1, id2);
        assert_ne!(obj1[20..32], obj2[20..32]);
    }

    #[test]
    fn wrong_key_and_tampering_are_auth_errors() {
        let (a, b) = (codec(), codec());
        let data = random(5000);
        let (id, obj) = object(a.encode(&data).unwrap());
        assert!(matches!(
            b.decode(&id, obj.clone()),
            Err(ChunkError::WrongKey { .. })
        ));

        // Flip a payload bit and fix the crc: only the GCM tag catches it.
        let mut tampered = obj.to_vec();
        tampered[HEADER_LEN + 10] ^= 1;
        let crc = crc32c::crc32c_append(crc32c::crc32c(&tampered[..32]), &tampered[HEADER_LEN..]);
        tampered[32..36].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            a.decode(&id, Bytes::from(tampered)),
            Err(ChunkError::AuthenticationFailed)
        );

        // The same object presented under another id.
        let (other_id, _) = object(a.encode(&random(10)).unwrap());
        assert_eq!(
            a.decode(&other_id, obj.clone()),
            Err(ChunkError::AuthenticationFailed)
        );

        // Unfixed damage is reported as such.
        let mut damaged = obj.to_vec();
        damaged[HEADER_LEN + 10] ^= 1;
        assert_eq!(a.decode(&id, Bytes::from(damaged)), Err(ChunkError::ChecksumMismatch));
    }

    #[test]
    fn oversize_input_is_refused() {
        let data = vec![1u8; MAX_CHUNK_LEN + 1];
        assert_eq!(
            codec().encode(&data),
            Err(ChunkError::TooLarge(MAX_CHUNK_LEN + 1))
        );
    }
}
