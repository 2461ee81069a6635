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
