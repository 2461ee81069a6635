//! The OpenAPI document of the REST API, `GET /api/v1/openapi.json`: made
//! from the handlers' `#[utoipa::path]` annotations and the types they
//! take and return, so that it follows the code. The test below checks
//! that it lists every route the two routers serve, and nothing else.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::admin::sessions::COOKIE_NAME;
use crate::api::ErrorBody;

/// The REST API: `crate::api` (volumes, snapshots, tapes, the library,
/// metrics) and `crate::admin::routes` (the management plane's own).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "sgw storage gateway REST API",
        description = "The gateway's admin API: volumes, snapshots and recovery points, tapes and the tape \
library, metrics, and the management plane (activation, login, API tokens, the password, the recovery kit).\n\n\
**Authentication.** Every endpoint needs the gateway activated and an authenticated caller, except \
`GET /api/v1/health` (always open), `POST /api/v1/activate` (open only while the gateway is not activated), \
`POST /api/v1/login` (open once it is) and `GET /metrics` (open unless the daemon has a `metrics_token`). \
A caller authenticates with an API token (`POST /api/v1/tokens`) as `Authorization: Bearer TOKEN`, or with \
the console session cookie `sgw_session` that `POST /api/v1/login` sets. With the cookie, every request \
that changes state (anything but GET, HEAD and OPTIONS) must also send the session's CSRF token as \
`X-CSRF-Token` (or, for a form, as its `csrf` field). Requests over the gateway's local socket \
(`DATA_DIR/sgw.sock`) need no credentials.\n\n\
**Other refusals.** A `Host` that is not one of the gateway's names or addresses gets 421; a request whose \
`Origin` (or `Referer`) is another site gets 403. The data endpoints answer 503 while the gateway starts.\n\n\
**Errors** are JSON: `{\"error\": \"...\"}` (`ErrorBody`)."
    ),
    paths(
        crate::api::list_volumes,
        crate::api::create_volume,
        crate::api::get_volume,
        crate::api::update_volume,
        crate::api::delete_volume,
        crate::api::create_recovery_point,
        crate::api::scrub_volume,
        crate::api::list_snapshots,
        crate::api::create_snapshot,
        crate::api::get_snapshot,
        crate::api::delete_snapshot,
        crate::api::recover,
        crate::api::recover_status,
        crate::api::list_tapes,
        crate::api::create_tapes,
        crate::api::get_tape,
        crate::api::delete_tape,
        crate::api::retrieve_tape,
        crate::api::library,
        crate::api::update_library,
        crate::bandwidth::get_bandwidth,
        crate::bandwidth::put_bandwidth,
        crate::api::metrics,
        crate::admin::routes::health,
        crate::admin::routes::activate,
        crate::admin::routes::login,
        crate::admin::routes::logout,
        crate::admin::routes::session,
        crate::admin::routes::gateway,
        crate::admin::routes::list_tokens,
        crate::admin::routes::create_token,
        crate::admin::routes::revoke_token,
        crate::admin::routes::change_password,
        crate::admin::routes::recovery_kit_handler,
        crate::admin::system_routes::list_disks,
        crate::admin::system_routes::power,
        crate::admin::system_routes::update,
        openapi_json,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Security),
    tags(
        (name = "volumes", description = "iSCSI volumes: cached (in the cloud) or local, and their recovery points."),
        (name = "snapshots", description = "Snapshots of cached volumes: recovery points kept until deleted."),
        (name = "tapes", description = "The virtual tape library: tapes, the changer and the drives."),
        (name = "metrics", description = "Prometheus metrics."),
        (name = "gateway", description = "The gateway itself: health, activation, identity, the recovery kit, this document."),
        (name = "session", description = "Console sessions and the admin password."),
        (name = "tokens", description = "API tokens for `Authorization: Bearer`."),
    )
)]
pub struct ApiDoc;

