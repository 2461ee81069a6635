//! Volumes: each is an iSCSI target (LUN 0) named after the volume, backed
//! by a sparse file in the data directory. The set of volumes is persisted
//! in `volumes.json`, replaced atomically on every change.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use iscsi_target::login::chap::{ChapConfig, ChapCredentials};
use iscsi_target::scsi::block::{BlockDevice, FileBlockDevice};
use iscsi_target::scsi::sbc::DiskUnit;
use iscsi_target::scsi::spc::DeviceIdentity;
use iscsi_target::scsi::LogicalUnit;
use iscsi_target::target::{Target, TargetCatalog};
use serde::{Deserialize, Serialize};

/// The IQN prefix of every target this gateway serves.
pub const IQN_PREFIX: &str = "iqn.2026-11.org.sgw";
/// Logical block size of volumes.
pub const BLOCK_SIZE: u32 = 512;
/// Smallest and largest volume (AWS cached volumes go to 32 TiB).
pub const MIN_VOLUME_SIZE: u64 = 1 << 20;
pub const MAX_VOLUME_SIZE: u64 = 32 << 40;

/// CHAP settings of a volume's target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeChap {
    pub user: String,
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutual_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutual_secret: Option<String>,
}

/// A volume's persistent record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub name: String,
    pub size_bytes: u64,
    /// Random, assigned at creation: the LU's NAA identifier and serial.
    pub id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chap: Option<VolumeChap>,
}

/// Volume states, named as AWS Storage Gateway names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VolumeState {
    Available,
}

/// A volume as the API reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VolumeInfo {
    pub name: String,
    pub size_bytes: u64,
    pub target_iqn: String,
    pub lun: u64,
    pub state: VolumeState,
    pub chap_enabled: bool,
    pub mutual_chap_enabled: bool,
}

/// What can go wrong managing volumes; the API maps each to a status code.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("invalid volume name {0:?}: use 1 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit")]
    InvalidName(String),
    #[error("invalid size {0}: volumes are 1 MiB to 32 TiB, in whole 512-byte blocks")]
    InvalidSize(u64),
    #[error("invalid CHAP settings: {0}")]
    InvalidChap(&'static str),
    #[error("volume {0} already exists")]
    Exists(String),
    #[error("volume {0} not found")]
    NotFound(String),
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
}

pub fn target_iqn(name: &str) -> String {
    format!("{IQN_PREFIX}:volume:{name}")
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !n.starts_with('-')
}

/// RFC 7143 §12.1.3 wants CHAP secrets of at least 12 bytes (96 bits); AWS
/// asks for 12 to 16 characters.
fn valid_secret(s: &str) -> bool {
    (12..=255).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic())
}

fn validate_chap(c: &VolumeChap) -> Result<(), VolumeError> {
    if c.user.is_empty() || c.user.len() > 255 {
        return Err(VolumeError::InvalidChap("the CHAP user must be 1 to 255 characters"));
    }
    if !valid_secret(&c.secret) {
        return Err(VolumeError::InvalidChap("the CHAP secret must be 12 to 255 printable characters"));
    }
    match (&c.mutual_user, &c.mutual_secret) {
        (None, None) => Ok(()),
        (Some(u), Some(s)) => {
            if u.is_empty() || !valid_secret(s) {
                return Err(VolumeError::InvalidChap("the mutual CHAP secret must be 12 to 255 printable characters"));
            }
            if *s == c.secret {
                return Err(VolumeError::InvalidChap("the mutual secret must differ from the initiator secret"));
            }
            Ok(())
        }
        _ => Err(VolumeError::InvalidChap("mutual CHAP needs both a user and a secret")),
    }
}

struct Volume {
    record: VolumeRecord,
    target: Arc<Target>,
    device: Arc<FileBlockDevice>,
}

