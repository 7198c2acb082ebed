//! Operators' identity keys: ed25519, the key type libp2p authenticates peers with, so one key
//! names an operator in the lock file, signs its ceremony and consensus messages, and
//! authenticates its connections.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// An operator's secret identity key.
#[derive(Clone)]
pub struct OperatorKey(SigningKey);

impl fmt::Debug for OperatorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OperatorKey({})", self.id())
    }
}

impl OperatorKey {
    /// A fresh random key.
    pub fn generate(rng: &mut impl RngCore) -> Self {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        Self::from_bytes(&seed)
    }

    /// From its 32 secret bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(bytes))
    }

    /// Its 32 secret bytes (to store in the operator's key file).
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public identity.
    pub fn id(&self) -> OperatorId {
        OperatorId(self.0.verifying_key().to_bytes())
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> IdentitySignature {
        IdentitySignature(self.0.sign(msg).to_bytes())
    }
}

/// An operator's public identity key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct OperatorId(pub [u8; 32]);

impl OperatorId {
    /// Whether `sig` is this operator's signature over `msg` (strict: no malleable encodings).
    pub fn verify(&self, msg: &[u8], sig: &IdentitySignature) -> bool {
        let Ok(vk) = VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&sig.0))
            .is_ok()
    }
}

impl fmt::Display for OperatorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl fmt::Debug for OperatorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OperatorId(0x{}…)", hex::encode(&self.0[..4]))
    }
}

impl From<OperatorId> for String {
    fn from(id: OperatorId) -> Self {
        id.to_string()
    }
}

impl TryFrom<String> for OperatorId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        parse_hex_array(&s).map(OperatorId)
    }
}

/// An ed25519 signature by an operator.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct IdentitySignature(pub [u8; 64]);

impl fmt::Debug for IdentitySignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentitySignature(0x{}…)", hex::encode(&self.0[..4]))
    }
}

impl From<IdentitySignature> for String {
    fn from(s: IdentitySignature) -> Self {
        format!("0x{}", hex::encode(s.0))
    }
}

impl TryFrom<String> for IdentitySignature {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        parse_hex_array(&s).map(IdentitySignature)
    }
}

/// Parses `0x`-prefixed (or bare) hex of exactly `N` bytes.
pub(crate) fn parse_hex_array<const N: usize>(s: &str) -> Result<[u8; N], String> {
    let bytes =
        hex::decode(s.strip_prefix("0x").unwrap_or(s)).map_err(|e| format!("not hex: {e}"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("expected {N} bytes, got {}", b.len()))
}
