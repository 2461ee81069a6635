//! Volumes (list, create, detail, delete, recovery point) and snapshots
//! (list, create, restore to a new volume, delete).

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::Deserialize;

use super::{label, page, Chrome, Console};
use crate::admin::guard::Principal;
use crate::api::{create_volume_with, delete_volume_with, initiators_of, ApiError, CreateVolume};
use crate::units::{parse_size, size_text};
use crate::volumes::{VolumeChap, VolumeInfo, VolumeKind};

pub fn router(c: Console) -> Router {
    Router::new()
        .route("/volumes", get(volumes).post(create))
        .route("/volumes/{name}", get(detail))
        .route("/volumes/{name}/delete", post(delete))
        .route("/volumes/{name}/recovery-point", post(recovery_point))
        .route("/volumes/{name}/chap", post(set_chap))
        .route("/snapshots", get(snapshots).post(create_snapshot))
        .route("/snapshots/{id}/delete", post(delete_snapshot))
        .with_state(c)
}

struct VolumeRow {
    name: String,
    size: String,
    kind: String,
    state: String,
    iqn: String,
    lun: u64,
    chap: &'static str,
    recovery_point: String,
}

fn row(v: VolumeInfo) -> VolumeRow {
    VolumeRow {
        size: size_text(v.size_bytes),
        kind: label(&v.kind),
        state: v.state_text(),
        chap: if v.mutual_chap_enabled {
            "mutual"
        } else if v.chap_enabled {
            "yes"
        } else {
            "no"
        },
        recovery_point: v.recovery_point_age_secs.map_or_else(|| "–".into(), |s| format!("{s} s ago")),
        iqn: v.target_iqn,
        lun: v.lun,
        name: v.name,
    }
}

/// The create form as typed.
#[derive(Default, Deserialize, Clone)]
#[serde(default)]
pub struct CreateForm {
    name: String,
    size: String,
    kind: String,
    from_snapshot: String,
    from_volume: String,
    chap_user: String,
    chap_secret: String,
    removable: Option<String>,
    /// Allowed initiator IQNs, separated by commas or white space.
    initiators: String,
}

#[derive(Template)]
#[template(path = "volumes.html")]
struct VolumesPage {
    chrome: Chrome,
    volumes: Vec<VolumeRow>,
    form: CreateForm,
    error_field: String,
    error: String,
}

fn volumes_page(c: &Console, principal: &Principal, form: CreateForm, error_field: &str, error: &str) -> VolumesPage {
    VolumesPage {
        chrome: Chrome::new(&c.plane, principal, "volumes"),
        volumes: c.app.volumes.list().into_iter().map(row).collect(),
        form,
        error_field: error_field.into(),
        error: error.into(),
    }
}

async fn volumes(State(c): State<Console>, Extension(principal): Extension<Principal>) -> Response {
    let form = CreateForm { kind: "cached".into(), ..Default::default() };
    page(StatusCode::OK, &volumes_page(&c, &principal, form, "", ""))
}

/// The API request a form stands for, or the field that is wrong.
fn to_request(f: &CreateForm) -> Result<CreateVolume, (&'static str, String)> {
    let opt = |s: &str| Some(s.trim().to_string()).filter(|v| !v.is_empty());
    let size_bytes = match f.size.trim() {
        "" => None,
        s => Some(parse_size(s).map_err(|e| ("size", e))?),
    };
    let kind = match f.kind.as_str() {
        "" | "cached" => VolumeKind::Cached,
        "local" => VolumeKind::Local,
        other => return Err(("kind", format!("unknown volume kind {other:?}"))),
    };
    let chap = match (opt(&f.chap_user), f.chap_secret.is_empty()) {
        (None, true) => None,
        (Some(user), false) => Some(VolumeChap { user, secret: f.chap_secret.clone(), mutual_user: None, mutual_secret: None }),
        _ => return Err(("chap", "give both the CHAP user and its secret, or neither".into())),
    };
    Ok(CreateVolume {
        name: f.name.trim().to_string(),
        size_bytes,
        chap,
        kind: Some(kind),
        from_snapshot: opt(&f.from_snapshot),
        from_volume: opt(&f.from_volume),
        removable: f.removable.is_some(),
        initiators: f.initiators.split([',', ' ', '\n', '\r', '\t']).filter(|s| !s.is_empty()).map(str::to_string).collect(),
    })
}

