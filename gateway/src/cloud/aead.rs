//! AES-256-GCM with a detached tag: the cipher of chunk payloads and of
//! wrapped data keys (docs/FORMAT.md). Standard GCM (96-bit nonce, 128-bit
//! tag), so any AES-GCM implementation reads what this writes;
//! tests/format-reader.py does, with Python's `cryptography`.
//!
//! Built on ring, which the S3 client's TLS already links. The aes-gcm crate
//! sealed 1.1 GiB/s per core here, most of it in its one-block-at-a-time
//! GHASH; ring's assembly seals over 8 GiB/s (`cargo bench -p sgw-benches
//! --bench codec` prints both). At 1.1 GiB/s, encryption was the largest
//! single cost of an upload, and uploads run beside the reads and writes of
//! backup jobs on the same cores.

use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM};

pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;

/// The tag did not match: wrong key, or the bytes were changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthenticationFailed;

pub struct Aes256GcmKey(LessSafeKey);

impl Aes256GcmKey {
    pub fn new(key: &[u8; 32]) -> Aes256GcmKey {
        match UnboundKey::new(&AES_256_GCM, key) {
            Ok(key) => Aes256GcmKey(LessSafeKey::new(key)),
            // AES_256_GCM takes exactly 32 bytes, which the type guarantees.
            Err(_) => unreachable!("a 32-byte key is an AES-256 key"),
        }
    }

    /// Encrypts `buf` in place and returns its tag. Callers never reuse a
    /// nonce under one key (they draw 96 random bits per message).
    pub fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        let nonce = Nonce::assume_unique_for_key(*nonce);
        match self.0.seal_in_place_separate_tag(nonce, Aad::from(aad), buf) {
            Ok(tag) => {
                let mut out = [0u8; TAG_LEN];
                out.copy_from_slice(tag.as_ref());
                out
            }
            // ring refuses only messages beyond GCM's limit of 64 GiB;
            // chunks are at most 64 MiB.
            Err(_) => unreachable!("GCM seals any message under 64 GiB"),
        }
    }

    /// Checks `tag` and decrypts `buf` in place; on failure `buf` holds no
    /// plaintext worth using.
    pub fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AuthenticationFailed> {
        let nonce = Nonce::assume_unique_for_key(*nonce);
        let tag = Tag::from(*tag);
        self.0
            .open_in_place_separate_tag(nonce, Aad::from(aad), tag, buf, 0..)
            .map(|_| ())
            .map_err(|_| AuthenticationFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NIST GCM test vector (gcmEncryptExtIV256.rsp, Count 0 of the
    /// 128-bit-plaintext, 128-bit-AAD set) pins the construction to
    /// standard AES-256-GCM.
    #[test]
    fn matches_the_nist_vector_and_refuses_tampering() {
        let key: [u8; 32] = hex::decode("92e11dcdaa866f5ce790fd24501f92509aacf4cb8b1339d50c9c1240935dd08b")
            .expect("hex")
            .try_into()
            .expect("32 bytes");
        let nonce: [u8; 12] = hex::decode("ac93a1a6145299bde902f21a").expect("hex").try_into().expect("12");
        let aad = hex::decode("1e0889016f67601c8ebea4943bc23ad6").expect("hex");
        let mut buf = hex::decode("2d71bcfa914e4ac045b2aa60955fad24").expect("hex");
        let key = Aes256GcmKey::new(&key);
        let tag = key.seal(&nonce, &aad, &mut buf);
        assert_eq!(hex::encode(&buf), "8995ae2e6df3dbf96fac7b7137bae67f");
        assert_eq!(hex::encode(tag), "eca5aa77d51d4a0a14d9c51e1da474ab");

        let mut tampered = buf.clone();
        tampered[0] ^= 1;
        assert_eq!(key.open(&nonce, &aad, &mut tampered, &tag), Err(AuthenticationFailed));
        assert_eq!(key.open(&nonce, b"other aad", &mut buf.clone(), &tag), Err(AuthenticationFailed));
        key.open(&nonce, &aad, &mut buf, &tag).expect("opens");
        assert_eq!(hex::encode(&buf), "2d71bcfa914e4ac045b2aa60955fad24");
    }
}
