//! The SBC-3 disk: a [`LogicalUnit`] over a [`BlockDevice`], thin
//! provisioned (UNMAP, WRITE SAME with UNMAP, GET LBA STATUS), with
//! COMPARE AND WRITE, ORWRITE, WRITE ATOMIC and an EXTENDED COPY manager.
//!
//! Each command is typed by the opcode table, checked against the unit's
//! limits (LBA range, transfer length, write protection) and only then run
//! against the device. Device errors become MEDIUM ERROR sense.
//!
//! A disk whose identity is removable behaves like a removable-cartridge
//! drive (RDX): START STOP UNIT with LOEJ ejects and loads the medium,
//! PREVENT ALLOW MEDIUM REMOVAL locks it in, and while it is out every
//! command that needs it reports MEDIUM NOT PRESENT. With a
//! [`UnitStateStore`] an ejected medium stays out across restarts, and
//! persistent reservations under APTPL survive them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};

use super::block::{BlockDevice, Provisioning};
use super::cdb::{ByteCheck, DiskCommand, SbcCommand};
use super::copy::{CopyManager, CopyTargets};
use super::lu::{
    DataOutChecksums, ItNexus, LogicalUnit, ResetKind, SavedUnitState, ScsiRequest, ScsiResponse, ScsiStatus,
    UnitStateStore,
};
use super::opcodes::{Features, DISK_OPCODES, DISK_SBC};
use super::range_lock::RangeLock;
use super::sense::Sense;
use super::spc::{BlockDescriptor, DeviceIdentity, DeviceType, ModePage, SpcCore, SpcDevice};
use super::types::{BlockCount, Lba};

/// Largest data transfer of one command. Bounds the memory a command can
/// make us allocate.
const MAX_TRANSFER_BYTES: u64 = 8 << 20;
/// Largest COMPARE AND WRITE (the field is one byte).
const MAX_COMPARE_AND_WRITE_BLOCKS: u64 = 255;
/// Largest UNMAP descriptor count, and range per descriptor in bytes.
const MAX_UNMAP_DESCRIPTORS: u32 = 256;
const MAX_UNMAP_BYTES: u64 = 512 << 20;
/// WRITE SAME writes the pattern in chunks of this size.
const WRITE_SAME_CHUNK_BYTES: usize = 1 << 20;
/// GET LBA STATUS returns at most this many descriptors.
const MAX_LBA_STATUS_DESCRIPTORS: u64 = 256;

/// The limits VPD page B0h reports and every command obeys, in blocks.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_transfer: u64,
    max_unmap: u64,
    max_write_same: u64,
    /// WRITE ATOMIC: what the storage writes crash-atomically; 0 for none.
    max_atomic: u64,
}

impl Limits {
    fn for_device(dev: &dyn BlockDevice) -> Limits {
        let bs = dev.block_size().max(1) as u64;
        let max_transfer = MAX_TRANSFER_BYTES / bs;
        Limits {
            max_transfer,
            max_unmap: MAX_UNMAP_BYTES / bs,
            // WRITE SAME without UNMAP writes every block: keep it to what
            // one write command may move. (A larger limit for UNMAP would
            // have initiators, libiscsi among them, size plain writes by it.)
            max_write_same: max_transfer,
            max_atomic: dev.atomic_write_limit().0.min(max_transfer),
        }
    }
}

/// A disk logical unit.
pub struct DiskUnit {
    dev: Arc<dyn BlockDevice>,
    core: SpcCore,
    limits: Limits,
    /// Writers of overlapping ranges run one at a time, so read-modify-write
    /// commands are atomic with respect to every other write.
    writes: RangeLock,
    copies: CopyManager,
    /// Removable units: whether the medium is in. Always true otherwise.
    loaded: AtomicBool,
    /// Where an ejection is saved; none: the medium is in at every start.
    store: Option<Arc<dyn UnitStateStore>>,
    /// Loads and ejections one at a time, so saves land in command order.
    medium_changes: std::sync::Mutex<()>,
}

