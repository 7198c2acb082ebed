//! Every file of `../shared/vectors/bls12-381/` (ethereum/bls12-381-tests, JSON form) is run;
//! the test fails if a file is skipped or a folder is not understood.

use std::collections::BTreeMap;
use std::path::PathBuf;

use phalanx_crypto::bls::{
    self, PublicKey, SecretKey, Signature, SignatureSet, is_valid_g1_encoding, is_valid_g2_encoding,
};
use phalanx_crypto::hash_to_curve::hash_to_g2;
use serde_json::Value;

const EXPECTED_FILES: usize = 104;
/// DST of the hash-to-curve vectors (IETF test suite), not Ethereum's signing DST.
const H2C_DST: &[u8] = b"QUUX-V01-CS02-with-BLS12381G2_XMD:SHA-256_SSWU_RO_";

fn vectors_dir() -> PathBuf {
    let root = std::env::var_os("PHALANX_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_MANIFEST_DIR")
                .map_or_else(
                    || std::env::current_dir().unwrap_or_default(),
                    std::path::PathBuf::from,
                )
                .join("../../../shared/vectors")
        });
    root.join("bls12-381")
}

fn bytes(v: &Value) -> Vec<u8> {
    let s = v.as_str().expect("hex string");
    hex::decode(s.trim_start_matches("0x")).expect("valid hex in vector")
}

fn pubkeys(v: &Value) -> Option<Vec<PublicKey>> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|p| PublicKey::from_bytes(&bytes(p)).ok())
        .collect()
}

fn sig(v: &Value) -> Option<Signature> {
    Signature::from_bytes(&bytes(v)).ok()
}

/// Runs one case; returns `Err` with a description when phalanx disagrees with the vector.
fn run_case(kind: &str, case: &Value) -> Result<(), String> {
    let input = &case["input"];
    let output = &case["output"];
    match kind {
        "sign" => {
            let got = SecretKey::from_bytes(&bytes(&input["privkey"]))
                .ok()
                .map(|sk| sk.sign(&bytes(&input["message"])).to_bytes().to_vec());
            let want = (!output.is_null()).then(|| bytes(output));
            (got == want).then_some(()).ok_or(format!("got {got:?}"))
        }
        "verify" => {
            let got = match (
                PublicKey::from_bytes(&bytes(&input["pubkey"])),
                sig(&input["signature"]),
            ) {
                (Ok(pk), Some(s)) => s.verify(&pk, &bytes(&input["message"])),
                _ => false,
            };
            (Some(got) == output.as_bool())
                .then_some(())
                .ok_or(format!("got {got}"))
        }
        "aggregate" => {
            let sigs: Option<Vec<Signature>> =
                input.as_array().expect("array").iter().map(sig).collect();
            let got = sigs
                .and_then(|s| Signature::aggregate(&s).ok())
                .map(|s| s.to_bytes().to_vec());
            let want = (!output.is_null()).then(|| bytes(output));
            (got == want).then_some(()).ok_or(format!("got {got:?}"))
        }
        "fast_aggregate_verify" => {
            let got = match (pubkeys(&input["pubkeys"]), sig(&input["signature"])) {
                (Some(pks), Some(s)) => s.fast_aggregate_verify(&pks, &bytes(&input["message"])),
                _ => false,
            };
            (Some(got) == output.as_bool())
                .then_some(())
                .ok_or(format!("got {got}"))
        }
        "aggregate_verify" => {
            let msgs: Vec<Vec<u8>> = input["messages"]
                .as_array()
                .expect("array")
                .iter()
                .map(bytes)
                .collect();
            let msg_refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
            let got = match (pubkeys(&input["pubkeys"]), sig(&input["signature"])) {
                (Some(pks), Some(s)) => s.aggregate_verify(&pks, &msg_refs),
                _ => false,
            };
            (Some(got) == output.as_bool())
                .then_some(())
                .ok_or(format!("got {got}"))
        }
        "batch_verify" => {
            let msgs: Vec<Vec<u8>> = input["messages"]
                .as_array()
                .expect("array")
                .iter()
                .map(bytes)
                .collect();
            let sigs: Option<Vec<Signature>> = input["signatures"]
                .as_array()
                .expect("array")
                .iter()
                .map(sig)
                .collect();
            let got = match (pubkeys(&input["pubkeys"]), sigs) {
                (Some(pks), Some(sigs)) if pks.len() == sigs.len() && pks.len() == msgs.len() => {
                    let sets: Vec<SignatureSet<'_>> = (0..pks.len())
                        .map(|i| SignatureSet {
                            pubkey: &pks[i],
                            message: &msgs[i],
                            signature: &sigs[i],
                        })
                        .collect();
                    bls::verify_signature_sets(&sets)
                }
                _ => false,
            };
            (Some(got) == output.as_bool())
                .then_some(())
                .ok_or(format!("got {got}"))
        }
        "hash_to_G2" => {
            let msg = input["msg"].as_str().expect("msg");
            let p = hash_to_g2(msg.as_bytes(), H2C_DST);
            let got_x = format!("0x{},0x{}", hex::encode(p.x.0), hex::encode(p.x.1));
            let got_y = format!("0x{},0x{}", hex::encode(p.y.0), hex::encode(p.y.1));
            (output["x"].as_str() == Some(got_x.as_str())
                && output["y"].as_str() == Some(got_y.as_str()))
            .then_some(())
            .ok_or(format!("got x={got_x} y={got_y}"))
        }
        "deserialization_G1" => {
            let got = is_valid_g1_encoding(&bytes(&input["pubkey"]));
            (Some(got) == output.as_bool())
                .then_some(())
                .ok_or(format!("got {got}"))
        }
        "deserialization_G2" => {
            let got = is_valid_g2_encoding(&bytes(&input["signature"]));
            (Some(got) == output.as_bool())
                .then_some(())
                .ok_or(format!("got {got}"))
        }
        other => Err(format!("unknown vector folder {other:?}")),
    }
}

#[test]
fn all_bls_vectors_pass_and_every_file_is_used() {
    let dir = vectors_dir();
    let mut per_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut used = 0usize;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("BLS vectors not found at {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_file() {
            // LICENSE is the only non-vector file; anything else is unexpected.
            assert_eq!(
                path.file_name().and_then(|n| n.to_str()),
                Some("LICENSE"),
                "stray file {}",
                path.display()
            );
            continue;
        }
        let kind = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("folder name")
            .to_owned();
        let mut files: Vec<_> = std::fs::read_dir(&path)
            .expect("read folder")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        for file in files {
            assert_eq!(
                file.extension().and_then(|e| e.to_str()),
                Some("json"),
                "non-JSON file {}",
                file.display()
            );
            let case: Value =
                serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("json");
            if let Err(why) = run_case(&kind, &case) {
                failures.push(format!("{}: {why}", file.display()));
            }
            used += 1;
            *per_kind.entry(kind.clone()).or_default() += 1;
        }
    }
    println!("BLS vectors per folder: {per_kind:?}");
    assert!(
        failures.is_empty(),
        "{} BLS vectors failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        used, EXPECTED_FILES,
        "expected {EXPECTED_FILES} vector files, used {used}"
    );
}
