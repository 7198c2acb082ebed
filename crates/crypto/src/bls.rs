//! BLS12-381 signatures with Ethereum's ciphersuite, on `blst`.
//!
//! The ciphersuite is `BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_` (IETF
//! draft-irtf-cfrg-bls-signature, proof-of-possession scheme), "min-pk": public keys are
//! G1 points (48 bytes compressed), signatures G2 points (96 bytes compressed).
//!
//! Rules, as Ethereum applies them:
//!
//! * A [`PublicKey`] only exists if its bytes pass *KeyValidate*: a valid compressed encoding
//!   of a point on the curve, in the prime-order subgroup, and not the point at infinity.
//! * A [`Signature`] only exists if its bytes are a valid compressed G2 point in the subgroup.
//!   The point at infinity is a valid *encoding* (it is what an empty aggregate is), but it
//!   never verifies against a valid public key.
//! * `fast_aggregate_verify` and `aggregate_verify` with no public keys are false.
//! * Secret keys are non-zero scalars below the group order.
//!
//! Protocol messages carry keys and signatures as [`PublicKeyBytes`] and [`SignatureBytes`]
//! (unchecked fixed-size bytes); converting them is where a bad point becomes a [`BlsError`].

use alloy_primitives::FixedBytes;
use blst::BLST_ERROR;
use blst::min_pk;

/// Domain separation tag of Ethereum's proof-of-possession ciphersuite.
pub const DST: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";

/// Length of a compressed public key (G1).
pub const PUBLIC_KEY_LEN: usize = 48;
/// Length of a compressed signature (G2).
pub const SIGNATURE_LEN: usize = 96;
/// Length of a secret key (big-endian scalar).
pub const SECRET_KEY_LEN: usize = 32;

/// A public key as it travels in messages: 48 bytes, not yet checked.
pub type PublicKeyBytes = FixedBytes<PUBLIC_KEY_LEN>;
/// A signature as it travels in messages: 96 bytes, not yet checked.
pub type SignatureBytes = FixedBytes<SIGNATURE_LEN>;

/// Everything that can go wrong with BLS keys and signatures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlsError {
    /// The secret key bytes are not a non-zero scalar below the group order.
    #[error(
        "invalid BLS secret key: expected 32 big-endian bytes, non-zero, below the group order"
    )]
    InvalidSecretKey,
    /// The public key bytes failed KeyValidate.
    #[error("invalid BLS public key: {0}")]
    InvalidPublicKey(&'static str),
    /// The signature bytes are not a valid G2 point in the subgroup.
    #[error("invalid BLS signature: {0}")]
    InvalidSignature(&'static str),
    /// Aggregation of an empty list.
    #[error("cannot aggregate an empty list")]
    EmptyAggregate,
    /// Input key material shorter than the 32 bytes KeyGen requires.
    #[error("key generation needs at least 32 bytes of input key material, got {0}")]
    ShortKeyMaterial(usize),
}

fn reason(err: BLST_ERROR) -> &'static str {
    match err {
        BLST_ERROR::BLST_SUCCESS => "success",
        BLST_ERROR::BLST_BAD_ENCODING => "bad encoding (length or flag bits)",
        BLST_ERROR::BLST_POINT_NOT_ON_CURVE => "point is not on the curve",
        BLST_ERROR::BLST_POINT_NOT_IN_GROUP => "point is not in the prime-order subgroup",
        BLST_ERROR::BLST_AGGR_TYPE_MISMATCH => "aggregate type mismatch",
        BLST_ERROR::BLST_VERIFY_FAIL => "verification failed",
        BLST_ERROR::BLST_PK_IS_INFINITY => "point at infinity",
        BLST_ERROR::BLST_BAD_SCALAR => "bad scalar",
    }
}

/// A BLS secret key. Its bytes are wiped from memory when it is dropped (blst zeroizes).
#[derive(Clone)]
pub struct SecretKey(min_pk::SecretKey);

impl SecretKey {
    /// Parses a 32-byte big-endian scalar.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BlsError> {
        if bytes.len() != SECRET_KEY_LEN {
            return Err(BlsError::InvalidSecretKey);
        }
        min_pk::SecretKey::from_bytes(bytes)
            .map(Self)
            .map_err(|_| BlsError::InvalidSecretKey)
    }

    /// The 32-byte big-endian scalar. Handle with care.
    pub fn to_bytes(&self) -> [u8; SECRET_KEY_LEN] {
        self.0.to_bytes()
    }

    /// IETF `KeyGen` from at least 32 bytes of input key material.
    pub fn key_gen(ikm: &[u8]) -> Result<Self, BlsError> {
        if ikm.len() < 32 {
            return Err(BlsError::ShortKeyMaterial(ikm.len()));
        }
        min_pk::SecretKey::key_gen(ikm, &[])
            .map(Self)
            .map_err(|_| BlsError::InvalidSecretKey)
    }

    /// A fresh key from the operating system's randomness.
    pub fn random() -> Self {
        loop {
            let ikm: [u8; 32] = rand::random();
            if let Ok(sk) = Self::key_gen(&ikm) {
                return sk;
            }
        }
    }

    pub(crate) fn from_blst(sk: min_pk::SecretKey) -> Self {
        Self(sk)
    }

    pub(crate) fn as_blst(&self) -> &min_pk::SecretKey {
        &self.0
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.sk_to_pk())
    }

    /// Signs `msg` under Ethereum's DST.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        Signature(self.0.sign(msg, DST, &[]))
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey(pubkey={})", self.public_key().to_bytes())
    }
}

