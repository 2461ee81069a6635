//! The in-memory index: runs of equal-length records and runs of
//! filemarks, each with the object number, stream offset and filemark count
//! where it starts, so that every query is one binary search.

use super::{FormatError, MAX_OBJECTS, MAX_RECORD_LEN};

/// What a run holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RunKind {
    /// Records of this many bytes each.
    Records(u32),
    Filemarks,
}

/// `count` consecutive objects of one kind. The three `first`/`offset`/
/// `filemarks_before` fields are derived from the runs before it; only the
/// kind and count are stored on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Run {
    pub kind: RunKind,
    pub count: u64,
    /// Object number of the run's first object.
    first: u64,
    /// Stream offset of the run's first byte.
    offset: u64,
    /// Filemarks among the objects before the run.
    filemarks_before: u64,
}

impl Run {
    fn end(&self) -> u64 {
        self.first + self.count
    }

    fn bytes(&self) -> u64 {
        match self.kind {
            RunKind::Records(len) => self.count * len as u64,
            RunKind::Filemarks => 0,
        }
    }

    fn filemarks(&self) -> u64 {
        match self.kind {
            RunKind::Records(_) => 0,
            RunKind::Filemarks => self.count,
        }
    }
}

/// One logical object as the index knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapeObject {
    Record { offset: u64, len: u32 },
    Filemark,
}

/// Consecutive records of one length starting at object `first`: their
/// payloads are contiguous in the stream, so one read fetches them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSpan {
    pub first: u64,
    pub offset: u64,
    pub record_len: u32,
    pub count: u64,
}

impl RecordSpan {
    pub fn bytes(&self) -> u64 {
        self.count * self.record_len as u64
    }
}

/// Where every record and filemark of a tape sits in its byte stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TapeIndex {
    runs: Vec<Run>,
}

impl TapeIndex {
    pub fn new() -> TapeIndex {
        TapeIndex::default()
    }

    /// Number of logical objects: the object number of end of data.
    pub fn object_count(&self) -> u64 {
        self.runs.last().map_or(0, Run::end)
    }

    /// Stream bytes the tape uses: where the next record's payload goes.
    pub fn data_end(&self) -> u64 {
        self.runs.last().map_or(0, |r| r.offset + r.bytes())
    }

    pub fn filemark_count(&self) -> u64 {
        self.runs.last().map_or(0, |r| r.filemarks_before + r.filemarks())
    }

    /// Number of runs: what the index costs, in memory and encoded.
    pub fn run_count(&self) -> usize {
        self.runs.len()
    }

    pub(super) fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// The run holding object `n`, if `n` is before end of data.
    fn run_of(&self, n: u64) -> Option<(usize, &Run)> {
        let i = self.runs.partition_point(|r| r.first <= n).checked_sub(1)?;
        let run = self.runs.get(i)?;
        (n < run.end()).then_some((i, run))
    }

    /// Object `n`, or `None` at or past end of data.
    pub fn object(&self, n: u64) -> Option<TapeObject> {
        let (_, run) = self.run_of(n)?;
        Some(match run.kind {
            RunKind::Records(len) => TapeObject::Record { offset: run.offset + (n - run.first) * len as u64, len },
            RunKind::Filemarks => TapeObject::Filemark,
        })
    }

    /// Stream offset where object `n` starts; `data_end` at or past end of
    /// data.
    pub fn offset_of(&self, n: u64) -> u64 {
        match self.run_of(n) {
            Some((_, run)) => match run.kind {
                RunKind::Records(len) => run.offset + (n - run.first) * len as u64,
                RunKind::Filemarks => run.offset,
            },
            None => self.data_end(),
        }
    }

    /// The records from object `n` on that share its run, at most `max`.
    /// `None` if object `n` is a filemark or end of data.
    pub fn record_span(&self, n: u64, max: u64) -> Option<RecordSpan> {
        let (_, run) = self.run_of(n)?;
        let RunKind::Records(record_len) = run.kind else { return None };
        Some(RecordSpan {
            first: n,
            offset: run.offset + (n - run.first) * record_len as u64,
            record_len,
            count: (run.end() - n).min(max),
        })
    }

    /// Filemarks among objects `0..n` (the file number at position `n`).
    pub fn filemarks_before(&self, n: u64) -> u64 {
        let Some(i) = self.runs.partition_point(|r| r.first < n).checked_sub(1) else { return 0 };
        let run = &self.runs[i];
        let inside = n.min(run.end()) - run.first;
        run.filemarks_before + if run.kind == RunKind::Filemarks { inside } else { 0 }
    }

