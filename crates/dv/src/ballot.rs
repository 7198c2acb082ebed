//! Secret ballot on membership changes.
//!
//! A reshare (replacing an operator, changing `n`) needs a vote of the *current* members in
//! which no individual vote is revealed and anyone can check the tally. The scheme is
//! exponential ElGamal under the cluster's group key with threshold decryption of the sum only:
//!
//! 1. **Proposal.** The change is described by a [`Proposal`]; its hash binds every ballot.
//! 2. **Ballot.** Member `i` votes `v ∈ {0, 1}` by encrypting `v` under the group key `PK` (the
//!    first validator's): `(A, B) = (r·G, v·G + r·PK)` with fresh `r`, plus a disjunctive
//!    Chaum–Pedersen proof (Cramer–Damgård–Schoenmakers) that `(A, B)` encrypts 0 or 1 without
//!    saying which. The proof's challenge covers the proposal hash and the voter's identity, and
//!    the ballot is signed with the voter's identity key: one ballot per member, none replayable.
//! 3. **Tally.** Ballots multiply homomorphically: `(ΣA, ΣB)` encrypts the number of yes votes.
//! 4. **Decryption.** At least `m` members publish `D_j = x_j·ΣA` with a Chaum–Pedersen proof
//!    that `log_G(PK_j) = log_{ΣA}(D_j)` (`PK_j` is their public share in the lock). Lagrange
//!    interpolation gives `PK`'s secret times `ΣA`, hence `yes·G = ΣB − sk·ΣA`, and `yes` is
//!    found by trying `0..=n`. Members only ever decrypt the sum, so a single ballot stays secret
//!    unless `m` members collude — the same coalition that could sign anything anyway.
//! 5. **Rule.** The change passes when `yes ≥ m`. The whole record (ballots, proofs, decryption
//!    shares, result) goes into the new lock file, where [`BallotRecord::verify`] re-checks it.
//!
//! Decryption shares live in G1 while signatures live in G2, so a decryption share can never
//! be used as a partial signature.

use alloy_primitives::B256;
use blstrs::{G1Projective, Scalar};
use group::Group;
use phalanx_crypto::bls::PublicKeyBytes;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::identity::{IdentitySignature, OperatorId, OperatorKey};
use crate::threshold::{
    SecretShare, ThresholdError, g1_from_bytes, g1_to_bytes, hash_to_scalar, lagrange_at_zero,
    random_scalar, scalar_from_bytes,
};

/// Errors of the ballot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BallotError {
    /// A ballot whose proof fails.
    #[error("ballot of {0} does not prove it encrypts 0 or 1")]
    BadBallotProof(OperatorId),
    /// A ballot without a valid identity signature, or from a non-member.
    #[error("ballot of {0} is not signed by a current member")]
    BadBallotSignature(OperatorId),
    /// Two ballots from one member.
    #[error("{0} voted twice")]
    DoubleVote(OperatorId),
    /// A decryption share whose proof fails.
    #[error("decryption share of member {0} does not prove it used the member's key share")]
    BadDecryptionShare(u32),
    /// Fewer decryption shares than the threshold.
    #[error("{have} decryption shares, {need} needed")]
    NotEnoughShares {
        /// Given.
        have: usize,
        /// Needed.
        need: usize,
    },
    /// The decrypted tally is not a vote count.
    #[error("the decrypted tally is not a count between 0 and {0}")]
    TallyOutOfRange(usize),
    /// The recorded result differs from the recomputed one.
    #[error("recorded result (yes = {recorded}) differs from the recomputed tally ({computed})")]
    WrongResult {
        /// Recorded.
        recorded: u32,
        /// Recomputed.
        computed: u32,
    },
    /// Bad encodings.
    #[error(transparent)]
    Encoding(#[from] ThresholdError),
}

/// The membership change being voted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    /// The lock the change applies to.
    pub lock_hash: B256,
    /// Free text (e.g. "replace op-2 by op-5").
    pub description: String,
    /// The new operators' identities, in order.
    pub new_operators: Vec<OperatorId>,
    /// The new threshold.
    pub new_threshold: usize,
}

