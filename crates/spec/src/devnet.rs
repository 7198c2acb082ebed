//! A deterministic devnet genesis and every key behind it, from a seed.
//!
//! Derivation (documented in `docs/genesis.md`):
//!
//! * `ikm = sha256("phalanx-devnet-seed/v1:" ++ seed)`; the seed is any UTF-8 string.
//! * BLS keys by EIP-2333 from `ikm`: validator `i` at `m/12381/3600/i/0/0` (EIP-2334's
//!   signing key), producer `i` at `m/12381/3601/i/0/0`, executor `i` at `m/12381/3602/i/0/0`.
//! * secp256k1 keys (dev accounts and reward addresses):
//!   `keccak256("phalanx-devnet-account/v1:" ++ ikm ++ label ++ counter)`, the first
//!   `counter = 0, 1, …` that is a valid key; labels are `dev/i`, `validator-reward/i`,
//!   `producer-reward/i`, `executor-reward/i`.
//! * Keystore salts and IVs from `sha256("phalanx-devnet-keystore/v1:" ++ ikm ++ path)`.
//!
//! The same seed and parameters give byte-identical files. These keys are public by
//! construction: never hold value with them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use alloy_genesis::GenesisAccount;
use alloy_primitives::{Address, B256, U256, keccak256};
use alloy_signer_local::PrivateKeySigner;
use phalanx_crypto::SecretKey;
use phalanx_crypto::derive::derive_path;
use phalanx_crypto::keystore::{EncryptionNonce, Kdf, Keystore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::chain_spec::ChainSpec;
use crate::genesis::{Genesis, GenesisError, RegistryEntryJson};

/// The password of every devnet keystore (also written to `keys/password.txt`).
pub const DEVNET_PASSWORD: &str = "phalanx-devnet";

/// Executor bonds each devnet producer can fund above its minimum bond (executor deposits
/// are paid out of a producer's bond).
pub const PRODUCER_SPARE_EXECUTOR_BONDS: u64 = 4;

/// One native unit (10^18 wei).
const ETHER: u128 = 1_000_000_000_000_000_000;

/// How strong the keystores' KDF is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KdfStrength {
    /// PBKDF2 with 2^14 rounds: fast, for keys whose password is public anyway.
    #[default]
    Light,
    /// The EIP's scrypt parameters (n = 2^18): what real keys should use.
    Standard,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct DevnetParams {
    /// Seed string.
    pub seed: String,
    /// Chain spec.
    pub spec: ChainSpec,
    /// Number of validators.
    pub validators: u32,
    /// Number of producers.
    pub producers: u32,
    /// Number of executors.
    pub executors: u32,
    /// Number of funded development accounts.
    pub accounts: u32,
    /// Balance of each development account, in whole units.
    pub account_balance: u64,
    /// Unix genesis time (0 = set at start).
    pub genesis_time: u64,
    /// Keystore KDF.
    pub kdf: KdfStrength,
}

impl DevnetParams {
    /// Devnet defaults of DESIGN.md: 8 validators, 2 producers, 3 executors, 20 accounts.
    pub fn new(seed: impl Into<String>, spec: ChainSpec) -> Self {
        Self {
            seed: seed.into(),
            spec,
            validators: 8,
            producers: 2,
            executors: 3,
            accounts: 20,
            account_balance: 1_000_000,
            genesis_time: 0,
            kdf: KdfStrength::Light,
        }
    }
}

/// A secp256k1 account with its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevAccount {
    /// What the account is for (`dev/3`, `validator-reward/0`, …).
    pub label: String,
    /// Address.
    pub address: Address,
    /// Private key (public by construction).
    pub private_key: B256,
}

/// The keys behind a devnet genesis.
#[derive(Debug, Clone)]
pub struct DevnetKeys {
    /// Validator signing keys with their paths.
    pub validators: Vec<(String, SecretKey)>,
    /// Producer keys.
    pub producers: Vec<(String, SecretKey)>,
    /// Executor keys.
    pub executors: Vec<(String, SecretKey)>,
    /// Funded development accounts, then reward accounts.
    pub accounts: Vec<DevAccount>,
}

