//! Cached volumes end to end: the primary copy in the cloud (the embedded
//! store or moto), a cache much smaller than the data, real initiators
//! (qemu-img, qemu-io), recovery points, snapshots, clones, disaster
//! recovery and SIGKILL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sgw_tests::s3::Moto;
use sgw_tests::{free_port, have_tool, run, text, wait_until, Gateway, GatewayOptions};

const MIB: u64 = 1 << 20;

fn qemu_io(url: &str, cmds: &[String], limit: Duration) -> Output {
    let mut c = Command::new("qemu-io");
    c.args(["-f", "raw"]);
    for cmd in cmds {
        c.args(["-c", cmd]);
    }
    run(c.arg(url), limit)
}

fn assert_qemu_ok(out: &Output, what: &str) {
    let t = text(out);
    assert!(out.status.success() && !t.contains("failed") && !t.contains("error"), "{what}:\n{t}");
}

fn sha256(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path), Duration::from_secs(300));
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string()
}

/// A file of `size` random bytes.
fn random_file(path: &Path, size: u64) {
    use rand::RngCore;
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut rng = rand::thread_rng();
    let mut buf = vec![0u8; MIB as usize];
    let mut left = size;
    while left > 0 {
        let n = left.min(MIB) as usize;
        rng.fill_bytes(&mut buf[..n]);
        f.write_all(&buf[..n]).expect("write");
        left -= n as u64;
    }
    f.flush().expect("flush");
}

fn json(gw: &Gateway, args: &[&str]) -> serde_json::Value {
    let out = gw.cli(args);
    assert!(out.status.success(), "sgw {args:?}: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("sgw {args:?}: {e}: {}", text(&out)))
}

fn cli_ok(gw: &Gateway, args: &[&str]) -> String {
    let out = gw.cli(args);
    assert!(out.status.success(), "sgw {args:?}: {}\n{}", text(&out), gw.log_text());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn series(name: &str, volume: &str) -> String {
    format!("{name}{{volume=\"{volume}\"}}")
}

/// Writes 2 GiB of random data through a 256 MiB cache with qemu-img, reads
/// it all back (most of it from the cloud) and compares.
fn two_gib_round_trip(gw: &Gateway) {
    let work = tempfile::tempdir().expect("tempdir");
    let input = work.path().join("in.img");
    let output = work.path().join("out.img");
    let size = 2048 * MIB;
    random_file(&input, size);
    let iqn = gw.create_volume("big", size);
    let url = gw.url(&iqn);
    let started = Instant::now();
    let w = run(
        Command::new("qemu-img").args(["convert", "-n", "-f", "raw", "-O", "raw", "-t", "none"]).arg(&input).arg(&url),
        Duration::from_secs(1500),
    );
    assert!(w.status.success(), "write: {}\n{}", text(&w), gw.log_text());
    eprintln!("2 GiB written in {:?}", started.elapsed());
    // Patterned writes and verifying reads on top, aligned and not.
    let cmds: Vec<String> = vec![
        "write -P 0x5a 1000000 777".into(),
        "write -P 0x11 1536m 3m".into(),
        "read -P 0x5a 1000000 777".into(),
        "read -P 0x11 1536m 3m".into(),
    ];
    assert_qemu_ok(&qemu_io(&url, &cmds, Duration::from_secs(300)), "patterns");
    // The reference: the input with the same patterns.
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&input).expect("input");
        f.seek(SeekFrom::Start(1_000_000)).expect("seek");
        f.write_all(&[0x5a; 777]).expect("write");
        f.seek(SeekFrom::Start(1536 * MIB)).expect("seek");
        f.write_all(&vec![0x11; 3 << 20]).expect("write");
    }
    let before = gw.metric(&series("sgw_volume_cloud_chunk_reads_total", "big")).unwrap_or(0.0);
    let r = run(
        Command::new("qemu-img").args(["convert", "-f", "raw", "-O", "raw"]).arg(&url).arg(&output),
        Duration::from_secs(1500),
    );
    assert!(r.status.success(), "read: {}\n{}", text(&r), gw.log_text());
    assert_eq!(sha256(&input), sha256(&output), "content differs after the round trip");
    let fetched = gw.metric(&series("sgw_volume_cloud_chunk_reads_total", "big")).unwrap_or(0.0) - before;
    eprintln!("chunks fetched from the cloud while reading 2048: {fetched}");
    assert!(fetched >= 1536.0, "only {fetched} of 2048 chunks came from the cloud");
    let waits = gw.metric("cache_backpressure_waits_total").unwrap_or(0.0);
    eprintln!("back-pressure waits: {waits}");
}

