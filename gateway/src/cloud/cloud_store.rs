//! The object store as the rest of the gateway uses it: every request
//! retried on transient failures, paced by the bandwidth schedule, timed
//! and counted. Backends stay simple; this is the one place for policy.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;

use super::bandwidth::{Direction, RateLimiter, ScheduleHandle};
use super::error::{ErrorKind, StoreError};
use super::metrics::CloudMetrics;
use super::retry::RetryPolicy;
use super::store::{
    ByteRange, CompletedPart, ListPage, ObjectMeta, ObjectStore, RestoreTier, StorageClass,
};

#[derive(Debug, Clone)]
pub struct CloudStore {
    inner: Arc<dyn ObjectStore>,
    policy: RetryPolicy,
    metrics: CloudMetrics,
    upload: Arc<RateLimiter>,
    download: Arc<RateLimiter>,
    schedule: ScheduleHandle,
}

impl CloudStore {
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        policy: RetryPolicy,
        schedule: ScheduleHandle,
        metrics: CloudMetrics,
    ) -> CloudStore {
        CloudStore {
            inner,
            policy,
            upload: Arc::new(RateLimiter::new(schedule.clone(), Direction::Upload)),
            download: Arc::new(RateLimiter::new(schedule.clone(), Direction::Download)),
            schedule,
            metrics,
        }
    }

    /// The bandwidth schedule in effect, replaceable at run time.
    pub fn bandwidth(&self) -> &ScheduleHandle {
        &self.schedule
    }

    pub fn metrics(&self) -> &CloudMetrics {
        &self.metrics
    }

    /// Runs `call` until it succeeds, fails for a non-transient reason, or
    /// runs out of attempts. `upload_bytes` are paced before each attempt,
    /// outside its timeout, so a low limit is never mistaken for a stall.
    async fn attempt<T, F, Fut>(
        &self,
        op: &'static str,
        key: &str,
        upload_bytes: u64,
        mut call: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let latency = self.metrics.request_seconds.with_label_values(&[op]);
        let mut retry = 0;
        loop {
            if upload_bytes > 0 {
                self.upload.acquire(upload_bytes).await;
            }
            let started = Instant::now();
            let result = match tokio::time::timeout(self.policy.attempt_timeout(), call()).await {
                Ok(result) => result,
                Err(_) => Err(StoreError::new(
                    ErrorKind::Transient,
                    op,
                    key,
                    "attempt timed out",
                )),
            };
            latency.observe(started.elapsed().as_secs_f64());
            match result {
                Ok(value) => {
                    self.metrics.bytes_uploaded.inc_by(upload_bytes);
                    return Ok(value);
                }
                Err(e)
                    if e.kind() == ErrorKind::Transient && retry + 1 < self.policy.max_attempts =>
                {
                    tracing::debug!(error = %e, retry, "retrying object-store request");
                    self.metrics.retries.with_label_values(&[op]).inc();
                    tokio::time::sleep(self.policy.backoff(retry)).await;
                    retry += 1;
                }
                Err(e) => {
                    // "Not found" is an answer, not a failure: HEAD probes rely on it.
                    if e.kind() != ErrorKind::NotFound {
                        self.metrics
                            .errors
                            .with_label_values(&[op, e.kind().as_str()])
                            .inc();
                    }
                    return Err(e);
                }
            }
        }
    }
}

#[async_trait]
impl ObjectStore for CloudStore {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn put(&self, key: &str, body: Bytes, class: &StorageClass) -> Result<(), StoreError> {
        let len = body.len() as u64;
        self.attempt("put", key, len, || self.inner.put(key, body.clone(), class))
            .await
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<Bytes, StoreError> {
        let body = self
            .attempt("get", key, 0, || self.inner.get(key, range))
            .await?;
        self.metrics.bytes_downloaded.inc_by(body.len() as u64);
        // Pacing after the fact: the next download waits for this one.
        self.download.acquire(body.len() as u64).await;
        Ok(body)
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        self.attempt("head", key, 0, || self.inner.head(key)).await
    }

    async fn list_page(
        &self,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<ListPage, StoreError> {
        self.attempt("list", prefix, 0, || {
            self.inner.list_page(prefix, continuation.clone())
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.attempt("delete", key, 0, || self.inner.delete(key))
            .await
    }

    async fn copy_to_storage_class(
        &self,
        key: &str,
        class: &StorageClass,
    ) -> Result<(), StoreError> {
        self.attempt("copy", key, 0, || {
            self.inner.copy_to_storage_class(key, class)
        })
        .await
    }

    async fn restore(&self, key: &str, tier: RestoreTier, days: u32) -> Result<(), StoreError> {
        self.attempt("restore", key, 0, || self.inner.restore(key, tier, days))
            .await
    }

    async fn create_multipart(
        &self,
        key: &str,
        class: &StorageClass,
    ) -> Result<String, StoreError> {
        self.attempt("create_multipart", key, 0, || {
            self.inner.create_multipart(key, class)
        })
        .await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Bytes,
    ) -> Result<CompletedPart, StoreError> {
        let len = body.len() as u64;
        self.attempt("upload_part", key, len, || {
            self.inner
                .upload_part(key, upload_id, part_number, body.clone())
        })
        .await
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), StoreError> {
        self.attempt("complete_multipart", key, 0, || {
            self.inner.complete_multipart(key, upload_id, parts.clone())
        })
        .await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        self.attempt("abort_multipart", key, 0, || {
            self.inner.abort_multipart(key, upload_id)
        })
        .await
    }
}
