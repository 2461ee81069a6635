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

use crate::access::AccessChange;
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
    /// The cloud's bandwidth schedule, replaceable at run time.
    pub bandwidth: crate::cloud::ScheduleHandle,
    pub data_dir: std::path::PathBuf,
}

/// An API error: a status and a message for the admin.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

/// The body of every error: what went wrong, for the admin.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// The initiator IQNs allowed to log in. Without a list, the gateway's
    /// `iscsi_access` decides: `acl-required` (the default) admits nobody.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub initiators: Vec<String>,
}

/// The body of `POST /api/v1/snapshots`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSnapshot {
    pub volume: String,
}

/// The answer to `POST /api/v1/volumes/{name}/recovery-points`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecoveryPointCreated {
    pub volume: String,
    pub seq: u64,
}

/// The answer to `POST /api/v1/recover`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Recovered {
    pub volumes: usize,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/volumes", get(list_volumes).post(create_volume))
        .route("/api/v1/volumes/{name}", get(get_volume).patch(update_volume).delete(delete_volume))
        .route("/api/v1/volumes/{name}/recovery-points", post(create_recovery_point))
        .route("/api/v1/volumes/{name}/scrub", post(scrub_volume))
        .route("/api/v1/snapshots", get(list_snapshots).post(create_snapshot))
        .route("/api/v1/snapshots/{id}", get(get_snapshot).delete(delete_snapshot))
        .route("/api/v1/recover", get(recover_status).post(recover))
        .route("/api/v1/tapes", get(list_tapes).post(create_tapes))
        .route("/api/v1/tapes/{barcode}", get(get_tape).delete(delete_tape))
        .route("/api/v1/tapes/{barcode}/retrieve", post(retrieve_tape))
        .route("/api/v1/library", get(library).patch(update_library))
        .route("/api/v1/bandwidth", get(crate::bandwidth::get_bandwidth).put(crate::bandwidth::put_bandwidth))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .with_state(state)
}

/// Lists the volumes.
#[utoipa::path(
    get,
    path = "/api/v1/volumes",
    tag = "volumes",
    responses((status = 200, description = "Every volume.", body = Vec<VolumeInfo>)),
    security(("bearer_token" = []), ("session_cookie" = []))
)]
async fn list_volumes(State(s): State<AppState>) -> Json<Vec<VolumeInfo>> {
    Json(s.volumes.list())
}

/// Gets a volume.
#[utoipa::path(
    get,
    path = "/api/v1/volumes/{name}",
    tag = "volumes",
    params(("name" = String, Path, description = "The volume's name.")),
    responses(
        (status = 200, description = "The volume.", body = VolumeInfo),
        (status = 404, description = "No such volume.", body = ErrorBody),
    ),
    security(("bearer_token" = []), ("session_cookie" = []))
)]
async fn get_volume(State(s): State<AppState>, Path(name): Path<String>) -> Result<Json<VolumeInfo>, ApiError> {
    s.volumes.get(&name).map(Json).ok_or_else(|| VolumeError::NotFound(name).into())
}

/// Creates a volume from an API or console request: resolves a clone's
/// source and default size, then asks the volume manager.
pub async fn create_volume_with(s: &AppState, req: CreateVolume) -> Result<VolumeInfo, ApiError> {
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
            initiators: req.initiators,
        })
        .await?;
    tracing::info!(volume = %info.name, size = info.size_bytes, kind = ?info.kind, "volume created");
    Ok(info)
}

