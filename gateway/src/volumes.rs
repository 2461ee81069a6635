//! Volumes: each is an iSCSI target (LUN 0) named after the volume. A
//! cached volume (the default) keeps its primary copy in the cloud; a local
//! volume is a sparse file in the data directory. The set of volumes is
//! persisted in `volumes.json`, replaced atomically on every change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use iscsi_target::login::chap::{ChapConfig, ChapCredentials};
use iscsi_target::scsi::block::{BlockDevice, FileBlockDevice};
use iscsi_target::scsi::sbc::DiskUnit;
use iscsi_target::scsi::spc::DeviceIdentity;
use iscsi_target::scsi::LogicalUnit;
use iscsi_target::target::{Target, TargetCatalog};
use serde::{Deserialize, Serialize};

use crate::metered::MeteredDevice;
use crate::volume_records::{saved_unit_state, ReservationsRecord, VolumeRecordsFile, VolumeUnitState};
use crate::access::{validate_initiators, AccessChange};
use crate::cached::map::ChunkMap;
use crate::cached::service::CatalogPresentation;
use crate::cached::{CachedVolume, CachedVolumes, ChunkOwner, SnapshotRecord, VolumeIdentity};

/// The IQN prefix of every target this gateway serves.
pub const IQN_PREFIX: &str = "iqn.2026-11.org.sgw";
/// Logical block size of volumes.
pub const BLOCK_SIZE: u32 = 512;
/// Smallest and largest volume (AWS cached volumes go to 32 TiB).
pub const MIN_VOLUME_SIZE: u64 = 1 << 20;
pub const MAX_VOLUME_SIZE: u64 = 32 << 40;

/// CHAP settings of a volume's target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VolumeChap {
    pub user: String,
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutual_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutual_secret: Option<String>,
}

/// What backs a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VolumeKind {
    /// The primary copy in the cloud, hot and unsent data in the cache.
    Cached,
    /// A sparse file in the data directory and nothing in the cloud: for
    /// labs and as a baseline; not protected by recovery points.
    Local,
}

/// Volumes recorded before kinds existed were local files.
fn legacy_kind() -> VolumeKind {
    VolumeKind::Local
}

/// A volume's persistent record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub name: String,
    pub size_bytes: u64,
    /// Random, assigned at creation: the LU's NAA identifier and serial,
    /// and the cache namespace of a cached volume.
    pub id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chap: Option<VolumeChap>,
    #[serde(default = "legacy_kind")]
    pub kind: VolumeKind,
    /// Cached volumes: the clone family (shared cloud namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<u64>,
    /// What the volume was cloned from, for the admin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The LU reports a removable medium: backup software that rotates
    /// removable cartridges (RDX) may lock it in and eject it. An ejected
    /// medium stays out, across restarts too, until START STOP UNIT loads it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removable: bool,
    /// Initiator names allowed to log in (lower case); empty: no list, the
    /// gateway's `iscsi_access` decides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub initiators: Vec<String>,
    /// Persistent reservations the LU saved under APTPL (it writes them
    /// here itself, see `volume_records`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservations: Option<ReservationsRecord>,
    /// A removable volume's medium is out (saved by the LU).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub medium_ejected: bool,
}

/// How far a running `recover` has come: volumes adopted, and their bytes,
/// of the catalog's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecoveryProgress {
    pub volumes: crate::progress::Progress,
    pub bytes: crate::progress::Progress,
}

/// Volume states, named as AWS Storage Gateway names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VolumeState {
    /// Being made (a clone copying its source's map).
    Creating,
    Available,
    /// Uploading data it held when the gateway started (after an unclean
    /// stop, or with uploads pending from the last run).
    Bootstrapping,
    /// The cache is full of data not yet uploaded: writes are held back
    /// until uploads make room (they never fail).
    UploadBufferFull,
    /// The cache's disk is full or failing: writes that need it fail
    /// (SPACE ALLOCATION FAILED, or MEDIUM ERROR), reads go on. It comes
    /// back by itself once the disk has room or answers again.
    CacheFailed,
    /// Chunks whose cloud object cannot be read back (`damaged` lists
    /// their LBA ranges): reads of them fail with MEDIUM ERROR, the rest
    /// of the volume works.
    Damaged,
}

