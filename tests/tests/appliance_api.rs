//! The appliance's endpoints on a gateway that is not an appliance, and
//! the update endpoint's checks: power control and updates are refused
//! where they are not configured, the disk list answers, and a package
//! signed with another key (or none at all) changes nothing. The whole
//! path (sgw-update.service, the restart) runs in the appliance boot test.

use std::process::Command;

use sgw_tests::{free_port, sgw_bin, Gateway, GatewayOptions};

fn status_and_body(r: Result<ureq::Response, ureq::Error>) -> (u16, String) {
    match r {
        Ok(resp) => (resp.status(), resp.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, resp)) => (code, resp.into_string().unwrap_or_default()),
        Err(e) => panic!("transport error: {e}"),
    }
}

#[test]
fn power_and_updates_are_refused_where_not_configured() {
    let gw = Gateway::start();
    let (code, body) = status_and_body(gw.post("/api/v1/system/power").send_json(serde_json::json!({"action": "reboot"})));
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("power_control"), "{body}");
    let (code, body) = status_and_body(gw.post("/api/v1/system/power").send_json(serde_json::json!({"action": "explode"})));
    assert_eq!(code, 400, "{body}");
    let (code, body) = status_and_body(gw.post("/api/v1/update").send_bytes(b"anything"));
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("update_public_key"), "{body}");
    let (code, body) = status_and_body(gw.get("/api/v1/disks").call());
    assert_eq!(code, 200, "{body}");
    assert!(serde_json::from_str::<Vec<serde_json::Value>>(&body).is_ok(), "{body}");
    // Without credentials: 401, like every other route.
    let (code, _) = status_and_body(ureq::get(&format!("{}/api/v1/disks", gw.api())).call());
    assert_eq!(code, 401);
}

#[test]
fn update_packages_must_carry_the_appliances_signature() {
    let tmp = tempfile::tempdir().unwrap();
    let sgw = sgw_bin();
    let keygen = |name: &str| {
        let out = Command::new(&sgw).args(["update", "keygen", "--out"]).arg(tmp.path().join(name)).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::write(tmp.path().join(format!("{name}.pub")), &out.stdout).unwrap();
    };
    keygen("appliance.key");
    keygen("stranger.key");
    let config = tmp.path().join("sgw.toml");
    std::fs::write(&config, format!("update_public_key = {:?}\n", tmp.path().join("appliance.key.pub").display().to_string())).unwrap();
    let data = tmp.path().join("data");
    let gw = Gateway::start_in_with(&data, free_port(), free_port(), GatewayOptions::args(&["--config", &config.display().to_string()]));

    let pack = |key: &str, out: &str| {
        let o = Command::new(&sgw)
            .args(["update", "pack", "--key"])
            .arg(tmp.path().join(key))
            .arg("--binary")
            .arg(&sgw)
            .arg("--out")
            .arg(tmp.path().join(out))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read(tmp.path().join(out)).unwrap()
    };
    let foreign = pack("stranger.key", "foreign.tar");
    let (code, body) = status_and_body(gw.post("/api/v1/update").send_bytes(&foreign));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("signature does not verify"), "{body}");
    let (code, body) = status_and_body(gw.post("/api/v1/update").send_bytes(b"\x00not a tarball"));
    assert_eq!(code, 400, "{body}");
    assert!(!data.join("updates/pending.tar").exists(), "a refused package was kept");

    // Applying by hand, as sgw-update.service does: the right key installs
    // (the old binary kept), another key's package changes nothing.
    let target = tmp.path().join("bin/sgw");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::write(&target, b"old").unwrap();
    let apply = |pkg: &str| {
        Command::new(&sgw)
            .args(["update", "apply"])
            .arg(tmp.path().join(pkg))
            .arg("--public-key")
            .arg(tmp.path().join("appliance.key.pub"))
            .arg("--target")
            .arg(&target)
            .output()
            .unwrap()
    };
    let refused = apply("foreign.tar");
    assert!(!refused.status.success());
    assert_eq!(std::fs::read(&target).unwrap(), b"old");
    pack("appliance.key", "good.tar");
    let applied = apply("good.tar");
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    assert_eq!(std::fs::read(&target).unwrap(), std::fs::read(&sgw).unwrap());
    assert_eq!(std::fs::read(tmp.path().join("bin/sgw.previous")).unwrap(), b"old");
    assert!(!tmp.path().join("good.tar").exists(), "the applied package is removed");
}
