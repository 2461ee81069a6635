//! Daemon configuration: defaults, an optional TOML file, then flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cloud::store::{LocalStoreConfig, StoreConfig};
use crate::access::IscsiAccess;
use crate::cloud::CloudConfig;
use crate::tapes::{LibraryPersonality, TapeConfig};

/// Everything `sgw serve` needs to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The iSCSI portal.
    pub iscsi_listen: SocketAddr,
    /// Plain HTTP for the local CLI and tests: loopback only.
    pub api_listen: SocketAddr,
    /// The console and API over HTTPS, for the network.
    pub https_listen: SocketAddr,
    /// The admin's own certificate and key (PEM); a self-signed one made
    /// on first start when absent.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Names the console answers to besides localhost, the host name and
    /// the machine's addresses (the Host allowlist).
    pub console_names: Vec<String>,
    /// When set, `/metrics` needs `Authorization: Bearer <metrics_token>`.
    pub metrics_token: Option<String>,
    /// Console sessions end after this many idle seconds.
    pub session_idle_timeout_secs: u64,
    /// Seconds between the console's samples of the metrics (charts).
    pub console_sample_secs: u64,
    /// Where volumes and state live.
    pub data_dir: PathBuf,
    /// Bytes of local disk for the cache (a sparse file in the data
    /// directory unless `cache_disk` names another file or device).
    pub cache_size: u64,
    pub cache_disk: Option<PathBuf>,
    /// Seconds between recovery points of each changed cached volume.
    pub recovery_point_interval_secs: u64,
    /// Seconds between sweeps of the bucket for objects nothing references
    /// (the first runs within two minutes of start).
    pub garbage_sweep_interval_secs: u64,
    /// On SIGTERM, how long uploads may run to commit a final recovery
    /// point of every changed volume before the daemon exits anyway.
    pub shutdown_timeout_secs: u64,
    /// The master key file; generated on first start when absent.
    pub key_file: Option<PathBuf>,
    /// The object store; the embedded local store under the data
    /// directory when absent.
    pub cloud: Option<CloudConfig>,
    /// The tape library's changer: `aws` (AWS-Gateway-VTL) or `stk`
    /// (StorageTek L700).
    pub library_personality: LibraryPersonality,
    /// Test-only: the smallest tape `sgw tape create` accepts, below AWS's
    /// 100 GiB, so tests can fill a tape to its end quickly.
    pub tape_min_size_bytes: Option<u64>,
    /// Who may log in to a target without an initiator list
    /// (`acl-required`, the default: nobody; `open`: anyone).
    pub iscsi_access: IscsiAccess,
    /// Sessions the iSCSI portal serves at once.
    pub iscsi_max_sessions: usize,
    /// CHAP a SendTargets discovery session must pass.
    pub discovery_chap: Option<crate::volumes::VolumeChap>,
    /// The admin may reboot and power off the machine through the API
    /// and the console: set on the appliance, where the gateway is the
    /// machine; off elsewhere.
    pub power_control: bool,
    /// The ed25519 public key update packages must be signed with
    /// (`POST /api/v1/update`); without one, updates come another way.
    pub update_public_key: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            iscsi_listen: SocketAddr::from(([0, 0, 0, 0], 3260)),
            api_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            https_listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            tls_cert: None,
            tls_key: None,
            console_names: Vec::new(),
            metrics_token: None,
            session_idle_timeout_secs: 30 * 60,
            console_sample_secs: 10,
            data_dir: PathBuf::from("./sgw-data"),
            cache_size: 16 << 30,
            cache_disk: None,
            recovery_point_interval_secs: 300,
            garbage_sweep_interval_secs: 24 * 3600,
            shutdown_timeout_secs: 60,
            key_file: None,
            cloud: None,
            library_personality: LibraryPersonality::default(),
            tape_min_size_bytes: None,
            iscsi_access: IscsiAccess::default(),
            iscsi_max_sessions: iscsi_target::server::DEFAULT_MAX_SESSIONS,
            discovery_chap: None,
            power_control: false,
            update_public_key: None,
        }
    }
}

impl Config {
    pub fn key_file(&self) -> PathBuf {
        self.key_file.clone().unwrap_or_else(|| self.data_dir.join("master.key"))
    }

