//! The dashboard, the cloud page, settings (tokens, password, recovery
//! kit) and the events list.

use std::time::Duration;

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::Deserialize;

use super::samples::{latencies, rates, total};
use super::svg::{chart, ms_text, rate_text, Series};
use super::{page, Chrome, Console};
use crate::admin::accounts::TokenInfo;
use crate::admin::guard::Principal;
use crate::admin::routes::{set_password, ChangePassword};
use crate::cloud::store::StoreConfig;
use crate::cloud::{BandwidthInterval, BandwidthSchedule};
use crate::units::size_text;

pub fn router(c: Console) -> Router {
    Router::new()
        .route("/dashboard", get(dashboard))
        .route("/cloud", get(cloud))
        .route("/cloud/test", post(cloud_test))
        .route("/cloud/bandwidth", post(set_bandwidth))
        .route("/settings", get(settings))
        .route("/settings/tokens", post(create_token))
        .route("/settings/tokens/{id}/revoke", post(revoke_token))
        .route("/settings/password", post(change_password))
        .route("/events", get(events))
        .with_state(c)
}

/// The window the dashboard charts.
const CHART_WINDOW: Duration = Duration::from_secs(3600);

struct VolumeCard {
    name: String,
    kind: String,
    state: String,
    recovery_point_age: String,
    write_bytes: u64,
    read_bytes: u64,
    throughput_svg: String,
    latency_svg: String,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    chrome: Chrome,
    version: String,
    uptime: String,
    /// `ok`, or `degraded` with each degraded component and why.
    health: String,
    health_ok: bool,
    cache_used: String,
    cache_dirty: String,
    upload_buffer: String,
    upload_rate: String,
    download_rate: String,
    volumes: Vec<VolumeCard>,
    sample_secs: u64,
    /// A running `recover`, as "3 of 10 volumes".
    recovery: String,
}

fn uptime_text(secs: u64) -> String {
    format!("{}d {:02}h {:02}m", secs / 86400, secs % 86400 / 3600, secs % 3600 / 60)
}

fn age_text(secs: Option<u64>) -> String {
    match secs {
        None => "none yet".into(),
        Some(s) if s < 120 => format!("{s} s ago"),
        Some(s) if s < 7200 => format!("{} min ago", s / 60),
        Some(s) => format!("{} h ago", s / 3600),
    }
}

async fn dashboard(State(c): State<Console>, Extension(principal): Extension<Principal>) -> Response {
    if let Some(cached) = &c.app.cached {
        cached.publish_gauges();
    }
    let families = c.app.metrics.registry.gather();
    let gauge = |name: &str| total(&families, name).unwrap_or(0.0);
    let samples = c.samples.recent(CHART_WINDOW);
    let (t0, t1) = (samples.first().map_or(0, |s| s.unix), samples.last().map_or(0, |s| s.unix));
    let last_rate = |f: &dyn Fn(&super::samples::Sample) -> f64| {
        rates(&samples, f).last().map_or_else(|| "–".to_string(), |&(_, r)| rate_text(r))
    };
    let volumes = c
        .app
        .volumes
        .list()
        .into_iter()
        .map(|v| {
            let name = v.name.clone();
            let get = |s: &super::samples::Sample| s.volumes.get(&name).copied().unwrap_or_default();
            let writes = rates(&samples, |s| get(s).write_bytes);
            let reads = rates(&samples, |s| get(s).read_bytes);
            let wlat = latencies(&samples, |s| (get(s).write_seconds, get(s).writes));
            let rlat = latencies(&samples, |s| (get(s).read_seconds, get(s).reads));
            let delta = |f: &dyn Fn(&super::samples::Sample) -> f64| match (samples.first(), samples.last()) {
                (Some(a), Some(b)) => (f(b) - f(a)).max(0.0) as u64,
                _ => 0,
            };
            VolumeCard {
                kind: super::label(&v.kind),
                state: v.state_text(),
                recovery_point_age: age_text(v.recovery_point_age_secs),
                write_bytes: delta(&|s| get(s).write_bytes),
                read_bytes: delta(&|s| get(s).read_bytes),
                throughput_svg: chart(
                    &[Series { class: "write", points: &writes }, Series { class: "read", points: &reads }],
                    t0,
                    t1,
                    "I/O",
                    rate_text,
                ),
                latency_svg: chart(
                    &[Series { class: "write", points: &wlat }, Series { class: "read", points: &rlat }],
                    t0,
                    t1,
                    "I/O",
                    ms_text,
                ),
                name: v.name,
            }
        })
        .collect();
    let degraded = c.plane.health.faults();
    let health = if degraded.is_empty() {
        "ok".to_owned()
    } else {
        let each: Vec<String> = degraded.iter().map(|f| format!("{}: {}", f.component, f.reason)).collect();
        format!("degraded ({})", each.join("; "))
    };
    let p = DashboardPage {
        chrome: Chrome::new(&c.plane, &principal, "dashboard"),
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime: uptime_text(c.plane.started.elapsed().as_secs()),
        health_ok: degraded.is_empty(),
        health,
        cache_used: format!("{:.0}", gauge("sgw_cache_percent_used")),
        cache_dirty: format!("{:.0}", gauge("sgw_cache_percent_dirty")),
        upload_buffer: size_text(gauge("sgw_queued_writes_bytes") as u64),
        upload_rate: last_rate(&|s| s.uploaded_bytes),
        download_rate: last_rate(&|s| s.downloaded_bytes),
        volumes,
        sample_secs: c.samples.interval().as_secs(),
        recovery: c
            .app
            .volumes
            .recovery_progress()
            .map(|p| {
                format!(
                    "{} of {} volumes, {} of {}",
                    p.volumes.done,
                    p.volumes.total,
                    size_text(p.bytes.done),
                    size_text(p.bytes.total)
                )
            })
            .unwrap_or_default(),
    };
    page(StatusCode::OK, &p)
}