impl Proposal {
    /// SHA-256 of the proposal's JSON.
    pub fn hash(&self) -> B256 {
        B256::from(<[u8; 32]>::from(Sha256::digest(
            serde_json::to_vec(self).unwrap_or_default(),
        )))
    }
}

/// A non-interactive proof: challenge(s) and response(s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrProof {
    c0: B256,
    c1: B256,
    z0: B256,
    z1: B256,
}

/// One member's encrypted vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ballot {
    /// The voter.
    pub voter: OperatorId,
    /// `r·G`.
    pub a: PublicKeyBytes,
    /// `v·G + r·PK`.
    pub b: PublicKeyBytes,
    /// Proof that `v ∈ {0, 1}`.
    pub proof: OrProof,
    /// The voter's identity signature over proposal hash and ciphertext.
    pub signature: IdentitySignature,
}

/// A member's share of the tally's decryption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecryptionShare {
    /// Share index.
    pub index: u32,
    /// `x_j · ΣA`.
    pub d: PublicKeyBytes,
    /// DLEQ challenge.
    pub c: B256,
    /// DLEQ response.
    pub z: B256,
}

/// The whole verifiable vote, as recorded in the new lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BallotRecord {
    /// What was voted on.
    pub proposal: Proposal,
    /// Every ballot cast.
    pub ballots: Vec<Ballot>,
    /// At least `m` decryption shares of the tally.
    pub decryption_shares: Vec<DecryptionShare>,
    /// Yes votes.
    pub yes: u32,
    /// Whether `yes ≥ m`.
    pub approved: bool,
}

fn s2b(s: &Scalar) -> B256 {
    B256::from(s.to_bytes_be())
}

fn b2s(b: &B256) -> Result<Scalar, ThresholdError> {
    scalar_from_bytes(&b.0)
}

fn p2b(p: &G1Projective) -> PublicKeyBytes {
    PublicKeyBytes::from(g1_to_bytes(p))
}

fn b2p(b: &PublicKeyBytes) -> Result<G1Projective, ThresholdError> {
    g1_from_bytes(b.as_slice())
}

const OR_DOMAIN: &[u8] = b"phalanx-dv-ballot-or-v1";
const DLEQ_DOMAIN: &[u8] = b"phalanx-dv-ballot-dleq-v1";

fn or_challenge(ctx: &[u8], pts: [&G1Projective; 6]) -> Scalar {
    let enc: Vec<[u8; 48]> = pts.iter().map(|p| g1_to_bytes(p)).collect();
    let mut parts: Vec<&[u8]> = vec![ctx];
    parts.extend(enc.iter().map(|e| e.as_slice()));
    hash_to_scalar(OR_DOMAIN, &parts)
}

fn ballot_context(proposal: &B256, voter: &OperatorId) -> Vec<u8> {
    [proposal.as_slice(), voter.0.as_slice()].concat()
}

fn ballot_signing_message(proposal: &B256, a: &PublicKeyBytes, b: &PublicKeyBytes) -> Vec<u8> {
    [
        b"phalanx-dv-ballot-v1".as_slice(),
        proposal.as_slice(),
        a.as_slice(),
        b.as_slice(),
    ]
    .concat()
}

