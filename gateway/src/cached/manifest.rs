//! Manifests: a volume version as chunk index → chunk object, committed to
//! the cloud (docs/FORMAT.md §7).
//!
//! Two levels: pages of [`PAGE_ENTRIES`] entries are stored as ordinary
//! chunk objects of the volume's namespace (content addressed, compressed,
//! encrypted), and a small JSON root lists the pages. A new version
//! re-uploads only the pages that changed; unchanged pages keep their ids,
//! so incremental snapshots share them for free.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::map::{ChunkMap, ChunkRef, PAGE_ENTRIES};
use crate::cloud::chunk::EncodedChunk;
use crate::cloud::store::StorageClass;
use crate::cloud::{ChunkId, CloudError, CloudLayer, Namespace, ObjectStore};

const PAGE_MAGIC: &[u8; 4] = b"SGWP";
const PAGE_VERSION: u8 = 1;
const TAG_ZERO: u8 = 0;
const TAG_OBJECT: u8 = 1;

/// The root of one volume version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRoot {
    pub format: String,
    pub version: u32,
    /// The volume's id, 16 hex digits.
    pub volume_id: String,
    pub volume_name: String,
    pub size_bytes: u64,
    pub chunk_size: u32,
    /// Increases with every version of the volume.
    pub seq: u64,
    pub created_unix: u64,
    pub page_entries: u32,
    /// Page chunk ids (hex), `null` for a page of zeros only.
    pub pages: Vec<Option<String>>,
}

impl ManifestRoot {
    pub const FORMAT: &'static str = "sgw-manifest";

    /// Every chunk object this version needs, pages included.
    pub fn page_ids(&self) -> Result<Vec<Option<ChunkId>>, CloudError> {
        self.pages
            .iter()
            .map(|p| match p {
                None => Ok(None),
                Some(hex) => hex.parse().map(Some).map_err(|_| corrupt("bad page id in manifest")),
            })
            .collect()
    }
}

fn corrupt(what: &str) -> CloudError {
    CloudError::Malformed(what.to_owned())
}

/// Encodes one page's plaintext.
pub fn encode_page(page: &[ChunkRef; PAGE_ENTRIES]) -> Bytes {
    let objects = page.iter().filter(|r| matches!(r, ChunkRef::Object(_))).count();
    let mut b = BytesMut::with_capacity(6 + PAGE_ENTRIES + objects * 32);
    b.put_slice(PAGE_MAGIC);
    b.put_u8(PAGE_VERSION);
    b.put_u8(0);
    for r in page {
        match r {
            ChunkRef::Zero => b.put_u8(TAG_ZERO),
            ChunkRef::Object(id) => {
                b.put_u8(TAG_OBJECT);
                b.put_slice(id.as_bytes());
            }
        }
    }
    b.freeze()
}

/// Decodes one page's plaintext; never panics on bad input.
pub fn decode_page(bytes: &[u8]) -> Result<[ChunkRef; PAGE_ENTRIES], CloudError> {
    let rest = bytes.strip_prefix(PAGE_MAGIC.as_slice()).ok_or_else(|| corrupt("not a manifest page"))?;
    let (&[version, _], mut rest) = rest.split_first_chunk::<2>().ok_or_else(|| corrupt("short manifest page"))?;
    if version != PAGE_VERSION {
        return Err(corrupt("unknown manifest page version"));
    }
    let mut page = [ChunkRef::Zero; PAGE_ENTRIES];
    for entry in page.iter_mut() {
        let (&tag, tail) = rest.split_first().ok_or_else(|| corrupt("short manifest page"))?;
        rest = tail;
        match tag {
            TAG_ZERO => {}
            TAG_OBJECT => {
                let (id, tail) = rest.split_first_chunk::<32>().ok_or_else(|| corrupt("short manifest page"))?;
                *entry = ChunkRef::Object(ChunkId(*id));
                rest = tail;
            }
            _ => return Err(corrupt("bad manifest entry tag")),
        }
    }
    if !rest.is_empty() {
        return Err(corrupt("trailing bytes in manifest page"));
    }
    Ok(page)
}

/// What a written manifest is.
#[derive(Debug, Clone)]
pub struct WrittenManifest {
    pub root: ManifestRoot,
    pub key: String,
    /// Bytes uploaded for it (new pages and the root).
    pub uploaded_bytes: u64,
}

/// The identity a manifest records.
pub struct ManifestHeader<'a> {
    pub namespace: &'a Namespace,
    pub volume_id: u64,
    pub volume_name: &'a str,
    pub size_bytes: u64,
    pub chunk_size: u32,
    pub seq: u64,
}