#[test]
fn two_gib_through_a_small_cache_on_the_embedded_store() {
    if !have_tool("qemu-img") {
        return;
    }
    let gw = Gateway::start_with(GatewayOptions::args(&["--cache-size", "256MiB"]));
    two_gib_round_trip(&gw);
}

#[test]
fn two_gib_through_a_small_cache_on_moto() {
    if !have_tool("qemu-img") {
        return;
    }
    let Some(moto) = Moto::start() else { return };
    let mut o = moto.gateway_options("two-gib");
    o.args.extend(["--cache-size".to_string(), "256MiB".to_string()]);
    let gw = Gateway::start_with(o);
    two_gib_round_trip(&gw);
}

/// A config file that puts the embedded store outside the data directory,
/// so that losing the data directory does not lose the "cloud".
fn external_store_config(dir: &Path) -> PathBuf {
    let config = dir.join("sgw.toml");
    std::fs::write(
        &config,
        format!(
            "recovery_point_interval_secs = 3600\n[cloud]\nprefix = \"site-a\"\n[cloud.store]\nkind = \"local\"\nroot = \"{}\"\n",
            dir.join("objects").display()
        ),
    )
    .expect("config");
    config
}

/// Reads the whole volume into a file.
fn read_volume(gw: &Gateway, iqn: &str, size: u64, to: &Path) {
    let opts = format!(
        "driver=raw,size={size},file.driver=iscsi,file.transport=tcp,file.portal=127.0.0.1:{},file.target={iqn},file.lun=0",
        gw.iscsi_port
    );
    let out = run(
        Command::new("qemu-img").args(["convert", "-O", "raw", "--image-opts", &opts]).arg(to),
        Duration::from_secs(600),
    );
    assert!(out.status.success(), "read {iqn}: {}", text(&out));
}

/// Waits until the cache holds nothing that is not uploaded.
fn wait_uploaded(gw: &Gateway) {
    assert!(
        wait_until(Duration::from_secs(300), || gw.metric("cache_dirty_bytes") == Some(0.0)),
        "uploads did not finish:\n{}",
        gw.log_text()
    );
}

