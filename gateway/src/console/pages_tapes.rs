//! Tapes (list with filters, create, retrieve, delete) and the library
//! view: slots, import/export slots and drives with their barcodes.

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::Deserialize;

use super::{label, page, Chrome, Console};
use crate::admin::guard::Principal;
use crate::api::ApiError;
use crate::tapes::library::LocationKind;
use crate::tapes::{CreateTapes, Pool, TapeInfo};
use crate::units::{parse_size, size_text};

pub fn router(c: Console) -> Router {
    Router::new()
        .route("/tapes", get(tapes).post(create))
        .route("/tapes/{barcode}/retrieve", post(retrieve))
        .route("/tapes/{barcode}/delete", post(delete))
        .route("/library", get(library))
        .with_state(c)
}

struct TapeRow {
    barcode: String,
    size: String,
    used: String,
    state: String,
    pool: String,
    worm: bool,
    location: String,
}

/// A state with how long it has lasted when it is a passage (archiving,
/// retrieving), e.g. `RETRIEVING for 3 min`.
fn state_text(t: &TapeInfo) -> String {
    let state = label(&t.state);
    let passing = matches!(state.as_str(), "IN_TRANSIT_TO_VTS" | "ARCHIVING" | "RETRIEVING" | "CREATING");
    match t.state_since_unix {
        Some(since) if passing => {
            let secs = crate::admin::accounts::now_unix().saturating_sub(since);
            let took = if secs < 120 { format!("{secs} s") } else if secs < 7200 { format!("{} min", secs / 60) } else { format!("{} h", secs / 3600) };
            format!("{state} for {took}")
        }
        _ => state,
    }
}

fn row(t: &TapeInfo) -> TapeRow {
    TapeRow {
        barcode: t.barcode.clone(),
        size: size_text(t.size_bytes),
        used: size_text(t.used_bytes),
        state: state_text(t),
        pool: label(&t.pool),
        worm: t.worm,
        location: crate::tapes::cli::location(&t.location),
    }
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(default)]
pub struct Filter {
    state: String,
    pool: String,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(default)]
pub struct CreateForm {
    barcode: String,
    prefix: String,
    count: String,
    size: String,
    pool: String,
    worm: Option<String>,
}

#[derive(Template)]
#[template(path = "tapes.html")]
struct TapesPage {
    chrome: Chrome,
    tapes: Vec<TapeRow>,
    filter: Filter,
    states: Vec<String>,
    form: CreateForm,
    error_field: String,
    error: String,
}

async fn tapes_page(c: &Console, principal: &Principal, filter: Filter, form: CreateForm, field: &str, error: &str) -> TapesPage {
    let all = c.app.tapes.list().await;
    let mut states: Vec<String> = all.iter().map(|t| label(&t.state)).collect();
    states.sort();
    states.dedup();
    let tapes = all
        .iter()
        .filter(|t| filter.state.is_empty() || label(&t.state) == filter.state)
        .filter(|t| filter.pool.is_empty() || label(&t.pool) == filter.pool)
        .map(row)
        .collect();
    TapesPage {
        chrome: Chrome::new(&c.plane, principal, "tapes"),
        tapes,
        filter,
        states,
        form,
        error_field: field.into(),
        error: error.into(),
    }
}

async fn tapes(State(c): State<Console>, Extension(principal): Extension<Principal>, Query(filter): Query<Filter>) -> Response {
    let form = CreateForm { size: "100GiB".into(), ..Default::default() };
    page(StatusCode::OK, &tapes_page(&c, &principal, filter, form, "", "").await)
}

fn to_request(f: &CreateForm) -> Result<CreateTapes, (&'static str, String)> {
    let opt = |s: &str| Some(s.trim().to_string()).filter(|v| !v.is_empty());
    let size_bytes = parse_size(f.size.trim()).map_err(|e| ("size", e))?;
    let count = match opt(&f.count) {
        None => None,
        Some(c) => Some(c.parse::<u32>().map_err(|_| ("count", format!("{c:?} is not a count")))?),
    };
    let pool = match f.pool.as_str() {
        "" | "GLACIER" => Pool::Glacier,
        "DEEP_ARCHIVE" => Pool::DeepArchive,
        other => return Err(("pool", format!("unknown pool {other:?}"))),
    };
    Ok(CreateTapes { barcode: opt(&f.barcode), prefix: opt(&f.prefix), count, size_bytes, pool, worm: f.worm.is_some() })
}