/// Uploads a manifest of `map`. Pages identical (same allocation) to those
/// of `previous` reuse its page ids without any work.
pub async fn write_manifest(
    cloud: &CloudLayer,
    header: ManifestHeader<'_>,
    map: &ChunkMap,
    previous: Option<(&ChunkMap, &ManifestRoot)>,
) -> Result<WrittenManifest, CloudError> {
    let codec = cloud.keyring.codec_for_writing(header.namespace).await?;
    let layout = cloud.keyring.layout();
    let mut pages = Vec::with_capacity(map.page_count());
    let mut uploaded = 0u64;
    for p in 0..map.page_count() {
        if let Some((prev_map, prev_root)) = previous {
            if p < prev_map.page_count() && map.same_page(prev_map, p) {
                if let Some(entry) = prev_root.pages.get(p) {
                    pages.push(entry.clone());
                    continue;
                }
            }
        }
        let Some(page) = map.page(p) else {
            pages.push(None);
            continue;
        };
        if page.iter().all(|r| *r == ChunkRef::Zero) {
            pages.push(None);
            continue;
        }
        let plain = encode_page(page);
        let codec = codec.clone();
        let encoded = tokio::task::spawn_blocking(move || codec.encode(&plain))
            .await
            .map_err(|e| CloudError::Worker(e.to_string()))??;
        match encoded {
            EncodedChunk::Zero { .. } => pages.push(None),
            EncodedChunk::Object { id, object, .. } => {
                uploaded += object.len() as u64;
                cloud.store.put(&layout.chunk_key(header.namespace, &id), object, &StorageClass::Standard).await?;
                pages.push(Some(id.to_string()));
            }
        }
    }
    let root = ManifestRoot {
        format: ManifestRoot::FORMAT.to_owned(),
        version: 1,
        volume_id: format!("{:016x}", header.volume_id),
        volume_name: header.volume_name.to_owned(),
        size_bytes: header.size_bytes,
        chunk_size: header.chunk_size,
        seq: header.seq,
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        page_entries: PAGE_ENTRIES as u32,
        pages,
    };
    let body = Bytes::from(serde_json::to_vec(&root).map_err(|e| CloudError::Worker(e.to_string()))?);
    uploaded += body.len() as u64;
    let key = layout.manifest_key(header.namespace, header.volume_id, header.seq);
    cloud.store.put(&key, body, &StorageClass::Standard).await?;
    Ok(WrittenManifest { root, key, uploaded_bytes: uploaded })
}

/// Reads a root manifest.
pub async fn read_root(cloud: &CloudLayer, key: &str) -> Result<ManifestRoot, CloudError> {
    let body = cloud.store.get(key, None).await?;
    let root: ManifestRoot = serde_json::from_slice(&body).map_err(|e| corrupt(&format!("manifest {key}: {e}")))?;
    if root.format != ManifestRoot::FORMAT || root.version != 1 || root.page_entries as usize != PAGE_ENTRIES {
        return Err(corrupt("unsupported manifest"));
    }
    Ok(root)
}

/// Loads the map a root manifest describes.
pub async fn read_map(cloud: &CloudLayer, namespace: &Namespace, root: &ManifestRoot) -> Result<ChunkMap, CloudError> {
    let chunks = root.size_bytes.div_ceil(u64::from(root.chunk_size.max(1)));
    let mut map = ChunkMap::new(chunks);
    for (p, id) in root.page_ids()?.into_iter().enumerate() {
        let Some(id) = id else { continue };
        let plain = cloud.reader.read_chunk(namespace, &id).await?;
        map.set_page(p, Some(Arc::new(decode_page(&plain)?)));
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever comes back from the bucket, decoding answers without
        /// panicking, and what it accepts re-encodes to the same bytes.
        #[test]
        fn page_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4096), cut in 0usize..40_000) {
            if let Ok(page) = decode_page(&bytes) {
                prop_assert_eq!(&encode_page(&page)[..], &bytes[..]);
            }
            let mut page = [ChunkRef::Zero; PAGE_ENTRIES];
            for (i, b) in bytes.iter().enumerate().take(PAGE_ENTRIES) {
                if b % 3 == 0 {
                    page[i] = ChunkRef::Object(ChunkId([*b; 32]));
                }
            }
            let good = encode_page(&page);
            let cut = cut.min(good.len());
            prop_assert_eq!(decode_page(&good[..cut]).is_ok(), cut == good.len());
        }
    }

    #[test]
    fn page_round_trip_and_garbage() {
        let mut page = [ChunkRef::Zero; PAGE_ENTRIES];
        page[3] = ChunkRef::Object(ChunkId([7; 32]));
        page[1023] = ChunkRef::Object(ChunkId([9; 32]));
        let bytes = encode_page(&page);
        assert_eq!(decode_page(&bytes).unwrap(), page);
        for cut in [0, 3, 6, 10, bytes.len() - 1] {
            assert!(decode_page(&bytes[..cut]).is_err(), "cut {cut}");
        }
        let mut bad = bytes.to_vec();
        bad[6] = 9;
        assert!(decode_page(&bad).is_err());
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(decode_page(&long).is_err());
    }
}
