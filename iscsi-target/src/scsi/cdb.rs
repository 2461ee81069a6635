//! Pure CDB parsing: bytes in, a typed command or sense out.
//!
//! Parsers run only after [`opcodes`](super::opcodes) has matched the
//! operation code (and service action), checked the CDB length and rejected
//! every bit the table's usage data marks as unsupported. They therefore
//! check values, not reserved bits. Every field access goes through [`Cdb`],
//! which reads zeros past the end instead of panicking.

use super::sense::Sense;
use super::types::{BlockCount, Lba};

/// Bounds-checked big-endian field access over a CDB.
#[derive(Debug, Clone, Copy)]
pub struct Cdb<'a>(pub &'a [u8]);

impl Cdb<'_> {
    pub fn byte(&self, i: usize) -> u8 {
        self.0.get(i).copied().unwrap_or(0)
    }

    pub fn bit(&self, i: usize, bit: u8) -> bool {
        self.byte(i) >> bit & 1 == 1
    }

    /// `len` bytes (at most 8) at `start`, big-endian.
    pub fn be(&self, start: usize, len: usize) -> u64 {
        (start..start + len).fold(0u64, |acc, i| acc << 8 | self.byte(i) as u64)
    }

    pub fn opcode(&self) -> u8 {
        self.byte(0)
    }

    /// The 5-bit service action of byte 1.
    pub fn service_action(&self) -> u16 {
        (self.byte(1) & 0x1F) as u16
    }
}

/// MODE SENSE page control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageControl {
    Current,
    Changeable,
    Default,
    Saved,
}

/// PERSISTENT RESERVE IN service actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrInAction {
    ReadKeys,
    ReadReservation,
    ReportCapabilities,
    ReadFullStatus,
}

/// PERSISTENT RESERVE OUT service actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrOutAction {
    Register,
    Reserve,
    Release,
    Clear,
    Preempt,
    PreemptAndAbort,
    RegisterAndIgnoreExistingKey,
    RegisterAndMove,
}

/// RECEIVE COPY RESULTS service actions we implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyResultsAction {
    CopyStatus,
    OperatingParameters,
}

/// REPORT SUPPORTED OPERATION CODES reporting options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportingOptions {
    /// 000b: every command.
    All,
    /// 001b: one opcode that has no service actions.
    Opcode,
    /// 010b: one opcode and service action.
    OpcodeAndServiceAction,
    /// 011b: one opcode, with the service action if it has them.
    OpcodeOptionalServiceAction,
}

/// Commands every device type shares (SPC-4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpcCommand {
    TestUnitReady,
    Inquiry {
        evpd: bool,
        page: u8,
        alloc: u16,
    },
    RequestSense {
        desc: bool,
        alloc: u8,
    },
    ReportLuns {
        select: u8,
        alloc: u32,
    },
    ModeSense {
        ten: bool,
        dbd: bool,
        llbaa: bool,
        pc: PageControl,
        page: u8,
        subpage: u8,
        alloc: u16,
    },
    ModeSelect {
        ten: bool,
        pf: bool,
        param_len: u16,
    },
    Reserve,
    Release,
    PersistentReserveIn {
        action: PrInAction,
        alloc: u16,
    },
    /// `scope_type` is the raw byte 2; its meaning depends on the action.
    PersistentReserveOut {
        action: PrOutAction,
        scope_type: u8,
        param_len: u32,
    },
    ReportSupportedOpcodes {
        rctd: bool,
        options: ReportingOptions,
        opcode: u8,
        sa: u16,
        alloc: u32,
    },
    /// Removable media only: while any I_T nexus prevents removal, the
    /// medium stays in (SPC-4 6.13, SBC-3 5.13, SSC-3, SMC-3).
    PreventAllowMediumRemoval {
        prevent: bool,
    },
}

/// Third-party copy commands (SPC-4 6.4, 6.27), run by a device's copy
/// manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyCommand {
    ExtendedCopy { param_len: u32 },
    ReceiveCopyResults { action: CopyResultsAction, list_id: u8, alloc: u32 },
}

