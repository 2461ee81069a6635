//! What the tape commands do to the loaded tape: reads, writes, filemarks,
//! spacing, locating, erasing, with the sense data and residues SSC-3
//! specifies (and Linux st relies on).
//!
//! The position is a logical object number: the object a read would return
//! next. Writing anywhere but at end of data first cuts the tape there and
//! commits the cut, so a crash never leaves a committed index pointing at
//! bytes that were rewritten.

use bytes::{Bytes, BytesMut};
use iscsi_target::scsi::{ScsiResponse, ScsiStatus, Sense};

use super::cdb::{LocateTarget, SpaceCode};
use super::log::{Counters, Space, TapeAlert, TapeAlerts};
use super::pages::Position;
use super::DriveState;
use crate::format::{TapeIndex, TapeObject};
use crate::media::{LoadedMedium, TapeStoreError};
use crate::sense;

/// Fixed-block transfers move at most this much in one command: it bounds
/// the memory a READ can make us allocate.
const MAX_FIXED_TRANSFER: u64 = 64 << 20;

/// A tape in the drive.
pub(super) struct Mounted {
    medium: LoadedMedium,
    pub pos: u64,
    /// Loaded and ready; false after LOAD UNLOAD unloaded it (the tape is
    /// still in the drive until the changer takes it).
    pub threaded: bool,
    /// The index changed since the last commit.
    dirty: bool,
    early_warning: u64,
}

impl Mounted {
    pub fn new(medium: LoadedMedium, early_warning: u64) -> Mounted {
        Mounted { medium, pos: 0, threaded: true, dirty: false, early_warning }
    }

    pub fn barcode(&self) -> &str {
        &self.medium.barcode
    }

    fn index(&self) -> &TapeIndex {
        &self.medium.index
    }

    fn eod(&self) -> u64 {
        self.index().object_count()
    }

    pub fn space(&self) -> Space {
        Space {
            capacity: self.medium.capacity,
            early_warning: self.early_warning,
            used: self.index().data_end(),
            position: self.index().offset_of(self.pos),
        }
    }

    /// Makes the index (and the data under it) durable if it changed.
    pub async fn commit(&mut self) -> Result<(), TapeStoreError> {
        if self.dirty {
            self.medium.stream.commit(&self.medium.index).await?;
            self.dirty = false;
        }
        Ok(())
    }

    /// WORM tapes take writes at end of data, or over the filemarks that
    /// end the tape when a filemark precedes the position (so that backup
    /// software can append after its closing filemarks, as on LTO WORM).
    fn worm_allows_write(&self) -> bool {
        let idx = self.index();
        let (pos, eod) = (self.pos, self.eod());
        let only_filemarks_follow = idx.filemark_count() - idx.filemarks_before(pos) == eod - pos;
        pos == eod || (only_filemarks_follow && pos > 0 && idx.object(pos - 1) == Some(TapeObject::Filemark))
    }
}

/// Sense for a store failure while writing or committing.
pub(super) fn write_failed(alerts: &mut TapeAlerts, counters: &mut Counters, e: TapeStoreError) -> Sense {
    tracing::warn!(error = %e, "tape write failed");
    alerts.raise(TapeAlert::HardError);
    alerts.raise(TapeAlert::WriteFailure);
    counters.write_errors += 1;
    match e {
        TapeStoreError::Unavailable(_) => Sense::INTERNAL_TARGET_FAILURE,
        TapeStoreError::Corrupt(_) | TapeStoreError::Io(_) => Sense::WRITE_ERROR,
    }
}

fn read_failed(alerts: &mut TapeAlerts, counters: &mut Counters, e: TapeStoreError) -> Sense {
    tracing::warn!(error = %e, "tape read failed");
    alerts.raise(TapeAlert::HardError);
    alerts.raise(TapeAlert::ReadFailure);
    counters.read_errors += 1;
    match e {
        TapeStoreError::Unavailable(_) => Sense::INTERNAL_TARGET_FAILURE,
        TapeStoreError::Corrupt(_) | TapeStoreError::Io(_) => Sense::UNRECOVERED_READ_ERROR,
    }
}

fn filemark_detected(residue: u64) -> Sense {
    Sense { filemark: true, ..sense::FILEMARK_DETECTED }.with_info(residue)
}

fn end_of_data(residue: u64) -> Sense {
    sense::END_OF_DATA.with_info(residue)
}

fn beginning_of_partition(residue: u64) -> Sense {
    Sense { eom: true, ..sense::BEGINNING_OF_PARTITION }.with_info(residue)
}

