//! `sgw serve`: the iSCSI portal and the admin API until SIGTERM or SIGINT.

use std::sync::Arc;

use iscsi_target::server::{Server, ServerConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::api::{self, AppState};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::volumes::VolumeManager;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot open the data directory: {0}")]
    Volumes(#[from] crate::volumes::VolumeError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub async fn run(config: Config) -> Result<(), DaemonError> {
    let volumes = Arc::new(VolumeManager::open(&config.data_dir)?);
    let iscsi = Server::new(volumes.clone(), ServerConfig::default());
    let portal = TcpListener::bind(config.iscsi_listen)
        .await
        .map_err(|source| DaemonError::Bind { addr: config.iscsi_listen, source })?;
    let api_listener = TcpListener::bind(config.api_listen)
        .await
        .map_err(|source| DaemonError::Bind { addr: config.api_listen, source })?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));

    let state = AppState { volumes: volumes.clone(), iscsi: iscsi.clone(), metrics: Arc::new(Metrics::new()?) };
    let iscsi_task = tokio::spawn(iscsi.clone().run(portal, shutdown.clone()));
    info!(
        iscsi = %config.iscsi_listen,
        api = %config.api_listen,
        data_dir = %config.data_dir.display(),
        volumes = volumes.list().len(),
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
