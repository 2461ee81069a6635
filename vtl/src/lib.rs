//! The virtual tape library: an SMC-3 media changer ([`smc`]) and SSC-3
//! tape drives ([`ssc`]) as iSCSI logical units, the tape format
//! ([`format`]: records and filemarks over a byte stream, and the index that
//! finds them), and the contract with the gateway's tape store
//! ([`media`]).

pub mod format;
pub mod layout;
pub mod library;
pub mod media;
pub mod personality;
mod sense;
pub mod ssc;
pub mod stream;
pub mod smc;
mod smc_cdb;
mod smc_pages;
mod smc_sense;
mod smc_status;
