//! Upload failures that the store's own retries did not overcome (a full
//! or read-only bucket, refused credentials): the feeder pauses before it
//! hands out more chunks, longer after each failure in a row, and each
//! distinct cause is logged at most once a minute. Retried every 200 ms,
//! one such failure wrote 80 WARN lines a second.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The pause after the first failure; it doubles with each failure in a
/// row, up to [`BACKOFF_MAX`].
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How often one cause may be logged.
pub const LOG_EVERY: Duration = Duration::from_secs(60);

/// When uploads may resume.
#[derive(Debug, Default)]
pub struct UploadBackoff {
    failures_in_a_row: u32,
    resume_at: Option<Instant>,
}

impl UploadBackoff {
    /// A round of uploads failed at `now`: returns the pause before the
    /// next round.
    pub fn failed(&mut self, now: Instant) -> Duration {
        let pause = BACKOFF_FIRST.saturating_mul(1 << self.failures_in_a_row.min(16)).min(BACKOFF_MAX);
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
        self.resume_at = Some(now + pause);
        pause
    }

    /// Uploads work: no more pause.
    pub fn succeeded(&mut self) {
        *self = UploadBackoff::default();
    }

    /// How long the feeder still has to wait at `now`.
    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        self.resume_at.and_then(|at| at.checked_duration_since(now)).filter(|d| !d.is_zero())
    }
}

/// Lets each distinct cause through once per [`LOG_EVERY`].
#[derive(Debug, Default)]
pub struct LogOncePerCause {
    last: HashMap<String, Instant>,
}

impl LogOncePerCause {
    /// Whether `cause` should be logged at `now`; counts it as logged.
    pub fn admit(&mut self, cause: &str, now: Instant) -> bool {
        // Causes quiet for a period are forgotten: the table stays small.
        self.last.retain(|_, at| now.duration_since(*at) < LOG_EVERY);
        if self.last.contains_key(cause) {
            return false;
        }
        self.last.insert(cause.to_owned(), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_a_minute_and_reset_on_success() {
        let mut backoff = UploadBackoff::default();
        let now = Instant::now();
        let pauses: Vec<u64> = (0..9).map(|_| backoff.failed(now).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff.remaining(now), Some(BACKOFF_MAX));
        assert_eq!(backoff.remaining(now + BACKOFF_MAX), None);
        backoff.succeeded();
        assert_eq!(backoff.remaining(now), None);
        assert_eq!(backoff.failed(now), BACKOFF_FIRST);
    }

    #[test]
    fn each_cause_is_logged_once_a_minute() {
        let mut log = LogOncePerCause::default();
        let t0 = Instant::now();
        assert!(log.admit("put: permanent: disk full", t0));
        assert!(!log.admit("put: permanent: disk full", t0 + Duration::from_secs(59)));
        assert!(log.admit("put: auth: access denied", t0 + Duration::from_secs(1)), "another cause");
        assert!(log.admit("put: permanent: disk full", t0 + LOG_EVERY));
    }
}
