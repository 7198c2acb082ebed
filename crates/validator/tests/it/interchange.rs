//! `../shared/vectors/slashing-protection-interchange/`: all 38 files, with the minimal
//! strategy's expectations (`should_succeed`); every file must be used.

use std::path::PathBuf;

use alloy_primitives::B256;
use phalanx_crypto::PublicKeyBytes;
use phalanx_validator::slashing_protection::{ProtectionError, SlashingProtection};
use serde_json::Value;

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
        .join("slashing-protection-interchange/tests/generated")
}

fn num(v: &Value) -> u64 {
    v.as_str().unwrap().parse().unwrap()
}

fn run(case: &Value) -> Result<(), String> {
    let gvr: B256 = case["genesis_validators_root"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let db = SlashingProtection::in_memory(gvr).unwrap();
    for (i, step) in case["steps"].as_array().unwrap().iter().enumerate() {
        let imported = db.import_json(&step["interchange"].to_string());
        let should_succeed = step["should_succeed"].as_bool().unwrap();
        match (imported, should_succeed) {
            (Ok(()), true) => {}
            (Err(e), true) => return Err(format!("step {i}: import failed: {e}")),
            (Ok(()), false) => return Err(format!("step {i}: import should have failed")),
            (Err(_), false) => continue,
        }
        for (j, block) in step["blocks"].as_array().unwrap().iter().enumerate() {
            let pubkey: PublicKeyBytes = block["pubkey"].as_str().unwrap().parse().unwrap();
            let ok = db
                .check_and_record_declaration(&pubkey, num(&block["slot"]))
                .is_ok();
            if ok != block["should_succeed"].as_bool().unwrap() {
                return Err(format!(
                    "step {i} block {j}: signing {} but expected the opposite",
                    if ok { "allowed" } else { "refused" }
                ));
            }
        }
        for (j, att) in step["attestations"].as_array().unwrap().iter().enumerate() {
            let pubkey: PublicKeyBytes = att["pubkey"].as_str().unwrap().parse().unwrap();
            let ok = db
                .check_and_record_attestation(
                    &pubkey,
                    num(&att["source_epoch"]),
                    num(&att["target_epoch"]),
                )
                .is_ok();
            if ok != att["should_succeed"].as_bool().unwrap() {
                return Err(format!(
                    "step {i} attestation {j}: signing {} but expected the opposite",
                    if ok { "allowed" } else { "refused" }
                ));
            }
        }
        // Export → import into a fresh database keeps exactly the same protection.
        let exported = db.export().unwrap();
        let copy = SlashingProtection::in_memory(gvr).unwrap();
        copy.import(&exported).unwrap();
        for record in &exported.data {
            assert_eq!(
                copy.marks(&record.pubkey).unwrap(),
                db.marks(&record.pubkey).unwrap()
            );
        }
    }
    Ok(())
}

#[test]
fn all_interchange_vectors_pass_and_every_file_is_used() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut failures = Vec::new();
    for file in &files {
        assert_eq!(
            file.extension().and_then(|e| e.to_str()),
            Some("json"),
            "unexpected file {}",
            file.display()
        );
        let case: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        if let Err(why) = run(&case) {
            failures.push(format!("{}: {why}", file.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} interchange vectors failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(files.len(), 38, "expected the 38 interchange files");
}

#[test]
fn protection_survives_a_restart_and_refuses_another_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("protection.redb");
    let key = PublicKeyBytes::repeat_byte(0xab);
    {
        let db = SlashingProtection::open(&path, B256::ZERO).unwrap();
        db.check_and_record_declaration(&key, 10).unwrap();
        db.check_and_record_attestation(&key, 2, 3).unwrap();
    }
    let db = SlashingProtection::open(&path, B256::ZERO).unwrap();
    assert!(matches!(
        db.check_and_record_declaration(&key, 10),
        Err(ProtectionError::DeclarationNotNewer { .. })
    ));
    assert!(matches!(
        db.check_and_record_attestation(&key, 1, 4),
        Err(ProtectionError::AttestationNotNewer { .. })
    ));
    assert!(matches!(
        db.check_and_record_attestation(&key, 5, 4),
        Err(ProtectionError::SourceAfterTarget { .. })
    ));
    db.check_and_record_attestation(&key, 3, 4).unwrap();
    drop(db);
    assert!(matches!(
        SlashingProtection::open(&path, B256::repeat_byte(1)),
        Err(ProtectionError::WrongChain { .. })
    ));
    let db = SlashingProtection::open(&path, B256::ZERO).unwrap();
    assert!(matches!(
        db.import_json("{not json"),
        Err(ProtectionError::Interchange(_))
    ));
}
