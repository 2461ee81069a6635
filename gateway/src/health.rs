//! What is wrong with the running gateway, by component: `GET
//! /api/v1/health` lists it (status `degraded`) and the gauge
//! `sgw_health{component}` exports it (1 ok, 0 degraded). The parts that
//! watch a component report to the board; the board holds no history, only
//! the state now (the events list keeps the WARN lines of each change).

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use prometheus::IntGaugeVec;
use serde::{Deserialize, Serialize};

/// The gateway's cache disks and their index.
pub const CACHE: &str = "cache";
/// Uploads to the cloud (failing after the store's own retries).
pub const UPLOADS: &str = "uploads";

/// A component that is degraded, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ComponentFault {
    /// `cache` or `uploads`.
    pub component: String,
    pub reason: String,
}

#[derive(Default)]
pub struct HealthBoard {
    faults: Mutex<BTreeMap<&'static str, String>>,
    gauge: OnceLock<IntGaugeVec>,
}

impl HealthBoard {
    /// Exports the board's state to `gauge` (labelled `component`) from now
    /// on, starting with every component the gateway watches.
    pub fn export_to(&self, gauge: IntGaugeVec) {
        let faults = self.lock();
        for component in [CACHE, UPLOADS] {
            gauge.with_label_values(&[component]).set(i64::from(!faults.contains_key(component)));
        }
        let _ = self.gauge.set(gauge);
    }

    /// Reports `component` as degraded for `fault`, or fine with `None`.
    pub fn report(&self, component: &'static str, fault: Option<String>) {
        let mut faults = self.lock();
        let ok = fault.is_none();
        match fault {
            Some(reason) => faults.insert(component, reason),
            None => faults.remove(component),
        };
        if let Some(gauge) = self.gauge.get() {
            gauge.with_label_values(&[component]).set(i64::from(ok));
        }
    }

    /// The degraded components; empty when all is well.
    pub fn faults(&self) -> Vec<ComponentFault> {
        self.lock().iter().map(|(c, r)| ComponentFault { component: (*c).to_owned(), reason: r.clone() }).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, String>> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_reach_the_list_and_the_gauge() {
        let board = HealthBoard::default();
        board.report(CACHE, Some("disk full".into()));
        let gauge = IntGaugeVec::new(prometheus::Opts::new("sgw_health", "h"), &["component"]).expect("gauge");
        board.export_to(gauge.clone());
        assert_eq!(gauge.with_label_values(&[CACHE]).get(), 0);
        assert_eq!(gauge.with_label_values(&[UPLOADS]).get(), 1);
        assert_eq!(board.faults(), vec![ComponentFault { component: CACHE.into(), reason: "disk full".into() }]);
        board.report(CACHE, None);
        assert_eq!(gauge.with_label_values(&[CACHE]).get(), 1);
        assert!(board.faults().is_empty());
    }
}
