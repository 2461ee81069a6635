//! Hardening seen from outside: what another local user can read, what a
//! second start says, how the daemon holds up under idle connections, and
//! what an admin is told when a request cannot be done.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sgw_tests::{free_port, have_scsi_client, have_tool, python_script, run, text, Gateway, GatewayOptions};

/// Every path under `root`, symbolic links excepted.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(p) = pending.pop() {
        let meta = std::fs::symlink_metadata(&p).expect("stat");
        if meta.file_type().is_symlink() {
            continue;
        }
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).expect("read_dir") {
                pending.push(e.expect("entry").path());
            }
        }
        out.push(p);
    }
    out
}

/// Runs `cat FILE` as the unprivileged user `nobody`.
fn read_as_nobody(file: &Path) -> (bool, String) {
    let out = run(
        Command::new("setpriv").args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "cat"]).arg(file),
        Duration::from_secs(10),
    );
    (out.status.success(), text(&out))
}

#[test]
fn volume_data_and_indexes_are_unreadable_by_other_users() {
    if !have_tool("qemu-io") || !have_tool("setpriv") {
        return;
    }
    // A layout another user could walk: world-traversable parents, a data
    // directory and a file left loose by an older version, and the cache
    // disk outside the data directory.
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let data = tmp.path().join("data");
    let disks = tmp.path().join("disks");
    for d in [&data, &disks] {
        std::fs::create_dir(d).expect("mkdir");
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let leftover = data.join("left-by-an-old-version.json");
    std::fs::write(&leftover, b"{}").expect("write");
    std::fs::set_permissions(&leftover, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let cache_disk = disks.join("cache0.img");
    let config = disks.join("sgw.toml");
    std::fs::write(&config, format!("cache_disk = \"{}\"\n", cache_disk.display())).expect("config");

    let gw = Gateway::start_in_with(&data, free_port(), free_port(), GatewayOptions::args(&["--config", &config.to_string_lossy()]));
    let cached = gw.create_volume("private-cached", 16 << 20);
    let local = gw.create_volume_json(serde_json::json!({ "name": "private-local", "size_bytes": 16 << 20, "kind": "local" }));
    for iqn in [&cached, &local] {
        let out = run(Command::new("qemu-io").args(["-f", "raw", "-c", "write -P 0x5a 0 64k", "-c", "flush"]).arg(gw.url(iqn)), Duration::from_secs(60));
        assert!(out.status.success(), "{}", text(&out));
    }

    let mut files = walk(&data);
    files.push(cache_disk.clone());
    for p in &files {
        let mode = std::fs::symlink_metadata(p).expect("stat").mode() & 0o7777;
        assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", p.display());
    }
    assert_eq!(std::fs::metadata(&data).expect("stat").mode() & 0o777, 0o700);
    let log = gw.log_text();
    assert!(log.contains("tightened to owner-only") && log.contains("left-by-an-old-version.json"), "{log}");

    let index_file = walk(&data.join("cache/index")).into_iter().find(|p| p.is_file()).expect("a RocksDB file");
    for file in [cache_disk.as_path(), &data.join("volumes/private-local.img"), &index_file, &data.join("master.key")] {
        assert!(file.exists(), "{} missing", file.display());
        let (ok, out) = read_as_nobody(file);
        assert!(!ok && out.contains("Permission denied"), "nobody read {}: {out}", file.display());
    }
}

#[test]
fn a_busy_port_fails_the_start_before_anything_is_written() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let out = run(
        Command::new(sgw_tests::sgw_bin())
            .args(["serve", "--data-dir"])
            .arg(&data)
            .args(["--api-listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--https-listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--iscsi-listen", &format!("127.0.0.1:{port}")]),
        Duration::from_secs(30),
    );
    let said = text(&out);
    assert!(!out.status.success() && said.contains(&format!("127.0.0.1:{port}")), "{said}");
    assert!(!data.exists(), "the failed start wrote {:?}", walk(&data));
}

/// Raises this process's open-file limit to its hard limit (the test
/// itself holds thousands of sockets).
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur as u64
}

#[test]
fn two_thousand_idle_api_sockets_lock_out_neither_health_nor_iscsi() {
    if !have_tool("iscsi-inq") {
        return;
    }
    assert!(raise_nofile() > 2_200, "this test needs an open-file hard limit above 2200");
    let gw = Gateway::start();
    let iqn = gw.create_volume("still-reachable", 16 << 20);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", gw.api_port).parse().expect("addr");
    let idle: Vec<std::net::TcpStream> = (0..2_000)
        .map(|i| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap_or_else(|e| panic!("socket {i}: {e}")))
        .collect();
    let started = std::time::Instant::now();
    let health = ureq::get(&format!("{}/api/v1/health", gw.api())).timeout(Duration::from_secs(10)).call().expect("health answers");
    assert_eq!(health.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(5), "health took {:?}", started.elapsed());
    let out = run(Command::new("iscsi-inq").arg(gw.url(&iqn)), Duration::from_secs(30));
    assert!(out.status.success(), "iSCSI login failed beside idle API sockets: {}", text(&out));
    // The daemon holds a bounded number of them, not 2,000.
    let fds = std::fs::read_dir(format!("/proc/{}/fd", gw.pid())).expect("proc fd").count();
    assert!(fds < 1_000, "the daemon holds {fds} descriptors");
    drop(idle);
}

