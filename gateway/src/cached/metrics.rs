//! Volume metrics, with the meanings of the AWS Storage Gateway console:
//! cache hit percent, cache percent dirty and used, read and write bytes
//! and latency per volume, time since the last recovery point.

use prometheus::{Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct VolumeMetrics {
    pub read_bytes: IntCounterVec,
    pub write_bytes: IntCounterVec,
    pub read_seconds: HistogramVec,
    pub write_seconds: HistogramVec,
    /// Reads served entirely from the cache, and all reads.
    pub cache_hits: IntCounterVec,
    pub reads: IntCounterVec,
    pub cloud_reads: IntCounterVec,
    pub prefetched_chunks: IntCounterVec,
    pub recovery_point_age: GaugeVec,
    pub recovery_points: IntCounterVec,
    pub recovery_point_bytes: IntCounterVec,
    /// Chunks whose cloud object cannot be read back (see `damage`).
    pub damaged_chunks: IntGaugeVec,
    /// Percentages are floats, as CloudWatch's are.
    pub cache_percent_used: Gauge,
    pub cache_percent_dirty: Gauge,
    pub cache_hit_percent: Gauge,
    pub cache_total_bytes: IntGauge,
    pub upload_buffer_percent_used: Gauge,
    pub upload_buffer_percent_dirty: Gauge,
    pub upload_buffer_used_bytes: IntGauge,
    pub upload_buffer_free_bytes: IntGauge,
    pub queued_writes_bytes: IntGauge,
}

fn buckets() -> Vec<f64> {
    vec![0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0]
}

impl VolumeMetrics {
    pub fn register(registry: &Registry) -> Result<VolumeMetrics, prometheus::Error> {
        let counter = |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &["volume"]);
        let hist = |name: &str, help: &str| {
            HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets()), &["volume"])
        };
        let m = VolumeMetrics {
            read_bytes: counter("sgw_volume_read_bytes_total", "Bytes read by initiators")?,
            write_bytes: counter("sgw_volume_write_bytes_total", "Bytes written by initiators")?,
            read_seconds: hist("sgw_volume_read_seconds", "Read latency")?,
            write_seconds: hist("sgw_volume_write_seconds", "Write latency")?,
            cache_hits: counter("sgw_volume_cache_hits_total", "Reads served from the cache alone")?,
            reads: counter("sgw_volume_reads_total", "Read commands")?,
            cloud_reads: counter("sgw_volume_cloud_chunk_reads_total", "Chunks fetched from the cloud")?,
            prefetched_chunks: counter("sgw_volume_prefetched_chunks_total", "Chunks fetched ahead of sequential reads")?,
            recovery_point_age: GaugeVec::new(
                Opts::new(
                    "sgw_volume_time_since_last_recovery_point_seconds",
                    "Age of the volume's last recovery point (time_since_last_recovery_point)",
                ),
                &["volume"],
            )?,
            recovery_points: counter("sgw_volume_recovery_points_total", "Recovery points committed")?,
            recovery_point_bytes: counter(
                "sgw_volume_recovery_point_uploaded_bytes_total",
                "Bytes uploaded for recovery point manifests",
            )?,
            damaged_chunks: IntGaugeVec::new(
                Opts::new(
                    "sgw_volume_damaged_chunks",
                    "Chunks of the volume whose cloud object cannot be read back (failed verification or missing)",
                ),
                &["volume"],
            )?,
            cache_percent_used: Gauge::new("sgw_cache_percent_used", "Cache space in use, percent (CachePercentUsed)")?,
            cache_percent_dirty: Gauge::new(
                "sgw_cache_percent_dirty",
                "Cache space not yet uploaded, percent (CachePercentDirty)",
            )?,
            cache_hit_percent: Gauge::new(
                "sgw_cache_hit_percent",
                "Reads served from the cache, percent, since start (CacheHitPercent)",
            )?,
            cache_total_bytes: IntGauge::new("sgw_cache_total_bytes", "Cache capacity in bytes")?,
            upload_buffer_percent_used: Gauge::new(
                "sgw_upload_buffer_percent_used",
                "Upload buffer in use, percent: data not yet uploaded over the share of the cache it may take (UploadBufferPercentUsed)",
            )?,
            upload_buffer_percent_dirty: Gauge::new(
                "sgw_upload_buffer_percent_dirty",
                "Written data still to upload over the upload buffer, percent: the used share without the copy-on-write bases that wait for a flush",
            )?,
            upload_buffer_used_bytes: IntGauge::new(
                "sgw_upload_buffer_used_bytes",
                "Data in the cache not yet uploaded (UploadBufferUsedBytes)",
            )?,
            upload_buffer_free_bytes: IntGauge::new(
                "sgw_upload_buffer_free_bytes",
                "Room left for data not yet uploaded before writers wait (UploadBufferFreeBytes)",
            )?,
            queued_writes_bytes: IntGauge::new("sgw_queued_writes_bytes", "Bytes written and not yet uploaded")?,
        };
        registry.register(Box::new(m.read_bytes.clone()))?;
        registry.register(Box::new(m.write_bytes.clone()))?;
        registry.register(Box::new(m.read_seconds.clone()))?;
        registry.register(Box::new(m.write_seconds.clone()))?;
        registry.register(Box::new(m.cache_hits.clone()))?;
        registry.register(Box::new(m.reads.clone()))?;
        registry.register(Box::new(m.cloud_reads.clone()))?;
        registry.register(Box::new(m.prefetched_chunks.clone()))?;
        registry.register(Box::new(m.recovery_point_age.clone()))?;
        registry.register(Box::new(m.recovery_points.clone()))?;
        registry.register(Box::new(m.recovery_point_bytes.clone()))?;
        registry.register(Box::new(m.damaged_chunks.clone()))?;
        registry.register(Box::new(m.cache_percent_used.clone()))?;
        registry.register(Box::new(m.cache_percent_dirty.clone()))?;
        registry.register(Box::new(m.cache_hit_percent.clone()))?;
        registry.register(Box::new(m.cache_total_bytes.clone()))?;
        registry.register(Box::new(m.upload_buffer_percent_used.clone()))?;
        registry.register(Box::new(m.upload_buffer_percent_dirty.clone()))?;
        registry.register(Box::new(m.upload_buffer_used_bytes.clone()))?;
        registry.register(Box::new(m.upload_buffer_free_bytes.clone()))?;
        registry.register(Box::new(m.queued_writes_bytes.clone()))?;
        Ok(m)
    }
}

