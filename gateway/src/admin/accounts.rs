//! The gateway's claim: its name and timezone, the admin account and the
//! API tokens, kept in `DATA_DIR/admin.json` (owner-only).
//!
//! A gateway without this file is unactivated. Passwords are stored only
//! as argon2id hashes; tokens only as SHA-256 digests (they are 256 random
//! bits, so a fast hash is enough and lookups stay cheap).

use std::path::{Path, PathBuf};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::files::write_atomically;

pub const ADMIN_FILE: &str = "admin.json";
/// The shortest admin password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Tokens a gateway keeps at most; a leak of creations should not grow
/// the file without bound.
const MAX_TOKENS: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0}")]
    Invalid(String),
    #[error("no such token: {0}")]
    NoSuchToken(String),
    #[error("the gateway is not activated")]
    NotActivated,
    #[error("the gateway is already activated")]
    AlreadyActivated,
    #[error("wrong user or password")]
    WrongPassword,
    #[error("cannot save {path}: {source}")]
    Save { path: PathBuf, source: std::io::Error },
    #[error("cannot read {path}: {msg}")]
    Load { path: PathBuf, msg: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AdminAccount {
    user: String,
    /// A PHC string: `$argon2id$v=19$...`.
    password_hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TokenRecord {
    id: String,
    name: String,
    sha256: String,
    created_unix: u64,
}

/// What `GET /api/v1/tokens` shows: never the secret or its hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub created_unix: u64,
}

/// The identity chosen at activation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct GatewayIdentity {
    pub name: String,
    pub timezone: String,
    pub activated_unix: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AdminFile {
    version: u32,
    identity: GatewayIdentity,
    admin: AdminAccount,
    #[serde(default)]
    tokens: Vec<TokenRecord>,
}

pub struct AccountStore {
    dir: PathBuf,
    state: Mutex<Option<AdminFile>>,
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn sha256_hex(text: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()))
}

/// Checks a new password against the policy.
pub fn check_password(password: &str) -> Result<(), AccountError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AccountError::Invalid(format!("the password needs at least {MIN_PASSWORD_CHARS} characters")));
    }
    if password.len() > 1024 {
        return Err(AccountError::Invalid("the password is longer than 1024 bytes".into()));
    }
    Ok(())
}

/// Checks an admin user name: 1-64 of `A-Za-z0-9._-`.
pub fn check_user(user: &str) -> Result<(), AccountError> {
    let ok = (1..=64).contains(&user.len())
        && user.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(AccountError::Invalid("the admin user must be 1-64 characters of A-Z, a-z, 0-9, '.', '_' or '-'".into()))
    }
}

/// Hashes a password with argon2id and a fresh salt (slow by design: call
/// it off the async workers).
pub fn hash_password(password: &str) -> Result<String, AccountError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| AccountError::Invalid(format!("cannot hash the password: {e}")))
}