/// Creates a volume: empty, or a clone of a snapshot or of another volume.
#[utoipa::path(
    post,
    path = "/api/v1/volumes",
    tag = "volumes",
    request_body = CreateVolume,
    responses(
        (status = 201, description = "The volume was created.", body = VolumeInfo),
        (status = 400, description = "An invalid name, size or CHAP setting, both clone sources, no size, or a body that is not JSON.", body = ErrorBody),
        (status = 404, description = "The snapshot or volume to clone does not exist.", body = ErrorBody),
        (status = 409, description = "A volume of that name exists.", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`.", body = ErrorBody),
        (status = 422, description = "The JSON does not fit the request (a missing, mistyped or unknown field).", body = ErrorBody),
        (status = 500, description = "A local I/O error.", body = ErrorBody),
        (status = 502, description = "The cloud store failed.", body = ErrorBody),
    ),
    security(("bearer_token" = []), ("session_cookie" = [], "csrf_token" = []))
)]
async fn create_volume(
    State(s): State<AppState>,
    body: Result<Json<CreateVolume>, JsonRejection>,
) -> Result<(StatusCode, Json<VolumeInfo>), ApiError> {
    let Json(req) = body?;
    Ok((StatusCode::CREATED, Json(create_volume_with(&s, req).await?)))
}

/// The initiators logged in to a target now.
pub fn initiators_of(s: &AppState, target_iqn: &str) -> Vec<String> {
    let mut v: Vec<String> =
        s.iscsi.sessions().into_iter().filter(|x| x.target == target_iqn).map(|x| x.initiator_port).collect();
    v.sort();
    v.dedup();
    v
}

/// Deletes a volume. While initiators are logged in it is refused (409,
/// naming them) unless `force`, which logs them out first.
pub async fn delete_volume_with(s: &AppState, name: &str, force: bool) -> Result<(), ApiError> {
    let info = s.volumes.get(name).ok_or_else(|| VolumeError::NotFound(name.to_string()))?;
    let initiators = initiators_of(s, &info.target_iqn);
    if !initiators.is_empty() && !force {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("volume {name} is in use by {}: log them out, or delete with force", initiators.join(", ")),
        ));
    }
    if !initiators.is_empty() {
        tracing::info!(volume = %info.name, initiators = %initiators.join(", "), "forced delete: logging out the initiators");
    }
    s.iscsi.log_out_sessions_of(&info.target_iqn).await;
    s.volumes.delete(name).await?;
    tracing::info!(volume = %info.name, "volume deleted");
    Ok(())
}

/// `DELETE /api/v1/volumes/{name}?force=true`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Log out the initiators using the volume, then delete it.
    #[serde(default)]
    pub force: bool,
}

/// Changes a volume's CHAP and/or its allowed initiators.
///
/// `{"chap": {...}}` sets CHAP, `{"chap": null}` removes it;
/// `{"initiators": [...]}` sets the list, `[]` removes it. The next login
/// uses the change; sessions logged in go on until they log out.
#[utoipa::path(
    patch,
    path = "/api/v1/volumes/{name}",
    tag = "volumes",
    params(("name" = String, Path, description = "The volume's name.")),
    request_body = AccessChange,
    responses(
        (status = 200, description = "The volume, changed.", body = VolumeInfo),
        (status = 400, description = "Bad JSON, nothing to change, invalid CHAP settings or initiator names.", body = ErrorBody),
        (status = 404, description = "No such volume.", body = ErrorBody),
        (status = 500, description = "The volume records could not be saved.", body = ErrorBody),
    ),
    security(("bearer_token" = []), ("session_cookie" = [], "csrf_token" = []))
)]
async fn update_volume(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<VolumeInfo>, ApiError> {
    let change = AccessChange::parse(&body).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    let info = s.volumes.set_access(&name, change).await?;
    tracing::info!(
        volume = %name, chap = info.chap_enabled, initiators = ?info.initiators,
        "volume access changed; it applies from the next login"
    );
    Ok(Json(info))
}

/// Deletes a volume.
///
/// While initiators are logged in to it this is refused unless `force`,
/// which logs them out first.
#[utoipa::path(
    delete,
    path = "/api/v1/volumes/{name}",
    tag = "volumes",
    params(("name" = String, Path, description = "The volume's name."), DeleteQuery),
    responses(
        (status = 204, description = "The volume was deleted."),
        (status = 404, description = "No such volume.", body = ErrorBody),
        (status = 409, description = "Initiators are logged in (named in the message) and `force` was not given.", body = ErrorBody),
        (status = 500, description = "A local I/O error.", body = ErrorBody),
        (status = 502, description = "The cloud store failed.", body = ErrorBody),
    ),
    security(("bearer_token" = []), ("session_cookie" = [], "csrf_token" = []))
)]
async fn delete_volume(
    State(s): State<AppState>,
    Path(name): Path<String>,
    axum::extract::Query(q): axum::extract::Query<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    delete_volume_with(&s, &name, q.force).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Makes a recovery point of a cached volume now.
#[utoipa::path(
    post,
    path = "/api/v1/volumes/{name}/recovery-points",
    tag = "volumes",
    params(("name" = String, Path, description = "The volume's name.")),
    responses(
        (status = 201, description = "The recovery point was made.", body = RecoveryPointCreated),
        (status = 400, description = "The volume is not a cached volume, or the gateway has no cloud store.", body = ErrorBody),
        (status = 404, description = "No such volume.", body = ErrorBody),
        (status = 500, description = "A local I/O error.", body = ErrorBody),
        (status = 502, description = "The cloud store failed.", body = ErrorBody),
    ),
    security(("bearer_token" = []), ("session_cookie" = [], "csrf_token" = []))
)]
async fn create_recovery_point(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<RecoveryPointCreated>), ApiError> {
    let seq = s.volumes.recovery_point(&name).await?;
    Ok((StatusCode::CREATED, Json(RecoveryPointCreated { volume: name, seq })))
}

/// Reads and verifies every cloud object a cached volume's chunk map
/// names, without filling the cache; damaged chunks are recorded on the
/// volume (state `DAMAGED`, `damaged`) and listed with their LBA ranges.
#[utoipa::path(
    post,
    path = "/api/v1/volumes/{name}/scrub",
    tag = "volumes",
    params(("name" = String, Path, description = "The volume's name.")),
    responses(
        (status = 200, description = "Every object was read; `damaged` lists what cannot be read back.", body = crate::cached::scrub::ScrubReport),
        (status = 400, description = "The volume is not a cached volume, or the gateway has no cloud store.", body = ErrorBody),
        (status = 404, description = "No such volume.", body = ErrorBody),
        (status = 502, description = "The cloud store failed (not damage: the scrub did not finish).", body = ErrorBody),
    ),
    security(("bearer_token" = []), ("session_cookie" = [], "csrf_token" = []))
)]
async fn scrub_volume(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<crate::cached::scrub::ScrubReport>, ApiError> {
    Ok(Json(s.volumes.scrub(&name).await?))
}

/// Lists the snapshots.
#[utoipa::path(
    get,
    path = "/api/v1/snapshots",
    tag = "snapshots",
    responses((status = 200, description = "Every snapshot.", body = Vec<SnapshotRecord>)),
    security(("bearer_token" = []), ("session_cookie" = []))
)]
async fn list_snapshots(State(s): State<AppState>) -> Json<Vec<SnapshotRecord>> {
    Json(s.volumes.snapshot_list())
}

/// Gets a snapshot.
#[utoipa::path(
    get,
    path = "/api/v1/snapshots/{id}",
    tag = "snapshots",
    params(("id" = String, Path, description = "The snapshot's id.")),
    responses(
        (status = 200, description = "The snapshot.", body = SnapshotRecord),
        (status = 404, description = "No such snapshot.", body = ErrorBody),
    ),
    security(("bearer_token" = []), ("session_cookie" = []))
)]
async fn get_snapshot(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<SnapshotRecord>, ApiError> {
    s.volumes
        .snapshot_list()
        .into_iter()
        .find(|snap| snap.id == id)
        .map(Json)
        .ok_or_else(|| VolumeError::SnapshotNotFound(id).into())
}

/// Takes a snapshot of a cached volume: a recovery point kept until deleted.
#[utoipa::path(
    post,
    path = "/api/v1/snapshots",
    tag = "snapshots",
    request_body = CreateSnapshot,
    responses(
        (status = 201, description = "The snapshot was taken.", body = SnapshotRecord),
        (status = 400, description = "The volume is not a cached volume, or the body is not JSON.", body = ErrorBody),
        (status = 404, description = "No such volume.", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`.", body = ErrorBody),
        (status = 422, description = "The JSON does not fit the request (a missing, mistyped or unknown field).", body = ErrorBody),
        (status = 500, description = "A local I/O error.", body = ErrorBody),
        (status = 502, description = "The cloud store failed.", body = ErrorBody),
    ),
    security(("bearer_token" = []), ("session_cookie" = [], "csrf_token" = []))
)]
async fn create_snapshot(
    State(s): State<AppState>,
    body: Result<Json<CreateSnapshot>, JsonRejection>,
) -> Result<(StatusCode, Json<SnapshotRecord>), ApiError> {
    let Json(req) = body?;
    let snap = s.volumes.snapshot_create(&req.volume).await?;
    Ok((StatusCode::CREATED, Json(snap)))
}