    pub fn cache_disk(&self) -> PathBuf {
        self.cache_disk.clone().unwrap_or_else(|| self.data_dir.join("cache").join("disk0.img"))
    }

    /// The tape library's configuration in effect.
    pub fn tapes(&self) -> TapeConfig {
        let defaults = TapeConfig::default();
        TapeConfig {
            personality: self.library_personality,
            min_size_bytes: self.tape_min_size_bytes.unwrap_or(defaults.min_size_bytes),
        }
    }

    /// The cloud configuration in effect.
    pub fn cloud(&self) -> CloudConfig {
        self.cloud.clone().unwrap_or_else(|| CloudConfig {
            store: StoreConfig::Local(LocalStoreConfig { root: self.data_dir.join("objects"), restore_delay_secs: 0 }),
            prefix: String::new(),
            retry: Default::default(),
            bandwidth: Default::default(),
            uploader: Default::default(),
            zstd_level: crate::cloud::DEFAULT_ZSTD_LEVEL,
        })
    }
}

/// The config file: every key optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub iscsi_listen: Option<SocketAddr>,
    pub api_listen: Option<SocketAddr>,
    pub https_listen: Option<SocketAddr>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub console_names: Option<Vec<String>>,
    pub metrics_token: Option<String>,
    pub session_idle_timeout_secs: Option<u64>,
    pub console_sample_secs: Option<u64>,
    pub data_dir: Option<PathBuf>,
    pub cache_size: Option<u64>,
    pub cache_disk: Option<PathBuf>,
    pub recovery_point_interval_secs: Option<u64>,
    pub garbage_sweep_interval_secs: Option<u64>,
    pub shutdown_timeout_secs: Option<u64>,
    pub key_file: Option<PathBuf>,
    pub cloud: Option<CloudConfig>,
    pub library_personality: Option<LibraryPersonality>,
    pub tape_min_size_bytes: Option<u64>,
    pub iscsi_access: Option<IscsiAccess>,
    pub iscsi_max_sessions: Option<usize>,
    pub discovery_chap: Option<crate::volumes::VolumeChap>,
    pub power_control: Option<bool>,
    pub update_public_key: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
}

fn read_file(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.to_path_buf(), source })
}

/// Where `sgw serve`'s configuration comes from, kept so the daemon can
/// load it again once activation has written `DATA_DIR/gateway.toml`.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    pub file: Option<PathBuf>,
    pub flags: ConfigFile,
}

impl ConfigSources {
    pub fn load(&self) -> Result<Config, ConfigError> {
        Config::load(self.file.as_deref(), self.flags.clone())
    }
}

