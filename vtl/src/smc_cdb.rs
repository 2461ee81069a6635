//! The changer's commands: typed SMC-3 CDBs, their parsers, and the opcode
//! table that drives both dispatch and REPORT SUPPORTED OPERATION CODES.
//!
//! As in `iscsi_target::scsi::cdb`, the table's usage data has already
//! refused every bit the changer does not look at (INVERT among them: no
//! medium here has two sides) before a parser runs, so parsers check values
//! only.

use iscsi_target::scsi::cdb::{Cdb, SpcCommand};
use iscsi_target::scsi::opcodes::{
    pr_opcodes, removal_opcodes, spc_opcodes, Access, Feature, Features, OpDesc, OpcodeTable,
};
use iscsi_target::scsi::Sense;

use crate::layout::ElementType;

/// SMC-3 commands (and LOG SENSE, which backup software sends to changers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmcCommand {
    ReadElementStatus(StatusRequest),
    MoveMedium {
        transport: u16,
        source: u16,
        destination: u16,
    },
    ExchangeMedium {
        transport: u16,
        source: u16,
        first: u16,
        second: u16,
    },
    /// INITIALIZE ELEMENT STATUS, and WITH RANGE: `range` is (starting
    /// address, number of elements) when RANGE is set.
    InitializeElementStatus {
        range: Option<(u16, u16)>,
    },
    PositionToElement {
        transport: u16,
        destination: u16,
    },
    LogSense {
        page: u8,
        subpage: u8,
        pointer: u16,
        alloc: u16,
    },
}

/// What READ ELEMENT STATUS asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRequest {
    /// None: every element type.
    pub element_type: Option<ElementType>,
    pub start: u16,
    /// At most this many descriptors.
    pub count: u16,
    pub voltag: bool,
    pub dvcid: bool,
    pub alloc: u32,
}

/// Everything the changer logical unit understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangerCommand {
    Spc(SpcCommand),
    Smc(SmcCommand),
}

impl From<SpcCommand> for ChangerCommand {
    fn from(c: SpcCommand) -> Self {
        ChangerCommand::Spc(c)
    }
}

impl From<SmcCommand> for ChangerCommand {
    fn from(c: SmcCommand) -> Self {
        ChangerCommand::Smc(c)
    }
}

impl ChangerCommand {
    /// The ALLOCATION LENGTH of commands that return parameter data.
    pub fn allocation_length(&self) -> Option<u32> {
        match self {
            ChangerCommand::Spc(c) => c.allocation_length(),
            ChangerCommand::Smc(SmcCommand::ReadElementStatus(r)) => Some(r.alloc),
            ChangerCommand::Smc(SmcCommand::LogSense { alloc, .. }) => Some(u32::from(*alloc)),
            ChangerCommand::Smc(_) => None,
        }
    }

    /// The data-out length the CDB calls for (only SPC commands take any).
    pub fn data_out_length(&self) -> Option<u64> {
        match self {
            ChangerCommand::Spc(c) => c.data_out_length(),
            ChangerCommand::Smc(_) => None,
        }
    }
}

fn read_element_status(c: Cdb<'_>) -> Result<ChangerCommand, Sense> {
    let element_type = match c.byte(1) & 0x0F {
        0 => None,
        1 => Some(ElementType::MediumTransport),
        2 => Some(ElementType::Storage),
        3 => Some(ElementType::ImportExport),
        4 => Some(ElementType::DataTransfer),
        _ => return Err(Sense::invalid_cdb_field(1, Some(3))),
    };
    Ok(SmcCommand::ReadElementStatus(StatusRequest {
        element_type,
        start: c.be(2, 2) as u16,
        count: c.be(4, 2) as u16,
        voltag: c.bit(1, 4),
        // CURDATA (byte 6 bit 1) asks for no medium motion: there never is.
        dvcid: c.bit(6, 0),
        alloc: c.be(7, 3) as u32,
    })
    .into())
}

fn move_medium(c: Cdb<'_>) -> Result<ChangerCommand, Sense> {
    Ok(SmcCommand::MoveMedium {
        transport: c.be(2, 2) as u16,
        source: c.be(4, 2) as u16,
        destination: c.be(6, 2) as u16,
    }
    .into())
}

fn exchange_medium(c: Cdb<'_>) -> Result<ChangerCommand, Sense> {
    Ok(SmcCommand::ExchangeMedium {
        transport: c.be(2, 2) as u16,
        source: c.be(4, 2) as u16,
        first: c.be(6, 2) as u16,
        second: c.be(8, 2) as u16,
    }
    .into())
}

