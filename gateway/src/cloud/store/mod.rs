//! The object-store abstraction: everything the gateway needs from S3, and
//! nothing more, so that the embedded local store can stand in for it.

mod config;
mod local;
mod local_paths;
pub mod probe;
mod restore_header;
mod s3;
mod s3_errors;

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;

pub use config::{open_store, LocalStoreConfig, S3Config, StoreConfig};
pub use local::LocalStore;
pub use restore_header::parse_restore_header;
pub use s3::S3Store;
pub use s3_errors::classify_s3_error;

use crate::cloud::error::{ErrorKind, StoreError};

/// S3 storage classes. The four the gateway writes are named; anything else
/// a bucket reports (INTELLIGENT_TIERING, GLACIER_IR, ...) is kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum StorageClass {
    #[default]
    Standard,
    StandardIa,
    Glacier,
    DeepArchive,
    Other(String),
}

impl StorageClass {
    pub fn as_s3_str(&self) -> &str {
        match self {
            StorageClass::Standard => "STANDARD",
            StorageClass::StandardIa => "STANDARD_IA",
            StorageClass::Glacier => "GLACIER",
            StorageClass::DeepArchive => "DEEP_ARCHIVE",
            StorageClass::Other(s) => s,
        }
    }

    pub fn from_s3_str(s: &str) -> StorageClass {
        match s {
            "STANDARD" | "" => StorageClass::Standard,
            "STANDARD_IA" => StorageClass::StandardIa,
            "GLACIER" => StorageClass::Glacier,
            "DEEP_ARCHIVE" => StorageClass::DeepArchive,
            other => StorageClass::Other(other.to_owned()),
        }
    }

    /// Archive classes refuse GET until a restored copy exists.
    pub fn is_archive(&self) -> bool {
        matches!(self, StorageClass::Glacier | StorageClass::DeepArchive)
    }
}

impl fmt::Display for StorageClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_s3_str())
    }
}

/// A byte range of an object: `len` bytes from `offset`. Like S3, a range
/// that runs past the end is cut short; one that starts past it is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub offset: u64,
    pub len: u64,
}

impl ByteRange {
    /// The HTTP `Range` header value, or `None` for an empty range (which
    /// HTTP cannot express).
    pub fn http_header(&self) -> Option<String> {
        let last = self.offset.checked_add(self.len)?.checked_sub(1)?;
        (self.len > 0).then(|| format!("bytes={}-{}", self.offset, last))
    }
}

/// Retrieval speed (and price) of a restore from an archive class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreTier {
    Expedited,
    Standard,
    Bulk,
}

impl RestoreTier {
    pub fn as_s3_str(self) -> &'static str {
        match self {
            RestoreTier::Expedited => "Expedited",
            RestoreTier::Standard => "Standard",
            RestoreTier::Bulk => "Bulk",
        }
    }
}

/// Whether an object can be read, as far as archiving is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreStatus {
    /// Not in an archive class: always readable.
    NotArchived,
    /// Archived, no restored copy and no restore under way.
    Archived,
    /// A restore was requested and has not finished.
    InProgress,
    /// A temporary restored copy is readable until `expiry` (as the backend
    /// reports it, e.g. an HTTP date).
    Restored { expiry: Option<String> },
}

impl RestoreStatus {
    pub fn is_readable(&self) -> bool {
        matches!(
            self,
            RestoreStatus::NotArchived | RestoreStatus::Restored { .. }
        )
    }
}

/// What HEAD says about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    pub storage_class: StorageClass,
    pub etag: Option<String>,
    pub restore: RestoreStatus,
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSummary {
    pub key: String,
    pub size: u64,
    pub storage_class: StorageClass,
}

/// One page of a listing, in key order; `next` continues it.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub objects: Vec<ObjectSummary>,
    pub next: Option<String>,
}

/// A part uploaded to a multipart upload, needed to complete it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    pub part_number: u32,
    pub etag: String,
}

/// S3's smallest part, except for the last one. The local store enforces it
/// too, so that code which would fail on S3 fails on one box as well.
pub const MIN_MULTIPART_PART: usize = 5 * 1024 * 1024;

