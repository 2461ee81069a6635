//! Unit newtypes: logical block addresses and block counts are never confused
//! with byte offsets.

/// A logical block address, in units of the device's logical block size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lba(pub u64);

/// A number of logical blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BlockCount(pub u64);

impl Lba {
    /// Byte offset of this block for a given block size.
    pub fn to_bytes(self, block_size: u32) -> u64 {
        self.0 * block_size as u64
    }
}

impl BlockCount {
    pub fn to_bytes(self, block_size: u32) -> u64 {
        self.0 * block_size as u64
    }
}