fn initialize_element_status(_: Cdb<'_>) -> Result<ChangerCommand, Sense> {
    Ok(SmcCommand::InitializeElementStatus { range: None }.into())
}

/// FAST (byte 1 bit 1) needs no handling: the inventory is always known.
fn initialize_element_status_with_range(c: Cdb<'_>) -> Result<ChangerCommand, Sense> {
    let range = c.bit(1, 0).then(|| (c.be(2, 2) as u16, c.be(6, 2) as u16));
    Ok(SmcCommand::InitializeElementStatus { range }.into())
}

fn position_to_element(c: Cdb<'_>) -> Result<ChangerCommand, Sense> {
    Ok(SmcCommand::PositionToElement { transport: c.be(2, 2) as u16, destination: c.be(4, 2) as u16 }.into())
}

/// The page control (byte 2 bits 7-6) is accepted and ignored: every
/// counter of ours is zero whichever values are asked for.
fn log_sense(c: Cdb<'_>) -> Result<ChangerCommand, Sense> {
    if c.bit(1, 0) {
        // SP: nothing is saved.
        return Err(Sense::invalid_cdb_field(1, Some(0)));
    }
    Ok(SmcCommand::LogSense {
        page: c.byte(2) & 0x3F,
        subpage: c.byte(3),
        pointer: c.be(5, 2) as u16,
        alloc: c.be(7, 2) as u16,
    }
    .into())
}

static CHANGER_SPC: [OpDesc<ChangerCommand>; 13] = spc_opcodes::<ChangerCommand>();
static CHANGER_PR: [OpDesc<ChangerCommand>; 2] = pr_opcodes::<ChangerCommand>();
static CHANGER_REMOVAL: [OpDesc<ChangerCommand>; 1] = removal_opcodes::<ChangerCommand>();

/// The changer's own commands, one line each so that the table reads as
/// one. Element moves conflict with every reservation held elsewhere;
/// reading status only with exclusive-access ones (SPC-4 5.9.1).
#[rustfmt::skip]
static CHANGER_SMC: &[OpDesc<ChangerCommand>] = {
    use Access::*;
    &[
        OpDesc { opcode: 0x07, service_action: None, name: "INITIALIZE ELEMENT STATUS", usage: &[0x07, 0, 0, 0, 0, 0], access: Write, parse: initialize_element_status, feature: Feature::Base },
        OpDesc { opcode: 0x2B, service_action: None, name: "POSITION TO ELEMENT", usage: &[0x2B, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0], access: Write, parse: position_to_element, feature: Feature::Base },
        OpDesc { opcode: 0x37, service_action: None, name: "INITIALIZE ELEMENT STATUS WITH RANGE", usage: &[0x37, 0x03, 0xFF, 0xFF, 0, 0, 0xFF, 0xFF, 0, 0], access: Write, parse: initialize_element_status_with_range, feature: Feature::Base },
        OpDesc { opcode: 0x4D, service_action: None, name: "LOG SENSE", usage: &[0x4D, 0x01, 0xFF, 0xFF, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0], access: Unrestricted, parse: log_sense, feature: Feature::Base },
        OpDesc { opcode: 0xA5, service_action: None, name: "MOVE MEDIUM", usage: &[0xA5, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0], access: Write, parse: move_medium, feature: Feature::Base },
        OpDesc { opcode: 0xA6, service_action: None, name: "EXCHANGE MEDIUM", usage: &[0xA6, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0], access: Write, parse: exchange_medium, feature: Feature::Base },
        OpDesc { opcode: 0xB8, service_action: None, name: "READ ELEMENT STATUS", usage: &[0xB8, 0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0x03, 0xFF, 0xFF, 0xFF, 0, 0], access: Read, parse: read_element_status, feature: Feature::Base },
    ]
};

/// Every command the changer logical unit accepts.
/// A changer's optional commands: its import/export door can be locked.
pub const CHANGER_FEATURES: Features = Features { atomic_write: false, removable_medium: true };