/// The caching mode page (08h): WCE changeable. With WCE clear every write
/// is forced to stable storage before completion.
const WCE: u8 = 0x04;

fn disk_mode_pages() -> Vec<ModePage> {
    let mut caching = vec![0u8; 20];
    caching[0] = 0x08;
    caching[1] = 0x12;
    caching[2] = WCE;
    let mut caching_mask = vec![0u8; 20];
    caching_mask[0] = 0x08;
    caching_mask[1] = 0x12;
    caching_mask[2] = WCE;
    // Read-write error recovery (01h): AWRE and ARRE, nothing changeable.
    let rw_recovery = vec![0x01, 0x0A, 0xC0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let rw_mask = vec![0x01, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    // Informational exceptions control (1Ch): DEXCPT, we report none.
    let iec = vec![0x1C, 0x0A, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let iec_mask = vec![0x1C, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    vec![ModePage::new(caching, caching_mask), ModePage::new(rw_recovery, rw_mask), ModePage::new(iec, iec_mask)]
}

impl DiskUnit {
    pub fn new(dev: Arc<dyn BlockDevice>, identity: DeviceIdentity) -> DiskUnit {
        let limits = Limits::for_device(dev.as_ref());
        DiskUnit {
            core: SpcCore::new(identity, DeviceType::Disk, disk_mode_pages()),
            limits,
            dev,
            writes: RangeLock::default(),
            copies: CopyManager::default(),
            loaded: AtomicBool::new(true),
            store: None,
            medium_changes: std::sync::Mutex::new(()),
        }
    }

    /// Keeps persistent reservations (under APTPL) and, for a removable
    /// unit, an ejected medium in `store`, starting from what it `saved`.
    pub fn with_state_store(mut self, store: Arc<dyn UnitStateStore>, saved: SavedUnitState) -> DiskUnit {
        self.core.persist_reservations(store.clone(), saved.reservations);
        if self.core.identity().removable && saved.medium_ejected {
            self.loaded.store(false, Ordering::SeqCst);
        }
        self.store = Some(store);
        self
    }

    /// The device grew or shrank: every nexus learns it through CAPACITY
    /// DATA CHANGED before its next command.
    pub fn capacity_changed(&self) {
        self.core.broadcast_unit_attention(Sense::CAPACITY_DATA_CHANGED);
    }

    /// EXTENDED COPY may name the other logical units `targets` resolves.
    pub fn with_copy_targets(mut self, targets: Arc<dyn CopyTargets>) -> DiskUnit {
        self.copies = CopyManager::with_targets(targets);
        self
    }

    pub fn identity(&self) -> &DeviceIdentity {
        self.core.identity()
    }

    pub(crate) fn block_size(&self) -> u32 {
        self.dev.block_size()
    }

    /// LBA OUT OF RANGE unless `lba..lba+count` lies on the medium.
    pub(crate) fn check_range(&self, lba: Lba, count: BlockCount) -> Result<(), Sense> {
        match lba.0.checked_add(count.0) {
            Some(end) if end <= self.dev.num_blocks() => Ok(()),
            _ => Err(Sense::LBA_OUT_OF_RANGE),
        }
    }

    /// Range, then transfer length (field `len_byte` of the CDB).
    fn check_transfer(&self, lba: Lba, count: BlockCount, len_byte: u16) -> Result<(), Sense> {
        self.check_range(lba, count)?;
        if count.0 > self.limits.max_transfer {
            return Err(Sense::invalid_cdb_field(len_byte, None));
        }
        Ok(())
    }

    pub(crate) fn writable(&self) -> Result<(), Sense> {
        if self.core.write_protected() {
            return Err(Sense::WRITE_PROTECTED);
        }
        Ok(())
    }

    /// The blocks a WRITE carries: with an iSCSI expected length below the
    /// CDB's, only the whole blocks sent are written and the transport
    /// reports the overflow residual (FCP-4 9.4.2 a); data past the CDB's
    /// length is ignored.
    fn write_data(&self, req: &ScsiRequest, blocks: u64) -> Bytes {
        let bs = self.dev.block_size() as u64;
        let sent = req.data_out.len() as u64 / bs;
        req.data_out.slice(..(blocks.min(sent) * bs) as usize)
    }

    /// Exactly `blocks` blocks of data-out, for commands that cannot run on
    /// part of their data (compare, OR).
    fn data_out(&self, req: &ScsiRequest, blocks: u64) -> Result<Bytes, Sense> {
        let len = blocks * self.dev.block_size() as u64;
        if (req.data_out.len() as u64) < len {
            return Err(Sense::INVALID_FIELD_IN_INFORMATION_UNIT);
        }
        Ok(req.data_out.slice(..len as usize))
    }

    /// Without write caching every write goes to stable storage.
    fn force_unit_access(&self, fua: bool) -> bool {
        fua || !self.core.mode_bit(0x08, 2, WCE)
    }

    pub(crate) async fn read_blocks(&self, lba: Lba, count: BlockCount) -> Result<Bytes, Sense> {
        if count.0 == 0 {
            return Ok(Bytes::new());
        }
        self.dev.read(lba, count).await.map_err(|e| {
            tracing::warn!(lba = lba.0, count = count.0, error = %e, "read failed");
            if backend_unreachable(&e) {
                Sense::LOGICAL_UNIT_COMMUNICATION_FAILURE
            } else {
                Sense::UNRECOVERED_READ_ERROR.with_info(lba.0)
            }
        })
    }

    /// Write under the range lock (callers that read-modify-write hold it
    /// already and use [`write_locked`](Self::write_locked)). `checksums`,
    /// if the transport computed them, are of the data-out that `data` is a
    /// prefix of.
    pub(crate) async fn write_blocks(&self, lba: Lba, data: Bytes, fua: bool, checksums: Option<&DataOutChecksums>) -> Result<(), Sense> {
        let count = BlockCount(data.len() as u64 / self.dev.block_size() as u64);
        let _guard = self.writes.lock(lba, count).await;
        self.write_locked(lba, data, fua, checksums).await
    }

    async fn write_locked(&self, lba: Lba, data: Bytes, fua: bool, sums: Option<&DataOutChecksums>) -> Result<(), Sense> {
        if data.is_empty() {
            return Ok(());
        }
        let fua = self.force_unit_access(fua);
        let written = match sums {
            Some(sums) => self.dev.write_checksummed(lba, data, fua, sums).await,
            None => self.dev.write(lba, data, fua).await,
        };
        written.map_err(|e| {
            tracing::warn!(lba = lba.0, error = %e, "write failed");
            write_failure(&e).with_info(lba.0)
        })
    }

    async fn run(&self, req: &ScsiRequest, cmd: SbcCommand) -> Result<ScsiResponse, Sense> {
        match cmd {
            SbcCommand::Read { lba, count, .. } => {
                self.check_transfer(lba, count, transfer_length_byte(&req.cdb))?;
                Ok(ScsiResponse::data(self.read_blocks(lba, count).await?))
            }
            SbcCommand::Write { lba, count, fua, .. } => {
                self.writable()?;
                self.check_transfer(lba, count, transfer_length_byte(&req.cdb))?;
                self.write_blocks(lba, self.write_data(req, count.0), fua, req.data_out_checksums.as_deref()).await?;
                Ok(ScsiResponse::good())
            }
            SbcCommand::WriteAndVerify { lba, count, .. } => {
                self.writable()?;
                self.check_transfer(lba, count, transfer_length_byte(&req.cdb))?;
                // Verification means the data is on stable storage.
                self.write_blocks(lba, self.write_data(req, count.0), true, None).await?;
                Ok(ScsiResponse::good())
            }
            SbcCommand::Verify { lba, count, bytchk, .. } => self.verify(req, lba, count, bytchk).await,
            SbcCommand::WriteAtomic { lba, count, .. } => {
                self.writable()?;
                self.check_range(lba, count)?;
                if count.0 > self.limits.max_atomic {
                    return Err(Sense::invalid_cdb_field(12, None));
                }
                let data = self.data_out(req, count.0)?;
                if data.is_empty() {
                    return Ok(ScsiResponse::good());
                }
                // Atomic against concurrent commands by the range lock, and
                // against crashes by the device; always durable, so FUA holds.
                let _guard = self.writes.lock(lba, count).await;
                self.dev.write_atomic(lba, data).await.map_err(|e| {
                    tracing::warn!(lba = lba.0, error = %e, "atomic write failed");
                    write_failure(&e).with_info(lba.0)
                })?;
                Ok(ScsiResponse::good())
            }
            SbcCommand::OrWrite { lba, count, fua, .. } => {
                self.writable()?;
                self.check_transfer(lba, count, 10)?;
                let data = self.data_out(req, count.0)?;
                let _guard = self.writes.lock(lba, count).await;
                let old = self.read_blocks(lba, count).await?;
                let merged: Vec<u8> = old.iter().zip(data.iter()).map(|(a, b)| a | b).collect();
                self.write_locked(lba, merged.into(), fua, None).await?;
                Ok(ScsiResponse::good())
            }
            SbcCommand::CompareAndWrite { lba, count, fua, .. } => self.compare_and_write(req, lba, count, fua).await,
            SbcCommand::WriteSame { lba, count, unmap, ndob } => self.write_same(req, lba, count, unmap, ndob).await,
            SbcCommand::Unmap { param_len } => self.unmap(req, param_len).await,
            SbcCommand::SynchronizeCache { lba, count } => {
                self.check_range(lba, count)?;
                self.dev.flush().await.map_err(|e| {
                    tracing::warn!(error = %e, "flush failed");
                    write_failure(&e)
                })?;
                Ok(ScsiResponse::good())
            }
            SbcCommand::PreFetch { lba, count } => {
                self.check_range(lba, count)?;
                // The blocks are as close to the initiator as they get.
                Ok(ScsiResponse::status(ScsiStatus::ConditionMet))
            }
            SbcCommand::ReadCapacity10 => {
                let mut b = BytesMut::with_capacity(8);
                let last = self.dev.num_blocks().saturating_sub(1);
                b.put_u32(last.min(u32::MAX as u64) as u32);
                b.put_u32(self.dev.block_size());
                Ok(ScsiResponse::data(b.freeze()))
            }
            SbcCommand::ReadCapacity16 { .. } => Ok(ScsiResponse::data(self.read_capacity16())),
            SbcCommand::GetLbaStatus { lba, alloc } => self.get_lba_status(lba, alloc).await,
            SbcCommand::StartStopUnit { start, loej, power_condition } => {
                self.start_stop_unit(start, loej, power_condition)
            }
            SbcCommand::ReadDefectData { twelve, req_plist, req_glist, format, .. } => {
                // No defects: both lists are valid and empty.
                let flags = (req_plist as u8) << 4 | (req_glist as u8) << 3 | format;
                let mut b = BytesMut::new();
                b.put_u8(0);
                b.put_u8(flags);
                if twelve {
                    b.put_u16(0);
                    b.put_u32(0);
                } else {
                    b.put_u16(0);
                }
                Ok(ScsiResponse::data(b.freeze()))
            }
        }
    }

    /// A virtual disk has no spindle: starting, stopping and power
    /// conditions change nothing, and the unit stays ready. Only LOEJ acts,
    /// on removable units, unless an application prevents removal: then
    /// the medium stays as it is, loaded or not (SBC-3 5.25).
    fn start_stop_unit(&self, start: bool, loej: bool, power_condition: u8) -> Result<ScsiResponse, Sense> {
        if power_condition != 0 || !loej {
            return Ok(ScsiResponse::good());
        }
        if !self.core.identity().removable {
            return Err(Sense::invalid_cdb_field(4, Some(1)));
        }
        if self.core.removal_prevented() {
            return Err(Sense::MEDIUM_REMOVAL_PREVENTED);
        }
        let _change = self.medium_changes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(store) = &self.store {
            store.save_medium_ejected(!start).map_err(|e| {
                tracing::warn!(error = %e, "cannot save the medium state");
                Sense::INTERNAL_TARGET_FAILURE
            })?;
        }
        // No unit attention: the medium that comes back is the same volume,
        // and the nexus that loaded it knows.
        self.loaded.store(start, Ordering::SeqCst);
        Ok(ScsiResponse::good())
    }

    /// Whether a command needs the medium in: TEST UNIT READY and the
    /// disk's own commands, except loading and the copy manager's.
    fn needs_medium(opcode: u8) -> bool {
        opcode == 0x00 || (DISK_SBC.iter().any(|d| d.opcode == opcode) && !matches!(opcode, 0x1B | 0x83 | 0x84))
    }

    async fn verify(
        &self,
        req: &ScsiRequest,
        lba: Lba,
        count: BlockCount,
        bytchk: ByteCheck,
    ) -> Result<ScsiResponse, Sense> {
        self.check_transfer(lba, count, transfer_length_byte(&req.cdb))?;
        let on_medium = self.read_blocks(lba, count).await?;
        let expected = match bytchk {
            ByteCheck::None => return Ok(ScsiResponse::good()),
            ByteCheck::Compare => self.data_out(req, count.0)?,
            ByteCheck::CompareOneBlock => {
                let block = self.data_out(req, 1.min(count.0))?;
                Bytes::from(block.repeat(count.0 as usize))
            }
        };
        if let Some(offset) = first_difference(&on_medium, &expected) {
            return Err(Sense::miscompare_at(offset as u64));
        }
        Ok(ScsiResponse::good())
    }

    async fn compare_and_write(
        &self,
        req: &ScsiRequest,
        lba: Lba,
        count: BlockCount,
        fua: bool,
    ) -> Result<ScsiResponse, Sense> {
        self.writable()?;
        self.check_range(lba, count)?;
        if count.0 > MAX_COMPARE_AND_WRITE_BLOCKS.min(self.limits.max_transfer) {
            return Err(Sense::invalid_cdb_field(13, None));
        }
        // The data-out must be exactly the verify and write data: a mismatch
        // (a 256-block request wrapped to 0 in the one-byte field, say) is
        // refused rather than guessed at.
        let bytes = 2 * count.0 * self.dev.block_size() as u64;
        if req.data_out.len() as u64 != bytes {
            return Err(Sense::invalid_cdb_field(13, None));
        }
        if count.0 == 0 {
            return Ok(ScsiResponse::good());
        }
        let both = req.data_out.clone();
        let half = both.len() / 2;
        let (verify, write) = (both.slice(..half), both.slice(half..));
        let _guard = self.writes.lock(lba, count).await;
        let current = self.read_blocks(lba, count).await?;
        if let Some(offset) = first_difference(&current, &verify) {
            return Err(Sense::miscompare_at(offset as u64));
        }
        self.write_locked(lba, write, fua, None).await?;
        Ok(ScsiResponse::good())
    }

    async fn write_same(
        &self,
        req: &ScsiRequest,
        lba: Lba,
        count: BlockCount,
        unmap: bool,
        ndob: bool,
    ) -> Result<ScsiResponse, Sense> {
        self.writable()?;
        // Zero blocks means "to the end of the medium" (WSNZ is 0).
        let count = if count.0 == 0 { BlockCount(self.dev.num_blocks().saturating_sub(lba.0)) } else { count };
        self.check_range(lba, count)?;
        let bs = self.dev.block_size() as usize;
        // Exactly one block of data-out, or none with NDOB.
        let expected = if ndob { 0 } else { bs };
        if req.data_out.len() != expected {
            return Err(Sense::INVALID_FIELD_IN_INFORMATION_UNIT);
        }
        if count.0 > self.limits.max_write_same {
            return Err(Sense::invalid_cdb_field(transfer_length_byte(&req.cdb), None));
        }
        if unmap {
            // SBC-3: with UNMAP set the blocks are deallocated; they then
            // read back as zeros (LBPRZ).
            let _guard = self.writes.lock(lba, count).await;
            self.unmap_range(lba, count).await?;
            return Ok(ScsiResponse::good());
        }
        let block = if ndob { Bytes::from(vec![0u8; bs]) } else { req.data_out.clone() };
        if count.0 == 0 {
            return Ok(ScsiResponse::good());
        }
        let _guard = self.writes.lock(lba, count).await;
        let per_chunk = (WRITE_SAME_CHUNK_BYTES / bs).max(1) as u64;
        let pattern = Bytes::from(block.repeat(per_chunk.min(count.0) as usize));
        let mut at = lba.0;
        let end = lba.0 + count.0;
        while at < end {
            let n = per_chunk.min(end - at);
            self.write_locked(Lba(at), pattern.slice(..n as usize * bs), false, None).await?;
            at += n;
        }
        Ok(ScsiResponse::good())
    }

    async fn unmap_range(&self, lba: Lba, count: BlockCount) -> Result<(), Sense> {
        self.dev.unmap(lba, count).await.map_err(|e| {
            tracing::warn!(lba = lba.0, count = count.0, error = %e, "unmap failed");
            write_failure(&e).with_info(lba.0)
        })
    }

    /// UNMAP: the whole parameter list is validated before anything is
    /// deallocated.
    async fn unmap(&self, req: &ScsiRequest, param_len: u16) -> Result<ScsiResponse, Sense> {
        self.writable()?;
        if param_len == 0 {
            return Ok(ScsiResponse::good());
        }
        if param_len < 8 {
            return Err(Sense::PARAMETER_LIST_LENGTH_ERROR);
        }
        let list = req.data_out.get(..param_len as usize).ok_or(Sense::PARAMETER_LIST_LENGTH_ERROR)?;
        let descriptor_bytes = u16::from_be_bytes([list[2], list[3]]) as usize;
        // A trailing partial descriptor is ignored (SBC-3 5.28.2).
        let descriptors: Vec<(Lba, BlockCount)> = list
            .get(8..8 + descriptor_bytes.min(list.len() - 8))
            .unwrap_or(&[])
            .chunks_exact(16)
            .map(|d| {
                let lba = u64::from_be_bytes(d[..8].try_into().unwrap_or([0; 8]));
                let count = u32::from_be_bytes(d[8..12].try_into().unwrap_or([0; 4]));
                (Lba(lba), BlockCount(count as u64))
            })
            .collect();
        if descriptors.len() > MAX_UNMAP_DESCRIPTORS as usize {
            return Err(Sense::invalid_param_field(2, None));
        }
        for (i, &(lba, count)) in descriptors.iter().enumerate() {
            self.check_range(lba, count)?;
            if count.0 > self.limits.max_unmap {
                return Err(Sense::invalid_param_field((8 + 16 * i + 8) as u16, None));
            }
        }
        for (lba, count) in descriptors.into_iter().filter(|(_, c)| c.0 > 0) {
            let _guard = self.writes.lock(lba, count).await;
            self.unmap_range(lba, count).await?;
        }
        Ok(ScsiResponse::good())
    }

    fn read_capacity16(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(32);
        b.put_u64(self.dev.num_blocks().saturating_sub(1));
        b.put_u32(self.dev.block_size());
        b.put_u8(0); // no protection information
        b.put_u8(self.dev.physical_block_exponent() & 0x0F);
        // LBPME and LBPRZ; lowest aligned LBA 0.
        b.put_u8(0x80 | 0x40);
        b.put_u8(0);
        b.put_bytes(0, 16);
        b.freeze()
    }

    async fn get_lba_status(&self, lba: Lba, alloc: u32) -> Result<ScsiResponse, Sense> {
        let n = self.dev.num_blocks();
        if lba.0 >= n {
            return Err(Sense::LBA_OUT_OF_RANGE);
        }
        let wanted = (alloc.saturating_sub(8) as u64 / 16).clamp(1, MAX_LBA_STATUS_DESCRIPTORS);
        let mut descriptors = BytesMut::new();
        let mut at = lba.0;
        for _ in 0..wanted {
            if at >= n {
                break;
            }
            // A descriptor's length field is 32 bits.
            let max = BlockCount((n - at).min(u32::MAX as u64));
            let (state, run) = self.dev.provisioning(Lba(at), max).await.map_err(|e| {
                tracing::warn!(lba = at, error = %e, "provisioning query failed");
                Sense::UNRECOVERED_READ_ERROR.with_info(at)
            })?;
            let run = run.0.clamp(1, max.0);
            descriptors.put_u64(at);
            descriptors.put_u32(run as u32);
            descriptors.put_u8(match state {
                Provisioning::Mapped => 0,
                Provisioning::Deallocated => 1,
            });
            descriptors.put_bytes(0, 3);
            at += run;
        }
        let mut b = BytesMut::with_capacity(8 + descriptors.len());
        b.put_u32(4 + descriptors.len() as u32);
        b.put_u32(0);
        b.put_slice(&descriptors);
        Ok(ScsiResponse::data(b.freeze()))
    }

    /// VPD B0h: block limits (SBC-3 6.5.3).
    fn block_limits(&self) -> BytesMut {
        let gran = 1u32 << self.dev.physical_block_exponent().min(7);
        let mut b = BytesMut::with_capacity(60);
        b.put_u8(0); // WSNZ 0: WRITE SAME of zero blocks means to the end
        b.put_u8(MAX_COMPARE_AND_WRITE_BLOCKS as u8);
        b.put_u16(gran as u16);
        b.put_u32(self.limits.max_transfer as u32);
        b.put_u32(self.limits.max_transfer as u32);
        b.put_u32(self.limits.max_transfer as u32); // maximum prefetch length
        b.put_u32(self.limits.max_unmap as u32);
        b.put_u32(MAX_UNMAP_DESCRIPTORS);
        b.put_u32(gran); // optimal unmap granularity
        b.put_u32(0x8000_0000); // UGAVALID, alignment 0
        b.put_u64(self.limits.max_write_same);
        b.put_u32(self.limits.max_atomic as u32);
        // Atomic alignment and granularity: none beyond the length limit.
        b.put_u32(0);
        b.put_u32(0);
        b.put_u32(0);
        b.put_u32(0);
        b
    }
}

/// Byte of the CDB where the transfer length starts (for field pointers).
fn transfer_length_byte(cdb: &[u8]) -> u16 {
    match cdb.first().map(|op| op >> 5) {
        Some(0) => 4,
        Some(4) => 10,
        Some(5) => 6,
        _ => 7,
    }
}

/// The sense for a device's failed write, flush or unmap. Out of space
/// (ENOSPC, EDQUOT) on this thin-provisioned unit is SPACE ALLOCATION FAILED
/// WRITE PROTECT (SBC-3 4.7.3.6), which initiators act on: Linux fails the
/// I/O with ENOSPC rather than EIO, ESXi pauses the VM until space returns.
/// A backend out of reach is ABORTED COMMAND (see [`backend_unreachable`]).
/// Anything else is MEDIUM ERROR, WRITE ERROR.
fn write_failure(e: &std::io::Error) -> Sense {
    match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => Sense::SPACE_ALLOCATION_FAILED_WRITE_PROTECT,
        _ if backend_unreachable(e) => Sense::LOGICAL_UNIT_COMMUNICATION_FAILURE,
        _ => Sense::WRITE_ERROR,
    }
}

/// Whether the device failed because what backs it (a network store) is
/// out of reach for now, rather than because the data is bad. Such
/// commands end with ABORTED COMMAND, LOGICAL UNIT COMMUNICATION FAILURE,
/// which initiators retry (Linux up to five times), where MEDIUM ERROR
/// fails the I/O at once.
fn backend_unreachable(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), TimedOut | ConnectionRefused | ConnectionReset | ConnectionAborted | NotConnected)
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

impl SpcDevice for DiskUnit {
    fn version_descriptors(&self) -> &'static [u16] {
        &[0x04C0] // SBC-3
    }

    fn inquiry_byte5(&self) -> u8 {
        0x08 // 3PC: EXTENDED COPY
    }

    fn vpd_pages(&self) -> &'static [u8] {
        &[0xB0, 0xB1, 0xB2]
    }

    fn vpd_page(&self, page: u8) -> Option<BytesMut> {
        match page {
            0xB0 => Some(self.block_limits()),
            0xB1 => {
                // Non-rotating medium, form factor not reported.
                let mut b = BytesMut::with_capacity(60);
                b.put_u16(0x0001);
                b.put_bytes(0, 58);
                Some(b)
            }
            0xB2 => {
                // Threshold exponent 0; LBPU, LBPWS, LBPWS10, LBPRZ; no
                // anchors; provisioning type 010b (thin).
                Some(BytesMut::from(&[0x00, 0x80 | 0x40 | 0x20 | 0x04, 0x00, 0x02][..]))
            }
            _ => None,
        }
    }

    fn mode_device_specific(&self) -> u8 {
        0x10 // DPOFUA
    }

    fn block_descriptor(&self) -> Option<BlockDescriptor> {
        Some(BlockDescriptor { density: 0, blocks: self.dev.num_blocks(), block_len: self.dev.block_size() })
    }

    fn features(&self) -> Features {
        Features { atomic_write: self.limits.max_atomic > 0, removable_medium: self.core.identity().removable }
    }
}

