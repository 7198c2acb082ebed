//! The cluster lock file: what a distributed validator cluster agreed on, signed by every
//! operator. Written by `phalanx dv create`, `phalanx dv dkg` and `phalanx dv reshare`.
//!
//! # Schema (JSON, version 1)
//!
//! ```text
//! {
//!   "version": 1,
//!   "name": "cluster name",
//!   "threshold": 3,                       // m: partials needed for a group signature
//!   "generation": 0,                      // 0 at creation, +1 at every reshare
//!   "previous_lock_hash": null | "0x…",   // the lock this one replaced
//!   "operators": [                        // index i in this list is share index i + 1
//!     { "name": "op-1", "identity": "0x…32 bytes ed25519",
//!       "address": "/ip4/127.0.0.1/tcp/9100", "role": "regular" | "failover" } ],
//!   "validators": [
//!     { "public_key": "0x…48",            // the group key the chain knows
//!       "commitments": ["0x…48", …],      // Feldman commitments F (m points): F(0) = key
//!       "public_shares": ["0x…48", …] } ],// F(i) for each operator
//!   "ballot": null | { … },               // the secret-ballot tally that approved a change
//!   "lock_hash": "0x…",                   // SHA-256 of the JSON of every field above
//!   "signatures": ["0x…64", …]            // each operator's ed25519 signature over lock_hash
//! }
//! ```
//!
//! The hash covers the fields above `lock_hash` serialized by serde_json in this order, with no
//! whitespace; its value for a fixed lock is frozen in the crate's tests.

use std::path::Path;

use alloy_primitives::B256;
use phalanx_crypto::bls::PublicKeyBytes;
use phalanx_types::fs::write_atomic;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ballot::BallotRecord;
use crate::identity::{IdentitySignature, OperatorId, OperatorKey};
use crate::threshold::{PublicPoly, ThresholdError};

/// Version written and accepted.
pub const LOCK_VERSION: u32 = 1;

/// Errors reading or checking a lock file.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The file could not be read or written.
    #[error("lock file {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Not valid lock JSON.
    #[error("lock file is not valid JSON of schema version {LOCK_VERSION}: {0}")]
    Json(#[from] serde_json::Error),
    /// Unknown version.
    #[error("lock file version {0} is not supported (this build reads version {LOCK_VERSION})")]
    Version(u32),
    /// The stated hash is not the hash of the content.
    #[error("lock_hash does not match the lock's content: the file was edited after signing")]
    HashMismatch,
    /// A missing or wrong operator signature.
    #[error("operator {name} ({id}) has no valid signature over the lock hash")]
    BadSignature {
        /// Operator name.
        name: String,
        /// Operator identity.
        id: OperatorId,
    },
    /// Threshold outside `1..=n`.
    #[error("threshold {threshold} is not within 1..={operators}")]
    Threshold {
        /// Threshold.
        threshold: usize,
        /// Operators.
        operators: usize,
    },
    /// A validator's keys do not fit its commitments.
    #[error("validator {index}: {reason}")]
    Validator {
        /// Position in `validators`.
        index: usize,
        /// What is inconsistent.
        reason: String,
    },
    /// Bad point encodings.
    #[error(transparent)]
    Keys(#[from] ThresholdError),
}

/// An operator's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Takes part in every duty.
    #[default]
    Regular,
    /// Holds a share but releases its partial only when fewer than `m` partials exist near the
    /// duty's deadline.
    Failover,
}

/// One operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    /// Human name, used in every message that names a culprit.
    pub name: String,
    /// ed25519 identity key.
    pub identity: OperatorId,
    /// Where it listens (a libp2p multiaddr).
    pub address: String,
    /// Regular or failover.
    #[serde(default)]
    pub role: Role,
}

/// One distributed validator's keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistributedValidator {
    /// The group public key.
    pub public_key: PublicKeyBytes,
    /// Feldman commitments to the sharing polynomial (threshold points).
    pub commitments: Vec<PublicKeyBytes>,
    /// Each operator's public share, in operator order.
    pub public_shares: Vec<PublicKeyBytes>,
}

impl DistributedValidator {
    /// From the joint public polynomial, for `n` operators.
    pub fn from_poly(poly: &PublicPoly, n: usize) -> Self {
        Self {
            public_key: poly.public_key(),
            commitments: poly
                .to_bytes()
                .iter()
                .map(|c| PublicKeyBytes::from_slice(c))
                .collect(),
            public_shares: (1..=n as u32).map(|i| poly.public_share(i)).collect(),
        }
    }

    /// The public polynomial.
    pub fn poly(&self) -> Result<PublicPoly, ThresholdError> {
        PublicPoly::from_bytes(
            &self
                .commitments
                .iter()
                .map(|c| c.to_vec())
                .collect::<Vec<_>>(),
        )
    }
}

