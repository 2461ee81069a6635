//! Typed SSC-3 CDBs and the tape drive's opcode table, which drives both
//! dispatch and REPORT SUPPORTED OPERATION CODES. Parsers run after the
//! table has checked the CDB length and refused every bit its usage data
//! does not allow, so they check values only.

use iscsi_target::scsi::cdb::{Cdb, SpcCommand};
use iscsi_target::scsi::opcodes::{
    pr_opcodes, removal_opcodes, spc_opcodes, Access, Feature, Features, OpDesc, OpcodeTable,
};
use iscsi_target::scsi::Sense;

/// SPACE codes we implement (SSC-3 table 38). Sequential filemarks are
/// optional and refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpaceCode {
    Blocks,
    Filemarks,
    EndOfData,
}

/// Where LOCATE goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocateTarget {
    /// Before logical object `n`.
    Object(u64),
    /// Before the first object of file `n` (after the `n`-th filemark).
    File(u64),
    EndOfData,
}

/// READ POSITION service actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionForm {
    /// 00h, and 01h (vendor-specific block addresses, which are ours).
    Short,
    /// 06h.
    Long,
    /// 08h.
    Extended,
}

/// Sequential-access commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SscCommand {
    Rewind,
    ReadBlockLimits {
        mloi: bool,
    },
    /// `length`: bytes when variable, blocks when `fixed`.
    Read {
        fixed: bool,
        sili: bool,
        length: u32,
    },
    Write {
        fixed: bool,
        length: u32,
    },
    WriteFilemarks {
        count: u32,
    },
    Space {
        code: SpaceCode,
        count: i64,
    },
    Erase {
        long: bool,
    },
    LoadUnload {
        load: bool,
    },
    Locate {
        target: LocateTarget,
    },
    ReadPosition {
        form: PositionForm,
        alloc: u16,
    },
    ReportDensitySupport {
        media: bool,
        alloc: u16,
    },
    LogSense {
        page: u8,
        subpage: u8,
        pointer: u16,
        alloc: u16,
    },
}

/// Everything a tape drive understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TapeCommand {
    Spc(SpcCommand),
    Ssc(SscCommand),
}

impl From<SpcCommand> for TapeCommand {
    fn from(c: SpcCommand) -> Self {
        TapeCommand::Spc(c)
    }
}

impl From<SscCommand> for TapeCommand {
    fn from(c: SscCommand) -> Self {
        TapeCommand::Ssc(c)
    }
}

/// READ BLOCK LIMITS returns 6 bytes, or 20 with MLOI.
const BLOCK_LIMITS_LEN: u32 = 6;
const BLOCK_LIMITS_MLOI_LEN: u32 = 20;

impl TapeCommand {
    /// The ALLOCATION LENGTH of commands that return parameter data.
    pub fn allocation_length(&self) -> Option<u32> {
        match self {
            TapeCommand::Spc(c) => c.allocation_length(),
            TapeCommand::Ssc(SscCommand::ReadPosition { form: PositionForm::Extended, alloc })
            | TapeCommand::Ssc(SscCommand::ReportDensitySupport { alloc, .. })
            | TapeCommand::Ssc(SscCommand::LogSense { alloc, .. }) => Some(*alloc as u32),
            TapeCommand::Ssc(SscCommand::ReadBlockLimits { mloi }) => {
                Some(if *mloi { BLOCK_LIMITS_MLOI_LEN } else { BLOCK_LIMITS_LEN })
            }
            TapeCommand::Ssc(_) => None,
        }
    }

    /// The data-out length the CDB calls for, given the current fixed
    /// block length.
    pub fn data_out_length(&self, block_len: u32) -> Option<u64> {
        match self {
            TapeCommand::Spc(c) => c.data_out_length(),
            TapeCommand::Ssc(SscCommand::Write { fixed: true, length }) => Some(*length as u64 * block_len as u64),
            TapeCommand::Ssc(SscCommand::Write { fixed: false, length }) => Some(*length as u64),
            TapeCommand::Ssc(_) => None,
        }
    }
}

/// A 24-bit two's-complement count (SPACE(6)).
fn signed24(v: u64) -> i64 {
    ((v as i64) << 40) >> 40
}

fn rewind(_: Cdb<'_>) -> Result<TapeCommand, Sense> {
    Ok(SscCommand::Rewind.into())
}

fn read_block_limits(c: Cdb<'_>) -> Result<TapeCommand, Sense> {
    Ok(SscCommand::ReadBlockLimits { mloi: c.bit(1, 0) }.into())
}

