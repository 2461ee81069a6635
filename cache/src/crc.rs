//! The crc32c of each sector of a buffer, for the write path, which
//! checksums every sector it writes, and for reads, which verify them.
//!
//! `crc-fast` folds with carry-less multiplies (VPCLMULQDQ where the CPU
//! has it) and was the fastest measured on 4 KiB sectors in a hot buffer:
//! 69 GB/s, against 25 GB/s for four sectors side by side on SSE4.2
//! `crc32` chains (what this module did before) and 20 GB/s for the
//! `crc32c` crate, which the rest of the code base uses for whole objects.
//! The values are the same standard CRC-32C (iSCSI) either way; the test
//! below checks them against the `crc32c` crate.

use crc_fast::CrcAlgorithm;

/// The crc32c of one sector.
pub fn sector(bytes: &[u8]) -> u32 {
    // CRC-32C fits in 32 bits; the crate returns every width as a u64.
    crc_fast::checksum(CrcAlgorithm::Crc32Iscsi, bytes) as u32
}

/// Fills `out[i]` with the crc32c of sector `i` of `data`, which holds
/// `out.len()` whole sectors of `sector_len` bytes.
pub fn sectors(data: &[u8], sector_len: usize, out: &mut [u32]) {
    for (bytes, crc) in data.chunks(sector_len).zip(out.iter_mut()) {
        *crc = sector(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_crc32c_crate_sector_by_sector() {
        let data: Vec<u8> = (0..64 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for sector_len in [512, 4096] {
            for count in [1, 3, 4, 5, 8, 11] {
                let bytes = &data[..count * sector_len];
                let mut out = vec![0; count];
                sectors(bytes, sector_len, &mut out);
                let expected: Vec<u32> = bytes.chunks(sector_len).map(crc32c::crc32c).collect();
                assert_eq!(out, expected, "sector {sector_len}, count {count}");
            }
        }
        assert_eq!(sector(b"123456789"), 0xe306_9283, "the CRC-32C check value");
    }
}
