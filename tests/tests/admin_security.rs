//! The management plane's security against the real daemon: activation,
//! authentication on every route, Origin and Host checks, CSRF, tokens,
//! session expiry, the owner-only socket, and random input to the
//! mutating handlers.
//!
//! Requests are written by hand on a TCP socket so that the test controls
//! every header (Host, Origin, Cookie) exactly.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::{Duration, Instant};

use sgw_tests::{free_port, run, sgw_bin, text, Gateway, GatewayOptions, ADMIN_PASSWORD};

struct Answer {
    status: u16,
    headers: String,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// One HTTP/1.1 request on a fresh connection; `host` defaults to the
/// address itself.
fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("write");
    // A server refusing an oversized body may close before reading it all.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = headers.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Answer { status, headers: headers.to_string(), body: body.to_string() }
}

fn json_post(port: u16, path: &str, extra: &[(&str, &str)], body: &serde_json::Value) -> Answer {
    let mut h = vec![("Content-Type", "application/json")];
    h.extend_from_slice(extra);
    request(port, "POST", path, &h, body.to_string().as_bytes())
}

/// Logs in over the API; returns the cookie header value and CSRF token.
fn login(gw: &Gateway, password: &str) -> Option<(String, String)> {
    let a = json_post(gw.api_port, "/api/v1/login", &[], &serde_json::json!({"user": "admin", "password": password}));
    if a.status != 200 {
        return None;
    }
    let cookie = a.header("set-cookie")?.split(';').next()?.to_string();
    Some((cookie, a.json()["csrf"].as_str()?.to_string()))
}

#[test]
fn unactivated_gateway_serves_only_activation_and_slows_wrong_codes() {
    let gw = Gateway::start_with(GatewayOptions::unactivated());
    let port = gw.api_port;
    let health = request(port, "GET", "/api/v1/health", &[], b"");
    assert_eq!((health.status, health.json()["activated"].clone()), (200, serde_json::json!(false)));
    for (method, path) in [("GET", "/api/v1/volumes"), ("POST", "/api/v1/tapes"), ("GET", "/metrics"), ("GET", "/api/v1/gateway")] {
        let a = request(port, method, path, &[], b"");
        assert_eq!(a.status, 403, "{method} {path}: {}", a.body);
        assert_eq!(a.json()["error"], "gateway not activated", "{method} {path}");
    }
    // The code: owner-only on disk, shown by the CLI, in the log.
    let code_file = gw.data_dir.join("activation-code");
    assert_eq!(std::fs::metadata(&code_file).expect("code file").mode() & 0o777, 0o600);
    let code = std::fs::read_to_string(&code_file).expect("code").trim().to_string();
    assert!(code.chars().filter(char::is_ascii_alphanumeric).count() >= 20, "{code}");
    let out = Command::new(sgw_bin()).arg("activation-code").arg("--data-dir").arg(&gw.data_dir).output().expect("cli");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), code);
    assert!(gw.log_text().contains(&code), "the code is in the log");

    // Wrong codes: refused, logged with the client, and slowed down.
    let mut body = serde_json::json!({
        "code": "AAAAA-AAAAA-AAAAA-AAAAA-AAAAA",
        "gateway_name": "gw",
        "admin_user": "admin",
        "admin_password": "correct-horse-battery",
    });
    let mut took = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let a = json_post(port, "/api/v1/activate", &[], &body);
        took.push(t.elapsed());
        assert_eq!((a.status, a.json()["field"].clone()), (403, serde_json::json!("code")), "{}", a.body);
    }
    assert!(took[1] >= Duration::from_millis(450) && took[2] >= Duration::from_millis(900), "{took:?}");
    assert!(gw.log_text().contains("wrong activation code") && gw.log_text().contains("client=127.0.0.1"));

    // A short password names its field; the code survives the refusal.
    body["code"] = code.clone().into();
    body["admin_password"] = "short".into();
    let a = json_post(port, "/api/v1/activate", &[], &body);
    assert_eq!((a.status, a.json()["field"].clone()), (400, serde_json::json!("password")), "{}", a.body);
    body["admin_password"] = "correct-horse-battery".into();
    let a = json_post(port, "/api/v1/activate", &[], &body);
    assert_eq!(a.status, 201, "{}", a.body);
    assert!(!gw.log_text().contains("correct-horse-battery"), "the password never reaches the log");
    assert!(!code_file.exists(), "the code expires once used");
    // Claimed: activation is closed like any other route.
    let a = json_post(port, "/api/v1/activate", &[], &body);
    assert_eq!(a.status, 401, "{}", a.body);
    let admin = std::fs::read_to_string(gw.data_dir.join("admin.json")).expect("admin.json");
    assert!(admin.contains("$argon2id$") && !admin.contains("correct-horse-battery"));
    assert_eq!(std::fs::metadata(gw.data_dir.join("admin.json")).expect("meta").mode() & 0o777, 0o600);
    // Once ready, everything else needs credentials.
    let deadline = Instant::now() + Duration::from_secs(30);
    while request(port, "GET", "/api/v1/health", &[], b"").json()["ready"] != true {
        assert!(Instant::now() < deadline, "not ready after activation");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(request(port, "GET", "/api/v1/volumes", &[], b"").status, 401);
}

