//! `phalanx dv create`: a test cluster with keys dealt by one process (like
//! `charon create cluster`) — for devnets and tests, never for real stake: the dealer saw every
//! key. Real clusters run the ceremony ([`crate::dkg`]) instead.
//!
//! Layout written under the output folder:
//!
//! ```text
//! cluster-lock.json                 the signed lock (schema in crate::lock)
//! op-<i>/identity-key               the operator's ed25519 secret (hex), mode 0600
//! op-<i>/keystore-<v>.json          EIP-2335 keystore of its share of validator v
//! op-<i>/password                   the keystores' password, mode 0600
//! ```

use std::path::{Path, PathBuf};

use phalanx_crypto::SecretKey;
use phalanx_crypto::keystore::{EncryptionNonce, Kdf, Keystore};
use phalanx_types::fs::write_atomic;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::identity::OperatorKey;
use crate::lock::{
    ClusterLock, DistributedValidator, LOCK_VERSION, LockBody, LockError, Operator, Role,
};
use crate::threshold::SecretShare;

/// Errors of `dv create` and of loading an operator's files.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// Unusable parameters.
    #[error("{0}")]
    Params(String),
    /// The folder already holds a cluster.
    #[error("{0} already exists; pass --force to overwrite it")]
    Exists(PathBuf),
    /// File trouble.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Keystore trouble.
    #[error("keystore {path}: {reason}")]
    Keystore {
        /// The path.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// Lock trouble.
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// The default threshold: `⌈2n/3⌉`.
pub fn default_threshold(n: usize) -> usize {
    (2 * n).div_ceil(3)
}

/// What to create.
#[derive(Debug, Clone)]
pub struct CreateParams {
    /// Cluster name.
    pub name: String,
    /// Operators n.
    pub operators: usize,
    /// Threshold m (default `⌈2n/3⌉`).
    pub threshold: Option<usize>,
    /// Distributed validators.
    pub validators: usize,
    /// The last `failover` operators are failover members.
    pub failover: usize,
    /// Operator i listens on `127.0.0.1:base_port + i`.
    pub base_port: u16,
    /// Deterministic keys from this seed (tests, devnets); random otherwise.
    pub seed: Option<u64>,
    /// Standard (slow) scrypt keystores instead of light PBKDF2 ones.
    pub standard_kdf: bool,
    /// Allow `m = n` (no fault tolerance).
    pub allow_no_fault_tolerance: bool,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CreateError + '_ {
    move |source| CreateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(unix)]
fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), CreateError> {
    use std::os::unix::fs::PermissionsExt;
    write_atomic(path, bytes).map_err(io(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io(path))
}

#[cfg(not(unix))]
fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), CreateError> {
    write_atomic(path, bytes).map_err(io(path))
}

/// A cluster whose keys one process dealt.
#[derive(Debug)]
pub struct DealtCluster {
    /// The signed lock.
    pub lock: ClusterLock,
    /// The operators' identity keys, in lock order.
    pub keys: Vec<OperatorKey>,
    /// Key shares, `[operator][validator]`.
    pub shares: Vec<Vec<SecretShare>>,
}

/// Deals a cluster in memory: operator `i` is `op-{i+1}` with `roles[i]`, listening at
/// `address(i)`; `validators` keys, each shared `threshold`-of-`roles.len()`.
pub fn deal_cluster(
    name: &str,
    threshold: usize,
    validators: usize,
    roles: &[Role],
    address: impl Fn(usize) -> String,
    rng: &mut impl RngCore,
) -> Result<DealtCluster, CreateError> {
    deal(
        name,
        threshold,
        &vec![None; validators],
        roles,
        address,
        rng,
    )
}

