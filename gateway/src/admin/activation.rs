//! Claiming a fresh gateway: the one-time activation code and the
//! activation request.
//!
//! The code proves that the claimer can read the gateway's own disk or
//! console, as AWS's activation key does: it is printed in the log and
//! written to `DATA_DIR/activation-code` (owner-only), and it dies with
//! its first successful use. Wrong guesses are slowed per client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::files::write_atomically;

pub const CODE_FILE: &str = "activation-code";
/// Unambiguous characters only (no 0/O, 1/I/L): 31 symbols, 4.95 bits each.
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
/// 25 symbols: 123 bits, in five groups of five.
const CODE_GROUPS: usize = 5;
const GROUP_LEN: usize = 5;

/// The activation code of an unactivated gateway.
#[derive(Clone, PartialEq, Eq)]
pub struct ActivationCode(String);

impl std::fmt::Debug for ActivationCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ActivationCode(..)")
    }
}

impl ActivationCode {
    fn generate() -> ActivationCode {
        let alphabet = CODE_ALPHABET;
        let mut groups = Vec::with_capacity(CODE_GROUPS);
        for _ in 0..CODE_GROUPS {
            let group: String = (0..GROUP_LEN)
                .map(|_| {
                    let i = rand::Rng::gen_range(&mut rand::rngs::OsRng, 0..alphabet.len());
                    alphabet[i] as char
                })
                .collect();
            groups.push(group);
        }
        ActivationCode(groups.join("-"))
    }

