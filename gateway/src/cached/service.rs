//! The cached-volume service: opens volumes over the engine, runs recovery
//! points on a schedule, keeps snapshots, the bucket catalog (what disaster
//! recovery reads) and garbage collection.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use super::engine::{ChunkOwner, Engine};
use super::manifest::{read_map, read_root, ManifestRoot};
use super::map::ChunkMap;
use super::volume::{family_namespace, CachedVolume, CommittedRp, VolumeIdentity};
use crate::cloud::layout::ObjectRole;
use crate::cloud::store::{list_all, StorageClass};
use crate::cloud::{ChunkId, CloudError, CloudLayer, ErrorKind, ObjectStore, StoreError};

/// A snapshot: a recovery point kept until deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SnapshotRecord {
    pub id: String,
    pub volume_name: String,
    pub volume_id: u64,
    pub family: u64,
    pub size_bytes: u64,
    pub manifest_key: String,
    pub created_unix: u64,
}

/// A volume as the catalog in the bucket lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogVolume {
    pub name: String,
    pub id: u64,
    pub family: u64,
    pub size_bytes: u64,
    /// Absent in catalogs written before it existed.
    #[serde(default)]
    pub presentation: CatalogPresentation,
}

/// How a volume presents itself to initiators, for `recover` to restore.
/// No CHAP secrets: the catalog is plain JSON in the bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogPresentation {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removable: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub initiators: Vec<String>,
    /// Present: the volume requires CHAP, as this user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chap_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutual_chap_user: Option<String>,
}

/// `catalog.json` under the gateway's prefix: enough for a new gateway to
/// find every volume and snapshot (docs/FORMAT.md §8).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    pub format: String,
    pub version: u32,
    pub volumes: Vec<CatalogVolume>,
    pub snapshots: Vec<SnapshotRecord>,
}

impl Catalog {
    pub const FORMAT: &'static str = "sgw-catalog";
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("snapshot {0} not found")]
    SnapshotNotFound(String),
    #[error("cloud: {0}")]
    Cloud(#[from] CloudError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        ServiceError::Cloud(e.into())
    }
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct CachedVolumes {
    engine: Arc<Engine>,
    data_dir: PathBuf,
    volumes: Mutex<BTreeMap<u64, Arc<CachedVolume>>>,
    snapshots: Mutex<BTreeMap<String, SnapshotRecord>>,
    /// Snapshot maps loaded (or taken) this run.
    snapshot_maps: Mutex<HashMap<String, ChunkMap>>,
    /// Catalog writes and garbage collection, one at a time.
    catalog_lock: tokio::sync::Mutex<()>,
    /// What the volume manager says each volume presents, by volume id.
    presentations: Mutex<HashMap<u64, CatalogPresentation>>,
    /// Volumes created by this run, and when: their first recovery point
    /// is due one interval later. A volume opened at start without any
    /// recovery point is due at once, so that restarts can't put it off.
    pub(super) created_at: Mutex<HashMap<u64, tokio::time::Instant>>,
    /// Held by a garbage sweep, and by a recovery while it adopts volumes
    /// one by one (a sweep then would take a family's volumes not yet open
    /// for garbage).
    pub(super) sweep_lock: tokio::sync::Mutex<()>,
}

impl CachedVolumes {
    pub fn new(engine: Arc<Engine>, data_dir: &Path) -> Result<Arc<CachedVolumes>, ServiceError> {
        let snapshots: Vec<SnapshotRecord> = match std::fs::read(data_dir.join("snapshots.json")) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        Ok(Arc::new(CachedVolumes {
            engine,
            data_dir: data_dir.to_path_buf(),
            volumes: Mutex::new(BTreeMap::new()),
            snapshots: Mutex::new(snapshots.into_iter().map(|s| (s.id.clone(), s)).collect()),
            snapshot_maps: Mutex::new(HashMap::new()),
            catalog_lock: tokio::sync::Mutex::new(()),
            presentations: Mutex::new(HashMap::new()),
            created_at: Mutex::new(HashMap::new()),
            sweep_lock: tokio::sync::Mutex::new(()),
        }))
    }

