//! The dashboard's history: every `interval` the gateway's own metrics are
//! sampled into a ring of 24 hours, from which the charts are drawn. It
//! reads the Prometheus registry, so the data path does nothing extra for
//! the console.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus::proto::{Metric, MetricFamily, MetricType};
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

/// One volume's counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VolumeCounters {
    pub read_bytes: f64,
    pub write_bytes: f64,
    /// Sums and counts of the latency histograms.
    pub read_seconds: f64,
    pub reads: f64,
    pub write_seconds: f64,
    pub writes: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub unix: u64,
    pub volumes: BTreeMap<String, VolumeCounters>,
    pub uploaded_bytes: f64,
    pub downloaded_bytes: f64,
}

pub struct Samples {
    interval: Duration,
    capacity: usize,
    ring: Mutex<VecDeque<Sample>>,
}

/// A counter's or a gauge's value.
fn value(f: &MetricFamily, m: &Metric) -> f64 {
    if f.get_field_type() == MetricType::GAUGE {
        m.get_gauge().get_value()
    } else {
        m.get_counter().get_value()
    }
}

/// The value of each series of a family by one label (counter or gauge).
pub fn by_label(families: &[MetricFamily], name: &str, label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for f in families.iter().filter(|f| f.name() == name) {
        for m in f.get_metric() {
            let Some(l) = m.get_label().iter().find(|l| l.name() == label) else { continue };
            out.insert(l.value().to_string(), value(f, m));
        }
    }
    out
}

/// The first series of a family without looking at labels (sums all
/// series of a counter).
pub fn total(families: &[MetricFamily], name: &str) -> Option<f64> {
    let f = families.iter().find(|f| f.name() == name)?;
    Some(
        f.get_metric()
            .iter()
            .map(|m| value(f, m))
            .sum(),
    )
}

fn histogram_by_label(families: &[MetricFamily], name: &str, label: &str) -> BTreeMap<String, (f64, f64)> {
    let mut out = BTreeMap::new();
    for f in families.iter().filter(|f| f.name() == name) {
        for m in f.get_metric() {
            if let Some(l) = m.get_label().iter().find(|l| l.name() == label) {
                let h = m.get_histogram();
                out.insert(l.value().to_string(), (h.get_sample_sum(), h.get_sample_count() as f64));
            }
        }
    }
    out
}

impl Sample {
    pub fn from_families(unix: u64, families: &[MetricFamily]) -> Sample {
        let read_bytes = by_label(families, "sgw_volume_read_bytes_total", "volume");
        let write_bytes = by_label(families, "sgw_volume_write_bytes_total", "volume");
        let read_lat = histogram_by_label(families, "sgw_volume_read_seconds", "volume");
        let write_lat = histogram_by_label(families, "sgw_volume_write_seconds", "volume");
        let mut volumes = BTreeMap::new();
        for name in read_bytes.keys().chain(write_bytes.keys()) {
            let (read_seconds, reads) = read_lat.get(name).copied().unwrap_or_default();
            let (write_seconds, writes) = write_lat.get(name).copied().unwrap_or_default();
            volumes.insert(
                name.clone(),
                VolumeCounters {
                    read_bytes: read_bytes.get(name).copied().unwrap_or(0.0),
                    write_bytes: write_bytes.get(name).copied().unwrap_or(0.0),
                    read_seconds,
                    reads,
                    write_seconds,
                    writes,
                },
            );
        }
        Sample {
            unix,
            volumes,
            uploaded_bytes: total(families, "sgw_cloud_bytes_uploaded_total").unwrap_or(0.0),
            downloaded_bytes: total(families, "sgw_cloud_bytes_downloaded_total").unwrap_or(0.0),
        }
    }
}

impl Samples {
    pub fn new(interval: Duration) -> Arc<Samples> {
        let capacity = (24 * 3600 / interval.as_secs().max(1)) as usize + 1;
        Arc::new(Samples { interval, capacity, ring: Mutex::new(VecDeque::with_capacity(capacity.min(4096))) })
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    pub fn push(&self, s: Sample) {
        let mut ring = self.ring.lock();
        if ring.len() == self.capacity {
            ring.pop_front();
        }
        ring.push_back(s);
    }

    /// The samples of the last `window`.
    pub fn recent(&self, window: Duration) -> Vec<Sample> {
        let ring = self.ring.lock();
        let Some(last) = ring.back() else { return Vec::new() };
        let from = last.unix.saturating_sub(window.as_secs());
        ring.iter().filter(|s| s.unix >= from).cloned().collect()
    }

    /// Samples until `shutdown`.
    pub async fn run(self: Arc<Self>, registry: Registry, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            let families = registry.gather();
            self.push(Sample::from_families(crate::admin::accounts::now_unix(), &families));
        }
    }
}

/// A rate series (per second) between consecutive samples.
pub fn rates(samples: &[Sample], value: impl Fn(&Sample) -> f64) -> Vec<(u64, f64)> {
    samples
        .windows(2)
        .map(|w| {
            let dt = w[1].unix.saturating_sub(w[0].unix).max(1) as f64;
            (w[1].unix, ((value(&w[1]) - value(&w[0])).max(0.0)) / dt)
        })
        .collect()
}

/// Mean latency (seconds) per interval: delta of the sum over delta of the
/// count.
pub fn latencies(samples: &[Sample], sum: impl Fn(&Sample) -> (f64, f64)) -> Vec<(u64, f64)> {
    samples
        .windows(2)
        .map(|w| {
            let (s0, c0) = sum(&w[0]);
            let (s1, c1) = sum(&w[1]);
            let n = c1 - c0;
            (w[1].unix, if n > 0.0 { (s1 - s0) / n } else { 0.0 })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_a_day_and_windows() {
        let s = Samples::new(Duration::from_secs(3600));
        for i in 0..30u64 {
            s.push(Sample { unix: i * 3600, ..Default::default() });
        }
        assert_eq!(s.recent(Duration::from_secs(24 * 3600 * 10)).len(), 25);
        assert_eq!(s.recent(Duration::from_secs(2 * 3600)).len(), 3);
    }

    #[test]
    fn rates_and_latency_from_counters() {
        let mut v = Vec::new();
        for (i, (bytes, sum, count)) in [(0.0, 0.0, 0.0), (100.0, 1.0, 10.0), (300.0, 1.0, 10.0)].into_iter().enumerate() {
            let mut s = Sample { unix: i as u64 * 10, ..Default::default() };
            s.volumes.insert("v".into(), VolumeCounters { write_bytes: bytes, write_seconds: sum, writes: count, ..Default::default() });
            v.push(s);
        }
        let r = rates(&v, |s| s.volumes["v"].write_bytes);
        assert_eq!(r, vec![(10, 10.0), (20, 20.0)]);
        let l = latencies(&v, |s| (s.volumes["v"].write_seconds, s.volumes["v"].writes));
        assert_eq!(l, vec![(10, 0.1), (20, 0.0)]);
    }

    #[test]
    fn sample_reads_the_registry() {
        let r = Registry::new();
        let m = crate::cached::metrics::VolumeMetrics::register(&r).unwrap();
        m.write_bytes.with_label_values(&["web1"]).inc_by(4096);
        m.write_seconds.with_label_values(&["web1"]).observe(0.002);
        let s = Sample::from_families(5, &r.gather());
        let c = s.volumes["web1"];
        assert_eq!((c.write_bytes, c.writes), (4096.0, 1.0));
        assert!((c.write_seconds - 0.002).abs() < 1e-9);
    }
}
