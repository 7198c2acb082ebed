//! Cryptography for phalanx.
//!
//! * [`bls`]: BLS12-381 signatures with Ethereum's ciphersuite
//!   `BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_` (public keys in G1, 48 bytes compressed;
//!   signatures in G2, 96 bytes compressed), on `blst`.
//! * [`derive`]: EIP-2333 hierarchical key derivation and EIP-2334 paths (`m/12381/...`).
//! * [`keystore`]: EIP-2335 encrypted keystores (scrypt or PBKDF2, AES-128-CTR, SHA-256 checksum).
//!
//! Byte forms of keys and signatures that travel inside consensus messages
//! ([`PublicKeyBytes`], [`SignatureBytes`]) are plain fixed-size arrays with SSZ and tree-hash
//! support. Decoding a message never touches the curve; a point is decompressed and
//! subgroup-checked only when a signature is verified, and a malformed point is then a typed
//! [`BlsError`], never a panic.

pub mod bls;
pub mod derive;
pub mod hash_to_curve;
pub mod keystore;

pub use bls::{
    AggregateSignature, BlsError, DST, PublicKey, PublicKeyBytes, SecretKey, Signature,
    SignatureBytes,
};
pub use keystore::{Keystore, KeystoreError};