/// Every route the OpenAPI document lists, with its path parameters
/// filled in.
fn documented_routes(gw: &Gateway) -> Vec<(String, String)> {
    let doc: serde_json::Value = gw.get("/api/v1/openapi.json").call().expect("openapi").into_json().expect("json");
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let concrete: String =
            path.split('/').map(|seg| if seg.starts_with('{') { "x" } else { seg }).collect::<Vec<_>>().join("/");
        for method in item.as_object().expect("path item").keys() {
            if ["get", "post", "delete", "put", "patch"].contains(&method.as_str()) {
                routes.push((method.to_uppercase(), concrete.clone()));
            }
        }
    }
    assert!(routes.len() >= 20, "{routes:?}");
    routes
}

#[test]
fn every_route_but_health_and_metrics_needs_credentials() {
    let gw = Gateway::start();
    let port = gw.api_port;
    for (method, path) in documented_routes(&gw) {
        let a = request(port, &method, &path, &[("Content-Type", "application/json")], b"{}");
        let open = matches!(path.as_str(), "/api/v1/health" | "/metrics" | "/api/v1/login");
        if open {
            assert_ne!(a.status, 401, "{method} {path} should be open");
        } else {
            assert_eq!(a.status, 401, "{method} {path} without credentials: {}", a.body);
        }
        // A wrong token is no better.
        if !open {
            let a = request(port, &method, &path, &[("Authorization", "Bearer sgw_0000")], b"");
            assert_eq!(a.status, 401, "{method} {path} with a wrong token");
        }
    }
    // Console pages send a browser to the login page instead.
    for page in ["/dashboard", "/volumes", "/snapshots", "/tapes", "/library", "/cloud", "/settings", "/events"] {
        let a = request(port, "GET", page, &[], b"");
        assert_eq!((a.status, a.header("location")), (303, Some("/login".to_string())), "{page}");
    }
    let a = request(port, "POST", "/volumes", &[("Content-Type", "application/x-www-form-urlencoded")], b"name=x");
    assert_eq!(a.status, 401);
}

