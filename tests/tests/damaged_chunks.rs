//! Damaged cloud data (issue 14, finding 8): a chunk object in the bucket
//! with one byte flipped, then a 4 KiB write into that chunk. The volume
//! reports the damage (state, `damaged` ranges, metric, event), a recovery
//! point fails clearly instead of hanging, the uploader goes on with other
//! chunks, a scrub names the range, and writing the whole chunk again
//! repairs it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use sgw_tests::{have_tool, run, sgw_bin, text, wait_until, Gateway, GatewayOptions};

const MIB: u64 = 1 << 20;
/// Chunk 1 of 1 MiB chunks, in 512-byte blocks.
const CHUNK1_LBAS: &str = "LBA 2048-4095";

fn qemu_io(url: &str, cmds: &[&str]) -> Output {
    let mut c = Command::new("qemu-io");
    c.args(["-f", "raw"]);
    for cmd in cmds {
        c.args(["-c", cmd]);
    }
    run(c.arg(url), Duration::from_secs(60))
}

fn qemu_ok(out: &Output) -> bool {
    let t = text(out);
    out.status.success() && !t.contains("failed") && !t.contains("error")
}

/// The chunk objects of the embedded store under `dir`.
fn chunk_objects(dir: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().contains("/objects/")
                && p.to_string_lossy().contains("chunks")
                && p.extension().is_some_and(|x| x == "o")
            {
                found.insert(p);
            }
        }
    }
    found
}

/// The CLI with a time bound: whatever it answers, it must answer.
fn cli_bounded(gw: &Gateway, args: &[&str], limit: Duration) -> Output {
    run(
        Command::new(sgw_bin())
            .arg("--api")
            .arg(gw.socket_api())
            .args(args),
        limit,
    )
}

