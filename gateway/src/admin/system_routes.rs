//! The machine under the gateway: its unused disks, and reboot or power
//! off (on the appliance, where the gateway is the machine).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};

use super::disks::{unused_disks, UnusedDisk};
use super::guard::{json_error, Principal};
use super::Plane;
use crate::api::ErrorBody;

pub fn router(plane: Arc<Plane>) -> Router {
    Router::new()
        .route("/api/v1/disks", get(list_disks))
        .route("/api/v1/system/power", post(power))
        .with_state(plane)
}

/// The disks that could hold the cache: whole, unmounted, unpartitioned,
/// and blank or an sgw cache already.
#[utoipa::path(
    get,
    path = "/api/v1/disks",
    tag = "gateway",
    responses((status = 200, description = "The unused disks.", body = [UnusedDisk])),
    security(("bearer_token" = []), ("session_cookie" = []))
)]
pub(crate) async fn list_disks() -> Json<Vec<UnusedDisk>> {
    Json(tokio::task::spawn_blocking(unused_disks).await.unwrap_or_default())
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PowerAction {
    Reboot,
    Poweroff,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PowerRequest {
    pub action: PowerAction,
}

/// Reboots or powers off the machine, cleanly: systemd stops the gateway
/// first, which commits its final recovery points. Only where
/// `power_control` is set (the appliance).
#[utoipa::path(
    post,
    path = "/api/v1/system/power",
    tag = "gateway",
    request_body = PowerRequest,
    responses(
        (status = 202, description = "The machine goes down in a second."),
        (status = 400, description = "Not a JSON power request.", body = ErrorBody),
        (status = 409, description = "Power control is off on this machine.", body = ErrorBody),
    ),
    security(("bearer_token" = []), ("session_cookie" = [], "csrf_token" = []))
)]
pub(crate) async fn power(
    State(p): State<Arc<Plane>>,
    Extension(principal): Extension<Principal>,
    body: Result<Json<PowerRequest>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(r) => return json_error(StatusCode::BAD_REQUEST, &r.body_text()),
    };
    if !p.power_control {
        return json_error(
            StatusCode::CONFLICT,
            "power control is off: this gateway is not the machine's only service (set power_control = true on an appliance)",
        );
    }
    let verb = match req.action {
        PowerAction::Reboot => "reboot",
        PowerAction::Poweroff => "poweroff",
    };
    tracing::warn!(by = %principal.describe(), action = verb, "the machine goes down at the admin's request");
    tokio::spawn(async move {
        // Time for the answer to reach the admin.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let run = tokio::task::spawn_blocking(move || std::process::Command::new("systemctl").args(["--no-block", verb]).status());
        match run.await {
            Ok(Ok(s)) if s.success() => {}
            Ok(Ok(s)) => tracing::error!(action = verb, status = %s, "systemctl failed"),
            Ok(Err(e)) => tracing::error!(action = verb, error = %e, "cannot run systemctl"),
            Err(e) => tracing::error!(action = verb, error = %e, "cannot run systemctl"),
        }
    });
    StatusCode::ACCEPTED.into_response()
}
