//! The embedded object store: a directory on the appliance, for one-box
//! setups and for rehearsing the archive flow without AWS.
//!
//! Layout under the root:
//! - `objects/…/<segment>.o`: one file per object (see [`super::local_paths`]):
//!   `SGWLOBJ1 | u32 LE meta length | meta JSON | content`. The metadata
//!   (storage class, etag) lives in the object file so that a crash can
//!   never pair new content with old metadata.
//! - `restore/…/<segment>.r`: restore state of archived objects (JSON), a
//!   sidecar because a restore changes no data and must not rewrite it.
//! - `uploads/<id>/`: parts of multipart uploads in progress.
//! - `tmp/`: files being written; every write is temp file, fsync, rename,
//!   fsync of the directory, so a reader sees the old object or the new one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::local_paths::{decode_segment, object_path, sidecar_path, OBJECT_SUFFIX};
use super::{
    ByteRange, CompletedPart, ListPage, ObjectMeta, ObjectStore, ObjectSummary, RestoreStatus,
    RestoreTier, StorageClass, MIN_MULTIPART_PART,
};
use crate::cloud::error::{ErrorKind, StoreError};

const MAGIC: &[u8; 8] = b"SGWLOBJ1";
const LIST_PAGE: usize = 1000;
const DAY_MS: u64 = 86_400_000;
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// A directory-backed object store. Restores of archived objects take
/// `restore_delay` (wall-clock, so the state survives restarts).
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    restore_delay: Duration,
}

