//! Full and failing disks under a cached volume, and upload failures that
//! do not go away (issue 14, finding 3): the daemon refuses a cache that
//! cannot get its size; a cache disk that runs out of space fails the
//! writes that need it with SPACE ALLOCATION FAILED, keeps serving reads,
//! says so in health, `sgw_health` and the volume's state, and recovers by
//! itself once space returns; a permanent upload failure is retried with
//! backoff and logged once, not 80 times a second.
//!
//! The disk-full test mounts a small tmpfs (root only); where mounting is
//! not possible it skips, unless SGW_REQUIRE_PEERS is set.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use sgw_tests::{free_port, have_scsi_client, python_script, run, sgw_bin, skip, text, wait_until, Gateway, GatewayOptions};

const MIB: u64 = 1 << 20;

/// Runs `tests/python/disk_io.py` steps against a volume; one output line
/// per step.
fn disk_io(gw: &Gateway, iqn: &str, steps: &[&str]) -> Vec<String> {
    let portal = format!("127.0.0.1:{}", gw.iscsi_port);
    let out = run(
        Command::new("python3").arg(python_script("disk_io.py")).args(["--portal", &portal, "--target", iqn]).args(steps),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "disk_io.py {steps:?}:\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

fn assert_all_good(lines: &[String], what: &str) {
    assert!(!lines.is_empty() && lines.iter().all(|l| l.ends_with(": GOOD")), "{what}: {lines:?}");
}

fn health(gw: &Gateway) -> serde_json::Value {
    gw.get("/api/v1/health").call().expect("health").into_json().expect("health json")
}

fn volume_state(gw: &Gateway, name: &str) -> String {
    let v: serde_json::Value =
        gw.get(&format!("/api/v1/volumes/{name}")).call().expect("volume").into_json().expect("volume json");
    v["state"].as_str().unwrap_or_default().to_owned()
}

/// The reason health gives for `component`, while it is degraded.
fn degraded_reason(h: &serde_json::Value, component: &str) -> Option<String> {
    h["degraded"].as_array()?.iter().find(|f| f["component"] == component)?["reason"].as_str().map(str::to_owned)
}

/// A tmpfs of a fixed size, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).expect("mount point");
        let out = run(
            Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"]).arg(dir),
            Duration::from_secs(30),
        );
        if out.status.success() {
            return Some(Tmpfs { dir: dir.to_path_buf() });
        }
        skip(&format!("cannot mount a tmpfs (needs root): {}", text(&out)));
        None
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // The gateway on it was stopped first (dropped before this).
        for _ in 0..50 {
            if Command::new("umount").arg(&self.dir).status().is_ok_and(|s| s.success()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!("could not unmount {}", self.dir.display());
    }
}

/// Fills the file system of `path` with a file there until ENOSPC.
fn fill(path: &Path, limit_bytes: u64) {
    let mut f = std::fs::File::create(path).expect("filler");
    let block = vec![0x5au8; MIB as usize];
    let mut written = 0;
    while written < limit_bytes {
        match f.write_all(&block).and_then(|()| f.sync_data()) {
            Ok(()) => written += MIB,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "filling {}: {e}", path.display());
                return;
            }
        }
    }
    panic!("{} did not fill up within {limit_bytes} bytes", path.display());
}

