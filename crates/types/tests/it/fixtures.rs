//! Deterministic, non-trivial instances of every consensus type (every list non-empty).

use phalanx_types::limits::*;
use phalanx_types::*;
use ssz_types::{BitList, VariableList};

fn root(b: u8) -> Root {
    Root::repeat_byte(b)
}

fn sig(b: u8) -> SignatureBytes {
    SignatureBytes::repeat_byte(b)
}

fn list<T, N: typenum::Unsigned>(items: Vec<T>) -> VariableList<T, N> {
    VariableList::new(items).expect("fixture within limits")
}

pub(crate) fn checkpoint() -> Checkpoint {
    Checkpoint {
        epoch: Epoch(3),
        root: root(0x11),
    }
}

pub(crate) fn declaration() -> Declaration {
    Declaration {
        slot: Slot(42),
        proposer_index: ValidatorIndex(5),
        parent_root: root(0x22),
        producer: ProducerIndex(1),
        fee_split_bps: 2500,
        randao_reveal: sig(0x33),
    }
}

pub(crate) fn signed_declaration() -> SignedDeclaration {
    SignedDeclaration {
        message: declaration(),
        signature: sig(0x44),
    }
}

pub(crate) fn shard() -> Shard {
    Shard::from_transactions(vec![vec![0x02, 0xf8, 0x01], vec![0xaa; 40], vec![]]).expect("fixture")
}

pub(crate) fn block_header() -> BlockHeader {
    BlockHeader {
        slot: Slot(42),
        parent_root: root(0x22),
        declaration: signed_declaration(),
        producer: ProducerIndex(1),
        shard_roots: list(vec![root(0x55), root(0x56)]),
        body_root: root(0x66),
    }
}

pub(crate) fn signed_block_header() -> SignedBlockHeader {
    SignedBlockHeader {
        message: block_header(),
        signature: sig(0x77),
    }
}

pub(crate) fn attestation_data() -> AttestationData {
    AttestationData {
        slot: Slot(41),
        committee_index: 2,
        head_root: root(0x88),
        source: Checkpoint {
            epoch: Epoch(4),
            root: root(0x99),
        },
        target: checkpoint(),
    }
}

pub(crate) fn attestation() -> Attestation {
    let mut bits = BitList::<MaxValidatorsPerCommittee>::with_capacity(10).expect("fixture");
    for i in [0, 3, 9] {
        bits.set(i, true).expect("in range");
    }
    Attestation {
        aggregation_bits: bits,
        data: attestation_data(),
        signature: sig(0xaa),
    }
}

pub(crate) fn indexed_attestation() -> IndexedAttestation {
    IndexedAttestation {
        attesting_indices: list(vec![
            ValidatorIndex(1),
            ValidatorIndex(4),
            ValidatorIndex(7),
        ]),
        data: attestation_data(),
        signature: sig(0xbb),
    }
}

pub(crate) fn claim() -> Claim {
    Claim {
        height: 42,
        domain: 0,
        prev_state_root: root(0xc1),
        prior_meta_state_root: root(0xc2),
        block_hash: root(0xc3),
        effects_roots: list(vec![root(0xc4), root(0xc5), root(0xc6)]),
        post_state_root: root(0xc7),
    }
}

pub(crate) fn signed_claim() -> SignedClaim {
    SignedClaim {
        executor: ExecutorIndex(2),
        message: claim(),
        signature: sig(0xcc),
    }
}

pub(crate) fn declaration_slashing() -> DeclarationSlashing {
    let mut other = signed_declaration();
    other.message.producer = ProducerIndex(3);
    DeclarationSlashing {
        declaration_1: signed_declaration(),
        declaration_2: other,
    }
}

pub(crate) fn attester_slashing() -> AttesterSlashing {
    let mut other = indexed_attestation();
    other.data.head_root = root(0xdd);
    AttesterSlashing {
        attestation_1: indexed_attestation(),
        attestation_2: other,
    }
}

pub(crate) fn fraud_proof() -> FraudProof {
    FraudProof {
        kind: FraudProofKind::ShardConflict as u8,
        block_root: root(0xe1),
        accused: 1,
        payload: list(vec![1, 2, 3, 4, 5]),
    }
}

pub(crate) fn block_body() -> BlockBody {
    BlockBody {
        attestations: list(vec![attestation()]),
        claims: list(vec![signed_claim()]),
        declaration_slashings: list(vec![declaration_slashing()]),
        attester_slashings: list(vec![attester_slashing()]),
        fraud_proofs: list(vec![fraud_proof()]),
        executor_deposits: list(vec![signed_executor_deposit()]),
        executor_exits: list(vec![signed_executor_exit()]),
    }
}

pub(crate) fn executor_deposit() -> ExecutorDeposit {
    ExecutorDeposit {
        pubkey: PublicKeyBytes::repeat_byte(0xa1),
        reward_address: Address::repeat_byte(0xa2),
        amount: 1_000_000_000_000,
        producer: ProducerIndex(2),
    }
}

pub(crate) fn signed_executor_deposit() -> SignedExecutorDeposit {
    SignedExecutorDeposit {
        message: executor_deposit(),
        executor_signature: SignatureBytes::repeat_byte(0xa3),
        producer_signature: SignatureBytes::repeat_byte(0xa4),
    }
}

pub(crate) fn executor_exit() -> ExecutorExit {
    ExecutorExit {
        executor: ExecutorIndex(5),
        epoch: Epoch(9),
    }
}

pub(crate) fn signed_executor_exit() -> SignedExecutorExit {
    SignedExecutorExit {
        message: executor_exit(),
        signature: SignatureBytes::repeat_byte(0xa5),
    }
}

pub(crate) fn signed_block() -> SignedBlock {
    SignedBlock {
        header: signed_block_header(),
        body: block_body(),
        shards: list(vec![shard(), shard()]),
    }
}

pub(crate) fn registry_entry() -> RegistryEntry {
    RegistryEntry {
        pubkey: PublicKeyBytes::repeat_byte(0xf1),
        amount: 32_000_000_000,
        reward_address: Address::repeat_byte(0xf2),
    }
}

/// Calls `$m!(Type, fixture_fn)` for every consensus type.
#[macro_export]
macro_rules! for_each_type {
    ($m:ident) => {
        $m!(Checkpoint, checkpoint);
        $m!(Declaration, declaration);
        $m!(SignedDeclaration, signed_declaration);
        $m!(BlockHeader, block_header);
        $m!(SignedBlockHeader, signed_block_header);
        $m!(Shard, shard);
        $m!(AttestationData, attestation_data);
        $m!(Attestation, attestation);
        $m!(IndexedAttestation, indexed_attestation);
        $m!(Claim, claim);
        $m!(SignedClaim, signed_claim);
        $m!(DeclarationSlashing, declaration_slashing);
        $m!(AttesterSlashing, attester_slashing);
        $m!(FraudProof, fraud_proof);
        $m!(ExecutorDeposit, executor_deposit);
        $m!(SignedExecutorDeposit, signed_executor_deposit);
        $m!(ExecutorExit, executor_exit);
        $m!(SignedExecutorExit, signed_executor_exit);
        $m!(BlockBody, block_body);
        $m!(SignedBlock, signed_block);
        $m!(RegistryEntry, registry_entry);
    };
}
