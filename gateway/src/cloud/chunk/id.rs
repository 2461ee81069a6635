use std::fmt;
use std::str::FromStr;

/// A chunk's identity: the keyed BLAKE3 hash of its plaintext. Equal
/// content under one data key gives one id, hence one object.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({self})")
    }
}

/// The id was not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a chunk id is 64 hex digits")]
pub struct ParseChunkIdError;

impl FromStr for ChunkId {
    type Err = ParseChunkIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| ParseChunkIdError)?;
        Ok(ChunkId(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = ChunkId([0xab; 32]);
        assert_eq!(id.to_string().parse::<ChunkId>(), Ok(id));
        assert_eq!("xyz".parse::<ChunkId>(), Err(ParseChunkIdError));
        assert_eq!("ab".repeat(31).parse::<ChunkId>(), Err(ParseChunkIdError));
    }
}
