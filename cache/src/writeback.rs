//! Early writeback: a thread per cache disk hands the disk's dirty pages to
//! the device (sync_file_range WRITE, which does not wait for the transfer)
//! each time a MiB more has been written, so that the transfer overlaps the
//! writes that follow and a flush's fdatasync finds little left to do. Left
//! to the flush, the transfer is most of a flush's time (the `cache_write`
//! bench flushes every 16 MiB). A page rewritten before the next flush may
//! go to the device twice; that costs bandwidth only.
//!
//! It serves flushes, so it runs only while they come or are due: within a
//! second of the last one, or of a writer's word that one is coming (a tape
//! drive, whose records are committed at the next filemark). A writer that
//! does not flush (a disk copy) leaves the transfer to the kernel's own
//! writeback, as a file-backed volume does; early writeback alongside it
//! took about a tenth of the cache-hit write throughput
//! (`benches/scripts/cached-volume.sh`), while a tape write timed up to its
//! filemark ran about 15 % faster with it (`tape-vs-tgt.sh`).
//!
//! The submission runs on its own thread because it can wait for room in
//! the device's queue, and writers run inline on async workers.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// Bytes written to a disk after which writeback is started again.
/// Measured on the `cache_write` bench: 1 MiB does as well as 256 KiB;
/// 4 MiB loses about half of the gain.
const WRITEBACK_BYTES: u64 = 1 << 20;
/// How long after a flush writes still count as flushed soon.
const FLUSHING_WINDOW: Duration = Duration::from_secs(1);

pub struct Writeback {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    /// Bytes written since writeback was last asked for.
    unstarted: AtomicU64,
    /// When the last flush synced the disk, in milliseconds since
    /// `started`; zero for never.
    last_flush_ms: AtomicU64,
    started: Instant,
    signal: Mutex<Signal>,
    wake: Condvar,
}

#[derive(Default)]
struct Signal {
    pending: bool,
    stop: bool,
}

impl Writeback {
    /// Starts the thread for the disk open as `file`.
    pub fn start(file: &File, path: &Path) -> std::io::Result<Writeback> {
        let file = file.try_clone()?;
        let shared = Arc::new(Shared {
            unstarted: AtomicU64::new(0),
            last_flush_ms: AtomicU64::new(0),
            started: Instant::now(),
            signal: Mutex::default(),
            wake: Condvar::new(),
        });
        let path = path.to_path_buf();
        let thread = std::thread::Builder::new().name("sgw-writeback".into()).spawn({
            let shared = shared.clone();
            move || run(&file, &path, &shared)
        })?;
        Ok(Writeback { shared, thread: Some(thread) })
    }

    /// Counts `len` bytes written; wakes the thread when writeback is due.
    pub fn wrote(&self, len: u64) {
        if self.due(len) {
            self.shared.signal.lock().pending = true;
            self.shared.wake.notify_one();
        }
    }

    /// A flush synced the disk, or a writer expects one soon.
    pub fn note_flush(&self) {
        // Never zero, which means no flush yet.
        let now = self.shared.started.elapsed().as_millis() as u64 + 1;
        self.shared.last_flush_ms.store(now, Ordering::Relaxed);
    }

    /// Whether writing `len` more bytes makes writeback due: a MiB since it
    /// was last due, and a flush within the window.
    fn due(&self, len: u64) -> bool {
        let total = self.shared.unstarted.fetch_add(len, Ordering::Relaxed) + len;
        // One writer takes it; a writer that raced in tries again next time.
        if total < WRITEBACK_BYTES
            || self.shared.unstarted.compare_exchange(total, 0, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return false;
        }
        let last = self.shared.last_flush_ms.load(Ordering::Relaxed);
        let now = self.shared.started.elapsed().as_millis() as u64 + 1;
        last != 0 && now.saturating_sub(last) <= FLUSHING_WINDOW.as_millis() as u64
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        self.shared.signal.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(file: &File, path: &Path, shared: &Shared) {
    loop {
        {
            let mut signal = shared.signal.lock();
            while !signal.pending && !signal.stop {
                shared.wake.wait(&mut signal);
            }
            if signal.stop {
                return;
            }
            signal.pending = false;
        }
        // A hint only: durability still comes from fdatasync, so a refusal
        // (a file system without it) changes nothing but speed.
        // SAFETY: a plain syscall on a descriptor this thread owns.
        let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
        if rc != 0 {
            tracing::debug!(path = %path.display(), error = %std::io::Error::last_os_error(), "early writeback refused");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_every_mib_while_flushes_come() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = File::create(dir.path().join("d")).expect("create");
        let writeback = Writeback::start(&file, dir.path()).expect("start");
        assert!(!writeback.due(2 * WRITEBACK_BYTES), "no flush yet: left to the kernel");
        assert_eq!(writeback.shared.unstarted.load(Ordering::Relaxed), 0, "the count starts again");
        writeback.note_flush();
        assert!(!writeback.due(WRITEBACK_BYTES - 1), "below a MiB nothing is due");
        assert!(writeback.due(1), "a MiB after a flush");
        assert!(!writeback.due(1), "the count started again");
        writeback.shared.last_flush_ms.store(1, Ordering::Relaxed);
        std::thread::sleep(FLUSHING_WINDOW + Duration::from_millis(20));
        assert!(!writeback.due(WRITEBACK_BYTES), "the last flush is too old");
    }

    #[test]
    fn the_thread_takes_requests_and_stops_on_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = File::create(dir.path().join("d")).expect("create");
        let writeback = Writeback::start(&file, dir.path()).expect("start");
        writeback.note_flush();
        writeback.wrote(WRITEBACK_BYTES);
        let taken = (0..500).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            !writeback.shared.signal.lock().pending
        });
        assert!(taken, "the thread takes the request");
        drop(writeback); // joins the thread: the test would hang if it did not stop
    }
}
