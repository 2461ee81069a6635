//! The tape library end to end: the Python tape client (libiscsi through
//! ctypes, tests/python) drives the changer and a drive of the `sgw`
//! daemon; tapes are archived to the embedded store and to moto, retrieved
//! read-only, refused where they must be, and survive SIGKILL.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sgw_tests::s3::Moto;
use sgw_tests::{have_scsi_client, python_script, run, text, Gateway, GatewayOptions};

const CHANGER: &str = "iqn.2026-11.org.sgw:tape:changer";

fn drive(n: usize) -> String {
    format!("iqn.2026-11.org.sgw:tape:drive-{n:02}")
}

fn python(gw: &Gateway, name: &str, drive_n: usize, args: &[&str]) -> std::process::Output {
    let portal = format!("127.0.0.1:{}", gw.iscsi_port);
    let mut cmd = Command::new("python3");
    cmd.arg(python_script(name)).args(["--portal", &portal, "--changer", CHANGER, "--drive", &drive(drive_n)]).args(args);
    run(&mut cmd, Duration::from_secs(300))
}

fn cli_ok(gw: &Gateway, args: &[&str]) -> String {
    let out = gw.cli(args);
    assert!(out.status.success(), "sgw {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tapes(gw: &Gateway) -> Vec<serde_json::Value> {
    serde_json::from_str(&cli_ok(gw, &["tape", "list", "--json"])).expect("tape list json")
}

fn tape(gw: &Gateway, barcode: &str) -> serde_json::Value {
    tapes(gw).into_iter().find(|t| t["barcode"] == barcode).unwrap_or_else(|| panic!("no tape {barcode}"))
}

/// Polls `sgw tape list` until the tape is in `state` (bounded).
fn wait_state(gw: &Gateway, barcode: &str, state: &str, limit: Duration) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        let t = tape(gw, barcode);
        if t["state"] == state {
            return t;
        }
        assert!(Instant::now() < deadline, "{barcode} is {} after {limit:?}, want {state}\n{}", t["state"], gw.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `sgw inspect` lines of one tape's objects: (storage class, key).
fn tape_objects(inspect_output: &str) -> Vec<(String, String)> {
    inspect_output
        .lines()
        .filter(|l| l.contains("/ns/tape-") || l.contains(" ns/tape-"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4).then(|| (f[2].to_owned(), f[3].to_owned()))
        })
        .collect()
}

/// The segments are in the archive class, the index STANDARD; manifest
/// pages (STANDARD chunk objects) are the only other chunks.
fn check_archived_classes(objects: &[(String, String)], archive_class: &str) {
    let index: Vec<_> = objects.iter().filter(|(_, k)| k.ends_with("/tape-index.bin")).collect();
    assert_eq!(index.len(), 1, "{objects:?}");
    assert_eq!(index[0].0, "STANDARD", "the index stays readable");
    let chunks: Vec<_> = objects.iter().filter(|(_, k)| k.contains("/chunks/")).collect();
    let archived = chunks.iter().filter(|(c, _)| c == archive_class).count();
    let standard = chunks.iter().filter(|(c, _)| c == "STANDARD").count();
    // The job writes about 3.6 MiB: four 1 MiB segments; one manifest page.
    assert!(archived >= 4, "segments in {archive_class}: {objects:?}");
    assert_eq!(standard, 1, "only the manifest page stays STANDARD: {objects:?}");
    assert_eq!(archived + standard, chunks.len(), "{objects:?}");
}

/// The acceptance job: write, verify, export; ARCHIVED with segments in
/// the archive class; retrieve; read-only.
fn backup_job(gw: &Gateway, inspect: impl Fn() -> String) {
    let started = Instant::now();
    cli_ok(gw, &["tape", "create", "--barcode", "JOB00001", "--size", "100GiB"]);
    let out = python(gw, "tape_job.py", 1, &["--barcode", "JOB00001"]);
    assert!(out.status.success(), "tape_job.py:\n{}", text(&out));
    let t = wait_state(gw, "JOB00001", "ARCHIVED", Duration::from_secs(120));
    assert_eq!(t["location"]["kind"], "archive");
    assert!(t["used_bytes"].as_u64().unwrap_or(0) > 3 << 20, "{t}");
    check_archived_classes(&tape_objects(&inspect()), "GLACIER");
    let written = gw.metric("sgw_tape_drive_written_bytes_total{drive=\"drive-01\"}").unwrap_or(0.0);
    assert!(written >= 3_000_000.0, "drive-01 wrote {written} bytes");
    assert_eq!(gw.metric("sgw_tapes{state=\"ARCHIVED\"}"), Some(1.0));

    cli_ok(gw, &["tape", "retrieve", "JOB00001"]);
    let t = wait_state(gw, "JOB00001", "RETRIEVED", Duration::from_secs(120));
    assert_eq!(t["location"]["kind"], "import_export", "{t}");
    let out = python(gw, "tape_refusals.py", 2, &["--barcode", "JOB00001", "--expect-write-protected", "--unload"]);
    assert!(out.status.success(), "tape_refusals.py --expect-write-protected:\n{}", text(&out));
    let read = gw.metric("sgw_tape_drive_read_bytes_total{drive=\"drive-02\"}").unwrap_or(0.0);
    assert!(read > 0.0, "drive-02 read nothing");
    eprintln!("backup job, archive, retrieve and refusals: {:.1}s", started.elapsed().as_secs_f64());
}

#[test]
fn backup_job_archives_and_retrieves_on_the_embedded_store() {
    if !have_scsi_client() {
        return;
    }
    let gw = Gateway::start();
    let objects = gw.data_dir.join("objects");
    let key = gw.data_dir.join("master.key");
    backup_job(&gw, || {
        let out = gw.cli(&["inspect", "--dir", &objects.to_string_lossy(), "--master-key-file", &key.to_string_lossy()]);
        assert!(out.status.success(), "inspect: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    });
}

#[test]
fn backup_job_archives_and_retrieves_on_moto() {
    if !have_scsi_client() {
        return;
    }
    let Some(moto) = Moto::start() else { return };
    let options = moto.gateway_options("tapes");
    let gw = Gateway::start_with(options.clone());
    let key = gw.data_dir.join("master.key");
    backup_job(&gw, || {
        let mut cmd = Command::new(sgw_tests::sgw_bin());
        cmd.args(["inspect", "--bucket", sgw_tests::s3::BUCKET, "--endpoint", &moto.endpoint(), "--path-style"])
            .args(["--prefix", "tapes", "--master-key-file", &key.to_string_lossy()])
            .envs(options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let out = run(&mut cmd, Duration::from_secs(60));
        assert!(out.status.success(), "inspect: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    });
}

#[test]
fn worm_tape_appends_and_refuses_overwrites() {
    if !have_scsi_client() {
        return;
    }
    let gw = Gateway::start();
    cli_ok(&gw, &["tape", "create", "--barcode", "WORM0001", "--size", "100GiB", "--worm"]);
    assert_eq!(tape(&gw, "WORM0001")["worm"], true);
    let out = python(&gw, "tape_refusals.py", 3, &["--barcode", "WORM0001", "--expect-worm", "--unload"]);
    assert!(out.status.success(), "tape_refusals.py --expect-worm:\n{}", text(&out));
}

/// A config file with the test-only minimum tape size.
fn small_tape_options(dir: &std::path::Path) -> GatewayOptions {
    let config = dir.join("sgw-small-tapes.toml");
    std::fs::write(&config, "tape_min_size_bytes = 1048576\n").expect("config");
    GatewayOptions::args(&["--config", &config.to_string_lossy()])
}

#[test]
fn small_tape_reports_early_warning_then_volume_overflow() {
    if !have_scsi_client() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let gw = Gateway::start_with(small_tape_options(tmp.path()));
    cli_ok(&gw, &["tape", "create", "--barcode", "SMALL001", "--size", "64MiB"]);
    let out = python(&gw, "tape_refusals.py", 4, &["--barcode", "SMALL001", "--small-tape", "--max-bytes", "134217728"]);
    assert!(out.status.success(), "tape_refusals.py --small-tape:\n{}", text(&out));
    let t = text(&out);
    assert!(t.contains("early warning after") && t.contains("VOLUME OVERFLOW after"), "{t}");
}

#[test]
fn barcode_and_size_rules_are_enforced() {
    let gw = Gateway::start();
    let refused = |args: &[&str], why: &str| {
        let out = gw.cli(args);
        assert!(!out.status.success(), "sgw {args:?} was accepted");
        let t = text(&out);
        assert!(t.contains(why), "sgw {args:?}: {t}");
    };
    for barcode in ["ABC-123", "abcde", "ABCD", "ABCDEFGHIJKLMNOPQ"] {
        refused(&["tape", "create", "--barcode", barcode, "--size", "100GiB"], "invalid barcode");
    }
    refused(&["tape", "create", "--barcode", "SIZE0001", "--size", "99GiB"], "invalid size");
    refused(&["tape", "create", "--barcode", "SIZE0001", "--size", "16TiB"], "invalid size");
    refused(&["tape", "create", "--prefix", "ab", "--count", "2", "--size", "100GiB"], "invalid barcode prefix");
    refused(&["tape", "create", "--prefix", "AB", "--count", "11", "--size", "100GiB"], "invalid count");

    // The API answers 400 with a JSON message.
    let r = gw.post("/api/v1/tapes")
        .send_json(serde_json::json!({"barcode": "x", "size_bytes": 107374182400u64}));
    match r {
        Err(ureq::Error::Status(400, resp)) => {
            let body: serde_json::Value = resp.into_json().expect("json error");
            assert!(body["error"].as_str().is_some_and(|e| e.contains("invalid barcode")), "{body}");
        }
        other => panic!("want 400, got {other:?}"),
    }

    // Prefix barcodes fill to eight characters and skip used ones.
    cli_ok(&gw, &["tape", "create", "--barcode", "AB000001", "--size", "100GiB"]);
    let out = cli_ok(&gw, &["tape", "create", "--prefix", "AB", "--count", "2", "--size", "100GiB", "--pool", "DEEP_ARCHIVE"]);
    assert!(out.contains("AB000002") && out.contains("AB000003"), "{out}");
    assert_eq!(tape(&gw, "AB000003")["pool"], "DEEP_ARCHIVE");
    assert_eq!(tape(&gw, "AB000003")["state"], "AVAILABLE");
    assert_eq!(tape(&gw, "AB000003")["location"]["kind"], "import_export");

    // Deleting frees nothing: the barcode is never reused.
    cli_ok(&gw, &["tape", "delete", "AB000001"]);
    assert!(tapes(&gw).iter().all(|t| t["barcode"] != "AB000001"));
    refused(&["tape", "create", "--barcode", "AB000001", "--size", "100GiB"], "never reused");
    refused(&["tape", "delete", "NOSUCH01"], "not found");
    refused(&["tape", "retrieve", "AB000002"], "only ARCHIVED tapes");

    let lib: serde_json::Value = serde_json::from_str(&cli_ok(&gw, &["tape", "library", "--json"])).expect("json");
    assert_eq!(lib["changer"]["iqn"], CHANGER);
    assert_eq!(lib["changer"]["lun"], 0);
    let drives = lib["drives"].as_array().expect("drives");
    assert_eq!(drives.len(), 10);
    assert_eq!(drives[9]["iqn"], drive(10));
}

#[test]
fn sigkill_during_a_tape_write_keeps_everything_up_to_the_last_filemark() {
    if !have_scsi_client() {
        return;
    }
    let mut gw = Gateway::start();
    cli_ok(&gw, &["tape", "create", "--barcode", "CRASH001", "--size", "100GiB"]);
    let portal = format!("127.0.0.1:{}", gw.iscsi_port);
    let mut writer = Command::new("python3")
        .arg(python_script("tape_crash.py"))
        .args(["write", "--portal", &portal, "--changer", CHANGER, "--drive", &drive(5), "--barcode", "CRASH001"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tape_crash.py write");
    // Let a few files reach the tape, then kill the gateway mid-file.
    let stdout = writer.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("COMMITTED ") {
                let _ = tx.send(n.trim().parse::<u64>().unwrap_or(0));
            }
        }
    });
    let mut committed = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while committed < 6 {
        assert!(Instant::now() < deadline, "the writer committed only {committed} files");
        if let Ok(n) = rx.recv_timeout(Duration::from_secs(5)) {
            committed = n;
        }
    }
    std::thread::sleep(Duration::from_millis(150));
    gw.kill();
    // Filemarks acknowledged before the kill: the writer printed them.
    while let Ok(n) = rx.recv_timeout(Duration::from_millis(500)) {
        committed = n;
    }
    let _ = writer.kill();
    let _ = writer.wait();

    let (dir, ip, ap) = (gw.data_dir.clone(), gw.iscsi_port, gw.api_port);
    let gw2 = Gateway::start_in_with(&dir, ip, ap, gw.options());
    let t = tape(&gw2, "CRASH001");
    assert_eq!(t["location"]["kind"], "drive", "the tape is still in its drive: {t}");
    let c = committed.to_string();
    let out = python(&gw2, "tape_crash.py", 5, &["verify", "--barcode", "CRASH001", "--committed", &c]);
    assert!(out.status.success(), "tape_crash.py verify ({committed} committed):\n{}", text(&out));
    let t = text(&out);
    eprintln!("{}", t.lines().find(|l| l.contains("whole files")).unwrap_or_default());
    drop(gw);
}

/// Restores take time on a real shelf: with the embedded store's restore
/// delay, a retrieval shows RETRIEVING until every segment is readable,
/// then RETRIEVED, and the tape reads.
#[test]
fn retrieval_waits_for_restores_from_deep_archive() {
    if !have_scsi_client() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let config = work.path().join("sgw.toml");
    std::fs::write(
        &config,
        format!(
            "[cloud.store]\nkind = \"local\"\nroot = \"{}\"\nrestore_delay_secs = 4\n",
            work.path().join("objects").display()
        ),
    )
    .expect("config");
    let gw = Gateway::start_with(GatewayOptions::args(&["--config", &config.to_string_lossy()]));
    cli_ok(&gw, &["tape", "create", "--barcode", "DEEP0001", "--size", "100GiB", "--pool", "DEEP_ARCHIVE"]);
    let out = python(&gw, "tape_job.py", 1, &["--barcode", "DEEP0001"]);
    assert!(out.status.success(), "tape_job.py:\n{}", text(&out));
    wait_state(&gw, "DEEP0001", "ARCHIVED", Duration::from_secs(120));
    cli_ok(&gw, &["tape", "retrieve", "DEEP0001"]);
    let t = tape(&gw, "DEEP0001");
    assert_eq!(t["state"], "RETRIEVING", "{t}");
    let started = Instant::now();
    wait_state(&gw, "DEEP0001", "RETRIEVED", Duration::from_secs(120));
    assert!(started.elapsed() >= Duration::from_secs(2), "the restore delay was not waited for");
    let out = python(&gw, "tape_refusals.py", 2, &["--barcode", "DEEP0001", "--expect-write-protected", "--unload"]);
    assert!(out.status.success(), "tape_refusals.py --expect-write-protected:\n{}", text(&out));
}
