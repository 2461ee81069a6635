//! What activation chooses (the cloud target, the cache, the library's
//! personality), kept in `DATA_DIR/gateway.toml`. Its keys are config-file
//! keys: the daemon reads it under any `--config` file and the flags, so
//! automation can still override it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::activation::{CloudTarget, FieldError};
use crate::cloud::store::{S3Config, StoreConfig};
use crate::cloud::CloudConfig;
use crate::files::write_atomically;
use crate::tapes::LibraryPersonality;

pub const SETTINGS_FILE: &str = "gateway.toml";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ActivatedSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_disk: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub library_personality: Option<LibraryPersonality>,
    /// Absent: the embedded store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<CloudConfig>,
}

impl ActivatedSettings {
    pub fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        let text = toml::to_string(self).map_err(std::io::Error::other)?;
        write_atomically(data_dir, SETTINGS_FILE, text.as_bytes())
    }

    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(SETTINGS_FILE)
    }
}

/// The cloud configuration of a target; `None` for the embedded store.
pub fn cloud_config(target: &CloudTarget) -> Result<Option<CloudConfig>, FieldError> {
    let CloudTarget::S3 { bucket, endpoint, region, prefix, path_style, access_key_id, secret_access_key } = target else {
        return Ok(None);
    };
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'));
    if !bucket_ok {
        return Err(FieldError::new("s3_bucket", "a bucket name is 3-63 characters of a-z, 0-9, '.' and '-'"));
    }
    if let Some(e) = endpoint.as_deref().filter(|e| !e.is_empty()) {
        let parsed: Result<axum::http::Uri, _> = e.parse();
        let ok = parsed.as_ref().is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
        if !ok {
            return Err(FieldError::new("s3_endpoint", format!("{e:?} is not an http:// or https:// URL")));
        }
    }
    if region.is_empty() || region.len() > 64 || !region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(FieldError::new("s3_region", "a region is letters, digits and '-', e.g. us-east-1"));
    }
    if prefix.len() > 256 || prefix.chars().any(|c| c.is_control() || c == '\\') {
        return Err(FieldError::new("s3_prefix", "a prefix is at most 256 printable characters"));
    }
    let nonempty = |s: &Option<String>| s.clone().filter(|v| !v.is_empty());
    let (access_key_id, secret_access_key) = (nonempty(access_key_id), nonempty(secret_access_key));
    if access_key_id.is_some() != secret_access_key.is_some() {
        return Err(FieldError::new("s3_secret_access_key", "give both the access key id and the secret, or neither"));
    }
    Ok(Some(CloudConfig {
        store: StoreConfig::S3(S3Config {
            bucket: bucket.clone(),
            region: region.clone(),
            endpoint: endpoint.clone().filter(|e| !e.is_empty()),
            path_style: *path_style,
            access_key_id,
            secret_access_key,
            connect_timeout_secs: 10,
        }),
        prefix: prefix.trim_matches('/').to_string(),
        retry: Default::default(),
        bandwidth: Default::default(),
        uploader: Default::default(),
        zstd_level: crate::cloud::DEFAULT_ZSTD_LEVEL,
    }))
}

/// Share of the filesystem the cache must leave free.
const RESERVED_PERCENT: u64 = 5;

/// Refuses a cache that would not fit in `dir`'s filesystem with 5% of it
/// left free.
pub fn check_cache_space(dir: &Path, size: u64) -> Result<(), FieldError> {
    check_space(dir, size, 0)
}

/// At start: refuses a cache disk file that cannot get its configured size
/// (in slots of `chunk_size`) with 5% of its filesystem left free. The cache reserves the file's
/// blocks when it opens it (so that writes never find the filesystem full
/// later); blocks the file holds already count as its own, and a file that
/// holds all it needs starts whatever others left of the filesystem (it may
/// hold data not yet uploaded). A block device is used as it is.
pub fn check_cache_disk_space(disk: &Path, size: u64, chunk_size: u32) -> Result<(), FieldError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let held = match std::fs::metadata(disk) {
        Ok(m) if m.file_type().is_block_device() => return Ok(()),
        Ok(m) => m.blocks() * 512,
        Err(_) => 0,
    };
    if held >= cache::disk_file_bytes(size, chunk_size) {
        return Ok(());
    }
    let dir = disk.parent().unwrap_or(disk);
    check_space(dir, size, held)
}

