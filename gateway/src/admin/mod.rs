//! The management plane: activation, accounts and sessions, the checks in
//! front of every admin request, and the HTTP servers that carry the REST
//! API and the web console.
//!
//! A gateway starts unactivated until an admin claims it with the
//! activation code (or `sgw serve --activate-from FILE`); only then does
//! the daemon open the cloud, the cache and the iSCSI portal.

pub mod accounts;
pub mod activation;
mod conn_table;
pub mod disks;
pub mod guard;
pub mod http;
pub mod kit_download;
pub mod routes;
pub mod sessions;
pub mod settings;
pub mod system_routes;
pub mod tls;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::cloud::store::probe::{probe_s3, ProbeFailure};
use crate::cloud::store::S3Config;
use accounts::{check_password, check_user, hash_password, now_unix, AccountStore, GatewayIdentity};
use activation::{check_gateway_name, check_timezone, ActivationCode, ActivationRequest, CloudTarget, FailureThrottle, FieldError};
use guard::HostAllowlist;
use sessions::SessionStore;
use settings::ActivatedSettings;

/// Whether two secrets are equal, in time that does not depend on where
/// they differ.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// Shared state of the management plane.
pub struct Plane {
    pub data_dir: PathBuf,
    pub accounts: AccountStore,
    pub sessions: SessionStore,
    pub hosts: HostAllowlist,
    /// When set, `/metrics` needs this bearer token (or an admin).
    pub metrics_token: Option<String>,
    pub login_throttle: FailureThrottle,
    activation_throttle: FailureThrottle,
    code: Mutex<Option<ActivationCode>>,
    /// One activation at a time: two claimers racing must not leave one's
    /// settings beside the other's account.
    activating: tokio::sync::Mutex<()>,
    /// Tells the daemon the gateway was claimed.
    activated: watch::Sender<bool>,
    pub tls_fingerprint: Option<String>,
    pub started: Instant,
    /// The configured cache size, the default of the activation form.
    pub default_cache_size: u64,
    pub master_key_path: PathBuf,
    pub power_control: bool,
    pub update_public_key: Option<PathBuf>,
    /// The cache's disk once the data plane runs: not offered as unused.
    pub cache_disk: Mutex<Option<PathBuf>>,
    /// The gateway is activated and its volumes, tapes and portal are up.
    pub ready: std::sync::atomic::AtomicBool,
    /// Degraded components, for health (the daemon's watchers report).
    pub health: Arc<crate::health::HealthBoard>,
}

/// The router of the management plane: its own endpoints and the
/// activation pages, then the data API and the console once the gateway
/// runs, all behind the [`guard::guard`].
pub fn management_router(plane: Arc<Plane>, running: Option<crate::console::Console>) -> axum::Router {
    let own = routes::router(plane.clone()).merge(system_routes::router(plane.clone()));
    let router = match running {
        Some(console) => {
            plane.ready.store(true, std::sync::atomic::Ordering::Release);
            own.merge(crate::api::router(console.app.clone())).merge(crate::console::router(console))
        }
        None => own.merge(crate::console::activation_router(plane.clone())).fallback(|| async {
            guard::json_error(axum::http::StatusCode::SERVICE_UNAVAILABLE, "the gateway is starting")
        }),
    };
    router
        .layer(axum::middleware::map_response(guard::explain_bare_errors))
        .layer(axum::middleware::from_fn_with_state(plane, guard::guard))
}

/// What the activation form offers, and an activation's answer.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Activated {
    pub gateway: GatewayIdentity,
    #[schema(value_type = String)]
    pub master_key_path: PathBuf,
    pub tls_fingerprint: Option<String>,
}

/// Why an activation was refused.
#[derive(Debug)]
pub enum ActivationError {
    Field(FieldError),
    Probe(ProbeFailure),
    AlreadyActivated,
    Internal(String),
}

impl ActivationError {
    pub fn field(&self) -> &str {
        match self {
            ActivationError::Field(f) => &f.field,
            ActivationError::Probe(_) => "cloud",
            _ => "form",
        }
    }

    pub fn message(&self) -> String {
        match self {
            ActivationError::Field(f) => f.error.clone(),
            ActivationError::Probe(p) => format!("connectivity test: {p}"),
            ActivationError::AlreadyActivated => "the gateway is already activated".into(),
            ActivationError::Internal(m) => m.clone(),
        }
    }
}

