//! Ethereum's GeneralStateTests through phalanx's own state layer.
//!
//! For each test and each `Cancun` entry: the `pre` state is written into a phalanx state
//! (Merkle Patricia tries, [`apply_changes`]), the transaction runs on revm through a shard
//! overlay in Ethereum-compatible mode (one shard, the coinbase credited by each
//! transaction), its net changes are applied to the tries, and the resulting state root and
//! logs hash are compared with the expected ones. A transaction the test expects to be
//! rejected must be rejected, and leave the state root unchanged.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use alloy_primitives::{B256, Bytes, U256, keccak256};
use phalanx_trie::{EMPTY_ROOT, MemoryStore};
use rayon::prelude::*;
use revm::primitives::KECCAK_EMPTY;
use revm::primitives::hardfork::SpecId;
use revm_statetest_types::{SpecName, TestSuite, TestUnit};

use crate::changes::{AccountChange, AccountFields, Changes, apply_changes};
use crate::evm::{ExecEnv, FeeMode, ShardRun, TxOutcome, logs_hash};
use crate::reader::{EmptyState, TrieStateReader};

/// EIP-7610: creating a contract where an account with storage (but no code and a zero
/// nonce) exists is a collision. revm 43 checks only code and nonce, so these tests cannot pass
/// on it; on a phalanx chain such accounts cannot arise (genesis refuses them and EIP-6780
/// self-destruct removes an account whole), so the rule is never exercised.
const EIP7610: &str =
    "EIP-7610 create collision with pre-existing storage: not modelled by revm 43";

/// Test files not run, with the reason.
pub const KNOWN_SKIPS: &[(&str, &str)] = &[
    ("RevertInCreateInInitCreate2Paris.json", EIP7610),
    ("RevertInCreateInInit_Paris.json", EIP7610),
    ("create2collisionStorageParis.json", EIP7610),
    ("dynamicAccountOverwriteEmpty_Paris.json", EIP7610),
    ("InitCollisionParis.json", EIP7610),
    (
        "ValueOverflowParis.json",
        "holds transaction values above 2^256-1, which no transaction can encode (the file is malformed on purpose)",
    ),
];

/// Results of a run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Cases that passed.
    pub passed: usize,
    /// `(case, why)` of each failure.
    pub failed: Vec<(String, String)>,
    /// `(test, why)` of each test not run.
    pub skipped: Vec<(String, String)>,
}

impl Report {
    fn merge(&mut self, other: Report) {
        self.passed += other.passed;
        self.failed.extend(other.failed);
        self.skipped.extend(other.skipped);
    }

    /// `N passed, M failed` (and `, K skipped`).
    pub fn summary(&self) -> String {
        let mut line = format!("{} passed, {} failed", self.passed, self.failed.len());
        if !self.skipped.is_empty() {
            line.push_str(&format!(", {} skipped", self.skipped.len()));
        }
        line
    }
}

/// Every `.json` file under `paths` (files or folders), sorted.
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            let entries =
                std::fs::read_dir(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            for entry in entries {
                stack.push(
                    entry
                        .map_err(|e| format!("{}: {e}", path.display()))?
                        .path(),
                );
            }
        } else if path.extension().is_some_and(|e| e == "json") {
            files.push(path);
        } else if !path.exists() {
            return Err(format!("{}: no such file or directory", path.display()));
        }
    }
    files.sort();
    Ok(files)
}

/// Runs every file, in parallel; `progress` is called after each file with
/// `(files done, files total)`.
pub fn run_files(files: &[PathBuf], progress: &(dyn Fn(usize, usize) + Sync)) -> Report {
    let done = std::sync::atomic::AtomicUsize::new(0);
    let reports: Vec<Report> = files
        .par_iter()
        .map(|file| {
            let report = run_file(file);
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            progress(n, files.len());
            report
        })
        .collect();
    let mut total = Report::default();
    for r in reports {
        total.merge(r);
    }
    total
}

/// Runs one file.
pub fn run_file(path: &Path) -> Report {
    let mut report = Report::default();
    let name = path.display().to_string();
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if let Some((_, why)) = KNOWN_SKIPS.iter().find(|(f, _)| *f == file_name) {
        report.skipped.push((name, (*why).to_owned()));
        return report;
    }
    let suite: TestSuite = match std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
    {
        Ok(suite) => suite,
        Err(e) => {
            report
                .failed
                .push((name, format!("cannot read test file: {e}")));
            return report;
        }
    };
    for (test, unit) in &suite.0 {
        let label = format!("{name}::{test}");
        match unit.post.get(&SpecName::Cancun) {
            None => report.skipped.push((label, "no Cancun entry".into())),
            Some(_) => report.merge(run_unit(&label, unit)),
        }
    }
    report
}

