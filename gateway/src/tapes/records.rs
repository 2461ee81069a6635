//! Tape records and their rules: barcodes, sizes, pools and states as AWS
//! Tape Gateway names them, and `tapes.json`, the book of every tape and of
//! every barcode ever used (barcodes are never reused, not even after a
//! delete).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cloud::store::StorageClass;

/// AWS's tape sizes: 100 GiB to 15 TiB (thin: only written data costs).
pub const MIN_TAPE_SIZE: u64 = 100 << 30;
pub const MAX_TAPE_SIZE: u64 = 15 << 40;
/// Tapes one `--prefix --count` request may create (AWS: 1 to 10).
pub const MAX_TAPES_PER_REQUEST: u32 = 10;
/// Barcodes made from a prefix are padded with digits to this length.
const GENERATED_BARCODE_LEN: usize = 8;

/// The archive a tape goes to when it is exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Pool {
    #[default]
    Glacier,
    DeepArchive,
}

impl Pool {
    pub fn storage_class(self) -> StorageClass {
        match self {
            Pool::Glacier => StorageClass::Glacier,
            Pool::DeepArchive => StorageClass::DeepArchive,
        }
    }
}

/// Tape states, named as AWS names them. A deleted tape has no record; its
/// barcode stays in [`TapeBook::used_barcodes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TapeState {
    /// Recorded, not yet in an import/export slot (the application keeps
    /// the mail slots locked).
    Creating,
    /// In the library: a slot or a drive.
    Available,
    /// Exported by the application: its data is still being uploaded.
    InTransitToVts,
    /// Uploaded; its segments are moving to the pool's storage class.
    Archiving,
    /// On the archive shelf, out of the library.
    Archived,
    /// Being restored from the archive.
    Retrieving,
    /// Back in the library, read-only.
    Retrieved,
}

impl TapeState {
    pub const ALL: [TapeState; 7] = [
        TapeState::Creating,
        TapeState::Available,
        TapeState::InTransitToVts,
        TapeState::Archiving,
        TapeState::Archived,
        TapeState::Retrieving,
        TapeState::Retrieved,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TapeState::Creating => "CREATING",
            TapeState::Available => "AVAILABLE",
            TapeState::InTransitToVts => "IN_TRANSIT_TO_VTS",
            TapeState::Archiving => "ARCHIVING",
            TapeState::Archived => "ARCHIVED",
            TapeState::Retrieving => "RETRIEVING",
            TapeState::Retrieved => "RETRIEVED",
        }
    }

    /// Whether the tape's data lives in the cache (it has a segment map
    /// and may have chunks the engine must upload).
    pub fn in_cache(self) -> bool {
        matches!(
            self,
            TapeState::Creating
                | TapeState::Available
                | TapeState::InTransitToVts
                | TapeState::Archiving
                | TapeState::Retrieved
        )
    }
}

/// One tape's persistent record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapeRecord {
    pub barcode: String,
    /// Random, below 2^60: the cache namespace, and the cloud namespace
    /// `tape-<id:016x>`.
    pub id: u64,
    pub size_bytes: u64,
    pub pool: Pool,
    pub worm: bool,
    pub state: TapeState,
    pub created_unix: u64,
    /// Bytes of data on the tape as of its last release or archive.
    #[serde(default)]
    pub used_bytes: u64,
    /// When the tape entered its state (0 for records older than this
    /// field): how long a retrieval or an archive has been running.
    #[serde(default)]
    pub state_since_unix: u64,
}

/// Why a tape request is refused; each maps to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum TapeError {
    #[error("invalid barcode {0:?}: use 5 to 16 characters of A-Z and 0-9")]
    InvalidBarcode(String),
    #[error("invalid barcode prefix {0:?}: use 1 to 4 letters A-Z")]
    InvalidPrefix(String),
    #[error("invalid count {0}: create 1 to {MAX_TAPES_PER_REQUEST} tapes at a time")]
    InvalidCount(u32),
    #[error("invalid size {size}: tapes are {min} to {MAX_TAPE_SIZE} bytes (100 GiB to 15 TiB)")]
    InvalidSize { size: u64, min: u64 },
    #[error("barcode {0} has been used already; barcodes are never reused")]
    BarcodeUsed(String),
    #[error("tape {0} not found")]
    NotFound(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("tape {barcode} is {state}: {why}")]
    WrongState { barcode: String, state: &'static str, why: &'static str },
    #[error("cloud: {0}")]
    Cloud(String),
    #[error("library: {0}")]
    Library(String),
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
    /// The gateway is stopping; the flow resumes at the next start.
    #[error("stopped by shutdown")]
    Cancelled,
}

