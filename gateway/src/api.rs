//! The admin REST API (JSON over HTTP) and the Prometheus endpoint. Every
//! error is a 4xx or 5xx with a JSON body `{"error": "..."}`.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use iscsi_target::server::Server;
use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;
use crate::volumes::{VolumeChap, VolumeError, VolumeInfo, VolumeManager};

#[derive(Clone)]
pub struct AppState {
    pub volumes: Arc<VolumeManager>,
    pub iscsi: Arc<Server>,
    pub metrics: Arc<Metrics>,
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
            VolumeError::InvalidName(_) | VolumeError::InvalidSize(_) | VolumeError::InvalidChap(_) => {
                StatusCode::BAD_REQUEST
            }
            VolumeError::Exists(_) => StatusCode::CONFLICT,
            VolumeError::NotFound(_) => StatusCode::NOT_FOUND,
            VolumeError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
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
    pub size_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chap: Option<VolumeChap>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/volumes", get(list_volumes).post(create_volume))
        .route("/api/v1/volumes/{name}", get(get_volume).delete(delete_volume))
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
    let volumes = s.volumes.clone();
    // Creating the image file and persisting the list do blocking I/O.
    let info = tokio::task::spawn_blocking(move || volumes.create(&req.name, req.size_bytes, req.chap))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    tracing::info!(volume = %info.name, size = info.size_bytes, "volume created");
    Ok((StatusCode::CREATED, Json(info)))
}

async fn delete_volume(State(s): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    let info = s.volumes.get(&name).ok_or_else(|| VolumeError::NotFound(name.clone()))?;
    s.iscsi.end_sessions_of(&info.target_iqn);
    let volumes = s.volumes.clone();
    tokio::task::spawn_blocking(move || volumes.delete(&name))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    tracing::info!(volume = %info.name, "volume deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn metrics(State(s): State<AppState>) -> Response {
    s.metrics.volumes.set(s.volumes.list().len() as i64);
    s.metrics.iscsi_sessions.set(s.iscsi.sessions().len() as i64);
    match s.metrics.render() {
        Ok(text) => ([("content-type", "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}
