//! Signing roots, as Ethereum's `compute_signing_root`, with one domain per message type.
//!
//! ```text
//! fork_data_root = hash_tree_root(ForkData{current_version, genesis_validators_root})
//! domain         = domain_type (4 bytes) ++ fork_data_root[0..28]
//! signing_root   = hash_tree_root(SigningData{object_root: hash_tree_root(msg), domain})
//! ```
//!
//! Every signed message type implements [`Signable`], which fixes its [`DomainType`], so a
//! signature over one kind of message can never be replayed as another kind, on another chain
//! (genesis validators root) or across a fork version.

use phalanx_crypto::{BlsError, PublicKey, SecretKey, Signature, SignatureBytes};
use ssz_derive::{Decode, Encode};
use tree_hash::TreeHash;
use tree_hash_derive::TreeHash;

use crate::consensus::{
    AttestationData, BlockHeader, Claim, Declaration, ExecutorDeposit, ExecutorExit,
};
use crate::primitives::{Epoch, Root};

/// The 4-byte tag that separates kinds of signed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DomainType(pub [u8; 4]);

/// A producer's block header.
pub const DOMAIN_BLOCK_HEADER: DomainType = DomainType([0x00, 0, 0, 0]);
/// An attestation.
pub const DOMAIN_ATTESTATION: DomainType = DomainType([0x01, 0, 0, 0]);
/// A RANDAO reveal (signature over an epoch).
pub const DOMAIN_RANDAO: DomainType = DomainType([0x02, 0, 0, 0]);
/// A validator's declaration of the slot's producer.
pub const DOMAIN_DECLARATION: DomainType = DomainType([0x70, 0, 0, 0]);
/// An executor's claim.
pub const DOMAIN_CLAIM: DomainType = DomainType([0x71, 0, 0, 0]);
/// A distributed-validator operator's signature over a cluster lock.
pub const DOMAIN_DV_LOCK: DomainType = DomainType([0x72, 0, 0, 0]);
/// Executor deposits (signed by the new executor and by the funding producer).
pub const DOMAIN_EXECUTOR_DEPOSIT: DomainType = DomainType([0x73, 0, 0, 0]);
/// Executor exits.
pub const DOMAIN_EXECUTOR_EXIT: DomainType = DomainType([0x74, 0, 0, 0]);

/// `ForkData` of the Ethereum consensus specs.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, TreeHash)]
pub struct ForkData {
    /// Fork version.
    pub current_version: alloy_primitives::FixedBytes<4>,
    /// Root of the genesis validator registry.
    pub genesis_validators_root: Root,
}

/// `SigningData` of the Ethereum consensus specs.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, TreeHash)]
pub struct SigningData {
    /// Root of the signed object.
    pub object_root: Root,
    /// Domain.
    pub domain: Root,
}

/// `compute_domain(domain_type, fork_version, genesis_validators_root)`.
pub fn compute_domain(
    domain_type: DomainType,
    fork_version: [u8; 4],
    genesis_validators_root: Root,
) -> Root {
    let fork_data_root = ForkData {
        current_version: fork_version.into(),
        genesis_validators_root,
    }
    .tree_hash_root();
    let mut domain = [0u8; 32];
    domain[..4].copy_from_slice(&domain_type.0);
    domain[4..].copy_from_slice(&fork_data_root[..28]);
    Root::from(domain)
}

/// `compute_signing_root(object, domain)`.
pub fn compute_signing_root<T: TreeHash + ?Sized>(object: &T, domain: Root) -> Root {
    SigningData {
        object_root: object.tree_hash_root(),
        domain,
    }
    .tree_hash_root()
}

/// A message type that is signed, and under which domain.
pub trait Signable: TreeHash {
    /// The domain of this message type.
    const DOMAIN: DomainType;
}

