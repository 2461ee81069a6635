//! Gives freed heap memory back to the system.
//!
//! Bursts (an S3 outage that fills the upload queue, a restore's reads)
//! allocate hundreds of MiB of chunk buffers for a while. glibc keeps what
//! they free in its per-thread arenas, so without this the daemon's RSS
//! stays at its highest point for good, and an admin cannot tell a leak from
//! a burst. `malloc_trim` returns the free pages of every arena.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

const TRIM_EVERY: Duration = Duration::from_secs(30);

pub async fn trim_periodically(shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(TRIM_EVERY) => {}
        }
        // The walk over the arenas takes milliseconds: off the runtime.
        let _ = tokio::task::spawn_blocking(trim).await;
    }
}

#[cfg(target_env = "gnu")]
fn trim() {
    // SAFETY: malloc_trim only releases free memory; 0 keeps no pad.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(target_env = "gnu"))]
fn trim() {}