/// Deletes a snapshot.
#[utoipa::path(
    delete,
    path = "/api/v1/snapshots/{id}",
    tag = "snapshots",
    params(("id" = String, Path, description = "The snapshot's id.")),
    responses(
        (status = 204, description = "The snapshot was deleted."),
        (status = 400, description = "The gateway has no cloud store.", body = ErrorBody),
        (status = 404, description = "No such snapshot.", body = ErrorBody),
        (status = 500, description = "A local I/O error.", body = ErrorBody),
        (status = 502, description = "The cloud store failed.", body = ErrorBody),
    ),
    security(("bearer_token" = []), ("session_cookie" = [], "csrf_token" = []))
)]
async fn delete_snapshot(State(s): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    s.volumes.snapshot_delete(&id).await?;
    tracing::info!(snapshot = %id, "snapshot deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// The answer to `GET /api/v1/recover`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecoverStatus {
    pub running: bool,
    /// Volumes adopted of those in the bucket's catalog, while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<crate::progress::Progress>,
    /// The adopted volumes' bytes of the catalog's, while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<crate::progress::Progress>,
}

/// How far a running recovery has come.
#[utoipa::path(
    get,
    path = "/api/v1/recover",
    tag = "volumes",
    responses((status = 200, description = "Whether a recovery runs, and its progress in volumes and bytes.", body = RecoverStatus)),
    security(("bearer_token" = []), ("session_cookie" = []))
)]
async fn recover_status(State(s): State<AppState>) -> Json<RecoverStatus> {
    let progress = s.volumes.recovery_progress();
    Json(RecoverStatus { running: progress.is_some(), progress: progress.map(|p| p.volumes), bytes: progress.map(|p| p.bytes) })
}

