//! Upload and download bandwidth limits on a weekly schedule.
//!
//! The schedule mirrors AWS Storage Gateway's `BandwidthRateLimitInterval`:
//! intervals on days of the week (0 = Sunday … 6 = Saturday) from a start
//! time to an end time, the end minute included, each with an average
//! upload and/or download rate in bits per second. Outside every interval
//! the link is not limited. Intervals may not overlap or cross midnight.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BandwidthInterval {
    pub days_of_week: Vec<u8>,
    pub start_hour: u8,
    pub start_minute: u8,
    pub end_hour: u8,
    pub end_minute: u8,
    #[serde(default)]
    pub upload_bits_per_sec: Option<u64>,
    #[serde(default)]
    pub download_bits_per_sec: Option<u64>,
}

impl BandwidthInterval {
    fn start(&self) -> u32 {
        u32::from(self.start_hour) * 60 + u32::from(self.start_minute)
    }

    fn end(&self) -> u32 {
        u32::from(self.end_hour) * 60 + u32::from(self.end_minute)
    }

    fn covers(&self, weekday: u8, minute_of_day: u32) -> bool {
        self.days_of_week.contains(&weekday) && (self.start()..=self.end()).contains(&minute_of_day)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BandwidthSchedule {
    #[serde(default)]
    pub intervals: Vec<BandwidthInterval>,
    /// The gateway's time zone as an offset from UTC, in minutes.
    #[serde(default)]
    pub utc_offset_minutes: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bandwidth interval {index}: {problem}")]
pub struct ScheduleError {
    index: usize,
    problem: &'static str,
}

/// Which way the bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Upload,
    Download,
}

impl BandwidthSchedule {
    /// An empty schedule: no limits ever.
    pub fn unlimited() -> BandwidthSchedule {
        BandwidthSchedule::default()
    }

    pub fn validate(&self) -> Result<(), ScheduleError> {
        for (index, interval) in self.intervals.iter().enumerate() {
            let fail = |problem| Err(ScheduleError { index, problem });
            if interval.days_of_week.is_empty() || interval.days_of_week.iter().any(|d| *d > 6) {
                return fail("days of week must be 0 (Sunday) to 6 (Saturday), at least one");
            }
            if interval.start_hour > 23
                || interval.end_hour > 23
                || interval.start_minute > 59
                || interval.end_minute > 59
            {
                return fail("hours are 0-23 and minutes 0-59");
            }
            if interval.start() > interval.end() {
                return fail(
                    "the start must not be after the end (intervals do not cross midnight)",
                );
            }
            if interval.upload_bits_per_sec.is_none() && interval.download_bits_per_sec.is_none() {
                return fail("an interval limits upload, download or both");
            }
            if interval.upload_bits_per_sec == Some(0) || interval.download_bits_per_sec == Some(0)
            {
                return fail("a rate limit must be positive");
            }
            let overlaps = self.intervals[..index].iter().any(|earlier| {
                earlier
                    .days_of_week
                    .iter()
                    .any(|d| interval.days_of_week.contains(d))
                    && earlier.start() <= interval.end()
                    && interval.start() <= earlier.end()
            });
            if overlaps {
                return fail("overlaps an earlier interval");
            }
        }
        Ok(())
    }

    /// The limit in bytes per second at `unix_secs`, or `None` when
    /// unlimited.
    pub fn limit_at(&self, unix_secs: i64, direction: Direction) -> Option<u64> {
        let local = unix_secs + i64::from(self.utc_offset_minutes) * 60;
        // 1970-01-01 was a Thursday (4 when Sunday is 0).
        let weekday = (local.div_euclid(86_400) + 4).rem_euclid(7) as u8;
        let minute_of_day = (local.rem_euclid(86_400) / 60) as u32;
        let interval = self
            .intervals
            .iter()
            .find(|i| i.covers(weekday, minute_of_day))?;
        let bits = match direction {
            Direction::Upload => interval.upload_bits_per_sec,
            Direction::Download => interval.download_bits_per_sec,
        }?;
        Some((bits / 8).max(1))
    }
}

/// The schedule in effect, shared by both directions' limiters and
/// replaceable while transfers run (the console and `PUT
/// /api/v1/bandwidth`): the next transfer paces to the new one.
#[derive(Debug, Clone)]
pub struct ScheduleHandle(Arc<std::sync::RwLock<Arc<BandwidthSchedule>>>);

impl ScheduleHandle {
    pub fn new(schedule: BandwidthSchedule) -> ScheduleHandle {
        ScheduleHandle(Arc::new(std::sync::RwLock::new(Arc::new(schedule))))
    }

    pub fn current(&self) -> Arc<BandwidthSchedule> {
        self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Puts a valid schedule in effect.
    pub fn replace(&self, schedule: BandwidthSchedule) -> Result<(), ScheduleError> {
        schedule.validate()?;
        *self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(schedule);
        Ok(())
    }
}

/// Paces transfers in one direction to the schedule's current rate.
///
/// It keeps a "theoretical arrival time" (the GCRA form of a token bucket):
/// each transfer pushes it forward by `bytes / rate`, and a caller waits
/// until it is within one second of now. That allows one second of burst
/// and holds the long-run average to the limit; a rate change applies from
/// the next transfer.
#[derive(Debug)]
pub struct RateLimiter {
    schedule: ScheduleHandle,
    direction: Direction,
    arrival: Mutex<Option<Instant>>,
}

const BURST: Duration = Duration::from_secs(1);

impl RateLimiter {
    pub fn new(schedule: ScheduleHandle, direction: Direction) -> RateLimiter {
        RateLimiter {
            schedule,
            direction,
            arrival: Mutex::new(None),
        }
    }

    /// Waits as long as the limit requires before `bytes` may move.
    pub async fn acquire(&self, bytes: u64) {
        let unix_secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let Some(rate) = self.schedule.current().limit_at(unix_secs, self.direction) else {
            return;
        };
        let wait = {
            let mut arrival = self
                .arrival
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            reserve(&mut arrival, Instant::now(), bytes, rate)
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Books `bytes` at `rate` bytes/s and returns how long to wait first.
fn reserve(arrival: &mut Option<Instant>, now: Instant, bytes: u64, rate: u64) -> Duration {
    let cost = Duration::from_secs_f64(bytes as f64 / rate as f64);
    let start = arrival.map_or(now, |a| a.max(now));
    let next = start + cost;
    *arrival = Some(next);
    next.saturating_duration_since(now).saturating_sub(BURST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_replaces_only_valid_schedules() {
        let h = ScheduleHandle::new(BandwidthSchedule::unlimited());
        let bad = BandwidthSchedule { intervals: vec![interval(&[9], (1, 0), (2, 0), Some(8))], utc_offset_minutes: 0 };
        assert!(h.replace(bad).is_err());
        assert!(h.current().intervals.is_empty());
        let good = BandwidthSchedule { intervals: vec![interval(&[1], (1, 0), (2, 0), Some(8))], utc_offset_minutes: 0 };
        h.replace(good.clone()).unwrap();
        assert_eq!(*h.current(), good);
    }

    fn interval(days: &[u8], start: (u8, u8), end: (u8, u8), up: Option<u64>) -> BandwidthInterval {
        BandwidthInterval {
            days_of_week: days.to_vec(),
            start_hour: start.0,
            start_minute: start.1,
            end_hour: end.0,
            end_minute: end.1,
            upload_bits_per_sec: up,
            download_bits_per_sec: Some(8_000_000),
        }
    }

    // 2024-01-01 00:00:00 UTC was a Monday.
    const MONDAY_MIDNIGHT: i64 = 1_704_067_200;

    #[test]
    fn weekday_and_time_windows() {
        let schedule = BandwidthSchedule {
            intervals: vec![interval(
                &[1, 2, 3, 4, 5],
                (9, 0),
                (17, 59),
                Some(80_000_000),
            )],
            utc_offset_minutes: 0,
        };
        schedule.validate().unwrap();
        let at = |day: i64, h: i64, m: i64| MONDAY_MIDNIGHT + day * 86_400 + h * 3600 + m * 60;
        assert_eq!(schedule.limit_at(at(0, 8, 59), Direction::Upload), None);
        assert_eq!(
            schedule.limit_at(at(0, 9, 0), Direction::Upload),
            Some(10_000_000)
        );
        // The end minute is included, as on AWS.
        assert_eq!(
            schedule.limit_at(at(4, 17, 59) + 59, Direction::Upload),
            Some(10_000_000)
        );
        assert_eq!(schedule.limit_at(at(4, 18, 0), Direction::Upload), None);
        assert_eq!(
            schedule.limit_at(at(0, 12, 0), Direction::Download),
            Some(1_000_000)
        );
        // Saturday and Sunday are free.
        assert_eq!(schedule.limit_at(at(5, 12, 0), Direction::Upload), None);
        assert_eq!(schedule.limit_at(at(6, 12, 0), Direction::Upload), None);
    }

    #[test]
    fn utc_offset_moves_the_window() {
        let schedule = BandwidthSchedule {
            intervals: vec![interval(&[1], (0, 0), (0, 59), Some(8_000))],
            utc_offset_minutes: 120,
        };
        // 22:30 UTC on Sunday is 00:30 on Monday two hours east.
        assert_eq!(
            schedule.limit_at(MONDAY_MIDNIGHT - 90 * 60, Direction::Upload),
            Some(1000)
        );
        assert_eq!(
            schedule.limit_at(MONDAY_MIDNIGHT + 30 * 60, Direction::Upload),
            None
        );
    }

    #[test]
    fn invalid_schedules() {
        let bad = [
            vec![interval(&[7], (0, 0), (1, 0), Some(1))],
            vec![interval(&[], (0, 0), (1, 0), Some(1))],
            vec![interval(&[1], (24, 0), (1, 0), Some(1))],
            vec![interval(&[1], (10, 0), (9, 0), Some(1))],
            vec![interval(&[1], (0, 0), (1, 0), Some(0))],
            vec![
                interval(&[1, 2], (0, 0), (10, 0), Some(1)),
                interval(&[2], (10, 0), (11, 0), Some(1)),
            ],
        ];
        for intervals in bad {
            let schedule = BandwidthSchedule {
                intervals,
                utc_offset_minutes: 0,
            };
            assert!(schedule.validate().is_err(), "{schedule:?}");
        }
        let mut none = interval(&[1], (0, 0), (1, 0), None);
        none.download_bits_per_sec = None;
        assert!(BandwidthSchedule {
            intervals: vec![none],
            utc_offset_minutes: 0
        }
        .validate()
        .is_err());
    }

    #[test]
    fn pacing_holds_the_average_rate_after_a_burst() {
        let now = Instant::now();
        let mut arrival = None;
        // 1 MB/s: the first second is burst, then each MB waits a second more.
        assert_eq!(
            reserve(&mut arrival, now, 1_000_000, 1_000_000),
            Duration::ZERO
        );
        assert_eq!(
            reserve(&mut arrival, now, 1_000_000, 1_000_000),
            Duration::from_secs(1)
        );
        assert_eq!(
            reserve(&mut arrival, now, 500_000, 1_000_000),
            Duration::from_millis(1500)
        );
        // After an idle period the debt is gone.
        let later = now + Duration::from_secs(10);
        assert_eq!(
            reserve(&mut arrival, later, 1_000_000, 1_000_000),
            Duration::ZERO
        );
    }
}
