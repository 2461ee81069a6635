//! The checks every management request passes before a handler runs:
//! the Host allowlist (DNS rebinding), the Origin check (cross-site
//! requests), activation, authentication (session, token or the local
//! socket) and the CSRF token of cookie sessions.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;

use super::http::{Channel, Peer};
use super::sessions::{Session, COOKIE_NAME};
use super::Plane;

/// Who is making a request, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The daemon's user (or root) on the gateway's host, over the socket.
    LocalRoot,
    /// A console session.
    Session { id: String, session: Session },
    /// An API token.
    Token { id: String },
}

impl Principal {
    /// The CSRF token forms must carry (empty for non-cookie principals).
    pub fn csrf(&self) -> &str {
        match self {
            Principal::Session { session, .. } => &session.csrf,
            _ => "",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Principal::LocalRoot => "local socket".into(),
            Principal::Session { session, .. } => format!("session of {}", session.user),
            Principal::Token { id } => format!("token {id}"),
        }
    }
}

/// Host names the management plane answers to.
pub struct HostAllowlist(BTreeSet<String>);

impl HostAllowlist {
    pub fn new<I: IntoIterator<Item = String>>(names: I) -> HostAllowlist {
        let mut set: BTreeSet<String> = names.into_iter().map(|n| n.to_ascii_lowercase()).collect();
        set.insert("localhost".into());
        set.insert("127.0.0.1".into());
        set.insert("::1".into());
        HostAllowlist(set)
    }

    /// Whether a `Host` header (`name[:port]`, `[v6]:port`) is one of ours.
    pub fn allows(&self, host: &str) -> bool {
        host_part(host).is_some_and(|h| self.0.contains(&h))
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.0.iter()
    }
}

/// The host of a `Host` value or an origin's authority, lower case,
/// without brackets or port.
fn host_part(authority: &str) -> Option<String> {
    let a: axum::http::uri::Authority = authority.parse().ok()?;
    let h = a.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    // A dotted name must not smuggle an address: "127.0.0.1.evil" is a
    // name, and names are matched exactly.
    if h.parse::<IpAddr>().is_ok() || !h.is_empty() {
        Some(h)
    } else {
        None
    }
}

/// A JSON error response.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// Gives an error answer that the router made without a body (axum's 405
/// for a method a path does not have, for one) the JSON `{"error"}` every
/// other error has, keeping its headers (`Allow`).
pub async fn explain_bare_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || response.headers().contains_key(header::CONTENT_TYPE) {
        return response;
    }
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed for this path".to_string(),
        other => other.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let explained = json_error(status, &message);
    parts.headers.extend(explained.headers().clone());
    Response::from_parts(parts, explained.into_body())
}

fn is_api(path: &str) -> bool {
    path.starts_with("/api/") || path == "/metrics"
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Paths anyone may reach, activated or not.
fn is_public(path: &str) -> bool {
    path == "/api/v1/health" || path.starts_with("/assets/")
}

/// Paths of the activation flow, open only while unactivated.
fn is_activation(path: &str) -> bool {
    matches!(path, "/" | "/activate" | "/api/v1/activate")
}

/// Paths that sign in, open once activated.
fn is_login(path: &str) -> bool {
    matches!(path, "/" | "/login" | "/api/v1/login")
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// The origin the request claims to come from (Origin, else Referer).
fn claimed_origin(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::ORIGIN).or_else(|| headers.get(header::REFERER))?;
    Some(value.to_str().unwrap_or("invalid").to_string())
}

/// Whether a claimed origin is this console itself: same scheme and host
/// as the request.
fn same_origin(origin: &str, host: &str, channel: Channel) -> bool {
    let Ok(uri) = origin.parse::<axum::http::Uri>() else { return false };
    let scheme_ok = match channel {
        Channel::Https => uri.scheme_str() == Some("https"),
        _ => matches!(uri.scheme_str(), Some("http") | Some("https")),
    };
    let Some(authority) = uri.authority() else { return false };
    scheme_ok && host_part(authority.as_str()) == host_part(host) && {
        // Ports must agree too when both say one.
        let ours: Option<axum::http::uri::Authority> = host.parse().ok();
        ours.and_then(|a| a.port_u16()) == authority.port_u16()
    }
}

fn refuse_unauthenticated(path: &str, method: &Method) -> Response {
    if !is_api(path) && is_safe(method) {
        Redirect::to("/login").into_response()
    } else {
        json_error(StatusCode::UNAUTHORIZED, "authentication required: log in, or send Authorization: Bearer TOKEN")
    }
}

const MAX_FORM_BYTES: usize = 1 << 20;

/// The `csrf` field of a urlencoded form body, and the body to hand on.
async fn form_csrf(req: Request) -> Result<(Option<String>, Request), Response> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| json_error(StatusCode::PAYLOAD_TOO_LARGE, "form body too large"))?;
    let token = form_urlencoded_field(&bytes, "csrf");
    Ok((token, Request::from_parts(parts, Body::from(bytes))))
}

fn form_urlencoded_field(body: &[u8], name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).ok()?;
    pairs.into_iter().find_map(|(k, v)| (k == name).then_some(v))
}