#[async_trait]
impl LogicalUnit for DiskUnit {
    async fn execute(&self, req: ScsiRequest) -> ScsiResponse {
        let opcode = req.cdb.first().copied().unwrap_or(0xFF);
        if !self.loaded.load(Ordering::SeqCst) && Self::needs_medium(opcode) {
            // Ahead of the CDB's own checks: without a medium nothing about
            // the command can be judged. A unit attention still comes first.
            let sense = self.core.take_unit_attention(&req.nexus, opcode).unwrap_or(Sense::MEDIUM_NOT_PRESENT);
            return ScsiResponse::check(sense);
        }
        let (desc, cmd) = match self.core.admit(&req, &DISK_OPCODES, self.features()) {
            Ok(admitted) => admitted,
            Err(resp) => return resp,
        };
        let alloc = cmd.allocation_length();
        let data_out_len = cmd.data_out_length(self.dev.block_size());
        let result = match cmd {
            DiskCommand::Spc(c) => Ok(self.core.execute(self, &req, c, &DISK_OPCODES)),
            DiskCommand::Sbc(c) => self.run(&req, c).await,
            DiskCommand::Copy(c) => self.copies.execute(self, &req, c).await,
        };
        SpcCore::finish(desc.name, result.unwrap_or_else(ScsiResponse::check), alloc, data_out_len)
    }

    fn reset(&self, kind: ResetKind, _by: &ItNexus) {
        self.core.reset(kind);
    }

    fn tasks_aborted(&self, by: &ItNexus, all_nexuses: bool) {
        self.core.tasks_aborted(by, all_nexuses);
    }

    fn nexus_lost(&self, nexus: &ItNexus) {
        self.core.nexus_lost(nexus);
        self.copies.nexus_lost(nexus);
    }

    /// WRITE (6, 10, 12, 16), whose data goes to the device as it came.
    fn data_out_checksum_granule(&self, cdb: &[u8]) -> Option<u32> {
        match cdb.first() {
            Some(0x0A | 0x2A | 0xAA | 0x8A) => self.dev.checksum_granule(),
            _ => None,
        }
    }
}

#[cfg(test)]
#[path = "sbc_tests.rs"]
mod tests;
