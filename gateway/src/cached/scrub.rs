//! Scrubbing: every object a volume's chunk map names is read from the
//! cloud and verified by the codec, without filling the cache, so that
//! damage is found before a read or an upload needs the chunk.

use serde::{Deserialize, Serialize};

use super::damage::DamagedChunk;
use super::engine::ChunkOwner;
use super::map::ChunkRef;
use super::volume::CachedVolume;
use crate::cloud::{CloudError, ErrorKind};

/// What a scrub found.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScrubReport {
    pub volume: String,
    /// Objects read and verified.
    pub objects_checked: u64,
    /// The volume's damaged chunks after the scrub (also those found
    /// earlier by reads or uploads and not repaired since).
    pub damaged: Vec<DamagedChunk>,
}

impl CachedVolume {
    /// Reads and verifies every object the chunk map names. Objects that
    /// fail verification or are missing are recorded as damaged; damage
    /// recorded earlier whose object now reads back is forgotten (unless
    /// the chunk holds writes). Fails on other cloud errors (an outage),
    /// which say nothing about the data.
    pub async fn scrub(&self) -> Result<ScrubReport, CloudError> {
        let objects: Vec<(u64, crate::cloud::ChunkId)> = {
            let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            (0..self.chunks())
                .filter_map(|index| match map.get(index) {
                    ChunkRef::Object(id) => Some((index, id)),
                    ChunkRef::Zero => None,
                })
                .collect()
        };
        let reader = &self.engine().cloud.reader;
        let mut checked = 0u64;
        for (index, id) in objects {
            match reader.read_chunk(self.namespace(), &id).await {
                Ok(_) => self.forget_damage_if_readable(index, &id),
                Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::NotFound) => {
                    self.note_damage(index, id, &e.to_string());
                }
                Err(e) => return Err(e),
            }
            checked += 1;
        }
        Ok(ScrubReport {
            volume: self.name().to_owned(),
            objects_checked: checked,
            damaged: self.damaged_chunks(),
        })
    }
}
