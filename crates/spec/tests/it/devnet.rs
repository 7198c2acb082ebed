//! `phalanx genesis` determinism and the files it writes.

use std::collections::BTreeMap;
use std::path::Path;

use phalanx_crypto::keystore::Keystore;
use phalanx_spec::devnet::{self, DEVNET_PASSWORD, DevAccount, DevnetParams};
use phalanx_spec::{ChainSpec, Genesis, GenesisError};

fn params(seed: &str) -> DevnetParams {
    let mut p = DevnetParams::new(seed, ChainSpec::preset("devnet").unwrap());
    p.validators = 4;
    p.producers = 2;
    p.executors = 2;
    p.accounts = 3;
    p
}

fn read_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn same_seed_same_files_other_seed_other_keys() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    devnet::write(a.path(), &params("alpha"), false).unwrap();
    devnet::write(b.path(), &params("alpha"), false).unwrap();
    devnet::write(c.path(), &params("beta"), false).unwrap();
    let (ta, tb, tc) = (
        read_tree(a.path()),
        read_tree(b.path()),
        read_tree(c.path()),
    );
    assert_eq!(ta.len(), 1 + 4 + 2 + 2 + 2);
    assert_eq!(ta, tb, "same seed must give byte-identical files");
    assert_ne!(ta["genesis.json"], tc["genesis.json"]);
    assert_ne!(
        ta["keys/validators/0000.json"],
        tc["keys/validators/0000.json"]
    );
}

#[test]
fn written_files_are_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let written = devnet::write(dir.path(), &params("gamma"), false).unwrap();
    let genesis = Genesis::load(&written.genesis_path).unwrap();
    assert_eq!(genesis.validators.len(), 4);
    assert_eq!(genesis.alloc.len(), 3);
    // Each keystore decrypts with the written password to the key in the registry.
    let password = std::fs::read_to_string(dir.path().join("keys/password.txt")).unwrap();
    assert_eq!(password.trim(), DEVNET_PASSWORD);
    for (i, entry) in genesis.validators.iter().enumerate() {
        let text = std::fs::read_to_string(dir.path().join(format!("keys/validators/{i:04}.json")))
            .unwrap();
        let sk = Keystore::from_json_str(&text)
            .unwrap()
            .decrypt(password.trim())
            .unwrap();
        assert_eq!(sk.public_key().to_bytes(), entry.pubkey);
    }
    // Reward addresses are accounts whose keys were written.
    let accounts: Vec<DevAccount> = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("keys/accounts.json")).unwrap(),
    )
    .unwrap();
    for entry in genesis
        .validators
        .iter()
        .chain(&genesis.producers)
        .chain(&genesis.executors)
    {
        assert!(accounts.iter().any(|a| a.address == entry.reward_address));
    }
    // Validator keys are EIP-2334 signing keys.
    let ks: Keystore = std::fs::read_to_string(dir.path().join("keys/validators/0002.json"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(ks.path, "m/12381/3600/2/0/0");
}

#[test]
fn existing_files_are_not_overwritten_without_force() {
    let dir = tempfile::tempdir().unwrap();
    devnet::write(dir.path(), &params("delta"), false).unwrap();
    let err = devnet::write(dir.path(), &params("epsilon"), false).unwrap_err();
    assert!(matches!(err, GenesisError::Exists(_)), "{err}");
    // Nothing was changed by the refused call.
    let (g, _) = devnet::generate(&params("delta")).unwrap();
    assert_eq!(Genesis::load(&dir.path().join("genesis.json")).unwrap(), g);
    devnet::write(dir.path(), &params("epsilon"), true).unwrap();
}

#[test]
fn bad_genesis_files_are_explained() {
    let (genesis, _) = devnet::generate(&params("zeta")).unwrap();
    let mut dup = genesis.clone();
    dup.validators[1].pubkey = dup.validators[0].pubkey;
    let err = Genesis::from_json(&dup.to_json(), "g").unwrap_err();
    assert!(
        err.to_string().contains("validators[1]") && err.to_string().contains("duplicate"),
        "{err}"
    );

    let mut low = genesis.clone();
    low.producers[0].amount = 1;
    let err = Genesis::from_json(&low.to_json(), "g").unwrap_err();
    assert!(err.to_string().contains("producers[0]"), "{err}");

    let mut bad_key = genesis.clone();
    bad_key.executors[0].pubkey = phalanx_crypto::PublicKeyBytes::repeat_byte(0x11);
    assert!(matches!(
        Genesis::from_json(&bad_key.to_json(), "g"),
        Err(GenesisError::Registry {
            registry: "executors",
            ..
        })
    ));

    let mut storage_only = genesis.clone();
    let (addr, account) = storage_only.alloc.iter_mut().next().unwrap();
    let addr = *addr;
    account.storage = Some(
        [(
            alloy_primitives::B256::ZERO,
            alloy_primitives::B256::repeat_byte(1),
        )]
        .into(),
    );
    let err = Genesis::from_json(&storage_only.to_json(), "g").unwrap_err();
    assert!(
        matches!(err, GenesisError::Alloc { address, .. } if address == addr),
        "{err}"
    );

    let mut none = genesis;
    none.validators.clear();
    assert!(matches!(
        Genesis::from_json(&none.to_json(), "g"),
        Err(GenesisError::NoValidators)
    ));

    assert!(matches!(
        Genesis::from_json("{\"spec\": 1}", "g"),
        Err(GenesisError::Json { .. })
    ));
}

#[test]
fn validators_root_changes_with_the_registry() {
    let (genesis, _) = devnet::generate(&params("eta")).unwrap();
    let mut other = genesis.clone();
    other.validators[0].amount += 1;
    assert_ne!(genesis.validators_root(), other.validators_root());
    assert_ne!(genesis.signing_context(), other.signing_context());
}