/// The security schemes the operations name, and the guard's refusals on
/// every operation that needs a caller.
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API token from `POST /api/v1/tokens` (or, for `/metrics`, the daemon's `metrics_token`)."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                COOKIE_NAME,
                "The console session that `POST /api/v1/login` starts.",
            ))),
        );
        components.add_security_scheme(
            "csrf_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-CSRF-Token",
                "The session's CSRF token (`csrf` of `POST /api/v1/login` or `GET /api/v1/session`): required with \
                 the session cookie on every request that changes state.",
            ))),
        );

        for item in doc.paths.paths.values_mut() {
            let ops = [(true, &mut item.get), (false, &mut item.post), (false, &mut item.put), (false, &mut item.patch), (false, &mut item.delete)];
            for (safe, op) in ops {
                let Some(op) = op else { continue };
                if !needs_caller(op) {
                    continue;
                }
                let forbidden = if safe {
                    "The gateway is not activated."
                } else {
                    "The gateway is not activated, or a session's request lacks its CSRF token."
                };
                add_refusal(op, "401", "Authentication required, or an invalid or revoked token.");
                add_refusal(op, "403", forbidden);
            }
        }
    }
}

/// Whether every security requirement of an operation names a scheme (no
/// empty, "open" alternative).
fn needs_caller(op: &utoipa::openapi::path::Operation) -> bool {
    op.security.as_ref().is_some_and(|reqs| {
        !reqs.is_empty()
            && reqs
                .iter()
                .all(|r| serde_json::to_value(r).ok().and_then(|v| v.as_object().map(|o| !o.is_empty())).unwrap_or(false))
    })
}

/// Adds a guard refusal to an operation's responses, or appends it to the
/// description of the handler's own response with that status.
fn add_refusal(op: &mut utoipa::openapi::path::Operation, status: &str, description: &str) {
    use utoipa::openapi::RefOr;
    match op.responses.responses.get_mut(status) {
        Some(RefOr::T(own)) => {
            own.description = format!("{} Or: {}", own.description, description.to_lowercase());
        }
        Some(RefOr::Ref(_)) => {}
        None => {
            let response = ResponseBuilder::new()
                .description(description)
                .content("application/json", Content::new(Some(Ref::from_schema_name("ErrorBody"))))
                .build();
            op.responses.responses.insert(status.to_string(), RefOr::T(response));
        }
    }
}

