//! Helpers for the end-to-end tests: start the `sgw` daemon on loopback with
//! a scratch data directory, create volumes through its API, and run the
//! real initiators (libiscsi's tools, qemu-img, qemu-io) against it.
//!
//! Every process a test starts is stopped by its PID when the handle drops.

pub mod libiscsi;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use tempfile::TempDir;

/// Polls `check` every 200 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    check()
}

/// A script of `tests/python`.
pub fn python_script(name: &str) -> String {
    format!("{}/python/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Skips (returns false), or fails under SGW_REQUIRE_PEERS, saying `why`.
pub fn skip(why: &str) -> bool {
    if std::env::var_os("SGW_REQUIRE_PEERS").is_some() {
        panic!("{why}");
    }
    eprintln!("SKIPPING: {why}");
    false
}

/// Whether the Python SCSI client (`tests/python/sgw_scsi.py`: python3 and
/// libiscsi.so.7) can run; a test without it skips.
pub fn have_scsi_client() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import ctypes; ctypes.CDLL('libiscsi.so.7')"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok || skip("python3 with libiscsi.so.7 is required (run tests/scripts/install-deps.sh)")
}

/// The `sgw` binary under test: `$SGW_BIN`, or the one next to the test
/// executable's build directory.
pub fn sgw_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SGW_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/sgw
    let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
    profile_dir.join("sgw")
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// Fails the test when a peer tool is missing and the run requires peers
/// (CI sets SGW_REQUIRE_PEERS); otherwise says so and returns false.
pub mod s3;

pub fn have_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        if std::env::var_os("SGW_REQUIRE_PEERS").is_some() {
            panic!("{tool} is required (run tests/scripts/install-deps.sh)");
        }
        eprintln!("SKIPPING: {tool} not installed (run tests/scripts/install-deps.sh)");
    }
    found
}

/// Extra flags and environment for `sgw serve`.
#[derive(Debug, Clone, Default)]
pub struct GatewayOptions {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Leave a fresh gateway unactivated (by default the harness claims it
    /// with `--activate-from`, as automation would).
    pub unactivated: bool,
}

/// The admin password the harness activates gateways with.
pub const ADMIN_PASSWORD: &str = "harness-admin-password";

impl GatewayOptions {
    pub fn args(args: &[&str]) -> GatewayOptions {
        GatewayOptions { args: args.iter().map(|a| a.to_string()).collect(), ..Default::default() }
    }

    /// A gateway that waits for an admin to claim it.
    pub fn unactivated() -> GatewayOptions {
        GatewayOptions { unactivated: true, ..Default::default() }
    }
}

/// A running `sgw serve`.
pub struct Gateway {
    child: Option<Child>,
    options: GatewayOptions,
    pub data_dir: PathBuf,
    pub iscsi_port: u16,
    pub api_port: u16,
    /// The console's HTTPS port.
    pub https_port: u16,
    /// An API token made over the gateway's socket (empty while
    /// unactivated).
    pub token: String,
    _tmp: Option<TempDir>,
    log: PathBuf,
}

impl Gateway {
    /// Starts a gateway on a fresh scratch data directory and free ports.
    pub fn start() -> Gateway {
        Gateway::start_with(GatewayOptions::default())
    }

    /// Like [`Gateway::start`], with extra flags and environment.
    pub fn start_with(options: GatewayOptions) -> Gateway {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        // A port found free can be taken (by an outgoing connection of a
        // test running alongside) before the daemon binds it: try others.
        for _ in 0..5 {
            if let Some(mut g) = Gateway::try_start(&dir, free_port(), free_port(), &options) {
                g._tmp = Some(tmp);
                return g;
            }
        }
        panic!("sgw could not start on free ports");
    }

    /// Starts a gateway on an existing data directory and ports.
    pub fn start_in(data_dir: &Path, iscsi_port: u16, api_port: u16) -> Gateway {
        Gateway::start_in_with(data_dir, iscsi_port, api_port, GatewayOptions::default())
    }