fn ikm(seed: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"phalanx-devnet-seed/v1:")
        .chain_update(seed.as_bytes())
        .finalize()
        .into()
}

fn account(ikm: &[u8; 32], label: &str) -> DevAccount {
    let mut counter = 0u32;
    loop {
        let mut material = b"phalanx-devnet-account/v1:".to_vec();
        material.extend_from_slice(ikm);
        material.extend_from_slice(label.as_bytes());
        material.extend_from_slice(&counter.to_be_bytes());
        let key = keccak256(&material);
        if let Ok(signer) = PrivateKeySigner::from_bytes(&key) {
            return DevAccount {
                label: label.to_owned(),
                address: signer.address(),
                private_key: key,
            };
        }
        counter = counter.wrapping_add(1);
    }
}

fn bls_keys(
    ikm: &[u8; 32],
    coin: u32,
    count: u32,
) -> Result<Vec<(String, SecretKey)>, GenesisError> {
    (0..count)
        .map(|i| {
            let path = format!("m/12381/{coin}/{i}/0/0");
            let sk = derive_path(ikm, &path).map_err(|e| GenesisError::Registry {
                registry: "keys",
                index: i as usize,
                problem: e.to_string(),
            })?;
            Ok((path, sk))
        })
        .collect()
}

/// Builds the genesis and its keys; no file is written.
pub fn generate(params: &DevnetParams) -> Result<(Genesis, DevnetKeys), GenesisError> {
    params.spec.validate()?;
    let ikm = ikm(&params.seed);
    let validators = bls_keys(&ikm, 3600, params.validators)?;
    let producers = bls_keys(&ikm, 3601, params.producers)?;
    let executors = bls_keys(&ikm, 3602, params.executors)?;

    let mut accounts: Vec<DevAccount> = (0..params.accounts)
        .map(|i| account(&ikm, &format!("dev/{i}")))
        .collect();
    let mut registry =
        |role: &str, keys: &[(String, SecretKey)], amount: u64| -> Vec<RegistryEntryJson> {
            keys.iter()
                .enumerate()
                .map(|(i, (_, sk))| {
                    let reward = account(&ikm, &format!("{role}-reward/{i}"));
                    let entry = RegistryEntryJson {
                        pubkey: sk.public_key().to_bytes(),
                        amount,
                        reward_address: reward.address,
                    };
                    accounts.push(reward);
                    entry
                })
                .collect()
        };
    let validator_entries = registry("validator", &validators, params.spec.min_validator_stake);
    let producer_bond = params.spec.min_producer_bond.saturating_add(
        params
            .spec
            .min_executor_bond
            .saturating_mul(PRODUCER_SPARE_EXECUTOR_BONDS),
    );
    let producer_entries = registry("producer", &producers, producer_bond);
    let executor_entries = registry("executor", &executors, params.spec.min_executor_bond);

    let balance = U256::from(u128::from(params.account_balance)).saturating_mul(U256::from(ETHER));
    let alloc: BTreeMap<Address, GenesisAccount> = accounts
        .iter()
        .filter(|a| a.label.starts_with("dev/"))
        .map(|a| (a.address, GenesisAccount::default().with_balance(balance)))
        .collect();

    let genesis = Genesis {
        spec: params.spec.clone(),
        genesis_time: params.genesis_time,
        validators: validator_entries,
        producers: producer_entries,
        executors: executor_entries,
        alloc,
    };
    genesis.validate()?;
    Ok((
        genesis,
        DevnetKeys {
            validators,
            producers,
            executors,
            accounts,
        },
    ))
}

fn keystore_material(ikm: &[u8; 32], path: &str) -> ([u8; 32], EncryptionNonce) {
    let digest = |tag: &[u8]| -> [u8; 32] {
        Sha256::new()
            .chain_update(b"phalanx-devnet-keystore/v1:")
            .chain_update(ikm)
            .chain_update(path.as_bytes())
            .chain_update(tag)
            .finalize()
            .into()
    };
    (
        digest(b"salt"),
        EncryptionNonce::from_seed(digest(b"nonce")),
    )
}