fn incorrect_length(residue: u64) -> Sense {
    Sense { ili: true, ..sense::INCORRECT_LENGTH }.with_info(residue)
}

fn early_warning() -> Sense {
    Sense { eom: true, ..sense::EARLY_WARNING }.with_info(0)
}

fn volume_overflow(residue: u64) -> Sense {
    Sense { eom: true, ..sense::VOLUME_OVERFLOW }.with_info(residue)
}

/// CHECK CONDITION that still carries the data read before it.
fn check_with_data(data: Bytes, sense: Sense) -> ScsiResponse {
    ScsiResponse { status: ScsiStatus::CheckCondition, data_in: data, sense: Some(sense), data_out_len: None }
}

/// The INFORMATION field of a variable-length read of `requested` bytes
/// that met a record of `actual`: the difference, negative (two's
/// complement in 32 bits) for an overlength record.
fn length_residue(requested: u32, actual: u32) -> u64 {
    (requested as i64 - actual as i64) as i32 as u32 as u64
}

fn ready(mounted: &mut Option<Mounted>) -> Result<&mut Mounted, Sense> {
    match mounted {
        Some(m) if m.threaded => Ok(m),
        _ => Err(Sense::MEDIUM_NOT_PRESENT),
    }
}

impl DriveState {
    fn writable(&mut self, soft_wp: bool) -> Result<&mut Mounted, Sense> {
        let m = ready(&mut self.mounted)?;
        if soft_wp || m.medium.write_protected {
            self.alerts.raise(TapeAlert::WriteProtect);
            return Err(Sense::WRITE_PROTECTED);
        }
        Ok(m)
    }

    /// Commits pending writes before the position moves away from them.
    async fn settle(&mut self) -> Result<&mut Mounted, Sense> {
        let DriveState { mounted, counters, alerts } = self;
        let m = ready(mounted)?;
        m.commit().await.map_err(|e| write_failed(alerts, counters, e))?;
        Ok(m)
    }

    /// Before writing at the position: refuse a WORM overwrite, otherwise
    /// cut the tape there, commit the cut and release the bytes after it.
    async fn prepare_write(&mut self, soft_wp: bool) -> Result<(), Sense> {
        let m = self.writable(soft_wp)?;
        if m.pos == m.eod() {
            return Ok(());
        }
        if m.medium.worm && !m.worm_allows_write() {
            self.alerts.raise(TapeAlert::WormOverwriteAttempted);
            return Err(sense::WORM_OVERWRITE_ATTEMPTED);
        }
        let DriveState { mounted, counters, alerts } = self;
        let m = ready(mounted)?;
        let cut = m.index().offset_of(m.pos);
        m.medium.index.truncate(m.pos);
        m.dirty = true;
        m.commit().await.map_err(|e| write_failed(alerts, counters, e))?;
        m.medium.stream.discard_from(cut).await.map_err(|e| write_failed(alerts, counters, e))
    }

    pub async fn read(&mut self, fixed: bool, sili: bool, length: u32, block_len: u32) -> Result<ScsiResponse, Sense> {
        ready(&mut self.mounted)?;
        if fixed && block_len == 0 {
            return Err(Sense::invalid_cdb_field(1, Some(0)));
        }
        if fixed && length as u64 * block_len as u64 > MAX_FIXED_TRANSFER {
            return Err(Sense::invalid_cdb_field(2, None));
        }
        if length == 0 {
            return Ok(ScsiResponse::good());
        }
        // Reads at end of data after writes would not move: nothing to
        // commit. Reads elsewhere follow a repositioning, which committed.
        if fixed {
            self.read_fixed(length as u64, block_len).await
        } else {
            self.read_variable(sili, length).await
        }
    }

    async fn read_variable(&mut self, sili: bool, length: u32) -> Result<ScsiResponse, Sense> {
        let DriveState { mounted, counters, alerts } = self;
        let m = ready(mounted)?;
        let (offset, actual) = match m.index().object(m.pos) {
            None => return Err(end_of_data(length as u64)),
            Some(TapeObject::Filemark) => {
                m.pos += 1;
                return Err(filemark_detected(length as u64));
            }
            Some(TapeObject::Record { offset, len }) => (offset, len),
        };
        let n = actual.min(length);
        let data = m.medium.stream.read_at(offset, n as usize).await.map_err(|e| read_failed(alerts, counters, e))?;
        m.pos += 1;
        counters.bytes_read += n as u64;
        if actual == length || (actual < length && sili) {
            return Ok(ScsiResponse::data(data));
        }
        Ok(check_with_data(data, incorrect_length(length_residue(length, actual))))
    }

