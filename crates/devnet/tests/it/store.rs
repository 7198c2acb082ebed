//! The block log survives a torn last record (a crash while writing).

use std::io::Write as _;

use alloy_primitives::B256;
use phalanx_crypto::SecretKey;
use phalanx_devnet::store::BlockLog;
use phalanx_types::consensus::SignedBlock;
use phalanx_types::signing::SigningContext;
use phalanx_types::{ProducerIndex, ValidatorIndex};

fn block(slot: u64) -> SignedBlock {
    let signing = SigningContext {
        fork_version: [7, 0, 0, 1],
        genesis_validators_root: B256::repeat_byte(3),
    };
    let key = SecretKey::key_gen(&[9u8; 32]).unwrap();
    phalanx_consensus::testing::signed_block(
        &signing,
        8,
        slot,
        B256::repeat_byte(1),
        (ValidatorIndex(0), &key),
        (ProducerIndex(0), &key),
        Vec::new(),
    )
    .unwrap()
}

#[test]
fn a_torn_tail_is_cut_and_whole_records_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blocks.ssz");
    {
        let (mut log, blocks) = BlockLog::open(&path).unwrap();
        assert!(blocks.is_empty());
        for slot in 1..=3 {
            log.append(&block(slot)).unwrap();
        }
    }
    let whole = std::fs::metadata(&path).unwrap().len();
    // A crash mid-append: a length and half a body.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(&[0, 0, 1, 0, 0xaa, 0xbb]).unwrap();
    drop(f);
    let (mut log, blocks) = BlockLog::open(&path).unwrap();
    assert_eq!(
        blocks
            .iter()
            .map(|b| b.header.message.slot.0)
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);
    log.append(&block(4)).unwrap();
    drop(log);
    let (_, blocks) = BlockLog::open(&path).unwrap();
    assert_eq!(blocks.len(), 4);
    assert_eq!(blocks[3].header.message.slot.0, 4);
}
