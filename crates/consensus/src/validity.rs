//! Data validity of a block: what consensus checks before a block may enter fork choice.
//!
//! Consensus never decodes or executes a transaction. A block is *data-valid* when, in this
//! order (the first failure is reported):
//!
//! 1. its SSZ encoding is at most `max_block_bytes`, it has at most `shards_per_block`
//!    shards, and no shard holds more than `max_transactions_per_shard` transactions;
//! 2. the header's slot and parent equal its declaration's (the producer may only extend
//!    the parent the validator declared);
//! 3. the declaration is by the slot's proposer, names a producer that exists and is not
//!    slashed, that producer is the header's, and `fee_split_bps ≤ 10000`;
//! 4. the declaration is signed by the proposer, the RANDAO reveal is the proposer's
//!    signature over the slot's epoch, and the header is signed by the producer (the three
//!    checked together, then one by one to name a failure);
//! 5. `shard_roots[i] = hash_tree_root(shards[i])` for every shard, with as many roots as
//!    shards, and `body_root = hash_tree_root(body)`.
//!
//! The contents of the body (attestations, claims, slashings, fraud proofs) are judged
//! against the chain's state by the state transition, not here.

use phalanx_crypto::bls::{SignatureSet, verify_signature_sets};
use phalanx_crypto::{PublicKey, Signature};
use phalanx_spec::ChainSpec;
use phalanx_types::signing::{Signable, SigningContext};
use phalanx_types::{Encode, SignedBlock, TreeHash, ValidatorIndex};
use rayon::prelude::*;

use crate::registry::Registry;

/// Why a block is not data-valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// Encoded block too large.
    #[error("block is {size} bytes, above the limit of {max}")]
    Oversize {
        /// Encoded size.
        size: usize,
        /// Limit.
        max: u64,
    },
    /// Too many shards.
    #[error("block has {got} shards, at most {max} allowed")]
    TooManyShards {
        /// Shards in the block.
        got: usize,
        /// Limit.
        max: u64,
    },
    /// A shard has too many transactions.
    #[error("shard {shard} has {got} transactions, at most {max} allowed")]
    TooManyTransactions {
        /// The shard.
        shard: usize,
        /// Its transactions.
        got: usize,
        /// Limit.
        max: u64,
    },
    /// Header and declaration disagree on the slot.
    #[error("header slot {header} differs from its declaration's slot {declaration}")]
    SlotMismatch {
        /// Header's.
        header: u64,
        /// Declaration's.
        declaration: u64,
    },
    /// The producer did not extend the declared parent.
    #[error("header parent differs from the parent the validator declared")]
    ParentMismatch,
    /// The declaration is not by the slot's proposer.
    #[error("declaration is by validator {got}, but validator {expected} proposes this slot")]
    WrongProposer {
        /// The slot's proposer.
        expected: u64,
        /// The declaration's.
        got: u64,
    },
    /// The declaration's proposer is not in the registry.
    #[error("validator {0} does not exist")]
    UnknownValidator(u64),
    /// The producer is not in the registry.
    #[error("producer {0} does not exist")]
    UnknownProducer(u64),
    /// The producer is slashed.
    #[error("producer {0} is slashed")]
    SlashedProducer(u64),
    /// The header names another producer than the declaration.
    #[error("header producer {header} differs from the declared producer {declared}")]
    ProducerMismatch {
        /// Declared.
        declared: u64,
        /// Header's.
        header: u64,
    },
    /// Fee split above 100%.
    #[error("fee split of {0} basis points is above 10000")]
    FeeSplitOutOfRange(u16),
    /// The declaration's signature is wrong.
    #[error("declaration signature is invalid")]
    BadDeclarationSignature,
    /// The RANDAO reveal is wrong.
    #[error("RANDAO reveal is invalid")]
    BadRandaoReveal,
    /// The header's signature is wrong.
    #[error("header signature is invalid")]
    BadHeaderSignature,
    /// Different numbers of shard roots and shards.
    #[error("header commits to {roots} shards, the block carries {shards}")]
    ShardCountMismatch {
        /// Roots in the header.
        roots: usize,
        /// Shards in the block.
        shards: usize,
    },
    /// A shard does not match its root.
    #[error("shard {0} does not match its root in the header")]
    ShardRootMismatch(usize),
    /// The body does not match the header's body root.
    #[error("body does not match the header's body root")]
    BodyRootMismatch,
}

/// What a block is checked against.
#[derive(Debug, Clone)]
pub struct ChainContext<'a> {
    /// Protocol constants.
    pub spec: &'a ChainSpec,
    /// Signing domains of this chain.
    pub signing: SigningContext,
    /// Validators and producers.
    pub registry: &'a Registry,
}

fn verifies<T: Signable>(
    ctx: &SigningContext,
    msg: &T,
    key: &PublicKey,
    sig: &phalanx_crypto::SignatureBytes,
) -> bool {
    ctx.verify(msg, key, sig).is_ok()
}