fn check_space(dir: &Path, size: u64, held: u64) -> Result<(), FieldError> {
    let existing = nearest_existing(dir);
    let Some((avail, total)) = crate::files::free_space(&existing) else {
        return Err(FieldError::new("cache_size", format!("cannot read the free space of {}", existing.display())));
    };
    let usable = (avail + held).saturating_sub(total / 100 * RESERVED_PERCENT);
    if size > usable {
        return Err(FieldError::new(
            "cache_size",
            format!(
                "{} does not fit: {} can give the cache at most {} (keeping {RESERVED_PERCENT}% of the filesystem free)",
                crate::units::size_text(size),
                existing.display(),
                crate::units::size_text(usable)
            ),
        ));
    }
    Ok(())
}

fn nearest_existing(dir: &Path) -> PathBuf {
    dir.ancestors().find(|p| p.exists()).map_or_else(|| PathBuf::from("/"), Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_as_config_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let s = ActivatedSettings {
            cache_size: Some(1 << 30),
            library_personality: Some(LibraryPersonality::Stk),
            cloud: cloud_config(&CloudTarget::S3 {
                bucket: "bkt".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: "us-east-1".into(),
                prefix: "/site-a/".into(),
                path_style: true,
                access_key_id: Some("k".into()),
                secret_access_key: Some("s".into()),
            })
            .unwrap(),
            cache_disk: None,
        };
        s.save(tmp.path()).unwrap();
        let text = std::fs::read_to_string(ActivatedSettings::path(tmp.path())).unwrap();
        let back: crate::config::ConfigFile = toml::from_str(&text).unwrap();
        assert_eq!(back.cache_size, Some(1 << 30));
        assert_eq!(back.cloud.unwrap().prefix, "site-a");
    }

    #[test]
    fn refusals_name_the_field() {
        let s3 = |bucket: &str, endpoint: &str| CloudTarget::S3 {
            bucket: bucket.into(),
            endpoint: Some(endpoint.into()),
            region: "us-east-1".into(),
            prefix: String::new(),
            path_style: false,
            access_key_id: None,
            secret_access_key: None,
        };
        assert_eq!(cloud_config(&s3("B!", "http://x")).unwrap_err().field, "s3_bucket");
        assert_eq!(cloud_config(&s3("bucket", "ftp://x")).unwrap_err().field, "s3_endpoint");
        assert!(cloud_config(&CloudTarget::Embedded).unwrap().is_none());
        let e = check_cache_space(Path::new("/tmp"), u64::MAX / 2).unwrap_err();
        assert_eq!(e.field, "cache_size");
        assert!(e.error.contains("at most"), "{}", e.error);
        assert!(check_cache_space(Path::new("/tmp/does/not/exist"), 1 << 20).is_ok());
    }

    #[test]
    fn a_cache_disk_counts_the_blocks_it_holds() {
        use std::os::fd::AsRawFd;
        let tmp = tempfile::tempdir().unwrap();
        let disk = tmp.path().join("disk0.img");
        let (avail, total) = crate::files::free_space(tmp.path()).unwrap();
        let usable = avail - total / 100 * RESERVED_PERCENT;
        let e = check_cache_disk_space(&disk, usable + (256 << 20), 1 << 20).unwrap_err();
        assert!(e.error.contains("at most"), "{}", e.error);
        // A disk file holding 512 MiB (allocated, not written): a size
        // halfway between the free space and the free space plus the file's
        // blocks fits only when those count. The margins of 256 MiB absorb
        // other writers on this filesystem (tests run beside other jobs).
        let file = std::fs::File::create(&disk).unwrap();
        assert_eq!(unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, 512 << 20) }, 0, "fallocate");
        let (avail, total) = crate::files::free_space(tmp.path()).unwrap();
        let size = avail - total / 100 * RESERVED_PERCENT + (256 << 20);
        assert!(check_cache_space(tmp.path(), size).is_err(), "the free space alone is short");
        assert!(check_cache_disk_space(&disk, size, 1 << 20).is_ok(), "with the file's blocks it fits");
        // A file holding its whole size needs nothing more, however little
        // others left of the filesystem.
        assert!(check_cache_disk_space(&disk, 512 << 20, 1 << 20).is_ok(), "the file already holds all it needs");
    }
}