/// What the gateway needs from an object store. Keys are UTF-8 strings with
/// `/`-separated, non-empty segments.
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// Where the data lives, for logs and reports.
    fn describe(&self) -> String;

    /// Stores `body` under `key` in one request, replacing any object there.
    async fn put(&self, key: &str, body: Bytes, class: &StorageClass) -> Result<(), StoreError>;

    /// Reads an object or a range of it.
    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<Bytes, StoreError>;

    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError>;

    /// Lists keys starting with `prefix`, one page at a time.
    async fn list_page(
        &self,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<ListPage, StoreError>;

    /// Deletes an object; deleting an absent key succeeds, as on S3.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Moves an object to another storage class (an in-place copy on S3).
    async fn copy_to_storage_class(
        &self,
        key: &str,
        class: &StorageClass,
    ) -> Result<(), StoreError>;

    /// Asks for a temporary readable copy of an archived object for `days`.
    /// A restore already under way is not an error.
    async fn restore(&self, key: &str, tier: RestoreTier, days: u32) -> Result<(), StoreError>;

    async fn restore_status(&self, key: &str) -> Result<RestoreStatus, StoreError> {
        Ok(self.head(key).await?.restore)
    }

    /// Starts a multipart upload and returns its upload id.
    async fn create_multipart(&self, key: &str, class: &StorageClass)
        -> Result<String, StoreError>;

    /// Uploads part `part_number` (from 1) of an upload.
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Bytes,
    ) -> Result<CompletedPart, StoreError>;

    /// Assembles the parts, in part-number order, into the object.
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), StoreError>;

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError>;
}

/// Lists every key under `prefix`, following continuation tokens.
pub async fn list_all(
    store: &dyn ObjectStore,
    prefix: &str,
) -> Result<Vec<ObjectSummary>, StoreError> {
    let mut objects = Vec::new();
    let mut continuation = None;
    loop {
        let page = store.list_page(prefix, continuation).await?;
        objects.extend(page.objects);
        match page.next {
            Some(next) => continuation = Some(next),
            None => return Ok(objects),
        }
    }
}

/// Uploads `parts` as one object through a multipart upload, aborting the
/// upload if any step fails so that no orphaned parts keep costing money.
pub async fn put_multipart(
    store: &dyn ObjectStore,
    key: &str,
    parts: Vec<Bytes>,
    class: &StorageClass,
) -> Result<(), StoreError> {
    let upload_id = store.create_multipart(key, class).await?;
    let total: u64 = parts.iter().map(|p| p.len() as u64).sum();
    let mut completed = Vec::with_capacity(parts.len());
    for (index, body) in parts.into_iter().enumerate() {
        let part_number = u32::try_from(index + 1).unwrap_or(u32::MAX);
        match store.upload_part(key, &upload_id, part_number, body).await {
            Ok(part) => completed.push(part),
            Err(e) => {
                abort_quietly(store, key, &upload_id).await;
                return Err(e);
            }
        }
    }
    match store.complete_multipart(key, &upload_id, completed).await {
        Ok(()) => Ok(()),
        // A retried completion whose first attempt succeeded but lost its
        // answer finds the upload gone; the object tells whether it landed.
        Err(e) if e.kind() == ErrorKind::NotFound => match store.head(key).await {
            Ok(meta) if meta.size == total => Ok(()),
            _ => Err(e),
        },
        Err(e) => {
            abort_quietly(store, key, &upload_id).await;
            Err(e)
        }
    }
}

async fn abort_quietly(store: &dyn ObjectStore, key: &str, upload_id: &str) {
    // The original error is what the caller needs; a failed abort only
    // leaves parts for the bucket's lifecycle rule to clean up.
    if let Err(e) = store.abort_multipart(key, upload_id).await {
        tracing::warn!(error = %e, "abandoned multipart upload could not be aborted");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_range_header() {
        assert_eq!(
            ByteRange { offset: 0, len: 1 }.http_header().as_deref(),
            Some("bytes=0-0")
        );
        assert_eq!(
            ByteRange { offset: 10, len: 5 }.http_header().as_deref(),
            Some("bytes=10-14")
        );
        assert_eq!(ByteRange { offset: 10, len: 0 }.http_header(), None);
        assert_eq!(
            ByteRange {
                offset: u64::MAX,
                len: 2
            }
            .http_header(),
            None
        );
    }

    #[test]
    fn storage_class_round_trip() {
        for class in [
            StorageClass::Standard,
            StorageClass::StandardIa,
            StorageClass::Glacier,
            StorageClass::DeepArchive,
        ] {
            assert_eq!(StorageClass::from_s3_str(class.as_s3_str()), class);
        }
        assert_eq!(
            StorageClass::from_s3_str("GLACIER_IR"),
            StorageClass::Other("GLACIER_IR".into())
        );
        assert!(StorageClass::DeepArchive.is_archive());
        assert!(!StorageClass::Other("GLACIER_IR".into()).is_archive());
    }
}
