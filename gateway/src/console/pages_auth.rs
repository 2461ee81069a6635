//! The activation wizard, the login page and logout.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Form, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::Deserialize;

use super::page;
use crate::admin::activation::{ActivationRequest, CloudTarget};
use crate::admin::guard::Principal;
use crate::admin::http::Peer;
use crate::admin::routes::{clear_cookie, session_cookie};
use crate::admin::{ActivationError, Plane};
use crate::tapes::LibraryPersonality;

pub fn activation_router(plane: Arc<Plane>) -> Router {
    router(plane)
}

pub fn router(plane: Arc<Plane>) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/activate", get(activate_form).post(activate))
        .route("/activated", get(activated))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .with_state(plane)
}

async fn root(State(p): State<Arc<Plane>>) -> Redirect {
    if p.accounts.is_activated() {
        Redirect::to("/dashboard")
    } else {
        Redirect::to("/activate")
    }
}

/// The wizard's fields, as typed (every one optional, so that a missing
/// field is reported next to itself rather than as a bad request).
#[derive(Default, Deserialize, Clone)]
#[serde(default)]
pub struct ActivateForm {
    code: String,
    gateway_name: String,
    timezone: String,
    admin_user: String,
    password: String,
    password_confirm: String,
    cloud_kind: String,
    s3_endpoint: String,
    s3_region: String,
    s3_bucket: String,
    s3_prefix: String,
    s3_access_key_id: String,
    s3_secret_access_key: String,
    s3_path_style: Option<String>,
    cache_size: String,
    cache_disk: String,
    library_personality: String,
}

#[derive(Template)]
#[template(path = "activate.html")]
struct ActivatePage {
    form: ActivateForm,
    error_field: String,
    error: String,
    default_cache: String,
    fingerprint: String,
    disks: Vec<DiskChoice>,
}

/// An unused disk as the wizard offers it.
struct DiskChoice {
    path: std::path::PathBuf,
    size: String,
    model: String,
    sgw_cache: bool,
}

fn activate_page(p: &Plane, form: ActivateForm, error_field: &str, error: &str) -> ActivatePage {
    ActivatePage {
        form,
        error_field: error_field.to_string(),
        error: error.to_string(),
        default_cache: crate::units::size_text(p.default_cache_size).replace(' ', ""),
        fingerprint: p.tls_fingerprint.clone().unwrap_or_default(),
        disks: crate::admin::disks::unused_disks()
            .into_iter()
            .map(|d| DiskChoice {
                size: crate::units::size_text(d.size_bytes),
                path: d.path,
                model: d.model,
                sgw_cache: d.sgw_cache,
            })
            .collect(),
    }
}

async fn activate_form(State(p): State<Arc<Plane>>) -> Response {
    let form = ActivateForm { timezone: "UTC".into(), admin_user: "admin".into(), ..Default::default() };
    page(StatusCode::OK, &activate_page(&p, form, "", ""))
}

fn to_request(f: &ActivateForm) -> Result<ActivationRequest, (&'static str, String)> {
    if f.password != f.password_confirm {
        return Err(("password_confirm", "the two passwords differ".into()));
    }
    let cache_size_bytes = match f.cache_size.trim() {
        "" => None,
        s => Some(crate::units::parse_size(s).map_err(|e| ("cache_size", e))?),
    };
    let cloud = match f.cloud_kind.as_str() {
        "" | "embedded" => CloudTarget::Embedded,
        "s3" => CloudTarget::S3 {
            bucket: f.s3_bucket.trim().to_string(),
            endpoint: Some(f.s3_endpoint.trim().to_string()).filter(|e| !e.is_empty()),
            region: Some(f.s3_region.trim().to_string()).filter(|r| !r.is_empty()).unwrap_or_else(|| "us-east-1".into()),
            prefix: f.s3_prefix.trim().to_string(),
            path_style: f.s3_path_style.is_some(),
            access_key_id: Some(f.s3_access_key_id.trim().to_string()),
            secret_access_key: Some(f.s3_secret_access_key.clone()),
        },
        other => return Err(("cloud_kind", format!("unknown cloud target {other:?}"))),
    };
    let library_personality = match f.library_personality.as_str() {
        "" | "aws" => Some(LibraryPersonality::Aws),
        "stk" => Some(LibraryPersonality::Stk),
        other => return Err(("library_personality", format!("unknown library {other:?}"))),
    };
    Ok(ActivationRequest {
        code: Some(f.code.clone()),
        gateway_name: f.gateway_name.trim().to_string(),
        timezone: f.timezone.trim().to_string(),
        admin_user: f.admin_user.trim().to_string(),
        admin_password: f.password.clone(),
        cloud,
        cache_size_bytes,
        cache_disk: Some(std::path::PathBuf::from(f.cache_disk.trim())).filter(|d| !d.as_os_str().is_empty()),
        library_personality,
    })
}

