//! The CLI's client of the admin API: over the gateway's owner-only socket
//! on its own host (no password: the socket's mode is the check), or with
//! an API token over HTTPS (a remote gateway, its certificate pinned) or
//! the loopback HTTP listener.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::admin::accounts::TokenInfo;
use crate::admin::routes::{ChangePassword, CreateToken, GatewayInfo, RecoveryKit, TokenCreated};
use crate::api::{CreateSnapshot, CreateVolume, ErrorBody, RecoveryPointCreated, Recovered};
use crate::cached::SnapshotRecord;
use crate::tapes::{CreateTapes, LibraryInfo, TapeInfo};
use crate::volumes::VolumeInfo;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Api(String),
    #[error("cannot reach the gateway at {url}: {msg}")]
    Unreachable { url: String, msg: String },
    #[error("unexpected response: {0}")]
    Decode(String),
    #[error("{0}")]
    Usage(String),
}

#[derive(Clone)]
enum Endpoint {
    Unix(std::path::PathBuf),
    Http { authority: String },
    Https { authority: String, host: String, tls: Arc<rustls::ClientConfig> },
}

pub struct Client {
    endpoint: Endpoint,
    /// What the user gave, for messages.
    shown: String,
    token: Option<String>,
}

/// Seconds a CLI command waits for the gateway (recover and recovery
/// points can take long on a big volume).
const CALL_TIMEOUT_SECS: u64 = 600;

impl Client {
    /// `unix:PATH`, or `https://HOST:PORT` / `http://HOST:PORT` with a
    /// token (`SGW_TOKEN`); HTTPS trusts the certificate named by
    /// `SGW_TLS_FINGERPRINT` or `SGW_CA_CERT`.
    pub fn new(api: &str, token: Option<String>) -> Result<Client, ClientError> {
        let shown = api.to_string();
        let authority_of = |rest: &str, default_port: u16| -> Result<(String, String), ClientError> {
            let authority = rest.trim_end_matches('/');
            let parsed: hyper::http::uri::Authority = authority
                .parse()
                .map_err(|_| ClientError::Usage(format!("--api {api:?}: expected a URL like https://HOST:PORT")))?;
            let host = parsed.host().trim_start_matches('[').trim_end_matches(']').to_string();
            Ok((format!("{}:{}", parsed.host(), parsed.port_u16().unwrap_or(default_port)), host))
        };
        let endpoint = if let Some(path) = api.strip_prefix("unix:") {
            Endpoint::Unix(path.into())
        } else if let Some(rest) = api.strip_prefix("http://") {
            Endpoint::Http { authority: authority_of(rest, 80)?.0 }
        } else if let Some(rest) = api.strip_prefix("https://") {
            let (authority, host) = authority_of(rest, 443)?;
            let fingerprint = std::env::var("SGW_TLS_FINGERPRINT").ok().filter(|f| !f.is_empty());
            let ca = std::env::var_os("SGW_CA_CERT").map(std::path::PathBuf::from);
            let tls = crate::client_tls::client_config(fingerprint.as_deref(), ca.as_deref()).map_err(ClientError::Usage)?;
            Endpoint::Https { authority, host, tls }
        } else {
            return Err(ClientError::Usage(format!(
                "--api {api:?}: give unix:PATH (the gateway's socket), https://HOST:PORT or http://HOST:PORT"
            )));
        };
        Ok(Client { endpoint, shown, token })
    }

    fn unreachable(&self, msg: impl std::fmt::Display) -> ClientError {
        ClientError::Unreachable { url: self.shown.clone(), msg: format!("{msg} (is `sgw serve` running?)") }
    }