fn verify_hash(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

impl AccountStore {
    /// Reads `DATA_DIR/admin.json` if it exists.
    pub fn open(data_dir: &Path) -> Result<AccountStore, AccountError> {
        let path = data_dir.join(ADMIN_FILE);
        let state = match std::fs::read(&path) {
            Ok(bytes) => Some(
                serde_json::from_slice::<AdminFile>(&bytes)
                    .map_err(|e| AccountError::Load { path: path.clone(), msg: e.to_string() })?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(AccountError::Load { path, msg: e.to_string() }),
        };
        Ok(AccountStore { dir: data_dir.to_path_buf(), state: Mutex::new(state) })
    }

    pub fn is_activated(&self) -> bool {
        self.state.lock().is_some()
    }

    pub fn identity(&self) -> Option<GatewayIdentity> {
        self.state.lock().as_ref().map(|f| f.identity.clone())
    }

    pub fn admin_user(&self) -> Option<String> {
        self.state.lock().as_ref().map(|f| f.admin.user.clone())
    }

    fn save(&self, file: &AdminFile) -> Result<(), AccountError> {
        let bytes = serde_json::to_vec_pretty(file).map_err(|e| AccountError::Invalid(e.to_string()))?;
        write_atomically(&self.dir, ADMIN_FILE, &bytes)
            .map_err(|source| AccountError::Save { path: self.dir.join(ADMIN_FILE), source })
    }

    /// Records the claim: from now on the gateway is activated.
    pub fn activate(&self, identity: GatewayIdentity, user: &str, password_hash: String) -> Result<(), AccountError> {
        let mut state = self.state.lock();
        if state.is_some() {
            return Err(AccountError::AlreadyActivated);
        }
        let file = AdminFile {
            version: 1,
            identity,
            admin: AdminAccount { user: user.to_string(), password_hash },
            tokens: Vec::new(),
        };
        self.save(&file)?;
        *state = Some(file);
        Ok(())
    }

    /// Whether `user` and `password` are the admin's. Runs argon2 even for
    /// an unknown user, so the answer's timing does not tell which was
    /// wrong.
    pub fn verify_password(&self, user: &str, password: &str) -> bool {
        let (stored_user, hash) = match self.state.lock().as_ref() {
            Some(f) => (f.admin.user.clone(), f.admin.password_hash.clone()),
            None => return false,
        };
        let hash_ok = verify_hash(&hash, password);
        hash_ok && crate::admin::same_secret(stored_user.as_bytes(), user.as_bytes())
    }

    /// Replaces the admin's password hash (the caller has checked the old
    /// password, or is root on the gateway's host).
    pub fn set_password_hash(&self, password_hash: String) -> Result<(), AccountError> {
        let mut state = self.state.lock();
        let file = state.as_mut().ok_or(AccountError::NotActivated)?;
        let mut next = file.clone();
        next.admin.password_hash = password_hash;
        self.save(&next)?;
        *file = next;
        Ok(())
    }

    /// Makes a token; the secret is returned once and only its digest kept.
    pub fn create_token(&self, name: &str) -> Result<(TokenInfo, String), AccountError> {
        if !(1..=64).contains(&name.len()) || name.chars().any(|c| c.is_control()) {
            return Err(AccountError::Invalid("a token name is 1-64 printable characters".into()));
        }
        let mut state = self.state.lock();
        let file = state.as_mut().ok_or(AccountError::NotActivated)?;
        if file.tokens.len() >= MAX_TOKENS {
            return Err(AccountError::Invalid(format!("at most {MAX_TOKENS} tokens; revoke some first")));
        }
        let id = hex::encode(rand::random::<[u8; 6]>());
        let secret = format!("sgw_{}", hex::encode(rand::random::<[u8; 32]>()));
        let record =
            TokenRecord { id: id.clone(), name: name.to_string(), sha256: sha256_hex(&secret), created_unix: now_unix() };
        let mut next = file.clone();
        next.tokens.push(record.clone());
        self.save(&next)?;
        *file = next;
        Ok((TokenInfo { id, name: record.name, created_unix: record.created_unix }, secret))
    }

    pub fn list_tokens(&self) -> Vec<TokenInfo> {
        self.state.lock().as_ref().map_or_else(Vec::new, |f| {
            f.tokens
                .iter()
                .map(|t| TokenInfo { id: t.id.clone(), name: t.name.clone(), created_unix: t.created_unix })
                .collect()
        })
    }

    pub fn revoke_token(&self, id: &str) -> Result<(), AccountError> {
        let mut state = self.state.lock();
        let file = state.as_mut().ok_or(AccountError::NotActivated)?;
        let mut next = file.clone();
        let before = next.tokens.len();
        next.tokens.retain(|t| t.id != id);
        if next.tokens.len() == before {
            return Err(AccountError::NoSuchToken(id.to_string()));
        }
        self.save(&next)?;
        *file = next;
        Ok(())
    }

    /// The token a bearer secret names, if it is valid.
    pub fn verify_token(&self, secret: &str) -> Option<TokenInfo> {
        let digest = sha256_hex(secret);
        let state = self.state.lock();
        state.as_ref()?.tokens.iter().find_map(|t| {
            crate::admin::same_secret(t.sha256.as_bytes(), digest.as_bytes())
                .then(|| TokenInfo { id: t.id.clone(), name: t.name.clone(), created_unix: t.created_unix })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activated() -> (tempfile::TempDir, AccountStore) {
        let tmp = tempfile::tempdir().unwrap();
        let store = AccountStore::open(tmp.path()).unwrap();
        let identity = GatewayIdentity { name: "gw".into(), timezone: "UTC".into(), activated_unix: 1 };
        store.activate(identity, "admin", hash_password("correct-horse-battery").unwrap()).unwrap();
        (tmp, store)
    }

    #[test]
    fn password_checked_and_never_stored_in_clear() {
        let (tmp, store) = activated();
        assert!(store.verify_password("admin", "correct-horse-battery"));
        assert!(!store.verify_password("admin", "correct-horse-batterY"));
        assert!(!store.verify_password("root", "correct-horse-battery"));
        let text = std::fs::read_to_string(tmp.path().join(ADMIN_FILE)).unwrap();
        assert!(text.contains("$argon2id$"), "{text}");
        assert!(!text.contains("correct-horse-battery"));
        // A reopened store is still activated with the same account.
        let again = AccountStore::open(tmp.path()).unwrap();
        assert!(again.verify_password("admin", "correct-horse-battery"));
        assert!(matches!(
            again.activate(again.identity().unwrap(), "x", String::new()),
            Err(AccountError::AlreadyActivated)
        ));
    }

    #[test]
    fn tokens_are_hashed_listed_and_revoked() {
        let (tmp, store) = activated();
        let (info, secret) = store.create_token("ci").unwrap();
        assert_eq!(store.verify_token(&secret), Some(info.clone()));
        assert_eq!(store.verify_token("sgw_wrong"), None);
        assert_eq!(store.list_tokens(), vec![info.clone()]);
        let text = std::fs::read_to_string(tmp.path().join(ADMIN_FILE)).unwrap();
        assert!(!text.contains(&secret));
        store.revoke_token(&info.id).unwrap();
        assert_eq!(store.verify_token(&secret), None);
        assert!(matches!(store.revoke_token(&info.id), Err(AccountError::NoSuchToken(_))));
    }

    #[test]
    fn password_and_user_policy() {
        assert!(check_password("short").is_err());
        assert!(check_password("twelve chars").is_ok());
        assert!(check_user("admin").is_ok());
        assert!(check_user("").is_err());
        assert!(check_user("a b").is_err());
    }
}
