//! Console sessions, kept on the server: the browser holds only a random
//! id in an HttpOnly cookie. A session ends after 30 idle minutes, after
//! 12 hours whatever the activity, or at logout; each carries its own
//! CSRF token.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub const COOKIE_NAME: &str = "sgw_session";

/// Time as the session store sees it; tests move it by hand.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    pub idle: Duration,
    pub absolute: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits { idle: Duration::from_secs(30 * 60), absolute: Duration::from_secs(12 * 3600) }
    }
}

/// A live session, as a request sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub csrf: String,
}

struct Entry {
    session: Session,
    created: Instant,
    last_seen: Instant,
}

/// Sessions at most; the oldest go first when a login would exceed it.
const MAX_SESSIONS: usize = 1000;

pub struct SessionStore {
    limits: SessionLimits,
    clock: Arc<dyn Clock>,
    /// Keyed by the SHA-256 of the cookie's id, so that a memory dump or a
    /// timing side channel on the map does not hand out live cookies.
    sessions: Mutex<HashMap<String, Entry>>,
}

fn digest(id: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, id.as_bytes()))
}

impl SessionStore {
    pub fn new(limits: SessionLimits, clock: Arc<dyn Clock>) -> SessionStore {
        SessionStore { limits, clock, sessions: Mutex::new(HashMap::new()) }
    }

    /// Seconds until a session ends whatever its activity (the cookie's
    /// Max-Age).
    pub fn absolute_secs(&self) -> u64 {
        self.limits.absolute.as_secs()
    }

    /// Starts a session; returns the cookie value and the session.
    pub fn create(&self, user: &str) -> (String, Session) {
        let id = hex::encode(rand::random::<[u8; 32]>());
        let session = Session { user: user.to_string(), csrf: hex::encode(rand::random::<[u8; 24]>()) };
        let now = self.clock.now();
        let mut sessions = self.sessions.lock();
        self.expire_locked(&mut sessions, now);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions.iter().min_by_key(|(_, e)| e.created).map(|(k, _)| k.clone()) {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(digest(&id), Entry { session: session.clone(), created: now, last_seen: now });
        (id, session)
    }

    fn alive(&self, e: &Entry, now: Instant) -> bool {
        now.duration_since(e.last_seen) < self.limits.idle && now.duration_since(e.created) < self.limits.absolute
    }

    fn expire_locked(&self, sessions: &mut HashMap<String, Entry>, now: Instant) {
        sessions.retain(|_, e| self.alive(e, now));
    }

    /// The session a cookie names, if it is alive; the visit counts as
    /// activity.
    pub fn touch(&self, id: &str) -> Option<Session> {
        let now = self.clock.now();
        let key = digest(id);
        let mut sessions = self.sessions.lock();
        let alive = sessions.get(&key).map(|e| self.alive(e, now))?;
        if !alive {
            sessions.remove(&key);
            return None;
        }
        let e = sessions.get_mut(&key)?;
        e.last_seen = now;
        Some(e.session.clone())
    }

    /// Logout: the session is gone on the server, whatever the browser
    /// keeps.
    pub fn destroy(&self, id: &str) {
        self.sessions.lock().remove(&digest(id));
    }

    /// Every session ends (after a password change).
    pub fn destroy_all(&self) {
        self.sessions.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct ManualClock(Mutex<Instant>);

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            *self.0.lock()
        }
    }

    impl ManualClock {
        fn advance(&self, d: Duration) {
            *self.0.lock() += d;
        }
    }

    fn store() -> (Arc<ManualClock>, SessionStore) {
        let clock = Arc::new(ManualClock(Mutex::new(Instant::now())));
        let limits = SessionLimits { idle: Duration::from_secs(60), absolute: Duration::from_secs(300) };
        (clock.clone(), SessionStore::new(limits, clock))
    }

    #[test]
    fn idle_timeout_and_activity() {
        let (clock, s) = store();
        let (id, session) = s.create("admin");
        clock.advance(Duration::from_secs(50));
        assert_eq!(s.touch(&id), Some(session));
        clock.advance(Duration::from_secs(50));
        assert!(s.touch(&id).is_some(), "activity 50 s ago keeps it alive");
        clock.advance(Duration::from_secs(61));
        assert_eq!(s.touch(&id), None);
    }

    #[test]
    fn absolute_timeout_despite_activity() {
        let (clock, s) = store();
        let (id, _) = s.create("admin");
        for _ in 0..5 {
            clock.advance(Duration::from_secs(55));
            assert!(s.touch(&id).is_some());
        }
        clock.advance(Duration::from_secs(30));
        assert_eq!(s.touch(&id), None);
    }

    #[test]
    fn logout_and_unknown_ids() {
        let (_, s) = store();
        let (a, sa) = s.create("admin");
        let (b, _) = s.create("admin");
        assert_ne!(a, b);
        s.destroy(&a);
        assert_eq!(s.touch(&a), None);
        assert!(s.touch(&b).is_some());
        assert_eq!(s.touch("nope"), None);
        assert_eq!(sa.csrf.len(), 48);
        s.destroy_all();
        assert_eq!(s.touch(&b), None);
    }
}