fn field_of(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("prefix") {
        "prefix"
    } else if m.contains("barcode") {
        "barcode"
    } else if m.contains("count") {
        "count"
    } else if m.contains("size") {
        "size"
    } else {
        "form"
    }
}

async fn create(State(c): State<Console>, Extension(principal): Extension<Principal>, Form(f): Form<CreateForm>) -> Response {
    let req = match to_request(&f) {
        Ok(r) => r,
        Err((field, msg)) => {
            return page(StatusCode::BAD_REQUEST, &tapes_page(&c, &principal, Filter::default(), f, field, &msg).await)
        }
    };
    match c.app.tapes.create(req).await {
        Ok(_) => Redirect::to("/tapes").into_response(),
        Err(e) => {
            let e = ApiError::from(e);
            page(e.0, &tapes_page(&c, &principal, Filter::default(), f.clone(), field_of(&e.1), &e.1).await)
        }
    }
}

async fn retrieve(State(c): State<Console>, Extension(principal): Extension<Principal>, Path(barcode): Path<String>) -> Response {
    match c.app.tapes.retrieve(&barcode).await {
        Ok(_) => Redirect::to("/tapes").into_response(),
        Err(e) => {
            let e = ApiError::from(e);
            page(e.0, &tapes_page(&c, &principal, Filter::default(), CreateForm::default(), "form", &e.1).await)
        }
    }
}

async fn delete(State(c): State<Console>, Extension(principal): Extension<Principal>, Path(barcode): Path<String>) -> Response {
    match c.app.tapes.delete(&barcode).await {
        Ok(()) => Redirect::to("/tapes").into_response(),
        Err(e) => {
            let e = ApiError::from(e);
            page(e.0, &tapes_page(&c, &principal, Filter::default(), CreateForm::default(), "form", &e.1).await)
        }
    }
}

struct Element {
    element: String,
    barcode: String,
    state: String,
}

struct DriveRow {
    element: u16,
    iqn: String,
    serial: String,
    barcode: String,
}

#[derive(Template)]
#[template(path = "library.html")]
struct LibraryPage {
    chrome: Chrome,
    changer_iqn: String,
    changer: String,
    drives: Vec<DriveRow>,
    slots: Vec<Element>,
    ie_slots: Vec<Element>,
    shelf: usize,
}

async fn library(State(c): State<Console>, Extension(principal): Extension<Principal>) -> Response {
    let info = c.app.tapes.library_info().await;
    let tapes = c.app.tapes.list().await;
    let at = |kind: LocationKind| -> Vec<Element> {
        let mut v: Vec<Element> = tapes
            .iter()
            .filter(|t| t.location.kind == kind)
            .map(|t| Element {
                element: t.location.element.map_or_else(|| "–".into(), |e| e.to_string()),
                barcode: t.barcode.clone(),
                state: label(&t.state),
            })
            .collect();
        v.sort_by(|a, b| a.element.cmp(&b.element));
        v
    };
    let p = LibraryPage {
        chrome: Chrome::new(&c.plane, &principal, "library"),
        changer_iqn: info.changer.iqn.clone(),
        changer: format!("{} {} ({}), serial {}", info.changer.vendor, info.changer.product, label(&info.changer.personality), info.changer.serial),
        drives: info
            .drives
            .iter()
            .map(|d| DriveRow { element: d.element, iqn: d.iqn.clone(), serial: d.serial.clone(), barcode: d.barcode.clone().unwrap_or_default() })
            .collect(),
        slots: at(LocationKind::Storage),
        ie_slots: at(LocationKind::ImportExport),
        shelf: tapes.iter().filter(|t| t.location.kind == LocationKind::Archive).count(),
    };
    page(StatusCode::OK, &p)
}
