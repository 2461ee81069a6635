//! Update packages for the appliance: a tarball holding the new `sgw`
//! binary and a manifest (version, size, SHA-256 of the binary) signed
//! with an ed25519 key. The image carries the public key
//! (`/etc/sgw/update-key.pub`, set at build); a package that another key
//! signed, or whose binary does not match its manifest, is refused
//! before anything is written.
//!
//! Making one: `sgw update keygen --out KEY` once (keep KEY off the
//! appliance), then `sgw update pack --key KEY --binary target/release/sgw
//! --out sgw-update.tar` per release. Applying one: `sgw update apply
//! PACKAGE` as root on the appliance, or an upload to `POST
//! /api/v1/update`, which hands it to `sgw-update.service`.

pub mod cli;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

const MANIFEST: &str = "manifest.json";
const SIGNATURE: &str = "manifest.sig";
const BINARY: &str = "sgw";
/// Packages larger than this are refused unread.
pub const MAX_PACKAGE_BYTES: u64 = 512 << 20;

/// What the signature covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// `sgw --version` of the binary.
    pub version: String,
    pub size: u64,
    /// Hex SHA-256 of the binary.
    pub sha256: String,
}

/// A package whose signature and binary checked out.
pub struct Verified {
    pub manifest: Manifest,
    pub binary: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("{0}")]
    Io(String),
    #[error("not an update package: {0}")]
    Malformed(String),
    #[error("the package's signature does not verify with this appliance's update key")]
    BadSignature,
    #[error("the binary does not match the signed manifest ({0})")]
    Mismatch(String),
    #[error("{0}")]
    Key(String),
}

fn io(what: &Path) -> impl Fn(std::io::Error) -> UpdateError + '_ {
    move |e| UpdateError::Io(format!("{}: {e}", what.display()))
}

/// Makes a signing key (PKCS#8, owner-only) and returns its public key as
/// base64, the form `/etc/sgw/update-key.pub` holds.
pub fn keygen(out: &Path) -> Result<String, UpdateError> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| UpdateError::Key(e.to_string()))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| UpdateError::Key(e.to_string()))?;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(out).map_err(io(out))?;
    f.write_all(pkcs8.as_ref()).map_err(io(out))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(pair.public_key().as_ref()))
}

/// The public key of a signing key, as base64.
pub fn public_key_of(key: &Path) -> Result<String, UpdateError> {
    let pair = load_key(key)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(pair.public_key().as_ref()))
}

fn load_key(key: &Path) -> Result<Ed25519KeyPair, UpdateError> {
    let bytes = std::fs::read(key).map_err(io(key))?;
    Ed25519KeyPair::from_pkcs8(&bytes).map_err(|e| UpdateError::Key(format!("{}: not an ed25519 PKCS#8 key: {e}", key.display())))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// Writes a package of `binary`, signed with `key`.
pub fn pack(binary: &Path, version: &str, key: &Path, out: &Path) -> Result<Manifest, UpdateError> {
    let pair = load_key(key)?;
    let bytes = std::fs::read(binary).map_err(io(binary))?;
    let manifest = Manifest { version: version.to_string(), size: bytes.len() as u64, sha256: sha256_hex(&bytes) };
    let manifest_json = serde_json::to_vec_pretty(&manifest).map_err(|e| UpdateError::Io(e.to_string()))?;
    let signature = base64::engine::general_purpose::STANDARD.encode(pair.sign(&manifest_json).as_ref());
    let file = std::fs::File::create(out).map_err(io(out))?;
    let mut tar = tar::Builder::new(file);
    for (name, data, mode) in
        [(MANIFEST, manifest_json.as_slice(), 0o644), (SIGNATURE, signature.as_bytes(), 0o644), (BINARY, bytes.as_slice(), 0o755)]
    {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, name, data).map_err(io(out))?;
    }
    tar.into_inner().and_then(|mut f| f.flush()).map_err(io(out))?;
    Ok(manifest)
}

/// Reads a public key file: base64 of the 32 raw bytes.
pub fn read_public_key(path: &Path) -> Result<Vec<u8>, UpdateError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| UpdateError::Key(format!("{}: not base64: {e}", path.display())))?;
    if key.len() != 32 {
        return Err(UpdateError::Key(format!("{}: an ed25519 public key is 32 bytes, not {}", path.display(), key.len())));
    }
    Ok(key)
}