/// The form field an API error is about, from its message.
fn field_of(e: &ApiError) -> &'static str {
    let m = e.1.to_ascii_lowercase();
    if m.contains("initiator") {
        "initiators"
    } else if m.contains("name") && !m.contains("snapshot") {
        "name"
    } else if m.contains("size") {
        "size"
    } else if m.contains("chap") || m.contains("secret") {
        "chap"
    } else if m.contains("snapshot") || m.contains("from_") || m.contains("source") {
        "source"
    } else {
        "form"
    }
}

async fn create(State(c): State<Console>, Extension(principal): Extension<Principal>, Form(f): Form<CreateForm>) -> Response {
    let mut shown = f.clone();
    shown.chap_secret.clear();
    let req = match to_request(&f) {
        Ok(r) => r,
        Err((field, msg)) => return page(StatusCode::BAD_REQUEST, &volumes_page(&c, &principal, shown, field, &msg)),
    };
    match create_volume_with(&c.app, req).await {
        Ok(_) => Redirect::to("/volumes").into_response(),
        Err(e) => {
            let status = if e.0.is_client_error() { e.0 } else { StatusCode::BAD_GATEWAY };
            page(status, &volumes_page(&c, &principal, shown, field_of(&e), &e.1))
        }
    }
}

#[derive(Template)]
#[template(path = "volume.html")]
struct VolumePage {
    chrome: Chrome,
    v: VolumeRow,
    initiators: Vec<String>,
    source: String,
    removable: bool,
    error: String,
}

fn volume_page(c: &Console, principal: &Principal, name: &str, error: &str) -> Option<VolumePage> {
    let v = c.app.volumes.get(name)?;
    Some(VolumePage {
        chrome: Chrome::new(&c.plane, principal, "volumes"),
        initiators: initiators_of(&c.app, &v.target_iqn),
        source: v.source.clone().unwrap_or_default(),
        removable: v.removable,
        v: row(v),
        error: error.into(),
    })
}

fn not_found(c: &Console, principal: &Principal, name: &str) -> Response {
    let msg = format!("no volume named {name}");
    page(StatusCode::NOT_FOUND, &volumes_page(c, principal, CreateForm::default(), "form", &msg))
}

/// The detail page with a status and a message, or the volumes page's
/// 404 when there is no such volume.
fn detail_page(c: &Console, principal: &Principal, name: &str, status: StatusCode, error: &str) -> Response {
    match volume_page(c, principal, name, error) {
        Some(p) => page(status, &p),
        None => not_found(c, principal, name),
    }
}

