//! The machine under the gateway: its unused disks, reboot or power off,
//! and update packages (on the appliance, where the gateway is the
//! machine).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
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
        .route("/api/v1/update", post(update).layer(DefaultBodyLimit::max(crate::update::MAX_PACKAGE_BYTES as usize)))
        .with_state(plane)
}

/// The disks that could hold the cache: whole, unmounted, unpartitioned,
/// blank or an sgw cache already, and not this gateway's cache.
#[utoipa::path(
    get,
    path = "/api/v1/disks",
    tag = "gateway",
    responses((status = 200, description = "The unused disks.", body = [UnusedDisk])),
    security(("bearer_token" = []), ("session_cookie" = []))
)]
pub(crate) async fn list_disks(State(p): State<Arc<Plane>>) -> Json<Vec<UnusedDisk>> {
    let in_use = p.cache_disk.lock().clone().map(|d| std::fs::canonicalize(&d).unwrap_or(d));
    let disks = tokio::task::spawn_blocking(unused_disks).await.unwrap_or_default();
    Json(disks.into_iter().filter(|d| Some(&d.path) != in_use.as_ref()).collect())
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

/// Where an uploaded package waits for `sgw-update.service`.
pub fn pending_update(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("updates").join("pending.tar")
}

/// Takes an update package (the tarball `sgw update pack` makes), checks
/// its signature against the appliance's update key and its binary against
/// the signed manifest, then hands it to `sgw-update.service`, which puts
/// the binary in place and restarts the gateway (iSCSI initiators
/// reconnect within seconds).
#[utoipa::path(
    post,
    path = "/api/v1/update",
    tag = "gateway",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The package."),
    responses(
        (status = 202, description = "Verified; the update is being applied.", body = crate::update::Manifest),
        (status = 400, description = "Not a package, a signature that does not verify, or a binary that does not match.", body = ErrorBody),
        (status = 409, description = "This gateway has no update key: it is updated another way.", body = ErrorBody),
    ),
    security(("bearer_token" = []), ("session_cookie" = [], "csrf_token" = []))
)]
pub(crate) async fn update(
    State(p): State<Arc<Plane>>,
    Extension(principal): Extension<Principal>,
    body: axum::body::Bytes,
) -> Response {
    let Some(key_file) = p.update_public_key.clone() else {
        return json_error(
            StatusCode::CONFLICT,
            "this gateway has no update key (update_public_key): update it the way it was installed",
        );
    };
    let data_dir = p.data_dir.clone();
    let staged = tokio::task::spawn_blocking(move || -> Result<crate::update::Manifest, (StatusCode, String)> {
        let key = crate::update::read_public_key(&key_file).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let verified = crate::update::verify(body.as_ref(), &key).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
        let path = pending_update(&data_dir);
        let dir = path.parent().unwrap_or(&data_dir);
        let write = crate::files::create_private_dir(dir).and_then(|()| crate::files::write_atomically(dir, "pending.tar", &body));
        write.map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot keep the package: {e}")))?;
        Ok(verified.manifest)
    })
    .await;
    let manifest = match staged {
        Ok(Ok(m)) => m,
        Ok(Err((status, msg))) => {
            tracing::warn!(by = %principal.describe(), error = %msg, "update package refused");
            return json_error(status, &msg);
        }
        Err(e) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    tracing::warn!(by = %principal.describe(), version = %manifest.version, "update package verified: applying it");
    let run = tokio::task::spawn_blocking(|| {
        std::process::Command::new("systemctl").args(["start", "--no-block", "sgw-update.service"]).output()
    })
    .await;
    match run {
        Ok(Ok(o)) if o.status.success() => (StatusCode::ACCEPTED, Json(manifest)).into_response(),
        Ok(Ok(o)) => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot start sgw-update.service: {}", String::from_utf8_lossy(&o.stderr).trim()),
        ),
        Ok(Err(e)) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &format!("cannot run systemctl: {e}")),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}