fn cli_ok(gw: &Gateway, args: &[&str]) -> String {
    let out = cli_bounded(gw, args, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "sgw {args:?}: {}\n{}",
        text(&out),
        gw.log_text()
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn volume_json(gw: &Gateway, name: &str) -> serde_json::Value {
    let out = cli_ok(gw, &["volume", "show", name, "--json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("volume show --json: {e}: {out}"))
}

#[test]
fn a_tampered_chunk_is_reported_and_never_wedges_recovery_points() {
    if !have_tool("qemu-io") {
        return;
    }
    let gw = Gateway::start_with(GatewayOptions::args(&["--cache-size", "64MiB"]));
    let src_url = gw.url(&gw.create_volume("src", 8 * MIB));
    let before = chunk_objects(&gw.data_dir);
    // Chunk 1 holds data (one object); chunk 2 too, and stays intact.
    assert!(
        qemu_ok(&qemu_io(
            &src_url,
            &["write -P 0xab 1m 1m", "write -P 0xcd 2m 1m"]
        )),
        "write src"
    );
    cli_ok(&gw, &["volume", "recovery-point", "src"]);
    let new: Vec<PathBuf> = chunk_objects(&gw.data_dir)
        .difference(&before)
        .cloned()
        .collect();
    // The clone starts from src's map with an empty cache: its reads and
    // merges need the cloud copies.
    cli_ok(&gw, &["volume", "create", "dst", "--from-volume", "src"]);
    let dst_iqn = volume_json(&gw, "dst")["target_iqn"]
        .as_str()
        .map(str::to_owned)
        .expect("target_iqn");
    let dst_url = gw.url(&dst_iqn);
    // (dst is not read before the damage: a read would fill its cache.)

    // Flip the last byte (the chunk's authentication tag) of the object
    // whose content is chunk 1: find it as the one whose damage a scrub
    // pins on chunk 1.
    let mut damaged_object = None;
    for path in &new {
        let mut bytes = std::fs::read(path).expect("read object");
        let Some(last) = bytes.last_mut() else {
            continue;
        };
        *last ^= 0x01;
        std::fs::write(path, &bytes).expect("tamper");
        let report: serde_json::Value =
            serde_json::from_str(&cli_ok(&gw, &["volume", "scrub", "src", "--json"]))
                .expect("scrub json");
        if report["damaged"]
            .as_array()
            .is_some_and(|d| d.iter().any(|c| c["chunk"] == 1))
        {
            damaged_object = Some(path.clone());
            break;
        }
        // Not chunk 1's object (another chunk, or a manifest page): undo.
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        std::fs::write(path, &bytes).expect("untamper");
        cli_ok(&gw, &["volume", "scrub", "src"]);
    }
    assert!(
        damaged_object.is_some(),
        "no object of {new:?} is chunk 1's:\n{}",
        gw.log_text()
    );

    // The scrub names the range in words too.
    let scrub = cli_ok(&gw, &["volume", "scrub", "src"]);
    assert!(scrub.contains(CHUNK1_LBAS), "scrub output: {scrub}");

    // A 4 KiB write into the damaged chunk of the clone is kept; the rest
    // of the chunk reads as MEDIUM ERROR, the written part and other
    // chunks read back.
    assert!(
        qemu_ok(&qemu_io(&dst_url, &["write -P 0x11 1040k 4k"])),
        "write into the damaged chunk"
    );
    assert!(
        qemu_ok(&qemu_io(&dst_url, &["read -P 0x11 1040k 4k"])),
        "the written sectors read back"
    );
    assert!(
        !qemu_ok(&qemu_io(&dst_url, &["read 1m 4k"])),
        "unwritten sectors of the damaged chunk must fail"
    );
    assert!(
        qemu_ok(&qemu_io(&dst_url, &["read -P 0xcd 2m 1m"])),
        "an undamaged chunk reads back"
    );
    assert!(
        qemu_ok(&qemu_io(&dst_url, &["read -P 0 0 1m"])),
        "a zero chunk reads back"
    );

    // The recovery point answers within 30 s: here it fails, naming the range.
    let started = Instant::now();
    let rp = cli_bounded(
        &gw,
        &["volume", "recovery-point", "dst"],
        Duration::from_secs(30),
    );
    let rp_text = text(&rp);
    assert!(
        !rp.status.success(),
        "a recovery point cannot include the held writes: {rp_text}"
    );
    assert!(
        rp_text.contains(CHUNK1_LBAS) && rp_text.contains("dst"),
        "unclear error: {rp_text}"
    );
    eprintln!(
        "recovery point answered in {:?}: {rp_text}",
        started.elapsed()
    );

    // State, ranges, metric and the event.
    let v = volume_json(&gw, "dst");
    assert_eq!(v["state"], "DAMAGED", "{v}");
    let d = &v["damaged"][0];
    assert_eq!(
        (
            d["chunk"].as_u64(),
            d["first_lba"].as_u64(),
            d["last_lba"].as_u64()
        ),
        (Some(1), Some(2048), Some(4095)),
        "{v}"
    );
    assert_eq!(d["writes_held"], true, "{v}");
    let show = cli_ok(&gw, &["volume", "show", "dst"]);
    assert!(
        show.contains("DAMAGED") && show.contains(CHUNK1_LBAS),
        "volume show: {show}"
    );
    assert_eq!(
        gw.metric("sgw_volume_damaged_chunks{volume=\"dst\"}"),
        Some(1.0)
    );
    assert_eq!(
        gw.metric("sgw_volume_damaged_chunks{volume=\"src\"}"),
        Some(1.0)
    );
    let log = gw.log_text();
    assert!(
        log.contains("cannot be read back from the cloud"),
        "no event logged:\n{log}"
    );
    assert!(
        log.matches("cannot read a dirty chunk for upload").count() == 0,
        "the damaged chunk must be held, not retried:\n{log}"
    );

    // The uploader is not wedged: other chunks of the clone upload and a
    // write of the whole damaged chunk repairs it.
    assert!(
        qemu_ok(&qemu_io(
            &dst_url,
            &["write -P 0x22 3m 1m", "write -P 0x33 1m 1m"]
        )),
        "rewrite"
    );
    let rp = cli_bounded(
        &gw,
        &["volume", "recovery-point", "dst"],
        Duration::from_secs(30),
    );
    assert!(
        rp.status.success(),
        "recovery point after the rewrite: {}\n{}",
        text(&rp),
        gw.log_text()
    );
    assert!(
        wait_until(Duration::from_secs(10), || volume_json(&gw, "dst")
            .get("damaged")
            .is_none()),
        "the rewrite did not clear the damage: {}",
        volume_json(&gw, "dst")
    );
    assert_eq!(
        gw.metric("sgw_volume_damaged_chunks{volume=\"dst\"}"),
        Some(0.0)
    );
    assert!(
        qemu_ok(&qemu_io(
            &dst_url,
            &["read -P 0x33 1m 1m", "read -P 0x22 3m 1m"]
        )),
        "read after repair"
    );
}
