//! The garbage sweep: chunk objects of a family's namespace that nothing
//! references, and root manifests older than each volume's latest recovery
//! point.
//!
//! Recovery points collect what they replace as they go, but only from
//! what this run remembers: a gateway killed between rewriting a chunk and
//! its next recovery point leaves the replaced objects behind. The sweep
//! lists the bucket instead, so nothing is orphaned for good. It is safe
//! against uploads running meanwhile: an object stored after the listing is
//! not a candidate, one stored before it and not yet recorded is
//! tombstoned, so its upload is repeated (see `collect_garbage`).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use tracing::{info, warn};

use super::engine::ChunkOwner;
use super::service::{CachedVolumes, ServiceError};
use super::volume::{family_namespace, CachedVolume};
use crate::cloud::layout::ObjectRole;
use crate::cloud::store::list_all;
use crate::cloud::ChunkId;

impl CachedVolumes {
    /// Keeps sweeps off while the guard lives (a recovery adopting volumes).
    pub async fn hold_sweeps(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.sweep_lock.lock().await
    }

    /// Sweeps every family that has a volume open here. A family's volumes
    /// are all open once the daemon has started (a volume that cannot open
    /// stops the start) and while no recovery adopts them (`hold_sweeps`),
    /// so a live map is never missed.
    pub async fn sweep_garbage(&self) {
        let _one = self.sweep_lock.lock().await;
        let families: BTreeSet<u64> = self.open_volumes().iter().map(|v| v.family()).collect();
        for family in families {
            if let Err(e) = self.sweep_family(family).await {
                warn!(family = format!("{family:016x}"), error = %e, "garbage sweep failed; it runs again later");
            }
        }
    }

    async fn sweep_family(&self, family: u64) -> Result<(), ServiceError> {
        let ns = family_namespace(family);
        let cloud = self.cloud_layer();
        let layout = cloud.keyring.layout().clone();
        let listed = list_all(&cloud.store, &layout.chunks_prefix(&ns)).await?;
        let candidates: HashSet<ChunkId> = listed
            .iter()
            .filter_map(|o| match layout.classify(&o.key) {
                ObjectRole::Chunk(n, id) if n == ns => Some(id),
                _ => None,
            })
            .collect();
        let volumes: Vec<Arc<CachedVolume>> =
            self.open_volumes().into_iter().filter(|v| v.family() == family).collect();
        let mut roots = Vec::new();
        for v in &volumes {
            let Some(latest) = v.last_recovery_point().map(|rp| rp.root.seq) else { continue };
            for o in list_all(&cloud.store, &layout.manifests_prefix(&ns, v.id())).await? {
                let stale = matches!(layout.classify(&o.key), ObjectRole::Manifest(_, id, seq) if id == v.id() && seq < latest);
                if stale && !self.pinned_by_snapshot(&o.key) {
                    roots.push(o.key);
                }
            }
        }
        info!(family = format!("{family:016x}"), objects = candidates.len(), stale_manifests = roots.len(), "garbage sweep");
        self.collect_garbage(family, candidates, roots).await
    }
}
