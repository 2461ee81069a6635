//! The crc32c of each sector of a buffer, for the write path, which
//! checksums every sector it writes.
//!
//! The `crc32c` crate checksums one buffer at a time, and a 4 KiB sector is
//! too short for its three-way split to pay: it ran at 25 GB/s at best on
//! the development machine, against 40 GB/s for four sectors at once, each
//! an independent chain of SSE4.2 `crc32` instructions (their latency is
//! three times their issue interval, so a single chain leaves the unit
//! mostly idle). The values are the crate's: reads and recovery verify with
//! it.

/// Fills `out[i]` with the crc32c of sector `i` of `data`, which holds
/// `out.len()` whole sectors of `sector` bytes.
pub fn sectors(data: &[u8], sector: usize, out: &mut [u32]) {
    let done = four_at_a_time(data, sector, out);
    for (bytes, crc) in data.chunks(sector).zip(out.iter_mut()).skip(done) {
        *crc = crc32c::crc32c(bytes);
    }
}

/// Checksums whole groups of four sectors where the CPU allows; returns how
/// many sectors it did.
#[cfg(target_arch = "x86_64")]
fn four_at_a_time(data: &[u8], sector: usize, out: &mut [u32]) -> usize {
    if sector % 8 != 0 || !std::arch::is_x86_feature_detected!("sse4.2") {
        return 0;
    }
    let mut done = 0;
    for (group, crcs) in data.chunks_exact(4 * sector).zip(out.chunks_exact_mut(4)) {
        // SAFETY: the CPU has SSE4.2 (checked above).
        crcs.copy_from_slice(&unsafe { four_sse42(group, sector) });
        done += 4;
    }
    done
}

#[cfg(not(target_arch = "x86_64"))]
fn four_at_a_time(_data: &[u8], _sector: usize, _out: &mut [u32]) -> usize {
    0
}

/// The crc32c of the four `sector`-byte sectors of `group`, computed side
/// by side. `sector` is a multiple of 8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn four_sse42(group: &[u8], sector: usize) -> [u32; 4] {
    use std::arch::x86_64::_mm_crc32_u64;
    let (a, rest) = group.split_at(sector);
    let (b, rest) = rest.split_at(sector);
    let (c, d) = rest.split_at(sector);
    let word = |bytes: &[u8]| {
        let mut w = [0u8; 8];
        w.copy_from_slice(bytes);
        u64::from_le_bytes(w)
    };
    // crc32c starts from all ones and inverts the result.
    let mut crc = [u64::from(u32::MAX); 4];
    let words = a.chunks_exact(8).zip(b.chunks_exact(8)).zip(c.chunks_exact(8)).zip(d.chunks_exact(8));
    for (((a, b), c), d) in words {
        crc[0] = _mm_crc32_u64(crc[0], word(a));
        crc[1] = _mm_crc32_u64(crc[1], word(b));
        crc[2] = _mm_crc32_u64(crc[2], word(c));
        crc[3] = _mm_crc32_u64(crc[3], word(d));
    }
    crc.map(|c| !(c as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_crate_sector_by_sector() {
        let data: Vec<u8> = (0..64 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for sector in [512, 4096] {
            // Counts around the groups of four, so that the tail is covered.
            for count in [1, 3, 4, 5, 8, 11] {
                let bytes = &data[..count * sector];
                let mut out = vec![0; count];
                sectors(bytes, sector, &mut out);
                let expected: Vec<u32> = bytes.chunks(sector).map(crc32c::crc32c).collect();
                assert_eq!(out, expected, "sector {sector}, count {count}");
            }
        }
    }
}
