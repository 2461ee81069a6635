//! Exclusive locks over block ranges: COMPARE AND WRITE, WRITE ATOMIC and
//! ORWRITE read-modify-write their range, so every write holds the lock of
//! the range it changes and overlapping writers run one after another.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;

use super::types::{BlockCount, Lba};

#[derive(Default)]
pub struct RangeLock {
    held: Mutex<Vec<(u64, u64, u64)>>,
    released: Notify,
    next_id: AtomicU64,
}

/// Holds `[start, end)` until dropped (also when the command is cancelled).
pub struct RangeGuard<'a> {
    lock: &'a RangeLock,
    id: u64,
}

impl RangeLock {
    /// Waits until no held range overlaps `lba..lba+count`, then holds it.
    pub async fn lock(&self, lba: Lba, count: BlockCount) -> RangeGuard<'_> {
        let (start, end) = (lba.0, lba.0.saturating_add(count.0.max(1)));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        loop {
            // Registered before the check, so a release in between is seen.
            let released = self.released.notified();
            {
                let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
                if !held.iter().any(|&(s, e, _)| s < end && start < e) {
                    held.push((start, end, id));
                    return RangeGuard { lock: self, id };
                }
            }
            released.await;
        }
    }
}

impl Drop for RangeGuard<'_> {
    fn drop(&mut self) {
        let mut held = self.lock.held.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|&(_, _, id)| id != self.id);
        drop(held);
        self.lock.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn overlapping_ranges_wait_disjoint_do_not() {
        let lock = Arc::new(RangeLock::default());
        let g = lock.lock(Lba(10), BlockCount(10)).await;
        // Disjoint: immediate.
        let _other = tokio::time::timeout(Duration::from_millis(50), lock.lock(Lba(20), BlockCount(5))).await.unwrap();
        // Overlapping: blocks until the first guard goes.
        let l2 = lock.clone();
        let waiter = tokio::spawn(async move {
            let _g = l2.lock(Lba(15), BlockCount(1)).await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(g);
        tokio::time::timeout(Duration::from_secs(1), waiter).await.unwrap().unwrap();
    }
}
