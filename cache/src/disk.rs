//! Cache disks: a header sector that ties the disk to its cache, then
//! equal slots of one chunk each, read and written with positional I/O.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::path::{Path, PathBuf};

use crate::cache::may_block;
use crate::error::{Error, Result};
use crate::faults::{FaultHook, IoOp};
use crate::writeback::Writeback;

/// Bytes before the first slot; a page, so that slots stay page-aligned
/// whenever the chunk size is a multiple of the page size.
pub const HEADER_BYTES: u64 = 4096;
const MAGIC: &[u8; 8] = b"SGWCACHE";
const FORMAT_VERSION: u32 = 1;

/// A slot on a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlotRef {
    pub disk: u32,
    pub slot: u32,
}

/// What a disk's header must say for the cache to accept it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskIdentity {
    pub cache_id: u64,
    pub disk_id: u32,
    pub chunk_size: u32,
    pub slots: u32,
}

pub struct Disk {
    pub identity: DiskIdentity,
    pub path: PathBuf,
    file: File,
    writeback: Writeback,
    /// Whether the file system takes buffered RWF_NOWAIT writes (XFS and
    /// btrfs do; ext4 answers EOPNOTSUPP, and is then not asked again).
    nowait: AtomicBool,
    /// Buffered writes to one file take the inode's lock one at a time
    /// anyway; with a dozen writers the losers spun on it (a fifth of the
    /// CPU time of 1 MiB writes at depth 16). Queued here, they sleep.
    write_turn: parking_lot::Mutex<()>,
    faults: FaultHook,
}

impl Disk {
    /// Prepares a new disk: sizes a regular file and reserves its blocks
    /// (see [`reserve`]), checks a block device is large enough, and writes
    /// a synced header.
    pub fn create(path: &Path, size_bytes: u64, cache_id: u64, disk_id: u32, chunk_size: u32, faults: FaultHook) -> Result<Disk> {
        let io = |source| Error::Disk { path: path.display().to_string(), source };
        let wanted = disk_file_bytes(size_bytes, chunk_size);
        let slots = u32::try_from((wanted - HEADER_BYTES) / u64::from(chunk_size))
            .map_err(|_| Error::Invalid(format!("{} has more than 2^32 slots", path.display())))?;
        if slots == 0 {
            return Err(Error::Invalid(format!("{} is too small for one slot", path.display())));
        }
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(io)?;
        if file.metadata().map_err(io)?.is_file() {
            file.set_len(wanted).map_err(io)?;
            reserve(&file, wanted).map_err(io)?;
        } else if file.seek(SeekFrom::End(0)).map_err(io)? < wanted {
            return Err(Error::Invalid(format!("{} is smaller than {size_bytes} bytes", path.display())));
        }
        let identity = DiskIdentity { cache_id, disk_id, chunk_size, slots };
        file.write_all_at(&encode_header(&identity), 0).map_err(io)?;
        file.sync_all().map_err(io)?;
        Disk::new(identity, path, file, faults)
    }

    /// Reopens a disk the index knows, refusing one whose header differs,
    /// and reserves the blocks of a regular file again (a cache made
    /// sparse by an older version, or whose holes were punched).
    pub fn open(path: &Path, expected: DiskIdentity, faults: FaultHook) -> Result<Disk> {
        let io = |source| Error::Disk { path: path.display().to_string(), source };
        let file = OpenOptions::new().read(true).write(true).open(path).map_err(io)?;
        let mut header = [0u8; HEADER_BYTES as usize];
        file.read_exact_at(&mut header, 0).map_err(io)?;
        let found = decode_header(&header).ok_or_else(|| Error::ForeignDisk {
            path: path.display().to_string(),
            reason: "no valid cache header".into(),
        })?;
        if found != expected {
            return Err(Error::ForeignDisk {
                path: path.display().to_string(),
                reason: format!("header says {found:?}, index expects {expected:?}"),
            });
        }
        let disk = Disk::new(found, path, file, faults)?;
        disk.reserve()?;
        Ok(disk)
    }

