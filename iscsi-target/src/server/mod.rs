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
mod logout;
mod registry;
mod response;
mod seq;
mod target_scsi;
mod throttle;
mod wire;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

pub use self::registry::SessionInfo;
use self::registry::Registry;
use self::throttle::FailureThrottle;
use crate::login::params::TargetLimits;
use crate::login::LoginPolicy;
use crate::target::TargetCatalog;

/// Why a login was refused, as the server reports it to a
/// [`LoginObserver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailure {
    /// CHAP was missing or wrong (status 0201).
    Authentication,
    /// The initiator is not on the target's list (status 0202).
    Authorization,
    /// The server had its maximum of sessions (status 0302).
    SessionLimit,
}

impl LoginFailure {
    /// A short name, e.g. for a metric label.
    pub fn label(self) -> &'static str {
        match self {
            LoginFailure::Authentication => "chap",
            LoginFailure::Authorization => "acl",
            LoginFailure::SessionLimit => "max_sessions",
        }
    }
}

/// Told of every refused login, so that the embedding application can
/// count them without this crate knowing its metrics.
pub trait LoginObserver: Send + Sync + std::fmt::Debug {
    fn login_failed(&self, failure: LoginFailure);
}

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
    /// Access policy and discovery CHAP.
    pub login: LoginPolicy,
    /// Sessions (normal and discovery, with logins under way) the server
    /// serves at once; further logins get 0302, out of resources.
    pub max_sessions: usize,
    pub login_observer: Option<Arc<dyn LoginObserver>>,
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
            login: LoginPolicy::default(),
            max_sessions: DEFAULT_MAX_SESSIONS,
            login_observer: None,
        }
    }
}

/// Enough for a gateway's hosts and tape drives; each session costs a few
/// tasks and buffers, so the bound keeps a flood of logins from exhausting
/// memory and descriptors.
pub const DEFAULT_MAX_SESSIONS: usize = 256;

/// The session limit's log line: written when the limit is hit, then at
/// most once per `SESSION_LIMIT_LOG_EVERY` with the number refused since,
/// so an initiator retrying in a loop cannot flood the log.
const SESSION_LIMIT_LOG_EVERY: Duration = Duration::from_secs(60);

#[derive(Default)]
struct SessionLimitLog {
    /// When the line was last written, and the refusals not yet reported.
    state: Mutex<(Option<Instant>, u64)>,
}

impl SessionLimitLog {
    fn refused(&self, limit: usize, peer: std::net::SocketAddr) {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.1 += 1;
        if state.0.is_none_or(|at| now.duration_since(at) >= SESSION_LIMIT_LOG_EVERY) {
            warn!(
                limit,
                %peer,
                refused = state.1,
                "iSCSI session limit reached (iscsi_max_sessions): refusing new logins with 0302 (out of resources)"
            );
            *state = (Some(now), 0);
        }
    }
}

/// The iSCSI target server.
pub struct Server {
    catalog: Arc<dyn TargetCatalog>,
    config: ServerConfig,
    registry: Registry,
    next_nexus: AtomicU64,
    /// One permit per session, taken at its first Login Request.
    session_slots: Arc<Semaphore>,
    session_limit_log: SessionLimitLog,
    failures: FailureThrottle,
}

impl Server {
    pub fn new(catalog: Arc<dyn TargetCatalog>, config: ServerConfig) -> Arc<Server> {
        let slots = config.max_sessions.clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(Server {
            catalog,
            config,
            registry: Registry::default(),
            next_nexus: AtomicU64::new(1),
            session_slots: Arc::new(Semaphore::new(slots)),
            session_limit_log: SessionLimitLog::default(),
            failures: FailureThrottle::default(),
        })
    }

    /// A session slot, or `None` (logged) when all are taken.
    fn take_session_slot(&self, peer: std::net::SocketAddr) -> Option<OwnedSemaphorePermit> {
        let slot = self.session_slots.clone().try_acquire_owned().ok();
        if slot.is_none() {
            self.session_limit_log.refused(self.config.max_sessions, peer);
            self.observe(LoginFailure::SessionLimit);
        }
        slot
    }

    fn observe(&self, failure: LoginFailure) {
        if let Some(o) = &self.config.login_observer {
            o.login_failed(failure);
        }
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

    /// Logs out every session of `target` (the target is going away):
    /// each is asked to log out (`logout.rs`), and those still there after
    /// the grace are ended. Returns once none is left.
    pub async fn log_out_sessions_of(&self, target: &str) {
        for s in self.registry.of_target(target) {
            s.logout.cancel();
        }
        // Bounded: a session the grace ended leaves the registry once its
        // writer has flushed (at most a few seconds more).
        let deadline = Instant::now() + Duration::from_secs(u64::from(logout::GRACE_SECS) + 6);
        while !self.registry.of_target(target).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