    fn cloud(&self) -> &CloudLayer {
        &self.engine.cloud
    }

    pub fn cloud_layer(&self) -> &CloudLayer {
        &self.engine.cloud
    }

    /// Opens an existing volume: its chunk map from the local store, its
    /// last recovery point from the bucket.
    pub async fn open(&self, identity: VolumeIdentity) -> Result<Arc<CachedVolume>, ServiceError> {
        let chunks = identity.size_bytes.div_ceil(u64::from(self.engine.cache.chunk_size()));
        let maps = self.engine.maps.clone();
        let id = identity.id;
        let mut map = tokio::task::spawn_blocking(move || maps.load(id, chunks))
            .await
            .map_err(std::io::Error::other)?
            .map_err(std::io::Error::other)?;
        let rp = self.latest_recovery_point(&identity).await?;
        if let Some(rp) = &rp {
            map.share_equal_pages(&rp.map);
        }
        let volume = CachedVolume::new(identity, self.engine.clone(), map);
        if let Some(rp) = rp {
            volume.adopt_recovery_point(rp);
        }
        lock(&self.volumes).insert(volume.id(), volume.clone());
        Ok(volume)
    }

    /// Creates a volume whose content starts as `base` (a clone), or empty.
    pub async fn create(
        &self,
        identity: VolumeIdentity,
        base: Option<ChunkMap>,
    ) -> Result<Arc<CachedVolume>, ServiceError> {
        let chunks = identity.size_bytes.div_ceil(u64::from(self.engine.cache.chunk_size()));
        let mut map = base.unwrap_or_else(|| ChunkMap::new(chunks));
        map.grow(chunks);
        let maps = self.engine.maps.clone();
        let id = identity.id;
        let stored = map.clone();
        tokio::task::spawn_blocking(move || maps.replace(id, &stored))
            .await
            .map_err(std::io::Error::other)?
            .map_err(std::io::Error::other)?;
        let volume = CachedVolume::new(identity, self.engine.clone(), map);
        lock(&self.created_at).insert(volume.id(), tokio::time::Instant::now());
        lock(&self.volumes).insert(volume.id(), volume.clone());
        Ok(volume)
    }

    async fn latest_recovery_point(&self, identity: &VolumeIdentity) -> Result<Option<CommittedRp>, ServiceError> {
        let ns = family_namespace(identity.family);
        let layout = self.cloud().keyring.layout().clone();
        let objects = list_all(&self.cloud().store, &layout.manifests_prefix(&ns, identity.id)).await?;
        let latest = objects
            .iter()
            .filter_map(|o| match layout.classify(&o.key) {
                ObjectRole::Manifest(_, v, seq) if v == identity.id => Some((seq, o.key.clone())),
                _ => None,
            })
            .max();
        let Some((_, key)) = latest else { return Ok(None) };
        let root = read_root(self.cloud(), &key).await?;
        let map = read_map(self.cloud(), &ns, &root).await?;
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(root.created_unix);
        Ok(Some(CommittedRp { root, map, key, at }))
    }

    /// The map of a volume's latest recovery point, made now: the source of
    /// a clone of a live volume.
    pub async fn current_map(&self, volume: &Arc<CachedVolume>) -> Result<ChunkMap, ServiceError> {
        let outcome = volume.create_recovery_point().await?;
        self.after_recovery_point(volume, outcome.previous).await;
        Ok(outcome.committed.map)
    }