#[derive(Template)]
#[template(path = "cloud.html")]
struct CloudPage {
    chrome: Chrome,
    kind: String,
    bucket: String,
    endpoint: String,
    region: String,
    prefix: String,
    /// The schedule's intervals, then one blank row to add another.
    bandwidth: Vec<BandwidthRow>,
    utc_offset_minutes: i32,
    upload_total: String,
    download_total: String,
    test_result: String,
    test_ok: bool,
    bandwidth_error: String,
}

/// One interval of the schedule as the editor shows it.
struct BandwidthRow {
    /// The row's number in the form's field names.
    index: usize,
    /// Day number, its name, and whether the interval covers it.
    days: Vec<(u8, &'static str, bool)>,
    start: String,
    end: String,
    upload_mbps: String,
    download_mbps: String,
}

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

fn mbps(bits: Option<u64>) -> String {
    bits.map_or_else(String::new, |b| format!("{}", b as f64 / 1e6))
}

fn bandwidth_rows(schedule: &BandwidthSchedule) -> Vec<BandwidthRow> {
    let mut rows: Vec<BandwidthRow> = schedule
        .intervals
        .iter()
        .enumerate()
        .map(|(index, i)| BandwidthRow {
            index,
            days: (0..7u8).map(|d| (d, DAYS[usize::from(d)], i.days_of_week.contains(&d))).collect(),
            start: format!("{:02}:{:02}", i.start_hour, i.start_minute),
            end: format!("{:02}:{:02}", i.end_hour, i.end_minute),
            upload_mbps: mbps(i.upload_bits_per_sec),
            download_mbps: mbps(i.download_bits_per_sec),
        })
        .collect();
    rows.push(BandwidthRow { index: rows.len(), days: (0..7u8).map(|d| (d, DAYS[usize::from(d)], false)).collect(), start: String::new(), end: String::new(), upload_mbps: String::new(), download_mbps: String::new() });
    rows
}

fn cloud_page(c: &Console, principal: &Principal, test_result: String, test_ok: bool) -> CloudPage {
    let cloud = c.config.cloud();
    let (kind, bucket, endpoint, region) = match &cloud.store {
        StoreConfig::S3(s) => ("S3".to_string(), s.bucket.clone(), s.endpoint.clone().unwrap_or_else(|| "AWS".into()), s.region.clone()),
        StoreConfig::Local(l) => ("embedded store".to_string(), l.root.display().to_string(), "this machine".into(), String::new()),
    };
    let families = c.app.metrics.registry.gather();
    let schedule = c.app.bandwidth.current();
    CloudPage {
        chrome: Chrome::new(&c.plane, principal, "cloud"),
        kind,
        bucket,
        endpoint,
        region,
        prefix: cloud.prefix.clone(),
        bandwidth: bandwidth_rows(&schedule),
        utc_offset_minutes: schedule.utc_offset_minutes,
        upload_total: size_text(total(&families, "sgw_cloud_bytes_uploaded_total").unwrap_or(0.0) as u64),
        download_total: size_text(total(&families, "sgw_cloud_bytes_downloaded_total").unwrap_or(0.0) as u64),
        test_result,
        test_ok,
        bandwidth_error: String::new(),
    }
}

/// `HH:MM` into hours and minutes.
fn clock(text: &str) -> Option<(u8, u8)> {
    let (h, m) = text.trim().split_once(':')?;
    Some((h.parse().ok()?, m.parse().ok()?))
}

/// Mbit/s as typed (empty: no limit) into bits per second.
fn bits(text: &str) -> Result<Option<u64>, String> {
    match text.trim() {
        "" => Ok(None),
        t => t
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v > 0.0 && *v < 1e7)
            .map(|v| Some((v * 1e6) as u64))
            .ok_or_else(|| format!("{t:?} is not a rate in Mbit/s")),
    }
}