/// AWS barcode rule: 5 to 16 characters of A-Z and 0-9.
pub fn valid_barcode(barcode: &str) -> bool {
    (5..=16).contains(&barcode.len()) && barcode.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

fn valid_prefix(prefix: &str) -> bool {
    (1..=4).contains(&prefix.len()) && prefix.bytes().all(|b| b.is_ascii_uppercase())
}

pub fn check_size(size: u64, min: u64) -> Result<(), TapeError> {
    if (min..=MAX_TAPE_SIZE).contains(&size) {
        Ok(())
    } else {
        Err(TapeError::InvalidSize { size, min })
    }
}

/// The persistent book: tapes and every barcode ever used.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct TapeBook {
    pub tapes: Vec<TapeRecord>,
    pub used_barcodes: BTreeSet<String>,
}

pub const BOOK_FILE: &str = "tapes.json";

impl TapeBook {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(BOOK_FILE)
    }

    pub fn load(data_dir: &Path) -> Result<TapeBook, TapeError> {
        match std::fs::read(Self::path(data_dir)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| TapeError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TapeBook::default()),
            Err(e) => Err(e.into()),
        }
    }

    pub fn save(&self, data_dir: &Path) -> Result<(), TapeError> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::files::write_atomically(data_dir, BOOK_FILE, &bytes)?;
        Ok(())
    }

    pub fn get(&self, barcode: &str) -> Option<&TapeRecord> {
        self.tapes.iter().find(|t| t.barcode == barcode)
    }

    pub fn get_mut(&mut self, barcode: &str) -> Option<&mut TapeRecord> {
        self.tapes.iter_mut().find(|t| t.barcode == barcode)
    }

    /// Checks barcodes given one by one: valid and never used.
    pub fn check_new(&self, barcode: &str) -> Result<(), TapeError> {
        if !valid_barcode(barcode) {
            return Err(TapeError::InvalidBarcode(barcode.to_owned()));
        }
        if self.used_barcodes.contains(barcode) {
            return Err(TapeError::BarcodeUsed(barcode.to_owned()));
        }
        Ok(())
    }

    /// `count` unused barcodes: `prefix` and the lowest unused numbers,
    /// zero-padded to eight characters (more digits if the numbers need
    /// them).
    pub fn generate(&self, prefix: &str, count: u32) -> Result<Vec<String>, TapeError> {
        if !valid_prefix(prefix) {
            return Err(TapeError::InvalidPrefix(prefix.to_owned()));
        }
        if !(1..=MAX_TAPES_PER_REQUEST).contains(&count) {
            return Err(TapeError::InvalidCount(count));
        }
        let width = GENERATED_BARCODE_LEN - prefix.len();
        let mut out = Vec::new();
        // Bounded: at most `count` numbers past the used ones are tried.
        let limit = self.used_barcodes.len() as u64 + u64::from(count) + 1;
        for n in 1..=limit {
            let barcode = format!("{prefix}{n:0width$}");
            if !valid_barcode(&barcode) {
                break;
            }
            if !self.used_barcodes.contains(&barcode) {
                out.push(barcode);
                if out.len() == count as usize {
                    return Ok(out);
                }
            }
        }
        Err(TapeError::InvalidRequest(format!("no {count} unused barcodes left with prefix {prefix}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn barcode_rules() {
        for good in ["ABCDE", "A0000001", "0123456789ABCDEF"] {
            assert!(valid_barcode(good), "{good}");
        }
        for bad in ["ABCD", "abcde", "ABC-DE", "ABCDE FG", "0123456789ABCDEFG", "ÄBCDE"] {
            assert!(!valid_barcode(bad), "{bad}");
        }
    }

    #[test]
    fn generated_barcodes_skip_used_ones() {
        let mut book = TapeBook::default();
        book.used_barcodes.insert("TST00002".into());
        assert_eq!(book.generate("TST", 3).unwrap(), vec!["TST00001", "TST00003", "TST00004"]);
        assert!(matches!(book.generate("tst", 1), Err(TapeError::InvalidPrefix(_))));
        assert!(matches!(book.generate("ABCDE", 1), Err(TapeError::InvalidPrefix(_))));
        assert!(matches!(book.generate("T", 0), Err(TapeError::InvalidCount(0))));
        assert!(matches!(book.generate("T", 11), Err(TapeError::InvalidCount(11))));
        assert!(book.check_new("TST00002").is_err());
        assert!(book.check_new("TST00005").is_ok());
    }

    #[test]
    fn sizes_and_state_names() {
        assert!(check_size(MIN_TAPE_SIZE, MIN_TAPE_SIZE).is_ok());
        assert!(check_size(MIN_TAPE_SIZE - 1, MIN_TAPE_SIZE).is_err());
        assert!(check_size(MAX_TAPE_SIZE + 1, MIN_TAPE_SIZE).is_err());
        assert!(check_size(64 << 20, 1 << 20).is_ok());
        for s in TapeState::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.name()));
        }
        assert_eq!(serde_json::to_value(Pool::DeepArchive).unwrap(), serde_json::json!("DEEP_ARCHIVE"));
    }
}
