//! The management plane's own REST endpoints: health, activation, login
//! and logout, the gateway's identity, API tokens, the password and the
//! recovery kit.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};

use super::accounts::{check_password, hash_password, AccountError, TokenInfo};
use super::activation::ActivationRequest;
use super::guard::{json_error, Principal};
use super::http::{Channel, Peer};
use super::sessions::COOKIE_NAME;
use super::{Activated, ActivationError, Plane};
use crate::api::ErrorBody;
use crate::cloud::store::probe::ProbeCause;

pub fn router(plane: Arc<Plane>) -> Router {
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/activate", post(activate))
        .route("/api/v1/login", post(login))
        .route("/api/v1/logout", post(logout))
        .route("/api/v1/session", get(session))
        .route("/api/v1/gateway", get(gateway))
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{id}", delete(revoke_token))
        .route("/api/v1/password", post(change_password))
        .route("/api/v1/recovery-kit", post(recovery_kit_handler))
        .route("/api/v1/openapi.json", get(crate::openapi::openapi_json))
        .with_state(plane)
}

fn bad_json(r: JsonRejection) -> Response {
    json_error(StatusCode::BAD_REQUEST, &r.body_text())
}

/// `GET /api/v1/health`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` while a component is (see `degraded`).
    pub status: String,
    /// The degraded components and why; empty when all is well.
    #[serde(default)]
    pub degraded: Vec<crate::health::ComponentFault>,
    /// An admin has claimed the gateway.
    pub activated: bool,
    /// Activated, and its volumes, tapes and iSCSI portal are up.
    pub ready: bool,
}

/// Whether the gateway answers, is activated, is ready, and which of its
/// components are degraded. Open to anyone.
#[utoipa::path(
    get,
    path = "/api/v1/health",
    tag = "gateway",
    responses((status = 200, description = "The gateway answers.", body = Health)),
    security(())
)]
async fn health(State(p): State<Arc<Plane>>) -> Json<Health> {
    let degraded = p.health.faults();
    Json(Health {
        status: if degraded.is_empty() { "ok" } else { "degraded" }.into(),
        degraded,
        activated: p.accounts.is_activated(),
        ready: p.ready.load(std::sync::atomic::Ordering::Acquire),
    })
}

/// The body of a refused activation.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ActivationErrorBody {
    pub error: String,
    /// The form field it is about: `code`, `gateway_name`, `timezone`,
    /// `admin_user`, `password`, a cache or cloud field, `cloud` for a
    /// failed connectivity test, `form` otherwise.
    pub field: String,
    /// A failed connectivity test: the step (`HEAD bucket`, `PUT object`,
    /// `GET object` or `DELETE object`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// A failed connectivity test: the likeliest cause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<ProbeCause>,
}

/// An activation refusal: the status, the message and the field it is
/// about (and for a connectivity failure, the step and cause).
pub fn activation_error_response(e: &ActivationError) -> Response {
    let status = match e {
        ActivationError::Field(f) if f.field == "code" => StatusCode::FORBIDDEN,
        ActivationError::Field(_) => StatusCode::BAD_REQUEST,
        ActivationError::Probe(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ActivationError::AlreadyActivated => StatusCode::CONFLICT,
        ActivationError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let (step, cause) = match e {
        ActivationError::Probe(p) => (Some(p.step.clone()), Some(p.cause)),
        _ => (None, None),
    };
    (status, Json(ActivationErrorBody { error: e.message(), field: e.field().to_string(), step, cause })).into_response()
}

/// Activates the gateway.
///
/// Claims an unactivated gateway with its activation code: names it, sets
/// the admin account and chooses the cloud store (an S3 target is tested
/// first). Open only while the gateway is unactivated.
#[utoipa::path(
    post,
    path = "/api/v1/activate",
    tag = "gateway",
    request_body = ActivationRequest,
    responses(
        (status = 201, description = "The gateway is activated.", body = Activated),
        (status = 400, description = "An invalid field (named in `field`), or a body that is not JSON (then `error` alone).", body = ActivationErrorBody),
        (status = 403, description = "Wrong activation code (`field` is `code`).", body = ActivationErrorBody),
        (status = 409, description = "The gateway is already activated.", body = ActivationErrorBody),
        (status = 422, description = "The S3 connectivity test failed (`step` and `cause` say where and why).", body = ActivationErrorBody),
        (status = 500, description = "The settings or the account could not be saved.", body = ActivationErrorBody),
    ),
    security(())
)]
async fn activate(
    State(p): State<Arc<Plane>>,
    Extension(peer): Extension<Peer>,
    body: Result<Json<ActivationRequest>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(r) => return bad_json(r),
    };
    match p.activate(req, Some(peer.ip())).await {
        Ok(done) => (StatusCode::CREATED, Json(done)).into_response(),
        Err(e) => activation_error_response(&e),
    }
}

