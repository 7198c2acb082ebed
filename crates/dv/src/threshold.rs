//! Threshold BLS over Ethereum's ciphersuite: Shamir shares of a secret key, Feldman
//! commitments, and Lagrange recovery of group keys and signatures.
//!
//! A group secret `s` is the constant term of a polynomial `f` of degree `m - 1` over the
//! BLS12-381 scalar field. Member `i` (indices start at 1; 0 would be the secret itself) holds
//! `f(i)`. The *public polynomial* `F = f·G1` (each coefficient times the G1 generator) lets
//! anyone compute member `i`'s public share `F(i) = f(i)·G1` and the group key `F(0)`.
//!
//! A partial signature is an ordinary Ethereum BLS signature with `f(i)` as the secret key, so
//! it verifies with blst against the public share. Any `m` partials over the same message
//! recover `σ = Σ λ_i σ_i` with the Lagrange coefficients at zero, `λ_i = Π_{j≠i} j / (j − i)`,
//! and `σ` verifies under the group key as a plain BLS signature: the chain cannot tell a
//! distributed validator from a single one.

use blstrs::{G1Affine, G1Projective, G2Affine, G2Projective, Scalar};
use ff::Field;
use group::{Curve, Group};
use phalanx_crypto::bls::{PublicKey, PublicKeyBytes, SecretKey, Signature, SignatureBytes};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Errors of threshold arithmetic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThresholdError {
    /// Share indices start at 1.
    #[error("share index 0 is not allowed (index 0 is the secret itself)")]
    ZeroIndex,
    /// The same index given twice.
    #[error("share index {0} appears twice")]
    DuplicateIndex(u32),
    /// Fewer shares than the threshold.
    #[error("{have} shares given, {need} needed")]
    NotEnough {
        /// Shares given.
        have: usize,
        /// Shares needed.
        need: usize,
    },
    /// Bytes that are not a point of the right subgroup.
    #[error("not a valid compressed {0} point")]
    InvalidPoint(&'static str),
    /// A scalar of 32 bytes not below the group order.
    #[error("not a canonical scalar")]
    InvalidScalar,
    /// A polynomial without coefficients.
    #[error("a polynomial needs at least one coefficient")]
    EmptyPolynomial,
}

/// Compressed G1 point length.
pub const G1_LEN: usize = 48;

/// A uniformly random non-zero scalar (rejection sampling on 255-bit strings).
pub fn random_scalar(rng: &mut impl RngCore) -> Scalar {
    loop {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        bytes[0] &= 0x7f;
        if let Some(s) = Option::<Scalar>::from(Scalar::from_bytes_be(&bytes))
            && !bool::from(s.is_zero())
        {
            return s;
        }
    }
}

/// A scalar derived from `parts` under `domain` (Fiat–Shamir challenges): SHA-256 with a
/// counter, rejection-sampled to a canonical scalar.
pub fn hash_to_scalar(domain: &[u8], parts: &[&[u8]]) -> Scalar {
    for counter in 0u32.. {
        let mut h = Sha256::new();
        h.update((domain.len() as u64).to_be_bytes());
        h.update(domain);
        for p in parts {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p);
        }
        h.update(counter.to_be_bytes());
        let mut bytes: [u8; 32] = h.finalize().into();
        bytes[0] &= 0x7f;
        if let Some(s) = Option::<Scalar>::from(Scalar::from_bytes_be(&bytes)) {
            return s;
        }
    }
    Scalar::ZERO
}

/// Parses a canonical big-endian scalar.
pub fn scalar_from_bytes(bytes: &[u8; 32]) -> Result<Scalar, ThresholdError> {
    Option::from(Scalar::from_bytes_be(bytes)).ok_or(ThresholdError::InvalidScalar)
}

/// Parses a compressed G1 point (subgroup-checked).
pub fn g1_from_bytes(bytes: &[u8]) -> Result<G1Projective, ThresholdError> {
    let arr: &[u8; G1_LEN] = bytes
        .try_into()
        .map_err(|_| ThresholdError::InvalidPoint("G1"))?;
    Option::<G1Affine>::from(G1Affine::from_compressed(arr))
        .map(G1Projective::from)
        .ok_or(ThresholdError::InvalidPoint("G1"))
}

