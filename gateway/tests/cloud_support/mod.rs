//! Shared by the cloud integration tests: S3 peers on loopback (moto and
//! `rclone serve s3`, started and stopped by PID), the backends under test,
//! and test data.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::cloud::store::{LocalStore, S3Config, S3Store};
use gateway::cloud::ObjectStore;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const BUCKET: &str = "sgw-test";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free loopback port")
}

fn find_binary(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// The binary, or `None` after a loud message when it is missing and the
/// run does not require the peers (CI sets SGW_REQUIRE_S3_PEERS).
pub fn peer_binary(name: &str) -> Option<PathBuf> {
    let found = find_binary(name);
    if found.is_none() {
        if std::env::var_os("SGW_REQUIRE_S3_PEERS").is_some() {
            panic!("{name} not found on PATH and SGW_REQUIRE_S3_PEERS is set; run tests/install-python-deps.sh");
        }
        // Straight to the stream: the test harness hides eprintln! output of
        // passing tests, and a skip must not go unnoticed.
        let message = format!("\n!!!!!!!! SKIPPING: {name} is not installed (run tests/install-python-deps.sh) !!!!!!!!\n\n");
        let _ = std::io::Write::write_all(&mut std::io::stderr(), message.as_bytes());
    }
    found
}

/// A server process, killed by its PID when dropped.
pub struct Peer {
    pub name: &'static str,
    pub endpoint: String,
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(
    name: &'static str,
    program: &Path,
    args: &[&str],
    port: u16,
    dir: tempfile::TempDir,
) -> Peer {
    let log = std::fs::File::create(dir.path().join("server.log")).expect("server log");
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let peer = Peer {
        name,
        endpoint: format!("http://127.0.0.1:{port}"),
        port,
        child,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{name} did not listen on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    peer
}

/// `moto_server` with an empty bucket.
pub async fn start_moto() -> Option<Peer> {
    let program = peer_binary("moto_server")?;
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let peer = spawn(
        "moto",
        &program,
        &["-H", "127.0.0.1", "-p", &port.to_string()],
        port,
        dir,
    );
    // moto does not check signatures, so a bare HTTP request makes the bucket.
    let status = raw_http(port, &format!("PUT /{BUCKET} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")).await;
    assert!(
        status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200"),
        "create bucket: {status}"
    );
    Some(peer)
}

/// `rclone serve s3` over a directory; the bucket is a subdirectory.
pub fn start_rclone() -> Option<Peer> {
    let program = peer_binary("rclone")?;
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("data");
    std::fs::create_dir_all(root.join(BUCKET)).expect("bucket dir");
    let addr = format!("127.0.0.1:{port}");
    let root = root.to_string_lossy().into_owned();
    let args = [
        "serve",
        "s3",
        "--addr",
        &addr,
        "--auth-key",
        "testing,testing",
        "--etag-hash",
        "MD5",
        "--config",
        "/dev/null",
        &root,
    ];
    Some(spawn("rclone", &program, &args, port, dir))
}

async fn raw_http(port: u16, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("receive");
    String::from_utf8_lossy(&response).into_owned()
}

pub async fn s3_store(endpoint: &str) -> Arc<dyn ObjectStore> {
    Arc::new(
        S3Store::connect(&S3Config::with_endpoint(
            BUCKET, endpoint, "testing", "testing",
        ))
        .await,
    )
}

pub fn local_store(dir: &Path, restore_delay: Duration) -> Arc<dyn ObjectStore> {
    Arc::new(LocalStore::open(dir, restore_delay).expect("local store"))
}

pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill(&mut data[..]);
    data
}

/// Log-like text: compresses about 3-5:1 with zstd level 1.
pub fn text_bytes(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "volume",
        "snapshot",
        "upload",
        "chunk",
        "gateway",
        "tape",
        "archive",
        "restore",
        "error",
        "info",
        "warning",
        "cache",
        "dirty",
        "clean",
        "bucket",
        "request",
        "latency",
        "bytes",
        "session",
        "target",
        "initiator",
        "backup",
        "job",
        "completed",
        "started",
        "the",
        "a",
        "of",
        "to",
        "in",
        "for",
        "with",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(len + 64);
    while out.len() < len {
        let line = format!(
            "2026-11-{:02}T{:02}:{:02}:{:02}Z {} {} {} {} id={} n={}\n",
            rng.gen_range(1..29),
            rng.gen_range(0..24),
            rng.gen_range(0..60),
            rng.gen_range(0..60),
            WORDS[rng.gen_range(0..WORDS.len())],
            WORDS[rng.gen_range(0..WORDS.len())],
            WORDS[rng.gen_range(0..WORDS.len())],
            WORDS[rng.gen_range(0..WORDS.len())],
            rng.gen_range(0..10_000),
            rng.gen_range(0..1_000_000),
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(len);
    out
}