/// A public key that passed KeyValidate.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(min_pk::PublicKey);

impl PublicKey {
    /// Parses and validates (KeyValidate) a compressed public key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BlsError> {
        if bytes.len() != PUBLIC_KEY_LEN {
            return Err(BlsError::InvalidPublicKey("expected 48 bytes"));
        }
        min_pk::PublicKey::key_validate(bytes)
            .map(Self)
            .map_err(|e| BlsError::InvalidPublicKey(reason(e)))
    }

    /// The compressed encoding.
    pub fn to_bytes(&self) -> PublicKeyBytes {
        FixedBytes(self.0.to_bytes())
    }

    /// Sum of public keys (for fast aggregate verification and group keys).
    pub fn aggregate(keys: &[PublicKey]) -> Result<PublicKey, BlsError> {
        let refs: Vec<&min_pk::PublicKey> = keys.iter().map(|k| &k.0).collect();
        if refs.is_empty() {
            return Err(BlsError::EmptyAggregate);
        }
        min_pk::AggregatePublicKey::aggregate(&refs, false)
            .map(|agg| PublicKey(agg.to_public_key()))
            .map_err(|e| BlsError::InvalidPublicKey(reason(e)))
    }
}

impl TryFrom<&PublicKeyBytes> for PublicKey {
    type Error = BlsError;
    fn try_from(bytes: &PublicKeyBytes) -> Result<Self, BlsError> {
        PublicKey::from_bytes(bytes.as_slice())
    }
}

impl std::hash::Hash for PublicKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bytes().hash(state)
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.to_bytes())
    }
}

/// A signature: a valid G2 point in the prime-order subgroup (possibly infinity).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(min_pk::Signature);

impl Signature {
    /// Parses a compressed signature and checks it is in the subgroup.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BlsError> {
        if bytes.len() != SIGNATURE_LEN {
            return Err(BlsError::InvalidSignature("expected 96 bytes"));
        }
        min_pk::Signature::sig_validate(bytes, false)
            .map(Self)
            .map_err(|e| BlsError::InvalidSignature(reason(e)))
    }

    /// The compressed encoding.
    pub fn to_bytes(&self) -> SignatureBytes {
        FixedBytes(self.0.to_bytes())
    }

    /// `Verify(pk, msg, sig)`.
    pub fn verify(&self, pk: &PublicKey, msg: &[u8]) -> bool {
        self.0.verify(false, msg, DST, &[], &pk.0, false) == BLST_ERROR::BLST_SUCCESS
    }

    /// `FastAggregateVerify(pks, msg, sig)`: every key signed the same message.
    /// False for an empty key list.
    pub fn fast_aggregate_verify(&self, pks: &[PublicKey], msg: &[u8]) -> bool {
        if pks.is_empty() {
            return false;
        }
        let refs: Vec<&min_pk::PublicKey> = pks.iter().map(|k| &k.0).collect();
        self.0.fast_aggregate_verify(false, msg, DST, &refs) == BLST_ERROR::BLST_SUCCESS
    }

    /// `AggregateVerify(pks, msgs, sig)`: key `i` signed message `i`.
    /// False for an empty list or lists of different lengths.
    pub fn aggregate_verify(&self, pks: &[PublicKey], msgs: &[&[u8]]) -> bool {
        if pks.is_empty() || pks.len() != msgs.len() {
            return false;
        }
        let refs: Vec<&min_pk::PublicKey> = pks.iter().map(|k| &k.0).collect();
        self.0.aggregate_verify(false, msgs, DST, &refs, false) == BLST_ERROR::BLST_SUCCESS
    }

    /// Aggregates signatures into one. Fails on an empty list.
    pub fn aggregate(sigs: &[Signature]) -> Result<Signature, BlsError> {
        let mut agg = AggregateSignature::default();
        for sig in sigs {
            agg.add(sig);
        }
        agg.finish()
    }
}

impl TryFrom<&SignatureBytes> for Signature {
    type Error = BlsError;
    fn try_from(bytes: &SignatureBytes) -> Result<Self, BlsError> {
        Signature::from_bytes(bytes.as_slice())
    }
}

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signature({})", self.to_bytes())
    }
}

/// An aggregate being built, one signature at a time.
#[derive(Default, Clone)]
pub struct AggregateSignature(Option<min_pk::AggregateSignature>);

