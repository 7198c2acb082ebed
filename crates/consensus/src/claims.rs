//! Executors' claims and wrong-claim proofs as block operations (seed 003): what a block's
//! body may carry about execution, and what importing it does.
//!
//! Consensus never executes, so it judges claims by data alone. A claim names its block by
//! the name execution gives it (the hash of the execution header derived from the consensus
//! header; in the simulator, the consensus root) and by its execution height. The importer
//! hands these rules the block's ancestors inside the window, newest first, each with that
//! name and height ([`Ancestor`]).
//!
//! **Claims** (`body.claims`). Each, in order, or the block is invalid:
//!
//! 1. **Signed** by an executor the registry of the block's branch knows (after the releases
//!    due at the block's epoch), the signature valid (checked in one batch per block).
//!    Whether the executor is slashed does not matter to validity: its claim weighs nothing
//!    anywhere, and honest producers leave it out.
//! 2. **About a block of this chain**: an ancestor of the block, at most [`CLAIM_WINDOW`]
//!    slots before it, has execution height `height` and the name `block_hash`. A claim
//!    about a block that is not in the chain is never carried (seed 003's reply: claims
//!    about unknown blocks are spam), nor is a claim too old to matter to a light client.
//! 3. **New**: no claim by the same executor at the same height is in the block before it or
//!    in an ancestor inside the window (the only blocks that can hold one, since a claim
//!    comes after its block). One claim per executor and height is on chain; a second,
//!    different one is slashable as a wrong claim if wrong, and refused here either way.
//!
//! **Wrong-claim proofs** (`body.fraud_proofs`). Each, or the block is invalid:
//!
//! 4. is of kind `WrongClaim` (this chain carries no other kind yet), about an ancestor
//!    inside the window;
//! 5. passes [`crate::executors::apply_wrong_claim`]: the accused executor signed the claim,
//!    and the execution side's verifier re-executes the block and gets another root. The
//!    parent state is **the claim's own `prev_state_root`**: a claim says "this block, run on
//!    the state with root P, gives Q", and a re-execution from P that gives something else
//!    makes it false whether or not P is the chain's true parent root. So consensus needs no
//!    state root it would have to execute to know, and an honest claim (true P, true Q)
//!    cannot be framed, since verification is sound.
//! 6. **Effect**: the executor's whole bond is slashed; one [`BOUNTY_QUOTIENT`]th of it is
//!    credited to the bond of the block's producer, who carried the proof to the chain (a
//!    proof names no submitter, so, as in Ethereum when no whistleblower is named, the
//!    includer is paid). An executor already slashed on this branch is skipped — no second
//!    bounty, and not an error (two proofs of one lie may race into the pools).
//!
//! Around these, [`process_body`] runs the executor operations of `crate::executor_ops`:
//! releases due at the block's epoch first, then these rules, then deposits and exits. Light
//! clients apply the same effects to the final blocks they follow with [`apply_final`].
//!
//! [`BOUNTY_QUOTIENT`]: crate::executors::BOUNTY_QUOTIENT

use std::collections::HashSet;

use alloy_primitives::B256;
use phalanx_crypto::bls::{SignatureSet, verify_signature_sets};
use phalanx_crypto::{PublicKey, Signature};
use phalanx_types::fraud::FraudProofVerifier;
use phalanx_types::{
    BlockBody, BlockHeader, Decode, Epoch, ExecutorIndex, FraudProofKind, Gwei, ProducerIndex,
    Root, SignedClaim, SigningContext, WrongClaimEvidence,
};

use crate::executor_ops::{OpError, OpsEffects, process_ops, release};
use crate::executors::{ExecutorRegistry, Released, WrongClaimError, apply_wrong_claim};

/// The block whose body is processed, as these rules need it.
#[derive(Clone, Copy)]
pub struct At<'a> {
    /// Its producer (paid the bounties of the proofs it carries).
    pub producer: ProducerIndex,
    /// Its epoch (releases and exits).
    pub epoch: Epoch,
    /// The producers' keys (deposits are signed by the funding producer).
    pub producer_key: &'a dyn Fn(u64) -> Option<PublicKey>,
}