    fn new(identity: DiskIdentity, path: &Path, file: File, faults: FaultHook) -> Result<Disk> {
        let writeback =
            Writeback::start(&file, path).map_err(|source| Error::Disk { path: path.display().to_string(), source })?;
        Ok(Disk {
            identity,
            path: path.to_path_buf(),
            file,
            writeback,
            nowait: AtomicBool::new(true),
            write_turn: parking_lot::Mutex::new(()),
            faults,
        })
    }

    /// Reserves the blocks of every slot of a regular file; succeeds only
    /// when the file system can give the whole disk.
    pub fn reserve(&self) -> Result<()> {
        if !self.file.metadata().map_err(|e| self.error(e))?.is_file() {
            return Ok(());
        }
        let len = HEADER_BYTES + u64::from(self.identity.slots) * u64::from(self.identity.chunk_size);
        reserve(&self.file, len).map_err(|e| self.error(e))
    }

    fn inject(&self, op: IoOp) -> Result<()> {
        self.faults.check(op, &self.path).map_err(|e| self.error(e))
    }

    fn offset(&self, slot: u32, offset_in_slot: u64) -> u64 {
        HEADER_BYTES + u64::from(slot) * u64::from(self.identity.chunk_size) + offset_in_slot
    }

    pub fn read_at(&self, slot: u32, offset_in_slot: u64, buf: &mut [u8]) -> Result<()> {
        self.inject(IoOp::Read)?;
        self.file.read_exact_at(buf, self.offset(slot, offset_in_slot)).map_err(|e| self.error(e))
    }

    /// Reads `len` bytes into a new buffer that is never zeroed: the read
    /// fills all of it or fails.
    pub fn read_new(&self, slot: u32, offset_in_slot: u64, len: usize) -> Result<Vec<u8>> {
        self.inject(IoOp::Read)?;
        let mut buf: Vec<u8> = Vec::with_capacity(len);
        let start = self.offset(slot, offset_in_slot);
        let mut done = 0usize;
        while done < len {
            // SAFETY: the kernel writes at most `len - done` bytes into the
            // spare capacity starting at `done`; nothing reads them before
            // `set_len`, which covers only bytes the kernel wrote.
            let n = unsafe {
                libc::pread(
                    self.file.as_raw_fd(),
                    buf.as_mut_ptr().add(done).cast(),
                    len - done,
                    (start + done as u64) as libc::off_t,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(self.error(e));
            }
            if n == 0 {
                return Err(self.error(std::io::ErrorKind::UnexpectedEof.into()));
            }
            done += n as usize;
        }
        // SAFETY: bytes 0..len were all written by pread above.
        unsafe { buf.set_len(len) };
        Ok(buf)
    }

    /// Writes into the page cache; the writeback thread then starts the
    /// transfer to the device (see the `writeback` module).
    ///
    /// Called inline on async workers, like the page-cache writes of a
    /// file-backed volume: where the file system takes RWF_NOWAIT, what
    /// the kernel would make wait (writeback throttling, block allocation)
    /// is refused and written by a blocking call instead (see
    /// [`may_block`]). Elsewhere (ext4) the copy runs inline and waits
    /// only when the kernel throttles writers for dirty pages (past
    /// vm.dirty_ratio); the worker then sleeps there, and the runtime's
    /// other worker takes its queued tasks.
    pub fn write_at(&self, slot: u32, offset_in_slot: u64, buf: &[u8]) -> Result<()> {
        self.inject(IoOp::Write)?;
        {
            let _turn = self.write_turn.try_lock().unwrap_or_else(|| may_block(|| self.write_turn.lock()));
            let at = self.offset(slot, offset_in_slot);
            if self.nowait.load(Ordering::Relaxed) {
                let done = self.write_nowait(buf, at);
                if done < buf.len() {
                    may_block(|| self.file.write_all_at(&buf[done..], at + done as u64)).map_err(|e| self.error(e))?;
                }
            } else {
                self.file.write_all_at(buf, at).map_err(|e| self.error(e))?;
            }
        }
        self.writeback.wrote(buf.len() as u64);
        Ok(())
    }

    /// Writes what the page cache takes of `buf` at `at` without waiting;
    /// returns the bytes written, leaving the rest to a blocking write.
    fn write_nowait(&self, buf: &[u8], at: u64) -> usize {
        let mut done = 0;
        while done < buf.len() {
            let rest = [std::io::IoSlice::new(&buf[done..])];
            match rustix::io::pwritev2(&self.file, &rest, at + done as u64, rustix::io::ReadWriteFlags::NOWAIT) {
                Ok(n) if n > 0 => done += n,
                Err(rustix::io::Errno::OPNOTSUPP) => {
                    self.nowait.store(false, Ordering::Relaxed);
                    break;
                }
                _ => break,
            }
        }
        done
    }

    /// fdatasync: the data written so far survives power loss.
    pub fn sync_data(&self) -> Result<()> {
        self.inject(IoOp::Sync)?;
        self.file.sync_data().map_err(|e| self.error(e))?;
        self.writeback.note_flush();
        Ok(())
    }

    /// A writer expects a flush soon: early writeback starts now.
    pub fn expect_flush(&self) {
        self.writeback.note_flush();
    }

    fn error(&self, source: std::io::Error) -> Error {
        Error::Disk { path: self.path.display().to_string(), source }
    }
}

/// Allocates the blocks of `file`'s first `len` bytes (fallocate), so
/// that writes into its slots never find the file system full: a sparse
/// cache took its blocks at the first write of each slot, and a file
/// system filled by something else then failed cache writes long after a
/// start that found room. File systems that cannot reserve (EOPNOTSUPP:
/// ZFS, some network file systems) keep a sparse file.
/// The bytes of a disk of `size_bytes` as a regular file: the header and
/// the whole slots that fit.
pub fn disk_file_bytes(size_bytes: u64, chunk_size: u32) -> u64 {
    let chunk = u64::from(chunk_size.max(1));
    HEADER_BYTES + size_bytes.saturating_sub(HEADER_BYTES) / chunk * chunk
}

fn reserve(file: &File, len: u64) -> std::io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(std::io::Error::other)?;
    loop {
        // SAFETY: fallocate on a file descriptor this `File` owns.
        if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) } == 0 {
            return Ok(());
        }
        let error = std::io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EOPNOTSUPP) => return Ok(()),
            _ => return Err(error),
        }
    }
}

