//! The web console: server-rendered pages (askama templates, compiled
//! into the binary) with plain HTML forms, so that it works with
//! JavaScript off; htmx, vendored and embedded, refreshes the live parts.
//! Every form posts through the same guard as the API (session cookie and
//! CSRF token) and calls the same services the REST handlers do.

pub mod events;
mod pages_auth;
mod pages_status;
mod pages_tapes;
mod pages_volumes;
pub mod samples;
mod svg;

use std::sync::Arc;

use askama::Template;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::admin::guard::Principal;
use crate::admin::Plane;
use crate::api::AppState;
use samples::Samples;

/// What the pages of a running gateway need.
#[derive(Clone)]
pub struct Console {
    pub plane: Arc<Plane>,
    pub app: AppState,
    pub samples: Arc<Samples>,
    /// The configuration in effect (the cloud page shows it).
    pub config: Arc<crate::config::Config>,
}

/// The header every signed-in page shares.
pub struct Chrome {
    pub gateway_name: String,
    pub csrf: String,
    pub active: &'static str,
}

impl Chrome {
    pub fn new(plane: &Plane, principal: &Principal, active: &'static str) -> Chrome {
        Chrome {
            gateway_name: plane.accounts.identity().map(|i| i.name).unwrap_or_default(),
            csrf: principal.csrf().to_string(),
            active,
        }
    }
}

/// Renders a template as a page with a status.
pub fn page(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "console template failed").into_response()
        }
    }
}

/// A value's serde name (`AVAILABLE`, `GLACIER`...), as the API shows it.
/// `on DATE by WHO` once the recovery kit went over the network, else empty.
fn kit_downloaded_text(p: &crate::admin::Plane) -> String {
    crate::admin::kit_download::recorded(&p.data_dir).map_or_else(String::new, |d| format!("on {} by {}", p.date_text(d.unix), d.by))
}

pub fn label<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|j| j.as_str().map(str::to_string)).unwrap_or_default()
}

const CSS: &str = include_str!("../../assets/console.css");
const HTMX: &str = include_str!("../../assets/htmx.min.js");

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=3600")], CSS).into_response()
}

async fn htmx() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "max-age=3600")], HTMX)
        .into_response()
}

/// Pages served before activation: the wizard, and the assets.
pub fn activation_router(plane: Arc<Plane>) -> Router {
    Router::new()
        .route("/assets/console.css", get(css))
        .route("/assets/htmx.min.js", get(htmx))
        .merge(pages_auth::activation_router(plane))
}

/// Every page of a running gateway.
pub fn router(console: Console) -> Router {
    Router::new()
        .route("/assets/console.css", get(css))
        .route("/assets/htmx.min.js", get(htmx))
        .merge(pages_auth::router(console.plane.clone()))
        .merge(pages_status::router(console.clone()))
        .merge(pages_volumes::router(console.clone()))
        .merge(pages_tapes::router(console))
}
