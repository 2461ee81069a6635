//! Durability: data survives a clean stop and start, and after SIGKILL every
//! write acknowledged before a completed SYNCHRONIZE CACHE, and every FUA
//! write, reads back.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use sgw_tests::{have_tool, run, text, Gateway};

const CHUNK: u64 = 64 * 1024;

#[test]
fn data_survives_stop_and_start() {
    if !have_tool("qemu-io") {
        return;
    }
    let mut gw = Gateway::start();
    let iqn = gw.create_volume("keep", 32 << 20);
    let out = run(Command::new("qemu-io").args(["-f", "raw", "-c", "write -P 0x3c 1m 3m"]).arg(gw.url(&iqn)), Duration::from_secs(60));
    assert!(out.status.success(), "{}", text(&out));
    assert!(gw.stop(), "sgw did not exit cleanly on SIGTERM:\n{}", gw.log_text());
    let dir = gw.data_dir.clone();
    let (ip, ap) = (gw.iscsi_port, gw.api_port);
    let gw2 = Gateway::start_in(&dir, ip, ap);
    let list = gw2.cli(&["volume", "list", "--json"]);
    assert!(String::from_utf8_lossy(&list.stdout).contains("\"keep\""));
    let out = run(Command::new("qemu-io").args(["-f", "raw", "-c", "read -P 0x3c 1m 3m"]).arg(gw2.url(&iqn)), Duration::from_secs(60));
    let t = text(&out);
    assert!(out.status.success() && !t.contains("failed"), "{t}");
    drop(gw);
}

/// Batches of four plain writes, a flush, then a FUA marker write: once the
/// marker is acknowledged, the flush before it completed too.
fn workload(batches: u64) -> Vec<String> {
    let mut args = Vec::new();
    for b in 0..batches {
        for k in 0..4 {
            args.push("-c".into());
            args.push(format!("write -P {} {} {}", pattern(b, k), (b * 5 + k) * CHUNK, CHUNK));
        }
        args.push("-c".into());
        args.push("flush".into());
        args.push("-c".into());
        args.push(format!("write -f -P {} {} {}", pattern(b, 4), (b * 5 + 4) * CHUNK, CHUNK));
    }
    args
}

fn pattern(b: u64, k: u64) -> u64 {
    (b * 7 + k * 13) % 250 + 1
}

#[test]
fn acknowledged_flushed_writes_survive_sigkill() {
    if !have_tool("qemu-io") {
        return;
    }
    let batches = 300;
    for round in 0..3u64 {
        let mut gw = Gateway::start();
        let iqn = gw.create_volume("crash", batches * 5 * CHUNK + (1 << 20));
        let url = gw.url(&iqn);
        // Line-buffered, so every acknowledgement printed before the kill
        // reaches the pipe.
        let mut child = Command::new("stdbuf")
            .args(["-oL", "qemu-io", "-f", "raw"])
            .args(workload(batches))
            .arg(&url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("qemu-io");
        // Kill the daemon part-way through the workload.
        std::thread::sleep(Duration::from_millis(300 + round * 400));
        gw.kill();
        // qemu's iscsi driver retries the dead portal forever: stop it.
        std::thread::sleep(Duration::from_millis(500));
        let _ = child.kill();
        let out = child.wait_with_output().expect("qemu-io output");
        let log = String::from_utf8_lossy(&out.stdout).to_string();
        // Offsets of acknowledged writes.
        let acked: Vec<u64> = log
            .lines()
            .filter_map(|l| l.strip_prefix("wrote "))
            .filter_map(|l| l.split(" at offset ").nth(1))
            .filter_map(|o| o.trim().parse().ok())
            .collect();
        let mut durable: BTreeMap<u64, u64> = BTreeMap::new();
        for b in 0..batches {
            let marker = (b * 5 + 4) * CHUNK;
            if acked.contains(&marker) {
                for k in 0..5 {
                    durable.insert((b * 5 + k) * CHUNK, pattern(b, k));
                }
            }
        }
        let dir = gw.data_dir.clone();
        let gw2 = Gateway::start_in(&dir, gw.iscsi_port, gw.api_port);
        let mut args = Vec::new();
        for (off, pat) in &durable {
            args.push("-c".to_string());
            args.push(format!("read -P {pat} {off} {CHUNK}"));
        }
        if args.is_empty() {
            eprintln!("round {round}: killed before the first flush completed");
            continue;
        }
        let check = run(Command::new("qemu-io").args(["-f", "raw"]).args(&args).arg(gw2.url(&iqn)), Duration::from_secs(300));
        let t = text(&check);
        assert!(check.status.success(), "{t}");
        assert!(!t.contains("Pattern verification failed"), "round {round}: a flushed write was lost:\n{t}");
        eprintln!("round {round}: {} flushed chunks verified after SIGKILL", durable.len());
        drop(gw);
    }
}
