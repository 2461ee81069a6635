//! The disk's copy manager: EXTENDED COPY (LID1) with identification
//! target descriptors (E4h) naming our own logical units by NAA, and
//! block-to-block segment descriptors (02h); RECEIVE COPY RESULTS with
//! COPY STATUS and OPERATING PARAMETERS (SPC-4 6.4, 6.27).
//!
//! Copies run to completion inside the command; results are held per I_T
//! nexus and list identifier for COPY STATUS.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::{BufMut, BytesMut};

use super::cdb::{CopyCommand, CopyResultsAction};
use super::lu::{ItNexus, ScsiRequest, ScsiResponse};
use super::sbc::DiskUnit;
use super::sense::{Sense, SenseKey};
use super::types::{BlockCount, Lba};

/// Resolves the logical units of this gateway that a target descriptor
/// may name, by their 16-byte NAA designator.
pub trait CopyTargets: Send + Sync {
    fn disk(&self, naa: &[u8]) -> Option<Arc<DiskUnit>>;
}

const MAX_TARGET_DESCRIPTORS: u16 = 8;
const MAX_SEGMENT_DESCRIPTORS: u16 = 64;
const MAX_DESCRIPTOR_LIST_LENGTH: u32 = 4096;
/// The largest segment, in bytes.
const MAX_SEGMENT_BYTES: u32 = 64 << 20;
/// COPY STATUS results kept (oldest dropped first).
const HELD_RESULTS: usize = 64;

const HEADER_LEN: usize = 16;
const IDENTIFICATION_TARGET: u8 = 0xE4;
const TARGET_DESCRIPTOR_LEN: usize = 32;
const BLOCK_TO_BLOCK: u8 = 0x02;

/// COPY MANAGER STATUS values.
const COMPLETED: u8 = 0x01;
const COMPLETED_WITH_ERRORS: u8 = 0x02;

#[derive(Debug, Clone, Copy)]
struct CopyResult {
    status: u8,
    segments: u16,
    kib: u32,
}

#[derive(Default)]
pub struct CopyManager {
    targets: Option<Arc<dyn CopyTargets>>,
    /// (nexus id, list identifier) → outcome.
    held: Mutex<VecDeque<((u64, u8), CopyResult)>>,
}

/// Where a segment reads or writes: this unit or another one.
enum Target {
    This,
    Other(Arc<DiskUnit>),
}

struct Segment {
    src: usize,
    dst: usize,
    blocks: u64,
    src_lba: u64,
    dst_lba: u64,
}

fn copy_aborted(asc: u8, ascq: u8) -> Sense {
    Sense::new(SenseKey::CopyAborted, asc, ascq)
}

fn be(b: &[u8], at: usize, len: usize) -> u64 {
    (at..at + len).fold(0, |acc, i| acc << 8 | b.get(i).copied().unwrap_or(0) as u64)
}

impl CopyManager {
    pub fn with_targets(targets: Arc<dyn CopyTargets>) -> CopyManager {
        CopyManager { targets: Some(targets), held: Mutex::default() }
    }

    pub async fn execute(&self, unit: &DiskUnit, req: &ScsiRequest, cmd: CopyCommand) -> Result<ScsiResponse, Sense> {
        match cmd {
            CopyCommand::ExtendedCopy { param_len } => self.extended_copy(unit, req, param_len).await,
            CopyCommand::ReceiveCopyResults { action: CopyResultsAction::OperatingParameters, .. } => {
                Ok(ScsiResponse::data(operating_parameters()))
            }
            CopyCommand::ReceiveCopyResults { action: CopyResultsAction::CopyStatus, list_id, .. } => {
                let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
                let r = held
                    .iter()
                    .rev()
                    .find(|(k, _)| *k == (req.nexus.id, list_id))
                    .map(|(_, r)| *r)
                    .ok_or(Sense::invalid_cdb_field(2, None))?;
                let mut b = BytesMut::with_capacity(12);
                b.put_u32(8);
                b.put_u8(r.status);
                b.put_u16(r.segments);
                b.put_u8(0x01); // transfer count in KiB
                b.put_u32(r.kib);
                Ok(ScsiResponse::data(b.freeze()))
            }
        }
    }