    /// On a stop: a recovery point of every volume changed since its last
    /// one, so that a gateway moved by stop and `sgw recover` elsewhere
    /// loses nothing acknowledged. Bounded by `limit`; returns the names of
    /// the volumes whose changes did not make it (each one logged).
    pub async fn final_recovery_points(&self, limit: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + limit;
        let volumes: Vec<Arc<CachedVolume>> = lock(&self.volumes).values().cloned().collect();
        let mut missed = Vec::new();
        for v in volumes.into_iter().filter(|v| v.changed_since_recovery_point()) {
            match tokio::time::timeout_at(deadline, v.create_recovery_point()).await {
                Ok(Ok(outcome)) => {
                    info!(volume = v.name(), seq = outcome.committed.root.seq, "final recovery point committed");
                    self.after_recovery_point(&v, outcome.previous).await;
                }
                Ok(Err(e)) => {
                    error!(volume = v.name(), error = %e, "final recovery point failed: the bucket lacks this volume's latest writes");
                    missed.push(v.name().to_owned());
                }
                Err(_) => {
                    error!(
                        volume = v.name(),
                        limit_secs = limit.as_secs(),
                        "final recovery point not committed in time: the bucket lacks this volume's latest writes \
                         (they stay in the local cache)"
                    );
                    missed.push(v.name().to_owned());
                }
            }
        }
        missed
    }

    /// After a recovery point: the catalog, then what the previous one held
    /// alone is garbage (unless a snapshot keeps it).
    pub(super) async fn after_recovery_point(&self, volume: &Arc<CachedVolume>, previous: Option<CommittedRp>) {
        if let Err(e) = self.write_catalog().await {
            warn!(error = %e, "cannot write the catalog");
        }
        let mut candidates: HashSet<ChunkId> = HashSet::new();
        let mut roots = Vec::new();
        if let Some(prev) = previous {
            if !self.pinned_by_snapshot(&prev.key) {
                candidates.extend(prev.map.objects());
                candidates.extend(prev.root.page_ids().unwrap_or_default().into_iter().flatten());
                roots.push(prev.key);
            }
        }
        if let Err(e) = self.collect_garbage(volume.family(), candidates, roots).await {
            warn!(error = %e, "garbage collection failed; it will run again later");
        }
    }

    pub(super) fn pinned_by_snapshot(&self, manifest_key: &str) -> bool {
        lock(&self.snapshots).values().any(|s| s.manifest_key == manifest_key)
    }

    /// Deletes the candidates nothing references: no live map, recovery
    /// point, recovery point in progress or snapshot of the family.
    pub(super) async fn collect_garbage(
        &self,
        family: u64,
        mut candidates: HashSet<ChunkId>,
        roots: Vec<String>,
    ) -> Result<(), ServiceError> {
        let _catalog = self.catalog_lock.lock().await;
        let snapshots: Vec<SnapshotRecord> =
            lock(&self.snapshots).values().filter(|s| s.family == family).cloned().collect();
        let mut snapshot_refs: Vec<ChunkId> = Vec::new();
        for s in &snapshots {
            let (map, root) = self.snapshot_map(s).await?;
            snapshot_refs.extend(map.objects());
            snapshot_refs.extend(root.page_ids()?.into_iter().flatten());
        }
        let ns = family_namespace(family);
        let garbage: Vec<ChunkId> = {
            let _gc = self.engine.gc_lock.lock().await;
            let volumes: Vec<Arc<CachedVolume>> =
                lock(&self.volumes).values().filter(|v| v.family() == family).cloned().collect();
            for v in &volumes {
                candidates.extend(v.replaced.lock().unwrap_or_else(|e| e.into_inner()).drain());
            }
            let mut referenced: HashSet<ChunkId> = snapshot_refs.into_iter().collect();
            for v in &volumes {
                referenced.extend(v.map.lock().unwrap_or_else(|e| e.into_inner()).objects());
                if let Some(rp) = v.last_recovery_point() {
                    referenced.extend(rp.map.objects());
                    referenced.extend(rp.root.page_ids()?.into_iter().flatten());
                }
                referenced.extend(v.pending_objects());
            }
            let garbage: Vec<ChunkId> = candidates.into_iter().filter(|id| !referenced.contains(id)).collect();
            self.engine.tombstone(family, &garbage);
            garbage
        };
        // Uploads of this content wait until the deletes are done; objects
        // being uploaded right now stay (a later collection finds them).
        let claim = self.cloud().uploader.claim_for_delete(&ns, &garbage);
        let layout = self.cloud().keyring.layout().clone();
        for id in claim.ids() {
            match self.cloud().store.delete(&layout.chunk_key(&ns, id)).await {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(CloudError::from(e).into()),
            }
        }
        for key in roots {
            match self.cloud().store.delete(&key).await {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(CloudError::from(e).into()),
            }
        }
        let deleted = claim.ids().len();
        drop(claim);
        if deleted > 0 {
            info!(family = format!("{family:016x}"), objects = deleted, "garbage collected");
        }
        Ok(())
    }

