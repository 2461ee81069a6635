//! The block-device trait that disk logical units run on, and the sparse
//! local-file backend.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use super::types::{BlockCount, Lba};

/// Whether a block range holds data or is deallocated (thin provisioning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provisioning {
    Mapped,
    Deallocated,
}

/// Storage under a disk LU. Ranges are validated by the SBC layer before they
/// reach the device: implementations may assume `lba + count <= num_blocks`.
#[async_trait]
pub trait BlockDevice: Send + Sync {
    /// Logical block size in bytes (512 or 4096).
    fn block_size(&self) -> u32;
    /// Capacity in logical blocks.
    fn num_blocks(&self) -> u64;
    /// Reads `count` blocks at `lba`.
    async fn read(&self, lba: Lba, count: BlockCount) -> io::Result<Bytes>;
    /// Writes whole blocks at `lba`. With `fua` the data is durable before
    /// this returns.
    async fn write(&self, lba: Lba, data: Bytes, fua: bool) -> io::Result<()>;
    /// Makes every completed write durable.
    async fn flush(&self) -> io::Result<()>;
    /// Deallocates blocks; they read back as zeros afterwards.
    async fn unmap(&self, lba: Lba, count: BlockCount) -> io::Result<()>;
    /// The provisioning status of the run starting at `lba`, and its length
    /// in blocks (at most `max`).
    async fn provisioning(&self, lba: Lba, max: BlockCount) -> io::Result<(Provisioning, BlockCount)>;
}

/// A disk backed by a sparse file. UNMAP punches holes, so LBA status maps
/// straight onto SEEK_DATA/SEEK_HOLE.
pub struct FileBlockDevice {
    file: Arc<File>,
    block_size: u32,
    num_blocks: u64,
}

impl FileBlockDevice {
    /// Opens (creating if needed) a sparse file of `size_bytes`.
    pub fn open(path: &Path, size_bytes: u64, block_size: u32) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        if file.metadata()?.len() != size_bytes {
            file.set_len(size_bytes)?;
        }
        Ok(FileBlockDevice { file: Arc::new(file), block_size, num_blocks: size_bytes / block_size as u64 })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&File) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || f(&file))
            .await
            .map_err(|e| io::Error::other(e.to_string()))?
    }
}

#[async_trait]
impl BlockDevice for FileBlockDevice {
    fn block_size(&self) -> u32 {
        self.block_size
    }

    fn num_blocks(&self) -> u64 {
        self.num_blocks
    }

    async fn read(&self, lba: Lba, count: BlockCount) -> io::Result<Bytes> {
        let off = lba.to_bytes(self.block_size);
        let len = count.to_bytes(self.block_size) as usize;
        self.blocking(move |f| {
            let mut buf = BytesMut::zeroed(len);
            f.read_exact_at(&mut buf, off)?;
            Ok(buf.freeze())
        })
        .await
    }

    async fn write(&self, lba: Lba, data: Bytes, fua: bool) -> io::Result<()> {
        let off = lba.to_bytes(self.block_size);
        self.blocking(move |f| {
            f.write_all_at(&data, off)?;
            if fua {
                f.sync_data()?;
            }
            Ok(())
        })
        .await
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
