//! What initiators set on a volume outlives the gateway (issue 14, finding
//! 10): persistent reservations made with APTPL=1 and an ejected medium
//! survive SIGKILL, and `sgw recover` brings a volume back with its
//! presentation flags (removable, CHAP, the initiator list).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sgw_tests::{free_port, have_scsi_client, python_script, run, text, Gateway, GatewayOptions};

const MIB: u64 = 1 << 20;

/// Runs `tests/python/pr_state.py` steps; one output line per step.
fn pr_state(gw: &Gateway, iqn: &str, steps: &[&str]) -> Vec<String> {
    let portal = format!("127.0.0.1:{}", gw.iscsi_port);
    let out = run(
        Command::new("python3").arg(python_script("pr_state.py")).args(["--portal", &portal, "--target", iqn]).args(steps),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "pr_state.py {steps:?}:\n{}\n{}", text(&out), gw.log_text());
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

fn restart_after_sigkill(gw: &mut Gateway) -> Gateway {
    gw.kill();
    Gateway::start_in(&gw.data_dir.clone(), gw.iscsi_port, gw.api_port)
}

#[test]
fn aptpl_reservations_survive_sigkill() {
    if !have_scsi_client() {
        return;
    }
    let mut gw = Gateway::start();
    let iqn = gw.create_volume("cluster", 16 * MIB);
    let before = pr_state(&gw, &iqn, &["caps", "register", "c1a5", "reserve", "c1a5", "5", "keys", "reservation", "caps"]);
    assert_eq!(
        before,
        [
            "caps: PTPL_C=1 PTPL_A=0",
            "register c1a5: GOOD",
            "reserve c1a5 5: GOOD",
            "keys: 0xc1a5",
            "reservation: key=0xc1a5 type=5",
            "caps: PTPL_C=1 PTPL_A=1",
        ]
    );
    let gw2 = restart_after_sigkill(&mut gw);
    let after = pr_state(&gw2, &iqn, &["keys", "reservation", "caps"]);
    assert_eq!(after, ["keys: 0xc1a5", "reservation: key=0xc1a5 type=5", "caps: PTPL_C=1 PTPL_A=1"]);
}

#[test]
fn an_ejected_medium_stays_out_after_sigkill() {
    if !have_scsi_client() {
        return;
    }
    let mut gw = Gateway::start();
    let iqn = gw.create_volume_json(serde_json::json!({ "name": "rdx", "size_bytes": 16 * MIB, "removable": true }));
    assert_eq!(pr_state(&gw, &iqn, &["tur", "eject", "tur"]), ["tur: GOOD", "eject: GOOD", "tur: CHECK CONDITION sense=2/3a/00"]);
    let gw2 = restart_after_sigkill(&mut gw);
    // NOT READY, MEDIUM NOT PRESENT until it is loaded again.
    assert_eq!(pr_state(&gw2, &iqn, &["tur", "load", "tur"]), ["tur: CHECK CONDITION sense=2/3a/00", "load: GOOD", "tur: GOOD"]);
}

/// A config file that puts the embedded store outside the data directory,
/// so that a fresh data directory finds the same bucket.
fn external_store_config(dir: &Path) -> PathBuf {
    let config = dir.join("sgw.toml");
    std::fs::write(
        &config,
        format!(
            "recovery_point_interval_secs = 3600\n[cloud]\nprefix = \"site-r\"\n[cloud.store]\nkind = \"local\"\nroot = \"{}\"\n",
            dir.join("objects").display()
        ),
    )
    .expect("config");
    config
}

fn volume(gw: &Gateway, name: &str) -> serde_json::Value {
    gw.get(&format!("/api/v1/volumes/{name}")).call().expect("volume").into_json().expect("volume json")
}

#[test]
fn recover_restores_the_presentation_flags() {
    let work = tempfile::tempdir().expect("tempdir");
    let config = external_store_config(work.path());
    let data = work.path().join("data");
    let o = GatewayOptions::args(&["--config", &config.display().to_string()]);
    let mut gw = Gateway::start_in_with(&data, free_port(), free_port(), o);
    gw.create_volume_json(serde_json::json!({
        "name": "vault",
        "size_bytes": 16 * MIB,
        "removable": true,
        "chap": { "user": "vault-user", "secret": "vault-secret-1234", "mutual_user": "tgt", "mutual_secret": "target-secret-987" },
        "initiators": ["iqn.2026-01.test.sgw:pyclient"],
    }));
    let out = gw.cli(&["volume", "recovery-point", "vault"]);
    assert!(out.status.success(), "{}", text(&out));
    let key = work.path().join("master.key");
    std::fs::copy(data.join("master.key"), &key).expect("keep the key apart");
    gw.kill();

    let o2 = GatewayOptions::args(&["--config", &config.display().to_string(), "--key-file", &key.display().to_string()]);
    let gw2 = Gateway::start_in_with(&work.path().join("fresh"), free_port(), free_port(), o2);
    let out = gw2.cli(&["recover"]);
    assert!(out.status.success(), "{}\n{}", text(&out), gw2.log_text());
    let v = volume(&gw2, "vault");
    assert_eq!(v["removable"], true, "{v}");
    assert_eq!(v["initiators"], serde_json::json!(["iqn.2026-01.test.sgw:pyclient"]), "{v}");
    // CHAP is still required (with secrets the admin must set again: the
    // bucket does not hold them), never dropped.
    assert_eq!(v["chap_enabled"], true, "{v}");
    assert_eq!(v["mutual_chap_enabled"], true, "{v}");
}
