//! CHAP: the right secret logs in, a wrong or missing one is refused, and
//! mutual CHAP works both ways (libiscsi checks the target's answer).

use std::process::Command;
use std::time::Duration;

use sgw_tests::{have_tool, run, text, Gateway};

const USER: &str = "backup-host";
const SECRET: &str = "initiator-secret-1";
const TARGET_USER: &str = "sgw-target";
const TARGET_SECRET: &str = "target-secret-22";

fn inq(url: &str, target_chap: Option<(&str, &str)>) -> (bool, String) {
    let mut cmd = Command::new("iscsi-inq");
    cmd.arg(url);
    if let Some((u, s)) = target_chap {
        cmd.env("LIBISCSI_CHAP_TARGET_USERNAME", u).env("LIBISCSI_CHAP_TARGET_PASSWORD", s);
    }
    let out = run(&mut cmd, Duration::from_secs(30));
    (out.status.success(), text(&out))
}

#[test]
fn one_way_chap() {
    if !have_tool("iscsi-inq") {
        return;
    }
    let gw = Gateway::start();
    let iqn = gw.create_volume_json(serde_json::json!({
        "name": "chap1", "size_bytes": 16 << 20,
        "chap": { "user": USER, "secret": SECRET }
    }));
    let (ok, t) = inq(&gw.url_chap(&iqn, USER, SECRET), None);
    assert!(ok, "right secret refused: {t}");
    assert!(t.contains("SGW"), "{t}");
    let (ok, t) = inq(&gw.url_chap(&iqn, USER, "wrong-secret-123"), None);
    assert!(!ok, "wrong secret accepted: {t}");
    let (ok, t) = inq(&gw.url_chap(&iqn, "someone-else", SECRET), None);
    assert!(!ok, "wrong user accepted: {t}");
    let (ok, t) = inq(&gw.url(&iqn), None);
    assert!(!ok, "missing secret accepted: {t}");
}

#[test]
fn mutual_chap() {
    if !have_tool("iscsi-inq") {
        return;
    }
    let gw = Gateway::start();
    let iqn = gw.create_volume_json(serde_json::json!({
        "name": "chap2", "size_bytes": 16 << 20,
        "chap": { "user": USER, "secret": SECRET, "mutual_user": TARGET_USER, "mutual_secret": TARGET_SECRET }
    }));
    let url = gw.url_chap(&iqn, USER, SECRET);
    let (ok, t) = inq(&url, Some((TARGET_USER, TARGET_SECRET)));
    assert!(ok, "mutual CHAP failed: {t}");
    // The initiator refuses a target that cannot prove the secret it expects.
    let (ok, t) = inq(&url, Some((TARGET_USER, "not-the-target-secret")));
    assert!(!ok, "initiator accepted a wrong target secret: {t}");
    // Without asking for mutual CHAP the login is refused: the target is
    // configured to prove itself, and a one-way login would skip that.
    let (ok, t) = inq(&url, None);
    assert!(!ok, "one-way login to a mutual-CHAP target accepted: {t}");
}

#[test]
fn chap_changes_apply_at_the_next_login() {
    if !have_tool("iscsi-inq") {
        return;
    }
    let gw = Gateway::start();
    let iqn = gw.create_volume("chap3", 16 << 20);
    let (ok, t) = inq(&gw.url(&iqn), None);
    assert!(ok, "an open volume refused: {t}");
    // Through the API: CHAP on.
    let r = gw
        .patch("/api/v1/volumes/chap3")
        .send_json(serde_json::json!({"chap": {"user": USER, "secret": SECRET}}))
        .expect("patch");
    let v: serde_json::Value = r.into_json().expect("json");
    assert_eq!(v["chap_enabled"], true);
    assert!(!inq(&gw.url(&iqn), None).0, "login without CHAP accepted after the change");
    assert!(inq(&gw.url_chap(&iqn, USER, SECRET), None).0, "the new secret refused");
    // `{}` changes nothing and says so.
    match gw.patch("/api/v1/volumes/chap3").send_json(serde_json::json!({})) {
        Err(ureq::Error::Status(400, _)) => {}
        other => panic!("empty PATCH: {other:?}"),
    }
    // Through the CLI, the secret from a file (never argv): a new secret.
    let file = gw.data_dir.join("chap-secret");
    std::fs::write(&file, "another-secret-99\n").expect("secret file");
    let out = gw.cli(&["volume", "set-chap", "chap3", "--chap-user", USER, "--chap-secret-file", &file.to_string_lossy()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!inq(&gw.url_chap(&iqn, USER, SECRET), None).0, "the old secret still works");
    assert!(inq(&gw.url_chap(&iqn, USER, "another-secret-99"), None).0, "the new secret refused");
    // Off again; the change survives a restart.
    let out = gw.cli(&["volume", "set-chap", "chap3", "--none"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(inq(&gw.url(&iqn), None).0, "CHAP removed but login refused");
    let vols = gw.cli(&["volume", "list", "--json"]);
    assert!(String::from_utf8_lossy(&vols.stdout).contains("\"chap_enabled\": false"), "{}", text(&vols));
}