/// As [`deal_cluster`], but splits existing validator keys (a devnet's deterministic genesis
/// keys) instead of making new ones: each group public key is the key's own. The whole key
/// existed before the split, so this is for development chains only; real clusters use
/// [`crate::dkg`].
pub fn split_keys(
    name: &str,
    threshold: usize,
    keys: &[SecretKey],
    roles: &[Role],
    address: impl Fn(usize) -> String,
    rng: &mut impl RngCore,
) -> Result<DealtCluster, CreateError> {
    let secrets = keys
        .iter()
        .map(|k| {
            crate::threshold::scalar_from_bytes(&k.to_bytes())
                .map(Some)
                .map_err(|e| CreateError::Params(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    deal(name, threshold, &secrets, roles, address, rng)
}

fn deal(
    name: &str,
    threshold: usize,
    secrets: &[Option<blstrs::Scalar>],
    roles: &[Role],
    address: impl Fn(usize) -> String,
    rng: &mut impl RngCore,
) -> Result<DealtCluster, CreateError> {
    let n = roles.len();
    if threshold == 0 || threshold > n {
        return Err(CreateError::Params(format!(
            "threshold {threshold} of {n} operators"
        )));
    }
    let keys: Vec<OperatorKey> = (0..n).map(|_| OperatorKey::generate(rng)).collect();
    let mut shares: Vec<Vec<SecretShare>> = vec![Vec::new(); n];
    let mut dvs = Vec::with_capacity(secrets.len());
    for secret in secrets {
        let poly = crate::threshold::Polynomial::random(threshold, *secret, rng);
        let s = (1..=n as u32)
            .map(|i| poly.share(i))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CreateError::Params(e.to_string()))?;
        dvs.push(DistributedValidator::from_poly(&poly.commit(), n));
        for (i, share) in s.into_iter().enumerate() {
            shares[i].push(share);
        }
    }
    let body = LockBody {
        version: LOCK_VERSION,
        name: name.to_owned(),
        threshold,
        generation: 0,
        previous_lock_hash: None,
        operators: keys
            .iter()
            .zip(roles)
            .enumerate()
            .map(|(i, (key, role))| Operator {
                name: format!("op-{}", i + 1),
                identity: key.id(),
                address: address(i),
                role: *role,
            })
            .collect(),
        validators: dvs,
        ballot: None,
    };
    let lock = ClusterLock::sign_all(body, &keys)?;
    Ok(DealtCluster { lock, keys, shares })
}

/// Creates the cluster under `out`. Refuses to overwrite an existing lock unless `force`.
pub fn create(params: &CreateParams, out: &Path, force: bool) -> Result<ClusterLock, CreateError> {
    let n = params.operators;
    let m = params.threshold.unwrap_or_else(|| default_threshold(n));
    if n == 0 || m == 0 || m > n {
        return Err(CreateError::Params(format!(
            "threshold {m} must be within 1..={n}"
        )));
    }
    if m == n && n > 1 && !params.allow_no_fault_tolerance {
        return Err(CreateError::Params(format!(
            "threshold {m} of {n} leaves no fault tolerance: one operator down stops every duty \
             (choose a threshold below {n}, e.g. {}, or pass --unsafe-threshold)",
            default_threshold(n).min(n - 1)
        )));
    }
    if params.failover >= n {
        return Err(CreateError::Params(
            "at least one operator must be a regular member".into(),
        ));
    }
    if params.validators == 0 {
        return Err(CreateError::Params("at least one validator".into()));
    }
    let lock_path = out.join("cluster-lock.json");
    if lock_path.exists() && !force {
        return Err(CreateError::Exists(lock_path));
    }
    let mut rng = match params.seed {
        Some(s) => ChaCha20Rng::seed_from_u64(s),
        None => ChaCha20Rng::from_os_rng(),
    };
    let roles: Vec<Role> = (0..n)
        .map(|i| {
            if i >= n - params.failover {
                Role::Failover
            } else {
                Role::Regular
            }
        })
        .collect();
    let DealtCluster { lock, keys, shares } = deal_cluster(
        &params.name,
        m,
        params.validators,
        &roles,
        |i| {
            format!(
                "/ip4/127.0.0.1/tcp/{}",
                u32::from(params.base_port) + i as u32
            )
        },
        &mut rng,
    )?;
    std::fs::create_dir_all(out).map_err(io(out))?;
    for (i, key) in keys.iter().enumerate() {
        let dir = out.join(format!("op-{}", i + 1));
        write_operator_files(
            &dir,
            key,
            &shares[i],
            &params.name,
            params.standard_kdf,
            &mut rng,
        )?;
    }
    lock.write(&lock_path)?;
    Ok(lock)
}

/// Writes an operator's folder: its identity key, a fresh random password and one EIP-2335
/// keystore per key share (`keystore-{v}.json`), each file written atomically.
pub fn write_operator_files(
    dir: &Path,
    key: &OperatorKey,
    shares: &[SecretShare],
    cluster: &str,
    standard_kdf: bool,
    rng: &mut impl RngCore,
) -> Result<(), CreateError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    write_secret(
        &dir.join("identity-key"),
        hex::encode(key.to_bytes()).as_bytes(),
    )?;
    let mut pw = [0u8; 16];
    rng.fill_bytes(&mut pw);
    let password = hex::encode(pw);
    write_secret(&dir.join("password"), password.as_bytes())?;
    for (v, share) in shares.iter().enumerate() {
        let mut salt = [0u8; 32];
        rng.fill_bytes(&mut salt);
        let mut nonce_seed = [0u8; 32];
        rng.fill_bytes(&mut nonce_seed);
        let kdf = if standard_kdf {
            Kdf::scrypt_standard(salt)
        } else {
            Kdf::pbkdf2_light(salt)
        };
        let path = dir.join(format!("keystore-{v}.json"));
        let sk = share
            .secret_key()
            .map_err(|e| CreateError::Params(e.to_string()))?;
        let ks = Keystore::encrypt(
            &sk,
            &password,
            kdf,
            &EncryptionNonce::from_seed(nonce_seed),
            "",
            &format!("{cluster} share {} of validator {v}", share.index),
        )
        .map_err(|e| CreateError::Keystore {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_secret(&path, ks.to_json_string().as_bytes())?;
    }
    Ok(())
}

/// An operator's keys read back from its folder.
#[derive(Debug)]
pub struct OperatorFiles {
    /// Identity key.
    pub key: OperatorKey,
    /// Its share of each validator, checked against the lock.
    pub shares: Vec<SecretShare>,
}

/// Reads operator `dir`'s identity key and keystores and checks them against `lock`.
pub fn load_operator(dir: &Path, lock: &ClusterLock) -> Result<OperatorFiles, CreateError> {
    let key_path = dir.join("identity-key");
    let hex_key = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
    let bytes: [u8; 32] = crate::identity::parse_hex_array(hex_key.trim())
        .map_err(|e| CreateError::Params(format!("{}: {e}", key_path.display())))?;
    let key = OperatorKey::from_bytes(&bytes);
    let index = lock.body.index_of(&key.id()).ok_or_else(|| {
        CreateError::Params(format!(
            "{}: this identity is not in the lock",
            key_path.display()
        ))
    })?;
    let pw_path = dir.join("password");
    let password = std::fs::read_to_string(&pw_path).map_err(io(&pw_path))?;
    let mut shares = Vec::new();
    for (v, dv) in lock.body.validators.iter().enumerate() {
        let path = dir.join(format!("keystore-{v}.json"));
        let json = std::fs::read_to_string(&path).map_err(io(&path))?;
        let ks_err = |reason: String| CreateError::Keystore {
            path: path.clone(),
            reason,
        };
        let ks = Keystore::from_json_str(&json).map_err(|e| ks_err(e.to_string()))?;
        let sk = ks
            .decrypt(password.trim())
            .map_err(|e| ks_err(e.to_string()))?;
        let share = SecretShare::from_secret_key(index, &sk).map_err(|e| ks_err(e.to_string()))?;
        if dv.public_shares.get(index as usize - 1) != Some(&share.public_share()) {
            return Err(ks_err(format!(
                "share does not match the lock's public share {index}"
            )));
        }
        shares.push(share);
    }
    Ok(OperatorFiles { key, shares })
}
