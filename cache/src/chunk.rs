//! A cached chunk's metadata and its index record.
//!
//! A chunk owns one slot (`current`). Sectors of a slot that a completed
//! flush made durable are never overwritten in place: the first write of a
//! later flush epoch moves the chunk to a fresh slot and keeps the old one as
//! `base`, the durable pre-image. Reads take each sector from `current` if
//! valid there, else from `base`. The next flush copies the sectors only
//! `base` has into `current` and frees `base`. So a crash at any instant
//! finds every durable sector intact in some slot the index points at.

use crate::disk::SlotRef;
use crate::error::{Error, Result};
use crate::sectors::SectorSet;
use crate::types::ChunkId;

/// One slot's contents: which sectors are valid and their crc32c.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotData {
    pub slot: SlotRef,
    pub valid: SectorSet,
    /// crc32c of each sector; meaningful for valid sectors only.
    pub crcs: Vec<u32>,
}

impl SlotData {
    pub fn empty(slot: SlotRef, sectors: u32) -> Self {
        SlotData { slot, valid: SectorSet::new(sectors), crcs: vec![0; sectors as usize] }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub current: SlotData,
    pub base: Option<SlotData>,
    pub dirty: bool,
    pub generation: u64,
    /// Position in the upload queue: the order of first dirtying.
    pub dirty_seq: u64,
    /// The flush epoch `current` was allocated in; writes from a later
    /// epoch copy-on-write.
    pub epoch: u64,
    /// The last epoch in which any sector changed: recovery verifies the
    /// chunks touched after the last durable flush.
    pub touched: u64,
    /// A logical access clock; persisted with every update so that a
    /// reopened cache evicts the coldest chunks first.
    pub last_access: u64,
    /// In memory only: pins are taken by live users of the chunk.
    pub pins: u32,
}

impl Chunk {
    /// Valid sectors across `current` and `base`.
    pub fn valid(&self) -> SectorSet {
        let mut valid = self.current.valid.clone();
        if let Some(base) = &self.base {
            for s in base.valid.iter() {
                valid.insert_range(s..s + 1);
            }
        }
        valid
    }

    /// Slots this chunk holds.
    pub fn slots(&self) -> u64 {
        1 + u64::from(self.base.is_some())
    }

    /// Slots this chunk counts against the dirty watermark: all of them
    /// while dirty, else only a base awaiting the next flush.
    pub fn dirty_slots(&self) -> u64 {
        if self.dirty {
            self.slots()
        } else {
            u64::from(self.base.is_some())
        }
    }

    pub fn evictable(&self) -> bool {
        !self.dirty && self.pins == 0 && self.base.is_none()
    }
}

pub fn encode_key(id: ChunkId) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&id.namespace.to_be_bytes());
    key[8..].copy_from_slice(&id.index.to_be_bytes());
    key
}

pub fn decode_key(key: &[u8]) -> Result<ChunkId> {
    let bad = || Error::BadRecord { what: format!("key {key:?}"), reason: "chunk key is not 16 bytes" };
    let ns = key.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(bad)?;
    let index = key.get(8..16).and_then(|b| b.try_into().ok()).ok_or_else(bad)?;
    if key.len() != 16 {
        return Err(bad());
    }
    Ok(ChunkId::new(u64::from_be_bytes(ns), u64::from_be_bytes(index)))
}

const RECORD_VERSION: u8 = 1;
const FLAG_DIRTY: u8 = 1;
const FLAG_BASE: u8 = 2;

pub fn encode(chunk: &Chunk) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + chunk.current.crcs.len() * 4);
    out.push(RECORD_VERSION);
    out.push(if chunk.dirty { FLAG_DIRTY } else { 0 } | if chunk.base.is_some() { FLAG_BASE } else { 0 });
    for v in [chunk.generation, chunk.dirty_seq, chunk.epoch, chunk.touched, chunk.last_access] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    encode_slot(&chunk.current, &mut out);
    if let Some(base) = &chunk.base {
        encode_slot(base, &mut out);
    }
    out
}

fn encode_slot(data: &SlotData, out: &mut Vec<u8>) {
    out.extend_from_slice(&data.slot.disk.to_le_bytes());
    out.extend_from_slice(&data.slot.slot.to_le_bytes());
    out.extend_from_slice(&data.valid.len().to_le_bytes());
    for w in data.valid.words() {
        out.extend_from_slice(&w.to_le_bytes());
    }
    // Only valid sectors carry a checksum: a partly cached chunk stays small.
    for s in data.valid.iter() {
        out.extend_from_slice(&data.crcs[s as usize].to_le_bytes());
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    id: ChunkId,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let (head, rest) = self.bytes.split_at_checked(N).ok_or_else(|| self.bad("record truncated"))?;
        self.bytes = rest;
        head.try_into().map_err(|_| self.bad("record truncated"))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    fn bad(&self, reason: &'static str) -> Error {
        Error::BadRecord { what: self.id.to_string(), reason }
    }
}

pub fn decode(id: ChunkId, bytes: &[u8], sectors: u32) -> Result<Chunk> {
    let mut r = Reader { bytes, id };
    let [version, flags] = r.take::<2>()?;
    if version != RECORD_VERSION {
        return Err(r.bad("unknown record version"));
    }
    let (generation, dirty_seq, epoch, touched, last_access) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?);
    let current = decode_slot(&mut r, sectors)?;
    let base = if flags & FLAG_BASE != 0 { Some(decode_slot(&mut r, sectors)?) } else { None };
    if !r.bytes.is_empty() {
        return Err(r.bad("trailing bytes"));
    }
    Ok(Chunk {
        current,
        base,
        dirty: flags & FLAG_DIRTY != 0,
        generation,
        dirty_seq,
        epoch,
        touched,
        last_access,
        pins: 0,
    })
}

fn decode_slot(r: &mut Reader<'_>, sectors: u32) -> Result<SlotData> {
    let slot = SlotRef { disk: r.u32()?, slot: r.u32()? };
    if r.u32()? != sectors {
        return Err(r.bad("sector count differs from the cache's"));
    }
    let words = (0..sectors.div_ceil(64)).map(|_| r.u64()).collect::<Result<Vec<_>>>()?;
    let valid = SectorSet::from_words(sectors, words).ok_or_else(|| r.bad("bad validity bitmap"))?;
    let mut crcs = vec![0; sectors as usize];
    for s in valid.iter() {
        crcs[s as usize] = r.u32()?;
    }
    Ok(SlotData { slot, valid, crcs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_with_and_without_base() {
        let mut current = SlotData::empty(SlotRef { disk: 1, slot: 9 }, 100);
        current.valid.insert_range(3..7);
        current.crcs[4] = 0xdead_beef;
        let mut chunk = Chunk {
            current,
            base: None,
            dirty: true,
            generation: 5,
            dirty_seq: 6,
            epoch: 7,
            touched: 8,
            last_access: 9,
            pins: 2,
        };
        let id = ChunkId::new(1, 2);
        let decoded = decode(id, &encode(&chunk), 100).expect("decode");
        // Pins live in memory only.
        assert_eq!(decoded, Chunk { pins: 0, ..chunk.clone() });
        chunk.base = Some(SlotData::empty(SlotRef { disk: 0, slot: 1 }, 100));
        chunk.pins = 0;
        assert_eq!(decode(id, &encode(&chunk), 100).expect("decode"), chunk);
        assert!(decode(id, &encode(&chunk)[..20], 100).is_err());
        assert_eq!(decode_key(&encode_key(id)).expect("key"), id);
    }
}
