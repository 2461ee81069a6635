//! A real initiator's data path: qemu's iscsi driver (qemu-img, qemu-io)
//! against a volume.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use sgw_tests::{have_tool, run, text, Gateway};

fn sha256(path: &std::path::Path) -> String {
    let out = run(Command::new("sha256sum").arg(path), Duration::from_secs(120));
    text(&out).split_whitespace().next().unwrap_or_default().to_string()
}

#[test]
fn qemu_img_round_trip_of_a_512_mib_random_image() {
    if !have_tool("qemu-img") {
        return;
    }
    const SIZE: u64 = 512 << 20;
    let gw = Gateway::start();
    let iqn = gw.create_volume("roundtrip", SIZE);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.img");
    let output = dir.path().join("out.img");
    {
        let mut f = std::fs::File::create(&input).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..SIZE >> 20 {
            rand::Rng::fill(&mut rand::thread_rng(), &mut buf[..]);
            f.write_all(&buf).unwrap();
        }
    }
    let url = gw.url(&iqn);
    let up = run(
        Command::new("qemu-img").args(["convert", "-n", "-f", "raw", "-O", "raw", "-t", "none"]).arg(&input).arg(&url),
        Duration::from_secs(600),
    );
    assert!(up.status.success(), "upload: {}", text(&up));
    let opts = format!(
        "driver=raw,size={SIZE},file.driver=iscsi,file.transport=tcp,file.portal=127.0.0.1:{},file.target={iqn},file.lun=0",
        gw.iscsi_port
    );
    let down = run(
        Command::new("qemu-img").args(["convert", "-O", "raw", "--image-opts", &opts]).arg(&output),
        Duration::from_secs(600),
    );
    assert!(down.status.success(), "download: {}", text(&down));
    assert_eq!(sha256(&input), sha256(&output));
}

#[test]
fn qemu_io_patterns_aligned_and_unaligned() {
    if !have_tool("qemu-io") {
        return;
    }
    let gw = Gateway::start();
    let iqn = gw.create_volume("patterns", 64 << 20);
    let url = gw.url(&iqn);
    // (offset, length) from 512 B to 4 MiB, aligned and not.
    let cases: &[(u64, u64)] = &[
        (0, 512),
        (4096, 4096),
        (1_000_000, 777),
        (123_457, 65_537),
        (8 << 20, 1 << 20),
        (13_000_001, 4 << 20),
        (40 << 20, 4 << 20),
        ((64 << 20) - 512, 512),
    ];
    let mut args: Vec<String> = Vec::new();
    for (i, (off, len)) in cases.iter().enumerate() {
        let pat = 0x11 + i as u8 * 0x11;
        args.push("-c".into());
        args.push(format!("write -P 0x{pat:02x} {off} {len}"));
    }
    for (i, (off, len)) in cases.iter().enumerate() {
        let pat = 0x11 + i as u8 * 0x11;
        args.push("-c".into());
        args.push(format!("read -P 0x{pat:02x} {off} {len}"));
    }
    let out = run(Command::new("qemu-io").args(["-f", "raw"]).args(&args).arg(&url), Duration::from_secs(300));
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(!t.contains("Pattern verification failed") && !t.contains("failed"), "{t}");
    assert_eq!(t.matches("read ").count(), cases.len(), "{t}");
    // FUA writes too (-f).
    let out = run(
        Command::new("qemu-io").args(["-f", "raw", "-c", "write -f -P 0x77 2m 1m", "-c", "read -P 0x77 2m 1m"]).arg(&url),
        Duration::from_secs(120),
    );
    let t = text(&out);
    assert!(out.status.success() && !t.contains("failed"), "{t}");
}