#[test]
fn sessions_csrf_origin_host_and_logout() {
    let gw = Gateway::start();
    let port = gw.api_port;
    assert!(login(&gw, "not-the-password!").is_none(), "a wrong password is refused");
    let (cookie, csrf) = login(&gw, ADMIN_PASSWORD).expect("login");
    let vol = serde_json::json!({"name": "s1", "size_bytes": 1 << 20, "kind": "local"});
    // State changes need the session's CSRF token, in a header or a form field.
    let a = json_post(port, "/api/v1/volumes", &[("Cookie", &cookie)], &vol);
    assert_eq!(a.status, 403, "no CSRF token: {}", a.body);
    let a = json_post(port, "/api/v1/volumes", &[("Cookie", &cookie), ("X-CSRF-Token", "wrong")], &vol);
    assert_eq!(a.status, 403, "wrong CSRF token");
    let form = [("Cookie", cookie.as_str()), ("Content-Type", "application/x-www-form-urlencoded")];
    let a = request(port, "POST", "/volumes", &form, b"name=f1&size=1MiB&kind=local");
    assert_eq!(a.status, 403, "form without csrf: {}", a.body);
    let good = format!("name=f1&size=1MiB&kind=local&csrf={csrf}");
    let a = request(port, "POST", "/volumes", &form, good.as_bytes());
    assert_eq!((a.status, a.header("location")), (303, Some("/volumes".into())), "{}", a.body);
    // A foreign Origin or Referer is refused even with the token.
    let with_token = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())];
    let mut h = with_token.to_vec();
    h.push(("Origin", "https://evil.example"));
    assert_eq!(json_post(port, "/api/v1/volumes", &h, &vol).status, 403);
    let mut h = with_token.to_vec();
    h.push(("Referer", "http://evil.example/page"));
    assert_eq!(json_post(port, "/api/v1/volumes", &h, &vol).status, 403);
    let own_origin = format!("http://127.0.0.1:{port}");
    let mut h = with_token.to_vec();
    h.push(("Origin", own_origin.as_str()));
    let a = json_post(port, "/api/v1/volumes", &h, &vol);
    assert_eq!(a.status, 201, "{}", a.body);
    // DNS rebinding: a Host that is not the gateway's is refused.
    let a = request(port, "GET", "/api/v1/volumes", &[("Cookie", &cookie), ("Host", "evil.example")], b"");
    assert_eq!(a.status, 421, "{}", a.body);
    let a = request(port, "GET", "/api/v1/health", &[("Host", "rebind.evil.example:8080")], b"");
    assert_eq!(a.status, 421);
    assert_eq!(request(port, "GET", "/api/v1/volumes", &[("Host", &format!("localhost:{port}")), ("Cookie", &cookie)], b"").status, 200);
    // The cookie is HttpOnly and SameSite=Strict.
    let a = json_post(port, "/api/v1/login", &[], &serde_json::json!({"user": "admin", "password": ADMIN_PASSWORD}));
    let set = a.header("set-cookie").expect("cookie");
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    // Logout ends the session on the server: the old cookie is refused.
    let a = request(port, "POST", "/api/v1/logout", &with_token, b"");
    assert_eq!(a.status, 204);
    assert_eq!(request(port, "GET", "/api/v1/volumes", &[("Cookie", &cookie)], b"").status, 401);
}

#[test]
fn tokens_are_revocable_and_sessions_expire() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("short-sessions.toml");
    std::fs::write(&config, "session_idle_timeout_secs = 2\n").expect("config");
    let gw = Gateway::start_with(GatewayOptions::args(&["--config", &config.to_string_lossy()]));
    let port = gw.api_port;
    let (cookie, csrf) = login(&gw, ADMIN_PASSWORD).expect("login");
    let h = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())];
    let a = json_post(port, "/api/v1/tokens", &h, &serde_json::json!({"name": "ci"}));
    assert_eq!(a.status, 201, "{}", a.body);
    let (id, token) = (a.json()["id"].as_str().expect("id").to_string(), a.json()["token"].as_str().expect("token").to_string());
    let bearer = format!("Bearer {token}");
    assert_eq!(request(port, "GET", "/api/v1/volumes", &[("Authorization", &bearer)], b"").status, 200);
    let listed = request(port, "GET", "/api/v1/tokens", &[("Authorization", &bearer)], b"");
    assert!(listed.body.contains(&id) && !listed.body.contains(&token), "{}", listed.body);
    let a = request(port, "DELETE", &format!("/api/v1/tokens/{id}"), &h, b"");
    assert_eq!(a.status, 204, "{}", a.body);
    assert_eq!(request(port, "GET", "/api/v1/volumes", &[("Authorization", &bearer)], b"").status, 401, "revoked");
    // Idle for longer than the timeout: the session is gone.
    std::thread::sleep(Duration::from_millis(3200));
    assert_eq!(request(port, "GET", "/api/v1/volumes", &[("Cookie", &cookie)], b"").status, 401, "expired");
}

