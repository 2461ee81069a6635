//! Recovery points: a consistent manifest of a cached volume committed to
//! the cloud.
//!
//! The instant is fixed under the volume's write gate: the chunk map as it
//! is, plus the chunks still dirty in the cache. Those resolve as the
//! uploader ships them at that generation, or, if a write comes first, from
//! a copy the writer takes before changing the chunk. Writers wait only for
//! that copy, never for an upload.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::engine::ChunkOwner;
use super::manifest::{write_manifest, ManifestHeader};
use super::volume::{CachedVolume, CommittedRp};
use crate::cloud::CloudError;

/// A committed recovery point and the one it replaced.
pub struct RecoveryPointOutcome {
    pub committed: CommittedRp,
    pub previous: Option<CommittedRp>,
    pub uploaded_bytes: u64,
}

impl CachedVolume {
    /// Commits a recovery point of the volume as it is now.
    pub async fn create_recovery_point(&self) -> Result<RecoveryPointOutcome, CloudError> {
        let _one = self.rp_lock.lock().await;
        let seq = self.next_rp_seq.fetch_add(1, Ordering::Relaxed);
        {
            let _gate = self.gate().write().await;
            let _commit = self.commit_lock().lock().await;
            self.begin_pending(seq);
        }
        self.engine().wake_feeder();
        let map = self.finish_pending().await?;
        let previous = self.last_rp.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let written = write_manifest(
            &self.engine().cloud,
            ManifestHeader {
                namespace: self.namespace(),
                volume_id: self.id(),
                volume_name: self.name(),
                size_bytes: self.size_bytes(),
                chunk_size: self.chunk_size(),
                seq,
            },
            &map,
            previous.as_ref().map(|p| (&p.map, &p.root)),
        )
        .await?;
        let committed = CommittedRp { root: written.root, map, key: written.key, at: SystemTime::now() };
        *self.last_rp.lock().unwrap_or_else(|e| e.into_inner()) = Some(committed.clone());
        let m = &self.engine().metrics;
        m.recovery_points.with_label_values(&[self.name()]).inc();
        m.recovery_point_bytes.with_label_values(&[self.name()]).inc_by(written.uploaded_bytes);
        Ok(RecoveryPointOutcome { committed, previous, uploaded_bytes: written.uploaded_bytes })
    }

    /// Installs a recovery point loaded from the cloud (restart, disaster
    /// recovery, clone source), so the next one continues its numbering.
    pub(crate) fn adopt_recovery_point(&self, rp: CommittedRp) {
        self.next_rp_seq.fetch_max(rp.root.seq + 1, Ordering::Relaxed);
        *self.last_rp.lock().unwrap_or_else(|e| e.into_inner()) = Some(rp);
    }

    /// The last recovery point, if any.
    pub fn last_recovery_point(&self) -> Option<CommittedRp> {
        self.last_rp.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether anything changed since the last recovery point: the map
    /// differs or the cache holds data not yet uploaded.
    pub fn changed_since_recovery_point(&self) -> bool {
        let Some(rp) = self.last_recovery_point() else { return true };
        if !self.engine().cache.unsynced_chunks(self.id()).is_empty() {
            return true;
        }
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        (0..map.page_count().max(rp.map.page_count())).any(|p| !map.same_page(&rp.map, p))
    }

    /// Marks the last recovery point as current without uploading anything
    /// (nothing changed since).
    pub fn refresh_recovery_point(&self) {
        if let Some(rp) = self.last_rp.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            rp.at = SystemTime::now();
        }
    }
}