pub async fn guard(State(plane): State<Arc<Plane>>, mut req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<Peer>().copied().unwrap_or(Peer { channel: Channel::LoopbackHttp, addr: None });
    let path = req.uri().path().to_string();
    let method = req.method().clone();

    if peer.channel != Channel::LocalSocket {
        let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("").to_string();
        if !plane.hosts.allows(&host) {
            tracing::warn!(client = %peer.ip(), host = %host, path = %path, "refused a request for a host name that is not the gateway's");
            return json_error(StatusCode::MISDIRECTED_REQUEST, "unknown Host: use one of the gateway's names or addresses");
        }
        if let Some(origin) = claimed_origin(req.headers()) {
            if !same_origin(&origin, &host, peer.channel) {
                tracing::warn!(client = %peer.ip(), origin = %origin, path = %path, "refused a cross-origin request");
                return json_error(StatusCode::FORBIDDEN, "cross-origin request refused");
            }
        }
    }

    if is_public(&path) {
        return next.run(req).await;
    }
    let activated = plane.accounts.is_activated();
    if !activated {
        if is_activation(&path) {
            return next.run(req).await;
        }
        if !is_api(&path) && is_safe(&method) {
            return Redirect::to("/activate").into_response();
        }
        return json_error(StatusCode::FORBIDDEN, "gateway not activated");
    }
    if path == "/metrics" && plane.metrics_token.is_none() {
        return next.run(req).await;
    }
    if is_login(&path) {
        return next.run(req).await;
    }
    if path == "/activate" {
        return Redirect::to("/login").into_response();
    }

    let principal = if peer.channel == Channel::LocalSocket {
        Principal::LocalRoot
    } else if let Some(auth) = req.headers().get(header::AUTHORIZATION) {
        let bearer = auth.to_str().ok().and_then(|a| a.strip_prefix("Bearer ")).map(str::trim);
        let ok = bearer.and_then(|b| {
            if path == "/metrics" && plane.metrics_token.as_deref() == Some(b) {
                return Some(Principal::Token { id: "metrics".into() });
            }
            plane.accounts.verify_token(b).map(|t| Principal::Token { id: t.id })
        });
        match ok {
            Some(p) => p,
            None => {
                tracing::warn!(client = %peer.ip(), path = %path, "refused an invalid or revoked API token");
                return json_error(StatusCode::UNAUTHORIZED, "invalid or revoked token");
            }
        }
    } else if let Some(id) = cookie_value(req.headers(), COOKIE_NAME) {
        match plane.sessions.touch(&id) {
            Some(session) => Principal::Session { id, session },
            None => return refuse_unauthenticated(&path, &method),
        }
    } else {
        return refuse_unauthenticated(&path, &method);
    };
    if let Principal::Session { session, .. } = &principal {
        if !is_safe(&method) {
            let header_token = req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok()).map(str::to_string);
            let is_form = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
            let token = match header_token {
                Some(t) => Some(t),
                None if is_form => match form_csrf(req).await {
                    Ok((t, r)) => {
                        req = r;
                        t
                    }
                    Err(resp) => return resp,
                },
                None => None,
            };
            let valid = token.is_some_and(|t| {
                crate::admin::same_secret(t.as_bytes(), session.csrf.as_bytes())
            });
            if !valid {
                tracing::warn!(client = %peer.ip(), path = %path, "refused a request without the session's CSRF token");
                return json_error(StatusCode::FORBIDDEN, "missing or wrong CSRF token");
            }
        }
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let h = HostAllowlist::new(["gw.example".to_string(), "192.0.2.7".to_string()]);
        assert!(h.allows("gw.example:8443"));
        assert!(h.allows("GW.example"));
        assert!(h.allows("127.0.0.1:8080"));
        assert!(h.allows("[::1]:8443"));
        assert!(h.allows("192.0.2.7"));
        assert!(!h.allows("evil.example"));
        assert!(!h.allows("127.0.0.1.evil.example"));
        assert!(!h.allows(""));
    }

    #[test]
    fn origins() {
        assert!(same_origin("https://gw.example:8443", "gw.example:8443", Channel::Https));
        assert!(!same_origin("http://gw.example:8443", "gw.example:8443", Channel::Https));
        assert!(!same_origin("https://evil.example", "gw.example:8443", Channel::Https));
        assert!(!same_origin("https://gw.example:9999", "gw.example:8443", Channel::Https));
        assert!(same_origin("http://127.0.0.1:8080/volumes", "127.0.0.1:8080", Channel::LoopbackHttp));
        assert!(!same_origin("null", "127.0.0.1:8080", Channel::LoopbackHttp));
    }

    #[test]
    fn cookies_and_forms() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; sgw_session=abc; b=2".parse().unwrap());
        assert_eq!(cookie_value(&h, COOKIE_NAME), Some("abc".into()));
        assert_eq!(cookie_value(&h, "c"), None);
        assert_eq!(form_urlencoded_field(b"name=x&csrf=t%2B1", "csrf"), Some("t+1".into()));
        assert_eq!(form_urlencoded_field(b"name=x", "csrf"), None);
    }
}
