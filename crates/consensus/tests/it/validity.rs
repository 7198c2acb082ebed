//! Data validity: a valid block passes; every kind of invalid block gets its typed error;
//! arbitrary blocks never panic the checker.

use alloy_primitives::B256;
use arbitrary::{Arbitrary, Unstructured};
use phalanx_consensus::{BlockError, ChainContext, Registry, check_block};
use phalanx_crypto::SecretKey;
use phalanx_spec::devnet::{self, DevnetKeys, DevnetParams};
use phalanx_spec::{ChainSpec, Genesis};
use phalanx_types::signing::SigningContext;
use phalanx_types::*;
use proptest::prelude::*;
use ssz_types::VariableList;

struct Chain {
    genesis: Genesis,
    keys: DevnetKeys,
    registry: Registry,
}

fn chain() -> Chain {
    let params = DevnetParams::new("validity", ChainSpec::preset("devnet").unwrap());
    let (genesis, keys) = devnet::generate(&params).unwrap();
    let registry = Registry::from_genesis(&genesis).unwrap();
    Chain {
        genesis,
        keys,
        registry,
    }
}

impl Chain {
    fn ctx(&self) -> ChainContext<'_> {
        ChainContext {
            spec: &self.genesis.spec,
            signing: self.genesis.signing_context(),
            registry: &self.registry,
        }
    }

    fn signing(&self) -> SigningContext {
        self.genesis.signing_context()
    }

    fn validator_key(&self, i: u64) -> &SecretKey {
        &self.keys.validators[i as usize].1
    }

    /// A valid block at `slot` by validator `proposer`, built by producer `producer`.
    fn block(&self, slot: u64, proposer: u64, producer: u64) -> SignedBlock {
        let shards: Vec<Shard> = (0..3u8)
            .map(|i| Shard::from_transactions(vec![vec![0x02, i, i], vec![i; 30]]).unwrap())
            .collect();
        phalanx_consensus::testing::signed_block(
            &self.signing(),
            self.genesis.spec.slots_per_epoch,
            slot,
            B256::repeat_byte(0x42),
            (ValidatorIndex(proposer), self.validator_key(proposer)),
            (
                ProducerIndex(producer),
                &self.keys.producers[producer as usize].1,
            ),
            shards,
        )
        .unwrap()
    }

    /// Re-signs a modified header with the right producer key (so only the modification fails).
    fn resign(&self, mut block: SignedBlock) -> SignedBlock {
        let producer_key = &self.keys.producers[block.header.message.producer.0 as usize].1;
        block.header.signature = self.signing().sign(&block.header.message, producer_key);
        block
    }

    /// Re-signs a modified declaration with the proposer's key, then the header.
    fn redeclare(&self, mut block: SignedBlock, proposer: u64) -> SignedBlock {
        let key = self.validator_key(proposer);
        let d = &block.header.message.declaration.message;
        block.header.message.declaration.signature = self.signing().sign(d, key);
        self.resign(block)
    }
}

#[test]
fn a_valid_block_passes() {
    let c = chain();
    let block = c.block(17, 3, 1);
    assert_eq!(check_block(&c.ctx(), ValidatorIndex(3), &block), Ok(()));
}

