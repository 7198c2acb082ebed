//! Sync requests answered by a block source ([`Feed`]): a whole block by root, whole blocks
//! from a height, one shard index of the blocks from a height, headers from a height — each
//! answer exactly the blocks kept, in height order, and nothing for what is not kept.

use alloy_primitives::B256;
use phalanx_cluster::feed::Feed;
use phalanx_cluster::load::Load;
use phalanx_cluster::testing::ask_feed;
use phalanx_cluster::wire::{ExecHeader, Message, RANGE_BLOCKS, Request, ShardMessage};
use phalanx_net::PeerKey;
use phalanx_net::memory::MemoryHub;
use phalanx_types::Shard;

#[tokio::test]
async fn a_block_source_answers_sync_by_root_and_by_range() {
    let shards = 3u16;
    let mut load = Load::new(shards, 2, 9);
    let hub = MemoryHub::new();
    let mut feed = Feed::new(hub.join(PeerKey([0xfe; 32])));
    let mut me = hub.join(PeerKey([0x01; 32]));
    let blocks: Vec<(ExecHeader, Vec<Shard>)> = (0..RANGE_BLOCKS + 8)
        .map(|_| load.next_block(2).unwrap())
        .collect();
    for (header, shard_list) in &blocks {
        feed.remember(header.clone(), shard_list.clone());
    }
    let shard_msg = |b: usize, i: usize| {
        Message::Shard(ShardMessage {
            block: blocks[b].0.hash(),
            index: i as u16,
            shard: blocks[b].1[i].clone(),
        })
    };
    let whole = |b: usize| {
        let mut m = vec![Message::Header(blocks[b].0.clone())];
        m.extend((0..shards as usize).map(|i| shard_msg(b, i)));
        m
    };

    // A block by root: its header, then each shard.
    let block = Request {
        block: blocks[4].0.hash(),
        ..Request::new(Request::BLOCK)
    };
    assert_eq!(ask_feed(&mut feed, &mut me, block).await, whole(4));

    // An unknown root: nothing.
    let unknown = Request {
        block: B256::repeat_byte(7),
        ..Request::new(Request::BLOCK)
    };
    assert!(ask_feed(&mut feed, &mut me, unknown).await.is_empty());

    // Blocks from a height: RANGE_BLOCKS of them, in height order (heights start at 1).
    let from = Request {
        height: 3,
        ..Request::new(Request::BLOCKS_FROM)
    };
    let expected: Vec<Message> = (2..2 + RANGE_BLOCKS).flat_map(whole).collect();
    assert_eq!(ask_feed(&mut feed, &mut me, from).await, expected);

    // Shard 1 of the blocks from a height near the end: only those kept.
    let tail = Request {
        index: 1,
        height: (RANGE_BLOCKS + 3) as u64,
        ..Request::new(Request::SHARDS_FROM)
    };
    let expected: Vec<Message> = (RANGE_BLOCKS + 2..blocks.len())
        .map(|b| shard_msg(b, 1))
        .collect();
    assert_eq!(expected.len(), 6);
    assert_eq!(ask_feed(&mut feed, &mut me, tail).await, expected);

    // A shard index the blocks do not have: nothing.
    let beyond = Request {
        index: shards,
        height: 1,
        ..Request::new(Request::SHARDS_FROM)
    };
    assert!(ask_feed(&mut feed, &mut me, beyond).await.is_empty());

    // Headers from a height: the headers alone.
    let headers = Request {
        height: 39,
        ..Request::new(Request::HEADERS_FROM)
    };
    let expected: Vec<Message> = blocks[38..]
        .iter()
        .map(|(h, _)| Message::Header(h.clone()))
        .collect();
    assert_eq!(ask_feed(&mut feed, &mut me, headers).await, expected);
}