    async fn read_fixed(&mut self, blocks: u64, block_len: u32) -> Result<ScsiResponse, Sense> {
        let DriveState { mounted, counters, alerts } = self;
        let m = ready(mounted)?;
        let mut parts: Vec<Bytes> = Vec::new();
        let mut done = 0;
        let mut stop = None;
        while done < blocks {
            match m.index().object(m.pos) {
                None => {
                    stop = Some(end_of_data(blocks - done));
                    break;
                }
                Some(TapeObject::Filemark) => {
                    m.pos += 1;
                    stop = Some(filemark_detected(blocks - done));
                    break;
                }
                Some(TapeObject::Record { len, .. }) if len != block_len => {
                    // The wrong-length block is passed over, not returned.
                    m.pos += 1;
                    stop = Some(incorrect_length(blocks - done));
                    break;
                }
                Some(TapeObject::Record { .. }) => {
                    let Some(span) = m.index().record_span(m.pos, blocks - done) else { break };
                    let data = m
                        .medium
                        .stream
                        .read_at(span.offset, span.bytes() as usize)
                        .await
                        .map_err(|e| read_failed(alerts, counters, e))?;
                    counters.bytes_read += data.len() as u64;
                    parts.push(data);
                    m.pos += span.count;
                    done += span.count;
                }
            }
        }
        let data = match parts.len() {
            0 => Bytes::new(),
            1 => parts.swap_remove(0),
            _ => {
                let mut b = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
                parts.iter().for_each(|p| b.extend_from_slice(p));
                b.freeze()
            }
        };
        Ok(match stop {
            None => ScsiResponse::data(data),
            Some(sense) => check_with_data(data, sense),
        })
    }

    pub async fn write(
        &mut self,
        data_out: &Bytes,
        fixed: bool,
        length: u32,
        block_len: u32,
        soft_wp: bool,
    ) -> Result<ScsiResponse, Sense> {
        self.writable(soft_wp)?;
        if fixed && block_len == 0 {
            return Err(Sense::invalid_cdb_field(1, Some(0)));
        }
        let (record_len, count) = if fixed { (block_len, length as u64) } else { (length, 1) };
        if fixed && count * record_len as u64 > MAX_FIXED_TRANSFER {
            return Err(Sense::invalid_cdb_field(2, None));
        }
        // An initiator that sent less data than the CDB asked for gets only
        // the whole blocks it sent written (variable: a shorter record); the
        // transport reports the residual.
        let (record_len, count) = if fixed {
            (record_len, count.min(data_out.len() as u64 / record_len as u64))
        } else {
            (record_len.min(data_out.len() as u32), 1)
        };
        if record_len == 0 || count == 0 {
            return Ok(ScsiResponse::good());
        }
        self.prepare_write(soft_wp).await?;
        let DriveState { mounted, counters, alerts } = self;
        let m = ready(mounted)?;
        let end = m.index().data_end();
        let room = m.medium.capacity.saturating_sub(end);
        let fits = (room / record_len as u64).min(count);
        let fits = if fixed { fits } else { fits.min(1) };
        if fits > 0 {
            let data = data_out.slice(..(fits * record_len as u64) as usize);
            m.medium.stream.write_at(end, data).await.map_err(|e| write_failed(alerts, counters, e))?;
            m.medium.index.append_records(record_len, fits).map_err(|_| volume_overflow(count))?;
            m.dirty = true;
            m.pos = m.eod();
            counters.bytes_written += fits * record_len as u64;
        }
        if fits < count {
            // Out of room: fixed writes report the blocks not written,
            // variable ones the bytes of the record not written.
            return Err(volume_overflow(if fixed { (length as u64) - fits } else { length as u64 }));
        }
        if m.index().data_end() > m.early_warning {
            return Err(early_warning());
        }
        Ok(ScsiResponse::good())
    }

    pub async fn write_filemarks(&mut self, count: u32, soft_wp: bool) -> Result<ScsiResponse, Sense> {
        if count == 0 {
            // A flush: make everything written so far durable.
            self.settle().await?;
            return Ok(ScsiResponse::good());
        }
        self.prepare_write(soft_wp).await?;
        let DriveState { mounted, counters, alerts } = self;
        let m = ready(mounted)?;
        m.medium.index.append_filemarks(count as u64).map_err(|_| volume_overflow(count as u64))?;
        m.dirty = true;
        m.pos = m.eod();
        m.commit().await.map_err(|e| write_failed(alerts, counters, e))?;
        if m.index().data_end() > m.early_warning {
            return Err(early_warning());
        }
        Ok(ScsiResponse::good())
    }