/// VERIFY byte-check modes (SBC-3 BYTCHK).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteCheck {
    /// 00b: medium verification only; no data-out.
    None,
    /// 01b: compare every block with the data-out.
    Compare,
    /// 11b: compare every block with the single data-out block.
    CompareOneBlock,
}

/// SBC-3 disk commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SbcCommand {
    Read { lba: Lba, count: BlockCount, dpo: bool, fua: bool },
    Write { lba: Lba, count: BlockCount, dpo: bool, fua: bool },
    WriteAndVerify { lba: Lba, count: BlockCount, dpo: bool, bytchk: bool },
    Verify { lba: Lba, count: BlockCount, dpo: bool, bytchk: ByteCheck },
    WriteAtomic { lba: Lba, count: BlockCount, dpo: bool, fua: bool },
    OrWrite { lba: Lba, count: BlockCount, dpo: bool, fua: bool },
    CompareAndWrite { lba: Lba, count: BlockCount, dpo: bool, fua: bool },
    WriteSame { lba: Lba, count: BlockCount, unmap: bool, ndob: bool },
    Unmap { param_len: u16 },
    SynchronizeCache { lba: Lba, count: BlockCount },
    PreFetch { lba: Lba, count: BlockCount },
    ReadCapacity10,
    ReadCapacity16 { alloc: u32 },
    GetLbaStatus { lba: Lba, alloc: u32 },
    /// `loej`: load (with `start`) or eject the medium; only when
    /// `power_condition` is 0 (SBC-3 5.25).
    StartStopUnit { start: bool, loej: bool, power_condition: u8 },
    ReadDefectData { twelve: bool, req_plist: bool, req_glist: bool, format: u8, alloc: u32 },
}

/// Everything a disk logical unit understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskCommand {
    Spc(SpcCommand),
    Sbc(SbcCommand),
    Copy(CopyCommand),
}

impl From<SpcCommand> for DiskCommand {
    fn from(c: SpcCommand) -> Self {
        DiskCommand::Spc(c)
    }
}

impl From<SbcCommand> for DiskCommand {
    fn from(c: SbcCommand) -> Self {
        DiskCommand::Sbc(c)
    }
}

impl SpcCommand {
    /// The ALLOCATION LENGTH of commands that return parameter data.
    pub fn allocation_length(&self) -> Option<u32> {
        match *self {
            SpcCommand::Inquiry { alloc, .. } => Some(alloc as u32),
            SpcCommand::RequestSense { alloc, .. } => Some(alloc as u32),
            SpcCommand::ReportLuns { alloc, .. } => Some(alloc),
            SpcCommand::ModeSense { alloc, .. } => Some(alloc as u32),
            SpcCommand::PersistentReserveIn { alloc, .. } => Some(alloc as u32),
            SpcCommand::ReportSupportedOpcodes { alloc, .. } => Some(alloc),
            _ => None,
        }
    }

    /// The data-out length the CDB calls for, for commands that take one.
    pub fn data_out_length(&self) -> Option<u64> {
        match *self {
            SpcCommand::ModeSelect { param_len, .. } => Some(param_len as u64),
            SpcCommand::PersistentReserveOut { param_len, .. } => Some(param_len as u64),
            _ => None,
        }
    }
}

impl DiskCommand {
    /// The ALLOCATION LENGTH of commands that return parameter data.
    pub fn allocation_length(&self) -> Option<u32> {
        match self {
            DiskCommand::Spc(c) => c.allocation_length(),
            DiskCommand::Sbc(SbcCommand::ReadCapacity16 { alloc })
            | DiskCommand::Sbc(SbcCommand::GetLbaStatus { alloc, .. })
            | DiskCommand::Sbc(SbcCommand::ReadDefectData { alloc, .. })
            | DiskCommand::Copy(CopyCommand::ReceiveCopyResults { alloc, .. }) => Some(*alloc),
            _ => None,
        }
    }

