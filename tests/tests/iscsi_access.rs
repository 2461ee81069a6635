//! iSCSI access control (issue 14): initiator lists under the gateway's
//! `iscsi_access` policy, CHAP on the tape library, filtered and
//! authenticated discovery, logged and slowed login failures, and the
//! session limit. The initiators are libiscsi's tools with chosen names.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use sgw_tests::{have_tool, run, text, Gateway, GatewayOptions};

const HOST_A: &str = "iqn.2026-11.test:host-a";
const HOST_B: &str = "iqn.2026-11.test:host-b";
const USER: &str = "backup-host";
const SECRET: &str = "initiator-secret-1";
const CHANGER: &str = "iqn.2026-11.org.sgw:tape:changer";
const DRIVE_1: &str = "iqn.2026-11.org.sgw:tape:drive-01";

/// INQUIRY through a login as `initiator`; (logged in and answered, output).
fn inq_as(url: &str, initiator: &str) -> (bool, String) {
    let out = run(Command::new("iscsi-inq").args(["-i", initiator, url]), Duration::from_secs(30));
    (out.status.success(), text(&out))
}

/// SendTargets discovery as `initiator`: the target names listed.
fn discover(portal: &str, initiator: &str) -> (bool, Vec<String>, String) {
    let out = run(Command::new("iscsi-ls").args(["-i", initiator, portal]), Duration::from_secs(30));
    let all = text(&out);
    let names = all
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Target:"))
        .map(|rest| rest.split_whitespace().next().unwrap_or_default().to_string())
        .collect();
    (out.status.success(), names, all)
}

fn acl_required(extra: &[&str]) -> Gateway {
    let mut args = vec!["--iscsi-access", "acl-required"];
    args.extend_from_slice(extra);
    Gateway::start_with(GatewayOptions::args(&args))
}

/// A gateway with extra config-file keys (e.g. discovery CHAP, which has
/// no flag: secrets stay out of argv) and flags.
fn with_config(toml: &str, flags: &[&str]) -> (Gateway, sgw_tests::TempDir) {
    let dir = sgw_tests::TempDir::new().expect("tempdir");
    let file = dir.path().join("sgw.toml");
    std::fs::write(&file, toml).expect("config");
    let file = file.to_string_lossy().to_string();
    let mut args = vec!["--config", &file];
    args.extend_from_slice(flags);
    (Gateway::start_with(GatewayOptions::args(&args)), dir)
}

fn log_lines_with(gw: &Gateway, needles: &[&str]) -> usize {
    gw.log_text().lines().filter(|l| needles.iter().all(|n| l.contains(n))).count()
}

