//! The serialized index (docs/FORMAT.md, "Tapes"): a fixed header, one
//! 16-byte entry per run, a crc32c. Little-endian throughout. The decoder
//! is pure, bounds-checked and accepts only the canonical encoding (no
//! empty runs, no two neighbouring runs that would merge), so that
//! `encode(decode(b)) == b` for every accepted `b`.

use super::index::{RunKind, TapeIndex};
use super::{FormatError, MAX_RECORD_LEN};

const MAGIC: &[u8; 8] = b"SGWTAPIX";
const VERSION: u16 = 1;
const HEADER_LEN: usize = 40;
const RUN_LEN: usize = 16;
const CRC_LEN: usize = 4;

const KIND_RECORDS: u8 = 0;
const KIND_FILEMARKS: u8 = 1;

impl TapeIndex {
    /// The index's serialized form.
    pub fn encode(&self) -> Vec<u8> {
        let runs = self.runs();
        let mut b = Vec::with_capacity(HEADER_LEN + runs.len() * RUN_LEN + CRC_LEN);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        // The run count is bounded by the object count, itself < 2^48;
        // a u32 holds any index that fits in memory.
        b.extend_from_slice(&(runs.len() as u32).to_le_bytes());
        b.extend_from_slice(&self.object_count().to_le_bytes());
        b.extend_from_slice(&self.filemark_count().to_le_bytes());
        b.extend_from_slice(&self.data_end().to_le_bytes());
        for run in runs {
            let (kind, len) = match run.kind {
                RunKind::Records(len) => (KIND_RECORDS, len),
                RunKind::Filemarks => (KIND_FILEMARKS, 0),
            };
            b.extend_from_slice(&[kind, 0, 0, 0]);
            b.extend_from_slice(&len.to_le_bytes());
            b.extend_from_slice(&run.count.to_le_bytes());
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses a serialized index. Never panics; any damage is an error.
    pub fn decode(bytes: &[u8]) -> Result<TapeIndex, FormatError> {
        let mut r = Reader(bytes);
        if r.take::<8>()? != *MAGIC {
            return Err(FormatError::BadMagic);
        }
        let version = u16::from_le_bytes(r.take()?);
        if version != VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        if u16::from_le_bytes(r.take()?) != 0 {
            return Err(FormatError::Reserved);
        }
        let run_count = u32::from_le_bytes(r.take()?);
        let expected = HEADER_LEN as u64 + run_count as u64 * RUN_LEN as u64 + CRC_LEN as u64;
        if expected != bytes.len() as u64 {
            return Err(FormatError::Length { expected, actual: bytes.len() as u64 });
        }
        let (body, crc) = bytes.split_at(bytes.len() - CRC_LEN);
        if crc32c::crc32c(body).to_le_bytes() != crc {
            return Err(FormatError::Checksum);
        }
        let objects = u64::from_le_bytes(r.take()?);
        let filemarks = u64::from_le_bytes(r.take()?);
        let data_end = u64::from_le_bytes(r.take()?);
        let mut index = TapeIndex::new();
        let mut previous: Option<RunKind> = None;
        for run in 0..run_count {
            let bad = |reason| FormatError::BadRun { run, reason };
            let [kind, r1, r2, r3] = r.take()?;
            if [r1, r2, r3] != [0; 3] {
                return Err(FormatError::Reserved);
            }
            let len = u32::from_le_bytes(r.take()?);
            let count = u64::from_le_bytes(r.take()?);
            let kind = match (kind, len) {
                (KIND_RECORDS, 1..=MAX_RECORD_LEN) => RunKind::Records(len),
                (KIND_RECORDS, _) => return Err(bad("record length out of range")),
                (KIND_FILEMARKS, 0) => RunKind::Filemarks,
                (KIND_FILEMARKS, _) => return Err(bad("filemark run with a length")),
                _ => return Err(bad("unknown kind")),
            };
            if count == 0 {
                return Err(bad("empty run"));
            }
            if previous == Some(kind) {
                return Err(bad("not merged with the run before"));
            }
            previous = Some(kind);
            index.append(kind, count)?;
        }
        if (index.object_count(), index.filemark_count(), index.data_end()) != (objects, filemarks, data_end) {
            return Err(FormatError::Totals);
        }
        Ok(index)
    }
}

/// Fixed-size reads from the front of a slice.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], FormatError> {
        let actual = self.0.len() as u64;
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(FormatError::Length { expected: HEADER_LEN as u64 + CRC_LEN as u64, actual })?;
        self.0 = rest;
        Ok(*head)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::format::TapeObject;

    fn sample() -> TapeIndex {
        let mut idx = TapeIndex::new();
        idx.append_records(65536, 1000).unwrap();
        idx.append_filemarks(1).unwrap();
        idx.append_records(512, 3).unwrap();
        idx.append_filemarks(2).unwrap();
        idx
    }

    #[test]
    fn round_trip_and_layout() {
        let idx = sample();
        let b = idx.encode();
        assert_eq!(b.len(), HEADER_LEN + 4 * RUN_LEN + CRC_LEN);
        assert_eq!(&b[..8], MAGIC);
        assert_eq!(u64::from_le_bytes(b[16..24].try_into().unwrap()), 1006);
        assert_eq!(TapeIndex::decode(&b), Ok(idx));
        assert_eq!(TapeIndex::decode(&TapeIndex::new().encode()), Ok(TapeIndex::new()));
    }

    /// The fuzz seeds are written by a Python encoder that follows
    /// docs/FORMAT.md: they must decode.
    #[test]
    fn independent_encodings_decode() {
        let mixed = TapeIndex::decode(include_bytes!("../../fuzz/corpus/tape_index/mixed")).unwrap();
        assert_eq!((mixed.object_count(), mixed.filemark_count(), mixed.run_count()), (11, 3, 5));
        assert_eq!(mixed.offset_of(6), 1546);
        let one = TapeIndex::decode(include_bytes!("../../fuzz/corpus/tape_index/one-file")).unwrap();
        assert_eq!(one.data_end(), 22888 * 65536);
    }

    #[test]
    fn damage_is_detected() {
        let b = sample().encode();
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x01;
            assert!(TapeIndex::decode(&bad).is_err(), "flip in byte {i} accepted");
        }
        for n in 0..b.len() {
            assert!(TapeIndex::decode(&b[..n]).is_err());
        }
    }

