//! The key hierarchy (docs/FORMAT.md, "Keys").
//!
//! A 256-bit master key, held by the admin (or generated at activation and
//! shown once as a recovery key), wraps one random 256-bit data key per
//! namespace. Everything else is derived from the data key with BLAKE3's
//! key-derivation mode, so each purpose gets an independent key:
//! - `"sgw 2026 chunk-id v1"`: the key of the keyed hash that names chunks;
//! - `"sgw 2026 chunk-encryption v1"`: the AES-256-GCM key of chunk payloads;
//! - `"sgw 2026 data-key-id v1"`: 8 bytes that identify the data key.
//!
//! Rotating the master key rewraps data keys; chunk objects never change.

use std::fmt;

use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::cloud::aead::Aes256GcmKey;
use crate::cloud::error::ErrorKind;
use crate::cloud::layout::Namespace;

const MASTER_ID_CONTEXT: &str = "sgw 2026 master-key-id v1";
const MASTER_WRAP_CONTEXT: &str = "sgw 2026 master-key-wrap v1";
const DATA_KEY_ID_CONTEXT: &str = "sgw 2026 data-key-id v1";
pub(crate) const CHUNK_ID_CONTEXT: &str = "sgw 2026 chunk-id v1";
pub(crate) const CHUNK_ENCRYPTION_CONTEXT: &str = "sgw 2026 chunk-encryption v1";
const WRAP_AAD_LABEL: &[u8] = b"sgw-data-key-v1";
pub const DATA_KEY_RECORD_FORMAT: &str = "sgw-data-key";

/// Why key material could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("a key is 64 hex digits (dashes and spaces are ignored)")]
    BadKeyText,
    #[error(
        "data key of {namespace} is wrapped by master key {expected}; the key supplied is {found}"
    )]
    WrongMasterKey {
        namespace: String,
        expected: String,
        found: String,
    },
    #[error("data key of {0} failed authentication: wrong master key or tampered key record")]
    UnwrapFailed(String),
    #[error("unreadable data key record: {0}")]
    BadRecord(String),
}

impl KeyError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            KeyError::BadKeyText => ErrorKind::Permanent,
            KeyError::WrongMasterKey { .. } | KeyError::UnwrapFailed(_) => ErrorKind::Auth,
            KeyError::BadRecord(_) => ErrorKind::Corrupt,
        }
    }
}

fn random_key() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

fn short_id(context: &str, key: &[u8; 32]) -> [u8; 8] {
    let derived = blake3::derive_key(context, key);
    let mut id = [0u8; 8];
    id.copy_from_slice(&derived[..8]);
    id
}

/// The root of the key hierarchy. Never stored in the bucket.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    pub fn generate() -> MasterKey {
        MasterKey(random_key())
    }

    /// Parses 64 hex digits, ignoring dashes and whitespace (the recovery
    /// key is shown in groups).
    pub fn from_hex(text: &str) -> Result<MasterKey, KeyError> {
        let digits: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect();
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&digits, &mut bytes).map_err(|_| KeyError::BadKeyText)?;
        Ok(MasterKey(bytes))
    }

    /// The recovery-key text: 64 hex digits in dash-separated groups of 8.
    pub fn to_recovery_text(&self) -> String {
        let digits = hex::encode(self.0);
        let groups: Vec<&str> = (0..8).map(|i| &digits[i * 8..i * 8 + 8]).collect();
        groups.join("-")
    }

    /// A public 8-byte fingerprint, stored with wrapped keys so a wrong
    /// master key is reported as such rather than as damage.
    pub fn id(&self) -> String {
        hex::encode(short_id(MASTER_ID_CONTEXT, &self.0))
    }

    fn wrapping_cipher(&self) -> Aes256GcmKey {
        Aes256GcmKey::new(&blake3::derive_key(MASTER_WRAP_CONTEXT, &self.0))
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey(id {})", self.id())
    }
}

/// One namespace's data key.
#[derive(Clone)]
pub struct DataKey([u8; 32]);

impl DataKey {
    pub fn generate() -> DataKey {
        DataKey(random_key())
    }

    pub fn id(&self) -> [u8; 8] {
        short_id(DATA_KEY_ID_CONTEXT, &self.0)
    }

    /// A key for one purpose, independent of the keys for the others.
    pub(crate) fn derive(&self, context: &str) -> [u8; 32] {
        blake3::derive_key(context, &self.0)
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataKey(id {})", hex::encode(self.id()))
    }
}

/// The JSON object stored at `<prefix>/keys/<namespace>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedDataKey {
    pub format: String,
    pub version: u32,
    pub namespace: String,
    /// Hex of the data key's 8-byte id.
    pub key_id: String,
    /// Hex of the wrapping master key's 8-byte id.
    pub master_key_id: String,
    /// Hex of the 12-byte AES-GCM nonce.
    pub nonce: String,
    /// Hex of the encrypted data key (32 bytes) followed by the tag (16).
    pub wrapped: String,
}

