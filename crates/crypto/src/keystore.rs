//! EIP-2335 BLS12-381 keystores.
//!
//! A keystore holds a 32-byte secret encrypted with AES-128-CTR under a key derived from a
//! password by scrypt or PBKDF2-HMAC-SHA256; a SHA-256 checksum over the second half of the
//! derived key and the ciphertext tells a wrong password from a corrupt file.
//!
//! Decryption steps (EIP-2335):
//! 1. the password is NFKD-normalised, C0/C1 control codes and DEL are removed, and it is
//!    UTF-8 encoded;
//! 2. `dk = kdf(password, salt, params)`, 32 bytes;
//! 3. `sha256(dk[16..32] ++ cipher.message)` must equal `checksum.message`;
//! 4. `secret = aes-128-ctr(key = dk[0..16], iv).decrypt(cipher.message)`.
//!
//! phalanx additionally checks that the secret's public key matches the `pubkey` field when
//! one is present, and refuses KDF parameters that would need more than 1 GiB of memory or
//! more than 2^24 PBKDF2 rounds, so a hostile file cannot exhaust a machine.

use std::str::FromStr;

use aes::cipher::{KeyIvInit, StreamCipher};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

use crate::bls::{PublicKeyBytes, SecretKey};

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

/// Largest scrypt memory phalanx accepts (`128 · n · r` bytes).
pub const MAX_SCRYPT_MEMORY: u64 = 1 << 30;
/// Largest PBKDF2 round count phalanx accepts.
pub const MAX_PBKDF2_ROUNDS: u32 = 1 << 24;

/// Why a keystore could not be read, written or decrypted.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// The file is not keystore JSON.
    #[error("keystore is not valid EIP-2335 JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Only version 4 exists.
    #[error("keystore version {0} is not supported (EIP-2335 defines version 4)")]
    UnsupportedVersion(u64),
    /// Unknown module function.
    #[error("unsupported {module} function {function:?} (supported: {supported})")]
    Unsupported {
        /// `kdf`, `checksum` or `cipher`.
        module: &'static str,
        /// What the file names.
        function: String,
        /// What phalanx understands.
        supported: &'static str,
    },
    /// A parameter is missing, malformed or out of bounds.
    #[error("bad keystore parameter: {0}")]
    BadParam(String),
    /// The checksum does not match: almost always the wrong password.
    #[error("wrong password (keystore checksum does not match)")]
    WrongPassword,
    /// The decrypted bytes are not a BLS secret key.
    #[error("decrypted secret is not a valid BLS secret key")]
    InvalidSecret,
    /// The decrypted key does not belong to the `pubkey` the file claims.
    #[error("decrypted key's public key {actual} does not match the keystore's pubkey {claimed}")]
    PubkeyMismatch {
        /// The file's pubkey field.
        claimed: String,
        /// The key's real public key.
        actual: String,
    },
}

/// Key-derivation function and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kdf {
    /// scrypt with cost `n` (a power of two), block size `r`, parallelism `p`.
    Scrypt {
        /// CPU/memory cost.
        n: u32,
        /// Block size.
        r: u32,
        /// Parallelism.
        p: u32,
        /// Salt.
        salt: Vec<u8>,
    },
    /// PBKDF2-HMAC-SHA256 with `c` rounds.
    Pbkdf2 {
        /// Rounds.
        c: u32,
        /// Salt.
        salt: Vec<u8>,
    },
}

impl Kdf {
    /// The EIP's recommended scrypt parameters (n = 2^18, r = 8, p = 1).
    pub fn scrypt_standard(salt: [u8; 32]) -> Self {
        Kdf::Scrypt {
            n: 1 << 18,
            r: 8,
            p: 1,
            salt: salt.to_vec(),
        }
    }

    /// PBKDF2 with few rounds: for throw-away devnet keys whose password is public anyway.
    pub fn pbkdf2_light(salt: [u8; 32]) -> Self {
        Kdf::Pbkdf2 {
            c: 1 << 14,
            salt: salt.to_vec(),
        }
    }