/// Everything the operators sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockBody {
    /// Schema version.
    pub version: u32,
    /// Cluster name.
    pub name: String,
    /// m.
    pub threshold: usize,
    /// 0 at creation, +1 per reshare.
    pub generation: u64,
    /// The lock this one replaced.
    pub previous_lock_hash: Option<B256>,
    /// The operators; position i holds share index i + 1.
    pub operators: Vec<Operator>,
    /// The validators.
    pub validators: Vec<DistributedValidator>,
    /// The vote that approved this membership, if it replaced an earlier lock.
    pub ballot: Option<BallotRecord>,
}

impl LockBody {
    /// SHA-256 over the body's JSON.
    pub fn hash(&self) -> B256 {
        let json = serde_json::to_vec(self).unwrap_or_default();
        B256::from(<[u8; 32]>::from(Sha256::digest(json)))
    }

    /// Message an operator signs.
    pub fn signing_message(hash: &B256) -> Vec<u8> {
        [b"phalanx-dv-lock-v1".as_slice(), hash.as_slice()].concat()
    }

    /// The share index of `id`.
    pub fn index_of(&self, id: &OperatorId) -> Option<u32> {
        self.operators
            .iter()
            .position(|o| &o.identity == id)
            .map(|p| p as u32 + 1)
    }

    /// Checks that the threshold fits and every validator's keys follow from its commitments.
    pub fn check(&self) -> Result<(), LockError> {
        if self.version != LOCK_VERSION {
            return Err(LockError::Version(self.version));
        }
        let n = self.operators.len();
        if self.threshold == 0 || self.threshold > n {
            return Err(LockError::Threshold {
                threshold: self.threshold,
                operators: n,
            });
        }
        for (index, v) in self.validators.iter().enumerate() {
            let bad = |reason: String| LockError::Validator { index, reason };
            if v.commitments.len() != self.threshold {
                return Err(bad(format!(
                    "{} commitments for threshold {}",
                    v.commitments.len(),
                    self.threshold
                )));
            }
            if v.public_shares.len() != n {
                return Err(bad(format!(
                    "{} public shares for {n} operators",
                    v.public_shares.len()
                )));
            }
            let poly = v.poly()?;
            if poly.public_key() != v.public_key {
                return Err(bad(
                    "public_key is not the commitments' constant term".into()
                ));
            }
            for (i, share) in v.public_shares.iter().enumerate() {
                if poly.public_share(i as u32 + 1) != *share {
                    return Err(bad(format!(
                        "public share {} does not fit the commitments",
                        i + 1
                    )));
                }
            }
        }
        Ok(())
    }
}

/// A signed cluster lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterLock {
    /// The signed content.
    #[serde(flatten)]
    pub body: LockBody,
    /// `body.hash()`.
    pub lock_hash: B256,
    /// Each operator's signature over the hash, in operator order.
    pub signatures: Vec<IdentitySignature>,
}

impl ClusterLock {
    /// Assembles a lock from its body and the operators' signatures (in operator order), and
    /// checks it.
    pub fn assemble(body: LockBody, signatures: Vec<IdentitySignature>) -> Result<Self, LockError> {
        let lock = Self {
            lock_hash: body.hash(),
            body,
            signatures,
        };
        lock.verify()?;
        Ok(lock)
    }

    /// Signs `body` with every key (test clusters made by one dealer).
    pub fn sign_all(body: LockBody, keys: &[OperatorKey]) -> Result<Self, LockError> {
        let msg = LockBody::signing_message(&body.hash());
        let sigs = keys.iter().map(|k| k.sign(&msg)).collect();
        Self::assemble(body, sigs)
    }

    /// Full check: schema, hash, every signature, every validator's keys.
    pub fn verify(&self) -> Result<(), LockError> {
        self.body.check()?;
        if self.body.hash() != self.lock_hash {
            return Err(LockError::HashMismatch);
        }
        let msg = LockBody::signing_message(&self.lock_hash);
        for (i, op) in self.body.operators.iter().enumerate() {
            let ok = self
                .signatures
                .get(i)
                .is_some_and(|s| op.identity.verify(&msg, s));
            if !ok {
                return Err(LockError::BadSignature {
                    name: op.name.clone(),
                    id: op.identity,
                });
            }
        }
        Ok(())
    }

    /// Parses and fully checks a lock.
    pub fn from_json(json: &str) -> Result<Self, LockError> {
        let lock: Self = serde_json::from_str(json)?;
        lock.verify()?;
        Ok(lock)
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Reads and checks a lock file.
    pub fn read(path: &Path) -> Result<Self, LockError> {
        let json = std::fs::read_to_string(path).map_err(|source| LockError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&json)
    }

    /// Writes atomically (temporary file, fsync, rename).
    pub fn write(&self, path: &Path) -> Result<(), LockError> {
        write_atomic(path, self.to_json().as_bytes()).map_err(|source| LockError::Io {
            path: path.display().to_string(),
            source,
        })
    }
}