/// Writes into the cache disk of a volume's data dir on a 384 MiB tmpfs,
/// fills the tmpfs, writes into chunks whose slots the file system can no
/// longer give, then frees the space.
///
/// The gateway reserves its cache file's blocks at start, so a full file
/// system cannot fail cache writes where reservations hold (ext4, XFS,
/// tmpfs). Where they do not (ZFS, btrfs after a snapshot) a slot's first
/// write still allocates: the test stands for that by punching holes into
/// the cache file's free slots before filling the tmpfs.
#[test]
fn a_full_cache_disk_fails_writes_keeps_reads_and_recovers_without_restart() {
    if !have_scsi_client() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let mnt = tmp.path().join("mnt");
    let Some(tmpfs) = Tmpfs::mount(&mnt, "384m") else { return };
    let gw = Gateway::start_in_with(&mnt, free_port(), free_port(), GatewayOptions::args(&["--cache-size", "48MiB"]));
    let iqn = gw.create_volume("full", 64 * MIB);
    assert_all_good(&disk_io(&gw, &iqn, &["write", "0", "8", "0xa1", "sync"]), "first writes");

    // Slots are handed out lowest first: MiB 0-7 are in slots 0-7. The
    // free slots, from 8 on, lose their blocks.
    let disk = mnt.join("cache/disk0.img");
    let len = std::fs::metadata(&disk).expect("cache disk").len();
    let from = 4096 + 8 * MIB;
    let punch = run(
        Command::new("fallocate")
            .args(["--punch-hole", "--offset", &from.to_string(), "--length", &(len - from).to_string()])
            .arg(&disk),
        Duration::from_secs(30),
    );
    assert!(punch.status.success(), "fallocate: {}", text(&punch));
    let filler = mnt.join("filler");
    fill(&filler, 512 * MIB);

    let lines = disk_io(&gw, &iqn, &["write", "16", "4", "0xb2", "read", "0", "8", "0xa1"]);
    assert!(lines[0].contains("CHECK CONDITION DATA PROTECT 27/07"), "SPACE ALLOCATION FAILED WRITE PROTECT: {lines:?}");
    assert_eq!(lines[1], "read 0 8: GOOD", "earlier data reads back");
    let degraded = wait_until(Duration::from_secs(15), || {
        degraded_reason(&health(&gw), "cache").is_some_and(|r| r.contains("No space left on device"))
    });
    let h = health(&gw);
    assert!(degraded, "health names the full cache disk: {h}\n{}", gw.log_text());
    assert_eq!(h["status"], "degraded");
    assert_eq!(gw.metric("sgw_health{component=\"cache\"}"), Some(0.0));
    assert_eq!(volume_state(&gw, "full"), "CACHE_FAILED");
    let list = gw.cli(&["volume", "list"]);
    assert!(text(&list).contains("CACHE_FAILED"), "volume list shows it: {}", text(&list));
    assert!(gw.log_text().contains("cache degraded"), "a WARN line for the events list");

    std::fs::remove_file(&filler).expect("remove filler");
    let recovered = wait_until(Duration::from_secs(30), || degraded_reason(&health(&gw), "cache").is_none());
    assert!(recovered, "the cache recovers without a restart: {}\n{}", health(&gw), gw.log_text());
    assert_eq!(gw.metric("sgw_health{component=\"cache\"}"), Some(1.0));
    assert_ne!(volume_state(&gw, "full"), "CACHE_FAILED");
    let lines = disk_io(&gw, &iqn, &["write", "16", "4", "0xb2", "sync", "read", "16", "4", "0xb2", "read", "0", "8", "0xa1"]);
    assert_all_good(&lines, "writes work again");
    // Uploads that failed while the tmpfs was full resume after their
    // backoff (at most a minute).
    let all_ok = wait_until(Duration::from_secs(90), || health(&gw)["status"] == "ok");
    assert!(all_ok, "health ok again: {}\n{}", health(&gw), gw.log_text());
    drop(gw);
    drop(tmpfs);
}

/// Others fill the file system while the gateway is down: its cache file
/// already holds every block it needs (and data not yet uploaded), so the
/// restart goes on and serves it.
#[test]
fn a_restart_on_a_file_system_filled_by_others_starts_with_the_cache_it_holds() {
    if !have_scsi_client() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let mnt = tmp.path().join("mnt");
    let Some(tmpfs) = Tmpfs::mount(&mnt, "384m") else { return };
    let (iscsi_port, api_port) = (free_port(), free_port());
    let options = GatewayOptions::args(&["--cache-size", "48MiB"]);
    let mut gw = Gateway::start_in_with(&mnt, iscsi_port, api_port, options.clone());
    let iqn = gw.create_volume("held", 64 * MIB);
    assert_all_good(&disk_io(&gw, &iqn, &["write", "0", "8", "0xc3", "sync"]), "writes");
    gw.kill();
    // Full, then 8 MiB given back: less than the 5% (19 MiB) kept free.
    let filler = mnt.join("filler");
    fill(&filler, 512 * MIB);
    let f = std::fs::OpenOptions::new().write(true).open(&filler).expect("filler");
    let len = f.metadata().expect("filler").len();
    f.set_len(len - 8 * MIB).expect("shrink filler");
    drop(f);
    let gw = Gateway::start_in_with(&mnt, iscsi_port, api_port, options);
    assert_all_good(&disk_io(&gw, &iqn, &["read", "0", "8", "0xc3"]), "the cache's data after the restart");
    drop(gw);
    drop(tmpfs);
}

