//! Reads: each sector comes from the chunk's current slot if valid there,
//! else from its base; every sector read is checked against its crc32c.

use bytes::Bytes;

use crate::cache::{Cell, Inner};
use crate::chunk::{Chunk, SlotData};
use crate::error::{Error, Result};
use crate::sectors::SectorSet;
use crate::types::{ChunkId, ReadOutcome};

impl Inner {
    pub fn read(&self, id: ChunkId, offset: u32, len: u32) -> Result<ReadOutcome> {
        self.check_healthy()?;
        let sectors = self.sector_range(offset, len as usize)?;
        let sector = self.config.sector_size as usize;
        let mut buffer = vec![0u8; sectors.len() * sector];
        let mut valid = SectorSet::new(self.sectors);
        let mut generation = 0;
        if let Some(mut guard) = self.lock_cell(id, false) {
            if let Cell::Present(chunk) = &mut *guard {
                for source in std::iter::once(&chunk.current).chain(chunk.base.iter()) {
                    let mut wanted = SectorSet::new(self.sectors);
                    for s in sectors.clone().filter(|s| source.valid.contains(*s) && !valid.contains(*s)) {
                        wanted.insert_range(s..s + 1);
                    }
                    self.read_runs(id, source, &wanted, sectors.start, &mut buffer)?;
                    for s in wanted.iter() {
                        valid.insert_range(s..s + 1);
                    }
                }
                generation = chunk.generation;
                let mut state = self.state.lock();
                chunk.last_access = state.tick();
                state.policy.access(&id);
            }
        }
        let complete = valid.contains_range(sectors.clone());
        if complete {
            self.metrics.hits.inc();
        } else {
            self.metrics.misses.inc();
        }
        let head = offset as usize - sectors.start as usize * sector;
        let data = Bytes::from(buffer).slice(head..head + len as usize);
        Ok(ReadOutcome { data, valid, generation, complete })
    }

    /// Reads the sectors of `runs` from `source` into `buffer`, which starts
    /// at sector `first`, verifying each.
    fn read_runs(&self, id: ChunkId, source: &SlotData, runs: &SectorSet, first: u32, buffer: &mut [u8]) -> Result<()> {
        if runs.is_empty() {
            return Ok(());
        }
        let sector = self.config.sector_size as usize;
        let disk = self.disk(source.slot.disk)?;
        for run in runs.runs() {
            let at = (run.start - first) as usize * sector;
            let bytes = &mut buffer[at..at + run.len() * sector];
            disk.read_at(source.slot.slot, u64::from(run.start) * sector as u64, bytes)?;
            for (i, s) in run.enumerate() {
                self.verify(id, source, s, &bytes[i * sector..(i + 1) * sector])?;
            }
        }
        Ok(())
    }

    /// Reads one valid sector of a chunk, verified.
    pub fn read_sector(&self, id: ChunkId, chunk: &Chunk, sector: u32, out: &mut [u8]) -> Result<()> {
        let source = if chunk.current.valid.contains(sector) { &chunk.current } else { chunk.base.as_ref().unwrap_or(&chunk.current) };
        self.disk(source.slot.disk)?.read_at(source.slot.slot, u64::from(sector) * out.len() as u64, out)?;
        self.verify(id, source, sector, out)
    }

    pub fn verify(&self, id: ChunkId, source: &SlotData, sector: u32, bytes: &[u8]) -> Result<()> {
        if crc32c::crc32c(bytes) == source.crcs[sector as usize] && source.valid.contains(sector) {
            return Ok(());
        }
        self.metrics.corruptions.inc();
        let error = Error::ChecksumMismatch { chunk: id, sector };
        tracing::error!(%error, slot = ?source.slot, "cache data failed its checksum");
        Err(error)
    }
}