fn encode_header(id: &DiskIdentity) -> [u8; HEADER_BYTES as usize] {
    let mut h = [0u8; HEADER_BYTES as usize];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&id.cache_id.to_le_bytes());
    h[20..24].copy_from_slice(&id.disk_id.to_le_bytes());
    h[24..28].copy_from_slice(&id.chunk_size.to_le_bytes());
    h[28..32].copy_from_slice(&id.slots.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..32]);
    h[32..36].copy_from_slice(&crc.to_le_bytes());
    h
}

fn decode_header(h: &[u8]) -> Option<DiskIdentity> {
    let u32_at = |i: usize| h.get(i..i + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
    let u64_at = |i: usize| h.get(i..i + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    if h.get(0..8)? != MAGIC || u32_at(8)? != FORMAT_VERSION || u32_at(32)? != crc32c::crc32c(h.get(0..32)?) {
        return None;
    }
    Some(DiskIdentity { cache_id: u64_at(12)?, disk_id: u32_at(20)?, chunk_size: u32_at(24)?, slots: u32_at(28)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_another_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("d0");
        let disk = Disk::create(&path, HEADER_BYTES + 3 * 65536 + 100, 7, 0, 65536, FaultHook::default()).expect("create");
        assert_eq!(disk.identity.slots, 3);
        disk.write_at(2, 10, b"abc").expect("write");
        let reopened = Disk::open(&path, disk.identity, FaultHook::default()).expect("open");
        let mut buf = [0u8; 3];
        reopened.read_at(2, 10, &mut buf).expect("read");
        assert_eq!(&buf, b"abc");
        let other = DiskIdentity { cache_id: 8, ..disk.identity };
        assert!(matches!(Disk::open(&path, other, FaultHook::default()), Err(Error::ForeignDisk { .. })));
    }
}

