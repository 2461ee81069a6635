//! The sessions the target has: found by (initiator, ISID, target) for
//! session reinstatement, and by target for task management that reaches
//! across sessions (CLEAR TASK SET, LUN RESET, TARGET RESET).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use crate::scsi::ItNexus;

use super::hangup::HangupProbe;
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
    /// Cancelled to ask the initiator to log out (see `logout`).
    pub logout: CancellationToken,
    pub window: CmdWindow,
    pub tasks: Mutex<HashMap<u32, RunningTask>>,
    /// None when the socket could not be duplicated (out of descriptors):
    /// such a session ends only when its own task sees the close.
    pub hangup: Option<HangupProbe>,
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

    /// Takes out the sessions of `target` whose initiator has hung up but
    /// whose task has not yet seen it, so that the caller can end their
    /// nexuses now (see `hangup`).
    pub fn take_hung_up(&self, target: &str) -> Vec<Arc<SessionShared>> {
        let mut m = self.map();
        let gone: Vec<SessionKey> = m
            .iter()
            .filter(|(k, s)| k.target == target && s.hangup.as_ref().is_some_and(HangupProbe::hung_up))
            .map(|(k, _)| k.clone())
            .collect();
        gone.iter().filter_map(|k| m.remove(k)).collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    fn session(id: u64, target: &str, socket: &TcpStream) -> Arc<SessionShared> {
        Arc::new(SessionShared {
            nexus: Arc::new(ItNexus {
                id,
                initiator_port: format!("iqn.2026-11.test:i,i,0x00000000000{id}"),
                initiator_name: "iqn.2026-11.test:i".into(),
                isid: [0, 0, 0, 0, 0, id as u8],
                target_port: format!("{target},t,0x0001"),
                relative_port: 1,
            }),
            target: target.into(),
            tsih: id as u16,
            stop: CancellationToken::new(),
            logout: CancellationToken::new(),
            window: CmdWindow::new(1, 16),
            tasks: Mutex::new(HashMap::new()),
            hangup: HangupProbe::new(socket).ok(),
        })
    }

    /// Three sessions: one of the target whose initiator hung up, one of
    /// the target still connected, and a hung-up one of another target.
    /// Only the first is taken out, and only once.
    #[test]
    fn takes_only_the_hung_up_sessions_of_the_target() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut clients = Vec::new();
        let mut sockets = Vec::new();
        for _ in 0..3 {
            clients.push(Some(TcpStream::connect(addr).unwrap()));
            sockets.push(listener.accept().unwrap().0);
        }
        let registry = Registry::default();
        let sessions: Vec<_> = [(1, "iqn.t:a"), (2, "iqn.t:a"), (3, "iqn.t:b")]
            .iter()
            .zip(&sockets)
            .map(|((id, target), s)| session(*id, target, s))
            .collect();
        for s in &sessions {
            assert!(registry.insert(&s.nexus.initiator_name, s.nexus.isid, s.clone()).is_none());
        }
        clients[0] = None;
        clients[2] = None;
        // Bounded wait for the FINs to cross loopback.
        let gone = (0..100)
            .find_map(|_| {
                std::thread::sleep(std::time::Duration::from_millis(1));
                sessions[0].hangup.as_ref().is_some_and(HangupProbe::hung_up).then(|| registry.take_hung_up("iqn.t:a"))
            })
            .expect("the closed connection was never seen");
        assert_eq!(gone.iter().map(|s| s.nexus.id).collect::<Vec<_>>(), vec![1]);
        assert!(registry.take_hung_up("iqn.t:a").is_empty());
        let left: Vec<u16> = registry.of_target("iqn.t:a").iter().map(|s| s.tsih).collect();
        assert_eq!(left, vec![2]);
        assert_eq!(registry.of_target("iqn.t:b").len(), 1);
    }
}
