//! Tests of the `phalanx` binary as a user runs it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may panic

mod devnet;
// The clustered node on a real etcd cluster: built with the `etcd` feature (`./scripts/test`).
#[cfg(feature = "etcd")]
mod node;

use std::process::Command;

fn phalanx() -> Command {
    Command::new(env!("CARGO_BIN_EXE_phalanx"))
}

/// Runs `phalanx ARGS`, requires success, and parses its standard output as JSON.
fn json_of(args: &[&str]) -> serde_json::Value {
    let out = phalanx().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Roles whose subcommand has not landed at all.
const ROLES: &[&str] = &["validator", "producer"];

#[test]
fn help_lists_every_role() {
    let out = phalanx().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for role in ROLES.iter().chain(&[
        "devnet",
        "node",
        "light",
        "executor",
        "dv",
        "genesis",
        "sim",
        "bench",
        "statetest",
    ]) {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(role)),
            "--help misses {role}:\n{help}"
        );
    }
}

#[test]
fn light_and_executor_refuse_bad_input_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.json");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{not json").unwrap();
    for (args, expect) in [
        (
            vec!["light", "--genesis", missing.to_str().unwrap()],
            "cannot read the genesis file",
        ),
        (
            vec!["light", "--genesis", bad.to_str().unwrap()],
            "is not a genesis file",
        ),
        (
            vec![
                "light",
                "--genesis",
                bad.to_str().unwrap(),
                "--disagreement",
                "2",
            ],
            "--disagreement must be between 0 and 1",
        ),
        (
            vec![
                "executor",
                "--genesis",
                missing.to_str().unwrap(),
                "--keystore",
                "k",
                "--password-file",
                "p",
            ],
            "cannot read the genesis file",
        ),
    ] {
        let out = phalanx().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(expect), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn roles_not_landed_fail_with_one_line() {
    for role in ROLES.iter() {
        for extra in [&[][..], &["run", "--some-flag", "x"][..]] {
            let out = phalanx().arg(role).args(extra).output().unwrap();
            assert_eq!(out.status.code(), Some(2), "{role} {extra:?}");
            let err = String::from_utf8(out.stderr).unwrap();
            assert_eq!(err.lines().count(), 1, "{role}: {err}");
            assert!(
                err.contains("not available as a process of its own yet")
                    && err.contains("phalanx devnet"),
                "{role}: {err}"
            );
            assert!(out.stdout.is_empty());
        }
    }
}

/// `bench light` runs at a small size and reports every figure (no speed asserted); an
/// unknown benchmark is an error.
#[test]
fn bench_light_reports_its_figures_and_unknown_benchmarks_are_errors() {
    let r = json_of(&[
        "bench",
        "light",
        "--json",
        "--blocks",
        "20",
        "--executors",
        "4",
        "--txs",
        "40",
        "--state-accounts",
        "200",
        "--reads",
        "20",
    ]);
    assert_eq!(r["claims"], 80, "{r}");
    for key in [
        "follow_ms_deciding_each_block",
        "follow_ms_catching_up",
        "re_execute_ms",
        "verified_balance_us",
        "verified_get_balance_rtt_p50_us",
        "node_get_balance_rtt_p50_us",
    ] {
        assert!(r[key].as_f64().unwrap() > 0.0, "{key}: {r}");
    }
    assert!(r["witness_bytes"].as_u64().unwrap() > 0, "{r}");
    let out = phalanx().args(["bench", "nonsense"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("unknown benchmark")
    );
}

#[test]
fn genesis_is_deterministic_and_refuses_to_overwrite() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for dir in [&a, &b] {
        let out = phalanx()
            .args([
                "genesis",
                "--seed",
                "s1",
                "--validators",
                "3",
                "--accounts",
                "2",
                "--out",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ga = std::fs::read(a.path().join("genesis.json")).unwrap();
    let gb = std::fs::read(b.path().join("genesis.json")).unwrap();
    assert_eq!(ga, gb);
    let again = phalanx()
        .args(["genesis", "--seed", "s2", "--out"])
        .arg(a.path())
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    let err = String::from_utf8(again.stderr).unwrap();
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
}

#[test]
fn user_errors_say_what_to_do() {
    let out = phalanx().args(["spec", "mainnet-ish"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("unknown chain spec preset") && err.contains("devnet"),
        "{err}"
    );

    let out = phalanx().args(["spec", "minimal"]).output().unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("slots_per_epoch = 4")
    );
}

#[test]
fn statetest_runs_a_folder_and_prints_the_summary_line() {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || std::env::current_dir().unwrap_or_default(),
            std::path::PathBuf::from,
        )
        .join("../../../shared/vectors/ethereum-tests/GeneralStateTests/stExample");
    let out = phalanx().arg("statetest").arg(&dir).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    let last = stdout.lines().last().unwrap();
    let passed: usize = last.split(' ').next().unwrap().parse().unwrap();
    assert!(passed > 0 && last.contains(" passed, 0 failed"), "{last}");

    let missing = phalanx()
        .args(["statetest", "/no/such/dir"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
}

/// The benchmark runs end to end at a small size and reports every figure (no speed is
/// asserted: figures belong in docs/benchmarks.md, not in tests).
#[test]
fn bench_execution_reports_every_figure() {
    let report = json_of(&[
        "bench",
        "execution",
        "--json",
        "--txs",
        "120",
        "--shards",
        "1,2",
        "--state-accounts",
        "3000",
        "--touched",
        "100",
        "--stateless-txs",
        "60",
        "--runs",
        "1",
    ]);
    for workload in ["transfers", "erc20"] {
        let rows = report[workload].as_array().unwrap();
        assert_eq!(rows.len(), 3, "sequential baseline plus two shard counts");
        assert!(rows.iter().all(|r| r["tx_per_s"].as_f64().unwrap() > 0.0));
    }
    assert!(report["state_root_us_per_key"].as_f64().unwrap() > 0.0);
    assert!(report["witness_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn sim_chain_prints_one_json_line() {
    let out = phalanx()
        .args([
            "sim",
            "chain",
            "--slots",
            "24",
            "--loss",
            "0.01",
            "--jitter-ms",
            "100",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    for key in [
        "slots",
        "finalized_epoch",
        "max_epochs_without_finality",
        "safety_violations",
        "slashed",
        "slashable_signed_by_honest",
    ] {
        assert!(report.get(key).is_some(), "missing {key}: {stdout}");
    }
    assert_eq!(report["slots"], 24);

    let bad = phalanx()
        .args(["sim", "chain", "--partition", "10:5:0.5"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "a bad flag is a usage error");
    let light = json_of(&[
        "sim",
        "light",
        "--blocks",
        "12",
        "--lying-stake",
        "90",
        "--lie-at",
        "6",
    ]);
    for key in [
        "blocks",
        "wrong_roots_believed",
        "re_executions",
        "slashed",
        "max_ms_to_correct_root",
    ] {
        assert!(light.get(key).is_some(), "missing {key}: {light}");
    }
    assert_eq!(light["wrong_roots_believed"], 0, "{light}");
    let bad = phalanx()
        .args(["sim", "light", "--lying-stake", "150"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(bad.stdout.is_empty());
}

#[test]
fn sim_cluster_ends_with_one_json_line() {
    let out = phalanx()
        .args([
            "sim",
            "cluster",
            "--servers",
            "3",
            "--shards",
            "4",
            "--blocks",
            "6",
            "--txs-per-shard",
            "4",
            "--kill-every",
            "2",
            "--corrupt",
            "1",
            "--seed",
            "5",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    for key in [
        "blocks",
        "missed",
        "divergent_roots",
        "takeovers",
        "corruptions_rejected",
    ] {
        assert!(report.get(key).is_some(), "missing {key}: {stdout}");
    }
    assert_eq!(report["blocks"], 6);
    assert_eq!(report["missed"], 0, "{stdout}");
    assert_eq!(report["divergent_roots"], 0, "{stdout}");
    assert_eq!(report["corruptions_accepted"], 0, "{stdout}");

    let bad = phalanx()
        .args(["sim", "cluster", "--servers", "0"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(bad.stdout.is_empty());
}

#[test]
fn bench_consensus_reports_its_figures() {
    let report = json_of(&[
        "bench",
        "consensus",
        "--json",
        "--sim-slots",
        "16",
        "--shards",
        "4",
        "--txs-per-shard",
        "50",
        "--runs",
        "1",
    ]);
    assert!(report["sim_slots_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(report["block_txs"], 200);
    assert!(report["data_validity_ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn sim_dv_signs_every_duty_through_a_crash_and_names_the_byzantine_member() {
    let r = json_of(&[
        "sim",
        "dv",
        "--members",
        "4",
        "--threshold",
        "3",
        "--crashed",
        "1",
        "--duties",
        "40",
    ]);
    assert_eq!(r["duties"], 40);
    assert_eq!(r["signed"], 40, "{r}");
    assert_eq!(r["slashable"], 0);
    // A crashed round-1 leader costs a QBFT round change (750 ms timer) on some duties.
    assert!(r["p99_ms"].as_u64().unwrap() > 750, "{r}");
    assert!(r["p50_ms"].as_u64().unwrap() < 750, "{r}");

    let r = json_of(&[
        "sim",
        "dv",
        "--members",
        "7",
        "--threshold",
        "5",
        "--crashed",
        "2",
        "--byzantine",
        "1",
        "--duties",
        "12",
    ]);
    assert_eq!(r["signed"], 12, "{r}");
    assert_eq!(r["slashable"], 0);
    assert!(r["invalid_partials_sent"].as_u64().unwrap() > 0);
    assert_eq!(
        r["invalid_partials_detected"], r["invalid_partials_sent"],
        "{r}"
    );
    assert_eq!(r["invalid_partial_senders"], serde_json::json!(["op-5"]));

    // The second consensus behind the same seam.
    let r = json_of(&[
        "sim",
        "dv",
        "--members",
        "4",
        "--threshold",
        "3",
        "--crashed",
        "1",
        "--duties",
        "20",
        "--consensus",
        "tendermint",
    ]);
    assert_eq!(r["consensus"], "tendermint");
    assert_eq!(r["signed"], 20, "{r}");
    assert_eq!(r["slashable"], 0);

    // Too many crashed members: duties go unsigned, and nothing slashable is signed.
    let r = json_of(&[
        "sim",
        "dv",
        "--members",
        "4",
        "--threshold",
        "3",
        "--crashed",
        "2",
        "--duties",
        "6",
    ]);
    assert_eq!(r["signed"], 0, "{r}");
    assert_eq!(r["slashable"], 0);
}

#[test]
fn dv_create_writes_a_lock_and_keystores_that_sign_together() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cluster");
    let args = |extra: &[&str]| {
        let mut a = vec![
            "dv",
            "create",
            "--operators",
            "4",
            "--validators",
            "2",
            "--seed",
            "7",
            "--out",
        ];
        a.push(out.to_str().unwrap());
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let ok = phalanx().args(args(&[])).output().unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let lock = phalanx_dv::lock::ClusterLock::read(&out.join("cluster-lock.json")).unwrap();
    assert_eq!(lock.body.threshold, 3, "default threshold is ceil(2n/3)");
    let ops: Vec<_> = (1..=4)
        .map(|i| phalanx_dv::create::load_operator(&out.join(format!("op-{i}")), &lock).unwrap())
        .collect();
    for v in 0..2 {
        let msg = b"signing root";
        let partials: Vec<_> = [0usize, 1, 3]
            .iter()
            .map(|&i| {
                let s = &ops[i].shares[v];
                (s.index, s.secret_key().unwrap().sign(msg).to_bytes())
            })
            .collect();
        let sig = phalanx_dv::threshold::recover_signature(&partials, 3).unwrap();
        assert!(phalanx_dv::threshold::verify_partial(
            &lock.body.validators[v].public_key,
            msg,
            &sig
        ));
    }

    let again = phalanx().args(args(&[])).output().unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    let same = phalanx().args(args(&["--force"])).output().unwrap();
    assert!(same.status.success());
    let relock = phalanx_dv::lock::ClusterLock::read(&out.join("cluster-lock.json")).unwrap();
    assert_eq!(relock, lock, "the same seed gives the same cluster");

    let no_tolerance = phalanx()
        .args([
            "dv",
            "create",
            "--operators",
            "3",
            "--threshold",
            "3",
            "--out",
        ])
        .arg(dir.path().join("x"))
        .output()
        .unwrap();
    assert_eq!(no_tolerance.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_tolerance.stderr).contains("no fault tolerance"));

    let out = phalanx().args(["dv", "nonsense"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("unknown dv command") && err.contains("reshare"),
        "{err}"
    );
}

/// Makes `n` operator identities under `dir` (op-1 …) on free loopback ports and writes a
/// cluster definition for `validators` validators; returns its path.
fn dkg_definition(dir: &std::path::Path, n: usize, validators: usize) -> std::path::PathBuf {
    let ports = free_ports(n);
    let mut operators = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let op = dir.join(format!("op-{}", i + 1));
        let out = phalanx()
            .args(["dv", "identity", "--out"])
            .arg(&op)
            .output()
            .unwrap();
        assert!(out.status.success());
        operators.push(serde_json::json!({
            "name": format!("op-{}", i + 1),
            "identity": String::from_utf8(out.stdout).unwrap().trim(),
            "address": format!("/ip4/127.0.0.1/tcp/{port}"),
        }));
    }
    let definition = dir.join("cluster-definition.json");
    std::fs::write(
        &definition,
        serde_json::json!({"name": "it", "validators": validators, "operators": operators})
            .to_string(),
    )
    .unwrap();
    definition
}

/// Starts `dv dkg` for operators `ops` of the definition.
fn spawn_dkg(
    dir: &std::path::Path,
    definition: &std::path::Path,
    ops: std::ops::RangeInclusive<usize>,
    timeout_secs: u64,
) -> Vec<std::process::Output> {
    use std::process::Stdio;
    let children = ops
        .map(|i| {
            phalanx()
                .args(["dv", "dkg", "--timeout-secs", &timeout_secs.to_string()])
                .arg("--definition")
                .arg(definition)
                .arg("--operator-dir")
                .arg(dir.join(format!("op-{i}")))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    wait_all(children)
}

/// Free loopback ports (bound, then released: another process could take one in between, which
/// only makes the test fail loudly, never pass wrongly).
/// A loopback port free now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

fn wait_all(children: Vec<std::process::Child>) -> Vec<std::process::Output> {
    children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

/// The must-show: a DKG among 4 real processes on loopback writes one lock; a signature
/// recovered from 3 of the keystores it wrote verifies with blst under the group key; then the
/// four members run as processes and sign every duty of two slots together.
#[test]
fn dkg_among_four_processes_then_members_sign_every_duty() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let definition = dkg_definition(dir.path(), 4, 2);
    // An identity key is never replaced.
    let again = phalanx()
        .args(["dv", "identity", "--out"])
        .arg(dir.path().join("op-1"))
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    for (i, out) in spawn_dkg(dir.path(), &definition, 1..=4, 60)
        .into_iter()
        .enumerate()
    {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "op-{}: {stdout}\n{}",
            i + 1,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("dealings verified 4/4"),
            "progress shown: {stdout}"
        );
    }
    let locks: Vec<_> = (1..=4)
        .map(|i| {
            phalanx_dv::lock::ClusterLock::read(
                &dir.path().join(format!("op-{i}/cluster-lock.json")),
            )
            .unwrap()
        })
        .collect();
    for l in &locks {
        assert_eq!(*l, locks[0], "every operator wrote the same lock");
    }
    let lock = &locks[0];
    lock.verify().unwrap();
    assert_eq!(lock.body.threshold, 3);
    let ops: Vec<_> = (1..=4)
        .map(|i| {
            phalanx_dv::create::load_operator(&dir.path().join(format!("op-{i}")), lock).unwrap()
        })
        .collect();
    for v in 0..2 {
        let msg = b"a duty's signing root";
        let partials: Vec<_> = [0usize, 2, 3]
            .iter()
            .map(|&i| {
                let s = &ops[i].shares[v];
                (s.index, s.secret_key().unwrap().sign(msg).to_bytes())
            })
            .collect();
        let sig = phalanx_dv::threshold::recover_signature(&partials, 3).unwrap();
        let pk = phalanx_crypto::bls::PublicKey::from_bytes(
            lock.body.validators[v].public_key.as_slice(),
        )
        .unwrap();
        let sig = phalanx_crypto::bls::Signature::from_bytes(sig.as_slice()).unwrap();
        assert!(sig.verify(&pk, msg), "group signature verifies with blst");
        assert!(!sig.verify(&pk, b"another message"));
    }

    // The members, as processes: two 1.5 s slots in which both validators attest.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let from = now_ms / 1500 + 3;
    let children: Vec<_> = (1..=4)
        .map(|i| {
            phalanx()
                .args(["dv", "run", "--slot-ms", "1500", "--slots-per-epoch", "1"])
                .args(["--from-slot", &from.to_string(), "--slots", "2"])
                .arg("--operator-dir")
                .arg(dir.path().join(format!("op-{i}")))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, out) in wait_all(children).into_iter().enumerate() {
        assert!(
            out.status.success(),
            "op-{}: {}",
            i + 1,
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        // 2 slots × (1 declaration + 2 attestations).
        assert_eq!(report["duties"], 6, "{report}");
        assert_eq!(report["refused"], 0);
        assert_eq!(report["invalid_partials"], serde_json::json!({}));
        let lines =
            std::fs::read_to_string(dir.path().join(format!("op-{}/submissions.jsonl", i + 1)))
                .unwrap();
        assert_eq!(
            lines.lines().count(),
            6,
            "op-{} submitted every duty",
            i + 1
        );
        let metrics =
            std::fs::read_to_string(dir.path().join(format!("op-{}/metrics.prom", i + 1))).unwrap();
        assert!(
            metrics.contains("phalanx_dv_submissions_total 6"),
            "{metrics}"
        );
        assert!(metrics.contains("phalanx_dv_partials_in_time_total{operator=\"op-1\"}"));
        let clock = phalanx_dv::duties::DutyClock {
            genesis_ms: 0,
            slot_ms: 1500,
            slots_per_epoch: 1,
            validators: 2,
        };
        let spec = phalanx_spec::ChainSpec::load("devnet").unwrap();
        let ctx = phalanx_types::signing::SigningContext {
            fork_version: spec.fork_version.0,
            genesis_validators_root: Default::default(),
        };
        for line in lines.lines() {
            let s: serde_json::Value = serde_json::from_str(line).unwrap();
            let slot = s["slot"].as_u64().unwrap();
            let v = s["validator"].as_u64().unwrap() as u32;
            let (duty, data) = clock
                .duties(slot)
                .into_iter()
                .find(|(d, _)| d.validator == v && format!("{:?}", d.kind) == s["kind"])
                .unwrap();
            let root = data.signing_root(&ctx);
            let pk = phalanx_crypto::bls::PublicKey::from_bytes(
                lock.body.validators[v as usize].public_key.as_slice(),
            )
            .unwrap();
            let sig = phalanx_crypto::bls::Signature::from_bytes(&hex_decode(
                s["signature"].as_str().unwrap(),
            ))
            .unwrap();
            assert!(
                sig.verify(&pk, root.as_slice()),
                "group signature of {line}"
            );
            assert!(
                s["submitted_ms"].as_u64().unwrap() <= duty.deadline_ms,
                "{line}"
            );
        }
    }
}

fn hex_decode(s: &str) -> Vec<u8> {
    let s = s.trim_start_matches("0x");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A ceremony with one operator absent fails at its deadline naming the absent operator.
#[test]
fn dkg_names_the_operator_that_never_came() {
    let dir = tempfile::tempdir().unwrap();
    let definition = dkg_definition(dir.path(), 4, 1);
    for out in spawn_dkg(dir.path(), &definition, 1..=3, 4) {
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or_default();
        assert!(last.starts_with("error:") && last.contains("op-4"), "{err}");
        assert!(!last.contains("op-1") && !last.contains("op-2"), "{last}");
    }
    assert!(!dir.path().join("op-1/cluster-lock.json").exists());
}

/// `bench dv` runs real member processes and reports its figures (their values are not
/// asserted: speed lives in the benchmark, not in tests; that every duty was signed is).
#[test]
fn bench_dv_reports_its_figures() {
    let r = json_of(&[
        "bench",
        "dv",
        "--json",
        "--validators",
        "3",
        "--slot-ms",
        "1500",
        "--slots",
        "2",
        "--slots-per-epoch",
        "1",
    ]);
    let level = &r["levels"][0];
    assert_eq!(level["validators"], 3);
    assert_eq!(level["duties"], 2 * (1 + 3), "{r}");
    assert_eq!(level["signed"], level["duties"], "{r}");
    for key in [
        "p50_ms",
        "p99_ms",
        "member_peak_rss_mb",
        "max_validators_within_third_slot",
    ] {
        assert!(r[key].is_number(), "{key} missing: {r}");
    }
    assert!(r["member_peak_rss_mb"].as_f64().unwrap() > 1.0);
}

fn consecutive_free_ports(n: u16) -> u16 {
    for base in (21_000u16..60_000).step_by(97) {
        let base = base + (std::process::id() % 89) as u16;
        if (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

fn spawn_all(runs: Vec<Vec<std::ffi::OsString>>) -> Vec<std::process::Output> {
    use std::process::Stdio;
    let children = runs
        .into_iter()
        .map(|args| {
            phalanx()
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    wait_all(children)
}

/// The must-show for membership, as processes: the current members vote by secret
/// ballot (a rejected change cannot be reshared), then reshare 4 → 5; the group key stays, the
/// new lock records the vote, new shares sign, old shares do not combine with new ones, and the
/// old keystores are gone from the dealers' folders.
#[test]
fn vote_then_reshare_four_to_five_between_processes() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = dir.path();
    let base = consecutive_free_ports(5);
    let out = phalanx()
        .args([
            "dv",
            "create",
            "--operators",
            "4",
            "--validators",
            "1",
            "--seed",
            "5",
        ])
        .args(["--base-port", &base.to_string(), "--out"])
        .arg(cluster)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let old_path = cluster.join("old-lock.json");
    std::fs::copy(cluster.join("cluster-lock.json"), &old_path).unwrap();
    let old = phalanx_dv::lock::ClusterLock::read(&old_path).unwrap();
    let old_shares: Vec<_> = (1..=4)
        .map(|i| {
            phalanx_dv::create::load_operator(&cluster.join(format!("op-{i}")), &old)
                .unwrap()
                .shares
        })
        .collect();
    let id5 = phalanx()
        .args(["dv", "identity", "--out"])
        .arg(cluster.join("op-5"))
        .output()
        .unwrap();
    let mut operators = serde_json::to_value(&old.body.operators).unwrap();
    operators.as_array_mut().unwrap().push(serde_json::json!({
        "name": "op-5",
        "identity": String::from_utf8(id5.stdout).unwrap().trim(),
        "address": format!("/ip4/127.0.0.1/tcp/{}", base + 4),
    }));
    let definition = cluster.join("reshare-definition.json");
    std::fs::write(
        &definition,
        serde_json::json!({
            "description": "add op-5",
            "operators": operators,
            "dealers": ["op-1", "op-2", "op-3"],
        })
        .to_string(),
    )
    .unwrap();
    let os = |s: &str| std::ffi::OsString::from(s);
    let vote = |votes: [&str; 4]| {
        let runs = (1..=4)
            .map(|i| {
                vec![
                    os("dv"),
                    os("vote"),
                    os("--vote"),
                    os(votes[i - 1]),
                    os("--lock"),
                    old_path.clone().into(),
                    os("--reshare"),
                    definition.clone().into(),
                    os("--operator-dir"),
                    cluster.join(format!("op-{i}")).into(),
                ]
            })
            .collect();
        for out in spawn_all(runs) {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    let reshare_args = |i: usize| {
        vec![
            os("dv"),
            os("reshare"),
            os("--timeout-secs"),
            os("60"),
            os("--lock"),
            old_path.clone().into(),
            os("--reshare"),
            definition.clone().into(),
            os("--ballot"),
            cluster.join("op-1/ballot-record.json").into(),
            os("--operator-dir"),
            cluster.join(format!("op-{i}")).into(),
        ]
    };

    // 2 of 4 yes with m = 3: rejected, and the reshare refuses to start.
    vote(["yes", "no", "yes", "no"]);
    let refused = spawn_all(vec![reshare_args(1)]);
    assert_eq!(refused[0].status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused[0].stderr).contains("did not approve"),
        "{}",
        String::from_utf8_lossy(&refused[0].stderr)
    );

    vote(["yes", "no", "yes", "yes"]);
    for out in spawn_all((1..=5).map(reshare_args).collect()) {
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let locks: Vec<_> = (1..=5)
        .map(|i| {
            phalanx_dv::lock::ClusterLock::read(&cluster.join(format!("op-{i}/cluster-lock.json")))
                .unwrap()
        })
        .collect();
    assert!(locks.iter().all(|l| *l == locks[0]));
    let new = &locks[0];
    new.verify().unwrap();
    assert_eq!(new.body.generation, 1);
    assert_eq!(new.body.previous_lock_hash, Some(old.lock_hash));
    assert_eq!(new.body.threshold, 4, "default ceil(2·5/3)");
    let record = new.body.ballot.as_ref().unwrap();
    assert_eq!((record.yes, record.approved), (3, true));
    let group = &old.body.validators[0].public_key;
    assert_eq!(&new.body.validators[0].public_key, group, "group key kept");

    let new_shares: Vec<_> = (1..=5)
        .map(|i| {
            phalanx_dv::create::load_operator(&cluster.join(format!("op-{i}")), new)
                .unwrap()
                .shares
        })
        .collect();
    let msg = b"after the reshare";
    let partial = |s: &phalanx_dv::threshold::SecretShare| {
        (s.index, s.secret_key().unwrap().sign(msg).to_bytes())
    };
    let fresh: Vec<_> = [0, 2, 3, 4]
        .iter()
        .map(|&i| partial(&new_shares[i][0]))
        .collect();
    let sig = phalanx_dv::threshold::recover_signature(&fresh, 4).unwrap();
    assert!(phalanx_dv::threshold::verify_partial(group, msg, &sig));
    // An old share in place of a new one: the recovery does not verify.
    let mut mixed = fresh.clone();
    mixed[0] = partial(&old_shares[0][0]);
    let sig = phalanx_dv::threshold::recover_signature(&mixed, 4).unwrap();
    assert!(!phalanx_dv::threshold::verify_partial(group, msg, &sig));
    // The dealers' folders no longer hold the old shares.
    for i in 1..=3 {
        let dir = cluster.join(format!("op-{i}"));
        assert!(
            phalanx_dv::create::load_operator(&dir, &old).is_err(),
            "op-{i}"
        );
    }
}

#[test]
fn bench_cluster_reports_its_figures() {
    let report = json_of(&[
        "bench",
        "cluster",
        "--blocks",
        "2",
        "--shards",
        "4",
        "--txs-per-shard",
        "5",
        "--etcd",
        "false",
        "--repeat",
        "3",
        "--json",
    ]);
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(report["repeat"], 3, "{report}");
    // 1 and 2 servers sharding, then 2 servers with two agreeing executors per shard.
    assert_eq!(runs.len(), 3, "{report}");
    assert_eq!(runs[0]["servers"], 1);
    assert_eq!(runs[1]["servers"], 2);
    for run in runs {
        assert!(run["tx_per_s"].as_f64().unwrap() > 0.0, "{report}");
        // Every server executed, applied and committed each block, one step after another:
        // its steps' times fit in the block's.
        let phases = &run["phases_ms"];
        let steps = ["execute", "merge", "apply", "finalize"].map(|k| phases[k].as_f64().unwrap());
        assert!(
            steps[0] > 0.0 && steps[2] > 0.0 && steps[3] > 0.0,
            "{report}"
        );
        let ms_per_block = run["ms_per_block"].as_f64().unwrap();
        assert!(steps.iter().sum::<f64>() <= ms_per_block + 0.5, "{report}");
        // ... and so does what it waited for after its execution.
        let waits =
            phases["wait_outcomes"].as_f64().unwrap() + phases["wait_accepts"].as_f64().unwrap();
        assert!(
            steps.iter().sum::<f64>() + waits <= ms_per_block + 0.5,
            "{report}"
        );
        // Commits were synced off the servers' path (the default), and the run's end waited
        // for the last of them: a part of the run's time.
        assert!(phases["sync"].as_f64().unwrap() > 0.0, "{report}");
        let blocks = report["blocks"].as_f64().unwrap();
        assert!(
            phases["last_sync"].as_f64().unwrap() <= ms_per_block * blocks + 0.5,
            "{report}"
        );
        // The row is the median of the three runs: within their range.
        let tx_per_s = run["tx_per_s"].as_f64().unwrap();
        let range = run["tx_per_s_range"].as_array().unwrap();
        let (slowest, fastest) = (range[0].as_f64().unwrap(), range[1].as_f64().unwrap());
        assert!(slowest <= tx_per_s && tx_per_s <= fastest, "{report}");
    }
    // A lone server waits for no other server's outcomes.
    assert_eq!(runs[0]["phases_ms"]["wait_outcomes"], 0.0, "{report}");
    // A lone server receives no one's effects; two servers exchange theirs.
    assert_eq!(runs[0]["effect_bytes_per_block"], 0, "{report}");
    assert!(
        runs[1]["effect_bytes_per_block"].as_u64().unwrap() > 0,
        "{report}"
    );
}

/// `phalanx devnet` on an address already in use says so and exits 1 (no panic, no hang).
#[test]
fn devnet_on_a_busy_rpc_address_fails_with_a_clear_error() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = phalanx()
        .args([
            "devnet",
            "--no-light-rpc",
            "--rpc",
            &addr.to_string(),
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("JSON-RPC on") && err.contains("--rpc"),
        "{err}"
    );
}