    /// The data-out length the CDB calls for, for commands that take one;
    /// the transport reports the initiator's difference as a residual.
    pub fn data_out_length(&self, block_size: u32) -> Option<u64> {
        let blocks = |c: BlockCount| c.0.saturating_mul(block_size as u64);
        match self {
            DiskCommand::Spc(c) => c.data_out_length(),
            DiskCommand::Sbc(c) => match *c {
                SbcCommand::Write { count, .. }
                | SbcCommand::WriteAndVerify { count, .. }
                | SbcCommand::WriteAtomic { count, .. }
                | SbcCommand::OrWrite { count, .. }
                | SbcCommand::Verify { count, bytchk: ByteCheck::Compare, .. } => Some(blocks(count)),
                SbcCommand::Verify { count, bytchk: ByteCheck::CompareOneBlock, .. } => {
                    Some(blocks(BlockCount(count.0.min(1))))
                }
                SbcCommand::CompareAndWrite { count, .. } => Some(2 * blocks(count)),
                SbcCommand::WriteSame { ndob, .. } => Some(if ndob { 0 } else { block_size as u64 }),
                SbcCommand::Unmap { param_len } => Some(param_len as u64),
                _ => None,
            },
            DiskCommand::Copy(CopyCommand::ExtendedCopy { param_len }) => Some(*param_len as u64),
            DiskCommand::Copy(_) => None,
        }
    }
}

