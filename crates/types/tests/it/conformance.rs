//! Frozen formats: the `hash_tree_root` and the SHA-256 of the SSZ encoding of each fixture
//! are recorded in `tests/conformance.toml`. An accidental change to a consensus type (a field
//! added, reordered or resized, a limit changed) fails here.
//!
//! After an *intended* format change, regenerate with
//! `PHALANX_BLESS=1 cargo test -p phalanx-types --test it conformance` and commit the diff.

use std::collections::BTreeMap;
use std::path::PathBuf;

use phalanx_types::*;
use sha2::{Digest, Sha256};

use super::fixtures::*;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Frozen {
    hash_tree_root: String,
    ssz_sha256: String,
}

fn file() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || std::env::current_dir().unwrap_or_default(),
            std::path::PathBuf::from,
        )
        .join("tests/conformance.toml")
}

fn current() -> BTreeMap<String, Frozen> {
    let mut map = BTreeMap::new();
    macro_rules! record {
        ($ty:ident, $fixture:ident) => {
            let value = $fixture();
            map.insert(
                stringify!($ty).to_owned(),
                Frozen {
                    hash_tree_root: format!("{}", value.tree_hash_root()),
                    ssz_sha256: format!("0x{}", hex::encode(Sha256::digest(value.as_ssz_bytes()))),
                },
            );
        };
    }
    crate::for_each_type!(record);
    map
}

#[test]
fn consensus_formats_are_frozen() {
    let now = current();
    if std::env::var_os("PHALANX_BLESS").is_some() {
        let text = toml::to_string(&now).expect("serialise");
        std::fs::write(
            file(),
            format!("# Frozen consensus formats; see tests/it/conformance.rs.\n{text}"),
        )
        .expect("write conformance.toml");
        return;
    }
    let text = std::fs::read_to_string(file()).expect("tests/conformance.toml exists");
    let frozen: BTreeMap<String, Frozen> = toml::from_str(&text).expect("valid conformance.toml");
    let mut diffs = Vec::new();
    for (name, value) in &now {
        match frozen.get(name) {
            Some(f) if f == value => {}
            Some(f) => diffs.push(format!("{name}: frozen {f:?}, now {value:?}")),
            None => diffs.push(format!("{name}: not frozen yet")),
        }
    }
    for name in frozen.keys().filter(|n| !now.contains_key(*n)) {
        diffs.push(format!("{name}: frozen but no longer tested"));
    }
    assert!(
        diffs.is_empty(),
        "consensus formats changed:\n{}",
        diffs.join("\n")
    );
}

/// An independent anchor for the tree-hash library: a two-field container's root is
/// `sha256(chunk(field_0) ++ chunk(field_1))`, computed here by hand.
#[test]
fn checkpoint_root_matches_a_hand_computation() {
    let cp = checkpoint();
    let mut chunks = [0u8; 64];
    chunks[..8].copy_from_slice(&cp.epoch.as_u64().to_le_bytes());
    chunks[32..].copy_from_slice(cp.root.as_slice());
    let expected: [u8; 32] = Sha256::digest(chunks).into();
    assert_eq!(cp.tree_hash_root().0, expected);
}