fn runs_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn only_the_owner_reaches_the_socket_and_root_resets_the_password() {
    let gw = Gateway::start();
    let sock = gw.data_dir.join("sgw.sock");
    assert_eq!(std::fs::metadata(&sock).expect("socket").mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&gw.data_dir).expect("data dir").mode() & 0o777, 0o700);
    let out = gw.cli(&["volume", "list", "--json"]);
    assert!(out.status.success(), "the owner needs no password: {}", text(&out));
    if runs_as_root() {
        let out = run(
            Command::new("runuser").args(["-u", "nobody", "--"]).arg(sgw_bin()).arg("--api").arg(gw.socket_api()).args(["volume", "list"]),
            Duration::from_secs(30),
        );
        assert!(!out.status.success() && text(&out).contains("ermission denied"), "nobody reached the socket: {}", text(&out));
    } else {
        eprintln!("not root: the check as user nobody needs runuser");
    }
    // Root on the box resets the admin password without the old one.
    let file = gw.data_dir.join("new-password");
    std::fs::write(&file, "a-brand-new-password\n").expect("file");
    let out = gw.cli(&["admin", "reset-password", "--password-file", &file.to_string_lossy()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(login(&gw, ADMIN_PASSWORD).is_none());
    assert!(login(&gw, "a-brand-new-password").is_some());
    // Tokens from the CLI work over plain HTTP; a revoked one does not.
    let out = gw.cli(&["token", "create", "script"]);
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let list = Command::new(sgw_bin())
        .args(["--api", &gw.api(), "volume", "list"])
        .env("SGW_TOKEN", &token)
        .output()
        .expect("cli");
    assert!(list.status.success(), "{}", text(&list));
    let no_token = Command::new(sgw_bin()).args(["--api", &gw.api(), "volume", "list"]).env_remove("SGW_TOKEN").output().expect("cli");
    assert!(!no_token.status.success() && text(&no_token).contains("authentication required"), "{}", text(&no_token));
}

#[test]
fn plain_http_listens_on_loopback_only() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = run(
        Command::new(sgw_bin())
            .args(["serve", "--data-dir"])
            .arg(tmp.path().join("d"))
            .args(["--api-listen", &format!("0.0.0.0:{}", free_port())])
            .args(["--https-listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--iscsi-listen", &format!("127.0.0.1:{}", free_port())]),
        Duration::from_secs(30),
    );
    assert!(!out.status.success() && text(&out).contains("not a loopback address"), "{}", text(&out));
}

/// A small deterministic generator of JSON values, biased towards the
/// fields the handlers know, with the wrong types and sizes.
struct JsonFuzz(u64);