fn read6(c: Cdb<'_>) -> Result<TapeCommand, Sense> {
    let (fixed, sili) = (c.bit(1, 0), c.bit(1, 1));
    // SSC-3 6.4: SILI with FIXED is an invalid combination.
    if fixed && sili {
        return Err(Sense::invalid_cdb_field(1, Some(1)));
    }
    Ok(SscCommand::Read { fixed, sili, length: c.be(2, 3) as u32 }.into())
}

fn write6(c: Cdb<'_>) -> Result<TapeCommand, Sense> {
    Ok(SscCommand::Write { fixed: c.bit(1, 0), length: c.be(2, 3) as u32 }.into())
}

fn write_filemarks6(c: Cdb<'_>) -> Result<TapeCommand, Sense> {
    // Setmarks do not exist on LTO.
    if c.bit(1, 1) {
        return Err(Sense::invalid_cdb_field(1, Some(1)));
    }
    Ok(SscCommand::WriteFilemarks { count: c.be(2, 3) as u32 }.into())
}

fn space_code(c: Cdb<'_>) -> Result<SpaceCode, Sense> {
    match c.byte(1) & 0x0F {
        0 => Ok(SpaceCode::Blocks),
        1 => Ok(SpaceCode::Filemarks),
        3 => Ok(SpaceCode::EndOfData),
        _ => Err(Sense::invalid_cdb_field(1, Some(3))),
    }
}

fn space6(c: Cdb<'_>) -> Result<TapeCommand, Sense> {
    Ok(SscCommand::Space { code: space_code(c)?, count: signed24(c.be(2, 3)) }.into())
}

fn space16(c: Cdb<'_>) -> Result<TapeCommand, Sense> {
    Ok(SscCommand::Space { code: space_code(c)?, count: c.be(4, 8) as i64 }.into())
}

fn erase6(c: Cdb<'_>) -> Result<TapeCommand, Sense> {
    Ok(SscCommand::Erase { long: c.bit(1, 0) }.into())
}

fn load_unload(c: Cdb<'_>) -> Result<TapeCommand, Sense> {
    let load = c.bit(4, 0);
    // EOT with LOAD asks to load and position at end of tape: invalid.
    if load && c.bit(4, 2) {
        return Err(Sense::invalid_cdb_field(4, Some(2)));
    }
    // HOLD and RETEN change nothing on a virtual tape.
    Ok(SscCommand::LoadUnload { load }.into())
}

/// A partition change (CP) to any partition but 0 is refused: one partition.
fn check_partition(c: Cdb<'_>, byte: usize) -> Result<(), Sense> {
    if c.bit(1, 1) && c.byte(byte) != 0 {
        return Err(Sense::invalid_cdb_field(byte as u16, None));
    }
    Ok(())
}

fn locate10(c: Cdb<'_>) -> Result<TapeCommand, Sense> {
    check_partition(c, 8)?;
    Ok(SscCommand::Locate { target: LocateTarget::Object(c.be(3, 4)) }.into())
}

fn locate16(c: Cdb<'_>) -> Result<TapeCommand, Sense> {
    check_partition(c, 3)?;
    let id = c.be(4, 8);
    let target = match c.byte(1) >> 3 & 0x07 {
        0 => LocateTarget::Object(id),
        1 => LocateTarget::File(id),
        3 => LocateTarget::EndOfData,
        _ => return Err(Sense::invalid_cdb_field(1, Some(5))),
    };
    Ok(SscCommand::Locate { target }.into())
}

fn read_position(c: Cdb<'_>) -> Result<TapeCommand, Sense> {
    let form = match c.service_action() {
        0x00 | 0x01 => PositionForm::Short,
        0x06 => PositionForm::Long,
        _ => PositionForm::Extended,
    };
    Ok(SscCommand::ReadPosition { form, alloc: c.be(7, 2) as u16 }.into())
}

fn report_density_support(c: Cdb<'_>) -> Result<TapeCommand, Sense> {
    Ok(SscCommand::ReportDensitySupport { media: c.bit(1, 0), alloc: c.be(7, 2) as u16 }.into())
}

fn log_sense(c: Cdb<'_>) -> Result<TapeCommand, Sense> {
    // Every page control gets the cumulative values: we keep no
    // thresholds and nothing is saved.
    Ok(SscCommand::LogSense {
        page: c.byte(2) & 0x3F,
        subpage: c.byte(3),
        pointer: c.be(5, 2) as u16,
        alloc: c.be(7, 2) as u16,
    }
    .into())
}