/// The `pre` state as changes to the empty state.
fn pre_changes(unit: &TestUnit) -> Changes {
    let mut changes = Changes::default();
    for (address, info) in &unit.pre {
        let code_hash = if info.code.is_empty() {
            KECCAK_EMPTY
        } else {
            keccak256(&info.code)
        };
        if !info.code.is_empty() {
            changes.codes.insert(code_hash, info.code.clone());
        }
        let storage: BTreeMap<U256, U256> = info
            .storage
            .iter()
            .filter(|(_, v)| !v.is_zero())
            .map(|(k, v)| (*k, *v))
            .collect();
        changes.accounts.insert(
            *address,
            AccountChange {
                fields: Some(Some(AccountFields {
                    nonce: info.nonce,
                    balance: info.balance,
                    code_hash,
                })),
                storage_cleared: false,
                storage,
            },
        );
    }
    changes
}

fn to_u64(v: U256) -> u64 {
    v.try_into().unwrap_or(u64::MAX)
}

fn run_unit(label: &str, unit: &TestUnit) -> Report {
    let mut report = Report::default();
    let pre = pre_changes(unit);
    let mut store = MemoryStore::new();
    let pre_root = match apply_changes(&store, &EmptyState, EMPTY_ROOT, &pre) {
        Ok(applied) => {
            store.extend(applied.nodes);
            applied.root
        }
        Err(e) => {
            report
                .failed
                .push((label.to_owned(), format!("cannot build pre-state: {e}")));
            return report;
        }
    };
    let codes: HashMap<B256, Bytes> = pre.codes.into_iter().collect();
    let number = to_u64(unit.env.current_number);
    let env = ExecEnv {
        spec: SpecId::CANCUN,
        chain_id: unit.env.current_chain_id.map(to_u64).unwrap_or(1),
        number,
        timestamp: to_u64(unit.env.current_timestamp),
        gas_limit: to_u64(unit.env.current_gas_limit),
        basefee: unit.env.current_base_fee.map(to_u64).unwrap_or_default(),
        prevrandao: unit.env.current_random.unwrap_or_default(),
        beneficiary: unit.env.current_coinbase,
        excess_blob_gas: unit.env.current_excess_blob_gas.map(to_u64),
        // The tests' BLOCKHASH(n) is keccak256 of n in decimal.
        block_hashes: (number.saturating_sub(256)..number)
            .map(|n| (n, keccak256(n.to_string().as_bytes())))
            .collect(),
        fee_mode: FeeMode::PerTransaction,
    };
    let reader = TrieStateReader::new(&store, &codes, pre_root);
    let tests = unit
        .post
        .get(&SpecName::Cancun)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, test) in tests.iter().enumerate() {
        let case = format!(
            "{label}[{i}] (data {}, gas {}, value {})",
            test.indexes.data, test.indexes.gas, test.indexes.value
        );
        let tx = match test.tx_env(unit) {
            Ok(tx) => tx,
            Err(_) if test.expect_exception.is_some() => {
                report.passed += 1;
                continue;
            }
            Err(e) => {
                report
                    .failed
                    .push((case, format!("cannot build the transaction: {e}")));
                continue;
            }
        };
        let mut run = ShardRun::new(&reader, &env);
        let verdict = match (run.transact(tx), &test.expect_exception) {
            (Err(e), _) => Err(format!("execution error: {e}")),
            (Ok(TxOutcome::Invalid(_)), Some(_)) => {
                if test.hash == pre_root {
                    Ok(())
                } else {
                    Err(format!(
                        "rejected as expected, but expected root {} differs from the pre-state root {pre_root}",
                        test.hash
                    ))
                }
            }
            (Ok(TxOutcome::Invalid(e)), None) => {
                Err(format!("transaction rejected unexpectedly: {e}"))
            }
            (Ok(TxOutcome::Executed(_)), Some(expected)) => Err(format!(
                "expected exception {expected}, but the transaction ran"
            )),
            (Ok(TxOutcome::Executed(result)), None) => {
                let logs = logs_hash(result.logs());
                match run
                    .changes()
                    .map_err(|e| e.to_string())
                    .and_then(|changes| {
                        apply_changes(&store, &reader, pre_root, &changes)
                            .map_err(|e| e.to_string())
                    }) {
                    Err(e) => Err(format!("cannot apply changes: {e}")),
                    Ok(applied) if applied.root != test.hash => Err(format!(
                        "state root {} != expected {}",
                        applied.root, test.hash
                    )),
                    Ok(_) if logs != test.logs => {
                        Err(format!("logs hash {logs} != expected {}", test.logs))
                    }
                    Ok(_) => Ok(()),
                }
            }
        };
        match verdict {
            Ok(()) => report.passed += 1,
            Err(why) => report.failed.push((case, why)),
        }
    }
    report
}
