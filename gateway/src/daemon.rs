//! `sgw serve`: the iSCSI portal and the admin API until SIGTERM or SIGINT.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cache::{Cache, CacheConfig, DiskSpec};
use iscsi_target::server::Server;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::admin::http::{AdminListener, HttpLimits, RouterSlot};
use crate::admin::sessions::SessionLimits;
use crate::admin::{tls, Plane, PlaneOptions};
use crate::api::AppState;
use crate::cached::map::MapStore;
use crate::cached::metrics::VolumeMetrics;
use crate::cached::{BackgroundSchedule, CachedVolumes, Engine};
use crate::cloud::{CloudLayer, MasterKey};
use crate::config::{Config, ConfigSources};
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
    Config(String),
    #[error("activation: {0}")]
    Activation(String),
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
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Adopt the volumes a previous gateway left in the bucket.
    pub recover: bool,
    /// Claim an unactivated gateway with this activation request (JSON)
    /// instead of waiting for an admin.
    pub activate_from: Option<std::path::PathBuf>,
}

/// The management plane's listeners, bound before anything is written so
/// that a busy port fails the start cleanly.
struct AdminListeners {
    http: TcpListener,
    https: TcpListener,
    socket: tokio::net::UnixListener,
}

async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, DaemonError> {
    TcpListener::bind(addr).await.map_err(|source| DaemonError::Bind { addr, source })
}

/// Reserves the iSCSI portal's address without listening yet: a busy port
/// fails the start before anything is written, but initiators are not
/// accepted (and left hanging) while the gateway waits for activation.
fn reserve_portal(addr: std::net::SocketAddr) -> Result<tokio::net::TcpSocket, DaemonError> {
    let err = |source| DaemonError::Bind { addr, source };
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }.map_err(err)?;
    // As std's TcpListener::bind does, so a restart is not refused while
    // the previous run's connections sit in TIME_WAIT.
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    Ok(socket)
}

/// Raises the open-file limit to its hard limit: every iSCSI session, API
/// connection and RocksDB table holds a descriptor, and the usual soft
/// limit of 1024 is reached long before memory or CPU run out.
fn raise_open_file_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit on a valid rlimit struct owned here.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= lim.rlim_max {
            return;
        }
        let before = lim.rlim_cur;
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
            info!(from = before, to = lim.rlim_max, "raised the open-file limit");
        } else {
            warn!(limit = before, error = %std::io::Error::last_os_error(), "cannot raise the open-file limit");
        }
    }
}

/// Tightens what an older version or a loose umask left readable by other
/// users: the data directory's tree, and the cache disk and master key
/// when they live elsewhere.
fn tighten_modes(config: &Config) -> Result<(), DaemonError> {
    let mut roots = vec![config.data_dir.clone()];
    for extra in [config.cache_disk(), config.key_file()] {
        if !extra.starts_with(&config.data_dir) && extra.exists() {
            roots.push(extra);
        }
    }
    for root in roots {
        for t in crate::data_dir::tighten(&root)? {
            warn!(path = %t.path.display(), was = %format!("{:o}", t.old_mode), "tightened to owner-only");
        }
    }
    Ok(())
}

