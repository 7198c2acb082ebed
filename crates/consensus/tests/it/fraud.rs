//! Applying fraud proofs through the verifier seam (with a test double for the verifier).

use alloy_primitives::B256;
use phalanx_consensus::Registry;
use phalanx_consensus::fork_choice::ForkChoice;
use phalanx_consensus::fraud::{FraudError, apply_fraud_proof};
use phalanx_spec::ChainSpec;
use phalanx_spec::devnet::{self, DevnetParams};
use phalanx_types::fraud::FraudProofVerifier;
use phalanx_types::*;
use ssz_types::VariableList;

/// Accepts exactly the proofs whose payload is `[1]`.
struct Double;

impl FraudProofVerifier for Double {
    fn verify(&self, proof: &FraudProof, _: &BlockHeader, _: Root) -> Result<(), String> {
        if proof.payload.to_vec() == [1] {
            Ok(())
        } else {
            Err("not proven".into())
        }
    }
}

#[test]
fn a_verified_proof_slashes_the_producer_and_zeroes_the_block() {
    let (genesis, _) = devnet::generate(&DevnetParams::new(
        "fraud",
        ChainSpec::preset("devnet").unwrap(),
    ))
    .unwrap();
    let mut registry = Registry::from_genesis(&genesis).unwrap();
    let g = B256::repeat_byte(0xff);
    let mut fc = ForkChoice::new(g, vec![10; 8], 8);
    let mut header = BlockHeader {
        slot: Slot(1),
        parent_root: g,
        declaration: SignedDeclaration {
            message: Declaration {
                slot: Slot(1),
                proposer_index: ValidatorIndex(0),
                parent_root: g,
                producer: ProducerIndex(1),
                fee_split_bps: 0,
                randao_reveal: Default::default(),
            },
            signature: Default::default(),
        },
        producer: ProducerIndex(1),
        shard_roots: VariableList::empty(),
        body_root: B256::ZERO,
    };
    let bad_root = header.root();
    fc.on_block(bad_root, g, Slot(1)).unwrap();
    header.slot = Slot(2);
    let sibling = header.root();
    fc.on_block(sibling, g, Slot(2)).unwrap();
    header.slot = Slot(1);
    // Votes make the accused block the head.
    let data = AttestationData {
        slot: Slot(1),
        committee_index: 0,
        head_root: bad_root,
        source: Checkpoint {
            epoch: Epoch(0),
            root: g,
        },
        target: Checkpoint {
            epoch: Epoch(1),
            root: bad_root,
        },
    };
    for v in 0..3 {
        fc.on_attestation(ValidatorIndex(v), &data).unwrap();
    }
    assert_eq!(fc.head(), bad_root);

    let mut proof = FraudProof {
        kind: FraudProofKind::ShardConflict as u8,
        block_root: bad_root,
        accused: 1,
        payload: VariableList::new(vec![0]).unwrap(),
    };
    assert!(matches!(
        apply_fraud_proof(&Double, &proof, &header, B256::ZERO, &mut registry, &mut fc),
        Err(FraudError::Rejected(_))
    ));
    assert_eq!(fc.head(), bad_root);
    assert!(!registry.producer(ProducerIndex(1)).unwrap().slashed);

    proof.payload = VariableList::new(vec![1]).unwrap();
    assert_eq!(
        apply_fraud_proof(&Double, &proof, &header, B256::ZERO, &mut registry, &mut fc),
        Ok(ProducerIndex(1))
    );
    assert!(registry.producer(ProducerIndex(1)).unwrap().slashed);
    assert_eq!(fc.head(), sibling, "the proven block has no weight");

    proof.kind = FraudProofKind::WrongClaim as u8;
    assert_eq!(
        apply_fraud_proof(&Double, &proof, &header, B256::ZERO, &mut registry, &mut fc),
        Err(FraudError::NotAProducerFault(1))
    );
}