    fn derive(&self, password: &[u8]) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
        let mut dk = Zeroizing::new([0u8; 32]);
        match self {
            Kdf::Scrypt { n, r, p, salt } => {
                if *n < 2 || !n.is_power_of_two() {
                    return Err(KeystoreError::BadParam(format!(
                        "scrypt n = {n} must be a power of two above 1"
                    )));
                }
                let memory = 128u64 * u64::from(*n) * u64::from(*r);
                if memory > MAX_SCRYPT_MEMORY || *r == 0 || *p == 0 {
                    return Err(KeystoreError::BadParam(format!(
                        "scrypt n = {n}, r = {r}, p = {p}: needs {memory} bytes (limit {MAX_SCRYPT_MEMORY}) or is zero"
                    )));
                }
                let log_n = n.trailing_zeros() as u8;
                let params = scrypt::Params::new(log_n, *r, *p, 32)
                    .map_err(|e| KeystoreError::BadParam(format!("scrypt: {e}")))?;
                scrypt::scrypt(password, salt, &params, dk.as_mut_slice())
                    .map_err(|e| KeystoreError::BadParam(format!("scrypt: {e}")))?;
            }
            Kdf::Pbkdf2 { c, salt } => {
                if *c == 0 || *c > MAX_PBKDF2_ROUNDS {
                    return Err(KeystoreError::BadParam(format!(
                        "pbkdf2 c = {c} must be between 1 and {MAX_PBKDF2_ROUNDS}"
                    )));
                }
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, *c, dk.as_mut_slice());
            }
        }
        Ok(dk)
    }
}

/// The random inputs of encryption; fixed values give byte-identical keystores.
#[derive(Debug, Clone)]
pub struct EncryptionNonce {
    /// AES-CTR initial counter.
    pub iv: [u8; 16],
    /// Keystore UUID.
    pub uuid: uuid::Uuid,
}

impl EncryptionNonce {
    /// Fresh randomness from the operating system.
    pub fn random() -> Self {
        Self {
            iv: rand::random(),
            uuid: uuid::Uuid::new_v4(),
        }
    }

    /// Deterministic values from 32 bytes of seed material (for reproducible devnet files).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&seed[..16]);
        let mut uuid_bytes = [0u8; 16];
        uuid_bytes.copy_from_slice(&seed[16..]);
        Self {
            iv,
            uuid: uuid::Builder::from_random_bytes(uuid_bytes).into_uuid(),
        }
    }
}

/// A decoded EIP-2335 keystore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keystore {
    kdf: Kdf,
    checksum: [u8; 32],
    iv: [u8; 16],
    ciphertext: Vec<u8>,
    /// Free text.
    pub description: String,
    /// The public key the keystore claims to hold, if given.
    pub pubkey: Option<PublicKeyBytes>,
    /// EIP-2334 path, may be empty.
    pub path: String,
    /// Identifier.
    pub uuid: uuid::Uuid,
}

/// EIP-2335 password processing: NFKD, then drop C0, C1 and DEL control codes.
pub fn normalize_password(password: &str) -> Zeroizing<Vec<u8>> {
    let cleaned: String = password
        .nfkd()
        .filter(|c| {
            let u = *c as u32;
            !(u <= 0x1f || (0x7f..=0x9f).contains(&u))
        })
        .collect();
    Zeroizing::new(cleaned.into_bytes())
}

impl Keystore {
    /// Encrypts `sk` under `password`.
    pub fn encrypt(
        sk: &SecretKey,
        password: &str,
        kdf: Kdf,
        nonce: &EncryptionNonce,
        path: &str,
        description: &str,
    ) -> Result<Self, KeystoreError> {
        let dk = kdf.derive(&normalize_password(password))?;
        let mut ciphertext = sk.to_bytes().to_vec();
        let (key, mac_key) = dk.split_at(16);
        let mut cipher = Aes128Ctr::new(key.into(), (&nonce.iv).into());
        cipher.apply_keystream(&mut ciphertext);
        let checksum = checksum(mac_key, &ciphertext);
        Ok(Self {
            kdf,
            checksum,
            iv: nonce.iv,
            ciphertext,
            description: description.to_owned(),
            pubkey: Some(sk.public_key().to_bytes()),
            path: path.to_owned(),
            uuid: nonce.uuid,
        })
    }

    /// Decrypts the secret key with `password`.
    pub fn decrypt(&self, password: &str) -> Result<SecretKey, KeystoreError> {
        let dk = self.kdf.derive(&normalize_password(password))?;
        let (key, mac_key) = dk.split_at(16);
        if checksum(mac_key, &self.ciphertext) != self.checksum {
            return Err(KeystoreError::WrongPassword);
        }
        let mut secret = Zeroizing::new(self.ciphertext.clone());
        let mut cipher = Aes128Ctr::new(key.into(), (&self.iv).into());
        cipher.apply_keystream(&mut secret);
        let sk = SecretKey::from_bytes(&secret).map_err(|_| KeystoreError::InvalidSecret)?;
        if let Some(claimed) = &self.pubkey {
            let actual = sk.public_key().to_bytes();
            if &actual != claimed {
                return Err(KeystoreError::PubkeyMismatch {
                    claimed: claimed.to_string(),
                    actual: actual.to_string(),
                });
            }
        }
        Ok(sk)
    }

