//! S3-FIFO eviction (Yang et al., SOSP 2023) over the clean, unpinned
//! chunks.
//!
//! Why not LRU: backup traffic is dominated by one-pass streams that LRU
//! lets flush the hot set. S3-FIFO admits new chunks into a small FIFO
//! (10 % of capacity); only those read again before leaving it graduate to
//! the main FIFO, whose entries get a second chance per recent access. A
//! ghost FIFO of recently dropped keys sends a quickly returning chunk
//! straight to main. Every operation is O(1) amortised: queues delete
//! lazily, with stamps telling stale queue slots apart.
//!
//! It is public so that benchmarks can replay traces against it.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

#[derive(Debug, Clone, Copy)]
struct Tracked {
    freq: u8,
    in_main: bool,
    stamp: u64,
}

#[derive(Debug)]
pub struct S3Fifo<K> {
    capacity: usize,
    tracked: HashMap<K, Tracked>,
    small: VecDeque<(K, u64)>,
    main: VecDeque<(K, u64)>,
    small_len: usize,
    ghost: VecDeque<(K, u64)>,
    ghost_set: HashMap<K, u64>,
    next_stamp: u64,
}

/// Accesses counted per entry before saturating.
const MAX_FREQ: u8 = 3;

impl<K: Hash + Eq + Clone> S3Fifo<K> {
    /// `capacity` sizes the small and ghost queues; it is the number of
    /// entries the caller intends to hold.
    pub fn new(capacity: usize) -> Self {
        S3Fifo {
            capacity: capacity.max(1),
            tracked: HashMap::new(),
            small: VecDeque::new(),
            main: VecDeque::new(),
            small_len: 0,
            ghost: VecDeque::new(),
            ghost_set: HashMap::new(),
            next_stamp: 0,
        }
    }

    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
    }

    pub fn len(&self) -> usize {
        self.tracked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracked.is_empty()
    }

    pub fn contains(&self, key: &K) -> bool {
        self.tracked.contains_key(key)
    }

    fn stamp(&mut self) -> u64 {
        self.next_stamp += 1;
        self.next_stamp
    }

    /// Starts tracking `key` (no-op if tracked).
    pub fn insert(&mut self, key: K) {
        if self.tracked.contains_key(&key) {
            return;
        }
        let stamp = self.stamp();
        let in_main = self.ghost_set.remove(&key).is_some();
        if in_main {
            self.main.push_back((key.clone(), stamp));
        } else {
            self.small.push_back((key.clone(), stamp));
            self.small_len += 1;
        }
        self.tracked.insert(key, Tracked { freq: 0, in_main, stamp });
    }

    /// Records a hit.
    pub fn access(&mut self, key: &K) {
        if let Some(t) = self.tracked.get_mut(key) {
            t.freq = (t.freq + 1).min(MAX_FREQ);
        }
    }

    /// Stops tracking `key` without a ghost (it was dirtied, pinned or
    /// discarded, not evicted).
    pub fn remove(&mut self, key: &K) {
        if let Some(t) = self.tracked.remove(key) {
            if !t.in_main {
                self.small_len -= 1;
            }
        }
    }

    /// Chooses and untracks the next victim.
    pub fn pop_victim(&mut self) -> Option<K> {
        let small_target = (self.capacity / 10).max(1);
        while !self.tracked.is_empty() {
            let from_small = self.small_len >= small_target || self.main.is_empty();
            let victim = if from_small { self.evict_small() } else { self.evict_main() };
            if victim.is_some() {
                return victim;
            }
        }
        None
    }

    fn is_live(&self, key: &K, stamp: u64) -> bool {
        self.tracked.get(key).is_some_and(|t| t.stamp == stamp)
    }

    fn evict_small(&mut self) -> Option<K> {
        let (key, stamp) = self.small.pop_front()?;
        if !self.is_live(&key, stamp) {
            return None;
        }
        self.small_len -= 1;
        let freq = self.tracked.get(&key).map_or(0, |t| t.freq);
        if freq > 0 {
            // Read again while on probation: promote.
            let stamp = self.stamp();
            self.tracked.insert(key.clone(), Tracked { freq: 0, in_main: true, stamp });
            self.main.push_back((key, stamp));
            return None;
        }
        self.tracked.remove(&key);
        self.remember_ghost(key.clone());
        Some(key)
    }

    fn evict_main(&mut self) -> Option<K> {
        let (key, stamp) = self.main.pop_front()?;
        if !self.is_live(&key, stamp) {
            return None;
        }
        let t = self.tracked.get_mut(&key)?;
        if t.freq > 0 {
            t.freq -= 1;
            self.main.push_back((key, stamp));
            return None;
        }
        self.tracked.remove(&key);
        Some(key)
    }

    fn remember_ghost(&mut self, key: K) {
        let stamp = self.stamp();
        self.ghost_set.insert(key.clone(), stamp);
        self.ghost.push_back((key, stamp));
        let ghost_capacity = self.capacity - (self.capacity / 10).max(1).min(self.capacity);
        while self.ghost_set.len() > ghost_capacity.max(1) {
            match self.ghost.pop_front() {
                Some((old, s)) if self.ghost_set.get(&old) == Some(&s) => {
                    self.ghost_set.remove(&old);
                }
                Some(_) => {}
                None => break,
            }
        }
        // Stale ghost queue slots are dropped lazily above; bound them too.
        if self.ghost.len() > 4 * ghost_capacity.max(1) {
            let set = &self.ghost_set;
            self.ghost.retain(|(k, s)| set.get(k) == Some(s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_scan_does_not_flush_the_hot_set() {
        let mut policy = S3Fifo::new(10);
        let mut resident = std::collections::HashSet::new();
        let admit = |policy: &mut S3Fifo<u32>, resident: &mut std::collections::HashSet<u32>, k: u32| {
            if resident.contains(&k) {
                policy.access(&k);
                return;
            }
            policy.insert(k);
            resident.insert(k);
            while policy.len() > 10 {
                let victim = policy.pop_victim().expect("victim");
                resident.remove(&victim);
            }
        };
        for _ in 0..3 {
            for k in 0..5 {
                admit(&mut policy, &mut resident, k);
            }
        }
        for k in 100..200 {
            admit(&mut policy, &mut resident, k);
        }
        assert!((0..5).all(|k| resident.contains(&k)), "hot keys evicted by a scan: {resident:?}");
    }

    #[test]
    fn removed_keys_are_never_victims() {
        let mut policy = S3Fifo::new(4);
        for k in 0..4 {
            policy.insert(k);
        }
        policy.remove(&0);
        policy.remove(&2);
        let victims: Vec<_> = std::iter::from_fn(|| policy.pop_victim()).collect();
        assert_eq!(victims, vec![1, 3]);
        assert!(policy.is_empty());
    }
}
