//! When and how fast to retry a failed object-store request.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Exponential backoff with full jitter (the scheme AWS recommends): the
/// n-th retry waits a uniformly random time in `[0, min(max, base * 2^n)]`,
/// so that many clients failing together do not retry together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included.
    pub max_attempts: u32,
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    /// An attempt still running after this long is abandoned and counts as
    /// a transient failure: it catches stalled connections.
    pub attempt_timeout_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base_delay_ms: 100,
            max_delay_ms: 20_000,
            attempt_timeout_ms: 120_000,
        }
    }
}

impl RetryPolicy {
    /// The ceiling of the wait before retry number `retry` (from 0).
    pub fn backoff_ceiling(&self, retry: u32) -> Duration {
        let factor = 1u64.checked_shl(retry.min(32)).unwrap_or(u64::MAX);
        Duration::from_millis(
            self.base_delay_ms
                .saturating_mul(factor)
                .min(self.max_delay_ms),
        )
    }

    /// The randomised wait before retry number `retry`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self.backoff_ceiling(retry);
        Duration::from_millis(rand::thread_rng().gen_range(0..=ceiling.as_millis() as u64))
    }

    pub fn attempt_timeout(&self) -> Duration {
        Duration::from_millis(self.attempt_timeout_ms.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_then_cap() {
        let policy = RetryPolicy {
            base_delay_ms: 100,
            max_delay_ms: 1000,
            ..RetryPolicy::default()
        };
        let ceilings: Vec<u128> = (0..6)
            .map(|n| policy.backoff_ceiling(n).as_millis())
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(policy.backoff_ceiling(200).as_millis(), 1000);
    }

    #[test]
    fn jitter_stays_under_the_ceiling() {
        let policy = RetryPolicy::default();
        for retry in 0..10 {
            assert!(policy.backoff(retry) <= policy.backoff_ceiling(retry));
        }
    }
}
