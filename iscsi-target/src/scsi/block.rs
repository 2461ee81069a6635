//! The block-device trait that disk logical units run on, and the sparse
//! local-file backend.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;

use super::lu::DataOutChecksums;
use super::types::{BlockCount, Lba};

/// Whether a block range holds data or is deallocated (thin provisioning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provisioning {
    Mapped,
    Deallocated,
}

/// Storage under a disk LU. Ranges are validated by the SBC layer before they
/// reach the device: implementations may assume `lba + count <= num_blocks`.
/// Errors choose the sense by kind: `StorageFull` is out of space,
/// `TimedOut` and the connection kinds mean the backend is out of reach for
/// now (the initiator retries), anything else is a medium error.
#[async_trait]
pub trait BlockDevice: Send + Sync {
    /// Logical block size in bytes (512 or 4096).
    fn block_size(&self) -> u32;
    /// Capacity in logical blocks.
    fn num_blocks(&self) -> u64;
    /// log2 of logical blocks per physical block: 3 for 512-byte logical
    /// blocks on 4 KiB physical ones. Storage writes a physical block
    /// atomically.
    fn physical_block_exponent(&self) -> u8 {
        0
    }
    /// Reads `count` blocks at `lba`.
    async fn read(&self, lba: Lba, count: BlockCount) -> io::Result<Bytes>;
    /// Writes whole blocks at `lba`. With `fua` the data is durable before
    /// this returns.
    async fn write(&self, lba: Lba, data: Bytes, fua: bool) -> io::Result<()>;
    /// The granule in which the device keeps a CRC-32C of what it stores,
    /// if it does; writes may then come with those checksums computed
    /// ([`write_checksummed`](Self::write_checksummed)).
    fn checksum_granule(&self) -> Option<u32> {
        None
    }
    /// [`write`](Self::write), with the checksums of `data` in the device's
    /// granule, computed by the transport as the data arrived.
    async fn write_checksummed(&self, lba: Lba, data: Bytes, fua: bool, checksums: &DataOutChecksums) -> io::Result<()> {
        let _ = checksums;
        self.write(lba, data, fua).await
    }
    /// The largest write [`write_atomic`](Self::write_atomic) accepts; zero
    /// when the device cannot make multi-block writes crash-atomic.
    fn atomic_write_limit(&self) -> BlockCount {
        BlockCount(0)
    }
    /// Writes whole blocks so that after a crash either all of them or none
    /// of them are on stable storage; durable when it returns.
    async fn write_atomic(&self, lba: Lba, data: Bytes) -> io::Result<()> {
        let _ = (lba, data);
        Err(io::ErrorKind::Unsupported.into())
    }
    /// Makes every completed write durable.
    async fn flush(&self) -> io::Result<()>;
    /// Deallocates blocks; they read back as zeros afterwards.
    async fn unmap(&self, lba: Lba, count: BlockCount) -> io::Result<()>;
    /// The provisioning status of the run starting at `lba`, and its length
    /// in blocks (at most `max`).
    async fn provisioning(&self, lba: Lba, max: BlockCount) -> io::Result<(Provisioning, BlockCount)>;
}

/// A disk backed by a sparse file. UNMAP punches holes, so LBA status maps
/// straight onto SEEK_DATA/SEEK_HOLE. Atomic writes go through a redo
/// journal next to the file (`<file>.journal`).
pub struct FileBlockDevice {
    file: Arc<File>,
    journal: Arc<Mutex<File>>,
    block_size: u32,
    num_blocks: u64,
}

/// Largest atomic write, in bytes.
const MAX_ATOMIC_BYTES: u64 = 1 << 20;
/// Journal record: magic, LBA, byte length, crc32c of those and the data.
const JOURNAL_MAGIC: u32 = 0x5347_574A; // "SGWJ"
const JOURNAL_HEADER: usize = 4 + 8 + 4 + 4;

impl FileBlockDevice {
    /// Opens (creating if needed) a sparse file of `size_bytes`, and replays
    /// an atomic write that a crash interrupted.
    pub fn open(path: &Path, size_bytes: u64, block_size: u32) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        if file.metadata()?.len() != size_bytes {
            file.set_len(size_bytes)?;
        }
        let mut journal_path = path.as_os_str().to_owned();
        journal_path.push(".journal");
        let journal = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(journal_path)?;
        replay_journal(&journal, &file)?;
        Ok(FileBlockDevice {
            file: Arc::new(file),
            journal: Arc::new(Mutex::new(journal)),
            block_size,
            num_blocks: size_bytes / block_size as u64,
        })
    }

    /// Runs rare or slow work (fsync, hole punching, journal) on tokio's
    /// blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&File) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || f(&file)).await.map_err(|e| io::Error::other(e.to_string()))?
    }

    /// Runs a read or write on the I/O threads (see [`IoPool`]).
    async fn io<T: Send + 'static>(&self, f: impl FnOnce(&File) -> io::Result<T> + Send + 'static) -> io::Result<T> {
        let file = self.file.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        submit_io(Box::new(move || {
            let _ = tx.send(f(&file));
        }));
        rx.await.map_err(|_| io::Error::other("I/O thread failed"))?
    }
}