#[test]
fn disaster_recovery_serves_the_last_recovery_point() {
    if !have_tool("qemu-io") {
        return;
    }
    let Some(moto) = Moto::start() else { return };
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    let mut o = moto.gateway_options("dr");
    o.args.extend(["--cache-size".into(), "64MiB".into()]);
    let mut gw = Gateway::start_in_with(&data, free_port(), free_port(), o);
    let size = 96 * MIB;
    let iqn = gw.create_volume("prod", size);
    let url = gw.url(&iqn);
    let cmds: Vec<String> = (0..24).map(|i| format!("write -P {} {}m 4m", i + 1, i * 4)).collect();
    assert_qemu_ok(&qemu_io(&url, &cmds, Duration::from_secs(300)), "write");
    let snap = cli_ok(&gw, &["snapshot", "create", "prod"]);
    let rp = cli_ok(&gw, &["volume", "recovery-point", "prod"]);
    eprintln!("{rp}; snapshot {snap}");
    let expected = work.path().join("expected.img");
    read_volume(&gw, &iqn, size, &expected);
    // Written after the recovery point: not part of what is recovered.
    assert_qemu_ok(&qemu_io(&url, &["write -P 0xee 0 8m".to_string()], Duration::from_secs(60)), "late write");
    let key = work.path().join("master.key");
    std::fs::copy(data.join("master.key"), &key).expect("keep the key apart");
    gw.kill();
    std::fs::remove_dir_all(&data).expect("lose the data directory");

    let mut o2 = moto.gateway_options("dr");
    o2.args.extend(["--key-file".into(), key.display().to_string()]);
    let gw2 = Gateway::start_in_with(&work.path().join("new"), free_port(), free_port(), o2);
    assert!(cli_ok(&gw2, &["recover"]).contains("recovered 1 volumes"));
    let vols = json(&gw2, &["volume", "list", "--json"]);
    assert_eq!(vols[0]["name"], "prod", "{vols}");
    let snaps = json(&gw2, &["snapshot", "list", "--json"]);
    assert_eq!(snaps[0]["id"].as_str(), Some(snap.as_str()), "{snaps}");
    let got = work.path().join("got.img");
    read_volume(&gw2, &iqn, size, &got);
    assert_eq!(sha256(&expected), sha256(&got), "recovered content differs from the recovery point");
    // A clone of the recovered snapshot reads the same.
    let out = gw2.cli(&["volume", "create", "restored", "--from-snapshot", &snap]);
    assert!(out.status.success(), "{}", text(&out));
    assert_qemu_ok(
        &qemu_io(
            &gw2.url("iqn.2026-11.org.sgw:volume:restored"),
            &["read -P 1 0 4m".to_string(), "read -P 24 92m 4m".to_string()],
            Duration::from_secs(60),
        ),
        "clone of a recovered snapshot",
    );
    // Without the key, a gateway refuses the bucket rather than making a new key.
    let mut o3 = moto.gateway_options("dr");
    o3.args.extend(["--data-dir".into(), work.path().join("nokey").display().to_string()]);
    let claim = work.path().join("claim.json");
    let body = r#"{"gateway_name":"dr","admin_user":"admin","admin_password":"twelve-chars-at-least"}"#;
    std::fs::write(&claim, body).expect("activation file");
    let out = run(
        Command::new(sgw_tests::sgw_bin())
            .args(["serve", "--iscsi-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0", "--https-listen", "127.0.0.1:0"])
            .arg("--activate-from")
            .arg(&claim)
            .args(&o3.args)
            .envs(o3.env.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        Duration::from_secs(60),
    );
    assert!(!out.status.success() && text(&out).contains("master key"), "{}", text(&out));
}

#[test]
fn snapshots_clones_and_incremental_uploads() {
    if !have_tool("qemu-img") {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let config = external_store_config(work.path());
    let gw = Gateway::start_with(GatewayOptions::args(&["--config", &config.display().to_string()]));
    let size = 256 * MIB;
    let iqn = gw.create_volume("src", size);
    let url = gw.url(&iqn);
    let input = work.path().join("rand.img");
    random_file(&input, size);
    let w = run(
        Command::new("qemu-img").args(["convert", "-n", "-f", "raw", "-O", "raw"]).arg(&input).arg(&url),
        Duration::from_secs(600),
    );
    assert!(w.status.success(), "{}", text(&w));
    let s1 = cli_ok(&gw, &["snapshot", "create", "src"]);
    let uploaded = || gw.metric("sgw_cloud_bytes_uploaded_total").unwrap_or(0.0);
    let before = uploaded();
    // Change 1 % of the volume (2.56 MiB of random data, chunk aligned),
    // then snapshot.
    let change = work.path().join("change.img");
    random_file(&change, 2621440);
    let write_change = format!("write -s {} 64m 2621440", change.display());
    assert_qemu_ok(&qemu_io(&url, &[write_change], Duration::from_secs(60)), "change");
    let mut expected_s2 = std::fs::read(&input).expect("input");
    expected_s2[64 << 20..(64 << 20) + 2621440].copy_from_slice(&std::fs::read(&change).expect("change"));
    let s2 = cli_ok(&gw, &["snapshot", "create", "src"]);
    let delta = uploaded() - before;
    eprintln!("second snapshot uploaded {delta} bytes for a 1% change of {size}");
    assert!(delta <= 0.02 * size as f64, "incremental snapshot uploaded {delta} bytes");

    // Clones: of the first snapshot (the original random data), of the
    // second, and of the live volume after another change.
    assert!(gw.cli(&["volume", "create", "from-s1", "--from-snapshot", &s1]).status.success());
    assert!(gw.cli(&["volume", "create", "from-s2", "--from-snapshot", &s2, "--size", "512MiB"]).status.success());
    assert_qemu_ok(&qemu_io(&url, &["write -P 0x99 0 1m".to_string()], Duration::from_secs(60)), "change again");
    assert!(gw.cli(&["volume", "create", "from-live", "--from-volume", "src"]).status.success());
    let small = gw.cli(&["volume", "create", "too-small", "--from-snapshot", &s1, "--size", "128MiB"]);
    assert!(!small.status.success() && text(&small).contains("at least as large"), "{}", text(&small));

    let c1 = work.path().join("c1.img");
    read_volume(&gw, "iqn.2026-11.org.sgw:volume:from-s1", size, &c1);
    assert_eq!(sha256(&input), sha256(&c1), "clone of the first snapshot differs from what was written");
    let check_s2 = |what: &str| {
        let c2 = work.path().join("c2.img");
        read_volume(&gw, "iqn.2026-11.org.sgw:volume:from-s2", 512 * MIB, &c2);
        let got = std::fs::read(&c2).expect("c2");
        assert!(got[..size as usize] == expected_s2[..], "{what}: the clone of the second snapshot differs");
        assert!(got[size as usize..].iter().all(|b| *b == 0), "{what}: the grown part of the clone is not zero");
    };
    check_s2("s2");
    let live = work.path().join("live.img");
    read_volume(&gw, "iqn.2026-11.org.sgw:volume:from-live", size, &live);
    let mut expected_live = expected_s2.clone();
    expected_live[..MIB as usize].fill(0x99);
    assert!(std::fs::read(&live).expect("live") == expected_live, "the clone of the live volume differs");
    // Clones are independent: writing one leaves the source alone.
    assert_qemu_ok(&qemu_io(&gw.url("iqn.2026-11.org.sgw:volume:from-s1"), &["write -P 0x42 64m 1m".to_string()], Duration::from_secs(60)), "clone write");
    let src = work.path().join("src.img");
    read_volume(&gw, &iqn, size, &src);
    assert!(std::fs::read(&src).expect("src") == expected_live, "writing a clone changed its source");

    // Deleting the first snapshot frees only what nothing else uses: the
    // three chunks the change replaced (and their old manifest pages).
    let chunks_dir = work.path().join("objects");
    let count = || walk_files(&chunks_dir);
    wait_uploaded(&gw);
    let objects_before = count();
    cli_ok(&gw, &["snapshot", "delete", &s1]);
    let objects_after = count();
    eprintln!("objects before deleting s1: {objects_before}, after: {objects_after}");
    assert!(objects_after < objects_before, "nothing was freed");
    assert!(objects_before - objects_after <= 8, "freed {} objects: more than s1 held alone", objects_before - objects_after);
    let snaps = json(&gw, &["snapshot", "list", "--json"]);
    assert_eq!(snaps.as_array().map(Vec::len), Some(1), "{snaps}");
    // Everything still reads: the clone of s1 keeps its chunks.
    let c1b = work.path().join("c1b.img");
    read_volume(&gw, "iqn.2026-11.org.sgw:volume:from-s1", size, &c1b);
    let mut expected = std::fs::read(&input).expect("input");
    expected[64 << 20..65 << 20].fill(0x42);
    assert_eq!(std::fs::read(&c1b).expect("clone"), expected, "the clone of a deleted snapshot lost data");
    check_s2("s2 after deleting s1");
    let missing = gw.cli(&["snapshot", "delete", &s1]);
    assert!(!missing.status.success() && text(&missing).contains("not found"));
}

fn walk_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                walk_files(&p)
            } else {
                usize::from(!p.to_string_lossy().contains(".restore"))
            }
        })
        .sum()
}