    pub async fn space(&mut self, code: SpaceCode, count: i64) -> Result<ScsiResponse, Sense> {
        let m = self.settle().await?;
        let n = count.unsigned_abs();
        match (code, count.signum()) {
            (SpaceCode::EndOfData, _) => m.pos = m.eod(),
            (_, 0) => {}
            (SpaceCode::Blocks, 1) => space_blocks_forward(m, n)?,
            (SpaceCode::Blocks, _) => space_blocks_back(m, n)?,
            (SpaceCode::Filemarks, 1) => space_filemarks_forward(m, n)?,
            (SpaceCode::Filemarks, _) => space_filemarks_back(m, n)?,
        }
        Ok(ScsiResponse::good())
    }

    pub async fn locate(&mut self, target: LocateTarget) -> Result<ScsiResponse, Sense> {
        let m = self.settle().await?;
        let eod = m.eod();
        let wanted = match target {
            LocateTarget::Object(n) => Some(n).filter(|&n| n <= eod),
            LocateTarget::File(0) => Some(0),
            LocateTarget::File(n) => m.index().filemark_position(n - 1).map(|f| f + 1),
            LocateTarget::EndOfData => Some(eod),
        };
        match wanted {
            Some(p) => {
                m.pos = p;
                Ok(ScsiResponse::good())
            }
            None => {
                m.pos = eod;
                Err(sense::END_OF_DATA)
            }
        }
    }

    pub async fn rewind(&mut self) -> Result<ScsiResponse, Sense> {
        self.settle().await?.pos = 0;
        Ok(ScsiResponse::good())
    }

    /// ERASE (short or long) from the position: the rest of the tape goes.
    pub async fn erase(&mut self, soft_wp: bool) -> Result<ScsiResponse, Sense> {
        self.prepare_write(soft_wp).await?;
        self.settle().await?;
        Ok(ScsiResponse::good())
    }

    pub fn position(&mut self) -> Result<Position, Sense> {
        let m = ready(&mut self.mounted)?;
        Ok(Position {
            object: m.pos,
            file: m.index().filemarks_before(m.pos),
            past_early_warning: m.index().offset_of(m.pos) > m.early_warning,
        })
    }
}

/// Forward over `n` blocks; a filemark stops it just past the filemark,
/// end of data stops it there.
fn space_blocks_forward(m: &mut Mounted, n: u64) -> Result<(), Sense> {
    let (p, eod) = (m.pos, m.eod());
    let filemark = m.index().next_filemark(p);
    let available = filemark.unwrap_or(eod) - p;
    if n <= available {
        m.pos = p + n;
        return Ok(());
    }
    match filemark {
        Some(f) => {
            m.pos = f + 1;
            Err(filemark_detected(n - available))
        }
        None => {
            m.pos = eod;
            Err(end_of_data(n - available))
        }
    }
}

/// Back over `n` blocks; a filemark stops it on the filemark's BOP side,
/// beginning of partition at BOP. The residue is positive (SSC-3).
fn space_blocks_back(m: &mut Mounted, n: u64) -> Result<(), Sense> {
    let p = m.pos;
    let filemark = m.index().previous_filemark(p);
    let available = p - filemark.map_or(0, |f| f + 1);
    if n <= available {
        m.pos = p - n;
        return Ok(());
    }
    match filemark {
        Some(f) => {
            m.pos = f;
            Err(filemark_detected(n - available))
        }
        None => {
            m.pos = 0;
            Err(beginning_of_partition(n - available))
        }
    }
}

/// Forward over `n` filemarks, ending just past the last; end of data
/// stops it there with the filemarks not spaced over as the residue.
fn space_filemarks_forward(m: &mut Mounted, n: u64) -> Result<(), Sense> {
    let before = m.index().filemarks_before(m.pos);
    let target = before.checked_add(n - 1).and_then(|k| m.index().filemark_position(k));
    match target {
        Some(f) => {
            m.pos = f + 1;
            Ok(())
        }
        None => {
            m.pos = m.eod();
            Err(end_of_data(n - (m.index().filemark_count() - before)))
        }
    }
}

/// Back over `n` filemarks, ending on the BOP side of the last.
fn space_filemarks_back(m: &mut Mounted, n: u64) -> Result<(), Sense> {
    let before = m.index().filemarks_before(m.pos);
    match before.checked_sub(n).and_then(|k| m.index().filemark_position(k)) {
        Some(f) => {
            m.pos = f;
            Ok(())
        }
        None => {
            m.pos = 0;
            Err(beginning_of_partition(n - before))
        }
    }
}
