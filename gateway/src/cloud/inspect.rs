//! The gateway-less reader: lists a gateway's objects in a bucket or local
//! store directory and decodes and verifies each one with the key material,
//! without a running gateway. `sgw inspect` is a thin wrapper over
//! [`InspectArgs::run`]; library users call [`inspect`].

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::chunk::{ChunkCodec, ChunkHeader, DEFAULT_ZSTD_LEVEL};
use super::error::{CloudError, ErrorKind};
use super::keyring::load_data_key;
use super::keys::MasterKey;
use super::layout::{BucketLayout, BucketMarker, Namespace, ObjectRole};
use super::store::{
    list_all, LocalStore, ObjectStore, ObjectSummary, S3Config, S3Store, StorageClass,
};

/// What to inspect and with which key.
#[derive(Debug, Clone)]
pub struct InspectOptions {
    pub layout: BucketLayout,
    /// Without it, objects are listed and their headers checked only.
    pub master_key: Option<MasterKey>,
    /// Only this namespace (and the bucket marker).
    pub namespace: Option<Namespace>,
}

/// The verdict on one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectStatus {
    /// Decoded and verified (chunks: authenticated and hash-checked);
    /// `plain_len` is the plaintext size of a chunk, 0 for other objects.
    Verified {
        detail: String,
        plain_len: u64,
    },
    /// Header and checksum fine; not decrypted (no key given).
    HeaderOk {
        detail: String,
    },
    /// In an archive class with no restored copy: not readable now.
    Archived,
    Failed {
        kind: ErrorKind,
        message: String,
    },
    /// Not something this format writes.
    Unknown,
}

#[derive(Debug, Clone)]
pub struct ObjectReport {
    pub key: String,
    pub size: u64,
    pub storage_class: StorageClass,
    pub status: ObjectStatus,
}

impl fmt::Display for ObjectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (tag, detail) = match &self.status {
            ObjectStatus::Verified { detail, .. } => ("OK", detail.clone()),
            ObjectStatus::HeaderOk { detail } => ("HEADER-OK", detail.clone()),
            ObjectStatus::Archived => ("ARCHIVED", "restore before reading".to_owned()),
            ObjectStatus::Failed { kind, message } => ("FAILED", format!("{kind}: {message}")),
            ObjectStatus::Unknown => ("UNKNOWN", "not an sgw object".to_owned()),
        };
        write!(
            f,
            "{tag:<9} {:>10} {:<12} {} {detail}",
            self.size, self.storage_class, self.key
        )
    }
}

/// Counts over all inspected objects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InspectSummary {
    pub marker: Option<BucketMarker>,
    pub objects: usize,
    pub verified: usize,
    pub header_only: usize,
    pub archived: usize,
    pub failed: usize,
    pub unknown: usize,
    pub stored_bytes: u64,
    /// Plaintext bytes of the verified chunks.
    pub plain_bytes: u64,
}

impl fmt::Display for InspectSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let format = self
            .marker
            .as_ref()
            .map_or("no bucket marker".to_owned(), |m| {
                format!("{} v{}", m.format, m.version)
            });
        write!(
            f,
            "{format}: {} objects, {} verified, {} header only, {} archived, {} failed, {} unknown; \
             {} bytes stored, {} plaintext bytes verified",
            self.objects, self.verified, self.header_only, self.archived, self.failed, self.unknown,
            self.stored_bytes, self.plain_bytes
        )
    }
}

/// Inspects every object under the layout's prefix, calling `report` for
/// each as it goes. Problems with single objects are reported, not
/// returned; only a failure to list ends the run early.
pub async fn inspect(
    store: &dyn ObjectStore,
    options: &InspectOptions,
    mut report: impl FnMut(&ObjectReport),
) -> Result<InspectSummary, CloudError> {
    let layout = &options.layout;
    let mut objects = list_all(store, &layout.root()).await?;
    if let Some(namespace) = &options.namespace {
        let own = layout.namespace_prefix(namespace);
        let key = layout.data_key_key(namespace);
        let marker = layout.marker_key();
        objects.retain(|o| o.key.starts_with(&own) || o.key == key || o.key == marker);
    }
    let mut codecs: HashMap<Namespace, Result<Arc<ChunkCodec>, CloudError>> = HashMap::new();
    let mut summary = InspectSummary::default();
    for object in objects {
        let status = match layout.classify(&object.key) {
            ObjectRole::Marker => inspect_marker(store, &object, &mut summary).await,
            ObjectRole::DataKey(namespace) => match options.master_key.as_ref() {
                Some(master) => {
                    key_status(codec_for(&mut codecs, store, layout, master, &namespace).await)
                }
                None => ObjectStatus::HeaderOk {
                    detail: "wrapped data key".to_owned(),
                },
            },
            ObjectRole::Chunk(namespace, id) => {
                let codec = match options.master_key.as_ref() {
                    Some(master) => {
                        Some(codec_for(&mut codecs, store, layout, master, &namespace).await)
                    }
                    None => None,
                };
                inspect_chunk(store, &object, codec, id).await
            }
            ObjectRole::Manifest(..) => inspect_json(store, &object, "root manifest").await,
            ObjectRole::Catalog => inspect_json(store, &object, "catalog").await,
            ObjectRole::TapeIndex(_) => inspect_tape_index(store, &object).await,
            ObjectRole::Unknown => ObjectStatus::Unknown,
        };
        summary.objects += 1;
        summary.stored_bytes += object.size;
        match &status {
            ObjectStatus::Verified { plain_len, .. } => {
                summary.verified += 1;
                summary.plain_bytes += plain_len;
            }
            ObjectStatus::HeaderOk { .. } => summary.header_only += 1,
            ObjectStatus::Archived => summary.archived += 1,
            ObjectStatus::Failed { .. } => summary.failed += 1,
            ObjectStatus::Unknown => summary.unknown += 1,
        }
        report(&ObjectReport {
            key: object.key,
            size: object.size,
            storage_class: object.storage_class,
            status,
        });
    }
    Ok(summary)
}