impl Ballot {
    /// Casts `approve` on `proposal` under group key `pk`.
    pub fn cast(
        proposal: &Proposal,
        pk: &PublicKeyBytes,
        approve: bool,
        voter: &OperatorKey,
        rng: &mut impl RngCore,
    ) -> Result<Self, BallotError> {
        let g = G1Projective::generator();
        let pk_point = b2p(pk)?;
        let v = u8::from(approve);
        let r = random_scalar(rng);
        let a = g * r;
        let b = g * Scalar::from(u64::from(v)) + pk_point * r;
        let ctx = ballot_context(&proposal.hash(), &voter.id());
        // Simulated branch 1 - v, real branch v.
        let (c_sim, z_sim, w) = (random_scalar(rng), random_scalar(rng), random_scalar(rng));
        let sim_k = 1 - v;
        let sim_b = b - g * Scalar::from(u64::from(sim_k));
        let a_sim = g * z_sim - a * c_sim;
        let b_sim = pk_point * z_sim - sim_b * c_sim;
        let (a_real, b_real) = (g * w, pk_point * w);
        let (a0, b0, a1, b1) = if v == 0 {
            (a_real, b_real, a_sim, b_sim)
        } else {
            (a_sim, b_sim, a_real, b_real)
        };
        let c = or_challenge(&ctx, [&a, &b, &a0, &b0, &a1, &b1]);
        let c_real = c - c_sim;
        let z_real = w + c_real * r;
        let (c0, c1, z0, z1) = if v == 0 {
            (c_real, c_sim, z_real, z_sim)
        } else {
            (c_sim, c_real, z_sim, z_real)
        };
        let (a_bytes, b_bytes) = (p2b(&a), p2b(&b));
        let signature = voter.sign(&ballot_signing_message(
            &proposal.hash(),
            &a_bytes,
            &b_bytes,
        ));
        Ok(Self {
            voter: voter.id(),
            a: a_bytes,
            b: b_bytes,
            proof: OrProof {
                c0: s2b(&c0),
                c1: s2b(&c1),
                z0: s2b(&z0),
                z1: s2b(&z1),
            },
            signature,
        })
    }

    /// Checks signature and proof.
    pub fn verify(&self, proposal_hash: &B256, pk: &PublicKeyBytes) -> Result<(), BallotError> {
        if !self.voter.verify(
            &ballot_signing_message(proposal_hash, &self.a, &self.b),
            &self.signature,
        ) {
            return Err(BallotError::BadBallotSignature(self.voter));
        }
        let g = G1Projective::generator();
        let pk_point = b2p(pk)?;
        let (a, b) = (b2p(&self.a)?, b2p(&self.b)?);
        let p = &self.proof;
        let (c0, c1, z0, z1) = (b2s(&p.c0)?, b2s(&p.c1)?, b2s(&p.z0)?, b2s(&p.z1)?);
        let a0 = g * z0 - a * c0;
        let b0 = pk_point * z0 - b * c0;
        let a1 = g * z1 - a * c1;
        let b1 = pk_point * z1 - (b - g) * c1;
        let c = or_challenge(
            &ballot_context(proposal_hash, &self.voter),
            [&a, &b, &a0, &b0, &a1, &b1],
        );
        if c0 + c1 != c {
            return Err(BallotError::BadBallotProof(self.voter));
        }
        Ok(())
    }
}

/// The homomorphic sum of the ballots: `(ΣA, ΣB)`.
pub fn tally(ballots: &[Ballot]) -> Result<(G1Projective, G1Projective), BallotError> {
    let mut sa = G1Projective::identity();
    let mut sb = G1Projective::identity();
    for bal in ballots {
        sa += b2p(&bal.a)?;
        sb += b2p(&bal.b)?;
    }
    Ok((sa, sb))
}

fn dleq_challenge(
    p: &G1Projective,
    a: &G1Projective,
    d: &G1Projective,
    t1: &G1Projective,
    t2: &G1Projective,
) -> Scalar {
    let enc: Vec<[u8; 48]> = [p, a, d, t1, t2].iter().map(|x| g1_to_bytes(x)).collect();
    let parts: Vec<&[u8]> = enc.iter().map(|e| e.as_slice()).collect();
    hash_to_scalar(DLEQ_DOMAIN, &parts)
}

impl DecryptionShare {
    /// Member `share.index`'s decryption share of the tally of `ballots`.
    pub fn create(
        ballots: &[Ballot],
        share: &SecretShare,
        rng: &mut impl RngCore,
    ) -> Result<Self, BallotError> {
        let (sa, _) = tally(ballots)?;
        let g = G1Projective::generator();
        let x = share.scalar();
        let (p, d) = (g * x, sa * x);
        let w = random_scalar(rng);
        let c = dleq_challenge(&p, &sa, &d, &(g * w), &(sa * w));
        Ok(Self {
            index: share.index,
            d: p2b(&d),
            c: s2b(&c),
            z: s2b(&(w + c * x)),
        })
    }