impl Signable for Declaration {
    const DOMAIN: DomainType = DOMAIN_DECLARATION;
}
impl Signable for BlockHeader {
    const DOMAIN: DomainType = DOMAIN_BLOCK_HEADER;
}
impl Signable for AttestationData {
    const DOMAIN: DomainType = DOMAIN_ATTESTATION;
}
impl Signable for Claim {
    const DOMAIN: DomainType = DOMAIN_CLAIM;
}
impl Signable for ExecutorDeposit {
    const DOMAIN: DomainType = DOMAIN_EXECUTOR_DEPOSIT;
}
impl Signable for ExecutorExit {
    const DOMAIN: DomainType = DOMAIN_EXECUTOR_EXIT;
}
impl Signable for Epoch {
    const DOMAIN: DomainType = DOMAIN_RANDAO;
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Key or signature bytes are not valid points.
    #[error(transparent)]
    Malformed(#[from] BlsError),
    /// Well-formed, but not a signature by that key over that message.
    #[error("signature does not verify")]
    Invalid,
}

/// What makes signatures chain-specific: the fork version and genesis validators root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigningContext {
    /// The chain's fork version.
    pub fork_version: [u8; 4],
    /// Root of the genesis validator registry.
    pub genesis_validators_root: Root,
}

impl SigningContext {
    /// The domain of `T` on this chain.
    pub fn domain(&self, domain_type: DomainType) -> Root {
        compute_domain(domain_type, self.fork_version, self.genesis_validators_root)
    }

    /// The signing root of `msg` on this chain.
    pub fn signing_root<T: Signable>(&self, msg: &T) -> Root {
        compute_signing_root(msg, self.domain(T::DOMAIN))
    }

    /// Signs `msg` with `sk`.
    pub fn sign<T: Signable>(&self, msg: &T, sk: &SecretKey) -> SignatureBytes {
        sk.sign(self.signing_root(msg).as_slice()).to_bytes()
    }

    /// Verifies `sig` over `msg` by `pk`.
    pub fn verify<T: Signable>(
        &self,
        msg: &T,
        pk: &PublicKey,
        sig: &SignatureBytes,
    ) -> Result<(), SignatureError> {
        let sig = Signature::try_from(sig)?;
        if sig.verify(pk, self.signing_root(msg).as_slice()) {
            Ok(())
        } else {
            Err(SignatureError::Invalid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::primitives::{ProducerIndex, Slot, ValidatorIndex};

    fn declaration() -> Declaration {
        Declaration {
            slot: Slot(3),
            proposer_index: ValidatorIndex(1),
            parent_root: Root::repeat_byte(7),
            producer: ProducerIndex(0),
            fee_split_bps: 5000,
            randao_reveal: SignatureBytes::ZERO,
        }
    }

    #[test]
    fn domain_layout_matches_the_spec() {
        let d = compute_domain(DOMAIN_DECLARATION, [1, 2, 3, 4], Root::repeat_byte(9));
        assert_eq!(&d[..4], &[0x70, 0, 0, 0]);
        let fork_root = ForkData {
            current_version: [1, 2, 3, 4].into(),
            genesis_validators_root: Root::repeat_byte(9),
        }
        .tree_hash_root();
        assert_eq!(&d[4..], &fork_root[..28]);
    }

    #[test]
    fn signatures_do_not_cross_chains_or_types() {
        let sk = SecretKey::key_gen(&[5u8; 32]).unwrap();
        let pk = sk.public_key();
        let ctx = SigningContext {
            fork_version: [0; 4],
            genesis_validators_root: Root::ZERO,
        };
        let other = SigningContext {
            fork_version: [0; 4],
            genesis_validators_root: Root::repeat_byte(1),
        };
        let msg = declaration();
        let sig = ctx.sign(&msg, &sk);
        assert_eq!(ctx.verify(&msg, &pk, &sig), Ok(()));
        assert_eq!(other.verify(&msg, &pk, &sig), Err(SignatureError::Invalid));
        // The same bytes signed as a RANDAO reveal (another domain) are not a declaration.
        let randao = ctx.sign(&Epoch(3), &sk);
        assert_eq!(ctx.verify(&msg, &pk, &randao), Err(SignatureError::Invalid));
        assert!(matches!(
            ctx.verify(&msg, &pk, &SignatureBytes::repeat_byte(0xff)),
            Err(SignatureError::Malformed(_))
        ));
    }
}