    async fn snapshot_map(&self, s: &SnapshotRecord) -> Result<(ChunkMap, ManifestRoot), ServiceError> {
        let root = read_root(self.cloud(), &s.manifest_key).await?;
        if let Some(map) = lock(&self.snapshot_maps).get(&s.id) {
            return Ok((map.clone(), root));
        }
        let map = read_map(self.cloud(), &family_namespace(s.family), &root).await?;
        lock(&self.snapshot_maps).insert(s.id.clone(), map.clone());
        Ok((map, root))
    }

    /// A snapshot of the volume's latest recovery point, made now.
    pub async fn snapshot_create(&self, volume: &Arc<CachedVolume>) -> Result<SnapshotRecord, ServiceError> {
        let outcome = volume.create_recovery_point().await?;
        let rp = outcome.committed.clone();
        let record = SnapshotRecord {
            id: format!("snap-{:016x}", rand::random::<u64>()),
            volume_name: volume.name().to_owned(),
            volume_id: volume.id(),
            family: volume.family(),
            size_bytes: volume.size_bytes(),
            manifest_key: rp.key.clone(),
            created_unix: now_unix(),
        };
        lock(&self.snapshot_maps).insert(record.id.clone(), rp.map);
        lock(&self.snapshots).insert(record.id.clone(), record.clone());
        self.persist_snapshots()?;
        self.after_recovery_point(volume, outcome.previous).await;
        info!(snapshot = record.id, volume = volume.name(), uploaded_bytes = outcome.uploaded_bytes, "snapshot created");
        Ok(record)
    }

    pub fn snapshot_list(&self) -> Vec<SnapshotRecord> {
        lock(&self.snapshots).values().cloned().collect()
    }

    pub fn snapshot_get(&self, id: &str) -> Option<SnapshotRecord> {
        lock(&self.snapshots).get(id).cloned()
    }

    /// The content a clone of snapshot `id` starts from.
    pub async fn snapshot_content(&self, id: &str) -> Result<(SnapshotRecord, ChunkMap), ServiceError> {
        let s = self.snapshot_get(id).ok_or_else(|| ServiceError::SnapshotNotFound(id.to_owned()))?;
        let (map, _) = self.snapshot_map(&s).await?;
        Ok((s, map))
    }

    /// Deletes a snapshot; frees only the chunks nothing else references.
    pub async fn snapshot_delete(&self, id: &str) -> Result<(), ServiceError> {
        let s = self.snapshot_get(id).ok_or_else(|| ServiceError::SnapshotNotFound(id.to_owned()))?;
        let (map, root) = self.snapshot_map(&s).await?;
        lock(&self.snapshots).remove(id);
        lock(&self.snapshot_maps).remove(id);
        self.persist_snapshots()?;
        let mut candidates: HashSet<ChunkId> = map.objects().collect();
        candidates.extend(root.page_ids()?.into_iter().flatten());
        // The manifest stays if it is still a volume's latest recovery point.
        let live_rp = lock(&self.volumes)
            .values()
            .any(|v| v.last_recovery_point().is_some_and(|rp| rp.key == s.manifest_key));
        let roots = if live_rp || self.pinned_by_snapshot(&s.manifest_key) { vec![] } else { vec![s.manifest_key.clone()] };
        self.write_catalog().await?;
        self.collect_garbage(s.family, candidates, roots).await
    }

