//! Where large writes copy their data into the page cache.
//!
//! A write runs inline on the async worker that called it (see
//! `may_block`): for a small write the copy is shorter than a hand-off to
//! another thread. A 1 MiB write, though, spends a few hundred
//! microseconds in that copy, and meanwhile the worker cannot receive the
//! data of the commands behind it. The embedding application may give the
//! cache threads for those copies (the gateway gives it the I/O threads
//! of its file-backed disks), so that they overlap the network work: on
//! 1 MiB writes at queue depth 16 the cache-hit write throughput rose by
//! about a sixth (`benches/scripts/cached-volume.sh`).

/// Runs jobs on threads of the application's choosing.
pub trait Offload: Send + Sync {
    /// Runs `job` on another thread, soon; it must run even if nobody
    /// waits for it any more.
    fn spawn(&self, job: Box<dyn FnOnce() + Send>);
}

/// Writes at least this long go to the [`Offload`] threads; shorter ones
/// run inline, where the copy costs less than the hand-off (a wake-up and
/// two context switches). Only 1 MiB writes were measured both ways;
/// below this bound writes run inline as they did before.
pub const OFFLOAD_MIN_BYTES: usize = 128 * 1024;