    pub fn nexus_lost(&self, nexus: &ItNexus) {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).retain(|((id, _), _)| *id != nexus.id);
    }

    async fn extended_copy(&self, unit: &DiskUnit, req: &ScsiRequest, param_len: u32) -> Result<ScsiResponse, Sense> {
        if param_len == 0 {
            return Ok(ScsiResponse::good());
        }
        let list = req.data_out.get(..param_len as usize).ok_or(Sense::PARAMETER_LIST_LENGTH_ERROR)?;
        if list.len() < HEADER_LEN {
            return Err(Sense::PARAMETER_LIST_LENGTH_ERROR);
        }
        let list_id = list[0];
        // LIST ID USAGE 00b/01b: hold the results for COPY STATUS.
        let hold = (list[1] >> 3) & 0x03 < 2;
        let tgt_len = be(list, 2, 2) as usize;
        let seg_len = be(list, 8, 4) as usize;
        let inline_len = be(list, 12, 4) as usize;
        if tgt_len + seg_len > MAX_DESCRIPTOR_LIST_LENGTH as usize
            || HEADER_LEN + tgt_len + seg_len + inline_len > list.len()
        {
            return Err(Sense::PARAMETER_LIST_LENGTH_ERROR);
        }
        if inline_len != 0 {
            return Err(Sense::invalid_param_field(12, None));
        }
        let targets = self.parse_targets(unit, list, tgt_len)?;
        let segments = parse_segments(list, HEADER_LEN + tgt_len, seg_len)?;
        let mut done = CopyResult { status: COMPLETED, segments: 0, kib: 0 };
        let outcome = self.run_segments(unit, &targets, &segments, &mut done).await;
        if outcome.is_err() {
            done.status = COMPLETED_WITH_ERRORS;
        }
        if hold {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            held.retain(|(k, _)| *k != (req.nexus.id, list_id));
            if held.len() >= HELD_RESULTS {
                held.pop_front();
            }
            held.push_back(((req.nexus.id, list_id), done));
        }
        outcome.map(|()| ScsiResponse::good())
    }

    fn parse_targets(&self, unit: &DiskUnit, list: &[u8], tgt_len: usize) -> Result<Vec<Target>, Sense> {
        if !tgt_len.is_multiple_of(TARGET_DESCRIPTOR_LEN) {
            return Err(Sense::PARAMETER_LIST_LENGTH_ERROR);
        }
        if tgt_len / TARGET_DESCRIPTOR_LEN > MAX_TARGET_DESCRIPTORS as usize {
            return Err(Sense::TOO_MANY_TARGET_DESCRIPTORS);
        }
        let own = unit.identity().naa6();
        let mut targets = Vec::new();
        for (i, d) in list[HEADER_LEN..HEADER_LEN + tgt_len].chunks_exact(TARGET_DESCRIPTOR_LEN).enumerate() {
            let at = (HEADER_LEN + i * TARGET_DESCRIPTOR_LEN) as u16;
            if d[0] != IDENTIFICATION_TARGET {
                return Err(Sense { field: Some(param_pointer(at)), ..Sense::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE });
            }
            // Block devices only (peripheral device type 00h). LU ID TYPE
            // and NUL are ignored as SPC-4 requires.
            if d[1] & 0x1F != 0 {
                return Err(Sense::invalid_param_field(at + 1, Some(4)));
            }
            let (code_set, kind, len) = (d[4] & 0x0F, d[5] & 0x0F, d[7] as usize);
            let designator = &d[8..8 + len.min(16)];
            let target = if code_set == 1 && kind == 3 && len == 16 && designator == own {
                Target::This
            } else {
                let other = self.targets.as_ref().and_then(|t| t.disk(designator));
                Target::Other(other.ok_or(copy_aborted(0x0D, 0x02))?)
            };
            let block_len = be(d, 29, 3) as u32;
            let actual = match &target {
                Target::This => unit.block_size(),
                Target::Other(u) => u.block_size(),
            };
            if block_len != actual {
                return Err(Sense::invalid_param_field(at + 29, None));
            }
            targets.push(target);
        }
        Ok(targets)
    }

    async fn run_segments(
        &self,
        unit: &DiskUnit,
        targets: &[Target],
        segments: &[Segment],
        done: &mut CopyResult,
    ) -> Result<(), Sense> {
        for s in segments {
            let resolve = |i: usize| -> Result<&DiskUnit, Sense> {
                match targets.get(i) {
                    Some(Target::This) => Ok(unit),
                    Some(Target::Other(u)) => Ok(u.as_ref()),
                    None => Err(copy_aborted(0x0D, 0x02)),
                }
            };
            let (src, dst) = (resolve(s.src)?, resolve(s.dst)?);
            if src.check_range(Lba(s.src_lba), BlockCount(s.blocks)).is_err()
                || dst.check_range(Lba(s.dst_lba), BlockCount(s.blocks)).is_err()
            {
                return Err(copy_aborted(0x00, 0x00));
            }
            dst.writable()?;
            if s.blocks * src.block_size() as u64 > MAX_SEGMENT_BYTES as u64 {
                return Err(copy_aborted(0x00, 0x00));
            }
            let chunk = (MAX_SEGMENT_BYTES as u64 / 8 / src.block_size().max(1) as u64).max(1);
            let mut copied = 0;
            while copied < s.blocks {
                let n = chunk.min(s.blocks - copied);
                let data = src.read_blocks(Lba(s.src_lba + copied), BlockCount(n)).await?;
                dst.write_blocks(Lba(s.dst_lba + copied), data, false, None).await?;
                copied += n;
                done.kib = done.kib.saturating_add((n * src.block_size() as u64 / 1024) as u32);
            }
            done.segments += 1;
        }
        Ok(())
    }
}