/// What [`write`] produced.
#[derive(Debug, Clone)]
pub struct Written {
    /// Path of the genesis file.
    pub genesis_path: PathBuf,
    /// Every file, genesis first.
    pub files: Vec<PathBuf>,
    /// The genesis written.
    pub genesis: Genesis,
    /// The keys behind it.
    pub keys: DevnetKeys,
}

fn write_file(path: &Path, contents: &str, force: bool) -> Result<(), GenesisError> {
    if path.exists() && !force {
        return Err(GenesisError::Exists(path.display().to_string()));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| GenesisError::Io {
            action: "cannot create directory",
            path: dir.display().to_string(),
            source,
        })?;
    }
    phalanx_types::fs::write_atomic(path, contents.as_bytes()).map_err(|source| GenesisError::Io {
        action: "cannot write",
        path: path.display().to_string(),
        source,
    })
}

fn keystore(
    ikm: &[u8; 32],
    strength: KdfStrength,
    path: &str,
    sk: &SecretKey,
    description: &str,
) -> Result<String, phalanx_crypto::keystore::KeystoreError> {
    let (salt, nonce) = keystore_material(ikm, path);
    let kdf = match strength {
        KdfStrength::Light => Kdf::pbkdf2_light(salt),
        KdfStrength::Standard => Kdf::scrypt_standard(salt),
    };
    Keystore::encrypt(sk, DEVNET_PASSWORD, kdf, &nonce, path, description)
        .map(|ks| ks.to_json_string())
}

/// The EIP-2335 keystore (under [`DEVNET_PASSWORD`], fast KDF) of one devnet key, as
/// `write` makes it: deterministic from the seed and the key's derivation path.
pub fn keystore_json(
    seed: &str,
    path: &str,
    sk: &SecretKey,
    description: &str,
) -> Result<String, phalanx_crypto::keystore::KeystoreError> {
    keystore(&ikm(seed), KdfStrength::Light, path, sk, description)
}

/// Generates and writes `genesis.json`, `keys/{validators,producers,executors}/NNNN.json`
/// (EIP-2335 keystores), `keys/password.txt` and `keys/accounts.json` under `dir`.
/// Refuses to overwrite existing files unless `force`.
pub fn write(dir: &Path, params: &DevnetParams, force: bool) -> Result<Written, GenesisError> {
    let (genesis, keys) = generate(params)?;
    let ikm = ikm(&params.seed);
    let mut outputs: Vec<(PathBuf, String)> = vec![(dir.join("genesis.json"), genesis.to_json())];
    let roles = [
        ("validators", &keys.validators),
        ("producers", &keys.producers),
        ("executors", &keys.executors),
    ];
    for (role, list) in roles {
        for (i, (path, sk)) in list.iter().enumerate() {
            let description = format!("phalanx devnet {role} {i}");
            let ks = keystore(&ikm, params.kdf, path, sk, &description).map_err(|e| {
                GenesisError::Registry {
                    registry: "keys",
                    index: i,
                    problem: e.to_string(),
                }
            })?;
            outputs.push((dir.join(format!("keys/{role}/{i:04}.json")), ks));
        }
    }
    outputs.push((
        dir.join("keys/password.txt"),
        format!("{DEVNET_PASSWORD}\n"),
    ));
    let accounts = serde_json::to_string_pretty(&keys.accounts).unwrap_or_default();
    outputs.push((dir.join("keys/accounts.json"), accounts + "\n"));

    if !force && let Some((path, _)) = outputs.iter().find(|(p, _)| p.exists()) {
        return Err(GenesisError::Exists(path.display().to_string()));
    }
    for (path, contents) in &outputs {
        write_file(path, contents, force)?;
    }
    Ok(Written {
        genesis_path: dir.join("genesis.json"),
        files: outputs.into_iter().map(|(p, _)| p).collect(),
        genesis,
        keys,
    })
}