    /// Deletes a volume's cache data, map and cloud data that nothing else
    /// references.
    pub async fn delete(&self, volume_id: u64) -> Result<(), ServiceError> {
        lock(&self.created_at).remove(&volume_id);
        let Some(volume) = lock(&self.volumes).remove(&volume_id) else { return Ok(()) };
        self.engine.unregister(volume_id);
        let chunks = volume.size_bytes().div_ceil(u64::from(volume.chunk_size()));
        self.engine.cache.discard(volume_id, 0..chunks).await.map_err(std::io::Error::other)?;
        let maps = self.engine.maps.clone();
        tokio::task::spawn_blocking(move || maps.delete_volume(volume_id))
            .await
            .map_err(std::io::Error::other)?
            .map_err(std::io::Error::other)?;
        let mut candidates: HashSet<ChunkId> = volume.map.lock().unwrap_or_else(|e| e.into_inner()).objects().collect();
        candidates.extend(volume.replaced.lock().unwrap_or_else(|e| e.into_inner()).drain());
        let mut roots = Vec::new();
        let ns = family_namespace(volume.family());
        let layout = self.cloud().keyring.layout().clone();
        for o in list_all(&self.cloud().store, &layout.manifests_prefix(&ns, volume_id)).await? {
            if self.pinned_by_snapshot(&o.key) {
                continue;
            }
            if let Ok(root) = read_root(self.cloud(), &o.key).await {
                if let Ok(map) = read_map(self.cloud(), &ns, &root).await {
                    candidates.extend(map.objects());
                }
                candidates.extend(root.page_ids()?.into_iter().flatten());
            }
            roots.push(o.key);
        }
        self.write_catalog().await?;
        self.collect_garbage(volume.family(), candidates, roots).await
    }

    fn persist_snapshots(&self) -> Result<(), ServiceError> {
        let list: Vec<SnapshotRecord> = self.snapshot_list();
        let bytes = serde_json::to_vec_pretty(&list).map_err(std::io::Error::other)?;
        crate::files::write_atomically(&self.data_dir, "snapshots.json", &bytes)?;
        Ok(())
    }

    /// The catalog lists `volume_id` with `presentation` from its next write.
    pub fn set_presentation(&self, volume_id: u64, presentation: CatalogPresentation) {
        lock(&self.presentations).insert(volume_id, presentation);
    }

    /// Writes the catalog of volumes and snapshots to the bucket.
    pub async fn write_catalog(&self) -> Result<(), ServiceError> {
        let catalog = Catalog {
            format: Catalog::FORMAT.to_owned(),
            version: 1,
            volumes: lock(&self.volumes)
                .values()
                .map(|v| CatalogVolume {
                    name: v.name().to_owned(),
                    id: v.id(),
                    family: v.family(),
                    size_bytes: v.size_bytes(),
                    presentation: lock(&self.presentations).get(&v.id()).cloned().unwrap_or_default(),
                })
                .collect(),
            snapshots: self.snapshot_list(),
        };
        let body = Bytes::from(serde_json::to_vec_pretty(&catalog).map_err(std::io::Error::other)?);
        let key = self.cloud().keyring.layout().catalog_key();
        self.cloud().store.put(&key, body, &StorageClass::Standard).await.map_err(CloudError::from)?;
        Ok(())
    }

    /// Reads the catalog a previous gateway left in the bucket.
    pub async fn read_catalog(cloud: &CloudLayer) -> Result<Option<Catalog>, ServiceError> {
        let key = cloud.keyring.layout().catalog_key();
        match cloud.store.get(&key, None).await {
            Ok(body) => {
                let c: Catalog = serde_json::from_slice(&body)
                    .map_err(|e| CloudError::Malformed(format!("catalog: {e}")))?;
                if c.format != Catalog::FORMAT || c.version != 1 {
                    return Err(CloudError::Malformed("unsupported catalog".into()).into());
                }
                Ok(Some(c))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CloudError::from(e).into()),
        }
    }