impl Config {
    /// Defaults, then what activation chose (`DATA_DIR/gateway.toml`),
    /// then the file (if any), then flags.
    pub fn load(file: Option<&Path>, flags: ConfigFile) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        let file = file.map(read_file).transpose()?;
        let data_dir = flags.data_dir.clone().or_else(|| file.as_ref().and_then(|f| f.data_dir.clone()));
        let activated = crate::admin::settings::ActivatedSettings::path(data_dir.as_deref().unwrap_or(&c.data_dir));
        if activated.exists() {
            c.apply(read_file(&activated)?);
        }
        if let Some(f) = file {
            c.apply(f);
        }
        c.apply(flags);
        Ok(c)
    }

    fn apply(&mut self, f: ConfigFile) {
        if let Some(v) = f.iscsi_listen {
            self.iscsi_listen = v;
        }
        if let Some(v) = f.api_listen {
            self.api_listen = v;
        }
        if let Some(v) = f.https_listen {
            self.https_listen = v;
        }
        if let Some(v) = f.tls_cert {
            self.tls_cert = Some(v);
        }
        if let Some(v) = f.tls_key {
            self.tls_key = Some(v);
        }
        if let Some(v) = f.console_names {
            self.console_names = v;
        }
        if let Some(v) = f.metrics_token {
            self.metrics_token = Some(v);
        }
        if let Some(v) = f.session_idle_timeout_secs {
            self.session_idle_timeout_secs = v.max(1);
        }
        if let Some(v) = f.console_sample_secs {
            self.console_sample_secs = v.max(1);
        }
        if let Some(v) = f.data_dir {
            self.data_dir = v;
        }
        if let Some(v) = f.cache_size {
            self.cache_size = v;
        }
        if let Some(v) = f.cache_disk {
            self.cache_disk = Some(v);
        }
        if let Some(v) = f.shutdown_timeout_secs {
            self.shutdown_timeout_secs = v;
        }
        if let Some(v) = f.recovery_point_interval_secs {
            self.recovery_point_interval_secs = v.max(1);
        }
        if let Some(v) = f.garbage_sweep_interval_secs {
            self.garbage_sweep_interval_secs = v.max(1);
        }
        if let Some(v) = f.key_file {
            self.key_file = Some(v);
        }
        if let Some(v) = f.cloud {
            self.cloud = Some(v);
        }
        if let Some(v) = f.library_personality {
            self.library_personality = v;
        }
        if let Some(v) = f.tape_min_size_bytes {
            self.tape_min_size_bytes = Some(v);
        }
        if let Some(v) = f.iscsi_access {
            self.iscsi_access = v;
        }
        if let Some(v) = f.iscsi_max_sessions {
            self.iscsi_max_sessions = v.max(1);
        }
        if let Some(v) = f.discovery_chap {
            self.discovery_chap = Some(v);
        }
        if let Some(v) = f.power_control {
            self.power_control = v;
        }
        if let Some(v) = f.update_public_key {
            self.update_public_key = Some(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sgw.toml");
        std::fs::write(&p, "iscsi_listen = \"127.0.0.1:3300\"\ndata_dir = \"/tmp/x\"\n").unwrap();
        let flags = ConfigFile { data_dir: Some("/tmp/y".into()), ..Default::default() };
        let c = Config::load(Some(&p), flags).unwrap();
        assert_eq!(c.iscsi_listen, "127.0.0.1:3300".parse().unwrap());
        assert_eq!(c.api_listen, Config::default().api_listen);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/y"));
        assert_eq!(c.key_file(), PathBuf::from("/tmp/y/master.key"));
        assert!(matches!(c.cloud().store, StoreConfig::Local(_)));
    }

    #[test]
    fn s3_section() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sgw.toml");
        std::fs::write(
            &p,
            "cache_size = 1073741824\n[cloud]\nprefix = \"site-a\"\n[cloud.store]\nkind = \"s3\"\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:9000\"\npath_style = true\n",
        )
        .unwrap();
        let c = Config::load(Some(&p), ConfigFile::default()).unwrap();
        assert_eq!(c.cache_size, 1 << 30);
        let cloud = c.cloud();
        assert_eq!(cloud.prefix, "site-a");
        assert!(matches!(cloud.store, StoreConfig::S3(ref s) if s.bucket == "b" && s.path_style));
    }

    #[test]
    fn unknown_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sgw.toml");
        std::fs::write(&p, "iscsi_port = 1\n").unwrap();
        assert!(matches!(Config::load(Some(&p), ConfigFile::default()), Err(ConfigError::Parse { .. })));
    }

    #[test]
    fn tape_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sgw.toml");
        std::fs::write(&p, "library_personality = \"stk\"\ntape_min_size_bytes = 1048576\n").unwrap();
        let c = Config::load(Some(&p), ConfigFile::default()).unwrap();
        assert_eq!(c.tapes().personality, LibraryPersonality::Stk);
        assert_eq!(c.tapes().min_size_bytes, 1 << 20);
        let d = Config::default().tapes();
        assert_eq!((d.personality, d.min_size_bytes), (LibraryPersonality::Aws, crate::tapes::records::MIN_TAPE_SIZE));
    }

    #[test]
    fn iscsi_access_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sgw.toml");
        std::fs::write(
            &p,
            "iscsi_access = \"open\"\niscsi_max_sessions = 8\n[discovery_chap]\nuser = \"d\"\nsecret = \"discovery-secret\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&p), ConfigFile::default()).unwrap();
        assert_eq!((c.iscsi_access, c.iscsi_max_sessions), (IscsiAccess::Open, 8));
        assert_eq!(c.discovery_chap.map(|d| d.user), Some("d".to_string()));
        let d = Config::default();
        assert_eq!((d.iscsi_access, d.iscsi_max_sessions, d.discovery_chap), (IscsiAccess::AclRequired, 256, None));
    }
}