/// Checks a package against the public key: the signature over the
/// manifest, then the binary against the manifest.
pub fn verify(package: impl Read, public_key: &[u8]) -> Result<Verified, UpdateError> {
    let mut archive = tar::Archive::new(package.take(MAX_PACKAGE_BYTES));
    let (mut manifest_json, mut signature, mut binary) = (None, None, None);
    let entries = archive.entries().map_err(|e| UpdateError::Malformed(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| UpdateError::Malformed(e.to_string()))?;
        let name = entry.path().map_err(|e| UpdateError::Malformed(e.to_string()))?.to_string_lossy().into_owned();
        let slot = match name.as_str() {
            MANIFEST => &mut manifest_json,
            SIGNATURE => &mut signature,
            BINARY => &mut binary,
            other => return Err(UpdateError::Malformed(format!("unexpected member {other:?}"))),
        };
        if slot.is_some() {
            return Err(UpdateError::Malformed(format!("{name} twice")));
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(|e| UpdateError::Malformed(e.to_string()))?;
        *slot = Some(data);
    }
    let (Some(manifest_json), Some(signature), Some(binary)) = (manifest_json, signature, binary) else {
        return Err(UpdateError::Malformed(format!("it needs {MANIFEST}, {SIGNATURE} and {BINARY}")));
    };
    let signature = base64::engine::general_purpose::STANDARD
        .decode(String::from_utf8_lossy(&signature).trim())
        .map_err(|_| UpdateError::BadSignature)?;
    UnparsedPublicKey::new(&ED25519, public_key).verify(&manifest_json, &signature).map_err(|_| UpdateError::BadSignature)?;
    let manifest: Manifest = serde_json::from_slice(&manifest_json).map_err(|e| UpdateError::Malformed(e.to_string()))?;
    if binary.len() as u64 != manifest.size || sha256_hex(&binary) != manifest.sha256 {
        return Err(UpdateError::Mismatch(format!("{} bytes, SHA-256 {}", binary.len(), sha256_hex(&binary))));
    }
    Ok(Verified { manifest, binary })
}

/// Puts the verified binary in place of `target` atomically, keeping the
/// one it replaces as `target.previous`. The new binary must run
/// (`--version`) before it replaces anything.
pub fn install(v: &Verified, target: &Path) -> Result<PathBuf, UpdateError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = target.parent().unwrap_or(Path::new("/"));
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "sgw".into());
    let staged = dir.join(format!("{name}.new"));
    let _ = std::fs::remove_file(&staged);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o700).open(&staged).map_err(io(&staged))?;
    f.write_all(&v.binary).and_then(|()| f.sync_all()).map_err(io(&staged))?;
    drop(f);
    let runs = std::process::Command::new(&staged).arg("--version").output();
    match runs {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            let _ = std::fs::remove_file(&staged);
            return Err(UpdateError::Mismatch(format!("the new binary does not run here: {}", String::from_utf8_lossy(&o.stderr).trim())));
        }
        Err(e) => {
            let _ = std::fs::remove_file(&staged);
            return Err(UpdateError::Mismatch(format!("the new binary does not run here: {e}")));
        }
    }
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755)).map_err(io(&staged))?;
    let previous = dir.join(format!("{name}.previous"));
    if target.exists() {
        std::fs::copy(target, &previous).map_err(io(&previous))?;
    }
    std::fs::rename(&staged, target).map_err(io(target))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    Ok(previous)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(dir: &Path, name: &str) -> (PathBuf, Vec<u8>) {
        let path = dir.join(name);
        let public = keygen(&path).unwrap();
        (path, base64::engine::general_purpose::STANDARD.decode(public).unwrap())
    }

    #[test]
    fn a_signed_package_verifies_and_installs_and_others_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (signing, public) = key(tmp.path(), "release.key");
        let (_, other_public) = key(tmp.path(), "other.key");
        // A binary that runs: a shell script answering --version.
        let binary = tmp.path().join("sgw-new");
        std::fs::write(&binary, "#!/bin/sh\necho sgw 9.9.9\n").unwrap();
        let pkg = tmp.path().join("update.tar");
        let m = pack(&binary, "sgw 9.9.9", &signing, &pkg).unwrap();
        assert_eq!(m.size, 25);
        assert_eq!(public_key_of(&signing).unwrap(), base64::engine::general_purpose::STANDARD.encode(&public));

        let v = verify(std::fs::File::open(&pkg).unwrap(), &public).unwrap();
        assert_eq!(v.manifest, m);
        assert!(matches!(verify(std::fs::File::open(&pkg).unwrap(), &other_public), Err(UpdateError::BadSignature)));

        // A binary swapped after signing: the manifest no longer matches.
        let bytes = std::fs::read(&pkg).unwrap();
        // Its last mention is in the binary (the manifest comes first).
        let at = bytes.windows(9).rposition(|w| w == b"sgw 9.9.9").unwrap();
        let mut tampered = bytes.clone();
        tampered[at] = b'x';
        // The tar header checksum covers headers only, so the read works.
        assert!(matches!(verify(tampered.as_slice(), &public), Err(UpdateError::Mismatch(_))));
        assert!(matches!(verify(&b"not a tar"[..], &public), Err(UpdateError::Malformed(_))));

        let target = tmp.path().join("bin/sgw");
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(&target, "old").unwrap();
        let previous = install(&v, &target).unwrap();
        assert_eq!(std::fs::read_to_string(&previous).unwrap(), "old");
        assert_eq!(std::fs::read(&target).unwrap(), v.binary);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o755);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Uploaded bytes are untrusted: random input and any one byte
        /// changed in a good package are refused, never accepted, never a
        /// panic.
        #[test]
        fn damaged_or_random_packages_are_refused(noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096),
                                                  at in 0usize..4096, flip in 1u8..=255) {
            let tmp = tempfile::tempdir().unwrap();
            let (signing, public) = key(tmp.path(), "k");
            let binary = tmp.path().join("b");
            std::fs::write(&binary, b"#!/bin/sh\necho sgw 1\n").unwrap();
            let pkg = tmp.path().join("p.tar");
            pack(&binary, "sgw 1", &signing, &pkg).unwrap();
            let mut bytes = std::fs::read(&pkg).unwrap();
            proptest::prop_assert!(verify(bytes.as_slice(), &public).is_ok());
            let i = at % bytes.len();
            bytes[i] ^= flip;
            // A changed byte in tar padding or an unused header field may
            // leave the members intact: then they must be the signed ones.
            if let Ok(v) = verify(bytes.as_slice(), &public) {
                proptest::prop_assert_eq!(v.binary, std::fs::read(&binary).unwrap());
            }
            proptest::prop_assert!(verify(noise.as_slice(), &public).is_err());
        }
    }
}