    async fn send(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Result<(u16, bytes::Bytes), ClientError> {
        use http_body_util::{BodyExt, Full};
        let host = match &self.endpoint {
            Endpoint::Unix(_) => "localhost".to_string(),
            Endpoint::Http { authority } | Endpoint::Https { authority, .. } => authority.clone(),
        };
        let mut req = hyper::Request::builder().method(method).uri(path).header("host", host);
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        if let (Endpoint::Http { .. } | Endpoint::Https { .. }, Some(t)) = (&self.endpoint, &self.token) {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req
            .body(Full::new(bytes::Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Usage(e.to_string()))?;
        let resp = match &self.endpoint {
            Endpoint::Unix(path) => {
                let s = tokio::net::UnixStream::connect(path).await.map_err(|e| self.unreachable(e))?;
                self.exchange(s, req).await?
            }
            Endpoint::Http { authority } => {
                let s = tokio::net::TcpStream::connect(authority.as_str()).await.map_err(|e| self.unreachable(e))?;
                self.exchange(s, req).await?
            }
            Endpoint::Https { authority, host, tls } => {
                let s = tokio::net::TcpStream::connect(authority.as_str()).await.map_err(|e| self.unreachable(e))?;
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| ClientError::Usage(format!("{host}: {e}")))?;
                let s = tokio_rustls::TlsConnector::from(tls.clone()).connect(name, s).await.map_err(|e| self.unreachable(e))?;
                self.exchange(s, req).await?
            }
        };
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.map_err(|e| self.unreachable(e))?.to_bytes();
        Ok((status, body))
    }

    async fn exchange<S>(
        &self,
        stream: S,
        req: hyper::Request<http_body_util::Full<bytes::Bytes>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| self.unreachable(e))?;
        tokio::spawn(conn);
        sender.send_request(req).await.map_err(|e| self.unreachable(e))
    }

    fn call(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Result<bytes::Bytes, ClientError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Usage(e.to_string()))?;
        let (status, body) = rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(CALL_TIMEOUT_SECS), self.send(method, path, body))
                .await
                .map_err(|_| self.unreachable(format!("no answer within {CALL_TIMEOUT_SECS} s")))?
        })?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let msg = serde_json::from_slice::<ErrorBody>(&body).map(|b| b.error).unwrap_or_else(|_| format!("HTTP {status}"));
        Err(ClientError::Api(msg))
    }

    fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ClientError> {
        serde_json::from_slice(body).map_err(|e| ClientError::Decode(e.to_string()))
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        Self::decode(&self.call("GET", path, None)?)
    }

    fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T, ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::Decode(e.to_string()))?;
        Self::decode(&self.call("POST", path, Some(bytes))?)
    }

    fn post_empty(&self, path: &str) -> Result<bytes::Bytes, ClientError> {
        self.call("POST", path, None)
    }

    fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.call("DELETE", path, None).map(|_| ())
    }

    pub fn create_volume(&self, req: &CreateVolume) -> Result<VolumeInfo, ClientError> {
        self.post("/api/v1/volumes", req)
    }

    pub fn list_volumes(&self) -> Result<Vec<VolumeInfo>, ClientError> {
        self.get("/api/v1/volumes")
    }

    pub fn update_volume(&self, name: &str, req: &crate::access::AccessChange) -> Result<VolumeInfo, ClientError> {
        let bytes = serde_json::to_vec(req).map_err(|e| ClientError::Decode(e.to_string()))?;
        Self::decode(&self.call("PATCH", &format!("/api/v1/volumes/{name}"), Some(bytes))?)
    }

    pub fn update_library(&self, req: &crate::access::AccessChange) -> Result<LibraryInfo, ClientError> {
        let bytes = serde_json::to_vec(req).map_err(|e| ClientError::Decode(e.to_string()))?;
        Self::decode(&self.call("PATCH", "/api/v1/library", Some(bytes))?)
    }

    pub fn delete_volume(&self, name: &str, force: bool) -> Result<(), ClientError> {
        self.delete(&format!("/api/v1/volumes/{name}{}", if force { "?force=true" } else { "" }))
    }

    pub fn create_recovery_point(&self, volume: &str) -> Result<RecoveryPointCreated, ClientError> {
        Self::decode(&self.post_empty(&format!("/api/v1/volumes/{volume}/recovery-points"))?)
    }

    pub fn scrub_volume(&self, volume: &str) -> Result<crate::cached::scrub::ScrubReport, ClientError> {
        Self::decode(&self.post_empty(&format!("/api/v1/volumes/{volume}/scrub"))?)
    }

    pub fn get_volume(&self, volume: &str) -> Result<VolumeInfo, ClientError> {
        self.get(&format!("/api/v1/volumes/{volume}"))
    }

    pub fn create_snapshot(&self, volume: &str) -> Result<SnapshotRecord, ClientError> {
        self.post("/api/v1/snapshots", &CreateSnapshot { volume: volume.to_owned() })
    }

    pub fn list_snapshots(&self) -> Result<Vec<SnapshotRecord>, ClientError> {
        self.get("/api/v1/snapshots")
    }

    pub fn delete_snapshot(&self, id: &str) -> Result<(), ClientError> {
        self.delete(&format!("/api/v1/snapshots/{id}"))
    }

    pub fn recover(&self) -> Result<Recovered, ClientError> {
        Self::decode(&self.post_empty("/api/v1/recover")?)
    }

    pub fn create_tapes(&self, req: &CreateTapes) -> Result<Vec<TapeInfo>, ClientError> {
        self.post("/api/v1/tapes", req)
    }

    pub fn list_tapes(&self) -> Result<Vec<TapeInfo>, ClientError> {
        self.get("/api/v1/tapes")
    }

    pub fn retrieve_tape(&self, barcode: &str) -> Result<TapeInfo, ClientError> {
        Self::decode(&self.post_empty(&format!("/api/v1/tapes/{barcode}/retrieve"))?)
    }

    pub fn delete_tape(&self, barcode: &str) -> Result<(), ClientError> {
        self.delete(&format!("/api/v1/tapes/{barcode}"))
    }

    pub fn library(&self) -> Result<LibraryInfo, ClientError> {
        self.get("/api/v1/library")
    }

    pub fn bandwidth(&self) -> Result<crate::cloud::BandwidthSchedule, ClientError> {
        self.get("/api/v1/bandwidth")
    }

    pub fn set_bandwidth(&self, schedule: &crate::cloud::BandwidthSchedule) -> Result<crate::cloud::BandwidthSchedule, ClientError> {
        let bytes = serde_json::to_vec(schedule).map_err(|e| ClientError::Decode(e.to_string()))?;
        Self::decode(&self.call("PUT", "/api/v1/bandwidth", Some(bytes))?)
    }

    pub fn gateway(&self) -> Result<GatewayInfo, ClientError> {
        self.get("/api/v1/gateway")
    }

    pub fn create_token(&self, name: &str) -> Result<TokenCreated, ClientError> {
        self.post("/api/v1/tokens", &CreateToken { name: name.to_string() })
    }

    pub fn list_tokens(&self) -> Result<Vec<TokenInfo>, ClientError> {
        self.get("/api/v1/tokens")
    }

    pub fn revoke_token(&self, id: &str) -> Result<(), ClientError> {
        self.delete(&format!("/api/v1/tokens/{id}"))
    }

    pub fn set_password(&self, req: &ChangePassword) -> Result<(), ClientError> {
        let bytes = serde_json::to_vec(req).map_err(|e| ClientError::Decode(e.to_string()))?;
        self.call("POST", "/api/v1/password", Some(bytes)).map(|_| ())
    }

    pub fn recovery_kit(&self) -> Result<RecoveryKit, ClientError> {
        Self::decode(&self.post_empty("/api/v1/recovery-kit")?)
    }
}
