//! The BHS as raw fields: opcode-independent positions that the typed PDUs
//! are read from and written to. Bytes 20..48 are seven big-endian words
//! whose meaning depends on the opcode.

use nom::bytes::complete::take;
use nom::multi::count;
use nom::number::complete::{be_u24, be_u32, be_u8};
use nom::IResult;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RawBhs {
    /// Byte 0: opcode with the I bit.
    pub op: u8,
    /// Bytes 1..4: flags and opcode-specific bytes.
    pub b1: u8,
    pub b2: u8,
    pub b3: u8,
    pub ahs_words: u8,
    pub data_len: u32,
    /// Bytes 8..16: LUN, or ISID+TSIH in login PDUs.
    pub b8: [u8; 8],
    pub itt: u32,
    /// Bytes 20..48.
    pub w: [u32; 7],
}

impl RawBhs {
    pub fn parse(i: &[u8]) -> IResult<&[u8], RawBhs> {
        let (i, op) = be_u8(i)?;
        let (i, b1) = be_u8(i)?;
        let (i, b2) = be_u8(i)?;
        let (i, b3) = be_u8(i)?;
        let (i, ahs_words) = be_u8(i)?;
        let (i, data_len) = be_u24(i)?;
        let (i, b8) = take(8usize)(i)?;
        let (i, itt) = be_u32(i)?;
        let (i, words) = count(be_u32, 7)(i)?;
        let mut w = [0u32; 7];
        w.copy_from_slice(&words);
        let mut lun = [0u8; 8];
        lun.copy_from_slice(b8);
        Ok((i, RawBhs { op, b1, b2, b3, ahs_words, data_len, b8: lun, itt, w }))
    }

    pub fn write(&self, out: &mut [u8; 48]) {
        out[0] = self.op;
        out[1] = self.b1;
        out[2] = self.b2;
        out[3] = self.b3;
        out[4] = self.ahs_words;
        out[5..8].copy_from_slice(&self.data_len.to_be_bytes()[1..]);
        out[8..16].copy_from_slice(&self.b8);
        out[16..20].copy_from_slice(&self.itt.to_be_bytes());
        for (k, w) in self.w.iter().enumerate() {
            out[20 + 4 * k..24 + 4 * k].copy_from_slice(&w.to_be_bytes());
        }
    }

    pub fn lun(&self) -> u64 {
        u64::from_be_bytes(self.b8)
    }

    pub fn flag(&self, mask: u8) -> bool {
        self.b1 & mask != 0
    }
}

/// The high and low halves of a word.
pub(crate) fn halves(w: u32) -> (u16, u16) {
    ((w >> 16) as u16, w as u16)
}

pub(crate) fn join(hi: u16, lo: u16) -> u32 {
    (hi as u32) << 16 | lo as u32
}
