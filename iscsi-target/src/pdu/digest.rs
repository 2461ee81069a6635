//! Header and data digests (CRC32C, RFC 7143 §13.1). The digest goes on the
//! wire least significant byte first, as RFC 7143 appendix B.4 shows.

/// Which digests the connection negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Digests {
    pub header: bool,
    pub data: bool,
}

pub fn crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// CRC32C of the data segment followed by its padding to a 4-byte boundary.
pub fn data_crc(data: &[u8]) -> u32 {
    let pad = super::bhs::pad4(data.len()) - data.len();
    crc32c::crc32c_append(crc32c::crc32c(data), &[0u8; 3][..pad])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_appendix_b4_vectors() {
        assert_eq!(crc32c(&[0u8; 32]).to_le_bytes(), [0xaa, 0x36, 0x91, 0x8a]);
        assert_eq!(crc32c(&[0xffu8; 32]).to_le_bytes(), [0x43, 0xab, 0xa8, 0x62]);
    }

    #[test]
    fn data_crc_covers_padding() {
        assert_eq!(data_crc(b"abc"), crc32c(b"abc\0"));
        assert_eq!(data_crc(b"abcd"), crc32c(b"abcd"));
    }
}
