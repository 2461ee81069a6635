//! The background flows that move a tape between the library and the
//! archive shelf (DESIGN.md §3, issue 6). Each persists every state it
//! reaches, so a restart resumes it from there; each waits (bounded steps,
//! until shutdown) rather than failing when the cloud is away or the
//! application keeps the import/export slots locked.
//!
//! - import: CREATING → AVAILABLE, into a free import/export slot;
//! - archive: AVAILABLE, exported → IN_TRANSIT_TO_VTS (every segment
//!   uploaded; manifest and index written) → ARCHIVING (segments copied to
//!   the pool's class) → ARCHIVED (out of the library, cache data dropped);
//! - shelve: a RETRIEVED tape the application exports goes back to
//!   ARCHIVED (its segments never left the archive class);
//! - retrieve: RETRIEVING (restore every segment, poll) → RETRIEVED, back
//!   in an import/export slot, read-only.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use vtl::format::TapeIndex;
use vtl::smc::LibraryError;

use super::cached_tape::{segment_objects, tape_namespace};
use super::library::TapeLibrary;
use super::records::{TapeError, TapeRecord, TapeState};
use crate::cached::manifest::{read_map, read_root, write_manifest, ManifestHeader};
use crate::cloud::layout::ObjectRole;
use crate::cloud::store::{list_all, RestoreTier, StorageClass};
use crate::cloud::{CloudError, ObjectStore};

/// How often a flow looks again at something it waits for.
const POLL: Duration = Duration::from_millis(500);
/// Pause after a failed step before trying it again.
const RETRY: Duration = Duration::from_secs(5);
/// Restore polling starts here and doubles up to `RESTORE_POLL_MAX`.
const RESTORE_POLL_MIN: Duration = Duration::from_secs(1);
const RESTORE_POLL_MAX: Duration = Duration::from_secs(60);
/// Days a restored copy stays readable.
const RESTORE_DAYS: u32 = 1;
/// Every tape has one manifest: its segment map when it was archived.
const MANIFEST_SEQ: u64 = 1;

#[derive(Debug, Clone, Copy)]
enum Flow {
    Import,
    Archive,
    Shelve,
    Retrieve,
}

fn cloud_error(e: impl std::fmt::Display) -> TapeError {
    TapeError::Cloud(e.to_string())
}

impl TapeLibrary {
    /// After a start: flows of tapes a previous run left halfway, and
    /// exports whose flow never started (a crash right after the move).
    pub(crate) async fn resume_flows(self: &Arc<Self>) {
        let elements = self.changer.elements().await;
        let exported: HashSet<String> = elements.awaiting_removal().map(|(_, b)| b.to_owned()).collect();
        for r in self.store.records() {
            let flow = match r.state {
                TapeState::Creating => Some(Flow::Import),
                TapeState::InTransitToVts | TapeState::Archiving => Some(Flow::Archive),
                TapeState::Retrieving => Some(Flow::Retrieve),
                TapeState::Available if exported.contains(&r.barcode) => Some(Flow::Archive),
                TapeState::Retrieved if exported.contains(&r.barcode) => Some(Flow::Shelve),
                _ => None,
            };
            if let Some(flow) = flow {
                self.spawn_flow(&r.barcode, flow);
            }
        }
    }

