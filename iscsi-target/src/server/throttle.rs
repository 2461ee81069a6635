//! Slows down repeated login failures from one address: each failure in a
//! row waits longer before its answer (0.25 s, doubling, at most 5 s), so
//! guessing CHAP secrets costs time. A success from the address, or quiet
//! for `FORGET_AFTER`, starts the count again. Pure apart from the lock:
//! the caller passes the clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const FIRST_DELAY: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(5);
/// Failures further apart than this are not counted as a series.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Addresses remembered at once; beyond it the stalest is forgotten, so a
/// scan from many addresses cannot grow the table without bound.
const MAX_ADDRESSES: usize = 4096;

/// The delay before answering the `n`th failure in a row (n ≥ 1).
pub(crate) fn delay_for(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
}

#[derive(Clone, Copy)]
struct Series {
    failures: u32,
    last: Instant,
}

#[derive(Default)]
pub(crate) struct FailureThrottle {
    by_address: Mutex<HashMap<IpAddr, Series>>,
}

impl FailureThrottle {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Series>> {
        self.by_address.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a failed login from `address` at `now`; returns how long to
    /// hold the answer.
    pub(crate) fn failed(&self, address: IpAddr, now: Instant) -> Duration {
        let mut table = self.table();
        if !table.contains_key(&address) && table.len() >= MAX_ADDRESSES {
            table.retain(|_, s| now.saturating_duration_since(s.last) < FORGET_AFTER);
            if table.len() >= MAX_ADDRESSES {
                if let Some(stalest) = table.iter().min_by_key(|(_, s)| s.last).map(|(a, _)| *a) {
                    table.remove(&stalest);
                }
            }
        }
        let series = table.entry(address).or_insert(Series { failures: 0, last: now });
        if now.saturating_duration_since(series.last) >= FORGET_AFTER {
            series.failures = 0;
        }
        series.failures = series.failures.saturating_add(1);
        series.last = now;
        delay_for(series.failures)
    }

    /// A login from `address` succeeded: its failures are forgiven.
    pub(crate) fn succeeded(&self, address: IpAddr) {
        self.table().remove(&address);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.table().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let t = FailureThrottle::default();
        let now = Instant::now();
        let delays: Vec<Duration> = (0..8).map(|i| t.failed(A, now + ms(i))).collect();
        assert_eq!(delays, [ms(250), ms(500), ms(1000), ms(2000), ms(4000), ms(5000), ms(5000), ms(5000)]);
        assert_eq!(delay_for(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn addresses_are_counted_apart_and_success_resets() {
        let t = FailureThrottle::default();
        let now = Instant::now();
        t.failed(A, now);
        t.failed(A, now);
        assert_eq!(t.failed(B, now), ms(250), "another address pays for A's failures");
        t.succeeded(A);
        assert_eq!(t.failed(A, now), ms(250), "a success did not reset the series");
    }

    #[test]
    fn a_quiet_address_starts_again() {
        let t = FailureThrottle::default();
        let now = Instant::now();
        for _ in 0..5 {
            t.failed(A, now);
        }
        assert_eq!(t.failed(A, now + FORGET_AFTER + ms(1)), ms(250));
    }

    #[test]
    fn the_table_stays_bounded() {
        let t = FailureThrottle::default();
        let now = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 + 100) {
            t.failed(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), now + ms(u64::from(i)));
        }
        assert_eq!(t.len(), MAX_ADDRESSES);
        // The newest address is remembered; the stalest went first.
        let newest = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + MAX_ADDRESSES as u32 + 99));
        let later = now + ms(MAX_ADDRESSES as u64 + 200);
        assert_eq!(t.failed(newest, later), ms(500));
        assert_eq!(t.failed(IpAddr::V4(Ipv4Addr::from(0x0a00_0000)), later), ms(250));
        assert_eq!(t.len(), MAX_ADDRESSES);
    }
}