/// The `Set-Cookie` of a new session: HttpOnly, SameSite=Strict, Secure
/// over HTTPS, gone when the absolute session limit is.
pub fn session_cookie(id: &str, peer: &Peer, max_age_secs: u64) -> HeaderValue {
    let secure = if peer.channel == Channel::Https { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{COOKIE_NAME}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"))
        .unwrap_or_else(|_| HeaderValue::from_static("sgw_session=; Path=/; Max-Age=0"))
}

pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("sgw_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub user: String,
    pub password: String,
}

/// The user only: the password must not reach logs.
impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login").field("user", &self.user).finish_non_exhaustive()
    }
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionInfo {
    pub user: String,
    /// Send it as `X-CSRF-Token` with every state-changing request.
    pub csrf: String,
}

/// Logs in to the console.
///
/// Starts a session: sets the `sgw_session` cookie and returns the CSRF
/// token its state-changing requests must carry.
#[utoipa::path(
    post,
    path = "/api/v1/login",
    tag = "session",
    request_body = Login,
    responses(
        (status = 200, description = "Logged in.", body = SessionInfo,
            headers(("Set-Cookie" = String, description = "`sgw_session=ID; Path=/; HttpOnly; SameSite=Strict` (and `Secure` over HTTPS)."))),
        (status = 400, description = "The body is not a login.", body = ErrorBody),
        (status = 401, description = "Wrong user or password.", body = ErrorBody),
        (status = 403, description = "The gateway is not activated.", body = ErrorBody),
    ),
    security(())
)]
async fn login(
    State(p): State<Arc<Plane>>,
    Extension(peer): Extension<Peer>,
    body: Result<Json<Login>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(r) => return bad_json(r),
    };
    match p.login(&req.user, &req.password, peer.ip()).await {
        Some((id, s)) => {
            let cookie = session_cookie(&id, &peer, p.sessions.absolute_secs());
            ([(header::SET_COOKIE, cookie)], Json(SessionInfo { user: s.user, csrf: s.csrf })).into_response()
        }
        None => json_error(StatusCode::UNAUTHORIZED, "wrong user or password"),
    }
}

/// Ends the console session, if the request has one, and clears its cookie.
#[utoipa::path(
    post,
    path = "/api/v1/logout",
    tag = "session",
    responses(
        (status = 204, description = "Logged out.",
            headers(("Set-Cookie" = String, description = "Clears `sgw_session`."))),
    ),
    security(("bearer_token" = []), ("session_cookie" = [], "csrf_token" = []))
)]
async fn logout(State(p): State<Arc<Plane>>, principal: Option<Extension<Principal>>) -> Response {
    if let Some(Extension(Principal::Session { id, .. })) = principal {
        p.sessions.destroy(&id);
    }
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear_cookie())]).into_response()
}

/// Who is asking.
///
/// The user, and the CSRF token of their session (empty for a bearer
/// token, which needs none).
#[utoipa::path(
    get,
    path = "/api/v1/session",
    tag = "session",
    responses((status = 200, description = "The user and the CSRF token.", body = SessionInfo)),
    security(("bearer_token" = []), ("session_cookie" = []))
)]
async fn session(State(p): State<Arc<Plane>>, Extension(principal): Extension<Principal>) -> Json<SessionInfo> {
    let user = match &principal {
        Principal::Session { session, .. } => session.user.clone(),
        _ => p.accounts.admin_user().unwrap_or_default(),
    };
    Json(SessionInfo { user, csrf: principal.csrf().to_string() })
}

/// `GET /api/v1/gateway`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GatewayInfo {
    pub name: String,
    pub timezone: String,
    pub activated_unix: u64,
    pub version: String,
    pub uptime_secs: u64,
    pub tls_fingerprint: Option<String>,
    #[schema(value_type = String)]
    pub master_key_path: std::path::PathBuf,
}

pub fn gateway_info(p: &Plane) -> GatewayInfo {
    let id = p.accounts.identity();
    GatewayInfo {
        name: id.as_ref().map(|i| i.name.clone()).unwrap_or_default(),
        timezone: id.as_ref().map(|i| i.timezone.clone()).unwrap_or_default(),
        activated_unix: id.map(|i| i.activated_unix).unwrap_or(0),
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_secs: p.started.elapsed().as_secs(),
        tls_fingerprint: p.tls_fingerprint.clone(),
        master_key_path: p.master_key_path.clone(),
    }
}