/// A restart with a cache larger than its file system can give is
/// refused, naming what it could have.
#[test]
fn start_is_refused_when_the_cache_cannot_get_its_size() {
    let mut gw = Gateway::start();
    let data_dir = gw.data_dir.clone();
    assert!(gw.stop(), "clean stop");
    let listen = |port: u16| format!("127.0.0.1:{port}");
    let out: Output = run(
        Command::new(sgw_bin())
            .args(["serve", "--data-dir"])
            .arg(&data_dir)
            .args(["--iscsi-listen", &listen(free_port()), "--api-listen", &listen(free_port())])
            .args(["--https-listen", &listen(free_port()), "--cache-size", "1PiB"]),
        Duration::from_secs(60),
    );
    let said = text(&out);
    assert!(!out.status.success(), "refused: {said}");
    assert!(said.contains("does not fit") && said.contains("at most"), "names the size available: {said}");
    assert!(
        std::fs::metadata(data_dir.join("cache/disk0.img")).is_ok_and(|m| m.len() < MIB << 30),
        "the cache disk was left as it was"
    );
}

/// Breaks the embedded store for good (its temp directory becomes a
/// file: every PUT fails, not retryably) while a volume has data to
/// upload, and counts the WARN lines.
#[test]
fn a_permanent_upload_failure_backs_off_and_is_logged_once() {
    if !have_scsi_client() {
        return;
    }
    let gw = Gateway::start_with(GatewayOptions::args(&["--cache-size", "64MiB"]));
    let iqn = gw.create_volume("flood", 64 * MIB);
    let store_tmp = gw.data_dir.join("objects/tmp");
    std::fs::remove_dir_all(&store_tmp).expect("store temp dir");
    std::fs::write(&store_tmp, b"not a directory").expect("break the store");
    let log_before = gw.log_text().lines().count();
    assert_all_good(&disk_io(&gw, &iqn, &["write", "0", "8", "0xc3", "sync"]), "writes go to the cache");

    let degraded = wait_until(Duration::from_secs(15), || degraded_reason(&health(&gw), "uploads").is_some());
    assert!(degraded, "health names the failing uploads: {}\n{}", health(&gw), gw.log_text());
    assert_eq!(gw.metric("sgw_health{component=\"uploads\"}"), Some(0.0));
    std::thread::sleep(Duration::from_secs(8));
    let log = gw.log_text();
    let warnings: Vec<&str> = log.lines().skip(log_before).filter(|l| l.contains("WARN")).collect();
    let upload_warnings = warnings.iter().filter(|l| l.contains("upload failed")).count();
    assert_eq!(upload_warnings, 1, "one cause, logged once: {warnings:#?}");
    assert!(warnings.len() <= 4, "no flood of WARN lines: {warnings:#?}");
    let reason = degraded_reason(&health(&gw), "uploads").unwrap_or_default();
    assert!(reason.contains("Not a directory"), "the cause, without the object: {reason}");

    std::fs::remove_file(&store_tmp).expect("unbreak the store");
    std::fs::create_dir(&store_tmp).expect("store temp dir");
    let recovered = wait_until(Duration::from_secs(90), || health(&gw)["status"] == "ok");
    assert!(recovered, "uploads resume after their backoff: {}\n{}", health(&gw), gw.log_text());
    assert_eq!(gw.metric("sgw_health{component=\"uploads\"}"), Some(1.0));
}