/// Runs `job` on the I/O threads that file-backed disks use (see
/// [`IoPool`]), for other storage under the target that copies data into
/// the page cache (the gateway's disk cache).
pub fn submit_io(job: Box<dyn FnOnce() + Send>) {
    IoPool::get().submit(job);
}

/// Appends to `buf`, up to `len` bytes in all, what the page cache holds at
/// `off` onwards: with RWF_NOWAIT the kernel fails with EAGAIN instead of
/// waiting for the disk, so this never blocks on I/O. Stops at the first
/// error or end of file; the caller reads the rest the slow way.
fn read_cached(file: &File, buf: &mut Vec<u8>, off: u64, len: usize) {
    buf.reserve(len.saturating_sub(buf.len()));
    while buf.len() < len {
        let done = buf.len();
        let spare = buf.spare_capacity_mut();
        let want = spare.len().min(len - done);
        let iov = libc::iovec { iov_base: spare.as_mut_ptr().cast(), iov_len: want };
        // SAFETY: the iovec covers `buf`'s spare capacity, which the kernel
        // writes; only the bytes it reports are then marked initialised.
        let n = unsafe {
            libc::preadv2(file.as_raw_fd(), &iov, 1, (off + done as u64) as libc::off_t, libc::RWF_NOWAIT)
        };
        if n <= 0 {
            return;
        }
        // SAFETY: the kernel initialised `n` more bytes (n <= want).
        unsafe { buf.set_len(done + n as usize) };
    }
}

/// Writes what the page cache takes of `data` at `off` without waiting:
/// with RWF_NOWAIT the kernel refuses (EAGAIN) a buffered write that would
/// block on writeback throttling or block allocation, and the caller sends
/// the rest to the I/O threads. Returns the bytes written.
fn write_cached(file: &File, data: &[u8], off: u64) -> usize {
    let mut done = 0;
    while done < data.len() {
        let rest = &data[done..];
        let iov = libc::iovec { iov_base: rest.as_ptr() as *mut libc::c_void, iov_len: rest.len() };
        // SAFETY: the iovec covers `rest`, which the kernel only reads.
        let n = unsafe {
            libc::pwritev2(file.as_raw_fd(), &iov, 1, (off + done as u64) as libc::off_t, libc::RWF_NOWAIT)
        };
        if n <= 0 {
            break;
        }
        done += n as usize;
    }
    done
}

/// Large read buffers are reused: a fresh 1 MiB buffer costs 256 page
/// faults, a third of the CPU time of 1 MiB reads. A buffer comes back
/// when the last `Bytes` pointing into it is dropped (its Data-In is out).
/// The pool keeps at most [`POOL_BYTES`].
const POOL_MIN: usize = 128 * 1024;
const POOL_BYTES: usize = 32 << 20;

static READ_BUFS: Mutex<(Vec<Vec<u8>>, usize)> = Mutex::new((Vec::new(), 0));

fn read_buffer(len: usize) -> Vec<u8> {
    if len >= POOL_MIN {
        let mut pool = READ_BUFS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = pool.0.iter().position(|b| b.capacity() >= len && b.capacity() / 2 <= len) {
            let b = pool.0.swap_remove(i);
            pool.1 -= b.capacity();
            return b;
        }
    }
    Vec::with_capacity(len)
}

struct PooledBuf(Vec<u8>);

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        let mut b = std::mem::take(&mut self.0);
        b.clear();
        let mut pool = READ_BUFS.lock().unwrap_or_else(|e| e.into_inner());
        if pool.1 + b.capacity() <= POOL_BYTES {
            pool.1 += b.capacity();
            pool.0.push(b);
        }
    }
}

