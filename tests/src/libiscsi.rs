//! Runs libiscsi's conformance suite (`iscsi-test-cu`) and scores its
//! output: each test counts once as passed, failed or skipped (the suite
//! prints `[SKIPPED]` when the target reports lacking a feature).

use std::process::Command;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    Skip,
}

#[derive(Debug, Clone)]
pub struct TestResult {
    pub suite: String,
    pub test: String,
    pub outcome: Outcome,
    pub notes: String,
}

impl TestResult {
    pub fn name(&self) -> String {
        format!("{}.{}", self.suite, self.test)
    }
}

/// Parses CUnit's verbose output. A test line is `  Test: NAME ...` with
/// the verdict (`passed` / `FAILED`) on the same line or a later one;
/// bracketed notes before the verdict belong to the test.
pub fn parse(output: &str) -> Vec<TestResult> {
    let mut out = Vec::new();
    let mut suite = String::new();
    let mut current: Option<(String, Vec<String>)> = None;
    let finish = |out: &mut Vec<TestResult>, suite: &str, cur: (String, Vec<String>), outcome: Outcome| {
        let skipped = cur.1.iter().any(|n| n.contains("[SKIPPED]"));
        let outcome = if outcome == Outcome::Pass && skipped { Outcome::Skip } else { outcome };
        out.push(TestResult { suite: suite.to_string(), test: cur.0, outcome, notes: cur.1.join(" ") });
    };
    for line in output.lines() {
        if let Some(s) = line.strip_prefix("Suite: ") {
            if let Some(cur) = current.take() {
                finish(&mut out, &suite, cur, Outcome::Fail);
            }
            suite = s.trim().to_string();
            continue;
        }
        let rest = if let Some(t) = line.trim_start().strip_prefix("Test: ") {
            if let Some(cur) = current.take() {
                finish(&mut out, &suite, cur, Outcome::Fail);
            }
            let (name, rest) = t.split_once(" ...").unwrap_or((t, ""));
            current = Some((name.trim().to_string(), Vec::new()));
            rest.to_string()
        } else if current.is_some() {
            line.to_string()
        } else {
            continue;
        };
        let r = rest.trim();
        let verdict = if r.starts_with("passed") {
            Some(Outcome::Pass)
        } else if r.starts_with("FAILED") {
            Some(Outcome::Fail)
        } else {
            None
        };
        match verdict {
            Some(v) => {
                if let Some(cur) = current.take() {
                    finish(&mut out, &suite, cur, v);
                }
            }
            None if !r.is_empty() => {
                if let Some(cur) = current.as_mut() {
                    cur.1.push(r.to_string());
                }
            }
            None => {}
        }
    }
    if let Some(cur) = current.take() {
        finish(&mut out, &suite, cur, Outcome::Fail);
    }
    out
}

/// Runs `iscsi-test-cu -d -t TESTS URL URL2` (destructive) and parses it.
pub fn run_suite(tests: &str, url: &str, url2: &str, limit: Duration) -> (Vec<TestResult>, String) {
    let out = crate::run(Command::new("iscsi-test-cu").args(["-d", "-t", tests, url, url2]), limit);
    let text = crate::text(&out);
    (parse(&text), text)
}

pub fn count(results: &[TestResult], o: Outcome) -> usize {
    results.iter().filter(|r| r.outcome == o).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_verdicts_and_skips() {
        let log = "Suite: SCSI.Read10\n  Test: Simple ...passed\n  Test: Flags ...\n    [SKIPPED] no DPO\npassed\n  Test: Beyond ...\n    [FAILED] bad sense\nFAILED\n    1. x.c:3 - CU_ASSERT\nSuite: iSCSI\n  Test: Hang ...\n";
        let r = parse(log);
        let got: Vec<(String, Outcome)> = r.iter().map(|t| (t.name(), t.outcome)).collect();
        assert_eq!(
            got,
            vec![
                ("SCSI.Read10.Simple".to_string(), Outcome::Pass),
                ("SCSI.Read10.Flags".to_string(), Outcome::Skip),
                ("SCSI.Read10.Beyond".to_string(), Outcome::Fail),
                ("iSCSI.Hang".to_string(), Outcome::Fail),
            ]
        );
    }
}
