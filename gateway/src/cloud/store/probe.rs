//! The connectivity test run before an S3 target is saved: HEAD the
//! bucket, then PUT, GET and DELETE a probe object. A failure names the
//! step and the likeliest cause, in the admin's terms (DNS, TLS,
//! connection, credentials, bucket missing, clock skew), so that the
//! activation wizard can say what to fix.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{ObjectStore, S3Config, S3Store, StorageClass};
use crate::cloud::error::{ErrorKind, StoreError};

/// Why a step failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProbeCause {
    Dns,
    Tls,
    Connection,
    Timeout,
    Auth,
    BucketMissing,
    ClockSkew,
    /// The object read back differs from what was written.
    Mismatch,
    Other,
}

impl ProbeCause {
    fn advice(self) -> &'static str {
        match self {
            ProbeCause::Dns => "DNS: the endpoint's host name does not resolve",
            ProbeCause::Tls => "TLS: the endpoint's certificate is not trusted or the handshake failed",
            ProbeCause::Connection => "connection: nothing answers at the endpoint (refused or unreachable)",
            ProbeCause::Timeout => "timeout: the endpoint did not answer in time",
            ProbeCause::Auth => "auth: the access key or secret was refused, or lacks permission on the bucket",
            ProbeCause::BucketMissing => "bucket missing: no such bucket at this endpoint and region",
            ProbeCause::ClockSkew => "clock skew: the gateway's clock differs too much from the service's; check NTP",
            ProbeCause::Mismatch => "the probe object read back differs from what was written",
            ProbeCause::Other => "the service refused the request",
        }
    }
}

/// A failed connectivity test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{step} failed: {} ({detail})", cause.advice())]
pub struct ProbeFailure {
    /// `HEAD bucket`, `PUT object`, `GET object` or `DELETE object`.
    pub step: String,
    pub cause: ProbeCause,
    pub detail: String,
}

/// The cause behind a store error, from its kind and the text of the
/// underlying failure (connector errors carry no code).
fn cause_of(step: &str, e: &StoreError) -> ProbeCause {
    let text = format!("{e} {:?}", std::error::Error::source(e)).to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    if has(&["requesttimetooskewed", "time too skewed", "requestexpired"]) {
        return ProbeCause::ClockSkew;
    }
    if has(&["nosuchbucket"]) || (step == "HEAD bucket" && e.kind() == ErrorKind::NotFound) {
        return ProbeCause::BucketMissing;
    }
    if e.kind() == ErrorKind::Auth {
        return ProbeCause::Auth;
    }
    if has(&["dns error", "failed to lookup address", "name or service not known", "no such host"]) {
        return ProbeCause::Dns;
    }
    if has(&["certificate", "tls", "handshake", "invalidcertificate", "unknownissuer"]) {
        return ProbeCause::Tls;
    }
    if has(&["timed out", "timeout"]) {
        return ProbeCause::Timeout;
    }
    if has(&["connection refused", "connect", "unreachable", "io error", "dispatch failure"]) {
        return ProbeCause::Connection;
    }
    ProbeCause::Other
}

fn failure(step: &str, e: &StoreError) -> ProbeFailure {
    ProbeFailure { step: step.to_string(), cause: cause_of(step, e), detail: e.to_string() }
}

/// Runs the four steps against `config`, leaving nothing behind on success.
pub async fn probe_s3(config: &S3Config, prefix: &str) -> Result<(), ProbeFailure> {
    let store = S3Store::connect(config).await;
    store.head_bucket().await.map_err(|e| failure("HEAD bucket", &e))?;
    let prefix = prefix.trim_matches('/');
    let key = format!(
        "{}{}.sgw-probe-{}",
        prefix,
        if prefix.is_empty() { "" } else { "/" },
        hex::encode(rand::random::<[u8; 8]>())
    );
    let body = Bytes::from(format!("sgw connectivity probe {}", hex::encode(rand::random::<[u8; 16]>())));
    store.put(&key, body.clone(), &StorageClass::Standard).await.map_err(|e| failure("PUT object", &e))?;
    let read = store.get(&key, None).await.map_err(|e| failure("GET object", &e));
    let deleted = store.delete(&key).await.map_err(|e| failure("DELETE object", &e));
    let read = read?;
    if read != body {
        return Err(ProbeFailure {
            step: "GET object".into(),
            cause: ProbeCause::Mismatch,
            detail: format!("{} bytes written, {} read", body.len(), read.len()),
        });
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn nothing_listening_is_a_connection_failure_at_head_bucket() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = S3Config {
            bucket: "probe".into(),
            region: "us-east-1".into(),
            endpoint: Some(format!("http://127.0.0.1:{port}")),
            path_style: true,
            access_key_id: Some("k".into()),
            secret_access_key: Some("s".into()),
            connect_timeout_secs: 2,
        };
        let e = probe_s3(&config, "p").await.unwrap_err();
        assert_eq!(e.step, "HEAD bucket");
        assert_eq!(e.cause, ProbeCause::Connection, "{e}");
        assert!(e.to_string().starts_with("HEAD bucket failed: connection"), "{e}");
    }

    #[tokio::test]
    async fn unknown_host_is_dns() {
        let config = S3Config {
            bucket: "probe".into(),
            region: "us-east-1".into(),
            endpoint: Some("http://no-such-host.invalid:9000".into()),
            path_style: true,
            access_key_id: Some("k".into()),
            secret_access_key: Some("s".into()),
            connect_timeout_secs: 2,
        };
        let e = probe_s3(&config, "").await.unwrap_err();
        assert_eq!((e.step.as_str(), e.cause), ("HEAD bucket", ProbeCause::Dns), "{e}");
    }
}
