//! The web console end to end in a real browser: Python Playwright drives
//! Debian's Chromium through activation (wrong code, bad S3 endpoint,
//! success), login and logout, a volume made in the UI and written with
//! qemu-io over iSCSI until the dashboard charts it, tapes in the library
//! view, and CSRF refusals (tests/browser/console_e2e.py). Screenshots of
//! every page land in `$SGW_SCREENSHOTS` or the test's output directory.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use sgw_tests::{have_tool, run, text, Gateway, GatewayOptions};

fn have_playwright() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import playwright.sync_api"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var_os("SGW_REQUIRE_PEERS").is_some() {
            panic!("python playwright is required (run tests/install-python-deps.sh)");
        }
        eprintln!("SKIPPING: python playwright not installed");
    }
    ok
}

#[test]
fn console_end_to_end_in_chromium() {
    if !have_tool("chromium") || !have_tool("qemu-io") || !have_playwright() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("console.toml");
    // Small tapes, and a chart sample every second so the test need not
    // wait for the production 10 s.
    std::fs::write(&config, "tape_min_size_bytes = 1048576\nconsole_sample_secs = 1\n").expect("config");
    let mut options = GatewayOptions::unactivated();
    options.args = vec!["--config".into(), config.display().to_string(), "--cache-size".into(), "1GiB".into()];
    let gw = Gateway::start_with(options);
    let shots = std::env::var_os("SGW_SCREENSHOTS")
        .map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots"), PathBuf::from);
    let _ = std::fs::remove_dir_all(&shots);
    // Nothing listens on the port of a listener just closed.
    let bad_s3 = format!("http://127.0.0.1:{}", sgw_tests::free_port());
    let out = run(
        Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/browser/console_e2e.py"))
            .env("SGW_URL", gw.console())
            .env("SGW_DATA_DIR", &gw.data_dir)
            .env("SGW_ISCSI_PORT", gw.iscsi_port.to_string())
            .env("SGW_OUT", &shots)
            .env("SGW_BAD_S3_ENDPOINT", bad_s3),
        Duration::from_secs(420),
    );
    assert!(out.status.success(), "console_e2e.py failed:\n{}\nsgw log:\n{}", text(&out), gw.log_text());
    let pages = std::fs::read_dir(&shots).expect("screenshots").filter_map(Result::ok).count();
    assert!(pages >= 12, "{pages} screenshots in {}", shots.display());
    eprintln!("console screenshots: {}", shots.display());
}
