//! The upload and download limits set at run time (the console's Cloud
//! page, `PUT /api/v1/bandwidth`, `sgw bandwidth set`): put in effect at
//! once and kept in `DATA_DIR/bandwidth.json`, which overrides the config
//! file's `[cloud.bandwidth]` from the next start on.

use std::path::Path;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::api::{ApiError, AppState, ErrorBody};
use crate::cloud::BandwidthSchedule;

pub const FILE: &str = "bandwidth.json";

/// The saved schedule, if one was set at run time.
pub fn load(data_dir: &Path) -> Result<Option<BandwidthSchedule>, String> {
    let path = data_dir.join(FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Checks, saves and puts a schedule in effect.
pub fn set(state: &AppState, schedule: BandwidthSchedule) -> Result<(), ApiError> {
    schedule.validate().map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let bytes = serde_json::to_vec_pretty(&schedule).map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    crate::files::write_atomically(&state.data_dir, FILE, &bytes)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot save the schedule: {e}")))?;
    let intervals = schedule.intervals.len();
    state.bandwidth.replace(schedule).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    tracing::info!(intervals, "bandwidth schedule changed");
    Ok(())
}

/// The schedule in effect.
#[utoipa::path(
    get,
    path = "/api/v1/bandwidth",
    tag = "gateway",
    responses((status = 200, description = "The weekly upload and download limits in effect.", body = BandwidthSchedule)),
    security(("bearer_token" = []), ("session_cookie" = []))
)]
pub async fn get_bandwidth(State(s): State<AppState>) -> Json<BandwidthSchedule> {
    Json((*s.bandwidth.current()).clone())
}

/// Replaces the schedule: in effect for the next transfer, kept across
/// restarts.
#[utoipa::path(
    put,
    path = "/api/v1/bandwidth",
    tag = "gateway",
    request_body = BandwidthSchedule,
    responses(
        (status = 200, description = "The schedule now in effect.", body = BandwidthSchedule),
        (status = 400, description = "An invalid interval (days 0-6, hours 0-23, start before end, no overlap, a positive limit).", body = ErrorBody),
        (status = 500, description = "The schedule could not be saved.", body = ErrorBody),
    ),
    security(("bearer_token" = []), ("session_cookie" = [], "csrf_token" = []))
)]
pub async fn put_bandwidth(
    State(s): State<AppState>,
    body: Result<Json<BandwidthSchedule>, JsonRejection>,
) -> Result<Json<BandwidthSchedule>, ApiError> {
    let Json(schedule) = body?;
    set(&s, schedule)?;
    Ok(Json((*s.bandwidth.current()).clone()))
}
