//! The cloud layer: everything the gateway keeps in an object store goes
//! through here. It knows nothing of SCSI (DESIGN.md §2, §3).
//!
//! - [`store`]: the object-store trait, S3 and the embedded local store;
//! - [`CloudStore`]: retries, bandwidth schedule and metrics around a store;
//! - [`chunk`], [`keys`], [`layout`], [`aead`]: chunk format v1, key
//!   hierarchy, bucket layout (docs/FORMAT.md) and their cipher;
//! - [`Keyring`], [`Uploader`], [`ChunkReader`]: data keys, the upload
//!   pipeline and the read path;
//! - [`inspect`]: the gateway-less reader behind `sgw inspect`.
//!
//! The daemon builds it all from a [`CloudConfig`] with [`CloudLayer::start`].

pub mod aead;
pub mod bandwidth;
pub mod chunk;
mod chunk_reader;
mod cloud_store;
pub mod error;
pub mod inspect;
mod keyring;
pub mod keys;
pub mod layout;
pub mod metrics;
pub mod retry;
pub mod store;
pub mod uploader;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use bandwidth::{BandwidthInterval, BandwidthSchedule, ScheduleError, ScheduleHandle};
pub use chunk::{ChunkCodec, ChunkId, DEFAULT_ZSTD_LEVEL};
pub use chunk_reader::ChunkReader;
pub use cloud_store::CloudStore;
pub use error::{CloudError, ErrorKind, StoreError};
pub use keyring::{load_data_key, rotate_master_key, Keyring, RotationReport};
pub use keys::MasterKey;
pub use layout::{BucketLayout, InvalidName, Namespace};
pub use metrics::CloudMetrics;
pub use retry::RetryPolicy;
pub use store::{open_store, ObjectStore, StoreConfig};
pub use uploader::{UploadCompletion, UploadJob, Uploader, UploaderConfig};

/// The `[cloud]` section of the gateway configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudConfig {
    pub store: StoreConfig,
    /// This gateway's prefix in the bucket (several gateways may share one).
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub retry: RetryPolicy,
    #[serde(default)]
    pub bandwidth: BandwidthSchedule,
    #[serde(default)]
    pub uploader: UploaderConfig,
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
}

fn default_zstd_level() -> i32 {
    DEFAULT_ZSTD_LEVEL
}

/// Why the cloud layer could not start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cloud configuration: {0}")]
    Schedule(#[from] ScheduleError),
    #[error("cloud configuration: {0}")]
    Name(#[from] InvalidName),
    #[error("cloud metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("object store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot start the chunk encoder threads: {0}")]
    Encoders(#[from] rayon::ThreadPoolBuildError),
}

/// The running cloud layer, as the daemon holds it.
pub struct CloudLayer {
    /// The store with retries, pacing and metrics; use it for anything
    /// that is not a chunk (manifests, tape indexes, archiving).
    pub store: CloudStore,
    pub keyring: Arc<Keyring>,
    pub reader: ChunkReader,
    pub uploader: Uploader,
}

impl CloudLayer {
    /// Opens the store, registers the metrics on `registry` and starts the
    /// uploader. Upload completions arrive on the returned receiver.
    pub async fn start(
        config: &CloudConfig,
        master_key: MasterKey,
        registry: &prometheus::Registry,
    ) -> Result<(CloudLayer, mpsc::Receiver<UploadCompletion>), SetupError> {
        config.bandwidth.validate()?;
        let layout = BucketLayout::new(&config.prefix)?;
        let metrics = CloudMetrics::register(registry)?;
        let backend = open_store(&config.store).await?;
        let store = CloudStore::new(
            backend,
            config.retry.clone(),
            bandwidth::ScheduleHandle::new(config.bandwidth.clone()),
            metrics,
        );
        let shared: Arc<dyn ObjectStore> = Arc::new(store.clone());
        let keyring = Arc::new(Keyring::new(
            shared.clone(),
            layout,
            master_key,
            config.zstd_level,
        ));
        let reader = ChunkReader::new(shared, keyring.clone());
        let (uploader, completions) =
            Uploader::start(&config.uploader, store.clone(), keyring.clone())?;
        Ok((
            CloudLayer {
                store,
                keyring,
                reader,
                uploader,
            },
            completions,
        ))
    }
}