/// A volume as the API reports it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VolumeInfo {
    pub name: String,
    pub size_bytes: u64,
    pub target_iqn: String,
    pub lun: u64,
    pub state: VolumeState,
    pub kind: VolumeKind,
    pub chap_enabled: bool,
    pub mutual_chap_enabled: bool,
    #[serde(default)]
    pub removable: bool,
    /// The initiators allowed to log in; empty: no list (under
    /// `iscsi_access = "acl-required"` nobody may, under `open` anyone).
    #[serde(default)]
    pub initiators: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Seconds since the last recovery point (cached volumes that have one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_point_age_secs: Option<u64>,
    /// Chunks whose cloud object cannot be read back, found by reads,
    /// uploads or `sgw volume scrub`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<crate::cached::damage::DamagedChunk>,
    /// BOOTSTRAPPING: bytes uploaded of those the volume held unsent at
    /// start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<crate::progress::Progress>,
}

impl VolumeInfo {
    /// The state as people read it: BOOTSTRAPPING says how much is left.
    pub fn state_text(&self) -> String {
        let state = serde_json::to_value(self.state).ok().and_then(|j| j.as_str().map(str::to_owned)).unwrap_or_default();
        match self.progress {
            Some(p) if self.state == VolumeState::Bootstrapping => {
                format!("{state} ({} left)", crate::units::size_text(p.total.saturating_sub(p.done)))
            }
            _ => state,
        }
    }
}

/// Where a clone's content comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloneSource {
    Snapshot(String),
    Volume(String),
}

/// A request to create a volume.
#[derive(Debug, Clone)]
pub struct NewVolume {
    pub name: String,
    pub size_bytes: u64,
    pub chap: Option<VolumeChap>,
    pub kind: VolumeKind,
    pub source: Option<CloneSource>,
    pub removable: bool,
    pub initiators: Vec<String>,
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
    #[error("snapshot {0} not found")]
    SnapshotNotFound(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("cloud: {0}")]
    Cloud(String),
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
}