    /// The code in `data_dir`, made and written there if there is none.
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<ActivationCode> {
        match std::fs::read_to_string(code_path(data_dir)) {
            Ok(text) if !normalize(&text).is_empty() => Ok(ActivationCode(text.trim().to_string())),
            Ok(_) => Self::create(data_dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(data_dir),
            Err(e) => Err(e),
        }
    }

    fn create(data_dir: &Path) -> std::io::Result<ActivationCode> {
        let code = ActivationCode::generate();
        write_atomically(data_dir, CODE_FILE, format!("{}\n", code.0).as_bytes())?;
        Ok(code)
    }

    /// Reads the code that `sgw serve` wrote, for `sgw activation-code`.
    pub fn read(data_dir: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(code_path(data_dir)).map(|t| t.trim().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a typed code matches: case, spaces and dashes do not matter;
    /// compared in constant time.
    pub fn matches(&self, typed: &str) -> bool {
        let a = normalize(&self.0);
        let b = normalize(typed);
        crate::admin::same_secret(a.as_bytes(), b.as_bytes())
    }

    /// Used up: the file goes.
    pub fn expire(data_dir: &Path) -> std::io::Result<()> {
        match std::fs::remove_file(code_path(data_dir)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

fn code_path(data_dir: &Path) -> PathBuf {
    data_dir.join(CODE_FILE)
}

fn normalize(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}

/// Slows repeated failures from one client address: after the n-th
/// failure in a row the next attempt waits `base * 2^(n-1)`, up to `cap`.
/// Used for activation codes, console logins and (later) CHAP.
pub struct FailureThrottle {
    base: Duration,
    cap: Duration,
    /// Forget a client after this long without failures.
    forget_after: Duration,
    clients: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// Clients the throttle remembers at most: an attacker cycling addresses
/// must not grow the table without bound.
const MAX_TRACKED_CLIENTS: usize = 10_000;

impl FailureThrottle {
    pub fn new(base: Duration, cap: Duration) -> FailureThrottle {
        FailureThrottle { base, cap, forget_after: Duration::from_secs(900), clients: Mutex::new(HashMap::new()) }
    }

    /// How long this client's next attempt must wait.
    pub fn delay_for(&self, client: IpAddr) -> Duration {
        let clients = self.clients.lock();
        match clients.get(&client) {
            Some(&(failures, last)) if failures > 0 && last.elapsed() < self.forget_after => {
                let factor = 1u32.checked_shl(failures.saturating_sub(1).min(20)).unwrap_or(u32::MAX);
                self.base.saturating_mul(factor).min(self.cap)
            }
            _ => Duration::ZERO,
        }
    }

    /// Counts a failure; returns how many in a row this client has made.
    pub fn failed(&self, client: IpAddr) -> u32 {
        let mut clients = self.clients.lock();
        if clients.len() >= MAX_TRACKED_CLIENTS {
            let forget_after = self.forget_after;
            clients.retain(|_, (_, last)| last.elapsed() < forget_after);
        }
        let entry = clients.entry(client).or_insert((0, Instant::now()));
        entry.0 = entry.0.saturating_add(1);
        entry.1 = Instant::now();
        entry.0
    }

    pub fn succeeded(&self, client: IpAddr) {
        self.clients.lock().remove(&client);
    }
}

/// Where the cloud data goes, as chosen at activation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CloudTarget {
    /// The embedded object store under the data directory.
    Embedded,
    S3 {
        bucket: String,
        #[serde(default)]
        endpoint: Option<String>,
        #[serde(default = "default_region")]
        region: String,
        #[serde(default)]
        prefix: String,
        #[serde(default)]
        path_style: bool,
        #[serde(default)]
        access_key_id: Option<String>,
        #[serde(default)]
        secret_access_key: Option<String>,
    },
}

fn default_region() -> String {
    "us-east-1".into()
}

/// The body of `POST /api/v1/activate`, and of `sgw serve --activate-from
/// FILE` (where `code` is not needed: reading the file needs the host).
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivationRequest {
    #[serde(default)]
    pub code: Option<String>,
    pub gateway_name: String,
    #[serde(default = "default_timezone")]
    pub timezone: String,
    pub admin_user: String,
    pub admin_password: String,
    #[serde(default = "default_cloud")]
    pub cloud: CloudTarget,
    /// Bytes of cache; the configured size when absent.
    #[serde(default)]
    pub cache_size_bytes: Option<u64>,
    /// A file or block device for the cache; a file in the data directory
    /// when absent.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub cache_disk: Option<PathBuf>,
    /// `aws` or `stk`.
    #[serde(default)]
    pub library_personality: Option<crate::tapes::LibraryPersonality>,
}

/// Everything but the password and the S3 secret.
impl std::fmt::Debug for ActivationRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivationRequest")
            .field("gateway_name", &self.gateway_name)
            .field("timezone", &self.timezone)
            .field("admin_user", &self.admin_user)
            .field("cache_size_bytes", &self.cache_size_bytes)
            .finish_non_exhaustive()
    }
}

fn default_timezone() -> String {
    "UTC".into()
}

fn default_cloud() -> CloudTarget {
    CloudTarget::Embedded
}

/// A refused activation field: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub error: String,
}

impl FieldError {
    pub fn new(field: &str, error: impl Into<String>) -> FieldError {
        FieldError { field: field.to_string(), error: error.into() }
    }
}

/// Checks a gateway name: 1-64 printable characters, letters, digits,
/// space, '.', '_' and '-'.
pub fn check_gateway_name(name: &str) -> Result<(), FieldError> {
    let ok = (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b' ' | b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(FieldError::new("gateway_name", "the name must be 1-64 characters of letters, digits, space, '.', '_' or '-'"))
    }
}

/// Checks an IANA timezone name against the system's zoneinfo (UTC is
/// always known).
pub fn check_timezone(tz: &str) -> Result<(), FieldError> {
    let well_formed = !tz.is_empty()
        && tz.len() <= 64
        && !tz.starts_with('/')
        && !tz.split('/').any(|p| p.is_empty() || p == "." || p == "..")
        && tz.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'+'));
    if well_formed && (tz == "UTC" || Path::new("/usr/share/zoneinfo").join(tz).is_file()) {
        Ok(())
    } else {
        Err(FieldError::new("timezone", format!("unknown timezone {tz:?} (an IANA name such as Europe/Paris, or UTC)")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn code_is_long_typeable_private_and_expires() {
        let tmp = tempfile::tempdir().unwrap();
        let code = ActivationCode::load_or_create(tmp.path()).unwrap();
        // 25 symbols of a 31-letter alphabet: over 120 bits.
        assert_eq!(normalize(code.as_str()).len(), CODE_GROUPS * GROUP_LEN);
        assert_eq!(code.as_str().split('-').count(), CODE_GROUPS);
        assert!(code.as_str().chars().all(|c| c == '-' || CODE_ALPHABET.contains(&(c as u8))));
        let mode = std::fs::metadata(tmp.path().join(CODE_FILE)).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A restart keeps the same code; typing is forgiving.
        assert_eq!(ActivationCode::load_or_create(tmp.path()).unwrap(), code);
        assert!(code.matches(&code.as_str().to_lowercase().replace('-', " ")));
        assert!(!code.matches("AAAAA-AAAAA-AAAAA-AAAAA-AAAAA"));
        assert!(!code.matches(""));
        ActivationCode::expire(tmp.path()).unwrap();
        assert!(ActivationCode::read(tmp.path()).is_err());
        assert_ne!(ActivationCode::load_or_create(tmp.path()).unwrap(), code);
    }

    #[test]
    fn throttle_grows_exponentially_and_caps() {
        let t = FailureThrottle::new(Duration::from_millis(250), Duration::from_secs(5));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(t.delay_for(ip), Duration::ZERO);
        let delays: Vec<_> = (0..7).map(|_| {
            t.failed(ip);
            t.delay_for(ip)
        }).collect();
        assert_eq!(delays[0], Duration::from_millis(250));
        assert_eq!(delays[1], Duration::from_millis(500));
        assert_eq!(delays[2], Duration::from_secs(1));
        assert_eq!(delays[6], Duration::from_secs(5));
        assert_eq!(t.delay_for(other), Duration::ZERO);
        t.succeeded(ip);
        assert_eq!(t.delay_for(ip), Duration::ZERO);
    }

    #[test]
    fn names_and_timezones() {
        assert!(check_gateway_name("lab-gw 1").is_ok());
        assert!(check_gateway_name("").is_err());
        assert!(check_gateway_name("<script>").is_err());
        assert!(check_timezone("UTC").is_ok());
        assert!(check_timezone("../../etc/passwd").is_err());
        assert!(check_timezone("Mars/Olympus").is_err());
    }

    #[test]
    fn request_defaults_and_secrets_hidden() {
        let r: ActivationRequest = serde_json::from_str(
            r#"{"gateway_name":"gw","admin_user":"admin","admin_password":"correct-horse-battery"}"#,
        )
        .unwrap();
        assert_eq!(r.cloud, CloudTarget::Embedded);
        assert_eq!(r.timezone, "UTC");
        assert!(!format!("{r:?}").contains("correct-horse"));
        assert!(serde_json::from_str::<ActivationRequest>(r#"{"gateway_name":"gw","admin_user":"a","admin_password":"x","extra":1}"#).is_err());
    }
}