fn bind_socket(path: &Path) -> Result<tokio::net::UnixListener, DaemonError> {
    use std::os::unix::fs::PermissionsExt;
    // The data directory's lock is held, so a socket left here is a
    // killed daemon's leftover.
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(DaemonError::Io(e)),
        _ => {}
    }
    let listener = tokio::net::UnixListener::bind(path)
        .map_err(|e| DaemonError::Io(std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Claims the gateway from `--activate-from FILE`, or waits for an admin
/// to claim it (or for shutdown: `false`).
async fn await_activation(
    plane: &Plane,
    mut activated: tokio::sync::watch::Receiver<bool>,
    options: &RunOptions,
    config: &Config,
    shutdown: &CancellationToken,
) -> Result<bool, DaemonError> {
    if let Some(file) = &options.activate_from {
        let text = std::fs::read_to_string(file).map_err(|e| DaemonError::Activation(format!("{}: {e}", file.display())))?;
        let req: crate::admin::activation::ActivationRequest =
            serde_json::from_str(&text).map_err(|e| DaemonError::Activation(format!("{}: {e}", file.display())))?;
        plane.activate(req, None).await.map_err(|e| DaemonError::Activation(format!("{}: {}", e.field(), e.message())))?;
        return Ok(true);
    }
    let code = plane.prepare_activation_code()?;
    warn!(
        activation_code = %code.as_str(),
        console = %format!("https://{}/", config.https_listen),
        tls_fingerprint = plane.tls_fingerprint.as_deref().unwrap_or(""),
        code_file = %config.data_dir.join(crate::admin::activation::CODE_FILE).display(),
        "gateway not activated: open the console and enter the activation code, or POST /api/v1/activate, \
         or restart with --activate-from FILE; `sgw activation-code` shows the code"
    );
    loop {
        if *activated.borrow_and_update() {
            return Ok(true);
        }
        tokio::select! {
            r = activated.changed() => if r.is_err() { return Ok(false) },
            _ = shutdown.cancelled() => return Ok(false),
        }
    }
}

pub async fn run(sources: ConfigSources, options: RunOptions) -> Result<(), DaemonError> {
    let config = sources.load().map_err(|e| DaemonError::Config(e.to_string()))?;
    if !config.api_listen.ip().is_loopback() {
        return Err(DaemonError::Config(format!(
            "--api-listen {} is not a loopback address: plain HTTP serves only this host (the CLI and tests); \
             the console and API reach the network over HTTPS on --https-listen (now {})",
            config.api_listen, config.https_listen
        )));
    }
    // Whatever the umask we were started with, every file and directory
    // the daemon and its libraries (RocksDB, the embedded store) create is
    // owner-only: they hold volume data and keys.
    // SAFETY: umask only changes this process's file-creation mask.
    unsafe { libc::umask(0o077) };
    raise_open_file_limit();
    // Every check before anything is written: the ports, then the lock.
    let http = bind(config.api_listen).await?;
    let https = bind(config.https_listen).await?;
    let portal = reserve_portal(config.iscsi_listen)?;
    crate::files::create_private_dir(&config.data_dir)?;
    let _lock = crate::data_dir::DataDirLock::acquire(&config.data_dir).map_err(|e| DaemonError::Config(e.to_string()))?;
    tighten_modes(&config)?;
    let listeners = AdminListeners { http, https, socket: bind_socket(&config.data_dir.join("sgw.sock"))? };
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    tokio::spawn(crate::memory::trim_periodically(shutdown.clone()));

    // The certificate's names are the Host allowlist too (it includes
    // the configured console names), plus the address HTTPS listens on.
    let cert_names = tls::certificate_names(&config.console_names);
    let mut names = cert_names.clone();
    names.push(config.https_listen.ip().to_string());
    let admin_cert = match (&config.tls_cert, &config.tls_key) {
        (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
        (None, None) => None,
        _ => return Err(DaemonError::Config("give both --tls-cert and --tls-key, or neither".into())),
    };
    let identity = tls::load_or_create(&config.data_dir, admin_cert, &cert_names)
        .map_err(|e| DaemonError::Config(e.to_string()))?;
    let (plane, activated) = Plane::open(PlaneOptions {
        data_dir: config.data_dir.clone(),
        host_names: names,
        metrics_token: config.metrics_token.clone(),
        session_limits: SessionLimits {
            idle: Duration::from_secs(config.session_idle_timeout_secs),
            ..SessionLimits::default()
        },
        tls_fingerprint: Some(identity.fingerprint.clone()),
        default_cache_size: config.cache_size,
        master_key_path: config.key_file(),
        power_control: config.power_control,
        update_public_key: config.update_public_key.clone(),
    })
    .map_err(|e| DaemonError::Config(e.to_string()))?;
    let slot = RouterSlot::new(crate::admin::management_router(plane.clone(), None));
    let limits = HttpLimits::default();
    let tls_acceptor = tokio_rustls::TlsAcceptor::from(identity.config.clone());
    let servers = vec![
        tokio::spawn(crate::admin::http::serve(
            AdminListener::Tcp { listener: listeners.http, tls: None },
            slot.clone(),
            limits,
            shutdown.clone(),
        )),
        tokio::spawn(crate::admin::http::serve(
            AdminListener::Tcp { listener: listeners.https, tls: Some(tls_acceptor) },
            slot.clone(),
            limits,
            shutdown.clone(),
        )),
        tokio::spawn(crate::admin::http::serve(AdminListener::Unix(listeners.socket), slot.clone(), limits, shutdown.clone())),
    ];
    info!(https = %config.https_listen, tls_fingerprint = %identity.fingerprint, cert = %identity.cert_path.display(), "console listening");

    if !plane.accounts.is_activated() {
        if !await_activation(&plane, activated, &options, &config, &shutdown).await? {
            for s in servers {
                let _ = s.await;
            }
            info!("sgw stopped before activation");
            return Ok(());
        }
    } else if options.activate_from.is_some() {
        info!("already activated: --activate-from ignored");
    }
    // Activation may have chosen the cloud, the cache and the library.
    let config = sources.load().map_err(|e| DaemonError::Config(e.to_string()))?;
    let metrics = Arc::new(Metrics::new()?);
    *plane.cache_disk.lock() = Some(config.cache_disk());
    let cache_dir = config.data_dir.join("cache");
    let mut cache_config = CacheConfig::new(
        cache_dir.join("index"),
        vec![DiskSpec { path: config.cache_disk(), size_bytes: config.cache_size }],
    );
    crate::admin::settings::check_cache_disk_space(&config.cache_disk(), config.cache_size, cache_config.chunk_size)
        .map_err(|e| DaemonError::Config(e.error))?;

    let key_path = config.key_file();
    let (master_key, new_key) = load_or_create_master_key(&key_path)?;
    let mut cloud_config = config.cloud();
    // A schedule set at run time wins over the config file's.
    if let Some(schedule) = crate::bandwidth::load(&config.data_dir).map_err(DaemonError::Config)? {
        cloud_config.bandwidth = schedule;
    }
    let (cloud, completions) = CloudLayer::start(&cloud_config, master_key, &metrics.registry)
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

    std::fs::create_dir_all(&cache_dir)?;
    // Small caches still need room between the watermarks for two chunks.
    let chunk = u64::from(cache_config.chunk_size);
    cache_config.dirty_low_watermark = cache_config.dirty_low_watermark.min(cache_config.dirty_high_watermark.saturating_sub(2 * chunk));
    let high_watermark = cache_config.dirty_high_watermark;
    let cache = Arc::new(Cache::open(cache_config, &metrics.registry)?);
    cache.offload_large_writes(Arc::new(IoThreads));
    let maps = Arc::new(MapStore::open(&cache_dir.join("maps")).map_err(|e| DaemonError::Io(std::io::Error::other(e)))?);
    let engine = Engine::new(cache.clone(), cloud.clone(), maps, VolumeMetrics::register(&metrics.registry)?);
    // The uploads outlive the portal: a stop commits final recovery points
    // after the initiators are gone, then ends them.
    let uploads_stop = CancellationToken::new();
    engine.start(completions, uploads_stop.clone());
    engine.watch_health(plane.health.clone(), metrics.health.clone(), shutdown.clone());
    let service = CachedVolumes::new(engine.clone(), &config.data_dir).map_err(|e| DaemonError::Cloud(e.to_string()))?;

    let volumes = Arc::new(VolumeManager::open(&config.data_dir, Some(service.clone()), high_watermark).await?);
    if options.recover {
        let n = volumes.recover().await?;
        info!(volumes = n, "recovered volumes from the bucket");
    }
    tokio::spawn(
        service.clone().run_background(
            BackgroundSchedule {
                recovery_point_interval: Duration::from_secs(config.recovery_point_interval_secs),
                sweep_interval: Duration::from_secs(config.garbage_sweep_interval_secs),
            },
            shutdown.clone(),
        ),
    );

    let tapes = TapeLibrary::start(&config.data_dir, engine.clone(), config.tapes(), &metrics.registry, shutdown.clone())
        .await
        .map_err(|e| DaemonError::Tapes(e.to_string()))?;
    let targets = Arc::new(GatewayTargets { volumes: volumes.clone(), tapes: tapes.clone() });
    let iscsi_config = crate::access::server_config(&config, &metrics.registry).map_err(DaemonError::Config)?;
    let iscsi = Server::new(targets, iscsi_config);
    let portal = portal.listen(1024).map_err(|source| DaemonError::Bind { addr: config.iscsi_listen, source })?;

    let state = AppState {
        volumes: volumes.clone(),
        iscsi: iscsi.clone(),
        metrics,
        cached: Some(service.clone()),
        tapes: tapes.clone(),
        bandwidth: cloud.store.bandwidth().clone(),
        data_dir: config.data_dir.clone(),
    };
    let iscsi_task = tokio::spawn(iscsi.clone().run(portal, shutdown.clone()));
    info!(
        iscsi = %config.iscsi_listen,
        api = %config.api_listen,
        https = %config.https_listen,
        data_dir = %config.data_dir.display(),
        cloud = %cloud_text(&cloud_config),
        cache = %config.cache_disk().display(),
        volumes = volumes.list().len(),
        cache_bytes = config.cache_size,
        "sgw ready"
    );
    let samples = crate::console::samples::Samples::new(Duration::from_secs(config.console_sample_secs));
    tokio::spawn(samples.clone().run(state.metrics.registry.clone(), shutdown.clone()));
    let console = crate::console::Console { plane: plane.clone(), app: state, samples, config: Arc::new(config.clone()) };
    slot.set(crate::admin::management_router(plane.clone(), Some(console)));
    shutdown.cancelled().await;
    for s in servers {
        let _ = s.await;
    }
    match iscsi_task.await {
        Ok(Err(e)) => error!(error = %e, "iSCSI portal failed"),
        Err(e) => error!(error = %e, "iSCSI portal task failed"),
        Ok(Ok(())) => {}
    }
    volumes.flush_all().await?;
    // What the drives hold reaches the cache before the cache flush.
    tapes.flush().await;
    let limit = Duration::from_secs(config.shutdown_timeout_secs);
    let missed = service.final_recovery_points(limit).await;
    if !missed.is_empty() {
        warn!(volumes = %missed.join(", "), "stopping without a final recovery point of these volumes");
    }
    uploads_stop.cancel();
    cache.flush().await?;
    info!("sgw stopped");
    Ok(())
}

/// Where the data goes, for the log line an admin reads first.
fn cloud_text(c: &crate::cloud::CloudConfig) -> String {
    use crate::cloud::store::StoreConfig;
    let prefix = if c.prefix.is_empty() { String::new() } else { format!(", prefix {}", c.prefix) };
    match &c.store {
        StoreConfig::Local(l) => format!("embedded store in {}{prefix}", l.root.display()),
        StoreConfig::S3(s) => format!(
            "S3 bucket {} at {} ({}){prefix}",
            s.bucket,
            s.endpoint.as_deref().unwrap_or("AWS"),
            s.region
        ),
    }
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
