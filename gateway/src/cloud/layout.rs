//! Where things live in the bucket (docs/FORMAT.md, "Bucket layout").
//!
//! ```text
//! <prefix>/sgw-bucket.json                       bucket marker: format name and version
//! <prefix>/keys/<namespace>.json                 the namespace's wrapped data key
//! <prefix>/ns/<namespace>/chunks/<hh>/<id>       chunk objects; <id> is 64 hex digits,
//!                                                <hh> its first two (spreads S3 partitions)
//! <prefix>/ns/<namespace>/tape-index.bin         a tape's index (vtl format), kept STANDARD
//! ```
//! A namespace is one volume or one tape; its data key and chunk ids are its
//! own, so deduplication works within a namespace and deleting a volume is
//! deleting `<prefix>/ns/<namespace>/` and its key.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::cloud::chunk::ChunkId;

/// A name that cannot be used in the bucket layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {rule}")]
pub struct InvalidName {
    what: &'static str,
    value: String,
    rule: &'static str,
}

/// A volume or tape, as named in the bucket: 1 to 128 characters of
/// `[A-Za-z0-9._-]`, not starting with a dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Namespace(String);

impl Namespace {
    pub fn new(name: &str) -> Result<Namespace, InvalidName> {
        let valid = (1..=128).contains(&name.len())
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !valid {
            return Err(InvalidName {
                what: "namespace",
                value: name.to_owned(),
                rule: "1-128 characters of [A-Za-z0-9._-], not starting with '.'",
            });
        }
        Ok(Namespace(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Namespace {
    type Error = InvalidName;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Namespace::new(&value)
    }
}

impl From<Namespace> for String {
    fn from(ns: Namespace) -> String {
        ns.0
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an object in the bucket is, judged from its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectRole {
    Marker,
    DataKey(Namespace),
    Chunk(Namespace, ChunkId),
    /// A volume version's root manifest: volume id, sequence number.
    Manifest(Namespace, u64, u64),
    /// The list of volumes and snapshots (disaster recovery).
    Catalog,
    /// A tape's index (records and filemarks), readable while the tape's
    /// segments are archived.
    TapeIndex(Namespace),
    Unknown,
}

/// The bucket marker's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketMarker {
    pub format: String,
    pub version: u32,
}

impl BucketMarker {
    pub const FORMAT: &'static str = "sgw-bucket";

    pub fn current() -> BucketMarker {
        BucketMarker {
            format: Self::FORMAT.to_owned(),
            version: 1,
        }
    }
}

/// Key names under one gateway's prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketLayout {
    /// Empty, or segments joined by `/` with no leading or trailing slash.
    prefix: String,
}

impl BucketLayout {
    /// `prefix` may be empty; surrounding slashes are ignored.
    pub fn new(prefix: &str) -> Result<BucketLayout, InvalidName> {
        let trimmed = prefix.trim_matches('/');
        if !trimmed.is_empty() && trimmed.split('/').any(str::is_empty) {
            return Err(InvalidName {
                what: "prefix",
                value: prefix.to_owned(),
                rule: "no empty path segments",
            });
        }
        Ok(BucketLayout {
            prefix: trimmed.to_owned(),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The listing prefix that covers everything of this gateway.
    pub fn root(&self) -> String {
        self.join("")
    }

    fn join(&self, rest: &str) -> String {
        if self.prefix.is_empty() {
            rest.to_owned()
        } else {
            format!("{}/{rest}", self.prefix)
        }
    }

    pub fn marker_key(&self) -> String {
        self.join("sgw-bucket.json")
    }

    pub fn keys_prefix(&self) -> String {
        self.join("keys/")
    }

    pub fn data_key_key(&self, namespace: &Namespace) -> String {
        self.join(&format!("keys/{namespace}.json"))
    }

    /// Everything of one namespace but its data key.
    pub fn namespace_prefix(&self, namespace: &Namespace) -> String {
        self.join(&format!("ns/{namespace}/"))
    }

    pub fn tape_index_key(&self, namespace: &Namespace) -> String {
        self.join(&format!("ns/{namespace}/tape-index.bin"))
    }

    pub fn chunks_prefix(&self, namespace: &Namespace) -> String {
        self.join(&format!("ns/{namespace}/chunks/"))
    }

    pub fn chunk_key(&self, namespace: &Namespace, id: &ChunkId) -> String {
        let hex = id.to_string();
        format!("{}{}/{hex}", self.chunks_prefix(namespace), &hex[..2])
    }

    /// The root manifests of one volume (recovery points and snapshots).
    pub fn manifests_prefix(&self, namespace: &Namespace, volume: u64) -> String {
        self.join(&format!("ns/{namespace}/manifests/{volume:016x}/"))
    }

    pub fn manifest_key(&self, namespace: &Namespace, volume: u64, seq: u64) -> String {
        format!("{}{seq:016x}.json", self.manifests_prefix(namespace, volume))
    }

    pub fn catalog_key(&self) -> String {
        self.join("catalog.json")
    }

    /// Recognises the keys this layout produces.
    pub fn classify(&self, key: &str) -> ObjectRole {
        let rest = if self.prefix.is_empty() {
            Some(key)
        } else {
            key.strip_prefix(self.prefix.as_str())
                .and_then(|r| r.strip_prefix('/'))
        };
        let Some(rest) = rest else {
            return ObjectRole::Unknown;
        };
        if rest == "sgw-bucket.json" {
            return ObjectRole::Marker;
        }
        if rest == "catalog.json" {
            return ObjectRole::Catalog;
        }
        if let Some(name) = rest
            .strip_prefix("keys/")
            .and_then(|r| r.strip_suffix(".json"))
        {
            return Namespace::new(name).map_or(ObjectRole::Unknown, ObjectRole::DataKey);
        }
        let parts: Vec<&str> = rest.split('/').collect();
        if let ["ns", namespace, "tape-index.bin"] = parts.as_slice() {
            return Namespace::new(namespace).map_or(ObjectRole::Unknown, ObjectRole::TapeIndex);
        }
        if let ["ns", namespace, "chunks", fanout, id] = parts.as_slice() {
            if let (Ok(namespace), Ok(id)) = (Namespace::new(namespace), id.parse::<ChunkId>()) {
                if id.to_string()[..2] == **fanout {
                    return ObjectRole::Chunk(namespace, id);
                }
            }
        }
        if let ["ns", namespace, "manifests", volume, seq] = parts.as_slice() {
            let seq = seq.strip_suffix(".json").and_then(|s| hex16(s));
            if let (Ok(namespace), Some(volume), Some(seq)) = (Namespace::new(namespace), hex16(volume), seq) {
                return ObjectRole::Manifest(namespace, volume, seq);
            }
        }
        ObjectRole::Unknown
    }
}

/// 16 lower-case hex digits, as the layout writes numbers.
fn hex16(s: &str) -> Option<u64> {
    if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces() {
        assert!(Namespace::new("vol-0001").is_ok());
        assert!(Namespace::new("TAPE.A0001L8_x").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", &"x".repeat(129)] {
            assert!(Namespace::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_round_trip_through_classify() {
        let ns = Namespace::new("vol-1").unwrap();
        let id = ChunkId([0x3c; 32]);
        for prefix in ["", "site-a", "/a/b/"] {
            let layout = BucketLayout::new(prefix).unwrap();
            assert_eq!(layout.classify(&layout.marker_key()), ObjectRole::Marker);
            assert_eq!(
                layout.classify(&layout.data_key_key(&ns)),
                ObjectRole::DataKey(ns.clone())
            );
            let chunk = layout.chunk_key(&ns, &id);
            assert!(chunk.starts_with(&layout.chunks_prefix(&ns)));
            assert_eq!(layout.classify(&chunk), ObjectRole::Chunk(ns.clone(), id));
            assert!(chunk.starts_with(&layout.root()));
        }
        let layout = BucketLayout::new("site-a").unwrap();
        assert_eq!(
            layout.chunk_key(&ns, &id),
            format!("site-a/ns/vol-1/chunks/3c/{id}")
        );
        assert_eq!(
            layout.classify("site-b/sgw-bucket.json"),
            ObjectRole::Unknown
        );
        assert_eq!(
            layout.classify(&format!("site-a/ns/vol-1/chunks/00/{id}")),
            ObjectRole::Unknown
        );
        assert!(BucketLayout::new("a//b").is_err());
        let m = layout.manifest_key(&ns, 0xab, 3);
        assert_eq!(m, "site-a/ns/vol-1/manifests/00000000000000ab/0000000000000003.json");
        assert_eq!(layout.classify(&m), ObjectRole::Manifest(ns.clone(), 0xab, 3));
        assert_eq!(layout.classify(&layout.catalog_key()), ObjectRole::Catalog);
        let tape = Namespace::new("tape-00000000000000ab").unwrap();
        let index = layout.tape_index_key(&tape);
        assert_eq!(index, "site-a/ns/tape-00000000000000ab/tape-index.bin");
        assert_eq!(layout.classify(&index), ObjectRole::TapeIndex(tape.clone()));
        assert!(index.starts_with(&layout.namespace_prefix(&tape)));
    }
}
