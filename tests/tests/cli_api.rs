//! The CLI and the REST API: volumes are created, listed, deleted and
//! persisted; bad input gets a 4xx with a message.

use sgw_tests::{text, Gateway};

fn status_and_body(r: Result<ureq::Response, ureq::Error>) -> (u16, serde_json::Value) {
    match r {
        Ok(resp) => (resp.status(), resp.into_json().unwrap_or(serde_json::Value::Null)),
        Err(ureq::Error::Status(code, resp)) => (code, resp.into_json().unwrap_or(serde_json::Value::Null)),
        Err(e) => panic!("transport error: {e}"),
    }
}

#[test]
fn cli_creates_lists_and_deletes() {
    let gw = Gateway::start();
    let out = gw.cli(&["volume", "create", "vol-a", "--size", "1GiB"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = gw.cli(&["volume", "create", "vol-b", "--size", "64M", "--chap-user", "u", "--chap-secret", "abcdefghijkl"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = gw.cli(&["volume", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json list");
    let vols = list.as_array().expect("array");
    assert_eq!(vols.len(), 2);
    assert_eq!(vols[0]["name"], "vol-a");
    assert_eq!(vols[0]["size_bytes"], 1u64 << 30);
    assert_eq!(vols[0]["target_iqn"], "iqn.2026-11.org.sgw:volume:vol-a");
    assert_eq!(vols[0]["lun"], 0);
    assert_eq!(vols[0]["state"], "AVAILABLE");
    assert_eq!(vols[1]["chap_enabled"], true);
    let table = gw.cli(&["volume", "list"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("vol-b"));
    let out = gw.cli(&["volume", "delete", "vol-a"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = gw.cli(&["volume", "delete", "vol-a"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("not found"), "{}", text(&out));
    let out = gw.cli(&["volume", "create", "vol-c", "--size", "lots"]);
    assert!(!out.status.success());
}

#[test]
fn api_rejects_bad_input_with_messages() {
    let gw = Gateway::start();
    let cases = [
        ("{not json", 400),
        (r#"{"name":"x"}"#, 400),
        (r#"{"name":"Bad_Name","size_bytes":1048576}"#, 400),
        (r#"{"name":"ok","size_bytes":1000}"#, 400),
        (r#"{"name":"ok","size_bytes":1048576,"extra":1}"#, 422),
        (r#"{"name":"ok","size_bytes":1048576,"chap":{"user":"u","secret":"short"}}"#, 400),
    ];
    for (body, want) in cases {
        let r = gw.post("/api/v1/volumes").set("content-type", "application/json").send_string(body);
        let (code, json) = status_and_body(r);
        assert_eq!(code, want, "{body} -> {code} {json}");
        assert!(json["error"].as_str().is_some_and(|m| !m.is_empty()), "{body}: no message in {json}");
    }
    let ok = r#"{"name":"dup","size_bytes":1048576}"#;
    let (code, _) = status_and_body(gw.post("/api/v1/volumes").set("content-type", "application/json").send_string(ok));
    assert_eq!(code, 201);
    let (code, json) = status_and_body(gw.post("/api/v1/volumes").set("content-type", "application/json").send_string(ok));
    assert_eq!(code, 409, "{json}");
    let (code, json) = status_and_body(gw.get("/api/v1/volumes/nope").call());
    assert_eq!(code, 404, "{json}");
    let (code, json) = status_and_body(gw.delete("/api/v1/volumes/nope").call());
    assert_eq!(code, 404, "{json}");
    let (code, _) = status_and_body(gw.get("/api/v1/nothing").call());
    assert_eq!(code, 404);
    let metrics = ureq::get(&format!("{}/metrics", gw.api())).call().unwrap().into_string().unwrap();
    assert!(metrics.contains("sgw_volumes 1"), "{metrics}");
}

#[test]
fn long_operations_report_progress() {
    let gw = Gateway::start();
    // No recovery runs: the status says so, without a progress.
    let status: serde_json::Value = gw.get("/api/v1/recover").call().expect("recover status").into_json().expect("json");
    assert_eq!(status, serde_json::json!({"running": false}));
    // A tape says since when it is in its state (e.g. how long a retrieval runs).
    let r = gw
        .post("/api/v1/tapes")
        .send_json(serde_json::json!({"barcode": "PROG0001", "size_bytes": 107374182400u64}))
        .expect("create tape");
    let tapes: serde_json::Value = r.into_json().expect("json");
    let since = tapes[0]["state_since_unix"].as_u64().expect("state_since_unix");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    assert!(since <= now && now - since < 120, "{since} vs {now}");
}

#[test]
fn bandwidth_schedule_is_set_at_run_time_and_kept() {
    let mut gw = Gateway::start();
    let weekdays = serde_json::json!({"intervals": [{"days_of_week": [1, 2, 3, 4, 5], "start_hour": 8, "start_minute": 0,
        "end_hour": 18, "end_minute": 0, "upload_bits_per_sec": 50000000u64, "download_bits_per_sec": null}], "utc_offset_minutes": 60});
    let (code, json) = status_and_body(gw.put("/api/v1/bandwidth").send_json(weekdays.clone()));
    assert_eq!(code, 200, "{json}");
    assert_eq!(json, weekdays);
    // Refused with the reason: a day 7, an end before the start.
    for bad in [
        serde_json::json!({"intervals": [{"days_of_week": [7], "start_hour": 8, "start_minute": 0, "end_hour": 9, "end_minute": 0, "upload_bits_per_sec": 1}]}),
        serde_json::json!({"intervals": [{"days_of_week": [1], "start_hour": 9, "start_minute": 0, "end_hour": 8, "end_minute": 0, "upload_bits_per_sec": 1}]}),
    ] {
        let (code, json) = status_and_body(gw.put("/api/v1/bandwidth").send_json(bad.clone()));
        assert_eq!(code, 400, "{bad} -> {json}");
        assert!(json["error"].as_str().is_some_and(|m| m.contains("interval 0")), "{json}");
    }
    // Kept across a restart; the CLI shows it.
    assert!(gw.stop(), "clean stop");
    let gw = Gateway::start_in_with(&gw.data_dir.clone(), gw.iscsi_port, gw.api_port, gw.options());
    let out = gw.cli(&["bandwidth", "show"]);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(shown, weekdays, "{}", text(&out));
    // The CLI lifts every limit from a file.
    let file = gw.data_dir.join("no-limits.json");
    std::fs::write(&file, r#"{"intervals": []}"#).expect("file");
    let out = gw.cli(&["bandwidth", "set", &file.to_string_lossy()]);
    assert!(out.status.success(), "{}", text(&out));
    let (_, json) = status_and_body(gw.get("/api/v1/bandwidth").call());
    assert_eq!(json["intervals"], serde_json::json!([]));
}