    /// Checks the proof against the member's public share.
    pub fn verify(
        &self,
        sum_a: &G1Projective,
        public_share: &PublicKeyBytes,
    ) -> Result<(), BallotError> {
        let g = G1Projective::generator();
        let p = b2p(public_share)?;
        let d = b2p(&self.d)?;
        let (c, z) = (b2s(&self.c)?, b2s(&self.z)?);
        let t1 = g * z - p * c;
        let t2 = sum_a * z - d * c;
        if dleq_challenge(&p, sum_a, &d, &t1, &t2) != c {
            return Err(BallotError::BadDecryptionShare(self.index));
        }
        Ok(())
    }
}

/// Who may vote and how the result is judged: the current lock's members and keys.
#[derive(Debug, Clone)]
pub struct Electorate<'a> {
    /// Current members, position i = share index i + 1.
    pub members: &'a [OperatorId],
    /// Current threshold.
    pub threshold: usize,
    /// Group key ballots are encrypted under.
    pub group_key: &'a PublicKeyBytes,
    /// Current public shares (for decryption-share proofs).
    pub public_shares: &'a [PublicKeyBytes],
}

impl Electorate<'_> {
    /// Checks every ballot: signed by a distinct current member, with a valid proof.
    pub fn check_ballots(
        &self,
        proposal_hash: &B256,
        ballots: &[Ballot],
    ) -> Result<(), BallotError> {
        for (k, b) in ballots.iter().enumerate() {
            if !self.members.contains(&b.voter) {
                return Err(BallotError::BadBallotSignature(b.voter));
            }
            if ballots[..k].iter().any(|o| o.voter == b.voter) {
                return Err(BallotError::DoubleVote(b.voter));
            }
            b.verify(proposal_hash, self.group_key)?;
        }
        Ok(())
    }

    /// Decrypts the tally from verified decryption shares: the number of yes votes.
    pub fn decrypt(
        &self,
        ballots: &[Ballot],
        shares: &[DecryptionShare],
    ) -> Result<u32, BallotError> {
        let (sa, sb) = tally(ballots)?;
        let mut valid = Vec::new();
        for s in shares {
            let pk = self
                .public_shares
                .get((s.index as usize).wrapping_sub(1))
                .ok_or(BallotError::BadDecryptionShare(s.index))?;
            s.verify(&sa, pk)?;
            valid.push(s);
        }
        if valid.len() < self.threshold {
            return Err(BallotError::NotEnoughShares {
                have: valid.len(),
                need: self.threshold,
            });
        }
        let used = &valid[..self.threshold];
        let indices: Vec<u32> = used.iter().map(|s| s.index).collect();
        let lambdas = lagrange_at_zero(&indices)?;
        let mut sk_a = G1Projective::identity();
        for (s, l) in used.iter().zip(&lambdas) {
            sk_a += b2p(&s.d)? * l;
        }
        let yes_g = sb - sk_a;
        let g = G1Projective::generator();
        let mut acc = G1Projective::identity();
        for yes in 0..=ballots.len() {
            if acc == yes_g {
                return Ok(yes as u32);
            }
            acc += g;
        }
        Err(BallotError::TallyOutOfRange(ballots.len()))
    }

    /// Builds the record of a finished vote.
    pub fn record(
        &self,
        proposal: Proposal,
        ballots: Vec<Ballot>,
        shares: Vec<DecryptionShare>,
    ) -> Result<BallotRecord, BallotError> {
        self.check_ballots(&proposal.hash(), &ballots)?;
        let yes = self.decrypt(&ballots, &shares)?;
        Ok(BallotRecord {
            proposal,
            ballots,
            decryption_shares: shares,
            yes,
            approved: yes as usize >= self.threshold,
        })
    }
}

impl BallotRecord {
    /// Re-checks every ballot, every decryption share and the result.
    pub fn verify(&self, electorate: &Electorate<'_>) -> Result<(), BallotError> {
        electorate.check_ballots(&self.proposal.hash(), &self.ballots)?;
        let yes = electorate.decrypt(&self.ballots, &self.decryption_shares)?;
        if yes != self.yes || self.approved != (yes as usize >= electorate.threshold) {
            return Err(BallotError::WrongResult {
                recorded: self.yes,
                computed: yes,
            });
        }
        Ok(())
    }
}