pub static CHANGER_OPCODES: OpcodeTable<ChangerCommand> =
    OpcodeTable { groups: &[&CHANGER_SPC, &CHANGER_PR, &CHANGER_REMOVAL, CHANGER_SMC] };

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(cdb: &[u8]) -> Result<ChangerCommand, Sense> {
        CHANGER_OPCODES.parse(CHANGER_FEATURES, cdb).map(|(_, c)| c)
    }

    #[test]
    fn table_entries_are_consistent() {
        let mut seen = std::collections::HashSet::new();
        for d in CHANGER_OPCODES.groups.iter().flat_map(|g| g.iter()) {
            assert_eq!(d.usage.first(), Some(&d.opcode), "{}", d.name);
            assert!(matches!(d.usage.len(), 6 | 10 | 12 | 16), "{}", d.name);
            assert!(seen.insert(d.opcode), "duplicate {}", d.name);
        }
    }

    #[test]
    fn read_element_status_fields() {
        let cdb = [0xB8, 0x14, 0x01, 0xF4, 0x00, 0x0A, 0x03, 0x01, 0x02, 0x03, 0, 0];
        let want = StatusRequest {
            element_type: Some(ElementType::DataTransfer),
            start: 500,
            count: 10,
            voltag: true,
            dvcid: true,
            alloc: 0x010203,
        };
        assert_eq!(parse(&cdb), Ok(SmcCommand::ReadElementStatus(want).into()));
        let bad_type = [0xB8, 0x05, 0, 0, 0, 1, 0, 0, 0, 0xFF, 0, 0];
        assert_eq!(parse(&bad_type), Err(Sense::invalid_cdb_field(1, Some(3))));
        let lun_bits = [0xB8, 0x20, 0, 0, 0, 1, 0, 0, 0, 0xFF, 0, 0];
        assert_eq!(parse(&lun_bits), Err(Sense::invalid_cdb_field(1, Some(5))));
    }

    #[test]
    fn move_exchange_position_and_range() {
        let mv = [0xA5, 0, 0, 1, 0x03, 0xE8, 0x01, 0xF4, 0, 0, 0, 0];
        assert_eq!(parse(&mv), Ok(SmcCommand::MoveMedium { transport: 1, source: 1000, destination: 500 }.into()));
        let invert = [0xA5, 0, 0, 1, 0x03, 0xE8, 0x01, 0xF4, 0, 0, 1, 0];
        assert_eq!(parse(&invert), Err(Sense::invalid_cdb_field(10, Some(0))));
        let ex = [0xA6, 0, 0, 0, 0, 1, 0, 2, 0, 3, 0, 0];
        assert_eq!(parse(&ex), Ok(SmcCommand::ExchangeMedium { transport: 0, source: 1, first: 2, second: 3 }.into()));
        let pos = [0x2B, 0, 0, 1, 0x03, 0xE8, 0, 0, 0, 0];
        assert_eq!(parse(&pos), Ok(SmcCommand::PositionToElement { transport: 1, destination: 1000 }.into()));
        let ranged = [0x37, 0x03, 0x03, 0xE8, 0, 0, 0, 5, 0, 0];
        assert_eq!(parse(&ranged), Ok(SmcCommand::InitializeElementStatus { range: Some((1000, 5)) }.into()));
        let whole = [0x37, 0x02, 0x03, 0xE8, 0, 0, 0, 5, 0, 0];
        assert_eq!(parse(&whole), Ok(SmcCommand::InitializeElementStatus { range: None }.into()));
        assert_eq!(parse(&[0x07, 0, 0, 0, 0, 0]), Ok(SmcCommand::InitializeElementStatus { range: None }.into()));
        assert_eq!(parse(&[0xA5, 0, 0]), Err(Sense::invalid_cdb_field(0, None)), "short CDB");
    }

    #[test]
    fn prevent_and_log_sense() {
        assert_eq!(parse(&[0x1E, 0, 0, 0, 1, 0]), Ok(SpcCommand::PreventAllowMediumRemoval { prevent: true }.into()));
        assert_eq!(parse(&[0x1E, 0, 0, 0, 0, 0]), Ok(SpcCommand::PreventAllowMediumRemoval { prevent: false }.into()));
        assert_eq!(parse(&[0x1E, 0, 0, 0, 2, 0]), Err(Sense::invalid_cdb_field(4, Some(1))));
        let log = [0x4D, 0, 0x6E, 0, 0, 0, 0x10, 0x01, 0x00, 0];
        assert_eq!(parse(&log), Ok(SmcCommand::LogSense { page: 0x2E, subpage: 0, pointer: 0x10, alloc: 256 }.into()));
        assert_eq!(parse(&[0x4D, 1, 0x40, 0, 0, 0, 0, 0, 0xFF, 0]), Err(Sense::invalid_cdb_field(1, Some(0))));
    }
}
