//! `../shared/vectors/ethereum-tests/GeneralStateTests`, every file, through phalanx's state
//! layer: no failure is allowed, and every skip must be a test with no Cancun entry.

use std::path::PathBuf;

use phalanx_execution::statetest::{KNOWN_SKIPS, collect_files, run_files};

fn dir() -> PathBuf {
    std::env::var_os("PHALANX_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_MANIFEST_DIR")
                .map_or_else(
                    || std::env::current_dir().unwrap_or_default(),
                    std::path::PathBuf::from,
                )
                .join("../../../shared/vectors")
        })
        .join("ethereum-tests/GeneralStateTests")
}

#[test]
fn general_state_tests_pass() {
    let files = collect_files(&[dir()]).unwrap();
    assert!(
        files.len() >= 1900,
        "expected the GeneralStateTests subset, found {} files",
        files.len()
    );
    let report = run_files(&files, &|_, _| {});
    for (case, why) in report.failed.iter().take(50) {
        eprintln!("FAILED {case}: {why}");
    }
    for (test, why) in &report.skipped {
        let known = KNOWN_SKIPS
            .iter()
            .any(|(file, reason)| test.ends_with(file) && why == reason);
        assert!(
            why == "no Cancun entry" || known,
            "{test} skipped for an unexpected reason: {why}"
        );
        println!("skipped {test}: {why}");
    }
    println!("GeneralStateTests: {}", report.summary());
    assert!(report.failed.is_empty(), "{}", report.summary());
    assert!(report.passed > 0);
}