/// Checks the data validity of `block`, whose slot's proposer is `proposer`.
pub fn check_block(
    ctx: &ChainContext<'_>,
    proposer: ValidatorIndex,
    block: &SignedBlock,
) -> Result<(), BlockError> {
    let spec = ctx.spec;

    // 1. Sizes.
    let size = block.ssz_bytes_len();
    if size as u64 > spec.max_block_bytes {
        return Err(BlockError::Oversize {
            size,
            max: spec.max_block_bytes,
        });
    }
    if block.shards.len() as u64 > spec.shards_per_block {
        return Err(BlockError::TooManyShards {
            got: block.shards.len(),
            max: spec.shards_per_block,
        });
    }
    for (i, shard) in block.shards.iter().enumerate() {
        if shard.transactions.len() as u64 > spec.max_transactions_per_shard {
            return Err(BlockError::TooManyTransactions {
                shard: i,
                got: shard.transactions.len(),
                max: spec.max_transactions_per_shard,
            });
        }
    }

    // 2–4.
    check_header(ctx, proposer, &block.header)?;

    // 5. Commitments.
    check_commitments(block)
}

/// Steps 2–4 of [`check_block`], which need only the signed header: it extends exactly what
/// was declared, `proposer` declared it, its producer is registered and unslashed, and the
/// declaration, RANDAO reveal and header signatures verify. A light client checks headers
/// with this alone.
pub fn check_header(
    ctx: &ChainContext<'_>,
    proposer: ValidatorIndex,
    signed: &phalanx_types::SignedBlockHeader,
) -> Result<(), BlockError> {
    let spec = ctx.spec;
    let header = &signed.message;
    let declaration = &header.declaration.message;

    // 2. The header extends exactly what was declared.
    if header.slot != declaration.slot {
        return Err(BlockError::SlotMismatch {
            header: header.slot.0,
            declaration: declaration.slot.0,
        });
    }
    if header.parent_root != declaration.parent_root {
        return Err(BlockError::ParentMismatch);
    }

    // 3. Who may sign.
    if declaration.proposer_index != proposer {
        return Err(BlockError::WrongProposer {
            expected: proposer.0,
            got: declaration.proposer_index.0,
        });
    }
    let validator = ctx
        .registry
        .validator(proposer)
        .ok_or(BlockError::UnknownValidator(proposer.0))?;
    let producer = ctx
        .registry
        .producer(declaration.producer)
        .ok_or(BlockError::UnknownProducer(declaration.producer.0))?;
    if producer.slashed {
        return Err(BlockError::SlashedProducer(declaration.producer.0));
    }
    if header.producer != declaration.producer {
        return Err(BlockError::ProducerMismatch {
            declared: declaration.producer.0,
            header: header.producer.0,
        });
    }
    if declaration.fee_split_bps > 10_000 {
        return Err(BlockError::FeeSplitOutOfRange(declaration.fee_split_bps));
    }

    // 4. Signatures: one batch, then one by one to name the failure.
    let epoch = declaration.slot.epoch(spec.slots_per_epoch);
    let roots = [
        ctx.signing.signing_root(declaration),
        ctx.signing.signing_root(&epoch),
        ctx.signing.signing_root(header),
    ];
    let sigs = [
        Signature::try_from(&header.declaration.signature)
            .map_err(|_| BlockError::BadDeclarationSignature)?,
        Signature::try_from(&declaration.randao_reveal).map_err(|_| BlockError::BadRandaoReveal)?,
        Signature::try_from(&signed.signature).map_err(|_| BlockError::BadHeaderSignature)?,
    ];
    let keys = [&validator.pubkey, &validator.pubkey, &producer.pubkey];
    let sets: Vec<SignatureSet<'_>> = (0..3)
        .map(|i| SignatureSet {
            pubkey: keys[i],
            message: roots[i].as_slice(),
            signature: &sigs[i],
        })
        .collect();
    if !verify_signature_sets(&sets) {
        if !verifies(
            &ctx.signing,
            declaration,
            &validator.pubkey,
            &header.declaration.signature,
        ) {
            return Err(BlockError::BadDeclarationSignature);
        }
        if !verifies(
            &ctx.signing,
            &epoch,
            &validator.pubkey,
            &declaration.randao_reveal,
        ) {
            return Err(BlockError::BadRandaoReveal);
        }
        return Err(BlockError::BadHeaderSignature);
    }
    Ok(())
}

/// Step 5 of [`check_block`]: the shards and body are the ones the header commits to.
fn check_commitments(block: &SignedBlock) -> Result<(), BlockError> {
    let header = &block.header.message;
    if header.shard_roots.len() != block.shards.len() {
        return Err(BlockError::ShardCountMismatch {
            roots: header.shard_roots.len(),
            shards: block.shards.len(),
        });
    }
    // Shard roots are independent: hash them on every core; report the lowest bad index.
    let bad = block
        .shards
        .par_iter()
        .zip(header.shard_roots.par_iter())
        .enumerate()
        .filter(|(_, (shard, root))| shard.tree_hash_root() != **root)
        .map(|(i, _)| i)
        .min();
    if let Some(i) = bad {
        return Err(BlockError::ShardRootMismatch(i));
    }
    if block.body.tree_hash_root() != header.body_root {
        return Err(BlockError::BodyRootMismatch);
    }
    Ok(())
}