async fn activate(State(p): State<Arc<Plane>>, Extension(peer): Extension<Peer>, Form(form): Form<ActivateForm>) -> Response {
    let req = match to_request(&form) {
        Ok(r) => r,
        Err((field, msg)) => return page(StatusCode::BAD_REQUEST, &activate_page(&p, blank_secrets(form), field, &msg)),
    };
    let user = req.admin_user.clone();
    match p.activate(req, Some(peer.ip())).await {
        Ok(_) => {
            let (id, _) = p.sessions.create(&user);
            let cookie = session_cookie(&id, &peer, p.sessions.absolute_secs());
            ([(header::SET_COOKIE, cookie)], Redirect::to("/activated")).into_response()
        }
        Err(ActivationError::AlreadyActivated) => Redirect::to("/login").into_response(),
        Err(e) => {
            let field = match e.field() {
                "password" => "password",
                "admin_user" => "admin_user",
                f if f.starts_with("s3_") => "cloud",
                f => f,
            }
            .to_string();
            let status = if field == "code" { StatusCode::FORBIDDEN } else { StatusCode::BAD_REQUEST };
            page(status, &activate_page(&p, blank_secrets(form), &field, &e.message()))
        }
    }
}

/// A refused form comes back without its passwords and secret.
fn blank_secrets(mut f: ActivateForm) -> ActivateForm {
    f.password.clear();
    f.password_confirm.clear();
    f.s3_secret_access_key.clear();
    f
}

#[derive(Template)]
#[template(path = "activated.html")]
struct ActivatedPage {
    chrome: super::Chrome,
    master_key_path: String,
    fingerprint: String,
    /// When and by whom the kit went over the network; empty: not yet.
    kit_downloaded: String,
}

async fn activated(State(p): State<Arc<Plane>>, Extension(principal): Extension<Principal>) -> Response {
    page(
        StatusCode::OK,
        &ActivatedPage {
            chrome: super::Chrome::new(&p, &principal, ""),
            master_key_path: p.master_key_path.display().to_string(),
            fingerprint: p.tls_fingerprint.clone().unwrap_or_default(),
            kit_downloaded: super::kit_downloaded_text(&p),
        },
    )
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    user: String,
    error: String,
    gateway_name: String,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct LoginForm {
    user: String,
    password: String,
}

async fn login_form(State(p): State<Arc<Plane>>) -> Response {
    let gateway_name = p.accounts.identity().map(|i| i.name).unwrap_or_default();
    page(StatusCode::OK, &LoginPage { user: String::new(), error: String::new(), gateway_name })
}

async fn login(State(p): State<Arc<Plane>>, Extension(peer): Extension<Peer>, Form(form): Form<LoginForm>) -> Response {
    match p.login(&form.user, &form.password, peer.ip()).await {
        Some((id, _)) => {
            let cookie = session_cookie(&id, &peer, p.sessions.absolute_secs());
            ([(header::SET_COOKIE, cookie)], Redirect::to("/dashboard")).into_response()
        }
        None => {
            let gateway_name = p.accounts.identity().map(|i| i.name).unwrap_or_default();
            let page_ = LoginPage { user: form.user, error: "wrong user or password".into(), gateway_name };
            page(StatusCode::UNAUTHORIZED, &page_)
        }
    }
}

async fn logout(State(p): State<Arc<Plane>>, Extension(principal): Extension<Principal>) -> Response {
    if let Principal::Session { id, session } = &principal {
        p.sessions.destroy(id);
        tracing::info!(user = %session.user, "console logout");
    }
    ([(header::SET_COOKIE, clear_cookie())], Redirect::to("/login")).into_response()
}
