//! The iSCSI PDU codec (RFC 7143 §11): pure functions from bytes to typed
//! PDUs and back, with no I/O. The connection reads a PDU in two steps:
//! the 48-byte BHS first ([`Bhs::parse`] tells how many bytes follow), then
//! the rest, which [`Pdu::decode`] turns into a typed value after checking
//! the digests.

mod bhs;
mod raw;
mod decode;
mod digest;
mod encode;
mod types;

pub use bhs::{Bhs, BHS_LEN};
pub use decode::DecodeError;
pub use digest::Digests;
pub use encode::EncodedPdu;
pub use types::*;

#[cfg(test)]
mod tests;
