//! The PDU codec: `Pdu::decode_frame` on arbitrary bytes, then a round trip
//! through `Pdu::encode` for every PDU that decodes.
//!
//! Input: one mode byte, then the PDU bytes. Mode bit 0 turns header
//! digests on, bit 1 data digests; with bit 2 the harness writes correct
//! digests into the frame first, so the fuzzer gets past the CRC checks;
//! bit 3 also feeds `Pdu::decode` a header/data split chosen by the input.

#![no_main]

use bytes::Bytes;
use iscsi_target::pdu::{Bhs, Digests, Pdu, BHS_LEN};
use libfuzzer_sys::fuzz_target;

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// Overwrites the digests of the frame at the front of `buf` with correct
/// ones (CRC32C, least significant byte first).
fn fix_digests(buf: &mut [u8], d: Digests) {
    let Ok(bhs) = Bhs::parse(buf) else { return };
    let hdr_end = BHS_LEN + bhs.ahs_len;
    if d.header && buf.len() >= hdr_end + 4 {
        let crc = crc32c::crc32c(&buf[..hdr_end]);
        buf[hdr_end..hdr_end + 4].copy_from_slice(&crc.to_le_bytes());
    }
    let data_start = BHS_LEN + bhs.header_rest_len(d);
    let p = pad4(bhs.data_len);
    if d.data && bhs.data_len > 0 && buf.len() >= data_start + p + 4 {
        let crc = crc32c::crc32c(&buf[data_start..data_start + p]);
        buf[data_start + p..data_start + p + 4].copy_from_slice(&crc.to_le_bytes());
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else { return };
    let d = Digests { header: mode & 1 != 0, data: mode & 2 != 0 };
    let mut buf = rest.to_vec();
    if mode & 4 != 0 {
        fix_digests(&mut buf, d);
    }

    if mode & 8 != 0 {
        // The two-step path with an arbitrary (usually wrong) split: the
        // lengths must be checked, never trusted.
        let split = (mode >> 4) as usize * 4 + BHS_LEN - 8;
        let split = split.min(buf.len());
        let _ = Pdu::decode(&buf[..split], Bytes::copy_from_slice(&buf[split..]), d);
    }

    let Ok((pdu, used)) = Pdu::decode_frame(&buf, d) else { return };
    assert!(used >= BHS_LEN && used <= buf.len());

    // Round trip: what we encode decodes to the same PDU, and encoding that
    // again gives the same bytes.
    let encoded = pdu.encode(d);
    let bytes = encoded.to_bytes();
    assert_eq!(bytes.len(), encoded.len());
    assert_eq!(bytes.len() % 4, 0, "PDUs are padded to 4 bytes");
    let (again, used_again) = match Pdu::decode_frame(&bytes, d) {
        Ok(x) => x,
        Err(e) => panic!("re-encoded {pdu:?} does not decode: {e}"),
    };
    assert_eq!(used_again, bytes.len());
    assert_eq!(again, pdu);
    assert_eq!(again.encode(d).to_bytes(), bytes);
});
