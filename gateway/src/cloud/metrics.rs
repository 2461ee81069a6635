//! Metrics of the cloud layer, named after what admins know from the AWS
//! Storage Gateway console (cloud bytes uploaded and downloaded, queued
//! bytes) plus the request-level figures that explain them.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// Handles to every cloud metric. Cheap to clone; all clones update the same
/// series.
#[derive(Debug, Clone)]
pub struct CloudMetrics {
    pub bytes_uploaded: IntCounter,
    pub bytes_downloaded: IntCounter,
    /// Bytes accepted by the uploader and not yet stored.
    pub queued_bytes: IntGauge,
    /// Seconds per request attempt, by operation.
    pub request_seconds: HistogramVec,
    /// Attempts repeated after a transient failure, by operation.
    pub retries: IntCounterVec,
    /// Requests that failed for good, by operation and error kind.
    pub errors: IntCounterVec,
    pub chunks_uploaded: IntCounter,
    /// Chunks not uploaded because an identical one was stored or in flight.
    pub chunks_deduplicated: IntCounter,
    pub zero_chunks: IntCounter,
}

impl CloudMetrics {
    /// Creates the metrics and registers them on `registry`.
    pub fn register(registry: &Registry) -> Result<CloudMetrics, prometheus::Error> {
        let metrics = CloudMetrics {
            bytes_uploaded: IntCounter::new(
                "sgw_cloud_bytes_uploaded_total",
                "Bytes sent to the object store",
            )?,
            bytes_downloaded: IntCounter::new(
                "sgw_cloud_bytes_downloaded_total",
                "Bytes received from the object store",
            )?,
            queued_bytes: IntGauge::new(
                "sgw_cloud_upload_queued_bytes",
                "Bytes waiting in the uploader",
            )?,
            request_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "sgw_cloud_request_seconds",
                    "Object-store request latency per attempt",
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
                &["op"],
            )?,
            retries: IntCounterVec::new(
                Opts::new(
                    "sgw_cloud_request_retries_total",
                    "Object-store requests retried",
                ),
                &["op"],
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    "sgw_cloud_request_errors_total",
                    "Object-store requests failed after retries",
                ),
                &["op", "kind"],
            )?,
            chunks_uploaded: IntCounter::new(
                "sgw_cloud_chunks_uploaded_total",
                "Chunk objects stored",
            )?,
            chunks_deduplicated: IntCounter::new(
                "sgw_cloud_chunks_deduplicated_total",
                "Chunks not uploaded because identical content was already stored",
            )?,
            zero_chunks: IntCounter::new(
                "sgw_cloud_zero_chunks_total",
                "All-zero chunks, never stored",
            )?,
        };
        registry.register(Box::new(metrics.bytes_uploaded.clone()))?;
        registry.register(Box::new(metrics.bytes_downloaded.clone()))?;
        registry.register(Box::new(metrics.queued_bytes.clone()))?;
        registry.register(Box::new(metrics.request_seconds.clone()))?;
        registry.register(Box::new(metrics.retries.clone()))?;
        registry.register(Box::new(metrics.errors.clone()))?;
        registry.register(Box::new(metrics.chunks_uploaded.clone()))?;
        registry.register(Box::new(metrics.chunks_deduplicated.clone()))?;
        registry.register(Box::new(metrics.zero_chunks.clone()))?;
        Ok(metrics)
    }

    /// Retries counted over every operation.
    pub fn total_retries(&self) -> u64 {
        use prometheus::core::Collector;
        let total: f64 = self
            .retries
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .map(|metric| metric.get_counter().get_value())
            .sum();
        total as u64
    }
}