impl JsonFuzz {
    fn next(&mut self) -> u64 {
        // xorshift64*: enough to spread the cases; the seed is printed.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn value(&mut self, depth: u32) -> serde_json::Value {
        use serde_json::json;
        const KEYS: [&str; 16] = [
            "name", "size_bytes", "kind", "chap", "from_snapshot", "from_volume", "removable", "volume", "barcode",
            "prefix", "count", "pool", "worm", "user", "secret", "new_password",
        ];
        match self.next() % if depth > 2 { 6 } else { 8 } {
            0 => json!(null),
            1 => json!(self.next() % 2 == 0),
            2 => json!([0u64, 1, 512, 1 << 20, 1 << 40, u64::MAX, 35 << 40][(self.next() % 7) as usize]),
            3 => json!(-((self.next() % 1000) as i64)),
            4 => {
                let len = [0usize, 1, 5, 63, 64, 300][(self.next() % 6) as usize];
                let chars = ["a", "Z", "0", "-", "_", "é", "\u{0}", "/", ".."];
                json!((0..len).map(|i| chars[(self.next() as usize + i) % chars.len()]).collect::<String>())
            }
            5 => json!(["cached", "local", "GLACIER", "DEEP_ARCHIVE", "tape", "AB", "TAPE0001", "snap-0"][(self.next() % 8) as usize]),
            6 => {
                let n = self.next() % 5;
                serde_json::Value::Array((0..n).map(|_| self.value(depth + 1)).collect())
            }
            _ => {
                let n = self.next() % 6;
                let mut m = serde_json::Map::new();
                for _ in 0..n {
                    let k = KEYS[(self.next() % KEYS.len() as u64) as usize];
                    m.insert(k.to_string(), self.value(depth + 1));
                }
                serde_json::Value::Object(m)
            }
        }
    }
}