/// The signature every parser in the opcode table has.
pub type Parser<C> = fn(Cdb<'_>) -> Result<C, Sense>;

// ---- SPC parsers (generic so every device type's table can use them) ----

pub fn test_unit_ready<C: From<SpcCommand>>(_: Cdb<'_>) -> Result<C, Sense> {
    Ok(SpcCommand::TestUnitReady.into())
}

pub fn inquiry<C: From<SpcCommand>>(c: Cdb<'_>) -> Result<C, Sense> {
    let evpd = c.bit(1, 0);
    let page = c.byte(2);
    if !evpd && page != 0 {
        return Err(Sense::invalid_cdb_field(2, None));
    }
    Ok(SpcCommand::Inquiry { evpd, page, alloc: c.be(3, 2) as u16 }.into())
}

pub fn request_sense<C: From<SpcCommand>>(c: Cdb<'_>) -> Result<C, Sense> {
    Ok(SpcCommand::RequestSense { desc: c.bit(1, 0), alloc: c.byte(4) }.into())
}

pub fn report_luns<C: From<SpcCommand>>(c: Cdb<'_>) -> Result<C, Sense> {
    let select = c.byte(2);
    if select > 2 {
        return Err(Sense::invalid_cdb_field(2, None));
    }
    let alloc = c.be(6, 4) as u32;
    // SPC-4: an allocation length under 16 is an invalid field.
    if alloc < 16 {
        return Err(Sense::invalid_cdb_field(6, None));
    }
    Ok(SpcCommand::ReportLuns { select, alloc }.into())
}

fn page_control(byte: u8) -> PageControl {
    match byte >> 6 {
        0 => PageControl::Current,
        1 => PageControl::Changeable,
        2 => PageControl::Default,
        _ => PageControl::Saved,
    }
}

pub fn mode_sense6<C: From<SpcCommand>>(c: Cdb<'_>) -> Result<C, Sense> {
    Ok(SpcCommand::ModeSense {
        ten: false,
        dbd: c.bit(1, 3),
        llbaa: false,
        pc: page_control(c.byte(2)),
        page: c.byte(2) & 0x3F,
        subpage: c.byte(3),
        alloc: c.byte(4) as u16,
    }
    .into())
}

pub fn mode_sense10<C: From<SpcCommand>>(c: Cdb<'_>) -> Result<C, Sense> {
    Ok(SpcCommand::ModeSense {
        ten: true,
        dbd: c.bit(1, 3),
        llbaa: c.bit(1, 4),
        pc: page_control(c.byte(2)),
        page: c.byte(2) & 0x3F,
        subpage: c.byte(3),
        alloc: c.be(7, 2) as u16,
    }
    .into())
}

/// SP (save pages) is accepted by the usage mask so that it can be refused
/// with the specific field pointer: nothing is saved across power loss.
fn reject_save_pages(c: Cdb<'_>) -> Result<(), Sense> {
    if c.bit(1, 0) {
        return Err(Sense::invalid_cdb_field(1, Some(0)));
    }
    Ok(())
}

pub fn mode_select6<C: From<SpcCommand>>(c: Cdb<'_>) -> Result<C, Sense> {
    reject_save_pages(c)?;
    Ok(SpcCommand::ModeSelect { ten: false, pf: c.bit(1, 4), param_len: c.byte(4) as u16 }.into())
}

pub fn mode_select10<C: From<SpcCommand>>(c: Cdb<'_>) -> Result<C, Sense> {
    reject_save_pages(c)?;
    Ok(SpcCommand::ModeSelect { ten: true, pf: c.bit(1, 4), param_len: c.be(7, 2) as u16 }.into())
}

pub fn reserve<C: From<SpcCommand>>(_: Cdb<'_>) -> Result<C, Sense> {
    Ok(SpcCommand::Reserve.into())
}

pub fn release<C: From<SpcCommand>>(_: Cdb<'_>) -> Result<C, Sense> {
    Ok(SpcCommand::Release.into())
}

/// PREVENT 00b allows and 01b prevents removal; 1xb are obsolete (disks,
/// tapes) or reserved (changers).
pub fn prevent_allow_medium_removal<C: From<SpcCommand>>(c: Cdb<'_>) -> Result<C, Sense> {
    match c.byte(4) & 0x03 {
        0 => Ok(SpcCommand::PreventAllowMediumRemoval { prevent: false }.into()),
        1 => Ok(SpcCommand::PreventAllowMediumRemoval { prevent: true }.into()),
        _ => Err(Sense::invalid_cdb_field(4, Some(1))),
    }
}

pub fn persistent_reserve_in<C: From<SpcCommand>>(c: Cdb<'_>) -> Result<C, Sense> {
    let action = match c.service_action() {
        0 => PrInAction::ReadKeys,
        1 => PrInAction::ReadReservation,
        2 => PrInAction::ReportCapabilities,
        3 => PrInAction::ReadFullStatus,
        _ => return Err(Sense::invalid_cdb_field(1, Some(4))),
    };
    Ok(SpcCommand::PersistentReserveIn { action, alloc: c.be(7, 2) as u16 }.into())
}

pub fn persistent_reserve_out<C: From<SpcCommand>>(c: Cdb<'_>) -> Result<C, Sense> {
    let action = match c.service_action() {
        0 => PrOutAction::Register,
        1 => PrOutAction::Reserve,
        2 => PrOutAction::Release,
        3 => PrOutAction::Clear,
        4 => PrOutAction::Preempt,
        5 => PrOutAction::PreemptAndAbort,
        6 => PrOutAction::RegisterAndIgnoreExistingKey,
        7 => PrOutAction::RegisterAndMove,
        _ => return Err(Sense::invalid_cdb_field(1, Some(4))),
    };
    Ok(SpcCommand::PersistentReserveOut { action, scope_type: c.byte(2), param_len: c.be(5, 4) as u32 }.into())
}

pub fn report_supported_opcodes<C: From<SpcCommand>>(c: Cdb<'_>) -> Result<C, Sense> {
    let options = match c.byte(2) & 0x07 {
        0 => ReportingOptions::All,
        1 => ReportingOptions::Opcode,
        2 => ReportingOptions::OpcodeAndServiceAction,
        3 => ReportingOptions::OpcodeOptionalServiceAction,
        _ => return Err(Sense::invalid_cdb_field(2, Some(2))),
    };
    Ok(SpcCommand::ReportSupportedOpcodes {
        rctd: c.bit(2, 7),
        options,
        opcode: c.byte(3),
        sa: c.be(4, 2) as u16,
        alloc: c.be(6, 4) as u32,
    }
    .into())
}

pub fn extended_copy(c: Cdb<'_>) -> Result<DiskCommand, Sense> {
    Ok(DiskCommand::Copy(CopyCommand::ExtendedCopy { param_len: c.be(10, 4) as u32 }))
}

pub fn receive_copy_results(c: Cdb<'_>) -> Result<DiskCommand, Sense> {
    let action = match c.service_action() {
        0 => CopyResultsAction::CopyStatus,
        3 => CopyResultsAction::OperatingParameters,
        _ => return Err(Sense::invalid_cdb_field(1, Some(4))),
    };
    Ok(DiskCommand::Copy(CopyCommand::ReceiveCopyResults { action, list_id: c.byte(2), alloc: c.be(10, 4) as u32 }))
}

// ---- SBC parsers ----

/// DPO and FUA of byte 1; PROTECT fields are refused by the usage mask
/// because the unit carries no protection information.
fn dpo_fua(c: Cdb<'_>) -> (bool, bool) {
    (c.bit(1, 4), c.bit(1, 3))
}

pub fn read6(c: Cdb<'_>) -> Result<DiskCommand, Sense> {
    let (lba, count) = rw6_range(c);
    Ok(SbcCommand::Read { lba, count, dpo: false, fua: false }.into())
}

pub fn write6(c: Cdb<'_>) -> Result<DiskCommand, Sense> {
    let (lba, count) = rw6_range(c);
    Ok(SbcCommand::Write { lba, count, dpo: false, fua: false }.into())
}

/// READ(6)/WRITE(6): 21-bit LBA; a transfer length of 0 means 256 blocks.
fn rw6_range(c: Cdb<'_>) -> (Lba, BlockCount) {
    let lba = c.be(1, 3) & 0x1F_FFFF;
    let count = match c.byte(4) {
        0 => 256,
        n => n as u64,
    };
    (Lba(lba), BlockCount(count))
}

/// LBA and transfer length of the 10/12/16-byte forms, located by the
/// opcode's group code (SAM-5: group 4 is 16-byte, group 5 is 12-byte,
/// groups 1 and 2 are 10-byte CDBs).
fn range(c: Cdb<'_>) -> (Lba, BlockCount) {
    match c.opcode() >> 5 {
        4 => (Lba(c.be(2, 8)), BlockCount(c.be(10, 4))),
        5 => (Lba(c.be(2, 4)), BlockCount(c.be(6, 4))),
        _ => (Lba(c.be(2, 4)), BlockCount(c.be(7, 2))),
    }
}

pub fn read(c: Cdb<'_>) -> Result<DiskCommand, Sense> {
    let (lba, count) = range(c);
    let (dpo, fua) = dpo_fua(c);
    Ok(SbcCommand::Read { lba, count, dpo, fua }.into())
}

pub fn write(c: Cdb<'_>) -> Result<DiskCommand, Sense> {
    let (lba, count) = range(c);
    let (dpo, fua) = dpo_fua(c);
    Ok(SbcCommand::Write { lba, count, dpo, fua }.into())
}

pub fn write_and_verify(c: Cdb<'_>) -> Result<DiskCommand, Sense> {
    let (lba, count) = range(c);
    Ok(SbcCommand::WriteAndVerify { lba, count, dpo: c.bit(1, 4), bytchk: c.bit(1, 1) }.into())
}

pub fn verify(c: Cdb<'_>) -> Result<DiskCommand, Sense> {
    let (lba, count) = range(c);
    let bytchk = match c.byte(1) >> 1 & 0x03 {
        0 => ByteCheck::None,
        1 => ByteCheck::Compare,
        3 => ByteCheck::CompareOneBlock,
        _ => return Err(Sense::invalid_cdb_field(1, Some(2))),
    };
    Ok(SbcCommand::Verify { lba, count, dpo: c.bit(1, 4), bytchk }.into())
}

pub fn write_atomic16(c: Cdb<'_>) -> Result<DiskCommand, Sense> {
    let (dpo, fua) = dpo_fua(c);
    // ATOMIC BOUNDARY (bytes 10-11) is refused by the usage mask: we report
    // no boundary support, so TRANSFER LENGTH is bytes 12-13.
    Ok(SbcCommand::WriteAtomic { lba: Lba(c.be(2, 8)), count: BlockCount(c.be(12, 2)), dpo, fua }.into())
}

pub fn orwrite16(c: Cdb<'_>) -> Result<DiskCommand, Sense> {
    let (lba, count) = range(c);
    let (dpo, fua) = dpo_fua(c);
    Ok(SbcCommand::OrWrite { lba, count, dpo, fua }.into())
}

pub fn compare_and_write(c: Cdb<'_>) -> Result<DiskCommand, Sense> {
    let (dpo, fua) = dpo_fua(c);
    Ok(SbcCommand::CompareAndWrite { lba: Lba(c.be(2, 8)), count: BlockCount(c.byte(13) as u64), dpo, fua }.into())
}

pub fn write_same(c: Cdb<'_>) -> Result<DiskCommand, Sense> {
    let (lba, count) = range(c);
    Ok(SbcCommand::WriteSame { lba, count, unmap: c.bit(1, 3), ndob: c.bit(1, 0) }.into())
}

pub fn unmap(c: Cdb<'_>) -> Result<DiskCommand, Sense> {
    Ok(SbcCommand::Unmap { param_len: c.be(7, 2) as u16 }.into())
}

pub fn synchronize_cache(c: Cdb<'_>) -> Result<DiskCommand, Sense> {
    let (lba, count) = range(c);
    Ok(SbcCommand::SynchronizeCache { lba, count }.into())
}

pub fn pre_fetch(c: Cdb<'_>) -> Result<DiskCommand, Sense> {
    let (lba, count) = range(c);
    Ok(SbcCommand::PreFetch { lba, count }.into())
}

pub fn read_capacity10(c: Cdb<'_>) -> Result<DiskCommand, Sense> {
    // With PMI clear the (obsolete) LBA field must be zero.
    if !c.bit(8, 0) && c.be(2, 4) != 0 {
        return Err(Sense::invalid_cdb_field(2, None));
    }
    Ok(SbcCommand::ReadCapacity10.into())
}

pub fn read_capacity16(c: Cdb<'_>) -> Result<DiskCommand, Sense> {
    if !c.bit(14, 0) && c.be(2, 8) != 0 {
        return Err(Sense::invalid_cdb_field(2, None));
    }
    Ok(SbcCommand::ReadCapacity16 { alloc: c.be(10, 4) as u32 }.into())
}

pub fn get_lba_status(c: Cdb<'_>) -> Result<DiskCommand, Sense> {
    Ok(SbcCommand::GetLbaStatus { lba: Lba(c.be(2, 8)), alloc: c.be(10, 4) as u32 }.into())
}

pub fn start_stop_unit(c: Cdb<'_>) -> Result<DiskCommand, Sense> {
    // A virtual disk has no power states, so every power condition is
    // accepted and changes nothing. That includes the codes SBC-3 leaves
    // reserved: initiators (libiscsi's suite among them) send all sixteen
    // and expect the medium to stay ready.
    let power_condition = c.byte(4) >> 4;
    Ok(SbcCommand::StartStopUnit { start: c.bit(4, 0), loej: c.bit(4, 1), power_condition }.into())
}

pub fn read_defect_data(c: Cdb<'_>) -> Result<DiskCommand, Sense> {
    let twelve = c.opcode() == 0xB7;
    let (flags, alloc) = if twelve { (c.byte(1), c.be(6, 4) as u32) } else { (c.byte(2), c.be(7, 2) as u32) };
    Ok(SbcCommand::ReadDefectData {
        twelve,
        req_plist: flags & 0x10 != 0,
        req_glist: flags & 0x08 != 0,
        format: flags & 0x07,
        alloc,
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(cdb: &[u8]) -> Result<DiskCommand, Sense> {
        super::super::opcodes::DISK_OPCODES.parse(Default::default(), cdb).map(|(_, c)| c)
    }

    #[test]
    fn read10_fields() {
        let c = disk(&[0x28, 0x18, 0, 0, 0x12, 0x34, 0, 0, 8, 0]).unwrap();
        assert_eq!(c, SbcCommand::Read { lba: Lba(0x1234), count: BlockCount(8), dpo: true, fua: true }.into());
    }

    #[test]
    fn read6_zero_means_256() {
        let c = disk(&[0x08, 0x01, 0x02, 0x03, 0, 0]).unwrap();
        assert_eq!(c, SbcCommand::Read { lba: Lba(0x010203), count: BlockCount(256), dpo: false, fua: false }.into());
    }

    #[test]
    fn read16_and_write12_fields() {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x88;
        cdb[2..10].copy_from_slice(&0x1_0000_0000u64.to_be_bytes());
        cdb[10..14].copy_from_slice(&3u32.to_be_bytes());
        assert_eq!(
            disk(&cdb).unwrap(),
            SbcCommand::Read { lba: Lba(0x1_0000_0000), count: BlockCount(3), dpo: false, fua: false }.into()
        );
        let c = disk(&[0xAA, 0x08, 0, 0, 0, 9, 0, 0, 0, 2, 0, 0]).unwrap();
        assert_eq!(c, SbcCommand::Write { lba: Lba(9), count: BlockCount(2), dpo: false, fua: true }.into());
    }

    #[test]
    fn rdprotect_is_invalid_field_with_pointer() {
        let e = disk(&[0x28, 0x20, 0, 0, 0, 0, 0, 0, 1, 0]).unwrap_err();
        assert_eq!((e.asc, e.ascq), (0x24, 0));
        let f = e.field.unwrap();
        assert!(f.in_cdb);
        assert_eq!((f.byte, f.bit), (1, Some(5)));
    }

    #[test]
    fn naca_in_control_byte_is_refused() {
        let e = disk(&[0x00, 0, 0, 0, 0, 0x04]).unwrap_err();
        assert_eq!(e.field.unwrap().byte, 5);
    }

    #[test]
    fn unknown_opcode_and_service_action() {
        assert_eq!(disk(&[0xFF; 16]).unwrap_err(), Sense::INVALID_OPCODE);
        let e = disk(&[0x9E, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(e.field.unwrap().byte, 1);
    }

    #[test]
    fn short_cdb_is_an_error_not_a_panic() {
        assert!(disk(&[0x28, 0, 0]).is_err());
        assert!(disk(&[]).is_err());
    }

    #[test]
    fn inquiry_cmddt_and_page_without_evpd() {
        let e = disk(&[0x12, 0x02, 0, 0, 36, 0]).unwrap_err();
        assert_eq!((e.field.unwrap().byte, e.field.unwrap().bit), (1, Some(1)));
        let e = disk(&[0x12, 0x00, 0x80, 0, 36, 0]).unwrap_err();
        assert_eq!(e.field.unwrap().byte, 2);
        assert_eq!(
            disk(&[0x12, 0x01, 0x83, 0x01, 0x00, 0]).unwrap(),
            SpcCommand::Inquiry { evpd: true, page: 0x83, alloc: 256 }.into()
        );
    }

    #[test]
    fn report_luns_small_allocation() {
        assert!(disk(&[0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 0, 0]).is_err());
        assert!(disk(&[0xA0, 0, 3, 0, 0, 0, 0, 0, 0, 16, 0, 0]).is_err());
        assert!(disk(&[0xA0, 0, 2, 0, 0, 0, 0, 0, 0, 16, 0, 0]).is_ok());
    }

    #[test]
    fn verify_bytchk_two_is_invalid() {
        let e = disk(&[0x2F, 0x04, 0, 0, 0, 0, 0, 0, 1, 0]).unwrap_err();
        assert_eq!(e.field.unwrap().byte, 1);
        let c = disk(&[0x2F, 0x06, 0, 0, 0, 0, 0, 0, 1, 0]).unwrap();
        assert!(matches!(c, DiskCommand::Sbc(SbcCommand::Verify { bytchk: ByteCheck::CompareOneBlock, .. })));
    }

    #[test]
    fn mode_select_save_pages_refused() {
        let e = disk(&[0x15, 0x11, 0, 0, 12, 0]).unwrap_err();
        assert_eq!((e.field.unwrap().byte, e.field.unwrap().bit), (1, Some(0)));
    }

    #[test]
    fn write_same16_flags() {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x93;
        cdb[1] = 0x09;
        cdb[13] = 4;
        assert_eq!(
            disk(&cdb).unwrap(),
            SbcCommand::WriteSame { lba: Lba(0), count: BlockCount(4), unmap: true, ndob: true }.into()
        );
    }

    proptest::proptest! {
        #[test]
        fn random_cdbs_never_panic(cdb in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..32)) {
            let _ = disk(&cdb);
        }

        #[test]
        fn random_cdbs_for_known_opcodes_never_panic(
            op in proptest::sample::select(super::super::opcodes::DISK_OPCODES.opcodes()),
            rest in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..20),
        ) {
            let mut cdb = vec![op];
            cdb.extend(rest);
            let _ = disk(&cdb);
        }
    }
}