fn wrap_aad(namespace: &str, key_id: &[u8; 8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(WRAP_AAD_LABEL.len() + namespace.len() + 10);
    aad.extend_from_slice(WRAP_AAD_LABEL);
    aad.push(0);
    aad.extend_from_slice(namespace.as_bytes());
    aad.push(0);
    aad.extend_from_slice(key_id);
    aad
}

impl WrappedDataKey {
    /// Encrypts `key` under `master`, bound to `namespace`.
    pub fn wrap(master: &MasterKey, namespace: &Namespace, key: &DataKey) -> WrappedDataKey {
        let key_id = key.id();
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let mut buf = key.0.to_vec();
        let aad = wrap_aad(namespace.as_str(), &key_id);
        let tag = master.wrapping_cipher().seal(&nonce, &aad, &mut buf);
        buf.extend_from_slice(&tag);
        WrappedDataKey {
            format: DATA_KEY_RECORD_FORMAT.to_owned(),
            version: 1,
            namespace: namespace.as_str().to_owned(),
            key_id: hex::encode(key_id),
            master_key_id: master.id(),
            nonce: hex::encode(nonce),
            wrapped: hex::encode(buf),
        }
    }

    pub fn from_json(bytes: &[u8]) -> Result<WrappedDataKey, KeyError> {
        let record: WrappedDataKey =
            serde_json::from_slice(bytes).map_err(|e| KeyError::BadRecord(e.to_string()))?;
        if record.format != DATA_KEY_RECORD_FORMAT || record.version != 1 {
            return Err(KeyError::BadRecord(format!(
                "unsupported record {} v{}",
                record.format, record.version
            )));
        }
        Ok(record)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a struct of strings always serialises")
    }

    /// Decrypts the data key, checking that it belongs to `namespace`.
    pub fn unwrap_key(
        &self,
        master: &MasterKey,
        namespace: &Namespace,
    ) -> Result<DataKey, KeyError> {
        if self.namespace != namespace.as_str() {
            return Err(KeyError::BadRecord(format!(
                "record is for {}, not {namespace}",
                self.namespace
            )));
        }
        if self.master_key_id != master.id() {
            return Err(KeyError::WrongMasterKey {
                namespace: self.namespace.clone(),
                expected: self.master_key_id.clone(),
                found: master.id(),
            });
        }
        let bad = |what: &str| KeyError::BadRecord(format!("{what} of {namespace}"));
        let mut key_id = [0u8; 8];
        hex::decode_to_slice(&self.key_id, &mut key_id).map_err(|_| bad("key id"))?;
        let mut nonce = [0u8; 12];
        hex::decode_to_slice(&self.nonce, &mut nonce).map_err(|_| bad("nonce"))?;
        let mut wrapped = [0u8; 48];
        hex::decode_to_slice(&self.wrapped, &mut wrapped).map_err(|_| bad("wrapped key"))?;
        let mut key = [0u8; 32];
        let mut tag = [0u8; 16];
        key.copy_from_slice(&wrapped[..32]);
        tag.copy_from_slice(&wrapped[32..]);
        master
            .wrapping_cipher()
            .open(&nonce, &wrap_aad(namespace.as_str(), &key_id), &mut key, &tag)
            .map_err(|_| KeyError::UnwrapFailed(namespace.to_string()))?;
        let key = DataKey(key);
        if key.id() != key_id {
            return Err(bad("key id"));
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_text_round_trip() {
        let master = MasterKey::generate();
        let text = master.to_recovery_text();
        assert_eq!(text.len(), 64 + 7);
        assert_eq!(MasterKey::from_hex(&text).unwrap().id(), master.id());
        assert_eq!(MasterKey::from_hex("12").unwrap_err(), KeyError::BadKeyText);
    }

    #[test]
    fn wrap_unwrap_and_rewrap() {
        let ns = Namespace::new("vol-1").unwrap();
        let (old, new) = (MasterKey::generate(), MasterKey::generate());
        let key = DataKey::generate();
        let record =
            WrappedDataKey::from_json(&WrappedDataKey::wrap(&old, &ns, &key).to_json()).unwrap();
        assert_eq!(record.unwrap_key(&old, &ns).unwrap().id(), key.id());
        assert!(matches!(
            record.unwrap_key(&new, &ns),
            Err(KeyError::WrongMasterKey { .. })
        ));
        let rewrapped = WrappedDataKey::wrap(&new, &ns, &record.unwrap_key(&old, &ns).unwrap());
        assert_eq!(
            rewrapped.unwrap_key(&new, &ns).unwrap().derive("x"),
            key.derive("x")
        );
        assert_eq!(rewrapped.key_id, record.key_id);
    }

    #[test]
    fn tampered_record_fails_authentication() {
        let ns = Namespace::new("vol-1").unwrap();
        let master = MasterKey::generate();
        let mut record = WrappedDataKey::wrap(&master, &ns, &DataKey::generate());
        let mut bytes = hex::decode(&record.wrapped).unwrap();
        bytes[3] ^= 0x40;
        record.wrapped = hex::encode(bytes);
        assert_eq!(
            record.unwrap_key(&master, &ns).unwrap_err(),
            KeyError::UnwrapFailed("vol-1".into())
        );
        let other = Namespace::new("vol-2").unwrap();
        assert!(matches!(
            record.unwrap_key(&master, &other),
            Err(KeyError::BadRecord(_))
        ));
    }
}
