//! `sgw serve`: the iSCSI portal and the admin API until SIGTERM or SIGINT.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cache::{Cache, CacheConfig, DiskSpec};
use iscsi_target::server::{Server, ServerConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::api::{self, AppState};
use crate::cached::map::MapStore;
use crate::cached::metrics::VolumeMetrics;
use crate::cached::{CachedVolumes, Engine};
use crate::cloud::{CloudLayer, MasterKey};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::tapes::TapeLibrary;
use crate::targets::GatewayTargets;
use crate::volumes::VolumeManager;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot open the data directory: {0}")]
    Volumes(#[from] crate::volumes::VolumeError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("master key: {0}")]
    Key(String),
    #[error("cloud: {0}")]
    Cloud(String),
    #[error("cache: {0}")]
    Cache(#[from] cache::Error),
    #[error("tape library: {0}")]
    Tapes(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Reads the master key file, or makes one on first start.
fn load_or_create_master_key(path: &Path) -> Result<(MasterKey, bool), DaemonError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key = MasterKey::from_hex(text.trim()).map_err(|e| DaemonError::Key(format!("{}: {e}", path.display())))?;
            Ok((key, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let key = MasterKey::generate();
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
            f.write_all(format!("{}\n", key.to_recovery_text()).as_bytes())?;
            f.sync_all()?;
            Ok((key, true))
        }
        Err(e) => Err(DaemonError::Key(format!("{}: {e}", path.display()))),
    }
}

/// The cache copies large writes on the I/O threads that file-backed
/// volumes use, rather than on the async workers (see `cache::Offload`).
struct IoThreads;

impl cache::Offload for IoThreads {
    fn spawn(&self, job: Box<dyn FnOnce() + Send>) {
        iscsi_target::scsi::block::submit_io(job);
    }
}

/// Command-line choices that are not configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Adopt the volumes a previous gateway left in the bucket.
    pub recover: bool,
}

pub async fn run(config: Config, options: RunOptions) -> Result<(), DaemonError> {
    std::fs::create_dir_all(&config.data_dir)?;
    let metrics = Arc::new(Metrics::new()?);
    let shutdown = CancellationToken::new();

    let key_path = config.key_file();
    let (master_key, new_key) = load_or_create_master_key(&key_path)?;
    let (cloud, completions) = CloudLayer::start(&config.cloud(), master_key, &metrics.registry)
        .await
        .map_err(|e| DaemonError::Cloud(e.to_string()))?;
    let cloud = Arc::new(cloud);
    if new_key {
        if CachedVolumes::read_catalog(&cloud).await.map_err(|e| DaemonError::Cloud(e.to_string()))?.is_some() {
            let _ = std::fs::remove_file(&key_path);
            return Err(DaemonError::Key(format!(
                "the bucket already holds a gateway's data: supply its master key with --key-file (no key at {})",
                key_path.display()
            )));
        }
        warn!(
            key_file = %key_path.display(),
            "generated a new master key: copy this file somewhere apart from the gateway; \
             without it nothing in the bucket can be read"
        );
    }

    let cache_dir = config.data_dir.join("cache");
    std::fs::create_dir_all(&cache_dir)?;
    let mut cache_config = CacheConfig::new(
        cache_dir.join("index"),
        vec![DiskSpec { path: config.cache_disk(), size_bytes: config.cache_size }],
    );
    // Small caches still need room between the watermarks for two chunks.
    let chunk = u64::from(cache_config.chunk_size);
    cache_config.dirty_low_watermark = cache_config.dirty_low_watermark.min(cache_config.dirty_high_watermark.saturating_sub(2 * chunk));
    let high_watermark = cache_config.dirty_high_watermark;
    let cache = Arc::new(Cache::open(cache_config, &metrics.registry)?);
    cache.offload_large_writes(Arc::new(IoThreads));
    let maps = Arc::new(MapStore::open(&cache_dir.join("maps")).map_err(|e| DaemonError::Io(std::io::Error::other(e)))?);
    let engine = Engine::new(cache.clone(), cloud.clone(), maps, VolumeMetrics::register(&metrics.registry)?);
    engine.start(completions, shutdown.clone());
    let service = CachedVolumes::new(engine.clone(), &config.data_dir).map_err(|e| DaemonError::Cloud(e.to_string()))?;

    let volumes = Arc::new(VolumeManager::open(&config.data_dir, Some(service.clone()), high_watermark).await?);
    if options.recover {
        let n = volumes.recover().await?;
        info!(volumes = n, "recovered volumes from the bucket");
    }
    tokio::spawn(
        service.clone().run_background(Duration::from_secs(config.recovery_point_interval_secs), shutdown.clone()),
    );

    let tapes = TapeLibrary::start(&config.data_dir, engine.clone(), config.tapes(), &metrics.registry, shutdown.clone())
        .await
        .map_err(|e| DaemonError::Tapes(e.to_string()))?;
    let targets = Arc::new(GatewayTargets { volumes: volumes.clone(), tapes: tapes.clone() });
    let iscsi = Server::new(targets, ServerConfig::default());
    let portal = TcpListener::bind(config.iscsi_listen)
        .await
        .map_err(|source| DaemonError::Bind { addr: config.iscsi_listen, source })?;
    let api_listener = TcpListener::bind(config.api_listen)
        .await
        .map_err(|source| DaemonError::Bind { addr: config.api_listen, source })?;
    tokio::spawn(stop_on_signal(shutdown.clone()));

    let state = AppState {
        volumes: volumes.clone(),
        iscsi: iscsi.clone(),
        metrics,
        cached: Some(service.clone()),
        tapes: tapes.clone(),
    };
    let iscsi_task = tokio::spawn(iscsi.clone().run(portal, shutdown.clone()));
    info!(
        iscsi = %config.iscsi_listen,
        api = %config.api_listen,
        data_dir = %config.data_dir.display(),
        volumes = volumes.list().len(),
        cache_bytes = config.cache_size,
        "sgw ready"
    );
    let api = axum::serve(api_listener, api::router(state)).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    if let Err(e) = api.await {
        error!(error = %e, "admin API failed");
        shutdown.cancel();
    }
    match iscsi_task.await {
        Ok(Err(e)) => error!(error = %e, "iSCSI portal failed"),
        Err(e) => error!(error = %e, "iSCSI portal task failed"),
        Ok(Ok(())) => {}
    }
    volumes.flush_all().await?;
    // What the drives hold reaches the cache before the cache flush.
    tapes.flush().await;
    cache.flush().await?;
    info!("sgw stopped");
    Ok(())
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: shutting down"),
        _ = int.recv() => info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}
