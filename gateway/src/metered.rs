//! Volume I/O metrics for devices that keep none themselves: a local
//! (file-backed) volume gets the same per-volume series as a cached one
//! (`sgw_volume_read_bytes_total`, latency histograms, ...), so dashboards
//! do not go blank for one kind.

use std::io;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use iscsi_target::scsi::block::{BlockDevice, Provisioning};
use iscsi_target::scsi::lu::DataOutChecksums;
use iscsi_target::scsi::types::{BlockCount, Lba};

use crate::cached::metrics::VolumeSeries;

pub struct MeteredDevice<D> {
    inner: D,
    series: VolumeSeries,
}

impl<D> MeteredDevice<D> {
    pub fn new(inner: D, series: VolumeSeries) -> Self {
        MeteredDevice { inner, series }
    }

    fn wrote(&self, bytes: usize, started: Instant) {
        self.series.write_bytes.inc_by(bytes as u64);
        self.series.write_seconds.observe(started.elapsed().as_secs_f64());
    }
}

#[async_trait]
impl<D: BlockDevice> BlockDevice for MeteredDevice<D> {
    fn block_size(&self) -> u32 {
        self.inner.block_size()
    }

    fn num_blocks(&self) -> u64 {
        self.inner.num_blocks()
    }

    fn physical_block_exponent(&self) -> u8 {
        self.inner.physical_block_exponent()
    }

    async fn read(&self, lba: Lba, count: BlockCount) -> io::Result<Bytes> {
        let started = Instant::now();
        let data = self.inner.read(lba, count).await?;
        self.series.reads.inc();
        self.series.read_bytes.inc_by(data.len() as u64);
        self.series.read_seconds.observe(started.elapsed().as_secs_f64());
        Ok(data)
    }

    async fn write(&self, lba: Lba, data: Bytes, fua: bool) -> io::Result<()> {
        let (started, len) = (Instant::now(), data.len());
        self.inner.write(lba, data, fua).await?;
        self.wrote(len, started);
        Ok(())
    }

    fn checksum_granule(&self) -> Option<u32> {
        self.inner.checksum_granule()
    }

    async fn write_checksummed(&self, lba: Lba, data: Bytes, fua: bool, checksums: &DataOutChecksums) -> io::Result<()> {
        let (started, len) = (Instant::now(), data.len());
        self.inner.write_checksummed(lba, data, fua, checksums).await?;
        self.wrote(len, started);
        Ok(())
    }

    fn atomic_write_limit(&self) -> BlockCount {
        self.inner.atomic_write_limit()
    }

    async fn write_atomic(&self, lba: Lba, data: Bytes) -> io::Result<()> {
        let (started, len) = (Instant::now(), data.len());
        self.inner.write_atomic(lba, data).await?;
        self.wrote(len, started);
        Ok(())
    }

    async fn flush(&self) -> io::Result<()> {
        self.inner.flush().await
    }

    async fn unmap(&self, lba: Lba, count: BlockCount) -> io::Result<()> {
        self.inner.unmap(lba, count).await
    }

    async fn provisioning(&self, lba: Lba, max: BlockCount) -> io::Result<(Provisioning, BlockCount)> {
        self.inner.provisioning(lba, max).await
    }
}