#[test]
fn mutating_handlers_answer_random_json_with_4xx_never_5xx() {
    let gw = Gateway::start();
    let port = gw.api_port;
    let bearer = format!("Bearer {}", gw.token);
    let seed = std::env::var("SGW_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_0f_a11_u64);
    eprintln!("fuzz seed {seed} (replay with SGW_FUZZ_SEED={seed})");
    let mut fuzz = JsonFuzz(seed | 1);
    let posts = ["/api/v1/volumes", "/api/v1/snapshots", "/api/v1/tapes", "/api/v1/tokens", "/api/v1/password", "/api/v1/login"];
    let params = ["/api/v1/volumes/{}", "/api/v1/tapes/{}", "/api/v1/snapshots/{}", "/api/v1/tokens/{}"];
    let mut counts = std::collections::BTreeMap::<u16, u32>::new();
    for i in 0..400 {
        let (method, path, body): (&str, String, Vec<u8>) = match i % 5 {
            0..=2 => ("POST", posts[(fuzz.next() % posts.len() as u64) as usize].into(), fuzz.value(0).to_string().into_bytes()),
            3 => {
                let name = fuzz.value(3).to_string().replace(['"', '/', ' ', '?', '#', '%'], "");
                let path = params[(fuzz.next() % params.len() as u64) as usize].replace("{}", &name);
                ("DELETE", path, Vec::new())
            }
            _ => {
                let garbage: Vec<u8> = (0..(fuzz.next() % 64)).map(|_| fuzz.next() as u8).collect();
                ("POST", posts[(fuzz.next() % posts.len() as u64) as usize].into(), garbage)
            }
        };
        let a = request(port, method, &path, &[("Authorization", &bearer), ("Content-Type", "application/json")], &body);
        *counts.entry(a.status).or_default() += 1;
        assert!(
            (200..500).contains(&a.status) && a.status != 0,
            "{method} {path} {} -> {} {}",
            String::from_utf8_lossy(&body),
            a.status,
            a.body
        );
        if a.status >= 400 {
            assert!(a.json()["error"].as_str().is_some_and(|m| !m.is_empty()), "{method} {path}: no message: {}", a.body);
        }
    }
    // Oversized bodies are refused whole.
    let big = format!("{{\"name\":\"{}\",\"size_bytes\":1048576}}", "a".repeat(3 << 20));
    for path in posts {
        let a = request(port, "POST", path, &[("Authorization", &bearer), ("Content-Type", "application/json")], big.as_bytes());
        assert!((400..500).contains(&a.status), "{path} oversized -> {}", a.status);
    }
    eprintln!("statuses: {counts:?}");
    assert_eq!(request(port, "GET", "/api/v1/health", &[], b"").status, 200, "the daemon survived");
}

#[test]
fn remote_cli_over_https_pins_the_certificate() {
    let gw = Gateway::start();
    let info = gw.cli(&["gateway", "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).expect("gateway --json");
    let fingerprint = info["tls_fingerprint"].as_str().expect("fingerprint").to_string();
    let remote = |fp: &str, token: &str| {
        Command::new(sgw_bin())
            .args(["--api", &gw.console(), "volume", "list", "--json"])
            .env("SGW_TLS_FINGERPRINT", fp)
            .env("SGW_TOKEN", token)
            .output()
            .expect("cli")
    };
    let ok = remote(&fingerprint, &gw.token);
    assert!(ok.status.success(), "{}", text(&ok));
    let wrong_fp = fingerprint.replace(|c: char| c.is_ascii_hexdigit(), "0");
    let bad = remote(&wrong_fp, &gw.token);
    assert!(!bad.status.success() && text(&bad).contains("does not match"), "{}", text(&bad));
    let no_token = remote(&fingerprint, "");
    assert!(!no_token.status.success() && text(&no_token).contains("authentication required"), "{}", text(&no_token));
    // Without a pin or a CA the CLI refuses rather than trusting anything.
    let unpinned = Command::new(sgw_bin()).args(["--api", &gw.console(), "volume", "list"]).env_remove("SGW_TLS_FINGERPRINT").env_remove("SGW_CA_CERT").output().expect("cli");
    assert!(!unpinned.status.success() && text(&unpinned).contains("SGW_TLS_FINGERPRINT"), "{}", text(&unpinned));
}

#[test]
fn activation_tests_the_s3_target_then_runs_on_it() {
    let Some(moto) = sgw_tests::s3::Moto::start() else { return };
    let gw = Gateway::start_with(GatewayOptions::unactivated());
    let port = gw.api_port;
    let code = std::fs::read_to_string(gw.data_dir.join("activation-code")).expect("code").trim().to_string();
    let mut body = serde_json::json!({
        "code": code,
        "gateway_name": "s3-gw",
        "admin_user": "admin",
        "admin_password": "correct-horse-battery",
        "cloud": {"kind": "s3", "bucket": "no-such-bucket", "endpoint": moto.endpoint(), "region": "us-east-1",
                  "prefix": "site-a", "path_style": true, "access_key_id": "AKIDSGWTEST", "secret_access_key": "sekrit-value-1234"},
    });
    let a = json_post(port, "/api/v1/activate", &[], &body);
    assert_eq!(a.status, 422, "{}", a.body);
    let j = a.json();
    assert_eq!((j["field"].as_str(), j["step"].as_str(), j["cause"].as_str()), (Some("cloud"), Some("HEAD bucket"), Some("bucket_missing")), "{j}");
    assert!(!gw.log_text().contains("sekrit-value-1234"), "no secret in the log");
    body["cloud"]["bucket"] = sgw_tests::s3::BUCKET.into();
    let a = json_post(port, "/api/v1/activate", &[], &body);
    assert_eq!(a.status, 201, "{}", a.body);
    let deadline = Instant::now() + Duration::from_secs(30);
    while request(port, "GET", "/api/v1/health", &[], b"").json()["ready"] != true {
        assert!(Instant::now() < deadline, "not ready after activation:\n{}", gw.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    let settings = std::fs::read_to_string(gw.data_dir.join("gateway.toml")).expect("gateway.toml");
    assert!(settings.contains("kind = \"s3\"") && settings.contains("site-a"), "{settings}");
    assert_eq!(std::fs::metadata(gw.data_dir.join("gateway.toml")).expect("meta").mode() & 0o777, 0o600);
    // The gateway runs on the bucket it was given: a volume's catalog lands there.
    let out = gw.cli(&["volume", "create", "on-s3", "--size", "64MiB"]);
    assert!(out.status.success(), "{}", text(&out));
    let listing = ureq::get(&format!("{}/{}?list-type=2&prefix=site-a", moto.endpoint(), sgw_tests::s3::BUCKET))
        .call()
        .expect("list")
        .into_string()
        .expect("xml");
    assert!(listing.contains("<Key>site-a/"), "nothing under the prefix: {listing}");
}

#[test]
fn a_second_daemon_leaves_the_first_ones_socket_alone() {
    let gw = Gateway::start();
    let out = run(
        Command::new(sgw_bin())
            .args(["serve", "--data-dir"])
            .arg(&gw.data_dir)
            .args(["--api-listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--https-listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--iscsi-listen", &format!("127.0.0.1:{}", free_port())]),
        Duration::from_secs(30),
    );
    let said = text(&out);
    assert!(!out.status.success() && said.contains(&format!("in use by PID {}", gw.pid())), "{said}");
    let list = gw.cli(&["volume", "list"]);
    assert!(list.status.success(), "the first daemon's socket is gone: {}", text(&list));
}

#[test]
fn metrics_token_closes_metrics() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("metrics.toml");
    std::fs::write(&config, "metrics_token = \"scrape-secret-123\"\n").expect("config");
    let gw = Gateway::start_with(GatewayOptions::args(&["--config", &config.to_string_lossy()]));
    let port = gw.api_port;
    assert_eq!(request(port, "GET", "/metrics", &[], b"").status, 401);
    assert_eq!(request(port, "GET", "/metrics", &[("Authorization", "Bearer wrong")], b"").status, 401);
    let a = request(port, "GET", "/metrics", &[("Authorization", "Bearer scrape-secret-123")], b"");
    assert!(a.status == 200 && a.body.contains("sgw_volumes"), "{} {}", a.status, a.body);
    // The metrics token opens /metrics only.
    assert_eq!(request(port, "GET", "/api/v1/volumes", &[("Authorization", "Bearer scrape-secret-123")], b"").status, 401);
    assert_eq!(request(port, "GET", "/api/v1/health", &[], b"").status, 200);
}

/// The recovery kit holds the master key: it goes over the network once
/// (a second request gets 410 naming when and by whom), while root on the
/// gateway's host can always make it again over the socket.
#[test]
fn the_recovery_kit_goes_over_the_network_once() {
    let gw = Gateway::start();
    let port = gw.api_port;
    let (cookie, csrf) = login(&gw, ADMIN_PASSWORD).expect("login");
    let h = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())];
    let first = request(port, "POST", "/api/v1/recovery-kit", &h, b"");
    assert_eq!(first.status, 200, "{}", first.body);
    let key = std::fs::read_to_string(gw.data_dir.join("master.key")).expect("key file");
    assert_eq!(first.json()["master_key"].as_str(), Some(key.trim()), "the kit carries the key");
    let bearer = format!("Bearer {}", gw.token);
    for headers in [&h[..], &[("Authorization", bearer.as_str())][..]] {
        let again = request(port, "POST", "/api/v1/recovery-kit", headers, b"");
        assert_eq!(again.status, 410, "{}", again.body);
        let message = again.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(message.contains("downloaded on") && message.contains("session of admin"), "{message}");
        assert!(!again.body.contains(key.trim()), "no key in the refusal");
    }
    let record = gw.data_dir.join("recovery-kit-downloaded.json");
    assert_eq!(std::fs::metadata(&record).expect("record").mode() & 0o077, 0, "owner-only record");
    let out_file = gw.data_dir.join("kit-again.json");
    let out = gw.cli(&["admin", "recovery-kit", "--out", &out_file.to_string_lossy()]);
    assert!(out.status.success(), "root over the socket: {}", text(&out));
    assert!(std::fs::read_to_string(&out_file).expect("kit").contains(key.trim()));
    let settings = request(port, "GET", "/settings", &[("Cookie", cookie.as_str())], b"");
    assert!(settings.body.contains("recovery-kit-downloaded"), "the settings page says it went: {}", settings.body);
}
