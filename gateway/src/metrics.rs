//! The gateway's Prometheus metrics, on one registry.

use prometheus::{Encoder, IntGauge, Registry, TextEncoder};

pub struct Metrics {
    pub registry: Registry,
    pub volumes: IntGauge,
    pub iscsi_sessions: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let volumes = IntGauge::new("sgw_volumes", "Volumes configured on the gateway")?;
        let iscsi_sessions = IntGauge::new("sgw_iscsi_sessions", "iSCSI sessions logged in")?;
        registry.register(Box::new(volumes.clone()))?;
        registry.register(Box::new(iscsi_sessions.clone()))?;
        Ok(Metrics { registry, volumes, iscsi_sessions })
    }

    pub fn render(&self) -> Result<String, String> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).map_err(|e| e.to_string())?;
        String::from_utf8(buf).map_err(|e| e.to_string())
    }
}