/// Rule 2: how many slots back a claim's block (and a wrong-claim proof's) may be.
pub const CLAIM_WINDOW: u64 = 256;

/// A block before the one being imported, as these rules see it.
#[derive(Debug, Clone, Copy)]
pub struct Ancestor<'a> {
    /// Its consensus root.
    pub root: Root,
    /// Its header.
    pub header: &'a BlockHeader,
    /// Its body.
    pub body: &'a BlockBody,
    /// Its execution height (the genesis is 0).
    pub height: u64,
    /// The name claims use for it.
    pub name: B256,
}

/// Why a claim cannot go (or is not allowed) in a block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// Rule 1: no such executor.
    #[error("executor {0} is not in the registry")]
    UnknownExecutor(u64),
    /// Rule 1: the signature does not verify.
    #[error("claim by executor {executor} at height {height}: bad signature")]
    BadSignature {
        /// Signer.
        executor: u64,
        /// Claimed height.
        height: u64,
    },
    /// Rule 2.
    #[error(
        "claim by executor {executor} names block {block} at height {height}, which is not in \
         this chain's last {CLAIM_WINDOW} slots"
    )]
    UnknownBlock {
        /// Signer.
        executor: u64,
        /// Claimed height.
        height: u64,
        /// Named block.
        block: B256,
    },
    /// Rule 3.
    #[error("executor {executor} already has a claim at height {height} on this chain")]
    Duplicate {
        /// Signer.
        executor: u64,
        /// Height.
        height: u64,
    },
}

/// Why a block's execution operations make it invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Claim `index` breaks a rule.
    #[error("claim {index}: {source}")]
    Claim {
        /// Its position in the body.
        index: usize,
        /// The rule.
        source: ClaimError,
    },
    /// Rule 4: a fraud proof of another kind.
    #[error("fraud proof {index}: kind {kind} is not carried by this chain")]
    UnsupportedProof {
        /// Its position.
        index: usize,
        /// Its kind.
        kind: u8,
    },
    /// Rule 4: about a block that is not a recent ancestor.
    #[error("fraud proof {index}: block {block} is not in this chain's last {CLAIM_WINDOW} slots")]
    ProofUnknownBlock {
        /// Its position.
        index: usize,
        /// The accused block.
        block: Root,
    },
    /// Rule 5.
    #[error("fraud proof {index}: {source}")]
    Proof {
        /// Its position.
        index: usize,
        /// Why.
        source: WrongClaimError,
    },
    /// A deposit or exit breaks `crate::executor_ops`' rules.
    #[error(transparent)]
    Op(#[from] OpError),
}

/// What importing a block's execution operations did (rule 6).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyEffects {
    /// Claims the block carried.
    pub claims: usize,
    /// Executors slashed, each with the bounty credited to the block's producer.
    pub slashed: Vec<(ExecutorIndex, Gwei)>,
    /// Executors gone after their withdrawal delay, with their bonds.
    pub released: Vec<Released>,
    /// Deposits and exits.
    pub ops: OpsEffects,
}

/// The `(executor, height)` of every claim in `ancestors` (rule 3's memory).
pub fn claims_on_chain(ancestors: &[Ancestor<'_>]) -> HashSet<(u64, u64)> {
    ancestors
        .iter()
        .flat_map(|a| a.body.claims.iter())
        .map(|c| (c.executor.0, c.message.height))
        .collect()
}

/// The ancestor named by `claim` (rule 2), if any.
fn named<'a, 'b>(ancestors: &'b [Ancestor<'a>], claim: &SignedClaim) -> Option<&'b Ancestor<'a>> {
    ancestors
        .iter()
        .find(|a| a.height == claim.message.height && a.name == claim.message.block_hash)
}