pub struct PlaneOptions {
    pub data_dir: PathBuf,
    pub host_names: Vec<String>,
    pub metrics_token: Option<String>,
    pub session_limits: sessions::SessionLimits,
    pub tls_fingerprint: Option<String>,
    pub default_cache_size: u64,
    pub master_key_path: PathBuf,
    /// See [`crate::config::Config::power_control`].
    pub power_control: bool,
    pub update_public_key: Option<PathBuf>,
}

impl Plane {
    /// A Unix time as a date in the gateway's timezone (UTC before
    /// activation).
    pub fn date_text(&self, unix: u64) -> String {
        let tz = self.accounts.identity().map(|i| i.timezone).unwrap_or_default();
        crate::units::date_text_in(unix, if tz.is_empty() { "UTC" } else { &tz })
    }

    pub fn open(o: PlaneOptions) -> Result<(Arc<Plane>, watch::Receiver<bool>), accounts::AccountError> {
        let accounts = AccountStore::open(&o.data_dir)?;
        let (activated, rx) = watch::channel(accounts.is_activated());
        let plane = Plane {
            accounts,
            sessions: SessionStore::new(o.session_limits, Arc::new(sessions::SystemClock)),
            hosts: HostAllowlist::new(o.host_names),
            metrics_token: o.metrics_token,
            login_throttle: FailureThrottle::new(Duration::from_millis(250), Duration::from_secs(5)),
            activation_throttle: FailureThrottle::new(Duration::from_millis(500), Duration::from_secs(30)),
            code: Mutex::new(None),
            activating: tokio::sync::Mutex::new(()),
            activated,
            tls_fingerprint: o.tls_fingerprint,
            started: Instant::now(),
            default_cache_size: o.default_cache_size,
            master_key_path: o.master_key_path,
            power_control: o.power_control,
            update_public_key: o.update_public_key,
            cache_disk: Mutex::new(None),
            ready: std::sync::atomic::AtomicBool::new(false),
            health: Arc::default(),
            data_dir: o.data_dir,
        };
        Ok((Arc::new(plane), rx))
    }

    /// Makes (or keeps) the activation code of an unactivated gateway.
    pub fn prepare_activation_code(&self) -> std::io::Result<ActivationCode> {
        let code = ActivationCode::load_or_create(&self.data_dir)?;
        *self.code.lock() = Some(code.clone());
        Ok(code)
    }