/// The gateway's identity, version, uptime and TLS fingerprint.
#[utoipa::path(
    get,
    path = "/api/v1/gateway",
    tag = "gateway",
    responses((status = 200, description = "The gateway.", body = GatewayInfo)),
    security(("bearer_token" = []), ("session_cookie" = []))
)]
async fn gateway(State(p): State<Arc<Plane>>) -> Json<GatewayInfo> {
    Json(gateway_info(&p))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub name: String,
}

/// A new token: the secret is shown this once.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenCreated {
    #[serde(flatten)]
    pub info: TokenInfo,
    pub token: String,
}

fn account_error(e: AccountError) -> Response {
    let status = match e {
        AccountError::Invalid(_) => StatusCode::BAD_REQUEST,
        AccountError::NoSuchToken(_) => StatusCode::NOT_FOUND,
        AccountError::WrongPassword => StatusCode::FORBIDDEN,
        AccountError::NotActivated => StatusCode::FORBIDDEN,
        AccountError::AlreadyActivated => StatusCode::CONFLICT,
        AccountError::Save { .. } | AccountError::Load { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    };
    json_error(status, &e.to_string())
}

/// The API tokens (never their secrets).
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "tokens",
    responses((status = 200, description = "Every API token.", body = Vec<TokenInfo>)),
    security(("bearer_token" = []), ("session_cookie" = []))
)]
async fn list_tokens(State(p): State<Arc<Plane>>) -> Json<Vec<TokenInfo>> {
    Json(p.accounts.list_tokens())
}

/// Creates an API token; its secret is in this answer only.
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "tokens",
    request_body = CreateToken,
    responses(
        (status = 201, description = "The token, with its secret.", body = TokenCreated),
        (status = 400, description = "An invalid name, or a body that is not a token request.", body = ErrorBody),
        (status = 500, description = "The accounts file could not be saved.", body = ErrorBody),
    ),
    security(("bearer_token" = []), ("session_cookie" = [], "csrf_token" = []))
)]
async fn create_token(
    State(p): State<Arc<Plane>>,
    Extension(principal): Extension<Principal>,
    body: Result<Json<CreateToken>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(r) => return bad_json(r),
    };
    match p.accounts.create_token(&req.name) {
        Ok((info, token)) => {
            tracing::info!(token = %info.id, name = %info.name, by = %principal.describe(), "API token created");
            (StatusCode::CREATED, Json(TokenCreated { info, token })).into_response()
        }
        Err(e) => account_error(e),
    }
}

/// Revokes an API token.
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    tag = "tokens",
    params(("id" = String, Path, description = "The token's id.")),
    responses(
        (status = 204, description = "The token is revoked."),
        (status = 404, description = "No such token.", body = ErrorBody),
        (status = 500, description = "The accounts file could not be saved.", body = ErrorBody),
    ),
    security(("bearer_token" = []), ("session_cookie" = [], "csrf_token" = []))
)]
async fn revoke_token(
    State(p): State<Arc<Plane>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    match p.accounts.revoke_token(&id) {
        Ok(()) => {
            tracing::info!(token = %id, by = %principal.describe(), "API token revoked");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => account_error(e),
    }
}

/// No `Debug`: both fields are passwords.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    /// Required except over the gateway's local socket (a reset by root).
    #[serde(default)]
    pub current_password: Option<String>,
    pub new_password: String,
}

/// Sets a new admin password; every console session ends.
pub async fn set_password(p: &Plane, principal: &Principal, req: ChangePassword) -> Result<(), AccountError> {
    if *principal != Principal::LocalRoot {
        let user = p.accounts.admin_user().unwrap_or_default();
        let current = req.current_password.unwrap_or_default();
        if !tokio::task::block_in_place(|| p.accounts.verify_password(&user, &current)) {
            return Err(AccountError::WrongPassword);
        }
    }
    check_password(&req.new_password)?;
    let new = req.new_password;
    let hash = tokio::task::block_in_place(|| hash_password(&new))?;
    p.accounts.set_password_hash(hash)?;
    p.sessions.destroy_all();
    tracing::warn!(by = %principal.describe(), "admin password changed; every console session ended");
    Ok(())
}