/// Manifests and the catalog are plain JSON: check that they parse.
async fn inspect_json(store: &dyn ObjectStore, object: &ObjectSummary, what: &str) -> ObjectStatus {
    match store.get(&object.key, None).await {
        Ok(body) => match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(_) => ObjectStatus::Verified { detail: what.to_owned(), plain_len: body.len() as u64 },
            Err(e) => ObjectStatus::Failed { kind: ErrorKind::Corrupt, message: format!("{what}: {e}") },
        },
        Err(e) => failed(&CloudError::from(e)),
    }
}

/// A tape index: decode it (the format carries its own crc32c).
async fn inspect_tape_index(store: &dyn ObjectStore, object: &ObjectSummary) -> ObjectStatus {
    match store.get(&object.key, None).await {
        Ok(body) => match vtl::format::TapeIndex::decode(&body) {
            Ok(index) => ObjectStatus::Verified {
                detail: format!(
                    "tape index: {} objects, {} filemarks, {} bytes of data",
                    index.object_count(),
                    index.filemark_count(),
                    index.data_end()
                ),
                plain_len: 0,
            },
            Err(e) => ObjectStatus::Failed { kind: ErrorKind::Corrupt, message: format!("tape index: {e}") },
        },
        Err(e) => failed(&CloudError::from(e)),
    }
}

fn failed(e: &CloudError) -> ObjectStatus {
    ObjectStatus::Failed {
        kind: e.kind(),
        message: e.to_string(),
    }
}

fn key_status(codec: Result<Arc<ChunkCodec>, &CloudError>) -> ObjectStatus {
    match codec {
        Ok(codec) => ObjectStatus::Verified {
            detail: format!("data key {}", hex::encode(codec.key_id())),
            plain_len: 0,
        },
        Err(e) => failed(e),
    }
}

/// The namespace's codec, loaded once; a failure is remembered too so that
/// every chunk of a namespace with a bad key reports the same cause.
async fn codec_for<'a>(
    codecs: &'a mut HashMap<Namespace, Result<Arc<ChunkCodec>, CloudError>>,
    store: &dyn ObjectStore,
    layout: &BucketLayout,
    master: &MasterKey,
    namespace: &Namespace,
) -> Result<Arc<ChunkCodec>, &'a CloudError> {
    let slot = match codecs.entry(namespace.clone()) {
        Entry::Occupied(entry) => entry.into_mut(),
        Entry::Vacant(entry) => {
            let codec = load_data_key(store, layout, master, namespace)
                .await
                .map(|key| Arc::new(ChunkCodec::new(&key, DEFAULT_ZSTD_LEVEL)));
            entry.insert(codec)
        }
    };
    match slot {
        Ok(codec) => Ok(codec.clone()),
        Err(e) => Err(e),
    }
}

async fn inspect_marker(
    store: &dyn ObjectStore,
    object: &ObjectSummary,
    summary: &mut InspectSummary,
) -> ObjectStatus {
    let bytes = match store.get(&object.key, None).await {
        Ok(bytes) => bytes,
        Err(e) => return failed(&e.into()),
    };
    match serde_json::from_slice::<BucketMarker>(&bytes) {
        Ok(marker) if marker.format == BucketMarker::FORMAT => {
            let detail = format!("bucket format {} v{}", marker.format, marker.version);
            summary.marker = Some(marker);
            ObjectStatus::Verified {
                detail,
                plain_len: 0,
            }
        }
        _ => ObjectStatus::Failed {
            kind: ErrorKind::Corrupt,
            message: "not an sgw bucket marker".to_owned(),
        },
    }
}