    /// Starts a gateway on an existing data directory and ports with extra
    /// flags and environment.
    pub fn start_in_with(data_dir: &Path, iscsi_port: u16, api_port: u16, options: GatewayOptions) -> Gateway {
        for _ in 0..5 {
            if let Some(g) = Gateway::try_start(data_dir, iscsi_port, api_port, &options) {
                return g;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("sgw could not start on ports {iscsi_port} and {api_port}");
    }

    /// Starts the daemon; `None` if it exited before becoming ready (its
    /// ports were taken).
    fn try_start(data_dir: &Path, iscsi_port: u16, api_port: u16, options: &GatewayOptions) -> Option<Gateway> {
        let log = data_dir.with_extension(format!("log.{}", rand::random::<u32>()));
        let logfile = std::fs::File::create(&log).expect("log file");
        let https_port = free_port();
        let mut cmd = Command::new(sgw_bin());
        cmd.args(["serve", "--data-dir"])
            .arg(data_dir)
            .args(["--iscsi-listen", &format!("127.0.0.1:{iscsi_port}")])
            .args(["--api-listen", &format!("127.0.0.1:{api_port}")])
            .args(["--https-listen", &format!("127.0.0.1:{https_port}")])
            .args(&options.args)
            .env("RUST_LOG", "info")
            .stdout(logfile.try_clone().expect("log"))
            .stderr(logfile);
        if !options.args.iter().any(|a| a == "--cache-size") {
            // Reserved at start (fallocate), so each running gateway takes
            // 4 GiB of the scratch file system; tests that need a small
            // cache say so.
            cmd.args(["--cache-size", "4GiB"]);
        }
        if !options.args.iter().any(|a| a == "--iscsi-access") {
            // Most tests log in with whatever initiator name their tool
            // picks; the access-control tests pass their own policy.
            cmd.args(["--iscsi-access", "open"]);
        }
        for (k, v) in &options.env {
            cmd.env(k, v);
        }
        if !options.unactivated {
            std::fs::create_dir_all(data_dir).expect("data dir");
            let file = data_dir.join("test-activate.json");
            let body = serde_json::json!({
                "gateway_name": "test-gw",
                "admin_user": "admin",
                "admin_password": ADMIN_PASSWORD,
            });
            std::fs::write(&file, body.to_string()).expect("activation file");
            cmd.arg("--activate-from").arg(&file);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", sgw_bin().display()));
        let mut g = Gateway {
            child: Some(child),
            options: options.clone(),
            data_dir: data_dir.to_path_buf(),
            iscsi_port,
            api_port,
            https_port,
            token: String::new(),
            _tmp: None,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let health = ureq::get(&format!("{}/api/v1/health", g.api())).call().ok().and_then(|r| r.into_json::<serde_json::Value>().ok());
            if let Some(h) = health {
                if options.unactivated && h["activated"] == false {
                    return Some(g);
                }
                if h["ready"] == true {
                    g.token = g.api_token();
                    return Some(g);
                }
            }
            if let Some(c) = g.child.as_mut() {
                if let Ok(Some(_)) = c.try_wait() {
                    eprintln!("sgw exited at start:\n{}", g.log_text());
                    g.child = None;
                    return None;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("sgw did not become ready; log:\n{}", g.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The flags and environment this gateway was started with (to restart
    /// it the same way).
    pub fn options(&self) -> GatewayOptions {
        self.options.clone()
    }

    /// Fetches `/metrics` and returns the value of the first sample whose
    /// line starts with `series` (name plus labels, e.g.
    /// `sgw_volume_read_bytes_total{volume="v"}`).
    pub fn metric(&self, series: &str) -> Option<f64> {
        let text = ureq::get(&format!("{}/metrics", self.api())).call().ok()?.into_string().ok()?;
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
    }

    pub fn api(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// The console's HTTPS URL.
    pub fn console(&self) -> String {
        format!("https://127.0.0.1:{}", self.https_port)
    }

    /// The `--api` of the gateway's own socket.
    pub fn socket_api(&self) -> String {
        format!("unix:{}", self.data_dir.join("sgw.sock").display())
    }

    /// A token for this data directory: made once over the socket and kept
    /// beside the data, so restarts reuse it.
    fn api_token(&self) -> String {
        let file = self.data_dir.join("test-token");
        if let Ok(t) = std::fs::read_to_string(&file) {
            return t.trim().to_string();
        }
        let out = self.cli(&["token", "create", "tests"]);
        assert!(out.status.success(), "token create: {}", text(&out));
        let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
        std::fs::write(&file, &token).expect("token file");
        // A credential, kept the way the gateway keeps its own files.
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("token mode");
        token
    }

    fn with_token(&self, r: ureq::Request) -> ureq::Request {
        r.set("authorization", &format!("Bearer {}", self.token))
    }

    /// An authenticated API request (path from `/api/...`).
    pub fn get(&self, path: &str) -> ureq::Request {
        self.with_token(ureq::get(&format!("{}{path}", self.api())))
    }

    pub fn post(&self, path: &str) -> ureq::Request {
        self.with_token(ureq::post(&format!("{}{path}", self.api())))
    }

    pub fn put(&self, path: &str) -> ureq::Request {
        self.with_token(ureq::put(&format!("{}{path}", self.api())))
    }

    pub fn patch(&self, path: &str) -> ureq::Request {
        self.with_token(ureq::request("PATCH", &format!("{}{path}", self.api())))
    }

    pub fn delete(&self, path: &str) -> ureq::Request {
        self.with_token(ureq::delete(&format!("{}{path}", self.api())))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).expect("running")
    }

    /// Runs the `sgw` CLI against this gateway.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(sgw_bin()).arg("--api").arg(self.socket_api()).args(args).output().expect("run sgw cli")
    }

    /// Creates a volume through the API; returns its target IQN.
    pub fn create_volume(&self, name: &str, size_bytes: u64) -> String {
        self.create_volume_json(serde_json::json!({ "name": name, "size_bytes": size_bytes }))
    }

    pub fn create_volume_json(&self, body: serde_json::Value) -> String {
        let r = self
            .post("/api/v1/volumes")
            .send_json(body)
            .unwrap_or_else(|e| panic!("create volume: {e}"));
        let v: serde_json::Value = r.into_json().expect("json");
        v["target_iqn"].as_str().expect("target_iqn").to_string()
    }

    /// The libiscsi URL of LUN 0 of a target, optionally with CHAP.
    pub fn url(&self, iqn: &str) -> String {
        format!("iscsi://127.0.0.1:{}/{}/0", self.iscsi_port, iqn)
    }

    pub fn url_chap(&self, iqn: &str, user: &str, secret: &str) -> String {
        format!("iscsi://{user}%{secret}@127.0.0.1:{}/{}/0", self.iscsi_port, iqn)
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child by PID.
            unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (bounded) for a clean exit; returns its success.
    pub fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else { return true };
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Runs a command to completion with a time bound, returning its output.
pub fn run(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            // SAFETY: signalling the child we started, by its PID.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("{cmd:?} did not finish within {limit:?}");
        }
    }
}

/// stdout and stderr of an output, for assertion messages.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}