fn param_pointer(byte: u16) -> super::sense::FieldPointer {
    super::sense::FieldPointer { in_cdb: false, byte, bit: None }
}

/// Segment descriptors: only block-to-block (02h) is implemented.
fn parse_segments(list: &[u8], start: usize, len: usize) -> Result<Vec<Segment>, Sense> {
    let mut segments = Vec::new();
    let mut at = start;
    let end = start + len;
    while at < end {
        let d = list.get(at..end).unwrap_or(&[]);
        if d.len() < 4 {
            return Err(Sense::PARAMETER_LIST_LENGTH_ERROR);
        }
        let desc_len = 4 + be(d, 2, 2) as usize;
        if segments.len() >= MAX_SEGMENT_DESCRIPTORS as usize {
            return Err(Sense::TOO_MANY_SEGMENT_DESCRIPTORS);
        }
        if d[0] != BLOCK_TO_BLOCK {
            return Err(Sense {
                field: Some(param_pointer(at as u16)),
                ..Sense::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE
            });
        }
        if desc_len != 28 || d.len() < 28 {
            return Err(Sense::invalid_param_field(at as u16 + 2, None));
        }
        segments.push(Segment {
            src: be(d, 4, 2) as usize,
            dst: be(d, 6, 2) as usize,
            blocks: be(d, 10, 2),
            src_lba: be(d, 12, 8),
            dst_lba: be(d, 20, 8),
        });
        at += desc_len;
    }
    Ok(segments)
}

/// RECEIVE COPY RESULTS, OPERATING PARAMETERS (SPC-4 6.27.4).
fn operating_parameters() -> bytes::Bytes {
    let implemented = [BLOCK_TO_BLOCK, IDENTIFICATION_TARGET];
    let mut b = BytesMut::with_capacity(44 + implemented.len());
    b.put_u32(40 + implemented.len() as u32);
    b.put_u8(0x01); // SNLID: list identifiers are supported
    b.put_bytes(0, 3);
    b.put_u16(MAX_TARGET_DESCRIPTORS);
    b.put_u16(MAX_SEGMENT_DESCRIPTORS);
    b.put_u32(MAX_DESCRIPTOR_LIST_LENGTH);
    b.put_u32(MAX_SEGMENT_BYTES);
    b.put_u32(0); // no inline data
    b.put_u32(0); // no held data
    b.put_u32(0); // no stream devices
    b.put_u16(0);
    b.put_u16(1); // total concurrent copies
    b.put_u8(1); // maximum concurrent copies
    b.put_u8(0); // data segment granularity 2^0
    b.put_u8(0);
    b.put_u8(0);
    b.put_bytes(0, 3);
    b.put_u8(implemented.len() as u8);
    b.put_slice(&implemented);
    b.freeze()
}
