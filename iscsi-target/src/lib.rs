//! An RFC 7143 iSCSI target with a SCSI core (SPC-4) and an SBC-3 disk.
//!
//! Layers, bottom up:
//! - [`scsi`]: typed CDBs, sense, the [`scsi::LogicalUnit`] interface, SPC-4
//!   and the SBC-3 disk over [`scsi::block::BlockDevice`];
//! - `pdu`: the pure PDU codec;
//! - `login`: text keys, operational negotiation and CHAP;
//! - `server`: sessions and connections on tokio.

pub mod login;
pub mod pdu;
pub mod scsi;
pub mod server;
pub mod target;