#[test]
fn invalid_blocks_get_typed_errors() {
    let c = chain();
    let ctx = c.ctx();
    let good = c.block(17, 3, 1);
    let check = |b: &SignedBlock| check_block(&ctx, ValidatorIndex(3), b);

    // Not the slot's proposer.
    assert_eq!(
        check_block(&ctx, ValidatorIndex(4), &good),
        Err(BlockError::WrongProposer {
            expected: 4,
            got: 3
        })
    );

    // A producer signature from the wrong key.
    let mut b = good.clone();
    b.header.signature = c.signing().sign(&b.header.message, &c.keys.producers[0].1);
    assert_eq!(check(&b), Err(BlockError::BadHeaderSignature));

    // A declaration signed by another validator.
    let mut b = good.clone();
    b.header.message.declaration.signature = c
        .signing()
        .sign(&b.header.message.declaration.message, c.validator_key(5));
    assert_eq!(
        check(&c.resign(b)),
        Err(BlockError::BadDeclarationSignature)
    );

    // A RANDAO reveal for another epoch.
    let mut b = good.clone();
    b.header.message.declaration.message.randao_reveal =
        c.signing().sign(&Epoch(99), c.validator_key(3));
    assert_eq!(check(&c.redeclare(b, 3)), Err(BlockError::BadRandaoReveal));

    // Garbage signature bytes.
    let mut b = good.clone();
    b.header.signature = SignatureBytes::repeat_byte(0x11);
    assert_eq!(check(&b), Err(BlockError::BadHeaderSignature));

    // The producer extends another parent than the declared one.
    let mut b = good.clone();
    b.header.message.parent_root = B256::repeat_byte(0x43);
    assert_eq!(check(&c.resign(b)), Err(BlockError::ParentMismatch));

    // Header slot differs from the declaration's.
    let mut b = good.clone();
    b.header.message.slot = Slot(18);
    assert_eq!(
        check(&c.resign(b)),
        Err(BlockError::SlotMismatch {
            header: 18,
            declaration: 17
        })
    );

    // A shard swapped after signing.
    let mut b = good.clone();
    let mut shards = b.shards.to_vec();
    shards[1] = Shard::from_transactions(vec![vec![9, 9, 9]]).unwrap();
    b.shards = VariableList::new(shards).unwrap();
    assert_eq!(check(&b), Err(BlockError::ShardRootMismatch(1)));

    // A shard dropped.
    let mut b = good.clone();
    let mut shards = b.shards.to_vec();
    shards.pop();
    b.shards = VariableList::new(shards).unwrap();
    assert_eq!(
        check(&b),
        Err(BlockError::ShardCountMismatch {
            roots: 3,
            shards: 2
        })
    );

    // A body changed after signing.
    let mut b = good.clone();
    b.body.fraud_proofs = VariableList::new(vec![FraudProof {
        kind: 0,
        block_root: B256::ZERO,
        accused: 0,
        payload: VariableList::empty(),
    }])
    .unwrap();
    assert_eq!(check(&b), Err(BlockError::BodyRootMismatch));

    // Unknown producer, producer mismatch, fee split above 100%.
    let mut b = good.clone();
    b.header.message.declaration.message.producer = ProducerIndex(9);
    assert_eq!(check(&b), Err(BlockError::UnknownProducer(9)));
    let mut b = good.clone();
    b.header.message.producer = ProducerIndex(0);
    assert_eq!(
        check(&b),
        Err(BlockError::ProducerMismatch {
            declared: 1,
            header: 0
        })
    );
    let mut b = good.clone();
    b.header.message.declaration.message.fee_split_bps = 10_001;
    assert_eq!(check(&b), Err(BlockError::FeeSplitOutOfRange(10_001)));

    // Oversize and too many shards under a stricter spec.
    let mut spec = c.genesis.spec.clone();
    spec.max_block_bytes = 300;
    let strict = ChainContext {
        spec: &spec,
        ..c.ctx()
    };
    assert!(matches!(
        check_block(&strict, ValidatorIndex(3), &good),
        Err(BlockError::Oversize { .. })
    ));
    let mut spec = c.genesis.spec.clone();
    spec.shards_per_block = 2;
    let strict = ChainContext {
        spec: &spec,
        ..c.ctx()
    };
    assert_eq!(
        check_block(&strict, ValidatorIndex(3), &good),
        Err(BlockError::TooManyShards { got: 3, max: 2 })
    );

    // A slashed producer's blocks are refused.
    let mut registry = c.registry.clone();
    registry.slash_producer(ProducerIndex(1));
    let slashed = ChainContext {
        registry: &registry,
        ..c.ctx()
    };
    assert_eq!(
        check_block(&slashed, ValidatorIndex(3), &good),
        Err(BlockError::SlashedProducer(1))
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Arbitrary blocks (and arbitrary bytes decoded as blocks) are refused with a typed
    /// error, never a panic.
    #[test]
    fn arbitrary_blocks_never_panic(entropy in prop::collection::vec(any::<u8>(), 0..4096), proposer in 0u64..12) {
        let c = chain();
        if let Ok(block) = SignedBlock::arbitrary_take_rest(Unstructured::new(&entropy)) {
            prop_assert!(check_block(&c.ctx(), ValidatorIndex(proposer), &block).is_err());
        }
        if let Ok(block) = SignedBlock::from_ssz_bytes(&entropy) {
            prop_assert!(check_block(&c.ctx(), ValidatorIndex(proposer), &block).is_err());
        }
    }
}
