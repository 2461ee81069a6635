//! A fixed-size set of sector numbers: which sectors of a chunk hold valid
//! data. Validity is tracked per sector so that a small write into a chunk
//! that is not cached never waits for a fetch.

use std::ops::Range;

#[derive(Clone, PartialEq, Eq, Default)]
pub struct SectorSet {
    len: u32,
    words: Vec<u64>,
}

impl SectorSet {
    /// An empty set over `len` sectors.
    pub fn new(len: u32) -> Self {
        SectorSet { len, words: vec![0; (len as usize).div_ceil(64)] }
    }

    /// How many sectors the set ranges over (not how many are in it).
    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn contains(&self, sector: u32) -> bool {
        sector < self.len && self.words[(sector / 64) as usize] & (1 << (sector % 64)) != 0
    }

    pub fn insert_range(&mut self, range: Range<u32>) {
        for s in range.start..range.end.min(self.len) {
            self.words[(s / 64) as usize] |= 1 << (s % 64);
        }
    }

    pub fn remove(&mut self, sector: u32) {
        if sector < self.len {
            self.words[(sector / 64) as usize] &= !(1 << (sector % 64));
        }
    }

    pub fn count(&self) -> u32 {
        self.words.iter().map(|w| w.count_ones()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    /// True when every sector of `range` is in the set.
    pub fn contains_range(&self, range: Range<u32>) -> bool {
        range.clone().all(|s| self.contains(s))
    }

    /// The members, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|s| self.contains(*s))
    }

    /// Maximal runs of members, ascending: what one pread can cover.
    pub fn runs(&self) -> Vec<Range<u32>> {
        let mut runs: Vec<Range<u32>> = Vec::new();
        for s in self.iter() {
            match runs.last_mut() {
                Some(run) if run.end == s => run.end = s + 1,
                _ => runs.push(s..s + 1),
            }
        }
        runs
    }

    /// Maximal runs of non-members: the parts still to fetch.
    pub fn gaps(&self) -> Vec<Range<u32>> {
        let mut complement = SectorSet::new(self.len);
        for s in 0..self.len {
            if !self.contains(s) {
                complement.insert_range(s..s + 1);
            }
        }
        complement.runs()
    }

    pub(crate) fn words(&self) -> &[u64] {
        &self.words
    }

    pub(crate) fn from_words(len: u32, words: Vec<u64>) -> Option<Self> {
        (words.len() == (len as usize).div_ceil(64)).then_some(SectorSet { len, words })
    }
}

impl std::fmt::Debug for SectorSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SectorSet{:?}", self.runs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_gaps_partition_the_range() {
        let mut set = SectorSet::new(130);
        set.insert_range(3..70);
        set.insert_range(100..101);
        assert_eq!(set.runs(), vec![3..70, 100..101]);
        assert_eq!(set.gaps(), vec![0..3, 70..100, 101..130]);
        assert_eq!(set.count(), 68);
        set.remove(3);
        assert!(!set.contains(3) && set.contains(4));
        assert!(set.contains_range(4..70) && !set.contains_range(60..71));
    }
}
