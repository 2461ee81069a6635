//! libiscsi's conformance suite against a volume, with a second session to
//! the same LUN for the reservation and multipath tests.
//!
//! The bar: no failure outside `conformance/known-failures.txt` (empty when
//! the target is fully conformant), and at least MIN_PASSED passes.

use std::time::Duration;

use sgw_tests::libiscsi::{count, run_suite, Outcome};
use sgw_tests::{have_tool, Gateway};

/// 230 tests less the 26 a fixed, writable, thin disk cannot run (see the
/// README of this test).
const MIN_PASSED: usize = 204;

fn known_failures() -> Vec<String> {
    include_str!("../conformance/known-failures.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[test]
fn libiscsi_conformance_suite() {
    if !have_tool("iscsi-test-cu") {
        return;
    }
    let gw = Gateway::start();
    let iqn = gw.create_volume("conformance", 128 << 20);
    let url = gw.url(&iqn);
    let (results, log) = run_suite("ALL", &url, &url, Duration::from_secs(1500));
    let known = known_failures();
    let failed: Vec<String> = results.iter().filter(|r| r.outcome == Outcome::Fail).map(|r| r.name()).collect();
    let unexpected: Vec<&String> = failed.iter().filter(|f| !known.contains(f)).collect();
    let (p, f, s) = (count(&results, Outcome::Pass), failed.len(), count(&results, Outcome::Skip));
    println!("score: {p} passed, {f} failed, {s} skipped of {}", results.len());
    for r in results.iter().filter(|r| r.outcome != Outcome::Pass) {
        println!("  {:?} {}: {}", r.outcome, r.name(), r.notes.chars().take(200).collect::<String>());
    }
    if std::env::var_os("SGW_CONFORMANCE_LOG").is_some() {
        println!("{log}");
    }
    assert!(results.len() >= 200, "the suite ran only {} tests:\n{log}\n{}", results.len(), gw.log_text());
    assert!(unexpected.is_empty(), "unexpected failures: {unexpected:?}");
    assert!(p >= MIN_PASSED, "only {p} passed");
}