impl From<crate::cached::service::ServiceError> for VolumeError {
    fn from(e: crate::cached::service::ServiceError) -> Self {
        match e {
            crate::cached::service::ServiceError::SnapshotNotFound(id) => VolumeError::SnapshotNotFound(id),
            crate::cached::service::ServiceError::Io(e) => VolumeError::Io(e),
            e => VolumeError::Cloud(e.to_string()),
        }
    }
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

pub(crate) fn chap_config(c: Option<&VolumeChap>) -> Option<ChapConfig> {
    c.map(|c| ChapConfig {
        initiator: ChapCredentials { user: c.user.clone(), secret: c.secret.clone() },
        mutual: match (&c.mutual_user, &c.mutual_secret) {
            (Some(u), Some(s)) => Some(ChapCredentials { user: u.clone(), secret: s.clone() }),
            _ => None,
        },
    })
}

pub(crate) fn validate_chap(c: &VolumeChap) -> Result<(), VolumeError> {
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
    device: Arc<dyn BlockDevice>,
    cached: Option<Arc<CachedVolume>>,
}

/// The gateway's volumes; also the iSCSI target catalog.
pub struct VolumeManager {
    dir: PathBuf,
    records: Arc<VolumeRecordsFile>,
    volumes: RwLock<BTreeMap<String, Volume>>,
    cached: Option<Arc<CachedVolumes>>,
    /// The cache's dirty high watermark: at it, writers wait.
    dirty_high_watermark: u64,
    /// Names being created (clones), shown as CREATING.
    creating: std::sync::Mutex<BTreeMap<String, NewVolume>>,
    /// A running `recover`: volumes adopted of those in the catalog.
    recovering: std::sync::Mutex<Option<RecoveryProgress>>,
    /// Volumes that held unsent data at start, until it is all uploaded,
    /// with the bytes they held.
    bootstrapping: std::sync::Mutex<std::collections::HashMap<u64, u64>>,
    /// Creations and deletions, one at a time.
    changes: tokio::sync::Mutex<()>,
}

/// Writes `name` in `dir` atomically: temp file, fsync, rename, fsync dir.
/// Mode 0600: the volume list holds CHAP secrets.
impl VolumeManager {
    /// Opens the volumes under `data_dir`, creating the layout if needed.
    /// Without `cached` only local volumes can exist.
    pub async fn open(
        data_dir: &Path,
        cached: Option<Arc<CachedVolumes>>,
        dirty_high_watermark: u64,
    ) -> Result<VolumeManager, VolumeError> {
        let dir = data_dir.to_path_buf();
        std::fs::create_dir_all(dir.join("volumes"))?;
        let records: Vec<VolumeRecord> = match std::fs::read(dir.join(VolumeRecordsFile::NAME)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let mgr = VolumeManager {
            records: VolumeRecordsFile::new(dir.clone(), records.clone()),
            dir,
            volumes: RwLock::new(BTreeMap::new()),
            cached,
            dirty_high_watermark,
            creating: std::sync::Mutex::new(BTreeMap::new()),
            recovering: std::sync::Mutex::new(None),
            bootstrapping: std::sync::Mutex::new(Default::default()),
            changes: tokio::sync::Mutex::new(()),
        };
        for r in records {
            let name = r.name.clone();
            let volume = mgr.build(r, None).await?;
            mgr.write().insert(name, volume);
        }
        Ok(mgr)
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

    fn cached_service(&self) -> Result<&Arc<CachedVolumes>, VolumeError> {
        self.cached.as_ref().ok_or_else(|| VolumeError::InvalidRequest("this gateway has no cloud store".into()))
    }

    /// Builds a volume's device and target. `base` is a new clone's content;
    /// without it a cached volume opens its existing map.
    async fn build(&self, r: VolumeRecord, base: Option<Option<ChunkMap>>) -> Result<Volume, VolumeError> {
        let (device, cached): (Arc<dyn BlockDevice>, Option<Arc<CachedVolume>>) = match r.kind {
            VolumeKind::Local => {
                let file = FileBlockDevice::open(&self.image_path(&r.name), r.size_bytes, BLOCK_SIZE)?;
                match &self.cached {
                    Some(service) => (Arc::new(MeteredDevice::new(file, service.volume_series(&r.name))), None),
                    None => (Arc::new(file), None),
                }
            }
            VolumeKind::Cached => {
                let service = self.cached_service()?;
                let identity = VolumeIdentity {
                    id: r.id,
                    family: r.family.unwrap_or(r.id),
                    name: r.name.clone(),
                    size_bytes: r.size_bytes,
                };
                let v = match base {
                    Some(content) => service.create(identity, content).await?,
                    None => {
                        let v = service.open(identity).await?;
                        let unsent = service.unsynced_bytes(v.id());
                        if unsent > 0 {
                            self.bootstrapping.lock().unwrap_or_else(|e| e.into_inner()).insert(v.id(), unsent);
                        }
                        v
                    }
                };
                (v.clone(), Some(v))
            }
        };
        let identity = DeviceIdentity {
            vendor: "SGW".into(),
            product: "Volume".into(),
            revision: "0001".into(),
            serial: format!("{:016x}", r.id),
            naa_id: r.id,
            write_protected: false,
            removable: r.removable,
        };
        let unit_state = Arc::new(VolumeUnitState { records: self.records.clone(), name: r.name.clone(), id: r.id });
        let lu: Arc<dyn LogicalUnit> =
            Arc::new(DiskUnit::new(device.clone(), identity).with_state_store(unit_state, saved_unit_state(&r)));
        if let Some(service) = &self.cached {
            service.set_presentation(r.id, presentation(&r));
        }
        let target = Arc::new(Target {
            name: target_iqn(&r.name),
            alias: Some(r.name.clone()),
            chap: chap_config(r.chap.as_ref()),
            initiators: r.initiators.clone(),
            luns: BTreeMap::from([(0u64, lu)]),
        });
        Ok(Volume { record: r, target, device, cached })
    }

    /// Sets or removes a volume's CHAP. The next login uses it; sessions
    /// logged in already go on until they log out (they hold the old
    /// target).
    pub async fn set_chap(&self, name: &str, chap: Option<VolumeChap>) -> Result<VolumeInfo, VolumeError> {
        self.set_access(name, AccessChange { chap: Some(chap), initiators: None }).await
    }

    /// Changes a volume's CHAP and/or initiator list, the same way: the
    /// next login sees the new target, logged-in sessions keep theirs.
    pub async fn set_access(&self, name: &str, change: AccessChange) -> Result<VolumeInfo, VolumeError> {
        if let Some(Some(c)) = &change.chap {
            validate_chap(c)?;
        }
        let initiators = change.initiators.as_deref().map(validate_initiators).transpose().map_err(VolumeError::InvalidRequest)?;
        let _changes = self.changes.lock().await;
        let (info, record) = self.change_access(name, change.chap, initiators)?;
        // The catalog carries the access settings for `recover`.
        if let (Some(service), VolumeKind::Cached) = (&self.cached, record.kind) {
            service.set_presentation(record.id, presentation(&record));
            if let Err(e) = service.write_catalog().await {
                tracing::warn!(error = %e, "cannot write the catalog");
            }
        }
        Ok(info)
    }

    /// Applies an access change and persists it; returns the new record.
    fn change_access(
        &self,
        name: &str,
        chap: Option<Option<VolumeChap>>,
        initiators: Option<Vec<String>>,
    ) -> Result<(VolumeInfo, VolumeRecord), VolumeError> {
        let mut vols = self.write();
        let v = vols.get_mut(name).ok_or_else(|| VolumeError::NotFound(name.to_string()))?;
        let old = (v.record.clone(), v.target.clone());
        if let Some(chap) = chap {
            v.record.chap = chap;
        }
        if let Some(initiators) = initiators {
            v.record.initiators = initiators;
        }
        v.target = Arc::new(Target {
            name: old.1.name.clone(),
            alias: old.1.alias.clone(),
            chap: chap_config(v.record.chap.as_ref()),
            initiators: v.record.initiators.clone(),
            luns: old.1.luns.clone(),
        });
        if let Err(e) = self.persist(&vols) {
            if let Some(v) = vols.get_mut(name) {
                (v.record, v.target) = old;
            }
            return Err(e);
        }
        Ok((self.info(&vols[name]), vols[name].record.clone()))
    }

    /// Makes every completed write of every volume durable (clean shutdown).
    pub async fn flush_all(&self) -> Result<(), VolumeError> {
        let devices: Vec<Arc<dyn BlockDevice>> = self.read().values().map(|v| v.device.clone()).collect();
        for d in devices {
            d.flush().await?;
        }
        Ok(())
    }

    fn persist(&self, vols: &BTreeMap<String, Volume>) -> Result<(), VolumeError> {
        self.records.write_records(vols.values().map(|v| v.record.clone()))?;
        Ok(())
    }

    fn validate(&self, req: &NewVolume) -> Result<(), VolumeError> {
        if !valid_name(&req.name) {
            return Err(VolumeError::InvalidName(req.name.clone()));
        }
        if !(MIN_VOLUME_SIZE..=MAX_VOLUME_SIZE).contains(&req.size_bytes) || req.size_bytes % BLOCK_SIZE as u64 != 0 {
            return Err(VolumeError::InvalidSize(req.size_bytes));
        }
        if let Some(c) = &req.chap {
            validate_chap(c)?;
        }
        validate_initiators(&req.initiators).map_err(VolumeError::InvalidRequest)?;
        if req.source.is_some() && req.kind != VolumeKind::Cached {
            return Err(VolumeError::InvalidRequest("only cached volumes are cloned".into()));
        }
        Ok(())
    }

    pub async fn create(&self, req: NewVolume) -> Result<VolumeInfo, VolumeError> {
        self.validate(&req)?;
        let _changes = self.changes.lock().await;
        if self.read().contains_key(&req.name) {
            return Err(VolumeError::Exists(req.name.clone()));
        }
        // A leftover image of a deleted volume must not leak into a new one.
        match std::fs::remove_file(self.image_path(&req.name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        self.creating.lock().unwrap_or_else(|e| e.into_inner()).insert(req.name.clone(), req.clone());
        let result = self.create_inner(&req).await;
        self.creating.lock().unwrap_or_else(|e| e.into_inner()).remove(&req.name);
        result
    }

    async fn create_inner(&self, req: &NewVolume) -> Result<VolumeInfo, VolumeError> {
        let id = rand::random::<u64>() >> 4;
        let (family, content, source) = match &req.source {
            None => (id, None, None),
            Some(CloneSource::Snapshot(snap)) => {
                let (s, map) = self.cached_service()?.snapshot_content(snap).await?;
                if req.size_bytes < s.size_bytes {
                    return Err(VolumeError::InvalidRequest(format!(
                        "a clone must be at least as large as its source ({} bytes)",
                        s.size_bytes
                    )));
                }
                (s.family, Some(map), Some(format!("snapshot {snap}")))
            }
            Some(CloneSource::Volume(name)) => {
                let (source, size) = {
                    let vols = self.read();
                    let v = vols.get(name).ok_or_else(|| VolumeError::NotFound(name.clone()))?;
                    let c = v.cached.clone().ok_or_else(|| {
                        VolumeError::InvalidRequest(format!("volume {name} is not a cached volume"))
                    })?;
                    (c, v.record.size_bytes)
                };
                if req.size_bytes < size {
                    return Err(VolumeError::InvalidRequest(format!(
                        "a clone must be at least as large as its source ({size} bytes)"
                    )));
                }
                let map = self.cached_service()?.current_map(&source).await?;
                (source.family(), Some(map), Some(format!("volume {name}")))
            }
        };
        let record = VolumeRecord {
            name: req.name.clone(),
            size_bytes: req.size_bytes,
            id,
            chap: req.chap.clone(),
            kind: req.kind,
            family: (req.kind == VolumeKind::Cached).then_some(family),
            source,
            removable: req.removable,
            initiators: validate_initiators(&req.initiators).map_err(VolumeError::InvalidRequest)?,
            reservations: None,
            medium_ejected: false,
        };
        let volume = match self.build(record, Some(content)).await {
            Ok(v) => v,
            Err(e) => {
                if req.kind == VolumeKind::Local {
                    self.remove_image_files(&req.name);
                }
                // A file larger than the filesystem allows (EFBIG) is the
                // admin's size, not a fault of the gateway.
                return Err(match e {
                    VolumeError::Io(io) if io.raw_os_error() == Some(libc::EFBIG) => {
                        VolumeError::InvalidRequest(format!(
                            "a local volume of {} bytes is larger than the data directory's filesystem allows in one file",
                            req.size_bytes
                        ))
                    }
                    e => e,
                });
            }
        };
        let info = {
            let mut vols = self.write();
            vols.insert(req.name.clone(), volume);
            if let Err(e) = self.persist(&vols) {
                vols.remove(&req.name);
                return Err(e);
            }
            self.info(&vols[&req.name])
        };
        if let Some(service) = &self.cached {
            if let Err(e) = service.write_catalog().await {
                tracing::warn!(error = %e, "cannot write the catalog");
            }
        }
        Ok(info)
    }

    /// Deletes a volume and its data. The caller ends its sessions first.
    pub async fn delete(&self, name: &str) -> Result<(), VolumeError> {
        let _changes = self.changes.lock().await;
        let removed = {
            let mut vols = self.write();
            let removed = vols.remove(name).ok_or_else(|| VolumeError::NotFound(name.to_string()))?;
            if let Err(e) = self.persist(&vols) {
                vols.insert(name.to_string(), removed);
                return Err(e);
            }
            removed
        };
        if let (Some(c), Some(service)) = (&removed.cached, &self.cached) {
            service.delete(c.id()).await?;
        }
        self.remove_image_files(name);
        Ok(())
    }

    /// Removes a local volume's image and its atomic-write journal.
    fn remove_image_files(&self, name: &str) {
        let image = self.image_path(name);
        let mut journal = image.clone().into_os_string();
        journal.push(".journal");
        for path in [image, PathBuf::from(journal)] {
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove a deleted volume's file");
                }
            }
        }
    }

    pub fn list(&self) -> Vec<VolumeInfo> {
        let mut out: Vec<VolumeInfo> = self.read().values().map(|v| self.info(v)).collect();
        for req in self.creating.lock().unwrap_or_else(|e| e.into_inner()).values() {
            out.push(VolumeInfo {
                name: req.name.clone(),
                size_bytes: req.size_bytes,
                target_iqn: target_iqn(&req.name),
                lun: 0,
                state: VolumeState::Creating,
                kind: req.kind,
                chap_enabled: req.chap.is_some(),
                mutual_chap_enabled: req.chap.as_ref().is_some_and(|c| c.mutual_user.is_some()),
                removable: req.removable,
                initiators: req.initiators.clone(),
                source: None,
                recovery_point_age_secs: None,
                damaged: Vec::new(),
                progress: None,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub fn get(&self, name: &str) -> Option<VolumeInfo> {
        self.list().into_iter().find(|v| v.name == name)
    }

    fn state(&self, v: &Volume) -> VolumeState {
        let (Some(c), Some(service)) = (&v.cached, &self.cached) else { return VolumeState::Available };
        if service.cache_failed() {
            return VolumeState::CacheFailed;
        }
        if !c.damaged_chunks().is_empty() {
            return VolumeState::Damaged;
        }
        {
            let mut boot = self.bootstrapping.lock().unwrap_or_else(|e| e.into_inner());
            if boot.contains_key(&c.id()) {
                if service.unsynced_bytes(c.id()) > 0 {
                    return VolumeState::Bootstrapping;
                }
                boot.remove(&c.id());
            }
        }
        if service.upload_buffer_full(self.dirty_high_watermark) {
            return VolumeState::UploadBufferFull;
        }
        VolumeState::Available
    }

    fn info(&self, v: &Volume) -> VolumeInfo {
        let r = &v.record;
        VolumeInfo {
            name: r.name.clone(),
            size_bytes: r.size_bytes,
            target_iqn: target_iqn(&r.name),
            lun: 0,
            state: self.state(v),
            kind: r.kind,
            chap_enabled: r.chap.is_some(),
            mutual_chap_enabled: r.chap.as_ref().is_some_and(|c| c.mutual_user.is_some()),
            removable: r.removable,
            initiators: r.initiators.clone(),
            source: r.source.clone(),
            recovery_point_age_secs: v.cached.as_ref().and_then(|c| c.last_recovery_point()).and_then(|rp| {
                std::time::SystemTime::now().duration_since(rp.at).ok().map(|d| d.as_secs())
            }),
            damaged: v.cached.as_ref().map(|c| c.damaged_chunks()).unwrap_or_default(),
            progress: self.bootstrap_progress(v),
        }
    }

    /// Bytes uploaded of those a BOOTSTRAPPING volume held at start.
    fn bootstrap_progress(&self, v: &Volume) -> Option<crate::progress::Progress> {
        let (c, service) = (v.cached.as_ref()?, self.cached.as_ref()?);
        let total = *self.bootstrapping.lock().unwrap_or_else(|e| e.into_inner()).get(&c.id())?;
        let left = service.unsynced_bytes(c.id());
        Some(crate::progress::Progress { done: total.saturating_sub(left), total: total.max(left) })
    }

    fn cached_volume(&self, name: &str) -> Result<Arc<CachedVolume>, VolumeError> {
        let vols = self.read();
        let v = vols.get(name).ok_or_else(|| VolumeError::NotFound(name.to_owned()))?;
        v.cached.clone().ok_or_else(|| VolumeError::InvalidRequest(format!("volume {name} is not a cached volume")))
    }

    /// Commits a recovery point of a cached volume now; returns its number.
    pub async fn recovery_point(&self, name: &str) -> Result<u64, VolumeError> {
        let v = self.cached_volume(name)?;
        let map_root = self.cached_service()?.current_map(&v).await;
        map_root?;
        Ok(v.last_recovery_point().map_or(0, |rp| rp.root.seq))
    }

    /// Reads and verifies every object a cached volume's map names (no
    /// cache fill) and records what is damaged.
    pub async fn scrub(&self, name: &str) -> Result<crate::cached::scrub::ScrubReport, VolumeError> {
        let v = self.cached_volume(name)?;
        v.scrub().await.map_err(|e| VolumeError::Cloud(e.to_string()))
    }

    pub async fn snapshot_create(&self, volume: &str) -> Result<SnapshotRecord, VolumeError> {
        let v = self.cached_volume(volume)?;
        Ok(self.cached_service()?.snapshot_create(&v).await?)
    }

    pub fn snapshot_list(&self) -> Vec<SnapshotRecord> {
        self.cached.as_ref().map(|c| c.snapshot_list()).unwrap_or_default()
    }

    pub async fn snapshot_delete(&self, id: &str) -> Result<(), VolumeError> {
        Ok(self.cached_service()?.snapshot_delete(id).await?)
    }

    /// Disaster recovery: adopts every volume and snapshot of the catalog a
    /// previous gateway left in the bucket, at their last recovery points.
    /// Only into a gateway that has no volumes yet.
    pub async fn recover(&self) -> Result<usize, VolumeError> {
        let _changes = self.changes.lock().await;
        if !self.read().is_empty() {
            return Err(VolumeError::InvalidRequest("recovery needs a gateway without volumes".into()));
        }
        let service = self.cached_service()?.clone();
        let catalog = CachedVolumes::read_catalog(service.cloud_layer())
            .await?
            .ok_or_else(|| VolumeError::InvalidRequest("the bucket holds no catalog to recover from".into()))?;
        let total_bytes: u64 = catalog.volumes.iter().map(|v| v.size_bytes).sum();
        let progress = |done: usize, done_bytes: u64| {
            *self.recovering.lock().unwrap_or_else(|e| e.into_inner()) = Some(RecoveryProgress {
                volumes: crate::progress::Progress { done: done as u64, total: catalog.volumes.len() as u64 },
                bytes: crate::progress::Progress { done: done_bytes, total: total_bytes },
            });
        };
        progress(0, 0);
        let no_sweeps = service.hold_sweeps().await;
        let result = self.adopt(&service, &catalog, progress).await;
        drop(no_sweeps);
        *self.recovering.lock().unwrap_or_else(|e| e.into_inner()) = None;
        result
    }

    /// How far a running `recover` has come.
    pub fn recovery_progress(&self) -> Option<RecoveryProgress> {
        *self.recovering.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn adopt(
        &self,
        service: &Arc<CachedVolumes>,
        catalog: &crate::cached::Catalog,
        progress: impl Fn(usize, u64),
    ) -> Result<usize, VolumeError> {
        let mut count = 0;
        let mut bytes = 0;
        for cv in &catalog.volumes {
            service.restore_map(cv).await?;
            let record = VolumeRecord {
                name: cv.name.clone(),
                size_bytes: cv.size_bytes,
                id: cv.id,
                chap: recovered_chap(&cv.name, &cv.presentation),
                kind: VolumeKind::Cached,
                family: Some(cv.family),
                source: Some("recovered".into()),
                removable: cv.presentation.removable,
                initiators: cv.presentation.initiators.clone(),
                // Reservations and the medium are the initiators' state, not
                // the volume's: a recovered volume starts without them.
                reservations: None,
                medium_ejected: false,
            };
            let volume = self.build(record, None).await?;
            let mut vols = self.write();
            vols.insert(cv.name.clone(), volume);
            self.persist(&vols)?;
            drop(vols);
            count += 1;
            bytes += cv.size_bytes;
            progress(count, bytes);
        }
        service.adopt_snapshots(catalog.snapshots.clone())?;
        Ok(count)
    }
}

/// How a volume presents itself, as the bucket's catalog keeps it for
/// `recover`. The catalog is plain JSON in the bucket, so CHAP secrets stay
/// out: only that CHAP is required, and the user names.
fn presentation(r: &VolumeRecord) -> CatalogPresentation {
    CatalogPresentation {
        removable: r.removable,
        initiators: r.initiators.clone(),
        chap_user: r.chap.as_ref().map(|c| c.user.clone()),
        mutual_chap_user: r.chap.as_ref().and_then(|c| c.mutual_user.clone()),
    }
}

/// A recovered volume that required CHAP requires it still: with the user
/// names it had and random secrets nobody knows, so that it refuses every
/// login (rather than admitting everyone) until the admin sets the secrets
/// again.
fn recovered_chap(volume: &str, p: &CatalogPresentation) -> Option<VolumeChap> {
    let user = p.chap_user.clone()?;
    tracing::warn!(volume, "recovered volume requires CHAP: set its secrets again, the bucket does not hold them");
    let random_secret = || format!("{:032x}", rand::random::<u128>());
    Some(VolumeChap {
        user,
        secret: random_secret(),
        mutual_secret: p.mutual_chap_user.as_ref().map(|_| random_secret()),
        mutual_user: p.mutual_chap_user.clone(),
    })
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

    fn local(name: &str, size: u64, chap: Option<VolumeChap>) -> NewVolume {
        NewVolume {
            name: name.into(),
            size_bytes: size,
            chap,
            kind: VolumeKind::Local,
            source: None,
            removable: false,
            initiators: Vec::new(),
        }
    }

    #[tokio::test]
    async fn create_list_reopen_delete() {
        let dir = tempfile::tempdir().unwrap();
        let m = VolumeManager::open(dir.path(), None, 0).await.unwrap();
        let v = m.create(local("vol-1", 64 << 20, None)).await.unwrap();
        assert_eq!(v.target_iqn, "iqn.2026-11.org.sgw:volume:vol-1");
        assert!(m.lookup(&v.target_iqn).is_some());
        assert!(matches!(m.create(local("vol-1", 64 << 20, None)).await, Err(VolumeError::Exists(_))));
        drop(m);
        let m = VolumeManager::open(dir.path(), None, 0).await.unwrap();
        assert_eq!(m.list().len(), 1);
        m.delete("vol-1").await.unwrap();
        assert!(m.list().is_empty());
        assert!(matches!(m.delete("vol-1").await, Err(VolumeError::NotFound(_))));
        let cached = NewVolume { kind: VolumeKind::Cached, ..local("c", 64 << 20, None) };
        assert!(matches!(m.create(cached).await, Err(VolumeError::InvalidRequest(_))));
    }

    #[tokio::test]
    async fn initiator_lists_are_kept_and_swap_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let m = VolumeManager::open(dir.path(), None, 0).await.unwrap();
        let req = NewVolume { initiators: vec!["IQN.2026-11.test:Host".into()], ..local("acl", 64 << 20, None) };
        let v = m.create(req).await.unwrap();
        assert_eq!(v.initiators, ["iqn.2026-11.test:host"]);
        let before = m.lookup(&v.target_iqn).unwrap();
        let change = AccessChange { chap: None, initiators: Some(vec!["iqn.2026-11.test:other".into()]) };
        m.set_access("acl", change).await.unwrap();
        assert_eq!(before.initiators, ["iqn.2026-11.test:host"], "a logged-in session's target changed");
        drop(m);
        let m = VolumeManager::open(dir.path(), None, 0).await.unwrap();
        assert_eq!(m.lookup(&v.target_iqn).unwrap().initiators, ["iqn.2026-11.test:other"]);
        let bad = AccessChange { chap: None, initiators: Some(vec!["not-an-iqn".into()]) };
        assert!(matches!(m.set_access("acl", bad).await, Err(VolumeError::InvalidRequest(_))));
    }

    #[tokio::test]
    async fn validation() {
        let dir = tempfile::tempdir().unwrap();
        let m = VolumeManager::open(dir.path(), None, 0).await.unwrap();
        assert!(matches!(m.create(local("Bad_Name", 64 << 20, None)).await, Err(VolumeError::InvalidName(_))));
        assert!(matches!(m.create(local("ok", 1000, None)).await, Err(VolumeError::InvalidSize(_))));
        assert!(matches!(m.create(local("ok", (64 << 20) + 1, None)).await, Err(VolumeError::InvalidSize(_))));
        let short = VolumeChap { user: "u".into(), secret: "short".into(), mutual_user: None, mutual_secret: None };
        assert!(matches!(m.create(local("ok", 64 << 20, Some(short))).await, Err(VolumeError::InvalidChap(_))));
        let half = VolumeChap {
            user: "u".into(),
            secret: "0123456789ab".into(),
            mutual_user: Some("m".into()),
            mutual_secret: None,
        };
        assert!(matches!(m.create(local("ok", 64 << 20, Some(half))).await, Err(VolumeError::InvalidChap(_))));
        let clone = NewVolume { source: Some(CloneSource::Volume("x".into())), ..local("ok", 64 << 20, None) };
        assert!(matches!(m.create(clone).await, Err(VolumeError::InvalidRequest(_))));
    }
}