/// Recovers the volumes of the bucket's catalog.
///
/// Disaster recovery: only into a gateway that has no volumes yet.
#[utoipa::path(
    post,
    path = "/api/v1/recover",
    tag = "volumes",
    responses(
        (status = 200, description = "The volumes were recovered.", body = Recovered),
        (status = 400, description = "The gateway already has volumes, or the bucket holds no catalog.", body = ErrorBody),
        (status = 500, description = "A local I/O error.", body = ErrorBody),
        (status = 502, description = "The cloud store failed.", body = ErrorBody),
    ),
    security(("bearer_token" = []), ("session_cookie" = [], "csrf_token" = []))
)]
async fn recover(State(s): State<AppState>) -> Result<Json<Recovered>, ApiError> {
    let n = s.volumes.recover().await?;
    tracing::info!(volumes = n, "recovered volumes from the bucket");
    Ok(Json(Recovered { volumes: n }))
}

/// Lists the tapes.
#[utoipa::path(
    get,
    path = "/api/v1/tapes",
    tag = "tapes",
    responses((status = 200, description = "Every tape.", body = Vec<TapeInfo>)),
    security(("bearer_token" = []), ("session_cookie" = []))
)]
async fn list_tapes(State(s): State<AppState>) -> Json<Vec<TapeInfo>> {
    Json(s.tapes.list().await)
}

/// Gets a tape.
#[utoipa::path(
    get,
    path = "/api/v1/tapes/{barcode}",
    tag = "tapes",
    params(("barcode" = String, Path, description = "The tape's barcode.")),
    responses(
        (status = 200, description = "The tape.", body = TapeInfo),
        (status = 404, description = "No such tape.", body = ErrorBody),
    ),
    security(("bearer_token" = []), ("session_cookie" = []))
)]
async fn get_tape(State(s): State<AppState>, Path(barcode): Path<String>) -> Result<Json<TapeInfo>, ApiError> {
    Ok(Json(s.tapes.get(&barcode).await?))
}