async fn detail(State(c): State<Console>, Extension(principal): Extension<Principal>, Path(name): Path<String>) -> Response {
    detail_page(&c, &principal, &name, StatusCode::OK, "")
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DeleteForm {
    confirm_name: String,
    force: Option<String>,
}

async fn delete(
    State(c): State<Console>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    Form(f): Form<DeleteForm>,
) -> Response {
    if f.confirm_name != name {
        return detail_page(&c, &principal, &name, StatusCode::BAD_REQUEST, "type the volume's name to confirm the deletion");
    }
    match delete_volume_with(&c.app, &name, f.force.is_some()).await {
        Ok(()) => Redirect::to("/volumes").into_response(),
        Err(e) => detail_page(&c, &principal, &name, e.0, &e.1),
    }
}

async fn recovery_point(
    State(c): State<Console>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Response {
    match c.app.volumes.recovery_point(&name).await {
        Ok(_) => Redirect::to(&format!("/volumes/{name}")).into_response(),
        Err(e) => {
            let e = ApiError::from(e);
            detail_page(&c, &principal, &name, e.0, &e.1)
        }
    }
}

/// The CHAP form of the detail page (no `Debug`: it holds secrets).
#[derive(Default, Deserialize)]
#[serde(default)]
struct ChapForm {
    chap_user: String,
    chap_secret: String,
    mutual_user: String,
    mutual_secret: String,
    remove: Option<String>,
}

async fn set_chap(
    State(c): State<Console>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    Form(f): Form<ChapForm>,
) -> Response {
    let opt = |s: &str| Some(s.trim().to_string()).filter(|v| !v.is_empty());
    let chap = if f.remove.is_some() {
        None
    } else {
        let Some(user) = opt(&f.chap_user) else {
            return detail_page(&c, &principal, &name, StatusCode::BAD_REQUEST, "give the CHAP user and secret, or tick 'remove CHAP'");
        };
        let mutual_user = opt(&f.mutual_user);
        let mutual_secret = mutual_user.as_ref().map(|_| f.mutual_secret.clone());
        Some(VolumeChap { user, secret: f.chap_secret, mutual_user, mutual_secret })
    };
    let enabled = chap.is_some();
    match c.app.volumes.set_chap(&name, chap).await {
        Ok(_) => {
            tracing::info!(volume = %name, chap = enabled, by = %principal.describe(), "volume CHAP changed; it applies from the next login");
            Redirect::to(&format!("/volumes/{name}")).into_response()
        }
        Err(e) => {
            let e = ApiError::from(e);
            detail_page(&c, &principal, &name, e.0, &e.1)
        }
    }
}

struct SnapshotRow {
    id: String,
    volume: String,
    size: String,
    created: String,
}

#[derive(Template)]
#[template(path = "snapshots.html")]
struct SnapshotsPage {
    chrome: Chrome,
    snapshots: Vec<SnapshotRow>,
    volumes: Vec<String>,
    error: String,
}

fn snapshots_page(c: &Console, principal: &Principal, error: &str) -> SnapshotsPage {
    SnapshotsPage {
        chrome: Chrome::new(&c.plane, principal, "snapshots"),
        snapshots: c
            .app
            .volumes
            .snapshot_list()
            .into_iter()
            .map(|s| SnapshotRow {
                id: s.id,
                volume: s.volume_name,
                size: size_text(s.size_bytes),
                created: c.plane.date_text(s.created_unix),
            })
            .collect(),
        volumes: c.app.volumes.list().into_iter().filter(|v| v.kind == VolumeKind::Cached).map(|v| v.name).collect(),
        error: error.into(),
    }
}

async fn snapshots(State(c): State<Console>, Extension(principal): Extension<Principal>) -> Response {
    page(StatusCode::OK, &snapshots_page(&c, &principal, ""))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SnapshotForm {
    volume: String,
}

async fn create_snapshot(
    State(c): State<Console>,
    Extension(principal): Extension<Principal>,
    Form(f): Form<SnapshotForm>,
) -> Response {
    match c.app.volumes.snapshot_create(&f.volume).await {
        Ok(_) => Redirect::to("/snapshots").into_response(),
        Err(e) => {
            let e = ApiError::from(e);
            page(e.0, &snapshots_page(&c, &principal, &e.1))
        }
    }
}

async fn delete_snapshot(State(c): State<Console>, Extension(principal): Extension<Principal>, Path(id): Path<String>) -> Response {
    match c.app.volumes.snapshot_delete(&id).await {
        Ok(()) => Redirect::to("/snapshots").into_response(),
        Err(e) => {
            let e = ApiError::from(e);
            page(e.0, &snapshots_page(&c, &principal, &e.1))
        }
    }
}
