//! Prometheus metrics, registered on the caller's registry and removed from
//! it when the cache is dropped (so a cache can be reopened on the same
//! registry).

use prometheus::{Counter, IntCounter, IntGauge, Registry};

use crate::error::Result;

pub struct Metrics {
    registry: Registry,
    /// How many of [`Metrics::collectors`] this instance registered, and so
    /// must unregister (a failed registration leaves the others' alone).
    registered: usize,
    pub used_bytes: IntGauge,
    pub dirty_bytes: IntGauge,
    pub free_bytes: IntGauge,
    pub hits: IntCounter,
    pub misses: IntCounter,
    pub evictions: IntCounter,
    pub backpressure_waits: IntCounter,
    pub backpressure_seconds: Counter,
    pub corruptions: IntCounter,
    pub flushes: IntCounter,
}

impl Metrics {
    pub fn register(registry: &Registry) -> Result<Metrics> {
        let mut metrics = Metrics {
            registry: registry.clone(),
            registered: 0,
            used_bytes: IntGauge::new("cache_used_bytes", "Bytes of cache slots holding data")?,
            dirty_bytes: IntGauge::new("cache_dirty_bytes", "Bytes of cache slots holding data not yet uploaded")?,
            free_bytes: IntGauge::new("cache_free_bytes", "Bytes of free cache slots")?,
            hits: IntCounter::new("cache_read_hits_total", "Reads served entirely from the cache")?,
            misses: IntCounter::new("cache_read_misses_total", "Reads that found part of their range absent")?,
            evictions: IntCounter::new("cache_evictions_total", "Clean chunks evicted")?,
            backpressure_waits: IntCounter::new(
                "cache_backpressure_waits_total",
                "Writes that waited for dirty data to be uploaded",
            )?,
            backpressure_seconds: Counter::new(
                "cache_backpressure_wait_seconds_total",
                "Time writers spent waiting for dirty data to be uploaded",
            )?,
            corruptions: IntCounter::new("cache_checksum_errors_total", "Sectors whose checksum did not match")?,
            flushes: IntCounter::new("cache_flushes_total", "Completed flushes (each may serve many callers)")?,
        };
        for (i, c) in metrics.collectors().into_iter().enumerate() {
            registry.register(c)?;
            metrics.registered = i + 1;
        }
        Ok(metrics)
    }

    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.used_bytes.clone()),
            Box::new(self.dirty_bytes.clone()),
            Box::new(self.free_bytes.clone()),
            Box::new(self.hits.clone()),
            Box::new(self.misses.clone()),
            Box::new(self.evictions.clone()),
            Box::new(self.backpressure_waits.clone()),
            Box::new(self.backpressure_seconds.clone()),
            Box::new(self.corruptions.clone()),
            Box::new(self.flushes.clone()),
        ]
    }
}

impl Drop for Metrics {
    fn drop(&mut self) {
        for c in self.collectors().into_iter().take(self.registered) {
            // Fails only if already unregistered by the caller: nothing to do.
            let _ = self.registry.unregister(c);
        }
    }
}
