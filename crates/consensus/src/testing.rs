//! Builders of correctly signed blocks, for tests, benchmarks and simulators
//! (feature `test-utils`).

use alloy_primitives::B256;
use phalanx_crypto::SecretKey;
use phalanx_types::signing::SigningContext;
use phalanx_types::*;
use ssz_types::VariableList;

/// Signs a data-valid block at `slot` by `proposer` (with `proposer_key`), built by
/// `producer` (with `producer_key`) on `parent`, carrying `shards` and an empty body.
#[allow(clippy::too_many_arguments)]
pub fn signed_block(
    signing: &SigningContext,
    slots_per_epoch: u64,
    slot: u64,
    parent: B256,
    proposer: (ValidatorIndex, &SecretKey),
    producer: (ProducerIndex, &SecretKey),
    shards: Vec<Shard>,
) -> Result<SignedBlock, ssz_types::Error> {
    let declaration = Declaration {
        slot: Slot(slot),
        proposer_index: proposer.0,
        parent_root: parent,
        producer: producer.0,
        fee_split_bps: 2_000,
        randao_reveal: signing.sign(&Slot(slot).epoch(slots_per_epoch), proposer.1),
    };
    let declaration = SignedDeclaration {
        signature: signing.sign(&declaration, proposer.1),
        message: declaration,
    };
    let body = BlockBody::default();
    let header = BlockHeader {
        slot: Slot(slot),
        parent_root: parent,
        declaration,
        producer: producer.0,
        shard_roots: VariableList::new(shards.iter().map(TreeHash::tree_hash_root).collect())?,
        body_root: body.tree_hash_root(),
    };
    let signature = signing.sign(&header, producer.1);
    Ok(SignedBlock {
        header: SignedBlockHeader {
            message: header,
            signature,
        },
        body,
        shards: VariableList::new(shards)?,
    })
}

/// Evidence that `validator` (with `key`) voted twice for target `epoch` (≥ 1): two signed
/// votes at the epoch's first slot that differ only in their head.
pub fn double_vote(
    signing: &SigningContext,
    slots_per_epoch: u64,
    validator: ValidatorIndex,
    key: &SecretKey,
    epoch: u64,
) -> AttesterSlashing {
    let vote = |head: u8| {
        let data = AttestationData {
            slot: Epoch(epoch).start_slot(slots_per_epoch),
            committee_index: 0,
            head_root: B256::repeat_byte(head),
            source: Checkpoint {
                epoch: Epoch(epoch.saturating_sub(1)),
                root: B256::repeat_byte(0x01),
            },
            target: Checkpoint {
                epoch: Epoch(epoch),
                root: B256::repeat_byte(0x02),
            },
        };
        IndexedAttestation {
            attesting_indices: VariableList::new(vec![validator]).unwrap_or_default(),
            signature: signing.sign(&data, key),
            data,
        }
    };
    AttesterSlashing {
        attestation_1: vote(0xa1),
        attestation_2: vote(0xa2),
    }
}

/// A declaration by `proposer` (with `key`) for `slot`, naming `producer` on `parent`.
pub fn signed_declaration(
    signing: &SigningContext,
    slots_per_epoch: u64,
    slot: u64,
    proposer: ValidatorIndex,
    key: &SecretKey,
    parent: Root,
    producer: ProducerIndex,
) -> SignedDeclaration {
    let message = Declaration {
        slot: Slot(slot),
        proposer_index: proposer,
        parent_root: parent,
        producer,
        fee_split_bps: 5_000,
        randao_reveal: signing.sign(&Slot(slot).epoch(slots_per_epoch), key),
    };
    SignedDeclaration {
        signature: signing.sign(&message, key),
        message,
    }
}