#[test]
fn unlisted_initiators_are_refused_and_changes_apply_at_the_next_login() {
    if !have_tool("iscsi-inq") {
        return;
    }
    let gw = acl_required(&[]);
    let listed = gw.create_volume_json(serde_json::json!({
        "name": "acl1", "size_bytes": 16 << 20, "initiators": [HOST_A]
    }));
    let unlisted = gw.create_volume("nolist", 16 << 20);

    let (ok, t) = inq_as(&gw.url(&listed), HOST_A);
    assert!(ok && t.contains("SGW"), "the listed initiator was refused: {t}");
    let (ok, t) = inq_as(&gw.url(&listed), HOST_B);
    assert!(!ok, "an unlisted initiator logged in: {t}");
    // libiscsi names the login status it got: 0202, authorization failure.
    assert!(t.to_ascii_lowercase().contains("authorization"), "not refused as unauthorized: {t}");
    assert_eq!(
        log_lines_with(&gw, &["WARN", "login refused", HOST_B, "127.0.0.1:", "acl1"]),
        1,
        "no log line naming the initiator, its address and the target:\n{}",
        gw.log_text()
    );
    // acl-required: a volume without a list admits nobody.
    assert!(!inq_as(&gw.url(&unlisted), HOST_A).0, "a volume without a list admitted an initiator");

    // A PATCH swaps the list; the next login sees it.
    let r = gw
        .patch("/api/v1/volumes/acl1")
        .send_json(serde_json::json!({ "initiators": [HOST_B] }))
        .expect("patch");
    let v: serde_json::Value = r.into_json().expect("json");
    assert_eq!(v["initiators"], serde_json::json!([HOST_B]));
    assert!(inq_as(&gw.url(&listed), HOST_B).0, "the newly listed initiator was refused");
    assert!(!inq_as(&gw.url(&listed), HOST_A).0, "the initiator taken off the list still logs in");
    match gw.patch("/api/v1/volumes/acl1").send_json(serde_json::json!({ "initiators": ["not an iqn"] })) {
        Err(ureq::Error::Status(400, _)) => {}
        other => panic!("a bad initiator name: {other:?}"),
    }

    // The CLI sets a list on the volume that had none.
    let out = gw.cli(&["volume", "set-initiators", "nolist", HOST_A]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(inq_as(&gw.url(&unlisted), HOST_A).0, "set-initiators did not admit the initiator");

    // Three refusals for the ACL, none for CHAP.
    assert_eq!(gw.metric("sgw_iscsi_login_failures_total{reason=\"acl\"}"), Some(3.0));
    assert_eq!(gw.metric("sgw_iscsi_login_failures_total{reason=\"chap\"}"), Some(0.0));
}

#[test]
fn tape_library_chap_and_initiators() {
    if !have_tool("iscsi-inq") {
        return;
    }
    let gw = Gateway::start();
    let secret_file = gw.data_dir.join("library-secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).expect("secret file");
    let out = gw.cli(&[
        "tape", "library", "set-chap", "--chap-user", USER, "--chap-secret-file", &secret_file.to_string_lossy(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    for iqn in [CHANGER, DRIVE_1] {
        let (ok, t) = inq_as(&gw.url(iqn), HOST_A);
        assert!(!ok, "{iqn} answered without CHAP: {t}");
        let (ok, t) = inq_as(&gw.url_chap(iqn, USER, "wrong-secret-123"), HOST_A);
        assert!(!ok, "{iqn} answered a wrong secret: {t}");
        let (ok, t) = inq_as(&gw.url_chap(iqn, USER, SECRET), HOST_A);
        assert!(ok, "{iqn} refused the right secret: {t}");
    }
    let lib: serde_json::Value = gw.get("/api/v1/library").call().expect("library").into_json().expect("json");
    assert_eq!(lib["chap_enabled"], true);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(gw.data_dir.join("library-access.json")).expect("library-access.json").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the library's CHAP secret is readable by others");

    // The library's initiator list, through the API; then CHAP off.
    let r = gw.patch("/api/v1/library").send_json(serde_json::json!({ "initiators": [HOST_A], "chap": null }));
    let lib: serde_json::Value = r.expect("patch library").into_json().expect("json");
    assert_eq!((lib["chap_enabled"].clone(), lib["initiators"].clone()), (false.into(), serde_json::json!([HOST_A])));
    assert!(inq_as(&gw.url(DRIVE_1), HOST_A).0, "the listed initiator was refused by the drive");
    assert!(!inq_as(&gw.url(CHANGER), HOST_B).0, "an unlisted initiator reached the changer");
}

#[test]
fn discovery_lists_only_what_the_initiator_may_log_in_to() {
    if !have_tool("iscsi-ls") {
        return;
    }
    let gw = acl_required(&[]);
    let a = gw.create_volume_json(serde_json::json!({ "name": "for-a", "size_bytes": 16 << 20, "initiators": [HOST_A] }));
    let b = gw.create_volume_json(serde_json::json!({ "name": "for-b", "size_bytes": 16 << 20, "initiators": [HOST_B] }));
    let chap = gw.create_volume_json(serde_json::json!({
        "name": "chap-a", "size_bytes": 16 << 20, "initiators": [HOST_A],
        "chap": { "user": USER, "secret": SECRET }
    }));
    let portal = format!("iscsi://127.0.0.1:{}", gw.iscsi_port);
    let (ok, names, t) = discover(&portal, HOST_A);
    assert!(ok, "{t}");
    // Its own open volume only: not B's, not the CHAP one (this discovery
    // did not authenticate), not the tape devices (no list, acl-required).
    assert_eq!(names, vec![a.clone()], "{t}");
    let (_, names, t) = discover(&portal, HOST_B);
    assert_eq!(names, vec![b], "{t}");

    // With discovery CHAP set, discovery must authenticate, and then shows
    // the CHAP-protected target too.
    let (gw, _config) = with_config(
        "[discovery_chap]\nuser = \"disco\"\nsecret = \"discovery-secret-1\"\n",
        &["--iscsi-access", "acl-required"],
    );
    gw.create_volume_json(serde_json::json!({ "name": "for-a", "size_bytes": 16 << 20, "initiators": [HOST_A] }));
    gw.create_volume_json(serde_json::json!({
        "name": "chap-a", "size_bytes": 16 << 20, "initiators": [HOST_A],
        "chap": { "user": USER, "secret": SECRET }
    }));
    let portal = format!("iscsi://127.0.0.1:{}", gw.iscsi_port);
    let (ok, names, t) = discover(&portal, HOST_A);
    assert!(!ok && names.is_empty(), "anonymous discovery answered: {t}");
    let (ok, mut names, t) = discover(&format!("iscsi://disco%discovery-secret-1@127.0.0.1:{}", gw.iscsi_port), HOST_A);
    names.sort();
    assert!(ok, "discovery CHAP refused: {t}");
    assert_eq!(names, vec![chap, a], "{t}");
    assert!(log_lines_with(&gw, &["login refused", HOST_A, "(discovery)"]) >= 1, "{}", gw.log_text());
}

#[test]
fn chap_failures_are_logged_counted_and_slowed() {
    if !have_tool("iscsi-inq") {
        return;
    }
    let gw = Gateway::start();
    let iqn = gw.create_volume_json(serde_json::json!({
        "name": "guarded", "size_bytes": 16 << 20, "chap": { "user": USER, "secret": SECRET }
    }));
    let wrong = gw.url_chap(&iqn, USER, "not-the-secret-0");
    let started = Instant::now();
    for i in 0..6 {
        let (ok, t) = inq_as(&wrong, HOST_A);
        assert!(!ok, "attempt {i}: a wrong secret logged in: {t}");
    }
    // 0.25 + 0.5 + 1 + 2 + 4 + 5 seconds held back before the refusals.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(12_750), "6 failures took only {took:?}");
    assert_eq!(gw.metric("sgw_iscsi_login_failures_total{reason=\"chap\"}"), Some(6.0));
    assert_eq!(
        log_lines_with(&gw, &["WARN", "CHAP authentication failed", HOST_A, "127.0.0.1:", "guarded"]),
        6,
        "{}",
        gw.log_text()
    );
    // A success forgives the address: the next failure is answered quickly.
    assert!(inq_as(&gw.url_chap(&iqn, USER, SECRET), HOST_A).0, "the right secret was refused");
    let started = Instant::now();
    assert!(!inq_as(&wrong, HOST_A).0);
    assert!(started.elapsed() < Duration::from_secs(3), "still slowed after a success: {:?}", started.elapsed());
}

/// A Login Request that opens a discovery login and leaves it waiting in
/// the security stage (no transit), holding one of the server's sessions.
fn half_open_login(port: u16) -> TcpStream {
    let mut data = b"InitiatorName=iqn.2026-11.test:holder\0SessionType=Discovery\0AuthMethod=None\0".to_vec();
    let len = data.len();
    data.resize(len.div_ceil(4) * 4, 0);
    let mut bhs = [0u8; 48];
    bhs[0] = 0x43; // Login Request, immediate
    bhs[5..8].copy_from_slice(&(len as u32).to_be_bytes()[1..]);
    bhs[8..14].copy_from_slice(&[0x80, 0, 0, 0, 0, 9]); // ISID
    bhs[16..20].copy_from_slice(&1u32.to_be_bytes()); // ITT
    bhs[24..28].copy_from_slice(&1u32.to_be_bytes()); // CmdSN
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    s.write_all(&bhs).and_then(|()| s.write_all(&data)).expect("send login");
    let mut reply = [0u8; 48];
    s.read_exact(&mut reply).expect("login response");
    assert_eq!((reply[0] & 0x3f, reply[36], reply[37]), (0x23, 0, 0), "the first login step failed");
    s
}

#[test]
fn the_session_limit_refuses_with_out_of_resources() {
    if !have_tool("iscsi-inq") {
        return;
    }
    let (gw, _config) = with_config("iscsi_max_sessions = 1\n", &[]);
    let iqn = gw.create_volume("limited", 16 << 20);
    let holder = half_open_login(gw.iscsi_port);
    let (ok, t) = inq_as(&gw.url(&iqn), HOST_A);
    assert!(!ok, "a login past the session limit was served: {t}");
    assert!(t.to_ascii_lowercase().contains("resources"), "not refused as out of resources: {t}");
    assert!(log_lines_with(&gw, &["WARN", "session limit reached", "limit=1"]) >= 1, "{}", gw.log_text());
    assert_eq!(gw.metric("sgw_iscsi_login_failures_total{reason=\"max_sessions\"}"), Some(1.0));
    drop(holder);
    // The slot comes back when the holder's connection ends (bounded wait).
    let served = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        inq_as(&gw.url(&iqn), HOST_A).0
    });
    assert!(served, "the freed session slot was not given back");
}