#[derive(Debug, Serialize, Deserialize)]
struct ObjectHeader {
    storage_class: String,
    etag: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct RestoreSidecar {
    /// The object version the restore belongs to; a rewrite voids it.
    etag: String,
    ready_unix_ms: u64,
    expires_unix_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct UploadTarget {
    key: String,
    storage_class: String,
}

/// An opened object file, positioned at the start of its content.
struct OpenObject {
    file: File,
    header: ObjectHeader,
    content_offset: u64,
    size: u64,
}

fn io_error(op: &'static str, key: &str, err: io::Error) -> StoreError {
    let kind = match err.kind() {
        io::ErrorKind::NotFound => ErrorKind::NotFound,
        io::ErrorKind::PermissionDenied => ErrorKind::Auth,
        io::ErrorKind::InvalidData => ErrorKind::Corrupt,
        _ => ErrorKind::Permanent,
    };
    StoreError::new(kind, op, key, "local store I/O").with_source(err)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn random_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn invalid_data(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

impl LocalStore {
    /// Opens (creating if needed) a store rooted at `root`. Temp files left
    /// by writes interrupted over an hour ago are removed; younger ones may
    /// belong to another process using the same directory (a running
    /// gateway while `sgw inspect` reads).
    pub fn open(root: &Path, restore_delay: Duration) -> Result<LocalStore, StoreError> {
        let store = LocalStore {
            root: root.to_owned(),
            restore_delay,
        };
        let key = &root.display().to_string();
        for dir in ["objects", "restore", "uploads", "tmp"] {
            fs::create_dir_all(root.join(dir)).map_err(|e| io_error("open", key, e))?;
        }
        let stale_before = SystemTime::now() - STALE_TEMP_AGE;
        for entry in fs::read_dir(root.join("tmp")).map_err(|e| io_error("open", key, e))? {
            let entry = entry.map_err(|e| io_error("open", key, e))?;
            let modified = entry
                .metadata()
                .and_then(|m| m.modified())
                .map_err(|e| io_error("open", key, e))?;
            if modified < stale_before {
                fs::remove_file(entry.path()).map_err(|e| io_error("open", key, e))?;
            }
        }
        Ok(store)
    }

    fn object_file(&self, op: &'static str, key: &str) -> Result<(PathBuf, PathBuf), StoreError> {
        let relative = object_path(key)
            .ok_or_else(|| StoreError::new(ErrorKind::Permanent, op, key, "invalid object key"))?;
        Ok((self.root.join("objects").join(&relative), relative))
    }

    /// Runs blocking file-system work off the async I/O threads.
    async fn blocking<T, F>(&self, op: &'static str, key: &str, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(LocalStore) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || work(store))
            .await
            .map_err(|e| {
                StoreError::new(ErrorKind::Permanent, op, key, "local store worker failed")
                    .with_source(e)
            })?
    }

    /// Writes `header | content` to `dest` atomically; `content` is copied
    /// from a reader so large objects are never held in memory twice.
    fn write_object(
        &self,
        dest: &Path,
        header: &ObjectHeader,
        content: &mut dyn Read,
    ) -> io::Result<()> {
        let tmp = self.root.join("tmp").join(random_token());
        let result = (|| {
            let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            let meta = serde_json::to_vec(header).map_err(io::Error::other)?;
            let meta_len = u32::try_from(meta.len()).map_err(io::Error::other)?;
            file.write_all(MAGIC)?;
            file.write_all(&meta_len.to_le_bytes())?;
            file.write_all(&meta)?;
            io::copy(content, &mut file)?;
            file.sync_all()?;
            self.install(&tmp, dest)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Renames a finished temp file into place and makes the rename durable.
    fn install(&self, tmp: &Path, dest: &Path) -> io::Result<()> {
        let parent = dest
            .parent()
            .ok_or_else(|| invalid_data("object path without a parent"))?;
        fs::create_dir_all(parent)?;
        fs::rename(tmp, dest)?;
        fsync_dir(parent)
    }

    fn write_small_atomically(&self, dest: &Path, bytes: &[u8]) -> io::Result<()> {
        let tmp = self.root.join("tmp").join(random_token());
        let result = (|| {
            let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            self.install(&tmp, dest)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn open_object(path: &Path) -> io::Result<OpenObject> {
        let mut file = File::open(path)?;
        let file_len = file.metadata()?.len();
        let mut fixed = [0u8; 12];
        file.read_exact(&mut fixed)?;
        if &fixed[..8] != MAGIC {
            return Err(invalid_data("not a local-store object file"));
        }
        let meta_len = u32::from_le_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]);
        let mut meta = vec![0u8; meta_len as usize];
        file.read_exact(&mut meta)?;
        let header: ObjectHeader =
            serde_json::from_slice(&meta).map_err(|_| invalid_data("bad object metadata"))?;
        let content_offset = 12 + u64::from(meta_len);
        let size = file_len
            .checked_sub(content_offset)
            .ok_or_else(|| invalid_data("object file shorter than its header"))?;
        Ok(OpenObject {
            file,
            header,
            content_offset,
            size,
        })
    }

    fn read_sidecar(&self, relative: &Path) -> Option<RestoreSidecar> {
        let bytes = fs::read(sidecar_path(&self.root, relative)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn restore_status(&self, relative: &Path, header: &ObjectHeader, now: u64) -> RestoreStatus {
        if !StorageClass::from_s3_str(&header.storage_class).is_archive() {
            return RestoreStatus::NotArchived;
        }
        match self.read_sidecar(relative) {
            Some(s) if s.etag == header.etag && now < s.ready_unix_ms => RestoreStatus::InProgress,
            Some(s) if s.etag == header.etag && now < s.expires_unix_ms => {
                RestoreStatus::Restored {
                    expiry: Some(format!("@{}", s.expires_unix_ms / 1000)),
                }
            }
            _ => RestoreStatus::Archived,
        }
    }

    fn remove_sidecar(&self, relative: &Path) -> io::Result<()> {
        match fs::remove_file(sidecar_path(&self.root, relative)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn list_sync(&self, prefix: &str, start_after: Option<&str>) -> io::Result<ListPage> {
        let mut objects = Vec::new();
        self.walk(
            &self.root.join("objects"),
            "",
            prefix,
            start_after,
            &mut objects,
        )?;
        let next = (objects.len() >= LIST_PAGE)
            .then(|| objects.last().map(|o| o.key.clone()))
            .flatten();
        Ok(ListPage { objects, next })
    }

    /// Visits the tree in key order, pruning directories that can hold no
    /// key under `prefix` or after `start_after`, and stops at a page.
    fn walk(
        &self,
        dir: &Path,
        dir_key: &str,
        prefix: &str,
        start_after: Option<&str>,
        out: &mut Vec<ObjectSummary>,
    ) -> io::Result<()> {
        // Each entry stands for a key (file) or for every key starting with
        // `name/` (directory); sorting by that string sorts by key.
        let mut entries: Vec<(String, bool, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if entry.file_type()?.is_dir() {
                if let Some(segment) = decode_segment(name) {
                    entries.push((format!("{dir_key}{segment}/"), true, entry.path()));
                }
            } else if let Some(segment) = name.strip_suffix(OBJECT_SUFFIX).and_then(decode_segment)
            {
                entries.push((format!("{dir_key}{segment}"), false, entry.path()));
            }
        }
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (key, is_dir, path) in entries {
            if out.len() >= LIST_PAGE {
                return Ok(());
            }
            if is_dir {
                let under_prefix = key.starts_with(prefix) || prefix.starts_with(&key);
                let all_before_start =
                    start_after.is_some_and(|s| s >= key.as_str() && !s.starts_with(&key));
                if under_prefix && !all_before_start {
                    self.walk(&path, &key, prefix, start_after, out)?;
                }
            } else if key.starts_with(prefix)
                && start_after.filter(|s| key.as_str() <= *s).is_none()
            {
                let object = match Self::open_object(&path) {
                    Ok(o) => o,
                    // Deleted since the directory was read.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                out.push(ObjectSummary {
                    key,
                    size: object.size,
                    storage_class: StorageClass::from_s3_str(&object.header.storage_class),
                });
            }
        }
        Ok(())
    }

    fn upload_dir(
        &self,
        op: &'static str,
        key: &str,
        upload_id: &str,
    ) -> Result<PathBuf, StoreError> {
        let valid = !upload_id.is_empty() && upload_id.bytes().all(|b| b.is_ascii_hexdigit());
        let dir = self.root.join("uploads").join(upload_id);
        if !valid || !dir.is_dir() {
            return Err(StoreError::new(
                ErrorKind::NotFound,
                op,
                key,
                "no such multipart upload",
            ));
        }
        Ok(dir)
    }
}

fn part_etag(path: &Path) -> io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut crc = 0u32;
    let mut len = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok((format!("{crc:08x}-{len}"), len));
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        len += n as u64;
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    fn describe(&self) -> String {
        format!("local:{}", self.root.display())
    }

    async fn put(&self, key: &str, body: Bytes, class: &StorageClass) -> Result<(), StoreError> {
        let (path, relative) = self.object_file("put", key)?;
        let header = ObjectHeader {
            storage_class: class.as_s3_str().to_owned(),
            etag: random_token(),
        };
        let owned_key = key.to_owned();
        self.blocking("put", key, move |store| {
            store
                .write_object(&path, &header, &mut body.as_ref())
                .map_err(|e| io_error("put", &owned_key, e))?;
            store
                .remove_sidecar(&relative)
                .map_err(|e| io_error("put", &owned_key, e))
        })
        .await
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<Bytes, StoreError> {
        let (path, relative) = self.object_file("get", key)?;
        let owned_key = key.to_owned();
        self.blocking("get", key, move |store| {
            let key = owned_key.as_str();
            let mut object = LocalStore::open_object(&path).map_err(|e| io_error("get", key, e))?;
            if !store
                .restore_status(&relative, &object.header, now_ms())
                .is_readable()
            {
                return Err(StoreError::new(
                    ErrorKind::NotRestored,
                    "get",
                    key,
                    "object is archived; restore it first",
                ));
            }
            let (offset, len) = match range {
                None => (0, object.size),
                Some(r) if r.len == 0 => return Ok(Bytes::new()),
                Some(r) if r.offset >= object.size => {
                    return Err(StoreError::new(
                        ErrorKind::Permanent,
                        "get",
                        key,
                        "range starts past the end",
                    ))
                }
                Some(r) => (r.offset, r.len.min(object.size - r.offset)),
            };
            let len = usize::try_from(len).map_err(|_| {
                StoreError::new(ErrorKind::Permanent, "get", key, "range too large")
            })?;
            let mut buf = vec![0u8; len];
            object
                .file
                .seek(SeekFrom::Start(object.content_offset + offset))
                .and_then(|_| object.file.read_exact(&mut buf))
                .map_err(|e| io_error("get", key, e))?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        let (path, relative) = self.object_file("head", key)?;
        let owned_key = key.to_owned();
        self.blocking("head", key, move |store| {
            let object =
                LocalStore::open_object(&path).map_err(|e| io_error("head", &owned_key, e))?;
            Ok(ObjectMeta {
                size: object.size,
                storage_class: StorageClass::from_s3_str(&object.header.storage_class),
                restore: store.restore_status(&relative, &object.header, now_ms()),
                etag: Some(object.header.etag),
            })
        })
        .await
    }

    async fn list_page(
        &self,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<ListPage, StoreError> {
        let owned_prefix = prefix.to_owned();
        self.blocking("list", prefix, move |store| {
            store
                .list_sync(&owned_prefix, continuation.as_deref())
                .map_err(|e| io_error("list", &owned_prefix, e))
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let (path, relative) = self.object_file("delete", key)?;
        let owned_key = key.to_owned();
        self.blocking("delete", key, move |store| {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io_error("delete", &owned_key, e))
                }
                _ => {}
            }
            store
                .remove_sidecar(&relative)
                .map_err(|e| io_error("delete", &owned_key, e))
        })
        .await
    }

    async fn copy_to_storage_class(
        &self,
        key: &str,
        class: &StorageClass,
    ) -> Result<(), StoreError> {
        let (path, relative) = self.object_file("copy", key)?;
        let owned_key = key.to_owned();
        let class = class.as_s3_str().to_owned();
        self.blocking("copy", key, move |store| {
            let key = owned_key.as_str();
            let mut object =
                LocalStore::open_object(&path).map_err(|e| io_error("copy", key, e))?;
            // As on S3: an archived object must be restored before it can be
            // copied anywhere, even to another archive class.
            if !store
                .restore_status(&relative, &object.header, now_ms())
                .is_readable()
            {
                return Err(StoreError::new(
                    ErrorKind::NotRestored,
                    "copy",
                    key,
                    "object is archived; restore it first",
                ));
            }
            let header = ObjectHeader {
                storage_class: class,
                etag: random_token(),
            };
            object
                .file
                .seek(SeekFrom::Start(object.content_offset))
                .map_err(|e| io_error("copy", key, e))?;
            store
                .write_object(&path, &header, &mut object.file)
                .map_err(|e| io_error("copy", key, e))?;
            store
                .remove_sidecar(&relative)
                .map_err(|e| io_error("copy", key, e))
        })
        .await
    }

    async fn restore(&self, key: &str, _tier: RestoreTier, days: u32) -> Result<(), StoreError> {
        let (path, relative) = self.object_file("restore", key)?;
        let owned_key = key.to_owned();
        self.blocking("restore", key, move |store| {
            let key = owned_key.as_str();
            let object = LocalStore::open_object(&path).map_err(|e| io_error("restore", key, e))?;
            let now = now_ms();
            let lifetime = u64::from(days.max(1)) * DAY_MS;
            let sidecar = match store.restore_status(&relative, &object.header, now) {
                RestoreStatus::NotArchived => {
                    return Err(StoreError::new(
                        ErrorKind::Permanent,
                        "restore",
                        key,
                        "object is not archived",
                    ))
                }
                RestoreStatus::InProgress => return Ok(()),
                // Like S3, restoring a restored copy extends its lifetime.
                RestoreStatus::Restored { .. } => RestoreSidecar {
                    etag: object.header.etag,
                    ready_unix_ms: now,
                    expires_unix_ms: now + lifetime,
                },
                RestoreStatus::Archived => {
                    let ready = now
                        + u64::try_from(store.restore_delay.as_millis()).unwrap_or(u64::MAX / 2);
                    RestoreSidecar {
                        etag: object.header.etag,
                        ready_unix_ms: ready,
                        expires_unix_ms: ready + lifetime,
                    }
                }
            };
            let bytes = serde_json::to_vec(&sidecar)
                .map_err(|e| io_error("restore", key, io::Error::other(e)))?;
            store
                .write_small_atomically(&sidecar_path(&store.root, &relative), &bytes)
                .map_err(|e| io_error("restore", key, e))
        })
        .await
    }

    async fn create_multipart(
        &self,
        key: &str,
        class: &StorageClass,
    ) -> Result<String, StoreError> {
        self.object_file("create_multipart", key)?;
        let target = UploadTarget {
            key: key.to_owned(),
            storage_class: class.as_s3_str().to_owned(),
        };
        let owned_key = key.to_owned();
        self.blocking("create_multipart", key, move |store| {
            let key = owned_key.as_str();
            let upload_id = random_token();
            let dir = store.root.join("uploads").join(&upload_id);
            let bytes = serde_json::to_vec(&target)
                .map_err(|e| io_error("create_multipart", key, io::Error::other(e)))?;
            fs::create_dir_all(&dir)
                .and_then(|_| store.write_small_atomically(&dir.join("target"), &bytes))
                .map_err(|e| io_error("create_multipart", key, e))?;
            Ok(upload_id)
        })
        .await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Bytes,
    ) -> Result<CompletedPart, StoreError> {
        if !(1..=10_000).contains(&part_number) {
            return Err(StoreError::new(
                ErrorKind::Permanent,
                "upload_part",
                key,
                "part number must be 1..=10000",
            ));
        }
        let dir = self.upload_dir("upload_part", key, upload_id)?;
        let owned_key = key.to_owned();
        self.blocking("upload_part", key, move |store| {
            let key = owned_key.as_str();
            let path = dir.join(format!("{part_number:05}.part"));
            store
                .write_small_atomically(&path, &body)
                .map_err(|e| io_error("upload_part", key, e))?;
            let etag = format!("{:08x}-{}", crc32c::crc32c(&body), body.len());
            Ok(CompletedPart { part_number, etag })
        })
        .await
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), StoreError> {
        let dir = self.upload_dir("complete_multipart", key, upload_id)?;
        let (path, relative) = self.object_file("complete_multipart", key)?;
        let owned_key = key.to_owned();
        self.blocking("complete_multipart", key, move |store| {
            let key = owned_key.as_str();
            let op = "complete_multipart";
            let fail = |kind, detail: &str| StoreError::new(kind, op, key, detail.to_owned());
            let target: UploadTarget = fs::read(dir.join("target"))
                .map_err(|e| io_error(op, key, e))
                .and_then(|b| {
                    serde_json::from_slice(&b)
                        .map_err(|_| fail(ErrorKind::Corrupt, "bad upload record"))
                })?;
            if target.key != key {
                return Err(fail(ErrorKind::NotFound, "upload belongs to another key"));
            }
            if parts.is_empty()
                || parts
                    .windows(2)
                    .any(|w| w[0].part_number >= w[1].part_number)
            {
                return Err(fail(
                    ErrorKind::Permanent,
                    "parts must be given in ascending order",
                ));
            }
            let mut files = Vec::with_capacity(parts.len());
            for (i, part) in parts.iter().enumerate() {
                let part_path = dir.join(format!("{:05}.part", part.part_number));
                let (etag, len) = part_etag(&part_path).map_err(|e| io_error(op, key, e))?;
                if etag != part.etag {
                    return Err(fail(ErrorKind::Permanent, "part ETag does not match"));
                }
                if i + 1 < parts.len() && len < MIN_MULTIPART_PART as u64 {
                    return Err(fail(
                        ErrorKind::Permanent,
                        "part smaller than 5 MiB before the last",
                    ));
                }
                files.push(File::open(&part_path).map_err(|e| io_error(op, key, e))?);
            }
            let mut content = files
                .into_iter()
                .fold(Box::new(io::empty()) as Box<dyn Read>, |acc, f| {
                    Box::new(acc.chain(f))
                });
            let header = ObjectHeader {
                storage_class: target.storage_class,
                etag: random_token(),
            };
            store
                .write_object(&path, &header, &mut content)
                .map_err(|e| io_error(op, key, e))?;
            store
                .remove_sidecar(&relative)
                .map_err(|e| io_error(op, key, e))?;
            fs::remove_dir_all(&dir).map_err(|e| io_error(op, key, e))
        })
        .await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        let dir = self.upload_dir("abort_multipart", key, upload_id)?;
        let owned_key = key.to_owned();
        self.blocking("abort_multipart", key, move |_| {
            fs::remove_dir_all(&dir).map_err(|e| io_error("abort_multipart", &owned_key, e))
        })
        .await
    }
}