/// Compresses a G1 point.
pub fn g1_to_bytes(p: &G1Projective) -> [u8; G1_LEN] {
    p.to_affine().to_compressed()
}

/// A secret polynomial `f` of degree `m − 1`: `coeffs[0]` is the secret.
#[derive(Clone)]
pub struct Polynomial {
    coeffs: Vec<Scalar>,
}

impl std::fmt::Debug for Polynomial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Polynomial(degree {}, secret)",
            self.coeffs.len().saturating_sub(1)
        )
    }
}

impl Polynomial {
    /// A random polynomial for threshold `m` whose constant term is `secret`, or random.
    pub fn random(threshold: usize, secret: Option<Scalar>, rng: &mut impl RngCore) -> Self {
        let mut coeffs: Vec<Scalar> = (0..threshold.max(1)).map(|_| random_scalar(rng)).collect();
        if let (Some(s), Some(c0)) = (secret, coeffs.first_mut()) {
            *c0 = s;
        }
        Self { coeffs }
    }

    /// The threshold `m` (number of coefficients).
    pub fn threshold(&self) -> usize {
        self.coeffs.len()
    }

    /// `f(x)` by Horner's rule.
    pub fn eval(&self, x: u32) -> Scalar {
        let x = Scalar::from(u64::from(x));
        self.coeffs
            .iter()
            .rev()
            .fold(Scalar::ZERO, |acc, c| acc * x + c)
    }

    /// The Feldman commitments `f·G1`.
    pub fn commit(&self) -> PublicPoly {
        PublicPoly {
            coeffs: self
                .coeffs
                .iter()
                .map(|c| G1Projective::generator() * c)
                .collect(),
        }
    }

    /// Member `index`'s share.
    pub fn share(&self, index: u32) -> Result<SecretShare, ThresholdError> {
        if index == 0 {
            return Err(ThresholdError::ZeroIndex);
        }
        Ok(SecretShare {
            index,
            secret: self.eval(index),
        })
    }
}

/// A public polynomial `F = f·G1`: Feldman commitments to a secret polynomial.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicPoly {
    coeffs: Vec<G1Projective>,
}

impl std::fmt::Debug for PublicPoly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PublicPoly(0x{})",
            hex::encode(g1_to_bytes(&self.constant()))
        )
    }
}

impl PublicPoly {
    /// From compressed coefficients.
    pub fn from_bytes(coeffs: &[Vec<u8>]) -> Result<Self, ThresholdError> {
        if coeffs.is_empty() {
            return Err(ThresholdError::EmptyPolynomial);
        }
        Ok(Self {
            coeffs: coeffs
                .iter()
                .map(|c| g1_from_bytes(c))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Compressed coefficients.
    pub fn to_bytes(&self) -> Vec<Vec<u8>> {
        self.coeffs
            .iter()
            .map(|c| g1_to_bytes(c).to_vec())
            .collect()
    }

    /// The threshold `m`.
    pub fn threshold(&self) -> usize {
        self.coeffs.len()
    }

    /// `F(0)`: the group public key as a point.
    pub fn constant(&self) -> G1Projective {
        self.coeffs
            .first()
            .copied()
            .unwrap_or(G1Projective::identity())
    }

    /// `F(x)`.
    pub fn eval(&self, x: u32) -> G1Projective {
        let x = Scalar::from(u64::from(x));
        self.coeffs
            .iter()
            .rev()
            .fold(G1Projective::identity(), |acc, c| acc * x + c)
    }

    /// Coefficient-wise sum (the joint polynomial of a DKG). Polynomials of different degree
    /// are padded with zero.
    pub fn add(&self, other: &Self) -> Self {
        let len = self.coeffs.len().max(other.coeffs.len());
        let get = |p: &Self, i: usize| p.coeffs.get(i).copied().unwrap_or(G1Projective::identity());
        Self {
            coeffs: (0..len).map(|i| get(self, i) + get(other, i)).collect(),
        }
    }

    /// `Σ w_i · F_i`, used by resharing (weights are Lagrange coefficients).
    pub fn weighted_sum(polys: &[(Scalar, &Self)]) -> Self {
        let len = polys.iter().map(|(_, p)| p.coeffs.len()).max().unwrap_or(0);
        Self {
            coeffs: (0..len)
                .map(|i| {
                    polys.iter().fold(G1Projective::identity(), |acc, (w, p)| {
                        acc + p.coeffs.get(i).copied().unwrap_or(G1Projective::identity()) * w
                    })
                })
                .collect(),
        }
    }

    /// Whether `share` is `f(index)` for the polynomial this commits to (Feldman check).
    pub fn verify_share(&self, share: &SecretShare) -> bool {
        share.index != 0 && G1Projective::generator() * share.secret == self.eval(share.index)
    }

    /// The group public key.
    pub fn public_key(&self) -> PublicKeyBytes {
        PublicKeyBytes::from(g1_to_bytes(&self.constant()))
    }

    /// Member `index`'s public share.
    pub fn public_share(&self, index: u32) -> PublicKeyBytes {
        PublicKeyBytes::from(g1_to_bytes(&self.eval(index)))
    }
}

/// One member's share `f(index)` of a group secret.
#[derive(Clone)]
pub struct SecretShare {
    /// The member's index, from 1.
    pub index: u32,
    secret: Scalar,
}

impl std::fmt::Debug for SecretShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretShare(index {})", self.index)
    }
}

impl SecretShare {
    /// From its index and scalar.
    pub fn new(index: u32, secret: Scalar) -> Result<Self, ThresholdError> {
        if index == 0 {
            return Err(ThresholdError::ZeroIndex);
        }
        Ok(Self { index, secret })
    }