    /// Claims the gateway. `client` is `None` for `--activate-from`, which
    /// needs no code: reading the file already took the gateway's host.
    pub async fn activate(&self, req: ActivationRequest, client: Option<IpAddr>) -> Result<Activated, ActivationError> {
        if self.accounts.is_activated() {
            return Err(ActivationError::AlreadyActivated);
        }
        if let Some(ip) = client {
            let delay = self.activation_throttle.delay_for(ip);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let expected = self.code.lock().clone();
            let ok = match (&expected, &req.code) {
                (Some(code), Some(typed)) => code.matches(typed),
                _ => false,
            };
            if !ok {
                let n = self.activation_throttle.failed(ip);
                warn!(client = %ip, failures = n, "activation refused: wrong activation code");
                return Err(ActivationError::Field(FieldError::new(
                    "code",
                    "wrong activation code: see DATA_DIR/activation-code, the log, or `sgw activation-code` on the gateway",
                )));
            }
        }
        // After the code check, so that a guesser's delay holds no one up.
        let _one_at_a_time = self.activating.lock().await;
        if self.accounts.is_activated() {
            return Err(ActivationError::AlreadyActivated);
        }
        check_gateway_name(&req.gateway_name).map_err(ActivationError::Field)?;
        check_timezone(&req.timezone).map_err(ActivationError::Field)?;
        check_user(&req.admin_user).map_err(|e| ActivationError::Field(FieldError::new("admin_user", e.to_string())))?;
        check_password(&req.admin_password)
            .map_err(|e| ActivationError::Field(FieldError::new("password", e.to_string())))?;
        let cache_size = self.check_cache(&req)?;
        let cloud = settings::cloud_config(&req.cloud).map_err(ActivationError::Field)?;
        if let CloudTarget::S3 { prefix, .. } = &req.cloud {
            if let Some(crate::cloud::store::StoreConfig::S3(s3)) = cloud.as_ref().map(|c| &c.store) {
                self.probe(s3, prefix).await?;
            }
        }
        let password = req.admin_password.clone();
        let hash = tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| ActivationError::Internal(e.to_string()))?
            .map_err(|e| ActivationError::Internal(e.to_string()))?;
        let settings = ActivatedSettings {
            cloud,
            cache_size,
            cache_disk: req.cache_disk.clone(),
            library_personality: req.library_personality,
        };
        settings.save(&self.data_dir).map_err(|e| ActivationError::Internal(e.to_string()))?;
        let identity =
            GatewayIdentity { name: req.gateway_name.clone(), timezone: req.timezone.clone(), activated_unix: now_unix() };
        // admin.json is the commit point: a crash before it leaves an
        // unactivated gateway whose settings the next activation replaces.
        self.accounts.activate(identity.clone(), &req.admin_user, hash).map_err(|e| match e {
            accounts::AccountError::AlreadyActivated => ActivationError::AlreadyActivated,
            e => ActivationError::Internal(e.to_string()),
        })?;
        if let Err(e) = ActivationCode::expire(&self.data_dir) {
            warn!(error = %e, "cannot remove the used activation code");
        }
        *self.code.lock() = None;
        if let Some(ip) = client {
            self.activation_throttle.succeeded(ip);
        }
        info!(gateway = %identity.name, admin = %req.admin_user, client = ?client, "gateway activated");
        self.activated.send_replace(true);
        Ok(Activated {
            gateway: identity,
            master_key_path: self.master_key_path.clone(),
            tls_fingerprint: self.tls_fingerprint.clone(),
        })
    }

    /// The cache's size, when it fits where the request puts it: a whole
    /// unused disk (or the part asked for), or a file whose filesystem
    /// keeps 5% free. `None` keeps the configured size.
    fn check_cache(&self, req: &ActivationRequest) -> Result<Option<u64>, ActivationError> {
        use std::os::unix::fs::FileTypeExt;
        let device = req.cache_disk.as_deref().filter(|d| std::fs::metadata(d).is_ok_and(|m| m.file_type().is_block_device()));
        if let Some(device) = device {
            let size = disks::check_cache_device(device, req.cache_size_bytes, &disks::unused_disks())
                .map_err(ActivationError::Field)?;
            return Ok(Some(size));
        }
        if let Some(d) = req.cache_disk.as_deref().filter(|d| d.starts_with("/dev/")) {
            return Err(ActivationError::Field(FieldError::new("cache_disk", format!("{} is not a block device", d.display()))));
        }
        let cache_dir = req.cache_disk.as_deref().and_then(Path::parent).map_or_else(|| self.data_dir.clone(), Path::to_path_buf);
        settings::check_cache_space(&cache_dir, req.cache_size_bytes.unwrap_or(self.default_cache_size))
            .map_err(ActivationError::Field)?;
        if req.cache_disk.is_none() {
            warn!("the cache is a file in the data directory: fine for a lab; attach a disk for the cache in production");
        }
        Ok(req.cache_size_bytes)
    }

    async fn probe(&self, s3: &S3Config, prefix: &str) -> Result<(), ActivationError> {
        let limit = Duration::from_secs(s3.connect_timeout_secs.max(1) * 3 + 10);
        match tokio::time::timeout(limit, probe_s3(s3, prefix)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(p)) => {
                warn!(step = %p.step, cause = ?p.cause, detail = %p.detail, "activation: S3 connectivity test failed");
                Err(ActivationError::Probe(p))
            }
            Err(_) => Err(ActivationError::Probe(ProbeFailure {
                step: "HEAD bucket".into(),
                cause: crate::cloud::store::probe::ProbeCause::Timeout,
                detail: format!("no answer within {limit:?}"),
            })),
        }
    }

    /// Checks a login, slowing repeated failures from one address.
    pub async fn login(&self, user: &str, password: &str, client: IpAddr) -> Option<(String, sessions::Session)> {
        let delay = self.login_throttle.delay_for(client);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let ok = {
            let (user, password) = (user.to_string(), password.to_string());
            let accounts = &self.accounts;
            // argon2 takes tens of milliseconds: off the async workers.
            tokio::task::block_in_place(|| accounts.verify_password(&user, &password))
        };
        if ok {
            self.login_throttle.succeeded(client);
            info!(user = %user, client = %client, "console login");
            Some(self.sessions.create(user))
        } else {
            let n = self.login_throttle.failed(client);
            warn!(user = %user, client = %client, failures = n, "console login refused: wrong user or password");
            None
        }
    }
}