    /// Adopts the snapshots of a recovered catalog.
    pub fn adopt_snapshots(&self, snapshots: Vec<SnapshotRecord>) -> Result<(), ServiceError> {
        {
            let mut s = lock(&self.snapshots);
            for r in snapshots {
                s.insert(r.id.clone(), r);
            }
        }
        self.persist_snapshots()
    }

    /// Drops a volume's record from a recovered catalog's content: restores
    /// its map from the last recovery point into the local map store.
    pub async fn restore_map(&self, v: &CatalogVolume) -> Result<(), ServiceError> {
        let identity = VolumeIdentity { id: v.id, family: v.family, name: v.name.clone(), size_bytes: v.size_bytes };
        let chunks = v.size_bytes.div_ceil(u64::from(self.engine.cache.chunk_size()));
        let map = match self.latest_recovery_point(&identity).await? {
            Some(rp) => rp.map,
            None => ChunkMap::new(chunks),
        };
        let maps = self.engine.maps.clone();
        let id = v.id;
        tokio::task::spawn_blocking(move || maps.replace(id, &map))
            .await
            .map_err(std::io::Error::other)?
            .map_err(std::io::Error::other)?;
        Ok(())
    }

    pub fn publish_gauges(&self) {
        CachedVolume::publish_cache_gauges(&self.engine);
        let m = &self.engine.metrics;
        let mut hits = 0u64;
        let mut reads = 0u64;
        for v in lock(&self.volumes).values() {
            hits += m.cache_hits.with_label_values(&[v.name()]).get();
            reads += m.reads.with_label_values(&[v.name()]).get();
            // No recovery point yet: no series at all (not -1), as
            // CloudWatch reports no datapoint.
            match v.last_recovery_point().and_then(|rp| SystemTime::now().duration_since(rp.at).ok()) {
                Some(age) => m.recovery_point_age.with_label_values(&[v.name()]).set(age.as_secs_f64()),
                None => {
                    let _ = m.recovery_point_age.remove_label_values(&[v.name()]);
                }
            }
        }
        if reads > 0 {
            m.cache_hit_percent.set(hits as f64 * 100.0 / reads as f64);
        }
    }

    /// The per-volume I/O series, for volumes of other kinds to report in.
    pub fn volume_series(&self, name: &str) -> super::metrics::VolumeSeries {
        super::metrics::VolumeSeries::new(&self.engine.metrics, name)
    }

    pub(super) fn open_volumes(&self) -> Vec<Arc<CachedVolume>> {
        lock(&self.volumes).values().cloned().collect()
    }

    pub fn get(&self, volume_id: u64) -> Option<Arc<CachedVolume>> {
        lock(&self.volumes).get(&volume_id).cloned()
    }

    /// Whether writers are being held back for uploads (the cache's dirty
    /// data is at its high watermark).
    pub fn upload_buffer_full(&self, high_watermark: u64) -> bool {
        let s = self.engine.cache.stats();
        s.dirty_bytes + 2 * u64::from(self.engine.cache.chunk_size()) >= high_watermark
    }

    /// Whether the cache's disk or index is failing (full or erroring):
    /// writes that need it fail until it works again.
    pub fn cache_failed(&self) -> bool {
        self.engine.cache.fault().is_some()
    }

    /// The bytes the volume still uploads of those it held at start (after
    /// an unclean stop: AWS calls this BOOTSTRAPPING), in whole chunks.
    pub fn unsynced_bytes(&self, volume_id: u64) -> u64 {
        self.engine.cache.unsynced_chunks(volume_id).len() as u64 * u64::from(self.engine.cache.chunk_size())
    }

    pub async fn flush(&self) -> Result<(), ServiceError> {
        self.engine.cache.flush().await.map_err(std::io::Error::other)?;
        Ok(())
    }
}
