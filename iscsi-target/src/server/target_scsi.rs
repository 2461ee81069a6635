//! The SCSI commands a target answers itself rather than a logical unit:
//! REPORT LUNS (the LUN inventory is the target's), and any command to a LUN
//! that does not exist (SPC-4 §4.6.20, §6.6.1).

use bytes::{BufMut, Bytes, BytesMut};

use crate::scsi::spc::encode_lun;
use crate::scsi::{ScsiResponse, Sense};

const REPORT_LUNS: u8 = 0xA0;
const INQUIRY: u8 = 0x12;
const REQUEST_SENSE: u8 = 0x03;


/// Decodes the LUN field of a PDU; `None` for addressing we do not serve.
pub fn decode_lun(raw: u64) -> Option<u64> {
    let b = raw.to_be_bytes();
    if b[2..].iter().any(|&x| x != 0) {
        return None;
    }
    match b[0] >> 6 {
        0 if b[0] == 0 => Some(b[1] as u64),
        1 => Some(((b[0] & 0x3f) as u64) << 8 | b[1] as u64),
        _ => None,
    }
}

/// REPORT LUNS (SPC-4 §6.33) for a target with `luns`.
pub fn report_luns(cdb: &[u8], luns: &[u64]) -> ScsiResponse {
    if cdb.len() < 12 {
        return Sense::INVALID_FIELD_IN_CDB.into();
    }
    let select = cdb[2];
    let alloc = u32::from_be_bytes([cdb[6], cdb[7], cdb[8], cdb[9]]);
    if alloc < 16 {
        return Sense::invalid_cdb_field(6, None).into();
    }
    let listed: Vec<u64> = match select {
        // 0: all logical units; 2: all; 1: well-known only (we have none).
        0 | 2 => luns.to_vec(),
        1 => Vec::new(),
        0x10..=0x12 => luns.to_vec(),
        _ => return Sense::invalid_cdb_field(2, None).into(),
    };
    let mut b = BytesMut::with_capacity(8 + 8 * listed.len());
    b.put_u32((listed.len() * 8) as u32);
    b.put_u32(0);
    for l in listed {
        b.put_u64(encode_lun(l));
    }
    let mut data = b.freeze();
    data.truncate(alloc as usize);
    ScsiResponse::data(data)
}

/// The answer to a command addressed to a LUN the target does not have.
pub fn absent_lun(cdb: &[u8], luns: &[u64]) -> ScsiResponse {
    match cdb.first() {
        Some(&REPORT_LUNS) => report_luns(cdb, luns),
        Some(&INQUIRY) if cdb.len() >= 6 && cdb[1] & 1 == 0 => {
            // Peripheral qualifier 011b: no logical unit here.
            let alloc = u16::from_be_bytes([cdb[3], cdb[4]]) as usize;
            let mut d = vec![0u8; 36];
            d[0] = 0x7f;
            d[2] = 0x06;
            d[3] = 0x02;
            d[4] = 31;
            d[8..16].copy_from_slice(b"SGW     ");
            d.truncate(alloc);
            ScsiResponse::data(Bytes::from(d))
        }
        Some(&REQUEST_SENSE) => {
            let alloc = cdb.get(4).copied().unwrap_or(0) as usize;
            let mut s = Sense::LUN_NOT_SUPPORTED.to_fixed();
            s.truncate(alloc);
            ScsiResponse::data(s)
        }
        _ => Sense::LUN_NOT_SUPPORTED.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lun_encoding_round_trips() {
        for l in [0u64, 1, 255, 256, 16383] {
            assert_eq!(decode_lun(encode_lun(l)), Some(l));
        }
        assert_eq!(decode_lun(0x0001_0000_0000_0000 << 8), None);
    }

    #[test]
    fn report_luns_lists_and_truncates() {
        let mut cdb = [0u8; 12];
        cdb[0] = REPORT_LUNS;
        cdb[9] = 16;
        let r = report_luns(&cdb, &[0, 1]);
        assert_eq!(&r.data_in[..8], &[0, 0, 0, 16, 0, 0, 0, 0]);
        assert_eq!(r.data_in.len(), 16);
        cdb[9] = 8;
        assert!(report_luns(&cdb, &[0]).sense.is_some());
    }
}