/// The editor's fields (`day_ROW_D`, `start_ROW`, `end_ROW`, `up_ROW`,
/// `down_ROW`, `utc_offset_minutes`) into a schedule; rows left blank are
/// dropped.
fn schedule_from_form(fields: &[(String, String)]) -> Result<BandwidthSchedule, String> {
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map_or("", |(_, v)| v.as_str());
    let mut intervals = Vec::new();
    for row in 0..=64usize {
        let days: Vec<u8> = (0..7u8).filter(|d| !get(&format!("day_{row}_{d}")).is_empty()).collect();
        let (start, end) = (get(&format!("start_{row}")), get(&format!("end_{row}")));
        let (up, down) = (get(&format!("up_{row}")), get(&format!("down_{row}")));
        if days.is_empty() && start.is_empty() && end.is_empty() && up.is_empty() && down.is_empty() {
            continue;
        }
        let n = row + 1;
        let (start_hour, start_minute) = clock(start).ok_or_else(|| format!("row {n}: the start is HH:MM"))?;
        let (end_hour, end_minute) = clock(end).ok_or_else(|| format!("row {n}: the end is HH:MM"))?;
        intervals.push(BandwidthInterval {
            days_of_week: days,
            start_hour,
            start_minute,
            end_hour,
            end_minute,
            upload_bits_per_sec: bits(up).map_err(|e| format!("row {n}: {e}"))?,
            download_bits_per_sec: bits(down).map_err(|e| format!("row {n}: {e}"))?,
        });
    }
    let utc_offset_minutes = match get("utc_offset_minutes").trim() {
        "" => 0,
        t => t.parse().map_err(|_| format!("{t:?} is not an offset in minutes"))?,
    };
    Ok(BandwidthSchedule { intervals, utc_offset_minutes })
}

async fn set_bandwidth(
    State(c): State<Console>,
    Extension(principal): Extension<Principal>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let result = schedule_from_form(&fields).and_then(|s| crate::bandwidth::set(&c.app, s).map_err(|e| e.1));
    match result {
        Ok(()) => Redirect::to("/cloud").into_response(),
        Err(e) => {
            let mut p = cloud_page(&c, &principal, String::new(), false);
            p.bandwidth_error = e;
            page(StatusCode::BAD_REQUEST, &p)
        }
    }
}

async fn cloud(State(c): State<Console>, Extension(principal): Extension<Principal>) -> Response {
    page(StatusCode::OK, &cloud_page(&c, &principal, String::new(), false))
}

async fn cloud_test(State(c): State<Console>, Extension(principal): Extension<Principal>) -> Response {
    let cloud = c.config.cloud();
    let (result, ok) = match &cloud.store {
        StoreConfig::S3(s3) => match crate::cloud::store::probe::probe_s3(s3, &cloud.prefix).await {
            Ok(()) => ("HEAD bucket, PUT, GET and DELETE of a probe object all succeeded".to_string(), true),
            Err(e) => (e.to_string(), false),
        },
        StoreConfig::Local(l) => match std::fs::metadata(&l.root) {
            Ok(m) if m.is_dir() => (format!("the embedded store at {} is reachable", l.root.display()), true),
            Ok(_) | Err(_) => (format!("the embedded store at {} is missing", l.root.display()), false),
        },
    };
    let status = if ok { StatusCode::OK } else { StatusCode::BAD_GATEWAY };
    page(status, &cloud_page(&c, &principal, result, ok))
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    chrome: Chrome,
    name: String,
    timezone: String,
    activated: String,
    version: String,
    fingerprint: String,
    master_key_path: String,
    /// When and by whom the kit went over the network; empty: not yet.
    kit_downloaded: String,
    tokens: Vec<(TokenInfo, String)>,
    new_token: String,
    error_field: String,
    error: String,
}