    /// Object number of the `k`-th filemark (from 0).
    pub fn filemark_position(&self, k: u64) -> Option<u64> {
        let i = self.runs.partition_point(|r| r.filemarks_before + r.filemarks() <= k);
        let run = self.runs.get(i)?;
        // The first run whose filemarks reach past k holds the k-th one.
        Some(run.first + (k - run.filemarks_before))
    }

    /// The first filemark at or after object `n`.
    pub fn next_filemark(&self, n: u64) -> Option<u64> {
        self.filemark_position(self.filemarks_before(n))
    }

    /// The last filemark before object `n`.
    pub fn previous_filemark(&self, n: u64) -> Option<u64> {
        self.filemark_position(self.filemarks_before(n).checked_sub(1)?)
    }

    /// Appends `count` records of `len` bytes each at end of data.
    pub fn append_records(&mut self, len: u32, count: u64) -> Result<(), FormatError> {
        if len == 0 || len > MAX_RECORD_LEN {
            return Err(FormatError::RecordLength(len as u64));
        }
        self.append(RunKind::Records(len), count)
    }

    /// Appends `count` filemarks at end of data.
    pub fn append_filemarks(&mut self, count: u64) -> Result<(), FormatError> {
        self.append(RunKind::Filemarks, count)
    }

    pub(super) fn append(&mut self, kind: RunKind, count: u64) -> Result<(), FormatError> {
        if count == 0 {
            return Ok(());
        }
        let objects = self.object_count().checked_add(count).filter(|&n| n <= MAX_OBJECTS);
        let bytes = match kind {
            RunKind::Records(len) => count.checked_mul(len as u64).and_then(|b| b.checked_add(self.data_end())),
            RunKind::Filemarks => Some(self.data_end()),
        };
        if objects.is_none() || bytes.is_none() {
            return Err(FormatError::TooLarge);
        }
        match self.runs.last_mut() {
            Some(last) if last.kind == kind => last.count += count,
            _ => {
                let run = Run {
                    kind,
                    count,
                    first: self.object_count(),
                    offset: self.data_end(),
                    filemarks_before: self.filemark_count(),
                };
                self.runs.push(run);
            }
        }
        Ok(())
    }

    /// Drops object `n` and everything after it (an overwrite or an erase
    /// at `n`). Nothing happens at or past end of data.
    pub fn truncate(&mut self, n: u64) {
        let Some((i, run)) = self.run_of(n) else { return };
        if n == run.first {
            self.runs.truncate(i);
        } else {
            self.runs.truncate(i + 1);
            if let Some(last) = self.runs.last_mut() {
                last.count = n - last.first;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_records_share_one_run() {
        let mut idx = TapeIndex::new();
        // 1.5 GB of 64 KiB records, written 16 at a time.
        for _ in 0..(1_500_000_000u64 / (64 << 10) / 16) {
            idx.append_records(64 << 10, 16).unwrap();
        }
        idx.append_filemarks(1).unwrap();
        assert_eq!(idx.run_count(), 2);
        assert_eq!(idx.object_count(), 22880 + 1);
        assert_eq!(idx.object(22880), Some(TapeObject::Filemark));
        assert_eq!(idx.object(3), Some(TapeObject::Record { offset: 3 * 65536, len: 65536 }));
    }

    #[test]
    fn filemark_queries() {
        let mut idx = TapeIndex::new();
        idx.append_records(10, 3).unwrap(); // 0..3
        idx.append_filemarks(2).unwrap(); // 3, 4
        idx.append_records(20, 1).unwrap(); // 5
        idx.append_filemarks(1).unwrap(); // 6
        assert_eq!(idx.filemarks_before(0), 0);
        assert_eq!(idx.filemarks_before(4), 1);
        assert_eq!(idx.filemarks_before(7), 3);
        assert_eq!(idx.filemarks_before(100), 3);
        assert_eq!(idx.next_filemark(0), Some(3));
        assert_eq!(idx.next_filemark(5), Some(6));
        assert_eq!(idx.next_filemark(7), None);
        assert_eq!(idx.previous_filemark(3), None);
        assert_eq!(idx.previous_filemark(5), Some(4));
        assert_eq!(idx.offset_of(5), 30);
        assert_eq!(idx.data_end(), 50);
        idx.truncate(4);
        assert_eq!(idx.object_count(), 4);
        assert_eq!(idx.data_end(), 30);
        assert_eq!(idx.filemark_count(), 1);
    }

    #[test]
    fn invalid_appends_are_refused() {
        let mut idx = TapeIndex::new();
        assert_eq!(idx.append_records(0, 1), Err(FormatError::RecordLength(0)));
        assert!(idx.append_records(MAX_RECORD_LEN + 1, 1).is_err());
        assert_eq!(idx.append_filemarks(MAX_OBJECTS + 1), Err(FormatError::TooLarge));
        assert_eq!(idx, TapeIndex::new());
    }
}
