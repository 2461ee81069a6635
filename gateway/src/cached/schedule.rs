//! The background task of cached volumes: recovery points on a per-volume
//! schedule, garbage sweeps, and the gauges.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::engine::ChunkOwner;
use super::service::CachedVolumes;
use super::volume::CachedVolume;

/// How often the background task commits recovery points and sweeps.
#[derive(Debug, Clone, Copy)]
pub struct BackgroundSchedule {
    pub recovery_point_interval: Duration,
    pub sweep_interval: Duration,
}

impl CachedVolumes {
    /// Recovery points and garbage sweeps on a schedule, and the gauges
    /// admins watch. The first sweep runs soon after start (at most two
    /// minutes), as a stop may have left garbage behind.
    pub async fn run_background(self: Arc<Self>, schedule: BackgroundSchedule, shutdown: CancellationToken) {
        // A volume whose recovery point failed waits one interval before
        // the next attempt.
        let mut retry_at: HashMap<u64, tokio::time::Instant> = HashMap::new();
        let mut next_sweep = tokio::time::Instant::now() + schedule.sweep_interval.min(Duration::from_secs(120));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            self.publish_gauges();
            self.scheduled_recovery_points(schedule.recovery_point_interval, &mut retry_at).await;
            if tokio::time::Instant::now() >= next_sweep {
                self.sweep_garbage().await;
                next_sweep = tokio::time::Instant::now() + schedule.sweep_interval;
            }
        }
    }

    /// Recovery points of the volumes that are due: each volume's schedule
    /// follows the age of its last recovery point (kept in the bucket), so
    /// a gateway restarted more often than the interval still commits them.
    async fn scheduled_recovery_points(
        &self,
        interval: Duration,
        retry_at: &mut HashMap<u64, tokio::time::Instant>,
    ) {
        let now = tokio::time::Instant::now();
        retry_at.retain(|_, at| *at > now);
        let volumes: Vec<Arc<CachedVolume>> = self.open_volumes();
        for v in volumes {
            if retry_at.contains_key(&v.id()) || !self.recovery_point_due(&v, interval) {
                continue;
            }
            if !v.changed_since_recovery_point() {
                v.refresh_recovery_point();
                continue;
            }
            match v.create_recovery_point().await {
                Ok(outcome) => {
                    info!(
                        volume = v.name(),
                        seq = outcome.committed.root.seq,
                        uploaded_bytes = outcome.uploaded_bytes,
                        "recovery point committed"
                    );
                    self.after_recovery_point(&v, outcome.previous).await;
                }
                Err(e) => {
                    warn!(volume = v.name(), error = %e, retry_in_secs = interval.as_secs(), "recovery point failed");
                    retry_at.insert(v.id(), tokio::time::Instant::now() + interval);
                }
            }
        }
    }

    fn recovery_point_due(&self, v: &CachedVolume, interval: Duration) -> bool {
        match v.last_recovery_point() {
            // A last recovery point dated in the future (the clock went
            // back) counts as due: committing one dates it now.
            Some(rp) => SystemTime::now().duration_since(rp.at).map_or(true, |age| age >= interval),
            None => self.created_at.lock().unwrap_or_else(|e| e.into_inner()).get(&v.id()).is_none_or(|at| at.elapsed() >= interval),
        }
    }

}