    /// From a BLS secret key (e.g. a decrypted keystore).
    pub fn from_secret_key(index: u32, sk: &SecretKey) -> Result<Self, ThresholdError> {
        Self::new(index, scalar_from_bytes(&sk.to_bytes())?)
    }

    /// The share's scalar.
    pub fn scalar(&self) -> Scalar {
        self.secret
    }

    /// The share as an Ethereum BLS secret key, to sign partials and write keystores.
    pub fn secret_key(&self) -> Result<SecretKey, ThresholdError> {
        SecretKey::from_bytes(&self.secret.to_bytes_be()).map_err(|_| ThresholdError::InvalidScalar)
    }

    /// The public share `f(index)·G1`.
    pub fn public_share(&self) -> PublicKeyBytes {
        PublicKeyBytes::from(g1_to_bytes(&(G1Projective::generator() * self.secret)))
    }
}

fn check_indices(indices: &[u32]) -> Result<(), ThresholdError> {
    for (k, i) in indices.iter().enumerate() {
        if *i == 0 {
            return Err(ThresholdError::ZeroIndex);
        }
        if indices[..k].contains(i) {
            return Err(ThresholdError::DuplicateIndex(*i));
        }
    }
    Ok(())
}

/// The Lagrange coefficients at zero for `indices`: `λ_i = Π_{j≠i} j / (j − i)`.
pub fn lagrange_at_zero(indices: &[u32]) -> Result<Vec<Scalar>, ThresholdError> {
    check_indices(indices)?;
    indices
        .iter()
        .map(|&i| {
            let xi = Scalar::from(u64::from(i));
            let (num, den) = indices.iter().filter(|&&j| j != i).fold(
                (Scalar::ONE, Scalar::ONE),
                |(num, den), &j| {
                    let xj = Scalar::from(u64::from(j));
                    (num * xj, den * (xj - xi))
                },
            );
            Option::<Scalar>::from(den.invert())
                .map(|inv| num * inv)
                .ok_or(ThresholdError::DuplicateIndex(i))
        })
        .collect()
}

/// Recovers the group signature from `threshold` partials `(index, σ_i)` over one message.
/// The caller verifies each partial against its public share first; this only interpolates.
pub fn recover_signature(
    partials: &[(u32, SignatureBytes)],
    threshold: usize,
) -> Result<SignatureBytes, ThresholdError> {
    if partials.len() < threshold {
        return Err(ThresholdError::NotEnough {
            have: partials.len(),
            need: threshold,
        });
    }
    let used = &partials[..threshold];
    let indices: Vec<u32> = used.iter().map(|(i, _)| *i).collect();
    let lambdas = lagrange_at_zero(&indices)?;
    let mut acc = G2Projective::identity();
    for ((_, sig), l) in used.iter().zip(&lambdas) {
        let arr: [u8; 96] = sig.0;
        let point = Option::<G2Affine>::from(G2Affine::from_compressed(&arr))
            .ok_or(ThresholdError::InvalidPoint("G2"))?;
        acc += G2Projective::from(point) * l;
    }
    Ok(SignatureBytes::from(acc.to_affine().to_compressed()))
}

/// Recovers a group public key from `threshold` public shares (a check for lock files).
pub fn recover_public_key(
    shares: &[(u32, PublicKeyBytes)],
    threshold: usize,
) -> Result<PublicKeyBytes, ThresholdError> {
    if shares.len() < threshold {
        return Err(ThresholdError::NotEnough {
            have: shares.len(),
            need: threshold,
        });
    }
    let used = &shares[..threshold];
    let indices: Vec<u32> = used.iter().map(|(i, _)| *i).collect();
    let lambdas = lagrange_at_zero(&indices)?;
    let mut acc = G1Projective::identity();
    for ((_, pk), l) in used.iter().zip(&lambdas) {
        acc += g1_from_bytes(pk.as_slice())? * l;
    }
    Ok(PublicKeyBytes::from(g1_to_bytes(&acc)))
}

/// Verifies a partial signature against its public share.
pub fn verify_partial(public_share: &PublicKeyBytes, msg: &[u8], partial: &SignatureBytes) -> bool {
    let (Ok(pk), Ok(sig)) = (
        PublicKey::from_bytes(public_share.as_slice()),
        Signature::from_bytes(partial.as_slice()),
    ) else {
        return false;
    };
    sig.verify(&pk, msg)
}

/// Ethereum's BLS signature ciphersuite (proof-of-possession scheme), as blst signs with it.
const ETH_DST: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";

/// Checks many signatures over *one* message at once: with fresh random 64-bit weights `r_i`
/// (from `rng`), `e(Σ r_i·pk_i, H(msg)) = e(G1, Σ r_i·σ_i)`. One hash to the curve and one
/// two-pair pairing check instead of one hash and one pairing check per signature. True only
/// if every signature verifies, except with probability about 2^-64 — the weights are unknown
/// to the signers, so invalid signatures cannot be made to cancel out. False for an empty batch.
pub fn verify_same_message(
    msg: &[u8],
    items: &[(G1Affine, G2Affine)],
    rng: &mut impl RngCore,
) -> bool {
    use pairing::{MillerLoopResult, MultiMillerLoop};
    if items.is_empty() {
        return false;
    }
    let mut pk = G1Projective::identity();
    let mut sig = G2Projective::identity();
    for (p, s) in items {
        let r = Scalar::from(rng.next_u64() | 1);
        pk += p * r;
        sig += s * r;
    }
    let h = G2Projective::hash_to_curve(msg, ETH_DST, &[]).to_affine();
    let neg_g1 = -<G1Affine as group::prime::PrimeCurveAffine>::generator();
    let result = blstrs::Bls12::multi_miller_loop(&[
        (&pk.to_affine(), &blstrs::G2Prepared::from(h)),
        (&neg_g1, &blstrs::G2Prepared::from(sig.to_affine())),
    ])
    .final_exponentiation();
    bool::from(group::Group::is_identity(&result))
}

/// Parses a compressed G2 point (a signature), checking subgroup membership.
pub fn g2_affine(bytes: &SignatureBytes) -> Option<G2Affine> {
    let arr: &[u8; 96] = bytes.as_slice().try_into().ok()?;
    Option::from(G2Affine::from_compressed(arr))
}

/// Deals a fresh `m`-of-`n` key from a trusted dealer (test clusters, `phalanx dv create`).
pub fn deal(
    threshold: usize,
    members: u32,
    rng: &mut impl RngCore,
) -> Result<(PublicPoly, Vec<SecretShare>), ThresholdError> {
    let poly = Polynomial::random(threshold, None, rng);
    let shares = (1..=members)
        .map(|i| poly.share(i))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((poly.commit(), shares))
}