/// The gateway's volumes; also the iSCSI target catalog.
pub struct VolumeManager {
    dir: PathBuf,
    volumes: RwLock<BTreeMap<String, Volume>>,
}

impl VolumeManager {
    /// Opens the volumes under `data_dir`, creating the layout if needed.
    pub fn open(data_dir: &Path) -> Result<VolumeManager, VolumeError> {
        let dir = data_dir.to_path_buf();
        std::fs::create_dir_all(dir.join("volumes"))?;
        let mgr = VolumeManager { dir, volumes: RwLock::new(BTreeMap::new()) };
        let records: Vec<VolumeRecord> = match std::fs::read(mgr.state_path()) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        {
            let mut vols = mgr.write();
            for r in records {
                let name = r.name.clone();
                vols.insert(name, mgr.build(r)?);
            }
        }
        Ok(mgr)
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("volumes.json")
    }

    fn image_path(&self, name: &str) -> PathBuf {
        self.dir.join("volumes").join(format!("{name}.img"))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Volume>> {
        self.volumes.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Volume>> {
        self.volumes.write().unwrap_or_else(|e| e.into_inner())
    }

    fn build(&self, r: VolumeRecord) -> Result<Volume, VolumeError> {
        let dev = Arc::new(FileBlockDevice::open(&self.image_path(&r.name), r.size_bytes, BLOCK_SIZE)?);
        let identity = DeviceIdentity {
            vendor: "SGW".into(),
            product: "Volume".into(),
            revision: "0001".into(),
            serial: format!("{:016x}", r.id),
            naa_id: r.id,
            write_protected: false,
        };
        let lu: Arc<dyn LogicalUnit> = Arc::new(DiskUnit::new(dev.clone(), identity));
        let chap = r.chap.as_ref().map(|c| ChapConfig {
            initiator: ChapCredentials { user: c.user.clone(), secret: c.secret.clone() },
            mutual: match (&c.mutual_user, &c.mutual_secret) {
                (Some(u), Some(s)) => Some(ChapCredentials { user: u.clone(), secret: s.clone() }),
                _ => None,
            },
        });
        let target = Arc::new(Target {
            name: target_iqn(&r.name),
            alias: Some(r.name.clone()),
            chap,
            luns: BTreeMap::from([(0u64, lu)]),
        });
        Ok(Volume { record: r, target, device: dev })
    }

    /// Makes every completed write of every volume durable (clean shutdown).
    pub async fn flush_all(&self) -> Result<(), VolumeError> {
        let devices: Vec<Arc<FileBlockDevice>> = self.read().values().map(|v| v.device.clone()).collect();
        for d in devices {
            d.flush().await?;
        }
        Ok(())
    }

    /// Writes the volume list atomically: temp file, fsync, rename, fsync dir.
    fn persist(&self, vols: &BTreeMap<String, Volume>) -> Result<(), VolumeError> {
        let records: Vec<&VolumeRecord> = vols.values().map(|v| &v.record).collect();
        let bytes = serde_json::to_vec_pretty(&records).map_err(std::io::Error::other)?;
        let tmp = self.dir.join("volumes.json.tmp");
        {
            let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
            set_private(&f)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, self.state_path())?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        Ok(())
    }

    pub fn create(&self, name: &str, size_bytes: u64, chap: Option<VolumeChap>) -> Result<VolumeInfo, VolumeError> {
        if !valid_name(name) {
            return Err(VolumeError::InvalidName(name.to_string()));
        }
        if !(MIN_VOLUME_SIZE..=MAX_VOLUME_SIZE).contains(&size_bytes) || size_bytes % BLOCK_SIZE as u64 != 0 {
            return Err(VolumeError::InvalidSize(size_bytes));
        }
        if let Some(c) = &chap {
            validate_chap(c)?;
        }
        let mut vols = self.write();
        if vols.contains_key(name) {
            return Err(VolumeError::Exists(name.to_string()));
        }
        // A leftover image of a deleted volume must not leak into a new one.
        match std::fs::remove_file(self.image_path(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let record = VolumeRecord { name: name.to_string(), size_bytes, id: rand::random::<u64>() >> 4, chap };
        vols.insert(name.to_string(), self.build(record)?);
        if let Err(e) = self.persist(&vols) {
            vols.remove(name);
            return Err(e);
        }
        Ok(info(&vols[name].record))
    }

    /// Deletes a volume and its data. The caller ends its sessions first.
    pub fn delete(&self, name: &str) -> Result<(), VolumeError> {
        let mut vols = self.write();
        let removed = vols.remove(name).ok_or_else(|| VolumeError::NotFound(name.to_string()))?;
        if let Err(e) = self.persist(&vols) {
            vols.insert(name.to_string(), removed);
            return Err(e);
        }
        match std::fs::remove_file(self.image_path(name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub fn list(&self) -> Vec<VolumeInfo> {
        self.read().values().map(|v| info(&v.record)).collect()
    }

    pub fn get(&self, name: &str) -> Option<VolumeInfo> {
        self.read().get(name).map(|v| info(&v.record))
    }
}

fn set_private(f: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // The volume list holds CHAP secrets.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
}

fn info(r: &VolumeRecord) -> VolumeInfo {
    VolumeInfo {
        name: r.name.clone(),
        size_bytes: r.size_bytes,
        target_iqn: target_iqn(&r.name),
        lun: 0,
        state: VolumeState::Available,
        chap_enabled: r.chap.is_some(),
        mutual_chap_enabled: r.chap.as_ref().is_some_and(|c| c.mutual_user.is_some()),
    }
}

impl TargetCatalog for VolumeManager {
    fn lookup(&self, name: &str) -> Option<Arc<Target>> {
        let vol = name.strip_prefix(IQN_PREFIX)?.strip_prefix(":volume:")?;
        self.read().get(vol).map(|v| v.target.clone())
    }

    fn list(&self) -> Vec<Arc<Target>> {
        self.read().values().map(|v| v.target.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_list_reopen_delete() {
        let dir = tempfile::tempdir().unwrap();
        let m = VolumeManager::open(dir.path()).unwrap();
        let v = m.create("vol-1", 64 << 20, None).unwrap();
        assert_eq!(v.target_iqn, "iqn.2026-11.org.sgw:volume:vol-1");
        assert!(m.lookup(&v.target_iqn).is_some());
        assert!(matches!(m.create("vol-1", 64 << 20, None), Err(VolumeError::Exists(_))));
        drop(m);
        let m = VolumeManager::open(dir.path()).unwrap();
        assert_eq!(m.list().len(), 1);
        m.delete("vol-1").unwrap();
        assert!(m.list().is_empty());
        assert!(matches!(m.delete("vol-1"), Err(VolumeError::NotFound(_))));
    }

    #[test]
    fn validation() {
        let dir = tempfile::tempdir().unwrap();
        let m = VolumeManager::open(dir.path()).unwrap();
        assert!(matches!(m.create("Bad_Name", 64 << 20, None), Err(VolumeError::InvalidName(_))));
        assert!(matches!(m.create("ok", 1000, None), Err(VolumeError::InvalidSize(_))));
        assert!(matches!(m.create("ok", (64 << 20) + 1, None), Err(VolumeError::InvalidSize(_))));
        let short = VolumeChap { user: "u".into(), secret: "short".into(), mutual_user: None, mutual_secret: None };
        assert!(matches!(m.create("ok", 64 << 20, Some(short)), Err(VolumeError::InvalidChap(_))));
        let half = VolumeChap {
            user: "u".into(),
            secret: "0123456789ab".into(),
            mutual_user: Some("m".into()),
            mutual_secret: None,
        };
        assert!(matches!(m.create("ok", 64 << 20, Some(half)), Err(VolumeError::InvalidChap(_))));
    }
}