/// Creates one tape (a barcode) or several (a prefix and a count).
#[utoipa::path(
    post,
    path = "/api/v1/tapes",
    tag = "tapes",
    request_body = CreateTapes,
    responses(
        (status = 201, description = "The tapes were created.", body = Vec<TapeInfo>),
        (status = 400, description = "An invalid barcode, prefix, count or size, or a body that is not JSON.", body = ErrorBody),
        (status = 409, description = "A barcode is or was in use.", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`.", body = ErrorBody),
        (status = 422, description = "The JSON does not fit the request (a missing, mistyped or unknown field).", body = ErrorBody),
        (status = 500, description = "A library or local I/O error.", body = ErrorBody),
        (status = 502, description = "The cloud store failed.", body = ErrorBody),
        (status = 503, description = "The gateway is shutting down.", body = ErrorBody),
    ),
    security(("bearer_token" = []), ("session_cookie" = [], "csrf_token" = []))
)]
async fn create_tapes(
    State(s): State<AppState>,
    body: Result<Json<CreateTapes>, JsonRejection>,
) -> Result<(StatusCode, Json<Vec<TapeInfo>>), ApiError> {
    let Json(req) = body?;
    Ok((StatusCode::CREATED, Json(s.tapes.create(req).await?)))
}

/// Deletes a tape and its data.
#[utoipa::path(
    delete,
    path = "/api/v1/tapes/{barcode}",
    tag = "tapes",
    params(("barcode" = String, Path, description = "The tape's barcode.")),
    responses(
        (status = 204, description = "The tape was deleted."),
        (status = 400, description = "The application keeps the tape's slot locked.", body = ErrorBody),
        (status = 404, description = "No such tape.", body = ErrorBody),
        (status = 409, description = "The tape is in a state that cannot be deleted.", body = ErrorBody),
        (status = 500, description = "A library or local I/O error.", body = ErrorBody),
        (status = 502, description = "The cloud store failed.", body = ErrorBody),
        (status = 503, description = "The gateway is shutting down.", body = ErrorBody),
    ),
    security(("bearer_token" = []), ("session_cookie" = [], "csrf_token" = []))
)]
async fn delete_tape(State(s): State<AppState>, Path(barcode): Path<String>) -> Result<StatusCode, ApiError> {
    s.tapes.delete(&barcode).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Starts retrieving an archived tape back into the library (read-only).
#[utoipa::path(
    post,
    path = "/api/v1/tapes/{barcode}/retrieve",
    tag = "tapes",
    params(("barcode" = String, Path, description = "The tape's barcode.")),
    responses(
        (status = 202, description = "The retrieval started.", body = TapeInfo),
        (status = 404, description = "No such tape.", body = ErrorBody),
        (status = 409, description = "The tape is not archived.", body = ErrorBody),
        (status = 500, description = "A library or local I/O error.", body = ErrorBody),
        (status = 502, description = "The cloud store failed.", body = ErrorBody),
        (status = 503, description = "The gateway is shutting down.", body = ErrorBody),
    ),
    security(("bearer_token" = []), ("session_cookie" = [], "csrf_token" = []))
)]
async fn retrieve_tape(
    State(s): State<AppState>,
    Path(barcode): Path<String>,
) -> Result<(StatusCode, Json<TapeInfo>), ApiError> {
    Ok((StatusCode::ACCEPTED, Json(s.tapes.retrieve(&barcode).await?)))
}

/// The tape library: its changer and drives.
#[utoipa::path(
    get,
    path = "/api/v1/library",
    tag = "tapes",
    responses((status = 200, description = "The changer and the drives.", body = LibraryInfo)),
    security(("bearer_token" = []), ("session_cookie" = []))
)]
async fn library(State(s): State<AppState>) -> Json<LibraryInfo> {
    Json(s.tapes.library_info().await)
}

/// Changes the CHAP and/or allowed initiators of the changer and every drive.
///
/// Same body as `PATCH /api/v1/volumes/{name}`. The next login uses the
/// change; sessions logged in go on until they log out.
#[utoipa::path(
    patch,
    path = "/api/v1/library",
    tag = "tapes",
    request_body = AccessChange,
    responses(
        (status = 200, description = "The library, changed.", body = LibraryInfo),
        (status = 400, description = "Bad JSON, nothing to change, invalid CHAP settings or initiator names.", body = ErrorBody),
        (status = 500, description = "The library's access settings could not be saved.", body = ErrorBody),
    ),
    security(("bearer_token" = []), ("session_cookie" = [], "csrf_token" = []))
)]
async fn update_library(State(s): State<AppState>, body: axum::body::Bytes) -> Result<Json<LibraryInfo>, ApiError> {
    let change = AccessChange::parse(&body).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    s.tapes.set_access(change)?;
    let info = s.tapes.library_info().await;
    tracing::info!(
        chap = info.chap_enabled, initiators = ?info.initiators,
        "tape library access changed; it applies from the next login"
    );
    Ok(Json(info))
}

/// The Prometheus metrics.
///
/// Open unless the daemon has a `metrics_token`, which must then be sent
/// as a bearer token (an API token or a console session also do).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "metrics",
    responses(
        (status = 200, description = "The Prometheus text exposition format.", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 401, description = "The daemon has a `metrics_token` and the request has neither it, an API token nor a session.", body = ErrorBody),
        (status = 500, description = "The metrics could not be rendered.", body = ErrorBody),
    ),
    security((), ("bearer_token" = []), ("session_cookie" = []))
)]
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