/// One volume's data-path series, looked up once: a label lookup hashes
/// and locks, which the I/O path should not do for every command.
#[derive(Clone)]
pub struct VolumeSeries {
    pub read_bytes: IntCounter,
    pub write_bytes: IntCounter,
    pub read_seconds: Histogram,
    pub write_seconds: Histogram,
    pub cache_hits: IntCounter,
    pub reads: IntCounter,
    pub cloud_reads: IntCounter,
    pub prefetched_chunks: IntCounter,
    pub damaged_chunks: IntGauge,
}

impl VolumeSeries {
    pub fn new(m: &VolumeMetrics, volume: &str) -> VolumeSeries {
        let l = &[volume];
        VolumeSeries {
            read_bytes: m.read_bytes.with_label_values(l),
            write_bytes: m.write_bytes.with_label_values(l),
            read_seconds: m.read_seconds.with_label_values(l),
            write_seconds: m.write_seconds.with_label_values(l),
            cache_hits: m.cache_hits.with_label_values(l),
            reads: m.reads.with_label_values(l),
            cloud_reads: m.cloud_reads.with_label_values(l),
            prefetched_chunks: m.prefetched_chunks.with_label_values(l),
            damaged_chunks: m.damaged_chunks.with_label_values(l),
        }
    }
}
