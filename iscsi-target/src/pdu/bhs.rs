//! The Basic Header Segment: the fields every PDU shares, enough to frame the
//! rest of the PDU.

use nom::number::complete::{be_u24, be_u8};
use nom::IResult;

use super::decode::DecodeError;
use super::digest::Digests;

pub const BHS_LEN: usize = 48;

/// Rounds a data segment length up to the 4-byte boundary it is padded to.
pub fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// The framing fields of a BHS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bhs {
    pub opcode: u8,
    pub immediate: bool,
    /// TotalAHSLength in bytes (the field counts 4-byte words).
    pub ahs_len: usize,
    pub data_len: usize,
}

impl Bhs {
    pub fn parse(bhs: &[u8]) -> Result<Bhs, DecodeError> {
        fn fields(i: &[u8]) -> IResult<&[u8], (u8, u8, u32)> {
            let (i, op) = be_u8(i)?;
            let (i, _) = nom::bytes::complete::take(3usize)(i)?;
            let (i, ahs) = be_u8(i)?;
            let (i, dsl) = be_u24(i)?;
            Ok((i, (op, ahs, dsl)))
        }
        if bhs.len() < BHS_LEN {
            return Err(DecodeError::Truncated);
        }
        let (_, (op, ahs, dsl)) = fields(bhs).map_err(|_| DecodeError::Truncated)?;
        Ok(Bhs { opcode: op & 0x3f, immediate: op & 0x40 != 0, ahs_len: ahs as usize * 4, data_len: dsl as usize })
    }

    /// Bytes that follow the BHS up to and including the header digest.
    pub fn header_rest_len(&self, d: Digests) -> usize {
        self.ahs_len + if d.header { 4 } else { 0 }
    }

    /// Bytes of the data segment on the wire: data, padding, data digest.
    pub fn data_wire_len(&self, d: Digests) -> usize {
        if self.data_len == 0 {
            0
        } else {
            pad4(self.data_len) + if d.data { 4 } else { 0 }
        }
    }
}