/// Sets a new admin password; every console session ends.
#[utoipa::path(
    post,
    path = "/api/v1/password",
    tag = "session",
    request_body = ChangePassword,
    responses(
        (status = 204, description = "The password is changed."),
        (status = 400, description = "The new password is not acceptable, or the body is not a password change.", body = ErrorBody),
        (status = 403, description = "Wrong current password.", body = ErrorBody),
        (status = 500, description = "The password could not be hashed or saved.", body = ErrorBody),
    ),
    security(("bearer_token" = []), ("session_cookie" = [], "csrf_token" = []))
)]
async fn change_password(
    State(p): State<Arc<Plane>>,
    Extension(principal): Extension<Principal>,
    body: Result<Json<ChangePassword>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(r) => return bad_json(r),
    };
    match set_password(&p, &principal, req).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => account_error(e),
    }
}

/// What an admin needs to read the bucket without this gateway.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecoveryKit {
    pub gateway_name: String,
    /// The master key, as in the key file.
    pub master_key: String,
    pub cloud: serde_json::Value,
    pub note: String,
}

/// The kit's contents: the key file and where the data is.
pub fn recovery_kit(p: &Plane) -> Result<RecoveryKit, String> {
    let key = std::fs::read_to_string(&p.master_key_path)
        .map_err(|e| format!("cannot read the master key {}: {e}", p.master_key_path.display()))?;
    let settings_text = std::fs::read_to_string(super::settings::ActivatedSettings::path(&p.data_dir)).unwrap_or_default();
    let settings: super::settings::ActivatedSettings = toml::from_str(&settings_text).unwrap_or_default();
    let cloud = match settings.cloud {
        Some(c) => match c.store {
            crate::cloud::store::StoreConfig::S3(s3) => serde_json::json!({
                "kind": "s3", "bucket": s3.bucket, "endpoint": s3.endpoint, "region": s3.region, "prefix": c.prefix,
            }),
            crate::cloud::store::StoreConfig::Local(l) => serde_json::json!({ "kind": "local", "root": l.root, "prefix": c.prefix }),
        },
        None => serde_json::json!({ "kind": "embedded", "root": p.data_dir.join("objects") }),
    };
    Ok(RecoveryKit {
        gateway_name: p.accounts.identity().map(|i| i.name).unwrap_or_default(),
        master_key: key.trim().to_string(),
        cloud,
        note: "Keep this apart from the gateway: with the bucket and prefix, the master key reads every volume, \
               snapshot and tape (sgw recover, sgw inspect, tests/format-reader.py). Without it nothing can be read."
            .into(),
    })
}

/// Downloads the recovery kit: the master key and where the data is.
///
/// Once over the network (a console session or an API token); root on the
/// gateway's host, over the socket, can always make it again.
#[utoipa::path(
    post,
    path = "/api/v1/recovery-kit",
    tag = "gateway",
    responses(
        (status = 200, description = "The kit, as a file to keep apart from the gateway.", body = RecoveryKit,
            headers(("Content-Disposition" = String, description = "`attachment; filename=\"sgw-recovery-kit.json\"`"))),
        (status = 410, description = "The kit was downloaded over the network already (when and by whom).", body = ErrorBody),
        (status = 500, description = "The master key could not be read.", body = ErrorBody),
    ),
    security(("bearer_token" = []), ("session_cookie" = [], "csrf_token" = []))
)]
async fn recovery_kit_handler(State(p): State<Arc<Plane>>, Extension(principal): Extension<Principal>) -> Response {
    let kit = match recovery_kit(&p) {
        Ok(kit) => kit,
        Err(e) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    };
    if !matches!(principal, Principal::LocalRoot) {
        match super::kit_download::claim(&p.data_dir, &principal.describe(), super::accounts::now_unix()) {
            Ok(()) => {}
            Err(super::kit_download::ClaimError::Taken(d)) => {
                tracing::warn!(by = %principal.describe(), "recovery kit refused: it went over the network already");
                return json_error(
                    StatusCode::GONE,
                    &format!(
                        "the recovery kit was downloaded on {} by {}; it goes over the network once. \
                         On the gateway's host, root can make it again: sgw admin recovery-kit --out FILE",
                        p.date_text(d.unix),
                        d.by
                    ),
                );
            }
            Err(super::kit_download::ClaimError::Io(e)) => {
                return json_error(StatusCode::INTERNAL_SERVER_ERROR, &format!("cannot record the kit's download: {e}"));
            }
        }
    }
    tracing::warn!(by = %principal.describe(), "recovery kit (master key) downloaded");
    (
        [(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"sgw-recovery-kit.json\""))],
        Json(kit),
    )
        .into_response()
}
