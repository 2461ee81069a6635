//! The sessions the target has: found by (initiator, ISID, target) for
//! session reinstatement, and by target for task management that reaches
//! across sessions (CLEAR TASK SET, LUN RESET, TARGET RESET).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use crate::scsi::ItNexus;

use super::seq::CmdWindow;

/// A command running on a logical unit.
pub struct RunningTask {
    pub lun: u64,
    pub immediate: bool,
    pub abort: Option<AbortHandle>,
}

/// The state of one session that other sessions may need to reach.
pub struct SessionShared {
    pub nexus: Arc<ItNexus>,
    pub target: String,
    pub tsih: u16,
    /// Cancelled to end the session (reinstatement, reset, shutdown).
    pub stop: CancellationToken,
    pub window: CmdWindow,
    pub tasks: Mutex<HashMap<u32, RunningTask>>,
}

impl SessionShared {
    pub fn tasks(&self) -> std::sync::MutexGuard<'_, HashMap<u32, RunningTask>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Aborts the running tasks `pick` selects; their responses are never
    /// sent. Returns how many were aborted.
    pub fn abort_tasks(&self, pick: impl Fn(u32, &RunningTask) -> bool) -> usize {
        let mut tasks = self.tasks();
        let victims: Vec<u32> = tasks.iter().filter(|(itt, t)| pick(**itt, t)).map(|(itt, _)| *itt).collect();
        for itt in &victims {
            if let Some(t) = tasks.remove(itt) {
                if let Some(h) = t.abort {
                    h.abort();
                }
                if !t.immediate {
                    self.window.complete();
                }
            }
        }
        victims.len()
    }
}

/// A session as listed for the admin.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub initiator_port: String,
    pub target: String,
    pub tsih: u16,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct SessionKey {
    initiator: String,
    isid: [u8; 6],
    target: String,
}

#[derive(Default)]
pub struct Registry {
    sessions: Mutex<HashMap<SessionKey, Arc<SessionShared>>>,
    next_tsih: AtomicU16,
}

impl Registry {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<SessionKey, Arc<SessionShared>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh nonzero TSIH.
    pub fn new_tsih(&self) -> u16 {
        loop {
            let t = self.next_tsih.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            if t != 0 {
                return t;
            }
        }
    }

    /// Registers a new session, returning the one it reinstates (same
    /// initiator port and target), which the caller must wait out.
    pub fn insert(&self, initiator: &str, isid: [u8; 6], s: Arc<SessionShared>) -> Option<Arc<SessionShared>> {
        let key = SessionKey { initiator: initiator.to_string(), isid, target: s.target.clone() };
        let old = self.map().insert(key, s);
        if let Some(o) = &old {
            o.stop.cancel();
        }
        old
    }

    /// Removes a session when it ends (only if it is still the registered one).
    pub fn remove(&self, initiator: &str, isid: [u8; 6], s: &Arc<SessionShared>) {
        let key = SessionKey { initiator: initiator.to_string(), isid, target: s.target.clone() };
        let mut m = self.map();
        if m.get(&key).is_some_and(|cur| Arc::ptr_eq(cur, s)) {
            m.remove(&key);
        }
    }

    pub fn find_tsih(&self, tsih: u16) -> bool {
        self.map().values().any(|s| s.tsih == tsih)
    }

    /// Every session of a target.
    pub fn of_target(&self, target: &str) -> Vec<Arc<SessionShared>> {
        self.map().values().filter(|s| s.target == target).cloned().collect()
    }

    pub fn end_target(&self, target: &str) {
        for s in self.of_target(target) {
            s.stop.cancel();
        }
    }

    pub fn end_all(&self) {
        for s in self.map().values() {
            s.stop.cancel();
        }
    }

    pub fn list(&self) -> Vec<SessionInfo> {
        self.map()
            .values()
            .map(|s| SessionInfo { initiator_port: s.nexus.initiator_port.clone(), target: s.target.clone(), tsih: s.tsih })
            .collect()
    }
}
