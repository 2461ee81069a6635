//! The iSCSI server on tokio: accepts connections, runs the login phase,
//! then the full feature phase of each session. Sessions are independent:
//! a fault in one connection closes only that connection.

mod connection;
// Public only to the fuzzers (cargo fuzz builds with `--cfg fuzzing`).
#[cfg(fuzzing)]
pub mod dataout;
#[cfg(not(fuzzing))]
mod dataout;
mod hangup;
mod registry;
mod response;
mod seq;
mod target_scsi;
mod wire;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

pub use self::registry::SessionInfo;
use self::registry::Registry;
use crate::login::params::TargetLimits;
use crate::target::TargetCatalog;

/// Tunables of the transport.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub limits: TargetLimits,
    /// Commands a session may have in flight (the CmdSN window).
    pub queue_depth: u32,
    /// Idle time after which the target pings the initiator with NOP-In.
    pub nop_interval: Duration,
    /// How long a NOP-In may go unanswered before the connection is dropped.
    pub nop_timeout: Duration,
    /// How long a login may take end to end.
    pub login_timeout: Duration,
    /// The largest expected data transfer length a command may declare.
    pub max_transfer: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            limits: TargetLimits::default(),
            queue_depth: 128,
            nop_interval: Duration::from_secs(30),
            nop_timeout: Duration::from_secs(30),
            login_timeout: Duration::from_secs(20),
            max_transfer: 64 * 1024 * 1024,
        }
    }
}

/// The iSCSI target server.
pub struct Server {
    catalog: Arc<dyn TargetCatalog>,
    config: ServerConfig,
    registry: Registry,
    next_nexus: AtomicU64,
}

impl Server {
    pub fn new(catalog: Arc<dyn TargetCatalog>, config: ServerConfig) -> Arc<Server> {
        Arc::new(Server { catalog, config, registry: Registry::default(), next_nexus: AtomicU64::new(1) })
    }

    /// Accepts connections until `shutdown` is cancelled, then ends every
    /// session and waits for them.
    pub async fn run(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) -> io::Result<()> {
        info!(addr = %listener.local_addr()?, "iSCSI portal listening");
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (sock, peer) = match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            // Out of descriptors and the like: back off, keep serving.
                            debug!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = sock.set_nodelay(true);
                    let server = self.clone();
                    let stop = shutdown.child_token();
                    conns.spawn(async move {
                        connection::serve(server, sock, peer, stop).await;
                    });
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                _ = shutdown.cancelled() => break,
            }
        }
        self.registry.end_all();
        while conns.join_next().await.is_some() {}
        info!("iSCSI portal stopped");
        Ok(())
    }

    /// Ends every session logged in to `target` (the target is going away).
    pub fn end_sessions_of(&self, target: &str) {
        self.registry.end_target(target);
    }

    /// The sessions logged in now.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.registry.list()
    }

    fn new_nexus_id(&self) -> u64 {
        self.next_nexus.fetch_add(1, Ordering::Relaxed)
    }
}