fn read_bytes(buf: Vec<u8>) -> Bytes {
    if buf.capacity() >= POOL_MIN {
        Bytes::from_owner(PooledBuf(buf))
    } else {
        Bytes::from(buf)
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// A few threads, shared by every device, for reads that miss the page
/// cache and for writes. Tokio's blocking pool starts a thread whenever no
/// thread is idle at the moment of the call: at queue depth 32 on two cores
/// it grew to over 400 threads, and every small I/O paid a futex wake-up
/// and a context switch. Here the threads drain one queue, so while a
/// device is busy its I/O is picked up by threads that are already running.
struct IoPool {
    state: Mutex<PoolState>,
    work: Condvar,
    max_threads: usize,
}

#[derive(Default)]
struct PoolState {
    jobs: VecDeque<Job>,
    idle: usize,
    threads: usize,
}

impl IoPool {
    fn get() -> &'static IoPool {
        static POOL: OnceLock<IoPool> = OnceLock::new();
        POOL.get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            IoPool { state: Mutex::default(), work: Condvar::new(), max_threads: (2 * cores).clamp(4, 16) }
        })
    }

    fn submit(&'static self, job: Job) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.jobs.push_back(job);
        if st.idle > 0 {
            self.work.notify_one();
        } else if st.threads < self.max_threads {
            let spawned = std::thread::Builder::new().name("sgw-io".into()).spawn(move || self.run());
            match spawned {
                Ok(_) => st.threads += 1,
                Err(_) if st.threads == 0 => {
                    // No thread to run it: run it here rather than never.
                    let job = st.jobs.pop_back();
                    drop(st);
                    if let Some(job) = job {
                        job();
                    }
                }
                Err(_) => {}
            }
        }
    }

    fn run(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(job) = st.jobs.pop_front() {
                drop(st);
                // A panicking job drops its sender (the caller gets an
                // error); the thread lives on.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                continue;
            }
            st.idle += 1;
            st = self.work.wait(st).unwrap_or_else(|e| e.into_inner());
            st.idle -= 1;
        }
    }
}

/// Applies a complete journal record to `file`; a torn record (the crash hit
/// before the journal was durable) is dropped, as the file was not touched.
fn replay_journal(journal: &File, file: &File) -> io::Result<()> {
    let len = journal.metadata()?.len();
    if len >= JOURNAL_HEADER as u64 && len <= (JOURNAL_HEADER as u64 + MAX_ATOMIC_BYTES) {
        let mut rec = vec![0u8; len as usize];
        journal.read_exact_at(&mut rec, 0)?;
        let (head, data) = rec.split_at(JOURNAL_HEADER);
        let field =
            |at: usize, n: usize| head.get(at..at + n).unwrap_or(&[]).iter().fold(0u64, |a, &b| a << 8 | b as u64);
        let (magic, off, dlen, crc) = (field(0, 4) as u32, field(4, 8), field(12, 4) as usize, field(16, 4) as u32);
        let valid = magic == JOURNAL_MAGIC
            && dlen == data.len()
            && crc32c::crc32c_append(crc32c::crc32c(head.get(..16).unwrap_or(&[])), data) == crc;
        if valid {
            file.write_all_at(data, off)?;
            file.sync_data()?;
        }
    }
    if len > 0 {
        journal.set_len(0)?;
        journal.sync_data()?;
    }
    Ok(())
}

#[async_trait]
impl BlockDevice for FileBlockDevice {
    fn block_size(&self) -> u32 {
        self.block_size
    }

    fn num_blocks(&self) -> u64 {
        self.num_blocks
    }

    fn atomic_write_limit(&self) -> BlockCount {
        BlockCount(MAX_ATOMIC_BYTES / self.block_size as u64)
    }

    /// Redo logging: the record is durable in the journal before the file
    /// is touched, and the journal is emptied only once the file is durable.
    async fn write_atomic(&self, lba: Lba, data: Bytes) -> io::Result<()> {
        let off = lba.to_bytes(self.block_size);
        let journal = self.journal.clone();
        self.blocking(move |f| {
            let j = journal.lock().unwrap_or_else(|e| e.into_inner());
            let mut rec = Vec::with_capacity(JOURNAL_HEADER + data.len());
            rec.extend_from_slice(&JOURNAL_MAGIC.to_be_bytes());
            rec.extend_from_slice(&off.to_be_bytes());
            rec.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let crc = crc32c::crc32c_append(crc32c::crc32c(&rec), &data);
            rec.extend_from_slice(&crc.to_be_bytes());
            rec.extend_from_slice(&data);
            j.set_len(0)?;
            j.write_all_at(&rec, 0)?;
            j.sync_data()?;
            f.write_all_at(&data, off)?;
            f.sync_data()?;
            j.set_len(0)?;
            j.sync_data()
        })
        .await
    }

