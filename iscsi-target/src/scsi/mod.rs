//! The SCSI core: typed CDBs, sense data, the logical-unit interface that the
//! iSCSI transport drives, SPC-4 commands shared by every device type, and the
//! SBC-3 disk over the [`BlockDevice`](block::BlockDevice) trait.
//!
//! Device emulation is transport-agnostic: a logical unit takes a
//! [`ScsiRequest`] (CDB, data-out, the I_T nexus it came from) and returns a
//! [`ScsiResponse`] (data-in, status, sense). SCSI-level failures are ordinary
//! responses carrying sense data; only storage faults inside a backend are
//! Rust errors, and the device maps those to sense before they leave it.
//!
//! - [`cdb`]: pure CDB parsing into typed commands;
//! - [`opcodes`]: the opcode table behind dispatch and REPORT SUPPORTED
//!   OPERATION CODES;
//! - [`spc`]: the SPC-4 core ([`SpcCore`]) that device types embed;
//! - [`pr`]: persistent reservations;
//! - [`sbc`]: the disk ([`DiskUnit`]);
//! - [`copy`]: the disk's EXTENDED COPY manager.

pub mod block;
pub mod cdb;
pub mod copy;
pub mod lu;
pub mod opcodes;
pub mod pr;
mod range_lock;
pub mod sbc;
pub mod sense;
pub mod spc;
pub mod types;

pub use copy::CopyTargets;
pub use lu::{DataOutChecksums, ItNexus, LogicalUnit, ResetKind, ScsiRequest, ScsiResponse, ScsiStatus};
pub use sbc::DiskUnit;
pub use sense::{Sense, SenseKey};
pub use spc::{DeviceIdentity, DeviceType, SpcCore, SpcDevice};
pub use types::{BlockCount, Lba};