/// Batches of writes with a flush after each; the daemon is killed in the
/// middle, with a cache far smaller than the data so uploads and evictions
/// run throughout.
#[test]
fn sigkill_under_flushing_load_loses_nothing_and_the_cloud_catches_up() {
    if !have_tool("qemu-io") {
        return;
    }
    const CHUNK: u64 = 256 * 1024;
    let batches = 400u64;
    let pattern = |b: u64, k: u64| (b * 7 + k * 13) % 250 + 1;
    let work = tempfile::tempdir().expect("tempdir");
    let config = external_store_config(work.path());
    let data = work.path().join("data");
    let o = GatewayOptions::args(&["--config", &config.display().to_string(), "--cache-size", "32MiB"]);
    let mut gw = Gateway::start_in_with(&data, free_port(), free_port(), o.clone());
    let size = batches * 4 * CHUNK + MIB;
    let iqn = gw.create_volume("crash", size);
    let url = gw.url(&iqn);
    let mut args = Vec::new();
    for b in 0..batches {
        for k in 0..4 {
            args.push("-c".to_string());
            args.push(format!("write -P {} {} {}", pattern(b, k), (b * 4 + k) * CHUNK, CHUNK));
        }
        args.push("-c".to_string());
        args.push("flush".to_string());
        // A tiny FUA write marks the flush as acknowledged in the output.
        args.push("-c".to_string());
        args.push(format!("write -f -P {} {} 512", pattern(b, 0), (b * 4) * CHUNK));
    }
    let mut child = Command::new("stdbuf")
        .args(["-oL", "qemu-io", "-f", "raw"])
        .args(&args)
        .arg(&url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-io");
    std::thread::sleep(Duration::from_millis(2500));
    gw.kill();
    std::thread::sleep(Duration::from_millis(500));
    let _ = child.kill();
    let out = child.wait_with_output().expect("qemu-io output");
    let log = String::from_utf8_lossy(&out.stdout).to_string();
    let markers: Vec<u64> = log
        .lines()
        .filter(|l| l.starts_with("wrote 512/512"))
        .filter_map(|l| l.split(" at offset ").nth(1))
        .filter_map(|o| o.trim().parse().ok())
        .collect();
    let mut durable: BTreeMap<u64, u64> = BTreeMap::new();
    for b in 0..batches {
        if markers.contains(&(b * 4 * CHUNK)) {
            for k in 0..4 {
                durable.insert((b * 4 + k) * CHUNK, pattern(b, k));
            }
        }
    }
    assert!(!durable.is_empty(), "killed before the first flush:\n{log}");
    eprintln!("{} flushed chunks to verify", durable.len());
    let gw2 = Gateway::start_in_with(&data, gw.iscsi_port, gw.api_port, o);
    let reads: Vec<String> = durable.iter().map(|(off, pat)| format!("read -P {pat} {off} {CHUNK}")).collect();
    assert_qemu_ok(&qemu_io(&gw2.url(&iqn), &reads, Duration::from_secs(600)), "flushed writes after SIGKILL");
    // Uploads resume; then the cloud alone (a recovery point, read by a
    // fresh gateway) holds the same content as the volume.
    wait_uploaded(&gw2);
    cli_ok(&gw2, &["volume", "recovery-point", "crash"]);
    let live = work.path().join("live.img");
    read_volume(&gw2, &iqn, size, &live);
    let key = work.path().join("master.key");
    std::fs::copy(data.join("master.key"), &key).expect("key");
    drop(gw2);
    drop(gw);
    let o3 = GatewayOptions::args(&["--config", &config.display().to_string(), "--key-file", &key.display().to_string()]);
    let gw3 = Gateway::start_in_with(&work.path().join("fresh"), free_port(), free_port(), o3);
    cli_ok(&gw3, &["recover"]);
    let cloud = work.path().join("cloud.img");
    read_volume(&gw3, &iqn, size, &cloud);
    assert_eq!(sha256(&live), sha256(&cloud), "the cloud copy differs from the volume after uploads finished");
}

#[test]
fn states_and_metrics() {
    let gw = Gateway::start_with(GatewayOptions::args(&["--cache-size", "64MiB"]));
    gw.create_volume("m", 64 * MIB);
    let metrics = || ureq::get(&format!("{}/metrics", gw.api())).call().expect("metrics").into_string().expect("text");
    // No recovery point yet: no age series at all (CloudWatch has no datapoint), never -1.
    let before = metrics();
    assert!(!before.contains("sgw_volume_time_since_last_recovery_point_seconds{"), "{before}");
    // A local volume reports its I/O in the same series as a cached one.
    let local = gw.create_volume_json(serde_json::json!({ "name": "lv", "size_bytes": 16 * MIB, "kind": "local" }));
    if have_tool("qemu-io") {
        assert_qemu_ok(&qemu_io(&gw.url(&local), &["write 0 1m".to_string(), "read 0 512k".to_string()], Duration::from_secs(60)), "local io");
        let after = metrics();
        let value = |name: &str| {
            after.lines().find(|l| l.starts_with(&series(name, "lv"))).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse::<f64>().ok())
        };
        assert_eq!(value("sgw_volume_write_bytes_total"), Some(MIB as f64), "{after}");
        assert_eq!(value("sgw_volume_read_bytes_total"), Some((512 * 1024) as f64), "{after}");
    }
    let vols = json(&gw, &["volume", "list", "--json"]);
    let vols = serde_json::Value::Array(vols.as_array().expect("list").iter().filter(|v| v["name"] == "m").cloned().collect());
    assert_eq!(vols[0]["kind"], "cached");
    assert_eq!(vols[0]["state"], "AVAILABLE");
    cli_ok(&gw, &["volume", "recovery-point", "m"]);
    let vols = json(&gw, &["volume", "list", "--json"]);
    let m = vols.as_array().expect("list").iter().find(|v| v["name"] == "m").expect("m");
    assert!(m["recovery_point_age_secs"].as_u64().is_some_and(|a| a < 60), "{vols}");
    let text = ureq::get(&format!("{}/metrics", gw.api())).call().expect("metrics").into_string().expect("text");
    for name in [
        "sgw_cache_hit_percent",
        "sgw_cache_percent_dirty",
        "sgw_cache_percent_used",
        "sgw_cloud_bytes_uploaded_total",
        "sgw_cloud_bytes_downloaded_total",
        "sgw_queued_writes_bytes",
        "sgw_volume_time_since_last_recovery_point_seconds{volume=\"m\"}",
        "sgw_volume_recovery_points_total{volume=\"m\"}",
        "sgw_cache_total_bytes",
        "sgw_upload_buffer_percent_used",
        "sgw_upload_buffer_percent_dirty",
        "sgw_upload_buffer_used_bytes",
        "sgw_upload_buffer_free_bytes",
        "sgw_cloud_request_seconds_bucket",
        "sgw_health{component=\"cache\"} 1",
        "process_open_fds",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    // Bad requests get a 4xx with a message.
    for (body, want) in [
        (serde_json::json!({"name": "c", "from_snapshot": "snap-none"}), 404),
        (serde_json::json!({"name": "c"}), 400),
        (serde_json::json!({"name": "c", "size_bytes": 1 << 30, "kind": "tape"}), 422),
        (serde_json::json!({"name": "c", "from_snapshot": "a", "from_volume": "m"}), 400),
        (serde_json::json!({"name": "c", "size_bytes": 1 << 30, "kind": "local", "from_volume": "m"}), 400),
    ] {
        match gw.post("/api/v1/volumes").send_json(body.clone()) {
            Err(ureq::Error::Status(code, resp)) => {
                let msg = resp.into_string().unwrap_or_default();
                assert_eq!(code, want, "{body}: {msg}");
                assert!(msg.contains("error"), "{body}: {msg}");
            }
            other => panic!("{body}: expected {want}, got {other:?}"),
        }
    }
    let r = gw.post("/api/v1/volumes/none/recovery-points").call();
    assert!(matches!(r, Err(ureq::Error::Status(404, _))));
    let r = gw.post("/api/v1/recover").call();
    assert!(matches!(r, Err(ureq::Error::Status(400, _))), "recover into a gateway with volumes");
}

/// UNMAP frees cache space at once and cloud space from the next recovery
/// point on.
#[test]
fn unmap_frees_cache_and_cloud_space() {
    if !have_tool("qemu-io") {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let config = external_store_config(work.path());
    let gw = Gateway::start_with(GatewayOptions::args(&["--config", &config.display().to_string()]));
    let iqn = gw.create_volume("thin", 64 * MIB);
    let url = gw.url(&iqn);
    let data = work.path().join("rand.img");
    random_file(&data, 16 * MIB);
    assert_qemu_ok(&qemu_io(&url, &[format!("write -s {} 0 16m", data.display())], Duration::from_secs(60)), "write");
    cli_ok(&gw, &["volume", "recovery-point", "thin"]);
    wait_uploaded(&gw);
    let objects = || walk_files(&work.path().join("objects"));
    let used = || gw.metric("cache_used_bytes").unwrap_or(0.0);
    let (objects_before, used_before) = (objects(), used());
    assert_qemu_ok(&qemu_io(&url, &["discard 0 16m".to_string()], Duration::from_secs(60)), "discard");
    assert!(used() <= used_before - (15 * MIB) as f64, "UNMAP left the cache at {} of {used_before} bytes", used());
    assert_qemu_ok(&qemu_io(&url, &["read -P 0 0 16m".to_string()], Duration::from_secs(60)), "unmapped reads zero");
    cli_ok(&gw, &["volume", "recovery-point", "thin"]);
    let objects_after = objects();
    eprintln!("objects: {objects_before} before UNMAP, {objects_after} after the next recovery point");
    assert!(objects_before - objects_after >= 16, "UNMAP freed {} objects, not the 16 chunks", objects_before - objects_after);
}

/// A planned move: SIGTERM commits a final recovery point, so a gateway
/// recovered elsewhere from the bucket reads every write acknowledged
/// before the stop (the schedule here is hourly: no scheduled point runs).
#[test]
fn sigterm_commits_a_final_recovery_point_that_recover_serves() {
    if !have_tool("qemu-io") || !have_tool("qemu-img") {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let config = external_store_config(work.path());
    let data = work.path().join("data");
    let options = GatewayOptions::args(&["--config", &config.to_string_lossy(), "--cache-size", "64MiB"]);
    let mut gw = Gateway::start_in_with(&data, free_port(), free_port(), options.clone());
    let size = 32 * MIB;
    let iqn = gw.create_volume("moving", size);
    let cmds: Vec<String> = (0..8).map(|i| format!("write -P {} {}m 4m", i + 11, i * 4)).collect();
    assert_qemu_ok(&qemu_io(&gw.url(&iqn), &cmds, Duration::from_secs(120)), "write");
    let expected = work.path().join("expected.img");
    read_volume(&gw, &iqn, size, &expected);
    let key = work.path().join("master.key");
    std::fs::copy(data.join("master.key"), &key).expect("keep the key apart");
    assert!(gw.stop(), "sgw did not stop cleanly:\n{}", gw.log_text());
    assert!(gw.log_text().contains("final recovery point committed"), "{}", gw.log_text());

    let mut o2 = options;
    o2.args.extend(["--key-file".into(), key.display().to_string()]);
    let gw2 = Gateway::start_in_with(&work.path().join("elsewhere"), free_port(), free_port(), o2);
    assert!(cli_ok(&gw2, &["recover"]).contains("recovered 1 volumes"));
    let got = work.path().join("got.img");
    read_volume(&gw2, &iqn, size, &got);
    assert_eq!(sha256(&expected), sha256(&got), "writes acknowledged before SIGTERM are missing after recover");
}

/// Objects replaced before a SIGKILL (rewritten and uploaded again, with no
/// recovery point since) are orphans only this run knew about: the sweep
/// after the restart finds them by listing the bucket and deletes exactly
/// those, keeping the live map's and the last recovery point's objects.
#[test]
fn the_sweep_deletes_objects_orphaned_by_a_sigkill() {
    if !have_tool("qemu-io") {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    let config = external_store_config(work.path());
    let (iscsi_port, api_port) = (free_port(), free_port());
    let args = ["--config", &config.display().to_string(), "--cache-size", "64MiB"];
    let mut gw = Gateway::start_in_with(&data, iscsi_port, api_port, GatewayOptions::args(&args));
    let iqn = gw.create_volume("rewritten", 16 * MIB);
    let url = gw.url(&iqn);
    let objects = || walk_files(&work.path().join("objects"));
    let generations: Vec<PathBuf> = (0..3).map(|g| work.path().join(format!("gen{g}.img"))).collect();
    for g in &generations {
        random_file(g, 16 * MIB);
    }
    let write = |gw: &Gateway, g: &Path| {
        assert_qemu_ok(&qemu_io(&url, &[format!("write -s {} 0 16m", g.display())], Duration::from_secs(60)), "write");
        wait_uploaded(gw);
    };
    write(&gw, &generations[0]);
    cli_ok(&gw, &["volume", "recovery-point", "rewritten"]);
    write(&gw, &generations[1]);
    write(&gw, &generations[2]);
    let before_kill = objects();
    gw.kill();

    // The sweep runs two seconds after this start.
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.insert_str(0, "garbage_sweep_interval_secs = 2\n");
    std::fs::write(&config, text).expect("config");
    let mut gw = Gateway::start_in_with(&data, iscsi_port, api_port, GatewayOptions::args(&args));
    assert!(
        wait_until(Duration::from_secs(60), || objects() <= before_kill - 16),
        "{} objects before the kill, {} after the sweep:\n{}",
        before_kill,
        objects(),
        gw.log_text()
    );
    // Exactly the second generation's 16 objects went: the live map's and
    // the recovery point's stay, and every object the map names verifies.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(objects(), before_kill - 16, "{}", gw.log_text());
    let scrub = json(&gw, &["volume", "scrub", "rewritten", "--json"]);
    assert_eq!(scrub["damaged"].as_array().map(Vec::len), Some(0), "{scrub}");
    let check = work.path().join("check.img");
    read_volume(&gw, &iqn, 16 * MIB, &check);
    assert_eq!(sha256(&check), sha256(&generations[2]), "the volume lost data to the sweep");
    gw.stop();
}

/// Recovery points follow the age of the last one, not the start of the
/// run: a gateway restarted more often than the interval still commits
/// them (each run here lives 3 s of an 8 s interval).
#[test]
fn restarts_do_not_put_off_recovery_points() {
    if !have_tool("qemu-io") {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    let (iscsi_port, api_port) = (free_port(), free_port());
    let options = GatewayOptions::args(&["--cache-size", "64MiB", "--recovery-point-interval", "8"]);
    let mut gw = Gateway::start_in_with(&data, iscsi_port, api_port, options.clone());
    let iqn = gw.create_volume("busy", 8 * MIB);
    cli_ok(&gw, &["volume", "recovery-point", "busy"]);
    let first = Instant::now();
    for round in 0..4 {
        let cmd = format!("write -P {} {}m 1m", round + 1, round);
        assert_qemu_ok(&qemu_io(&gw.url(&iqn), &[cmd], Duration::from_secs(60)), "write");
        std::thread::sleep(Duration::from_secs(3));
        gw.kill();
        gw = Gateway::start_in_with(&data, iscsi_port, api_port, options.clone());
    }
    let age = json(&gw, &["volume", "show", "busy", "--json"])["recovery_point_age_secs"]
        .as_u64()
        .expect("a recovery point");
    let elapsed = first.elapsed().as_secs();
    assert!(age + 3 < elapsed, "the last recovery point is {age} s old, as old as the first ({elapsed} s):\n{}", gw.log_text());
    gw.stop();
}

/// A volume that held unsent data at an unclean stop is BOOTSTRAPPING
/// after the restart, and says how many bytes are left (API, CLI), until
/// the uploads catch up.
#[test]
fn bootstrapping_reports_the_bytes_left() {
    if !have_tool("qemu-io") {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    let (iscsi_port, api_port) = (free_port(), free_port());
    let options = GatewayOptions::args(&["--cache-size", "64MiB"]);
    let mut gw = Gateway::start_in_with(&data, iscsi_port, api_port, options.clone());
    let iqn = gw.create_volume("boot", 32 * MIB);
    // Uploads at 512 KiB/s, all day: the 16 MiB below stay mostly unsent.
    let slow = serde_json::json!({"intervals": [{"days_of_week": [0, 1, 2, 3, 4, 5, 6], "start_hour": 0, "start_minute": 0,
        "end_hour": 23, "end_minute": 59, "upload_bits_per_sec": 4_194_304u64}], "utc_offset_minutes": 0});
    gw.put("/api/v1/bandwidth").send_json(slow).expect("bandwidth");
    // Random, so that compression leaves the chunks their size.
    let random = work.path().join("random.img");
    random_file(&random, 16 * MIB);
    assert_qemu_ok(&qemu_io(&gw.url(&iqn), &[format!("write -s {} 0 16m", random.display())], Duration::from_secs(60)), "write");
    gw.kill();

    let gw = Gateway::start_in_with(&data, iscsi_port, api_port, options);
    let v = json(&gw, &["volume", "show", "boot", "--json"]);
    assert_eq!(v["state"], "BOOTSTRAPPING", "{v}\n{}", gw.log_text());
    let (done, total) = (v["progress"]["done"].as_u64().expect("done"), v["progress"]["total"].as_u64().expect("total"));
    assert!(total >= 8 * MIB && done < total, "{v}");
    let shown = cli_ok(&gw, &["volume", "show", "boot"]);
    assert!(shown.contains("BOOTSTRAPPING (") && shown.contains(" left)"), "{shown}");
    gw.put("/api/v1/bandwidth").send_json(serde_json::json!({"intervals": []})).expect("no limit");
    assert!(
        wait_until(Duration::from_secs(120), || json(&gw, &["volume", "show", "boot", "--json"])["state"] == "AVAILABLE"),
        "{}",
        gw.log_text()
    );
    let v = json(&gw, &["volume", "show", "boot", "--json"]);
    assert!(v.get("progress").is_none(), "{v}");
}