impl AggregateSignature {
    /// Adds a signature.
    pub fn add(&mut self, sig: &Signature) {
        match &mut self.0 {
            Some(agg) => {
                // Both points are already subgroup-checked, so no check is needed here and
                // blst cannot fail.
                let _ = agg.add_signature(&sig.0, false);
            }
            None => self.0 = Some(min_pk::AggregateSignature::from_signature(&sig.0)),
        }
    }

    /// The aggregate signature; fails if nothing was added.
    pub fn finish(&self) -> Result<Signature, BlsError> {
        self.0
            .as_ref()
            .map(|agg| Signature(agg.to_signature()))
            .ok_or(BlsError::EmptyAggregate)
    }
}

/// One entry of a batch: `signature` must verify over `pubkey` and `message`.
#[derive(Debug, Clone, Copy)]
pub struct SignatureSet<'a> {
    /// The signer.
    pub pubkey: &'a PublicKey,
    /// The signed message.
    pub message: &'a [u8],
    /// The signature.
    pub signature: &'a Signature,
}

/// Verifies many signatures at once with random linear combinations (64-bit scalars),
/// much cheaper than one pairing check each. True only if every set verifies (except with
/// probability about 2^-64). False for an empty batch.
pub fn verify_signature_sets(sets: &[SignatureSet<'_>]) -> bool {
    if sets.is_empty() {
        return false;
    }
    let msgs: Vec<&[u8]> = sets.iter().map(|s| s.message).collect();
    let pks: Vec<&min_pk::PublicKey> = sets.iter().map(|s| &s.pubkey.0).collect();
    let sigs: Vec<&min_pk::Signature> = sets.iter().map(|s| &s.signature.0).collect();
    let rands: Vec<blst::blst_scalar> = sets
        .iter()
        .map(|_| {
            let mut b = [0u8; 32];
            // Non-zero 64-bit randomiser, little-endian in the scalar.
            let r: u64 = rand::random::<u64>() | 1;
            b[..8].copy_from_slice(&r.to_le_bytes());
            blst::blst_scalar { b }
        })
        .collect();
    min_pk::Signature::verify_multiple_aggregate_signatures(
        &msgs, DST, &pks, false, &sigs, false, &rands, 64,
    ) == BLST_ERROR::BLST_SUCCESS
}

/// Whether `bytes` decode to a G1 point in the prime-order subgroup. Unlike
/// [`PublicKey::from_bytes`] this accepts the point at infinity: it is the point-decoding
/// rule alone (ZCash serialisation flags, field range, curve and subgroup membership).
pub fn is_valid_g1_encoding(bytes: &[u8]) -> bool {
    if bytes.len() != PUBLIC_KEY_LEN {
        return false;
    }
    match min_pk::PublicKey::from_bytes(bytes) {
        Ok(pk) => matches!(pk.validate(), Ok(()) | Err(BLST_ERROR::BLST_PK_IS_INFINITY)),
        Err(_) => false,
    }
}

/// Whether `bytes` decode to a G2 point in the prime-order subgroup (infinity accepted).
pub fn is_valid_g2_encoding(bytes: &[u8]) -> bool {
    Signature::from_bytes(bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_roundtrip() {
        let sk = SecretKey::key_gen(&[7u8; 32]).unwrap();
        let pk = sk.public_key();
        let sig = sk.sign(b"phalanx");
        assert!(sig.verify(&pk, b"phalanx"));
        assert!(!sig.verify(&pk, b"phalanx!"));
        let back = Signature::from_bytes(sig.to_bytes().as_slice()).unwrap();
        assert_eq!(back, sig);
        let pk_back = PublicKey::from_bytes(pk.to_bytes().as_slice()).unwrap();
        assert_eq!(pk_back, pk);
    }

    #[test]
    fn short_ikm_is_rejected() {
        assert_eq!(
            SecretKey::key_gen(&[1u8; 31]).unwrap_err(),
            BlsError::ShortKeyMaterial(31)
        );
    }

    #[test]
    fn batch_detects_one_bad_signature() {
        let keys: Vec<SecretKey> = (0..4u8)
            .map(|i| SecretKey::key_gen(&[i + 1; 32]).unwrap())
            .collect();
        let pks: Vec<PublicKey> = keys.iter().map(SecretKey::public_key).collect();
        let msgs: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 8]).collect();
        let mut sigs: Vec<Signature> = keys.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
        let sets = |sigs: &[Signature]| -> bool {
            let sets: Vec<SignatureSet<'_>> = (0..4)
                .map(|i| SignatureSet {
                    pubkey: &pks[i],
                    message: &msgs[i],
                    signature: &sigs[i],
                })
                .collect();
            verify_signature_sets(&sets)
        };
        assert!(sets(&sigs));
        sigs[2] = keys[2].sign(b"other");
        assert!(!sets(&sigs));
    }
}