    /// Exports the changer reported.
    pub(crate) async fn run_exports(self: Arc<Self>, mut exports: mpsc::UnboundedReceiver<String>) {
        loop {
            let barcode = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                b = exports.recv() => match b { Some(b) => b, None => return },
            };
            match self.store.record(&barcode).map(|r| r.state) {
                Some(TapeState::Available) => self.spawn_flow(&barcode, Flow::Archive),
                Some(TapeState::Retrieved) => self.spawn_flow(&barcode, Flow::Shelve),
                state => tracing::warn!(%barcode, ?state, "exported tape in an unexpected state"),
            }
        }
    }

    pub(crate) fn spawn_import(self: &Arc<Self>, barcode: &str) {
        self.spawn_flow(barcode, Flow::Import);
    }

    pub(crate) fn spawn_retrieve(self: &Arc<Self>, barcode: &str) {
        self.spawn_flow(barcode, Flow::Retrieve);
    }

    /// Runs a flow unless one is running for the tape already.
    fn spawn_flow(self: &Arc<Self>, barcode: &str, flow: Flow) {
        if !self.flows.lock().unwrap_or_else(|e| e.into_inner()).insert(barcode.to_owned()) {
            return;
        }
        let library = self.clone();
        let barcode = barcode.to_owned();
        tokio::spawn(async move {
            let result = match flow {
                Flow::Import => library.import(&barcode).await,
                Flow::Archive => library.archive(&barcode).await,
                Flow::Shelve => library.shelve(&barcode).await,
                Flow::Retrieve => library.retrieve_flow(&barcode).await,
            };
            library.flows.lock().unwrap_or_else(|e| e.into_inner()).remove(&barcode);
            match result {
                Ok(()) => {}
                Err(TapeError::Cancelled) => tracing::info!(%barcode, ?flow, "tape flow stopped by shutdown; resumes at start"),
                Err(e) => tracing::error!(%barcode, ?flow, error = %e, "tape flow gave up"),
            }
        });
    }

    /// Sleeps, or ends the flow at shutdown.
    async fn pause(&self, d: Duration) -> Result<(), TapeError> {
        tokio::select! {
            _ = self.shutdown.cancelled() => Err(TapeError::Cancelled),
            _ = tokio::time::sleep(d) => Ok(()),
        }
    }

    /// Repeats a step that failed for a passing reason (the cloud, a lock)
    /// until it works or the gateway stops.
    async fn until_done<T, F, Fut>(&self, barcode: &str, what: &str, mut step: F) -> Result<T, TapeError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, TapeError>>,
    {
        loop {
            match step().await {
                Ok(v) => return Ok(v),
                Err(e @ (TapeError::NotFound(_) | TapeError::Cancelled)) => return Err(e),
                Err(e) => {
                    tracing::warn!(barcode, step = what, error = %e, "tape step failed; trying again");
                    self.pause(RETRY).await?;
                }
            }
        }
    }

    /// Changes the library through its mail slots, waiting while the
    /// application prevents medium removal.
    async fn through_mail_slots<F, Fut>(&self, barcode: &str, mut change: F) -> Result<(), TapeError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<u16, LibraryError>>,
    {
        let mut warned = false;
        loop {
            match change().await {
                Ok(_) => return Ok(()),
                Err(LibraryError::RemovalPrevented) => {
                    if !warned {
                        tracing::info!(barcode, "the application prevents medium removal; waiting");
                        warned = true;
                    }
                    self.pause(POLL).await?;
                }
                Err(e) => return Err(TapeError::Library(e.to_string())),
            }
        }
    }

    fn record(&self, barcode: &str) -> Result<TapeRecord, TapeError> {
        self.store.record(barcode).ok_or_else(|| TapeError::NotFound(barcode.to_owned()))
    }

    /// Puts the tape into a free import/export slot; a tape already in the
    /// library (a crash after the import was saved) counts as imported.
    async fn import_into_library(&self, barcode: &str) -> Result<(), TapeError> {
        self.through_mail_slots(barcode, || async {
            match self.changer.import_tape(barcode).await {
                Err(LibraryError::Element(vtl::library::ElementError::DuplicateBarcode(_))) => Ok(0),
                other => other,
            }
        })
        .await
    }

    async fn import(&self, barcode: &str) -> Result<(), TapeError> {
        self.import_into_library(barcode).await?;
        self.store.set_state(barcode, TapeState::Available)?;
        Ok(())
    }

    async fn archive(&self, barcode: &str) -> Result<(), TapeError> {
        if self.record(barcode)?.state == TapeState::Available {
            self.store.set_state(barcode, TapeState::InTransitToVts)?;
        }
        if self.record(barcode)?.state == TapeState::InTransitToVts {
            self.upload_all(barcode).await?;
            self.store.set_state(barcode, TapeState::Archiving)?;
        }
        if self.record(barcode)?.state == TapeState::Archiving {
            self.until_done(barcode, "archive segments", || self.move_to_archive(barcode)).await?;
            self.leave_library(barcode).await?;
        }
        Ok(())
    }

    /// IN_TRANSIT_TO_VTS: every segment uploaded, then the manifest of the
    /// segment map and the index.
    async fn upload_all(&self, barcode: &str) -> Result<(), TapeError> {
        let r = self.record(barcode)?;
        let tape = self.store.open_tape(&r).await?;
        while !tape.all_uploaded() {
            self.store.engine.wake_feeder();
            self.pause(POLL).await?;
        }
        let cloud = &self.store.engine.cloud;
        let ns = tape_namespace(r.id);
        self.until_done(barcode, "write manifest and index", || async {
            let header = ManifestHeader {
                namespace: &ns,
                volume_id: r.id,
                volume_name: &r.barcode,
                size_bytes: r.size_bytes,
                chunk_size: self.store.engine.cache.chunk_size(),
                seq: MANIFEST_SEQ,
            };
            write_manifest(cloud, header, &tape.map(), None).await.map_err(cloud_error)?;
            let index = Bytes::from(tape.committed_index().encode());
            let key = cloud.keyring.layout().tape_index_key(&ns);
            cloud.store.put(&key, index, &StorageClass::Standard).await.map_err(cloud_error)
        })
        .await?;
        self.store.update(barcode, |r| r.used_bytes = tape.used_bytes())?;
        Ok(())
    }

    /// ARCHIVING: every segment to the pool's class; chunk objects the map
    /// no longer references (overwritten data) are deleted. Manifest pages
    /// and the index stay STANDARD. Repeatable after a crash.
    async fn move_to_archive(&self, barcode: &str) -> Result<(), TapeError> {
        let r = self.record(barcode)?;
        let tape = self.store.open_tape(&r).await?;
        let cloud = &self.store.engine.cloud;
        let layout = cloud.keyring.layout().clone();
        let ns = tape_namespace(r.id);
        let root = read_root(cloud, &layout.manifest_key(&ns, r.id, MANIFEST_SEQ)).await.map_err(cloud_error)?;
        let mut keep: HashSet<crate::cloud::ChunkId> = root.page_ids().map_err(cloud_error)?.into_iter().flatten().collect();
        let segments = segment_objects(&tape.map());
        keep.extend(segments.iter().copied());
        let class = r.pool.storage_class();
        for o in list_all(&cloud.store, &layout.chunks_prefix(&ns)).await.map_err(cloud_error)? {
            if let ObjectRole::Chunk(_, id) = layout.classify(&o.key) {
                if !keep.contains(&id) {
                    cloud.store.delete(&o.key).await.map_err(cloud_error)?;
                }
            }
        }
        for id in &segments {
            let key = layout.chunk_key(&ns, id);
            // A copy onto the same class is refused by S3: skip done ones.
            if cloud.store.head(&key).await.map_err(cloud_error)?.storage_class != class {
                cloud.store.copy_to_storage_class(&key, &class).await.map_err(cloud_error)?;
            }
        }
        Ok(())
    }

    /// → ARCHIVED: out of the import/export slot, cache data dropped.
    async fn leave_library(&self, barcode: &str) -> Result<(), TapeError> {
        let r = self.record(barcode)?;
        self.through_mail_slots(barcode, || async {
            match self.changer.remove_exported(barcode).await {
                // Already out (a crash after the removal was saved).
                Err(LibraryError::Element(vtl::library::ElementError::NotFound(_))) => Ok(0),
                other => other,
            }
        })
        .await?;
        self.until_done(barcode, "drop cache data", || self.store.close_tape(barcode, r.id)).await?;
        self.store.set_state(barcode, TapeState::Archived)?;
        Ok(())
    }

    async fn shelve(&self, barcode: &str) -> Result<(), TapeError> {
        self.leave_library(barcode).await
    }

    async fn retrieve_flow(&self, barcode: &str) -> Result<(), TapeError> {
        let r = self.record(barcode)?;
        let cloud = &self.store.engine.cloud;
        let layout = cloud.keyring.layout().clone();
        let ns = tape_namespace(r.id);
        let map = self
            .until_done(barcode, "read manifest", || async {
                let root = read_root(cloud, &layout.manifest_key(&ns, r.id, MANIFEST_SEQ)).await.map_err(cloud_error)?;
                read_map(cloud, &ns, &root).await.map_err(cloud_error)
            })
            .await?;
        let mut waiting: Vec<String> = segment_objects(&map).iter().map(|id| layout.chunk_key(&ns, id)).collect();
        let mut interval = RESTORE_POLL_MIN;
        let mut requested = false;
        while !waiting.is_empty() {
            let mut still = Vec::new();
            for key in waiting {
                let status = match cloud.store.restore_status(&key).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(barcode, key, error = %e, "restore status unknown; asking again");
                        still.push(key);
                        continue;
                    }
                };
                if status.is_readable() {
                    continue;
                }
                if !requested || status == crate::cloud::store::RestoreStatus::Archived {
                    if let Err(e) = cloud.store.restore(&key, RestoreTier::Standard, RESTORE_DAYS).await {
                        tracing::warn!(barcode, key, error = %e, "restore request failed; asking again");
                    }
                }
                still.push(key);
            }
            requested = true;
            waiting = still;
            if !waiting.is_empty() {
                tracing::info!(barcode, segments = waiting.len(), "waiting for segments to be restored");
                self.pause(interval).await?;
                interval = (interval * 2).min(RESTORE_POLL_MAX);
            }
        }
        let index = self
            .until_done(barcode, "read index", || async {
                let body = cloud.store.get(&layout.tape_index_key(&ns), None).await.map_err(cloud_error)?;
                TapeIndex::decode(&body).map_err(|e| cloud_error(CloudError::Malformed(e.to_string())))
            })
            .await?;
        let maps = self.store.engine.maps.clone();
        let index_path = self.store.index_path(r.id);
        let encoded = index.encode();
        let id = r.id;
        tokio::task::spawn_blocking(move || -> Result<(), TapeError> {
            maps.replace(id, &map).map_err(std::io::Error::other)?;
            let dir = index_path.parent().ok_or_else(|| std::io::Error::other("index path has no directory"))?;
            let name = index_path.file_name().and_then(|n| n.to_str()).ok_or_else(|| std::io::Error::other("bad name"))?;
            crate::files::write_atomically(dir, name, &encoded)?;
            Ok(())
        })
        .await
        .map_err(std::io::Error::other)??;
        self.store.open_tape(&r).await?;
        self.import_into_library(barcode).await?;
        self.store.set_state(barcode, TapeState::Retrieved)?;
        Ok(())
    }
}
