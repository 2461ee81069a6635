//! Sense conditions of sequential-access devices (SSC-3 and SPC-4 Annex
//! D) that the SCSI core does not name.

use iscsi_target::scsi::{Sense, SenseKey};

/// FILEMARK DETECTED: a read or a space over blocks met a filemark. Sent
/// with the FILEMARK bit.
pub const FILEMARK_DETECTED: Sense = Sense::new(SenseKey::NoSense, 0x00, 0x01);
/// END-OF-PARTITION/MEDIUM DETECTED: past early warning (NO SENSE, EOM bit),
/// or out of room (VOLUME OVERFLOW, EOM bit).
pub const EARLY_WARNING: Sense = Sense::new(SenseKey::NoSense, 0x00, 0x02);
pub const VOLUME_OVERFLOW: Sense = Sense::new(SenseKey::VolumeOverflow, 0x00, 0x02);
/// BEGINNING-OF-PARTITION/MEDIUM DETECTED: spacing backwards hit BOP.
pub const BEGINNING_OF_PARTITION: Sense = Sense::new(SenseKey::NoSense, 0x00, 0x04);
/// END-OF-DATA DETECTED.
pub const END_OF_DATA: Sense = Sense::new(SenseKey::BlankCheck, 0x00, 0x05);
/// An incorrect-length record (with the ILI bit).
pub const INCORRECT_LENGTH: Sense = Sense::new(SenseKey::NoSense, 0x00, 0x00);
/// NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED.
pub const MEDIUM_MAY_HAVE_CHANGED: Sense = Sense::new(SenseKey::UnitAttention, 0x28, 0x00);
/// WORM MEDIUM - OVERWRITE ATTEMPTED, as LTO drives report it.
pub const WORM_OVERWRITE_ATTEMPTED: Sense = Sense::new(SenseKey::DataProtect, 0x30, 0x0C);
/// A tape is already in the drive the changer wants to load.
pub const MEDIUM_DESTINATION_FULL: Sense = Sense::new(SenseKey::IllegalRequest, 0x3B, 0x0D);