async fn inspect_chunk(
    store: &dyn ObjectStore,
    object: &ObjectSummary,
    codec: Option<Result<Arc<ChunkCodec>, &CloudError>>,
    id: super::chunk::ChunkId,
) -> ObjectStatus {
    if object.storage_class.is_archive() {
        match store.restore_status(&object.key).await {
            Ok(status) if !status.is_readable() => return ObjectStatus::Archived,
            Ok(_) => {}
            Err(e) => return failed(&e.into()),
        }
    }
    let codec = match codec {
        Some(Ok(codec)) => Some(codec),
        Some(Err(e)) => return failed(e),
        None => None,
    };
    let bytes = match store.get(&object.key, None).await {
        Ok(bytes) => bytes,
        Err(e) => return failed(&e.into()),
    };
    let header = match ChunkHeader::parse(&bytes) {
        Ok(header) => header,
        Err(e) => return failed(&e.into()),
    };
    let detail = format!(
        "plain={} {} key={}",
        header.plain_len,
        if header.is_compressed() {
            "zstd"
        } else {
            "raw"
        },
        hex::encode(header.key_id)
    );
    let Some(codec) = codec else {
        return ObjectStatus::HeaderOk { detail };
    };
    match tokio::task::spawn_blocking(move || codec.decode(&id, bytes)).await {
        Ok(Ok(plain)) => ObjectStatus::Verified {
            detail,
            plain_len: plain.len() as u64,
        },
        Ok(Err(e)) => failed(&e.into()),
        Err(e) => failed(&CloudError::Worker(e.to_string())),
    }
}

/// `sgw inspect`: where the data is and which key opens it. S3 credentials
/// come from the standard AWS chain (environment, profile, instance role).
#[derive(Debug, Clone, clap::Args)]
pub struct InspectArgs {
    /// Directory of an embedded local store.
    #[arg(long, conflicts_with = "bucket", required_unless_present = "bucket")]
    pub dir: Option<PathBuf>,
    /// S3 bucket name.
    #[arg(long)]
    pub bucket: Option<String>,
    /// S3 endpoint URL, for services other than AWS.
    #[arg(long, requires = "bucket")]
    pub endpoint: Option<String>,
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// Path-style addressing (most non-AWS services need it).
    #[arg(long)]
    pub path_style: bool,
    /// The gateway's prefix in the bucket.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// File holding the master key (the recovery key: 64 hex digits).
    /// Without it, only headers and checksums are checked.
    #[arg(long, env = "SGW_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// Only this volume or tape.
    #[arg(long)]
    pub namespace: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("{0}")]
    Usage(&'static str),
    #[error("cannot read the master key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error("cannot write the report: {0}")]
    Output(std::io::Error),
}

impl InspectArgs {
    /// Runs the inspection, writing one line per object and a summary to
    /// `out`. The caller turns `summary.failed > 0` into a failing exit.
    pub async fn run(&self, out: &mut dyn Write) -> Result<InspectSummary, InspectError> {
        let master_key = match &self.master_key_file {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| InspectError::KeyFile {
                        path: path.clone(),
                        source,
                    })?;
                Some(MasterKey::from_hex(&text).map_err(CloudError::from)?)
            }
            None => None,
        };
        let namespace = self
            .namespace
            .as_deref()
            .map(Namespace::new)
            .transpose()
            .map_err(CloudError::from)?;
        let options = InspectOptions {
            layout: BucketLayout::new(&self.prefix).map_err(CloudError::from)?,
            master_key,
            namespace,
        };
        let store: Arc<dyn ObjectStore> = match (&self.dir, &self.bucket) {
            (Some(dir), _) => {
                Arc::new(LocalStore::open(dir, Duration::ZERO).map_err(CloudError::from)?)
            }
            (None, Some(bucket)) => Arc::new(
                S3Store::connect(&S3Config {
                    bucket: bucket.clone(),
                    region: self.region.clone(),
                    endpoint: self.endpoint.clone(),
                    path_style: self.path_style,
                    access_key_id: None,
                    secret_access_key: None,
                    connect_timeout_secs: 10,
                })
                .await,
            ),
            (None, None) => return Err(InspectError::Usage("give --dir or --bucket")),
        };
        writeln!(
            out,
            "inspecting {} prefix {:?}",
            store.describe(),
            self.prefix
        )
        .map_err(InspectError::Output)?;
        let mut write_error = None;
        let summary = inspect(store.as_ref(), &options, |report| {
            if write_error.is_none() {
                write_error = writeln!(out, "{report}").err();
            }
        })
        .await?;
        if let Some(e) = write_error {
            return Err(InspectError::Output(e));
        }
        writeln!(out, "{summary}").map_err(InspectError::Output)?;
        Ok(summary)
    }
}
