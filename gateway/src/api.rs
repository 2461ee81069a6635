//! The admin REST API (JSON over HTTP) and the Prometheus endpoint. Every
//! error is a 4xx or 5xx with a JSON body `{"error": "..."}`.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use iscsi_target::server::Server;
use serde::{Deserialize, Serialize};

use crate::cached::{CachedVolumes, SnapshotRecord};
use crate::metrics::Metrics;
use crate::tapes::{CreateTapes, LibraryInfo, TapeError, TapeInfo, TapeLibrary};
use crate::volumes::{CloneSource, NewVolume, VolumeChap, VolumeError, VolumeInfo, VolumeKind, VolumeManager};

#[derive(Clone)]
pub struct AppState {
    pub volumes: Arc<VolumeManager>,
    pub iscsi: Arc<Server>,
    pub metrics: Arc<Metrics>,
    pub cached: Option<Arc<CachedVolumes>>,
    pub tapes: Arc<TapeLibrary>,
}

/// An API error: a status and a message for the admin.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

#[derive(Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

impl From<VolumeError> for ApiError {
    fn from(e: VolumeError) -> Self {
        let status = match &e {
            VolumeError::InvalidName(_)
            | VolumeError::InvalidSize(_)
            | VolumeError::InvalidChap(_)
            | VolumeError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            VolumeError::Exists(_) => StatusCode::CONFLICT,
            VolumeError::NotFound(_) | VolumeError::SnapshotNotFound(_) => StatusCode::NOT_FOUND,
            VolumeError::Cloud(_) => StatusCode::BAD_GATEWAY,
            VolumeError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl From<TapeError> for ApiError {
    fn from(e: TapeError) -> Self {
        let status = match &e {
            TapeError::InvalidBarcode(_)
            | TapeError::InvalidPrefix(_)
            | TapeError::InvalidCount(_)
            | TapeError::InvalidSize { .. }
            | TapeError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            TapeError::BarcodeUsed(_) | TapeError::WrongState { .. } => StatusCode::CONFLICT,
            TapeError::NotFound(_) => StatusCode::NOT_FOUND,
            TapeError::Cloud(_) => StatusCode::BAD_GATEWAY,
            TapeError::Library(_) | TapeError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
            TapeError::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError(status, e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        ApiError(r.status(), r.body_text())
    }
}

/// The body of `POST /api/v1/volumes`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateVolume {
    pub name: String,
    /// Required unless cloning (a clone defaults to its source's size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chap: Option<VolumeChap>,
    /// `cached` (the default) or `local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<VolumeKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_snapshot: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_volume: Option<String>,
    /// Present the volume as a removable-cartridge disk (RDX style).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removable: bool,
}

/// The body of `POST /api/v1/snapshots`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSnapshot {
    pub volume: String,
}

/// The answer to `POST /api/v1/volumes/{name}/recovery-points`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RecoveryPointCreated {
    pub volume: String,
    pub seq: u64,
}

/// The answer to `POST /api/v1/recover`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Recovered {
    pub volumes: usize,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/volumes", get(list_volumes).post(create_volume))
        .route("/api/v1/volumes/{name}", get(get_volume).delete(delete_volume))
        .route("/api/v1/volumes/{name}/recovery-points", post(create_recovery_point))
        .route("/api/v1/snapshots", get(list_snapshots).post(create_snapshot))
        .route("/api/v1/snapshots/{id}", get(get_snapshot).delete(delete_snapshot))
        .route("/api/v1/recover", post(recover))
        .route("/api/v1/tapes", get(list_tapes).post(create_tapes))
        .route("/api/v1/tapes/{barcode}", get(get_tape).delete(delete_tape))
        .route("/api/v1/tapes/{barcode}/retrieve", post(retrieve_tape))
        .route("/api/v1/library", get(library))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .with_state(state)
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn list_volumes(State(s): State<AppState>) -> Json<Vec<VolumeInfo>> {
    Json(s.volumes.list())
}

async fn get_volume(State(s): State<AppState>, Path(name): Path<String>) -> Result<Json<VolumeInfo>, ApiError> {
    s.volumes.get(&name).map(Json).ok_or_else(|| VolumeError::NotFound(name).into())
}

async fn create_volume(
    State(s): State<AppState>,
    body: Result<Json<CreateVolume>, JsonRejection>,
) -> Result<(StatusCode, Json<VolumeInfo>), ApiError> {
    let Json(req) = body?;
    let source = match (req.from_snapshot, req.from_volume) {
        (Some(_), Some(_)) => {
            return Err(ApiError(StatusCode::BAD_REQUEST, "give from_snapshot or from_volume, not both".into()))
        }
        (Some(id), None) => Some(CloneSource::Snapshot(id)),
        (None, Some(name)) => Some(CloneSource::Volume(name)),
        (None, None) => None,
    };
    let size_bytes = match (req.size_bytes, &source) {
        (Some(size), _) => size,
        (None, Some(CloneSource::Volume(name))) => {
            s.volumes.get(name).ok_or_else(|| VolumeError::NotFound(name.clone()))?.size_bytes
        }
        (None, Some(CloneSource::Snapshot(id))) => {
            s.volumes
                .snapshot_list()
                .into_iter()
                .find(|snap| snap.id == *id)
                .ok_or_else(|| VolumeError::SnapshotNotFound(id.clone()))?
                .size_bytes
        }
        (None, None) => return Err(ApiError(StatusCode::BAD_REQUEST, "size_bytes is required".into())),
    };
    let info = s
        .volumes
        .create(NewVolume {
            name: req.name,
            size_bytes,
            chap: req.chap,
            kind: req.kind.unwrap_or(VolumeKind::Cached),
            source,
            removable: req.removable,
        })
        .await?;
    tracing::info!(volume = %info.name, size = info.size_bytes, kind = ?info.kind, "volume created");
    Ok((StatusCode::CREATED, Json(info)))
}

async fn delete_volume(State(s): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    let info = s.volumes.get(&name).ok_or_else(|| VolumeError::NotFound(name.clone()))?;
    s.iscsi.end_sessions_of(&info.target_iqn);
    s.volumes.delete(&name).await?;
    tracing::info!(volume = %info.name, "volume deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn create_recovery_point(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<RecoveryPointCreated>), ApiError> {
    let seq = s.volumes.recovery_point(&name).await?;
    Ok((StatusCode::CREATED, Json(RecoveryPointCreated { volume: name, seq })))
}

async fn list_snapshots(State(s): State<AppState>) -> Json<Vec<SnapshotRecord>> {
    Json(s.volumes.snapshot_list())
}

async fn get_snapshot(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<SnapshotRecord>, ApiError> {
    s.volumes
        .snapshot_list()
        .into_iter()
        .find(|snap| snap.id == id)
        .map(Json)
        .ok_or_else(|| VolumeError::SnapshotNotFound(id).into())
}

async fn create_snapshot(
    State(s): State<AppState>,
    body: Result<Json<CreateSnapshot>, JsonRejection>,
) -> Result<(StatusCode, Json<SnapshotRecord>), ApiError> {
    let Json(req) = body?;
    let snap = s.volumes.snapshot_create(&req.volume).await?;
    Ok((StatusCode::CREATED, Json(snap)))
}

async fn delete_snapshot(State(s): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    s.volumes.snapshot_delete(&id).await?;
    tracing::info!(snapshot = %id, "snapshot deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn recover(State(s): State<AppState>) -> Result<Json<Recovered>, ApiError> {
    let n = s.volumes.recover().await?;
    tracing::info!(volumes = n, "recovered volumes from the bucket");
    Ok(Json(Recovered { volumes: n }))
}

async fn list_tapes(State(s): State<AppState>) -> Json<Vec<TapeInfo>> {
    Json(s.tapes.list().await)
}

async fn get_tape(State(s): State<AppState>, Path(barcode): Path<String>) -> Result<Json<TapeInfo>, ApiError> {
    Ok(Json(s.tapes.get(&barcode).await?))
}

async fn create_tapes(
    State(s): State<AppState>,
    body: Result<Json<CreateTapes>, JsonRejection>,
) -> Result<(StatusCode, Json<Vec<TapeInfo>>), ApiError> {
    let Json(req) = body?;
    Ok((StatusCode::CREATED, Json(s.tapes.create(req).await?)))
}

async fn delete_tape(State(s): State<AppState>, Path(barcode): Path<String>) -> Result<StatusCode, ApiError> {
    s.tapes.delete(&barcode).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn retrieve_tape(
    State(s): State<AppState>,
    Path(barcode): Path<String>,
) -> Result<(StatusCode, Json<TapeInfo>), ApiError> {
    Ok((StatusCode::ACCEPTED, Json(s.tapes.retrieve(&barcode).await?)))
}

async fn library(State(s): State<AppState>) -> Json<LibraryInfo> {
    Json(s.tapes.library_info().await)
}

async fn metrics(State(s): State<AppState>) -> Response {
    s.metrics.volumes.set(s.volumes.list().len() as i64);
    s.metrics.iscsi_sessions.set(s.iscsi.sessions().len() as i64);
    if let Some(c) = &s.cached {
        c.publish_gauges();
    }
    s.tapes.publish_gauges();
    match s.metrics.render() {
        Ok(text) => ([("content-type", "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}
