//! `../shared/vectors/ethereum-tests/TrieTests`: every file, every case.

use std::path::PathBuf;

use alloy_primitives::{B256, keccak256};
use phalanx_trie::{MemoryStore, TrieUpdate, entries};
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
        .join("ethereum-tests/TrieTests")
}

/// Test strings are hex when prefixed by `0x`, raw bytes otherwise.
fn bytes(v: &Value) -> Option<Vec<u8>> {
    let s = v.as_str()?;
    Some(match s.strip_prefix("0x") {
        Some(hex) => hex::decode(hex).expect("hex"),
        None => s.as_bytes().to_vec(),
    })
}

/// Applies `(key, value|null)` in order and returns the root and the final store.
fn build(pairs: &[(Vec<u8>, Option<Vec<u8>>)], secure: bool) -> (B256, MemoryStore) {
    let mut store = MemoryStore::new();
    let mut root = phalanx_trie::EMPTY_ROOT;
    // One commit per operation, so updates on a stored trie are exercised, not only batches.
    for (key, value) in pairs {
        let key = if secure {
            keccak256(key).to_vec()
        } else {
            key.clone()
        };
        let mut update = TrieUpdate::new(&store, root);
        match value {
            Some(v) => update.insert(&key, v.clone()).unwrap(),
            None => update.remove(&key).unwrap(),
        }
        let (new_root, nodes) = update.commit();
        store.extend(nodes);
        root = new_root;
    }
    (root, store)
}

fn pairs(input: &Value) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    match input {
        Value::Array(list) => list
            .iter()
            .map(|p| (bytes(&p[0]).expect("key"), bytes(&p[1])))
            .collect(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| (bytes(&Value::String(k.clone())).unwrap(), bytes(v)))
            .collect(),
        other => panic!("unexpected input {other}"),
    }
}

fn run_file(name: &str) -> usize {
    let text = std::fs::read_to_string(dir().join(name)).expect("read trie vector");
    let cases: serde_json::Map<String, Value> = serde_json::from_str(&text).expect("json");
    let secure = name.contains("secure");
    for (case, body) in &cases {
        if name == "trietestnextprev.json" {
            let keys: Vec<(Vec<u8>, Option<Vec<u8>>)> = body["in"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| (bytes(k).unwrap(), bytes(k)))
                .collect();
            let (root, store) = build(&keys, false);
            let all: Vec<Vec<u8>> = entries(&store, root)
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            for t in body["tests"].as_array().unwrap() {
                let at = bytes(&t[0]).unwrap();
                let prev = all
                    .iter()
                    .rev()
                    .find(|k| **k < at)
                    .cloned()
                    .unwrap_or_default();
                let next = all.iter().find(|k| **k > at).cloned().unwrap_or_default();
                assert_eq!(prev, bytes(&t[1]).unwrap(), "{name}/{case} prev of {at:?}");
                assert_eq!(next, bytes(&t[2]).unwrap(), "{name}/{case} next of {at:?}");
            }
            continue;
        }
        let expected: B256 = body["root"].as_str().unwrap().parse().unwrap();
        let (root, _) = build(&pairs(&body["in"]), secure);
        assert_eq!(root, expected, "{name}/{case}");
    }
    cases.len()
}

#[test]
fn every_trie_vector_file_passes() {
    let mut files: Vec<String> = std::fs::read_dir(dir())
        .expect("TrieTests folder")
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    let mut passed = 0;
    for file in &files {
        assert!(file.ends_with(".json"), "unexpected file {file}");
        let cases = run_file(file);
        assert!(cases > 0, "{file} has no cases");
        passed += 1;
    }
    println!("TrieTests: {passed}/{} files passed", files.len());
    assert_eq!(passed, 6, "expected the 6 TrieTests files, found {files:?}");
}