static TAPE_SPC: [OpDesc<TapeCommand>; 13] = spc_opcodes::<TapeCommand>();
static TAPE_PR: [OpDesc<TapeCommand>; 2] = pr_opcodes::<TapeCommand>();
static TAPE_REMOVAL: [OpDesc<TapeCommand>; 1] = removal_opcodes::<TapeCommand>();

/// SSC-3 commands, one line each so that the table reads as one. Position
/// commands are `Read` for reservations: they change no data but must not
/// run under another initiator's exclusive access.
#[rustfmt::skip]
static TAPE_SSC: &[OpDesc<TapeCommand>] = {
    use Access::*;
    &[
        OpDesc { opcode: 0x01, service_action: None, name: "REWIND", usage: &[0x01, 0x01, 0, 0, 0, 0], access: Read, parse: rewind, feature: Feature::Base },
        OpDesc { opcode: 0x05, service_action: None, name: "READ BLOCK LIMITS", usage: &[0x05, 0x01, 0, 0, 0, 0], access: Unrestricted, parse: read_block_limits, feature: Feature::Base },
        OpDesc { opcode: 0x08, service_action: None, name: "READ(6)", usage: &[0x08, 0x03, 0xFF, 0xFF, 0xFF, 0], access: Read, parse: read6, feature: Feature::Base },
        OpDesc { opcode: 0x0A, service_action: None, name: "WRITE(6)", usage: &[0x0A, 0x01, 0xFF, 0xFF, 0xFF, 0], access: Write, parse: write6, feature: Feature::Base },
        OpDesc { opcode: 0x10, service_action: None, name: "WRITE FILEMARKS(6)", usage: &[0x10, 0x03, 0xFF, 0xFF, 0xFF, 0], access: Write, parse: write_filemarks6, feature: Feature::Base },
        OpDesc { opcode: 0x11, service_action: None, name: "SPACE(6)", usage: &[0x11, 0x0F, 0xFF, 0xFF, 0xFF, 0], access: Read, parse: space6, feature: Feature::Base },
        OpDesc { opcode: 0x19, service_action: None, name: "ERASE(6)", usage: &[0x19, 0x03, 0, 0, 0, 0], access: Write, parse: erase6, feature: Feature::Base },
        OpDesc { opcode: 0x1B, service_action: None, name: "LOAD UNLOAD", usage: &[0x1B, 0x01, 0, 0, 0x0F, 0], access: Read, parse: load_unload, feature: Feature::Base },
        OpDesc { opcode: 0x2B, service_action: None, name: "LOCATE(10)", usage: &[0x2B, 0x07, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0xFF, 0], access: Read, parse: locate10, feature: Feature::Base },
        OpDesc { opcode: 0x34, service_action: Some(0x00), name: "READ POSITION (SHORT FORM)", usage: &[0x34, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0], access: Read, parse: read_position, feature: Feature::Base },
        OpDesc { opcode: 0x34, service_action: Some(0x01), name: "READ POSITION (SHORT FORM, VENDOR)", usage: &[0x34, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0], access: Read, parse: read_position, feature: Feature::Base },
        OpDesc { opcode: 0x34, service_action: Some(0x06), name: "READ POSITION (LONG FORM)", usage: &[0x34, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0], access: Read, parse: read_position, feature: Feature::Base },
        OpDesc { opcode: 0x34, service_action: Some(0x08), name: "READ POSITION (EXTENDED FORM)", usage: &[0x34, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0], access: Read, parse: read_position, feature: Feature::Base },
        OpDesc { opcode: 0x44, service_action: None, name: "REPORT DENSITY SUPPORT", usage: &[0x44, 0x01, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0], access: Unrestricted, parse: report_density_support, feature: Feature::Base },
        OpDesc { opcode: 0x4D, service_action: None, name: "LOG SENSE", usage: &[0x4D, 0, 0xFF, 0xFF, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0], access: Unrestricted, parse: log_sense, feature: Feature::Base },
        OpDesc { opcode: 0x91, service_action: None, name: "SPACE(16)", usage: &[0x91, 0x0F, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0], access: Read, parse: space16, feature: Feature::Base },
        OpDesc { opcode: 0x92, service_action: None, name: "LOCATE(16)", usage: &[0x92, 0x3B, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0], access: Read, parse: locate16, feature: Feature::Base },
    ]
};

