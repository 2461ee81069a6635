//! The SCSI core: typed CDBs, sense data, the logical-unit interface that the
//! iSCSI transport drives, SPC-4 commands shared by every device type, and the
//! SBC-3 disk over the [`BlockDevice`](block::BlockDevice) trait.
//!
//! Device emulation is transport-agnostic: a logical unit takes a
//! [`ScsiRequest`] (CDB, data-out, the I_T nexus it came from) and returns a
//! [`ScsiResponse`] (data-in, status, sense). SCSI-level failures are ordinary
//! responses carrying sense data; only storage faults inside a backend are
//! Rust errors, and the device maps those to sense before they leave it.

pub mod block;
pub mod lu;
pub mod sense;
pub mod types;

pub use lu::{ItNexus, LogicalUnit, ResetKind, ScsiRequest, ScsiResponse, ScsiStatus, TaskAttr};
pub use sense::{Sense, SenseKey};
pub use types::{BlockCount, Lba};
