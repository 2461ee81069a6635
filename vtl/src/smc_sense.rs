//! Sense conditions of the media changer (SMC-3 and the SPC-4 ASC table),
//! and how element-map errors become sense.

use iscsi_target::scsi::sense::FieldPointer;
use iscsi_target::scsi::{Sense, SenseKey};

use crate::library::{ElementError, Role};

/// ILLEGAL REQUEST, INVALID ELEMENT ADDRESS.
pub const INVALID_ELEMENT_ADDRESS: Sense = Sense::new(SenseKey::IllegalRequest, 0x21, 0x01);
/// ILLEGAL REQUEST, MEDIUM DESTINATION ELEMENT FULL.
pub const MEDIUM_DESTINATION_ELEMENT_FULL: Sense = Sense::new(SenseKey::IllegalRequest, 0x3B, 0x0D);
/// ILLEGAL REQUEST, MEDIUM SOURCE ELEMENT EMPTY.
pub const MEDIUM_SOURCE_ELEMENT_EMPTY: Sense = Sense::new(SenseKey::IllegalRequest, 0x3B, 0x0E);
/// UNIT ATTENTION, IMPORT OR EXPORT ELEMENT ACCESSED: the gateway put a
/// tape into, or took one out of, an import/export element.
pub const IMPORT_OR_EXPORT_ELEMENT_ACCESSED: Sense = Sense::new(SenseKey::UnitAttention, 0x28, 0x01);
/// NOT READY, MEDIUM NOT PRESENT - TRAY OPEN: the import/export element is
/// open to the operator (here: the gateway is taking an exported tape), so
/// the medium transport cannot reach it.
pub const IMPORT_EXPORT_ELEMENT_OPEN: Sense = Sense::new(SenseKey::NotReady, 0x3A, 0x02);
/// MEDIUM ERROR, MEDIA LOAD OR EJECT FAILED: the tape store could not open
/// the tape for a drive.
pub const MEDIA_LOAD_OR_EJECT_FAILED: Sense = Sense::new(SenseKey::MediumError, 0x53, 0x00);

/// The CDB bytes of MOVE MEDIUM / EXCHANGE MEDIUM / POSITION TO ELEMENT
/// that hold each role's element address.
fn role_byte(role: Role) -> u16 {
    match role {
        Role::Transport => 2,
        Role::Source => 4,
        Role::Destination => 6,
        Role::SecondDestination => 8,
    }
}

/// INVALID ELEMENT ADDRESS pointing at CDB byte `byte`.
pub fn invalid_element_address_at(byte: u16) -> Sense {
    Sense { field: Some(FieldPointer { in_cdb: true, byte, bit: None }), ..INVALID_ELEMENT_ADDRESS }
}

/// INVALID ELEMENT ADDRESS pointing at the CDB field that named it.
pub fn invalid_element_address(role: Role) -> Sense {
    invalid_element_address_at(role_byte(role))
}

/// The sense for a refused move or exchange.
pub fn element_error_sense(e: &ElementError) -> Sense {
    match e {
        ElementError::InvalidAddress { role, .. } => invalid_element_address(*role),
        ElementError::SourceEmpty(_) => MEDIUM_SOURCE_ELEMENT_EMPTY,
        ElementError::DestinationFull(_) => MEDIUM_DESTINATION_ELEMENT_FULL,
        ElementError::ExportInProgress(_) => IMPORT_EXPORT_ELEMENT_OPEN,
        // Gateway-side operations only; a command never gets these.
        ElementError::NoFreeImportExport
        | ElementError::DuplicateBarcode(_)
        | ElementError::InvalidBarcode(_)
        | ElementError::NotFound(_)
        | ElementError::NotInImportExport { .. }
        | ElementError::UnknownElement { .. }
        | ElementError::MailStateMismatch { .. } => Sense::INTERNAL_TARGET_FAILURE,
    }
}
