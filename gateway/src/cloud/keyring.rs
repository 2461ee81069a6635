//! Data keys in the bucket: loading, creating on first use, and rewrapping
//! them all when the master key changes.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::chunk::ChunkCodec;
use super::error::{CloudError, ErrorKind, StoreError};
use super::keys::{DataKey, MasterKey, WrappedDataKey};
use super::layout::{BucketLayout, BucketMarker, Namespace, ObjectRole};
use super::store::{list_all, ObjectStore, StorageClass};

/// The codecs of the namespaces this gateway touches, keyed by namespace.
///
/// One gateway writes a prefix at a time (DESIGN.md §7): creating a data key
/// is check-then-put, safe against concurrent tasks of this process (they
/// are serialised here) but not against a second gateway on the same prefix.
#[derive(Debug)]
pub struct Keyring {
    store: Arc<dyn ObjectStore>,
    layout: BucketLayout,
    master: MasterKey,
    zstd_level: i32,
    codecs: tokio::sync::Mutex<HashMap<Namespace, Arc<ChunkCodec>>>,
}

impl Keyring {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        layout: BucketLayout,
        master: MasterKey,
        zstd_level: i32,
    ) -> Keyring {
        Keyring {
            store,
            layout,
            master,
            zstd_level,
            codecs: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    pub fn layout(&self) -> &BucketLayout {
        &self.layout
    }

    /// The codec of `namespace`, creating and storing its data key (and the
    /// bucket marker) the first time anything is written to it.
    pub async fn codec_for_writing(
        &self,
        namespace: &Namespace,
    ) -> Result<Arc<ChunkCodec>, CloudError> {
        self.codec(namespace, true).await
    }

    /// The codec of an existing namespace; `NotFound` if it has no data key.
    pub async fn codec_for_reading(
        &self,
        namespace: &Namespace,
    ) -> Result<Arc<ChunkCodec>, CloudError> {
        self.codec(namespace, false).await
    }

    async fn codec(
        &self,
        namespace: &Namespace,
        create: bool,
    ) -> Result<Arc<ChunkCodec>, CloudError> {
        // Held across the bucket round trips so that two tasks can never
        // both create a key for the same namespace.
        let mut codecs = self.codecs.lock().await;
        if let Some(codec) = codecs.get(namespace) {
            return Ok(codec.clone());
        }
        let key =
            match load_data_key(self.store.as_ref(), &self.layout, &self.master, namespace).await {
                Ok(key) => key,
                Err(CloudError::Store(e)) if e.kind() == ErrorKind::NotFound && create => {
                    self.create_data_key(namespace).await?
                }
                Err(e) => return Err(e),
            };
        let codec = Arc::new(ChunkCodec::new(&key, self.zstd_level));
        codecs.insert(namespace.clone(), codec.clone());
        Ok(codec)
    }

    async fn create_data_key(&self, namespace: &Namespace) -> Result<DataKey, CloudError> {
        ensure_marker(self.store.as_ref(), &self.layout).await?;
        let key = DataKey::generate();
        let record = WrappedDataKey::wrap(&self.master, namespace, &key);
        self.store
            .put(
                &self.layout.data_key_key(namespace),
                Bytes::from(record.to_json()),
                &StorageClass::Standard,
            )
            .await?;
        tracing::info!(%namespace, key_id = %record.key_id, "created data key");
        Ok(key)
    }
}

/// Reads and unwraps the data key of `namespace`.
pub async fn load_data_key(
    store: &dyn ObjectStore,
    layout: &BucketLayout,
    master: &MasterKey,
    namespace: &Namespace,
) -> Result<DataKey, CloudError> {
    let bytes = store.get(&layout.data_key_key(namespace), None).await?;
    Ok(WrappedDataKey::from_json(&bytes)?.unwrap_key(master, namespace)?)
}

/// Writes the bucket marker unless it is there.
async fn ensure_marker(store: &dyn ObjectStore, layout: &BucketLayout) -> Result<(), StoreError> {
    let key = layout.marker_key();
    match store.head(&key).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let marker = serde_json::to_vec_pretty(&BucketMarker::current())
                .map_err(|e| StoreError::new(ErrorKind::Permanent, "put", &key, e.to_string()))?;
            store
                .put(&key, Bytes::from(marker), &StorageClass::Standard)
                .await
        }
        Err(e) => Err(e),
    }
}

/// What a master-key rotation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RotationReport {
    pub rewrapped: usize,
    /// Records already under the new key (a rotation that was interrupted
    /// and run again).
    pub already_current: usize,
}

/// Rewraps every data key under the prefix from `old` to `new`. Chunk
/// objects are not touched. Each record is replaced atomically, so an
/// interrupted rotation is finished by running it again with the same keys.
/// The gateway must hold `new` before this starts.
pub async fn rotate_master_key(
    store: &dyn ObjectStore,
    layout: &BucketLayout,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<RotationReport, CloudError> {
    let mut report = RotationReport::default();
    for object in list_all(store, &layout.keys_prefix()).await? {
        let ObjectRole::DataKey(namespace) = layout.classify(&object.key) else {
            continue;
        };
        let record = WrappedDataKey::from_json(&store.get(&object.key, None).await?)?;
        if record.master_key_id == new.id() {
            report.already_current += 1;
            continue;
        }
        let key = record.unwrap_key(old, &namespace)?;
        let rewrapped = WrappedDataKey::wrap(new, &namespace, &key);
        store
            .put(
                &object.key,
                Bytes::from(rewrapped.to_json()),
                &StorageClass::Standard,
            )
            .await?;
        report.rewrapped += 1;
    }
    Ok(report)
}