/// A volume in use: deleting it is refused (409) naming the initiator; a
/// forced delete asks the session to log out (AsyncEvent 1), ends it after
/// the grace, and only then removes the volume, so the initiator's next
/// command fails cleanly instead of hanging.
#[test]
fn a_volume_in_use_is_deleted_only_by_force_which_logs_its_sessions_out() {
    if !have_scsi_client() {
        return;
    }
    let gw = Gateway::start();
    let iqn = gw.create_volume("busy", 16 << 20);
    let portal = format!("127.0.0.1:{}", gw.iscsi_port);
    let mut held = Command::new("python3")
        .arg(python_script("disk_io.py"))
        .args(["--portal", &portal, "--target", &iqn, "tur", "hold", "tur"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let stdout = held.stdout.take().expect("stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next_line = || lines.recv_timeout(Duration::from_secs(60)).expect("a line from disk_io.py");
    assert_eq!(next_line(), "tur: GOOD");
    assert_eq!(next_line(), "hold: logged in");

    let out = gw.cli(&["volume", "delete", "busy"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("in use by iqn.2026-01.test.sgw:pyclient"), "{}", text(&out));
    match gw.delete("/api/v1/volumes/busy").call() {
        Err(ureq::Error::Status(409, resp)) => {
            let body: serde_json::Value = resp.into_json().expect("json");
            assert!(body["error"].as_str().is_some_and(|m| m.contains("pyclient")), "{body}");
        }
        other => panic!("expected 409, got {other:?}"),
    }
    assert!(gw.cli(&["volume", "list", "--json"]).stdout.windows(6).any(|w| w == b"\"busy\""));

    let started = Instant::now();
    let out = gw.cli(&["volume", "delete", "busy", "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    // The grace is 3 s; the client here does not service its socket while
    // it waits on stdin, so the grace runs out and the session is ended.
    assert!(started.elapsed() < Duration::from_secs(15), "forced delete took {:?}", started.elapsed());
    let log = gw.log_text();
    assert!(log.contains("forced delete: logging out the initiators"), "{log}");
    assert!(log.contains("asking the initiator to log out"), "{log}");
    assert!(log.contains("session ended"), "{log}");

    held.stdin.take().expect("stdin").write_all(b"\n").expect("release the client");
    let after = next_line();
    assert!(after.starts_with("tur: ERROR"), "the session should be gone: {after}");
    let _ = held.wait();
    let list: serde_json::Value = serde_json::from_slice(&gw.cli(&["volume", "list", "--json"]).stdout).expect("json");
    assert_eq!(list, serde_json::json!([]));
}

/// Small findings of the review: a local volume larger than the
/// filesystem allows in one file is a 4xx and leaves no file; a deleted
/// local volume leaves no journal; a method a path lacks gets 405 with a
/// JSON message; the CLI explains bad sizes, an API URL without a scheme
/// and a gateway that is not running.
#[test]
fn oversize_volumes_stray_files_405_and_cli_errors_are_explained() {
    let gw = Gateway::start();
    let volumes_dir = gw.data_dir.join("volumes");
    let files = || -> Vec<String> {
        std::fs::read_dir(&volumes_dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    };
    // ext4 (this machine's /tmp) holds files of at most 16 TiB.
    let huge = serde_json::json!({"name": "huge", "size_bytes": 32u64 << 40, "kind": "local"});
    match gw.post("/api/v1/volumes").send_json(huge) {
        Err(ureq::Error::Status(code, resp)) => {
            let body: serde_json::Value = resp.into_json().expect("json");
            assert!((400..500).contains(&code), "{code} {body}");
            assert!(body["error"].as_str().is_some_and(|m| m.contains("larger than")), "{body}");
        }
        other => panic!("expected a 4xx, got {other:?}"),
    }
    assert!(!files().iter().any(|f| f.starts_with("huge")), "{:?}", files());

    let body = serde_json::json!({"name": "lab", "size_bytes": 1u64 << 20, "kind": "local"});
    gw.create_volume_json(body);
    assert!(files().iter().any(|f| f.starts_with("lab")), "{:?}", files());
    let out = gw.cli(&["volume", "delete", "lab"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!files().iter().any(|f| f.starts_with("lab")), "left behind: {:?}", files());

    match gw.put("/api/v1/volumes").call() {
        Err(ureq::Error::Status(405, resp)) => {
            assert!(resp.header("allow").is_some(), "405 without Allow");
            let body: serde_json::Value = resp.into_json().expect("a JSON body");
            assert!(body["error"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
        }
        other => panic!("expected 405, got {other:?}"),
    }

    for (size, says) in [("10XB", "10XB"), ("-1", "-1"), ("0", "0")] {
        let out = gw.cli(&["volume", "create", "bad", "--size", size]);
        assert!(!out.status.success() && text(&out).contains(says), "--size {size}: {}", text(&out));
    }
    let out = Command::new(sgw_tests::sgw_bin()).args(["--api", "127.0.0.1:8080", "volume", "list"]).output().expect("sgw");
    assert!(!out.status.success() && text(&out).contains("https://HOST:PORT"), "{}", text(&out));
    let closed = format!("http://127.0.0.1:{}", free_port());
    let out = Command::new(sgw_tests::sgw_bin()).args(["--api", &closed, "volume", "list"]).output().expect("sgw");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("is `sgw serve` running?") && text(&out).contains(&closed), "{}", text(&out));
}
