//! `TapeIndex::decode` on arbitrary bytes: it must never panic, and every
//! index it accepts must encode back to exactly the same bytes and answer
//! queries consistently.
//!
//! Input: the bytes to decode. Seeds are valid encodings, so that mutations
//! reach past the checksum (libFuzzer's CMP tracing finds crc values).

#![no_main]

use libfuzzer_sys::fuzz_target;
use vtl::format::{TapeIndex, TapeObject};

fuzz_target!(|input: &[u8]| {
    let Ok(index) = TapeIndex::decode(input) else { return };
    assert_eq!(index.encode(), input, "accepted a non-canonical encoding");
    let count = index.object_count();
    let mut filemarks = 0;
    for n in [0, 1, count / 2, count.saturating_sub(1), count, count + 1] {
        match index.object(n) {
            Some(TapeObject::Record { offset, len }) => {
                assert!(offset + len as u64 <= index.data_end());
                assert_eq!(index.offset_of(n), offset);
            }
            Some(TapeObject::Filemark) => filemarks += 1,
            None => assert!(n >= count),
        }
        let before = index.filemarks_before(n);
        assert!(before <= index.filemark_count());
        if let Some(f) = index.next_filemark(n) {
            assert!(f >= n && index.object(f) == Some(TapeObject::Filemark));
        }
        if let Some(f) = index.previous_filemark(n) {
            assert!(f < n && index.object(f) == Some(TapeObject::Filemark));
        }
    }
    assert!(filemarks <= 6);
    let mut cut = index.clone();
    cut.truncate(count / 2);
    assert_eq!(TapeIndex::decode(&cut.encode()), Ok(cut));
});