    /// Parses keystore JSON.
    pub fn from_json_str(json: &str) -> Result<Self, KeystoreError> {
        let raw: RawKeystore = serde_json::from_str(json)?;
        raw.try_into()
    }

    /// Serialises to pretty JSON (stable field order).
    pub fn to_json_string(&self) -> String {
        // Serialising plain strings and integers cannot fail.
        serde_json::to_string_pretty(&RawKeystore::from(self)).unwrap_or_default()
    }
}

impl FromStr for Keystore {
    type Err = KeystoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_json_str(s)
    }
}

fn checksum(mac_key: &[u8], ciphertext: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(mac_key);
    h.update(ciphertext);
    h.finalize().into()
}

// ---- JSON shape ----

#[derive(Serialize, Deserialize)]
struct Module {
    function: String,
    params: serde_json::Value,
    message: String,
}

#[derive(Serialize, Deserialize)]
struct CryptoModules {
    kdf: Module,
    checksum: Module,
    cipher: Module,
}

#[derive(Serialize, Deserialize)]
struct RawKeystore {
    crypto: CryptoModules,
    #[serde(default)]
    description: String,
    #[serde(default)]
    pubkey: String,
    #[serde(default)]
    path: String,
    uuid: uuid::Uuid,
    version: u64,
}

fn unhex(field: &str, value: &str) -> Result<Vec<u8>, KeystoreError> {
    hex::decode(value.strip_prefix("0x").unwrap_or(value))
        .map_err(|e| KeystoreError::BadParam(format!("{field} is not hex: {e}")))
}

fn unhex_fixed<const N: usize>(field: &str, value: &str) -> Result<[u8; N], KeystoreError> {
    let bytes = unhex(field, value)?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        KeystoreError::BadParam(format!("{field} must be {N} bytes, got {}", b.len()))
    })
}

fn param_u32(params: &serde_json::Value, name: &str) -> Result<u32, KeystoreError> {
    params
        .get(name)
        .and_then(serde_json::Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| KeystoreError::BadParam(format!("kdf param {name:?} missing or not a u32")))
}

fn param_str<'a>(params: &'a serde_json::Value, name: &str) -> Result<&'a str, KeystoreError> {
    params
        .get(name)
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| KeystoreError::BadParam(format!("param {name:?} missing or not a string")))
}

impl TryFrom<RawKeystore> for Keystore {
    type Error = KeystoreError;

    fn try_from(raw: RawKeystore) -> Result<Self, KeystoreError> {
        if raw.version != 4 {
            return Err(KeystoreError::UnsupportedVersion(raw.version));
        }
        let kdf_params = &raw.crypto.kdf.params;
        let dklen = param_u32(kdf_params, "dklen")?;
        if dklen != 32 {
            return Err(KeystoreError::BadParam(format!(
                "kdf dklen = {dklen}, must be 32"
            )));
        }
        let salt = unhex("kdf salt", param_str(kdf_params, "salt")?)?;
        let kdf = match raw.crypto.kdf.function.as_str() {
            "scrypt" => Kdf::Scrypt {
                n: param_u32(kdf_params, "n")?,
                r: param_u32(kdf_params, "r")?,
                p: param_u32(kdf_params, "p")?,
                salt,
            },
            "pbkdf2" => {
                let prf = param_str(kdf_params, "prf")?;
                if prf != "hmac-sha256" {
                    return Err(KeystoreError::Unsupported {
                        module: "pbkdf2 prf",
                        function: prf.to_owned(),
                        supported: "hmac-sha256",
                    });
                }
                Kdf::Pbkdf2 {
                    c: param_u32(kdf_params, "c")?,
                    salt,
                }
            }
            other => {
                return Err(KeystoreError::Unsupported {
                    module: "kdf",
                    function: other.to_owned(),
                    supported: "scrypt, pbkdf2",
                });
            }
        };
        if raw.crypto.checksum.function != "sha256" {
            return Err(KeystoreError::Unsupported {
                module: "checksum",
                function: raw.crypto.checksum.function,
                supported: "sha256",
            });
        }
        if raw.crypto.cipher.function != "aes-128-ctr" {
            return Err(KeystoreError::Unsupported {
                module: "cipher",
                function: raw.crypto.cipher.function,
                supported: "aes-128-ctr",
            });
        }
        let iv = unhex_fixed::<16>("cipher iv", param_str(&raw.crypto.cipher.params, "iv")?)?;
        let checksum = unhex_fixed::<32>("checksum message", &raw.crypto.checksum.message)?;
        let ciphertext = unhex("cipher message", &raw.crypto.cipher.message)?;
        if ciphertext.len() != 32 {
            return Err(KeystoreError::BadParam(format!(
                "cipher message must be 32 bytes, got {}",
                ciphertext.len()
            )));
        }
        let pubkey = if raw.pubkey.is_empty() {
            None
        } else {
            Some(PublicKeyBytes::from(unhex_fixed::<48>(
                "pubkey",
                &raw.pubkey,
            )?))
        };
        Ok(Self {
            kdf,
            checksum,
            iv,
            ciphertext,
            description: raw.description,
            pubkey,
            path: raw.path,
            uuid: raw.uuid,
        })
    }
}