/// Every command a tape drive accepts.
/// A drive's optional commands: its tape can be held in.
pub const TAPE_FEATURES: Features = Features { atomic_write: false, removable_medium: true };

pub static TAPE_OPCODES: OpcodeTable<TapeCommand> = OpcodeTable { groups: &[&TAPE_SPC, &TAPE_PR, &TAPE_REMOVAL, TAPE_SSC] };

#[cfg(test)]
mod tests {
    use iscsi_target::scsi::opcodes::Features;

    use super::*;

    fn tape(cdb: &[u8]) -> Result<TapeCommand, Sense> {
        TAPE_OPCODES.parse(Features::default(), cdb).map(|(_, c)| c)
    }

    #[test]
    fn read_write_fields() {
        assert_eq!(
            tape(&[0x08, 0x02, 0x01, 0x00, 0x00, 0]).unwrap(),
            SscCommand::Read { fixed: false, sili: true, length: 0x10000 }.into()
        );
        assert_eq!(tape(&[0x0A, 0x01, 0, 0, 4, 0]).unwrap(), SscCommand::Write { fixed: true, length: 4 }.into());
        let e = tape(&[0x08, 0x03, 0, 0, 1, 0]).unwrap_err();
        assert_eq!(e.field.map(|f| (f.byte, f.bit)), Some((1, Some(1))));
        let e = tape(&[0x0A, 0x02, 0, 0, 1, 0]).unwrap_err();
        assert_eq!(e.field.map(|f| (f.byte, f.bit)), Some((1, Some(1))));
    }

    #[test]
    fn space_counts_are_signed() {
        assert_eq!(
            tape(&[0x11, 0x01, 0xFF, 0xFF, 0xFE, 0]).unwrap(),
            SscCommand::Space { code: SpaceCode::Filemarks, count: -2 }.into()
        );
        assert_eq!(
            tape(&[0x11, 0x01, 0x7F, 0xFF, 0xFF, 0]).unwrap(),
            SscCommand::Space { code: SpaceCode::Filemarks, count: 0x7F_FFFF }.into()
        );
        let mut cdb = [0u8; 16];
        cdb[0] = 0x91;
        cdb[4..12].copy_from_slice(&(-5i64).to_be_bytes());
        assert_eq!(tape(&cdb).unwrap(), SscCommand::Space { code: SpaceCode::Blocks, count: -5 }.into());
        cdb[13] = 1;
        assert_eq!(tape(&cdb).unwrap_err().field.map(|f| f.byte), Some(13));
        assert_eq!(tape(&[0x11, 0x02, 0, 0, 1, 0]).unwrap_err().field.map(|f| f.byte), Some(1));
    }

    #[test]
    fn locate_and_position_forms() {
        assert_eq!(
            tape(&[0x2B, 0, 0, 0, 0, 1, 0, 0, 0, 0]).unwrap(),
            SscCommand::Locate { target: LocateTarget::Object(256) }.into()
        );
        assert!(tape(&[0x2B, 0x02, 0, 0, 0, 1, 0, 0, 1, 0]).is_err(), "partition 1 does not exist");
        let mut cdb = [0u8; 16];
        cdb[0] = 0x92;
        cdb[1] = 0x08;
        cdb[11] = 3;
        assert_eq!(tape(&cdb).unwrap(), SscCommand::Locate { target: LocateTarget::File(3) }.into());
        cdb[1] = 0x10;
        assert!(tape(&cdb).is_err());
        for (sa, form) in
            [(0, PositionForm::Short), (1, PositionForm::Short), (6, PositionForm::Long), (8, PositionForm::Extended)]
        {
            assert_eq!(
                tape(&[0x34, sa, 0, 0, 0, 0, 0, 0, 32, 0]).unwrap(),
                SscCommand::ReadPosition { form, alloc: 32 }.into()
            );
        }
        assert!(tape(&[0x34, 0x02, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn table_is_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for d in TAPE_OPCODES.groups.iter().flat_map(|g| g.iter()) {
            assert_eq!(d.usage.first(), Some(&d.opcode), "{}", d.name);
            assert!(matches!(d.usage.len(), 6 | 10 | 12 | 16), "{}", d.name);
            assert!(seen.insert((d.opcode, d.service_action)), "duplicate {}", d.name);
        }
    }

    proptest::proptest! {
        #[test]
        fn random_cdbs_never_panic(cdb in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..20)) {
            if let Ok(cmd) = tape(&cdb) {
                let _ = (cmd.allocation_length(), cmd.data_out_length(u32::MAX));
            }
        }
    }
}