    /// Page-cache hits are copied right here, on the async thread: handing
    /// a small read to another thread costs more than the copy. The rest
    /// (a miss, or RWF_NOWAIT unsupported) goes to the I/O threads.
    async fn read(&self, lba: Lba, count: BlockCount) -> io::Result<Bytes> {
        let off = lba.to_bytes(self.block_size);
        let len = count.to_bytes(self.block_size) as usize;
        let mut buf = read_buffer(len);
        read_cached(&self.file, &mut buf, off, len);
        if buf.len() == len {
            return Ok(read_bytes(buf));
        }
        self.io(move |f| {
            let done = buf.len();
            buf.resize(len, 0);
            f.read_exact_at(&mut buf[done..], off + done as u64)?;
            Ok(read_bytes(buf))
        })
        .await
    }

    async fn write(&self, lba: Lba, data: Bytes, fua: bool) -> io::Result<()> {
        let off = lba.to_bytes(self.block_size);
        if fua {
            return self
                .blocking(move |f| {
                    f.write_all_at(&data, off)?;
                    f.sync_data()
                })
                .await;
        }
        let done = write_cached(&self.file, &data, off);
        if done == data.len() {
            return Ok(());
        }
        self.io(move |f| f.write_all_at(&data[done..], off + done as u64)).await
    }

    async fn flush(&self) -> io::Result<()> {
        self.blocking(|f| f.sync_data()).await
    }

    async fn unmap(&self, lba: Lba, count: BlockCount) -> io::Result<()> {
        let off = lba.to_bytes(self.block_size) as libc::off_t;
        let len = count.to_bytes(self.block_size) as libc::off_t;
        self.blocking(move |f| {
            // SAFETY: fallocate on a valid, open descriptor with in-range values.
            let rc = unsafe {
                libc::fallocate(f.as_raw_fd(), libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, off, len)
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
        .await
    }

    async fn provisioning(&self, lba: Lba, max: BlockCount) -> io::Result<(Provisioning, BlockCount)> {
        let bs = self.block_size as u64;
        let start = lba.0 * bs;
        let end = (lba.0 + max.0) * bs;
        self.blocking(move |f| {
            let fd = f.as_raw_fd();
            // SAFETY: lseek on a valid descriptor.
            let data = unsafe { libc::lseek(fd, start as libc::off_t, libc::SEEK_DATA) };
            let (state, run_end) = if data < 0 || data as u64 > start {
                // A hole starts here: it runs to the next data (or EOF).
                let next = if data < 0 { end } else { data as u64 };
                (Provisioning::Deallocated, next.min(end))
            } else {
                // SAFETY: as above.
                let hole = unsafe { libc::lseek(fd, start as libc::off_t, libc::SEEK_HOLE) };
                let next = if hole < 0 { end } else { hole as u64 };
                (Provisioning::Mapped, next.min(end))
            };
            // Holes are file-system-block granular; report whole logical blocks.
            let blocks = (run_end.div_ceil(bs)).saturating_sub(lba.0).max(1).min(max.0);
            Ok((state, BlockCount(blocks)))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn atomic_write_and_journal_replay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lun");
        let dev = FileBlockDevice::open(&path, 1 << 20, 512).unwrap();
        dev.write_atomic(Lba(2), Bytes::from(vec![7u8; 1024])).await.unwrap();
        assert_eq!(dev.read(Lba(2), BlockCount(2)).await.unwrap(), vec![7u8; 1024]);
        drop(dev);

        // A record that reached the journal but not the file is replayed.
        let mut rec = Vec::new();
        rec.extend_from_slice(&JOURNAL_MAGIC.to_be_bytes());
        rec.extend_from_slice(&(4096u64).to_be_bytes());
        rec.extend_from_slice(&(512u32).to_be_bytes());
        let data = vec![9u8; 512];
        rec.extend_from_slice(&crc32c::crc32c_append(crc32c::crc32c(&rec), &data).to_be_bytes());
        rec.extend_from_slice(&data);
        std::fs::write(dir.path().join("lun.journal"), &rec).unwrap();
        let dev = FileBlockDevice::open(&path, 1 << 20, 512).unwrap();
        assert_eq!(dev.read(Lba(8), BlockCount(1)).await.unwrap(), data);
        assert_eq!(std::fs::metadata(dir.path().join("lun.journal")).unwrap().len(), 0);

        // A torn record is dropped.
        rec.truncate(rec.len() - 1);
        std::fs::write(dir.path().join("lun.journal"), &rec).unwrap();
        drop(dev);
        let dev = FileBlockDevice::open(&path, 1 << 20, 512).unwrap();
        assert_eq!(dev.read(Lba(8), BlockCount(1)).await.unwrap(), data);
    }
}