fn settings_page(c: &Console, principal: &Principal) -> SettingsPage {
    let id = c.plane.accounts.identity();
    SettingsPage {
        chrome: Chrome::new(&c.plane, principal, "settings"),
        name: id.as_ref().map(|i| i.name.clone()).unwrap_or_default(),
        timezone: id.as_ref().map(|i| i.timezone.clone()).unwrap_or_default(),
        activated: id.map(|i| c.plane.date_text(i.activated_unix)).unwrap_or_default(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        fingerprint: c.plane.tls_fingerprint.clone().unwrap_or_default(),
        master_key_path: c.plane.master_key_path.display().to_string(),
        kit_downloaded: super::kit_downloaded_text(&c.plane),
        tokens: c.plane.accounts.list_tokens().into_iter().map(|t| {
            let d = c.plane.date_text(t.created_unix);
            (t, d)
        }).collect(),
        new_token: String::new(),
        error_field: String::new(),
        error: String::new(),
    }
}

async fn settings(State(c): State<Console>, Extension(principal): Extension<Principal>) -> Response {
    page(StatusCode::OK, &settings_page(&c, &principal))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TokenForm {
    name: String,
}

async fn create_token(State(c): State<Console>, Extension(principal): Extension<Principal>, Form(f): Form<TokenForm>) -> Response {
    match c.plane.accounts.create_token(f.name.trim()) {
        Ok((info, secret)) => {
            tracing::info!(token = %info.id, name = %info.name, by = %principal.describe(), "API token created");
            let mut p = settings_page(&c, &principal);
            p.new_token = secret;
            page(StatusCode::CREATED, &p)
        }
        Err(e) => {
            let mut p = settings_page(&c, &principal);
            p.error_field = "token_name".into();
            p.error = e.to_string();
            page(StatusCode::BAD_REQUEST, &p)
        }
    }
}

async fn revoke_token(State(c): State<Console>, Extension(principal): Extension<Principal>, Path(id): Path<String>) -> Response {
    match c.plane.accounts.revoke_token(&id) {
        Ok(()) => {
            tracing::info!(token = %id, by = %principal.describe(), "API token revoked");
            Redirect::to("/settings").into_response()
        }
        Err(e) => {
            let mut p = settings_page(&c, &principal);
            p.error_field = "tokens".into();
            p.error = e.to_string();
            page(StatusCode::NOT_FOUND, &p)
        }
    }
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct PasswordForm {
    current_password: String,
    new_password: String,
    new_password_confirm: String,
}

async fn change_password(
    State(c): State<Console>,
    Extension(principal): Extension<Principal>,
    Form(f): Form<PasswordForm>,
) -> Response {
    let mut p = settings_page(&c, &principal);
    if f.new_password != f.new_password_confirm {
        p.error_field = "new_password".into();
        p.error = "the two new passwords differ".into();
        return page(StatusCode::BAD_REQUEST, &p);
    }
    let req = ChangePassword { current_password: Some(f.current_password), new_password: f.new_password };
    match set_password(&c.plane, &principal, req).await {
        // Every session ended, this one too: log in again.
        Ok(()) => Redirect::to("/login").into_response(),
        Err(e) => {
            p.error_field = "new_password".into();
            p.error = e.to_string();
            page(StatusCode::BAD_REQUEST, &p)
        }
    }
}

struct EventRow {
    time: String,
    level: String,
    target: String,
    message: String,
    fields: String,
}

#[derive(Template)]
#[template(path = "events.html")]
struct EventsPage {
    chrome: Chrome,
    events: Vec<EventRow>,
}

async fn events(State(c): State<Console>, Extension(principal): Extension<Principal>) -> Response {
    let events = super::events::EventLog::global()
        .latest()
        .into_iter()
        .map(|e| EventRow { time: c.plane.date_text(e.unix), level: e.level, target: e.target, message: e.message, fields: e.fields })
        .collect();
    page(StatusCode::OK, &EventsPage { chrome: Chrome::new(&c.plane, &principal, "events"), events })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn editor_rows_become_a_schedule() {
        let s = schedule_from_form(&fields(&[
            ("csrf", "x"),
            ("day_0_1", "1"),
            ("day_0_5", "1"),
            ("start_0", "08:30"),
            ("end_0", "18:00"),
            ("up_0", "50"),
            ("down_0", ""),
            ("start_1", ""),
            ("end_1", ""),
            ("utc_offset_minutes", "60"),
        ]))
        .unwrap();
        assert_eq!(s.utc_offset_minutes, 60);
        assert_eq!(s.intervals.len(), 1, "the blank row is dropped");
        let i = &s.intervals[0];
        assert_eq!((i.days_of_week.clone(), i.start_hour, i.start_minute, i.end_hour), (vec![1, 5], 8, 30, 18));
        assert_eq!((i.upload_bits_per_sec, i.download_bits_per_sec), (Some(50_000_000), None));
        // The rows shown again: the interval, then a blank one.
        let rows = bandwidth_rows(&s);
        assert_eq!((rows.len(), rows[0].start.as_str(), rows[0].upload_mbps.as_str()), (2, "08:30", "50"));
        assert!(schedule_from_form(&fields(&[("day_0_1", "1"), ("start_0", "8"), ("end_0", "9:00")])).unwrap_err().contains("row 1"));
        assert!(schedule_from_form(&fields(&[("start_0", "08:00"), ("end_0", "09:00"), ("up_0", "fast")])).is_err());
    }
}
