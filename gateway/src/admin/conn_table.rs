//! The open connections of one management listener, bounded.
//!
//! At the cap a new client does not wait behind connections that are only
//! holding a socket: the one idle the longest (no request in flight) is
//! asked to close, the way web servers reuse keep-alive slots. Only when
//! every connection is busy does the newcomer wait. So thousands of idle
//! sockets cost a bounded number of descriptors and never lock out a
//! health check or an admin.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

struct Entry {
    in_flight: usize,
    last_active: Instant,
    close: CancellationToken,
}

pub(crate) struct ConnTable {
    max: usize,
    open: Mutex<(u64, HashMap<u64, Entry>)>,
    freed: Notify,
}

/// One admitted connection; dropping it frees its place.
pub(crate) struct ConnSlot {
    table: Arc<ConnTable>,
    id: u64,
    /// Cancelled when the connection should close (evicted while idle).
    pub close: CancellationToken,
}

/// Marks a request in flight on its connection until dropped.
pub(crate) struct Busy {
    table: Arc<ConnTable>,
    id: u64,
}

impl ConnTable {
    pub(crate) fn new(max: usize) -> Arc<ConnTable> {
        Arc::new(ConnTable { max: max.max(1), open: Mutex::new((0, HashMap::new())), freed: Notify::new() })
    }

    /// Waits for a place, evicting the longest-idle connection at the cap.
    pub(crate) async fn admit(self: &Arc<Self>) -> ConnSlot {
        loop {
            let freed = self.freed.notified();
            {
                let mut guard = self.open.lock();
                let (next, open) = &mut *guard;
                if open.len() < self.max {
                    *next += 1;
                    let close = CancellationToken::new();
                    open.insert(*next, Entry { in_flight: 0, last_active: Instant::now(), close: close.clone() });
                    return ConnSlot { table: self.clone(), id: *next, close };
                }
                let idlest = open
                    .values()
                    .filter(|e| e.in_flight == 0 && !e.close.is_cancelled())
                    .min_by_key(|e| e.last_active);
                if let Some(e) = idlest {
                    e.close.cancel();
                }
            }
            freed.await;
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.open.lock().1.len()
    }
}

impl ConnSlot {
    /// What the connection's request handler marks requests with (it
    /// outlives any borrow of the slot).
    pub(crate) fn busy_source(&self) -> BusySource {
        BusySource { table: self.table.clone(), id: self.id }
    }

    #[cfg(test)]
    fn busy(&self) -> Busy {
        self.busy_source().busy()
    }
}

#[derive(Clone)]
pub(crate) struct BusySource {
    table: Arc<ConnTable>,
    id: u64,
}

impl BusySource {
    pub(crate) fn busy(&self) -> Busy {
        if let Some(e) = self.table.open.lock().1.get_mut(&self.id) {
            e.in_flight += 1;
        }
        Busy { table: self.table.clone(), id: self.id }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(e) = self.table.open.lock().1.get_mut(&self.id) {
            e.in_flight = e.in_flight.saturating_sub(1);
            e.last_active = Instant::now();
        }
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.table.open.lock().1.remove(&self.id);
        self.table.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn at_the_cap_the_longest_idle_connection_gives_way() {
        let table = ConnTable::new(2);
        let a = table.admit().await;
        let b = table.admit().await;
        let busy_b = b.busy();
        let waiting = tokio::spawn({
            let table = table.clone();
            async move { table.admit().await }
        });
        tokio::time::timeout(Duration::from_secs(5), a.close.cancelled()).await.expect("idle a asked to close");
        assert!(!b.close.is_cancelled(), "a busy connection is never evicted");
        drop(a);
        let c = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("admitted").expect("task");
        assert_eq!(table.len(), 2);
        // Every connection busy: a newcomer waits and evicts nobody.
        let busy_c = c.busy();
        let blocked = tokio::spawn({
            let table = table.clone();
            async move { table.admit().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!blocked.is_finished() && !b.close.is_cancelled() && !c.close.is_cancelled());
        drop(busy_b);
        drop(busy_c);
        drop(b);
        tokio::time::timeout(Duration::from_secs(5), blocked).await.expect("admitted after a close").expect("task");
    }
}