    /// Re-signs a hand-edited encoding so that only its content is wrong.
    fn resign(mut b: Vec<u8>) -> Vec<u8> {
        let n = b.len() - CRC_LEN;
        let crc = crc32c::crc32c(&b[..n]);
        b[n..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    #[test]
    fn non_canonical_runs_are_refused() {
        let mut idx = TapeIndex::new();
        idx.append_records(10, 1).unwrap();
        idx.append_records(20, 1).unwrap();
        let mut b = idx.encode();
        // Make the second run's length equal the first's: two mergeable runs.
        b[HEADER_LEN + RUN_LEN + 4..HEADER_LEN + RUN_LEN + 8].copy_from_slice(&10u32.to_le_bytes());
        let b = resign(b);
        assert!(matches!(TapeIndex::decode(&b), Err(FormatError::BadRun { run: 1, .. })));
        let mut zero = idx.encode();
        zero[HEADER_LEN + 8..HEADER_LEN + 16].copy_from_slice(&0u64.to_le_bytes());
        assert!(matches!(TapeIndex::decode(&resign(zero)), Err(FormatError::BadRun { run: 0, .. })));
    }

    #[test]
    fn huge_counts_do_not_overflow() {
        let mut b = TapeIndex::new().encode();
        b.truncate(HEADER_LEN);
        b[12..16].copy_from_slice(&2u32.to_le_bytes());
        for _ in 0..2 {
            b.extend_from_slice(&[KIND_RECORDS, 0, 0, 0]);
            b.extend_from_slice(&MAX_RECORD_LEN.to_le_bytes());
            b.extend_from_slice(&u64::MAX.to_le_bytes());
        }
        b.extend_from_slice(&[0; CRC_LEN]);
        assert_eq!(TapeIndex::decode(&resign(b)), Err(FormatError::TooLarge));
    }

    /// One step of a random tape history.
    #[derive(Debug, Clone)]
    enum Op {
        Records(u32, u64),
        Filemarks(u64),
        Truncate(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (prop::sample::select(vec![1u32, 2, 512, 65536, MAX_RECORD_LEN]), 1u64..5)
                .prop_map(|(l, c)| Op::Records(l, c)),
            (1u64..3).prop_map(Op::Filemarks),
            (0u64..40).prop_map(Op::Truncate),
        ]
    }

    /// The naive model: one entry per object, `None` for a filemark.
    fn model_of(ops: &[Op]) -> (TapeIndex, Vec<Option<u32>>) {
        let mut idx = TapeIndex::new();
        let mut model = Vec::new();
        for op in ops {
            match *op {
                Op::Records(len, count) => {
                    idx.append_records(len, count).unwrap();
                    model.extend(std::iter::repeat_n(Some(len), count as usize));
                }
                Op::Filemarks(count) => {
                    idx.append_filemarks(count).unwrap();
                    model.extend(std::iter::repeat_n(None, count as usize));
                }
                Op::Truncate(n) => {
                    idx.truncate(n);
                    model.truncate(n as usize);
                }
            }
        }
        (idx, model)
    }

    proptest! {
        #[test]
        fn index_matches_naive_model(ops in prop::collection::vec(op(), 0..30)) {
            let (idx, model) = model_of(&ops);
            prop_assert_eq!(idx.object_count(), model.len() as u64);
            let fm_positions: Vec<u64> =
                model.iter().enumerate().filter(|(_, o)| o.is_none()).map(|(i, _)| i as u64).collect();
            prop_assert_eq!(idx.filemark_count(), fm_positions.len() as u64);
            let mut offset = 0u64;
            for n in 0..=model.len() as u64 + 2 {
                let expected = model.get(n as usize).map(|o| match o {
                    Some(len) => TapeObject::Record { offset, len: *len },
                    None => TapeObject::Filemark,
                });
                prop_assert_eq!(idx.object(n), expected);
                prop_assert_eq!(idx.offset_of(n), offset);
                let before = fm_positions.iter().filter(|&&p| p < n).count() as u64;
                prop_assert_eq!(idx.filemarks_before(n), before);
                prop_assert_eq!(idx.next_filemark(n), fm_positions.iter().copied().find(|&p| p >= n));
                prop_assert_eq!(idx.previous_filemark(n), fm_positions.iter().copied().rfind(|&p| p < n));
                if let Some(Some(len)) = model.get(n as usize) {
                    let same = model[n as usize..].iter().take_while(|o| **o == Some(*len)).count() as u64;
                    let span = idx.record_span(n, u64::MAX).unwrap();
                    // A span never crosses runs, and runs merge equal records.
                    prop_assert_eq!((span.offset, span.record_len, span.count), (offset, *len, same));
                    offset += *len as u64;
                } else {
                    prop_assert!(idx.record_span(n, 1).is_none());
                }
            }
            prop_assert_eq!(idx.data_end(), offset);
            prop_assert_eq!(TapeIndex::decode(&idx.encode()), Ok(idx));
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(idx) = TapeIndex::decode(&bytes) {
                prop_assert_eq!(idx.encode(), bytes);
            }
        }

        #[test]
        fn decode_of_damaged_encodings_never_panics(ops in prop::collection::vec(op(), 0..10), at in any::<usize>(), byte in any::<u8>()) {
            let (idx, _) = model_of(&ops);
            let mut b = idx.encode();
            let i = at % b.len();
            b[i] = byte;
            let b = resign(b);
            if let Ok(decoded) = TapeIndex::decode(&b) {
                prop_assert_eq!(decoded.encode(), b);
            }
        }
    }
}
