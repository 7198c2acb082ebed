//! `phalanx statetest PATH...`: Ethereum GeneralStateTests through phalanx's state layer.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use phalanx_execution::statetest::{collect_files, run_files};

pub(crate) fn run(paths: &[PathBuf]) -> anyhow::Result<()> {
    let files = collect_files(paths).map_err(anyhow::Error::msg)?;
    anyhow::ensure!(!files.is_empty(), "no .json test files under {paths:?}");
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let progress = |done: usize, total: usize| {
        if tty && (done.is_multiple_of(50) || done == total) {
            eprint!("\r{done}/{total} files");
            let _ = std::io::stderr().flush();
        } else if !tty && (done.is_multiple_of(500) || done == total) {
            eprintln!("{done}/{total} files");
        }
    };
    let report = run_files(&files, &progress);
    eprintln!(
        "{}ran {} files in {:.1} s",
        if tty { "\n" } else { "" },
        files.len(),
        started.elapsed().as_secs_f64()
    );
    for (case, why) in &report.failed {
        println!("FAILED {case}: {why}");
    }
    let notable: Vec<_> = report
        .skipped
        .iter()
        .filter(|(_, why)| why != "no Cancun entry")
        .collect();
    let without_cancun = report.skipped.len() - notable.len();
    if without_cancun > 0 {
        println!("skipped {without_cancun} tests: no Cancun entry");
    }
    for (test, why) in notable {
        println!("skipped {test}: {why}");
    }
    println!("{}", report.summary());
    anyhow::ensure!(
        report.failed.is_empty(),
        "{} state tests failed",
        report.failed.len()
    );
    Ok(())
}