impl From<&Keystore> for RawKeystore {
    fn from(ks: &Keystore) -> Self {
        let kdf = match &ks.kdf {
            Kdf::Scrypt { n, r, p, salt } => Module {
                function: "scrypt".into(),
                params: serde_json::json!({"dklen": 32, "n": n, "r": r, "p": p, "salt": hex::encode(salt)}),
                message: String::new(),
            },
            Kdf::Pbkdf2 { c, salt } => Module {
                function: "pbkdf2".into(),
                params: serde_json::json!({"dklen": 32, "c": c, "prf": "hmac-sha256", "salt": hex::encode(salt)}),
                message: String::new(),
            },
        };
        RawKeystore {
            crypto: CryptoModules {
                kdf,
                checksum: Module {
                    function: "sha256".into(),
                    params: serde_json::json!({}),
                    message: hex::encode(ks.checksum),
                },
                cipher: Module {
                    function: "aes-128-ctr".into(),
                    params: serde_json::json!({"iv": hex::encode(ks.iv)}),
                    message: hex::encode(&ks.ciphertext),
                },
            },
            description: ks.description.clone(),
            pubkey: ks
                .pubkey
                .map(|p| hex::encode(p.as_slice()))
                .unwrap_or_default(),
            path: ks.path.clone(),
            uuid: ks.uuid,
            version: 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_normalisation_matches_the_eip() {
        // "𝔱𝔢𝔰𝔱𝔭𝔞𝔰𝔰𝔴𝔬𝔯𝔡🔑" normalises to "testpassword🔑".
        let pw = "\u{1d531}\u{1d522}\u{1d530}\u{1d531}\u{1d52d}\u{1d51e}\u{1d530}\u{1d530}\u{1d534}\u{1d52c}\u{1d52f}\u{1d521}\u{1f511}";
        assert_eq!(
            hex::encode(&*normalize_password(pw)),
            "7465737470617373776f7264f09f9491"
        );
        assert_eq!(&*normalize_password("a\u{0}b\u{7f}c\u{85}d"), b"abcd");
    }

    #[test]
    fn encrypt_then_decrypt() {
        let sk = SecretKey::key_gen(&[3u8; 32]).unwrap();
        let nonce = EncryptionNonce::from_seed([9u8; 32]);
        let ks =
            Keystore::encrypt(&sk, "pw", Kdf::pbkdf2_light([1u8; 32]), &nonce, "m/1", "d").unwrap();
        let json = ks.to_json_string();
        let back = Keystore::from_json_str(&json).unwrap();
        assert_eq!(back, ks);
        assert_eq!(back.decrypt("pw").unwrap().to_bytes(), sk.to_bytes());
        assert!(matches!(
            back.decrypt("nope"),
            Err(KeystoreError::WrongPassword)
        ));
    }

    #[test]
    fn hostile_parameters_are_refused() {
        let sk = SecretKey::key_gen(&[3u8; 32]).unwrap();
        let nonce = EncryptionNonce::from_seed([9u8; 32]);
        let huge = Kdf::Scrypt {
            n: 1 << 30,
            r: 8,
            p: 1,
            salt: vec![0; 32],
        };
        assert!(matches!(
            Keystore::encrypt(&sk, "pw", huge, &nonce, "", ""),
            Err(KeystoreError::BadParam(_))
        ));
        let not_pow2 = Kdf::Scrypt {
            n: 1000,
            r: 8,
            p: 1,
            salt: vec![0; 32],
        };
        assert!(matches!(
            Keystore::encrypt(&sk, "pw", not_pow2, &nonce, "", ""),
            Err(KeystoreError::BadParam(_))
        ));
    }
}