/// Rules 2 and 3 for one claim (its signature is rule 1, checked apart): `ancestors` are the
/// new block's, newest first, inside the window; `seen` holds the claims already on chain or
/// earlier in the block. What a producer asks before putting a claim in its block.
pub fn check_place(
    claim: &SignedClaim,
    ancestors: &[Ancestor<'_>],
    seen: &HashSet<(u64, u64)>,
) -> Result<(), ClaimError> {
    let (executor, height) = (claim.executor.0, claim.message.height);
    if named(ancestors, claim).is_none() {
        return Err(ClaimError::UnknownBlock {
            executor,
            height,
            block: claim.message.block_hash,
        });
    }
    if seen.contains(&(executor, height)) {
        return Err(ClaimError::Duplicate { executor, height });
    }
    Ok(())
}

/// Rule 1 for one claim.
pub fn check_signature(
    claim: &SignedClaim,
    registry: &ExecutorRegistry,
    signing: &SigningContext,
) -> Result<(), ClaimError> {
    let key = registry
        .get(claim.executor)
        .map(|e| e.pubkey)
        .ok_or(ClaimError::UnknownExecutor(claim.executor.0))?;
    signing
        .verify(&claim.message, &key, &claim.signature)
        .map_err(|_| ClaimError::BadSignature {
            executor: claim.executor.0,
            height: claim.message.height,
        })
}

/// Rule 1 for every claim of a body at once: one batch, then one by one only to name a
/// failure.
fn check_signatures(
    claims: &[SignedClaim],
    registry: &ExecutorRegistry,
    signing: &SigningContext,
) -> Result<(), BodyError> {
    if claims.is_empty() {
        return Ok(());
    }
    let mut parts = Vec::with_capacity(claims.len());
    for (index, c) in claims.iter().enumerate() {
        let key = registry
            .get(c.executor)
            .map(|e| e.pubkey)
            .ok_or(BodyError::Claim {
                index,
                source: ClaimError::UnknownExecutor(c.executor.0),
            })?;
        let Ok(sig) = Signature::try_from(&c.signature) else {
            return Err(BodyError::Claim {
                index,
                source: ClaimError::BadSignature {
                    executor: c.executor.0,
                    height: c.message.height,
                },
            });
        };
        parts.push((key, signing.signing_root(&c.message), sig));
    }
    let sets: Vec<SignatureSet<'_>> = parts
        .iter()
        .map(|(pubkey, root, signature)| SignatureSet {
            pubkey,
            message: root.as_slice(),
            signature,
        })
        .collect();
    if verify_signature_sets(&sets) {
        return Ok(());
    }
    for (index, c) in claims.iter().enumerate() {
        check_signature(c, registry, signing)
            .map_err(|source| BodyError::Claim { index, source })?;
    }
    Ok(())
}

/// Rules 1–6 for a block's `body`, with the executor operations around them: releases due
/// at the block's epoch, then every claim and wrong-claim proof, then deposits and exits.
/// Applied to `registry` (the registry of the block's parent, on its branch) only if all
/// pass. `ancestors` are the block's, newest first, back to [`CLAIM_WINDOW`] slots before
/// it; `verifier` re-executes (the execution side's `ClaimVerifier`, which resolves each
/// block's name and environment).
pub fn process_body(
    body: &BlockBody,
    at: &At<'_>,
    ancestors: &[Ancestor<'_>],
    registry: &mut ExecutorRegistry,
    signing: &SigningContext,
    verifier: &dyn FraudProofVerifier,
) -> Result<BodyEffects, BodyError> {
    let mut next = registry.clone();
    let released = release(&mut next, at.epoch);
    check_signatures(body.claims.as_ref(), &next, signing)?;
    let mut seen = claims_on_chain(ancestors);
    for (index, claim) in body.claims.iter().enumerate() {
        check_place(claim, ancestors, &seen)
            .map_err(|source| BodyError::Claim { index, source })?;
        seen.insert((claim.executor.0, claim.message.height));
    }
    let mut effects = BodyEffects {
        claims: body.claims.len(),
        released,
        ..BodyEffects::default()
    };
    for (index, proof) in body.fraud_proofs.iter().enumerate() {
        if proof.kind != FraudProofKind::WrongClaim as u8 {
            return Err(BodyError::UnsupportedProof {
                index,
                kind: proof.kind,
            });
        }
        let Some(accused) = ancestors.iter().find(|a| a.root == proof.block_root) else {
            return Err(BodyError::ProofUnknownBlock {
                index,
                block: proof.block_root,
            });
        };
        let evidence =
            WrongClaimEvidence::from_ssz_bytes(&proof.payload).map_err(|e| BodyError::Proof {
                index,
                source: WrongClaimError::Malformed(format!("{e:?}")),
            })?;
        let already = next.get(evidence.claim.executor).is_some_and(|e| e.slashed);
        if already {
            continue;
        }
        let (executor, bounty) = apply_wrong_claim(
            verifier,
            proof,
            accused.header,
            evidence.claim.message.prev_state_root,
            signing,
            &mut next,
        )
        .map_err(|source| BodyError::Proof { index, source })?;
        next.credit_producer(at.producer, bounty);
        effects.slashed.push((executor, bounty));
    }
    effects.ops = process_ops(body, at.epoch, &mut next, at.producer_key, signing)?;
    *registry = next;
    Ok(effects)
}

/// What importing a **final** block's body did to the executor registry, for a light
/// client following final blocks: the same order and effects as [`process_body`], without
/// re-judging what the chain already judged (claims are not placed, proofs not re-executed:
/// the body hashes to a final header's `body_root`). A proof whose accused is already slashed
/// or gone is skipped. An operation the rules refuse is an error: the chain would not have
/// finalised it, so the caller's registry no longer matches the chain's (it started from a
/// checkpoint after operations it did not see) and says so.
pub fn apply_final(
    body: &BlockBody,
    at: &At<'_>,
    registry: &mut ExecutorRegistry,
    signing: &SigningContext,
) -> Result<BodyEffects, OpError> {
    let mut effects = BodyEffects {
        claims: body.claims.len(),
        released: release(registry, at.epoch),
        ..BodyEffects::default()
    };
    for proof in body.fraud_proofs.iter() {
        let Ok(evidence) = WrongClaimEvidence::from_ssz_bytes(&proof.payload) else {
            continue;
        };
        let executor = evidence.claim.executor;
        if registry.get(executor).is_some_and(|e| !e.slashed) {
            let bounty = registry.slash(executor);
            registry.credit_producer(at.producer, bounty);
            effects.slashed.push((executor, bounty));
        }
    }
    effects.ops = process_ops(body, at.epoch, registry, at.producer_key, signing)?;
    Ok(effects)
}

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_crypto::SecretKey;
    use phalanx_spec::ChainSpec;
    use phalanx_spec::devnet::{DevnetParams, generate};
    use phalanx_types::{
        BlockHeader, Claim, Declaration, FraudProof, ProducerIndex, SignedDeclaration, Slot,
        ValidatorIndex,
    };
    use ssz_types::VariableList;
    use std::cell::Cell;

    struct World {
        registry: ExecutorRegistry,
        keys: Vec<SecretKey>,
        signing: SigningContext,
        headers: Vec<BlockHeader>,
        bodies: Vec<BlockBody>,
    }

    fn empty_body() -> BlockBody {
        BlockBody::default()
    }

    /// Three executors and a chain of four blocks (heights 1..=4, slots 1..=4).
    fn world() -> World {
        let spec = ChainSpec::preset("devnet").unwrap_or_else(|e| panic!("{e}"));
        let mut params = DevnetParams::new("claims", spec);
        params.executors = 3;
        params.accounts = 0;
        let (genesis, keys) = generate(&params).unwrap_or_else(|e| panic!("{e}"));
        let headers = (1..=4u64)
            .map(|slot| BlockHeader {
                slot: Slot(slot),
                parent_root: B256::repeat_byte(slot as u8),
                declaration: SignedDeclaration {
                    message: Declaration {
                        slot: Slot(slot),
                        proposer_index: ValidatorIndex(0),
                        parent_root: B256::ZERO,
                        producer: ProducerIndex(0),
                        fee_split_bps: 0,
                        randao_reveal: Default::default(),
                    },
                    signature: Default::default(),
                },
                producer: ProducerIndex(0),
                shard_roots: VariableList::empty(),
                body_root: B256::ZERO,
            })
            .collect();
        World {
            registry: ExecutorRegistry::from_genesis(&genesis).unwrap_or_else(|e| panic!("{e}")),
            keys: keys.executors.iter().map(|(_, k)| k.clone()).collect(),
            signing: genesis.signing_context(),
            headers,
            bodies: vec![empty_body(); 4],
        }
    }

    fn name(height: u64) -> B256 {
        B256::repeat_byte(0xa0 + height as u8)
    }

    impl World {
        /// Ancestors of a block at slot 5, newest first.
        fn ancestors(&self) -> Vec<Ancestor<'_>> {
            (0..4)
                .rev()
                .map(|i| Ancestor {
                    root: self.headers[i].root(),
                    header: &self.headers[i],
                    body: &self.bodies[i],
                    height: i as u64 + 1,
                    name: name(i as u64 + 1),
                })
                .collect()
        }

        fn claim(&self, executor: u64, height: u64, block: B256) -> SignedClaim {
            let message = Claim {
                height,
                domain: 0,
                prev_state_root: B256::repeat_byte(1),
                prior_meta_state_root: B256::repeat_byte(1),
                block_hash: block,
                effects_roots: VariableList::empty(),
                post_state_root: B256::repeat_byte(2),
            };
            SignedClaim {
                executor: ExecutorIndex(executor),
                signature: self.signing.sign(&message, &self.keys[executor as usize]),
                message,
            }
        }

        fn wrong_claim_proof(&self, executor: u64, height: u64) -> FraudProof {
            let evidence = WrongClaimEvidence {
                claim: self.claim(executor, height, name(height)),
                execution_proof: VariableList::empty(),
            };
            FraudProof {
                kind: FraudProofKind::WrongClaim as u8,
                block_root: self.headers[height as usize - 1].root(),
                accused: executor,
                payload: VariableList::new(phalanx_types::Encode::as_ssz_bytes(&evidence))
                    .unwrap_or_else(|e| panic!("{e:?}")),
            }
        }

        fn process(
            &mut self,
            body: &BlockBody,
            verifier: &dyn FraudProofVerifier,
        ) -> Result<BodyEffects, BodyError> {
            let mut registry = self.registry.clone();
            let no_keys = |_: u64| None;
            let at = At {
                producer: ProducerIndex(0),
                epoch: Epoch(0),
                producer_key: &no_keys,
            };
            let r = process_body(
                body,
                &at,
                &self.ancestors(),
                &mut registry,
                &self.signing,
                verifier,
            );
            self.registry = registry;
            r
        }
    }

    fn body(claims: Vec<SignedClaim>, proofs: Vec<FraudProof>) -> BlockBody {
        BlockBody {
            claims: VariableList::new(claims).unwrap_or_else(|e| panic!("{e:?}")),
            fraud_proofs: VariableList::new(proofs).unwrap_or_else(|e| panic!("{e:?}")),
            ..empty_body()
        }
    }

    /// A verifier that accepts (or refuses) every proof and counts its calls.
    struct Stub {
        accept: bool,
        calls: Cell<u32>,
    }

    impl FraudProofVerifier for Stub {
        fn verify(
            &self,
            _: &phalanx_types::FraudProof,
            header: &BlockHeader,
            parent: Root,
        ) -> Result<(), String> {
            self.calls.set(self.calls.get() + 1);
            assert_eq!(parent, B256::repeat_byte(1), "the claim's own parent root");
            assert_eq!(header.slot, Slot(2), "the accused block's header");
            if self.accept {
                Ok(())
            } else {
                Err("re-execution agrees with the claim".into())
            }
        }
    }

    fn stub(accept: bool) -> Stub {
        Stub {
            accept,
            calls: Cell::new(0),
        }
    }

    #[test]
    fn claims_about_blocks_of_the_chain_are_carried_once() {
        let mut w = world();
        let good = vec![
            w.claim(0, 2, name(2)),
            w.claim(1, 2, name(2)),
            w.claim(0, 3, name(3)),
        ];
        let effects = w.process(&body(good.clone(), vec![]), &stub(true));
        assert_eq!(effects.map(|e| e.claims), Ok(3));
        // Once on chain (in an ancestor), the same executor and height again is refused.
        w.bodies[3] = body(good, vec![]);
        assert_eq!(
            w.process(&body(vec![w.claim(1, 2, name(2))], vec![]), &stub(true)),
            Err(BodyError::Claim {
                index: 0,
                source: ClaimError::Duplicate {
                    executor: 1,
                    height: 2
                }
            })
        );
        // Twice in one block, too.
        let twice = vec![w.claim(2, 1, name(1)), w.claim(2, 1, name(1))];
        assert!(matches!(
            w.process(&body(twice, vec![]), &stub(true)),
            Err(BodyError::Claim {
                index: 1,
                source: ClaimError::Duplicate { .. }
            })
        ));
    }

    #[test]
    fn claims_about_unknown_blocks_or_badly_signed_make_the_block_invalid() {
        let mut w = world();
        // A block not in the chain, and a known block under another height.
        for (height, block) in [(2, B256::repeat_byte(0x99)), (3, name(2)), (9, name(9))] {
            let c = w.claim(0, height, block);
            assert!(
                matches!(
                    w.process(&body(vec![c], vec![]), &stub(true)),
                    Err(BodyError::Claim {
                        source: ClaimError::UnknownBlock { .. },
                        ..
                    })
                ),
                "height {height}"
            );
        }
        let mut forged = w.claim(0, 2, name(2));
        forged.executor = ExecutorIndex(1);
        assert_eq!(
            w.process(
                &body(vec![w.claim(2, 2, name(2)), forged], vec![]),
                &stub(true)
            ),
            Err(BodyError::Claim {
                index: 1,
                source: ClaimError::BadSignature {
                    executor: 1,
                    height: 2
                }
            })
        );
        let mut unknown = w.claim(0, 2, name(2));
        unknown.executor = ExecutorIndex(7);
        assert_eq!(
            w.process(&body(vec![unknown], vec![]), &stub(true)),
            Err(BodyError::Claim {
                index: 0,
                source: ClaimError::UnknownExecutor(7)
            })
        );
    }

    #[test]
    fn a_wrong_claim_proof_slashes_once_and_a_refused_one_changes_nothing() {
        let mut w = world();
        let bond = w
            .registry
            .get(ExecutorIndex(1))
            .map(|e| e.bond)
            .unwrap_or(0);
        assert!(bond > 0);
        let refuse = stub(false);
        assert!(matches!(
            w.process(&body(vec![], vec![w.wrong_claim_proof(1, 2)]), &refuse),
            Err(BodyError::Proof {
                index: 0,
                source: WrongClaimError::Rejected(_)
            })
        ));
        assert_eq!(w.registry.slashed().count(), 0, "nothing applied");
        // A body whose proof is refused after a good one applies neither.
        let accept = stub(true);
        let mut elsewhere = w.wrong_claim_proof(2, 2);
        elsewhere.block_root = B256::repeat_byte(0x77);
        let mixed = body(vec![], vec![w.wrong_claim_proof(1, 2), elsewhere]);
        assert!(matches!(
            w.process(&mixed, &accept),
            Err(BodyError::ProofUnknownBlock { index: 1, .. })
        ));
        assert_eq!(w.registry.slashed().count(), 0);
        // Accepted: slashed with the bounty; the same executor again is skipped, not paid.
        let twice = body(
            vec![],
            vec![w.wrong_claim_proof(1, 2), w.wrong_claim_proof(1, 2)],
        );
        let effects = w.process(&twice, &accept);
        assert_eq!(
            effects.map(|e| e.slashed),
            Ok(vec![(
                ExecutorIndex(1),
                bond / crate::executors::BOUNTY_QUOTIENT
            )])
        );
        assert_eq!(
            w.registry.slashed().collect::<Vec<_>>(),
            vec![ExecutorIndex(1)]
        );
        let again = w.process(&body(vec![], vec![w.wrong_claim_proof(1, 2)]), &accept);
        assert_eq!(again.map(|e| e.slashed), Ok(vec![]));
        // Another kind of fraud proof is not carried.
        let mut other = w.wrong_claim_proof(2, 2);
        other.kind = FraudProofKind::WrongClaim as u8 + 1;
        assert!(matches!(
            w.process(&body(vec![], vec![other]), &accept),
            Err(BodyError::UnsupportedProof { index: 0, .. })
        ));
    }
}