/// The document as JSON, made once.
pub fn openapi_document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| ApiDoc::openapi().to_pretty_json().expect("the OpenAPI document serializes"))
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "gateway",
    responses((status = 200, description = "The OpenAPI 3.1 document of the REST API.", body = serde_json::Value)),
    security(("bearer_token" = []), ("session_cookie" = []))
)]
pub async fn openapi_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], openapi_document())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use tower::ServiceExt;

    use super::*;

    /// The (method, path) pairs of the document.
    fn documented() -> BTreeSet<(String, String)> {
        let doc = ApiDoc::openapi();
        let mut set = BTreeSet::new();
        for (path, item) in &doc.paths.paths {
            let ops = [
                ("GET", &item.get),
                ("POST", &item.post),
                ("DELETE", &item.delete),
                ("PUT", &item.put),
                ("PATCH", &item.patch),
                ("HEAD", &item.head),
                ("OPTIONS", &item.options),
                ("TRACE", &item.trace),
            ];
            for (method, op) in ops {
                if op.is_some() {
                    set.insert((method.to_string(), path.clone()));
                }
            }
        }
        set
    }

    /// The (method, path) pairs routed in a router's source: each
    /// `.route("PATH", get(a).post(b))`, with the method names chained in
    /// its method router.
    fn routed_in(source: &str) -> BTreeSet<(String, String)> {
        let mut set = BTreeSet::new();
        for (at, _) in source.match_indices(".route(\"") {
            let rest = &source[at + ".route(\"".len()..];
            let end = rest.find('"').expect("the path literal ends");
            let path = &rest[..end];
            // The method router: up to the parenthesis that closes `.route(`.
            let mut depth = 1;
            let mut close = None;
            for (i, c) in rest[end + 1..].char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            close = Some(end + 1 + i);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let methods = &rest[end + 1..close.expect("the route call closes")];
            let mut found = 0;
            for (name, method) in [("get", "GET"), ("post", "POST"), ("delete", "DELETE"), ("put", "PUT"), ("patch", "PATCH")] {
                let called = methods.match_indices(&format!("{name}(")).any(|(i, _)| {
                    // `get(` at the start of the method router, or `.get(`.
                    let before = methods[..i].trim_end();
                    before.ends_with(',') || before.ends_with('.')
                });
                if called {
                    set.insert((method.to_string(), path.to_string()));
                    found += 1;
                }
            }
            assert!(found > 0, "no method found for route {path}: {methods}");
        }
        set
    }

    #[test]
    fn source_scan_reads_routes() {
        let src = r#"Router::new()
            .route("/a", get(x).post(y))
            .route("/a/{id}", delete(z))
            .route("/b", get(crate::m::f))"#;
        let want: BTreeSet<(String, String)> =
            [("GET", "/a"), ("POST", "/a"), ("DELETE", "/a/{id}"), ("GET", "/b")]
                .into_iter()
                .map(|(m, p)| (m.to_string(), p.to_string()))
                .collect();
        assert_eq!(routed_in(src), want);
    }

    /// Every route of the routers' source is documented, and every
    /// documented operation is routed.
    #[test]
    fn document_lists_every_route() {
        let mut routed = routed_in(include_str!("api.rs"));
        routed.extend(routed_in(include_str!("admin/routes.rs")));
        routed.extend(routed_in(include_str!("admin/system_routes.rs")));
        assert!(routed.len() > 25, "the source scan found only {routed:?}");
        let documented = documented();
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(undocumented.is_empty(), "routes missing from the OpenAPI document: {undocumented:?}");
        assert!(unrouted.is_empty(), "documented but not routed: {unrouted:?}");
    }

    /// Each operation says how it is authenticated, and every `$ref`
    /// resolves to a schema of the document.
    #[test]
    fn document_is_consistent() {
        let doc: serde_json::Value = serde_json::from_str(openapi_document()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
        for name in ["bearer_token", "session_cookie", "csrf_token"] {
            assert!(schemes.contains_key(name), "no security scheme {name}");
        }
        let open: BTreeSet<&str> = ["/api/v1/health", "/api/v1/activate", "/api/v1/login", "/metrics"].into();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let security = op["security"].as_array().unwrap_or_else(|| panic!("{method} {path}: no security"));
                let optional = security.iter().any(|r| r.as_object().unwrap().is_empty());
                assert_eq!(optional, open.contains(path.as_str()), "{method} {path}: open or not");
                for r in security {
                    for name in r.as_object().unwrap().keys() {
                        assert!(schemes.contains_key(name), "{method} {path}: unknown scheme {name}");
                    }
                }
                // A session cookie alone may not change state.
                if method != "get" {
                    for r in security {
                        let r = r.as_object().unwrap();
                        assert!(
                            !r.contains_key("session_cookie") || r.contains_key("csrf_token"),
                            "{method} {path}: a session cookie without the CSRF token"
                        );
                    }
                }
                let responses = op["responses"].as_object().unwrap();
                assert!(responses.keys().any(|s| s.starts_with('2')), "{method} {path}: no success response");
                if !optional {
                    assert!(responses.contains_key("401"), "{method} {path}: no 401");
                }
            }
        }
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let text = doc.to_string();
        for (at, _) in text.match_indices("\"$ref\":\"#/components/schemas/") {
            let rest = &text[at + "\"$ref\":\"#/components/schemas/".len()..];
            let name = &rest[..rest.find('"').unwrap()];
            assert!(schemas.contains_key(name), "unresolved $ref {name}");
        }
    }

    /// A running gateway's data API state, on an embedded store in `dir`.
    async fn app_state(dir: &std::path::Path) -> crate::api::AppState {
        use cache::{Cache, CacheConfig, DiskSpec};
        use iscsi_target::server::{Server, ServerConfig};

        use crate::cached::map::MapStore;
        use crate::cached::metrics::VolumeMetrics;
        use crate::cached::{CachedVolumes, Engine};
        use crate::cloud::{CloudLayer, MasterKey};
        use crate::config::Config;
        use crate::metrics::Metrics;
        use crate::tapes::TapeLibrary;
        use crate::targets::GatewayTargets;
        use crate::volumes::VolumeManager;

        let config = Config { data_dir: dir.to_path_buf(), ..Config::default() };
        let metrics = Arc::new(Metrics::new().unwrap());
        let (cloud, completions) = CloudLayer::start(&config.cloud(), MasterKey::generate(), &metrics.registry).await.unwrap();
        let cache_dir = dir.join("cache");
        std::fs::create_dir_all(&cache_dir).unwrap();
        let cache_config =
            CacheConfig::new(cache_dir.join("index"), vec![DiskSpec { path: cache_dir.join("disk0.img"), size_bytes: 64 << 20 }]);
        let high_watermark = cache_config.dirty_high_watermark;
        let cache = Arc::new(Cache::open(cache_config, &metrics.registry).unwrap());
        let maps = Arc::new(MapStore::open(&cache_dir.join("maps")).unwrap());
        let engine = Engine::new(cache, Arc::new(cloud), maps, VolumeMetrics::register(&metrics.registry).unwrap());
        let shutdown = tokio_util::sync::CancellationToken::new();
        engine.start(completions, shutdown.clone());
        let service = CachedVolumes::new(engine.clone(), dir).unwrap();
        let volumes = Arc::new(VolumeManager::open(dir, Some(service.clone()), high_watermark).await.unwrap());
        let tapes = TapeLibrary::start(dir, engine, config.tapes(), &metrics.registry, shutdown).await.unwrap();
        let iscsi = Server::new(Arc::new(GatewayTargets { volumes: volumes.clone(), tapes: tapes.clone() }), ServerConfig::default());
        crate::api::AppState {
            volumes,
            iscsi,
            metrics,
            cached: Some(service.clone()),
            tapes,
            bandwidth: service.cloud_layer().store.bandwidth().clone(),
            data_dir: dir.to_path_buf(),
        }
    }

    /// Every documented operation reaches a handler of the real routers:
    /// none is answered "no such endpoint" (404) or "method not allowed"
    /// (405). Path parameters name nothing that exists and no request has
    /// a body, so no handler changes anything.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_documented_operation_is_served() {
        use crate::admin::guard::Principal;
        use crate::admin::http::{Channel, Peer};
        use crate::admin::{Plane, PlaneOptions};

        let dir = tempfile::tempdir().unwrap();
        let (plane, _activated) = Plane::open(PlaneOptions {
            data_dir: dir.path().to_path_buf(),
            host_names: Vec::new(),
            metrics_token: None,
            session_limits: Default::default(),
            tls_fingerprint: None,
            default_cache_size: 64 << 20,
            master_key_path: dir.path().join("master.key"),
            power_control: false,
            update_public_key: None,
        })
        .unwrap();
        let state = app_state(dir.path()).await;
        // As `management_router` composes them, without the guard.
        let router = crate::admin::routes::router(plane.clone())
            .merge(crate::admin::system_routes::router(plane))
            .merge(crate::api::router(state));

        let operations = documented();
        assert!(!operations.is_empty());
        for (method, path) in operations {
            let uri = path.replace('{', "openapi-test-").replace('}', "");
            let mut req = Request::builder().method(Method::from_bytes(method.as_bytes()).unwrap()).uri(&uri).body(Body::empty()).unwrap();
            req.extensions_mut().insert(Peer { channel: Channel::LocalSocket, addr: None });
            req.extensions_mut().insert(Principal::LocalRoot);
            let resp = router.clone().oneshot(req).await.unwrap();
            let status = resp.status();
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
            let body = String::from_utf8_lossy(&body);
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}: not routed for this method");
            let unrouted = status == StatusCode::NOT_FOUND && (body.is_empty() || body.contains("no such endpoint"));
            assert!(!unrouted, "{method} {uri}: no such endpoint ({body})");
        }
    }

    /// The document is served, and is the generated one.
    #[tokio::test]
    async fn served_document() {
        let resp = openapi_json().await.into_response();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(resp.into_body(), 1 << 22).await.unwrap();
        let served: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(served, serde_json::to_value(ApiDoc::openapi()).unwrap());
        assert!(served["paths"]["/api/v1/volumes"]["post"]["requestBody"].is_object());
    }
}
