//! The gateway's Prometheus metrics, on one registry.

use prometheus::{Encoder, IntGauge, IntGaugeVec, Registry, TextEncoder};

pub struct Metrics {
    pub registry: Registry,
    pub volumes: IntGauge,
    pub iscsi_sessions: IntGauge,
    /// `sgw_health{component}`: 1 ok, 0 degraded (see `crate::health`).
    pub health: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let volumes = IntGauge::new("sgw_volumes", "Volumes configured on the gateway")?;
        let iscsi_sessions = IntGauge::new("sgw_iscsi_sessions", "iSCSI sessions logged in")?;
        registry.register(Box::new(volumes.clone()))?;
        registry.register(Box::new(iscsi_sessions.clone()))?;
        let health = IntGaugeVec::new(
            prometheus::Opts::new("sgw_health", "1 when the component (cache, uploads) is ok, 0 when degraded"),
            &["component"],
        )?;
        registry.register(Box::new(health.clone()))?;
        // process_cpu_seconds_total, process_resident_memory_bytes,
        // process_open_fds and friends, read from /proc.
        registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        Ok(Metrics { registry, volumes, iscsi_sessions, health })
    }

    pub fn render(&self) -> Result<String, String> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).map_err(|e| e.to_string())?;
        String::from_utf8(buf).map_err(|e| e.to_string())
    }
}
