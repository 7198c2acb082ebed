//! The gossip chain follower (`phalanx_cluster::chain`) against the live chain's own blocks:
//! whatever order they arrive in, with or without gaps filled by ancestor requests, after a
//! restart from a replica's head, it derives exactly the execution headers of the chain's
//! finalized blocks — and nothing past a final block that does not verify.

use std::collections::HashMap;

use phalanx_cluster::chain::{BlockRefused, ChainFollower, RETRY};
use phalanx_cluster::wire::{ChainBlock, ExecHeader, RANGE_BLOCKS};
use phalanx_sim::chain::{LiveChain, ShardSource};
use phalanx_spec::devnet::DevnetParams;
use phalanx_spec::{ChainSpec, Genesis};
use phalanx_types::{Root, Shard, SignedBlock};
use ssz_types::VariableList;
use tokio::time::Instant;

/// Shards that differ by slot and index, so every block's shard roots are its own.
struct Numbered;

impl ShardSource for Numbered {
    fn shards(&mut self, slot: u64, count: usize) -> Vec<Shard> {
        (0..count)
            .map(|i| {
                let mut tx = slot.to_le_bytes().to_vec();
                tx.push(i as u8);
                Shard {
                    transactions: VariableList::new(vec![VariableList::new(tx).unwrap()]).unwrap(),
                }
            })
            .collect()
    }
}

/// A live chain of 8 validators run for `epochs`, and every block validator 0 imported, in
/// order — with, when `forks`, a sibling of every fifth block: the same declaration with
/// other shard roots, signed by its producer (an equivocating producer's second block, valid
/// on its own, never final).
fn live(epochs: u64, forks: bool) -> (LiveChain, Genesis, Vec<ChainBlock>) {
    let spec = ChainSpec::preset("devnet").unwrap();
    let mut params = DevnetParams::new("chain-follow", spec);
    params.accounts = 0;
    params.executors = 0;
    let (mut chain, genesis, keys) =
        LiveChain::new(8, 2, params, Box::new(Numbered), None).unwrap();
    let signing = chain.signing();
    let end = epochs * genesis.spec.slots_per_epoch * chain.slot_ms();
    let mut imported = Vec::new();
    let mut now = 0;
    while now < end {
        now += 50;
        chain.advance(now);
        for block in chain.take_imported() {
            imported.push(chain_block(&block));
            if forks && block.header.message.slot.0 % 5 == 0 {
                let mut sibling = chain_block(&block);
                let m = &mut sibling.header.message;
                m.shard_roots =
                    VariableList::new(vec![Root::repeat_byte(0x5a); m.shard_roots.len()]).unwrap();
                let producer = &keys.producers[m.producer.0 as usize].1;
                sibling.header.signature = signing.sign(&sibling.header.message, producer);
                imported.push(sibling);
            }
        }
    }
    (chain, genesis, imported)
}

fn chain_block(b: &SignedBlock) -> ChainBlock {
    ChainBlock {
        header: b.header.clone(),
        body: b.body.clone(),
    }
}

/// Hands `blocks` to `follower` in that order; the headers it shows final.
fn deliver(follower: &mut ChainFollower, blocks: &[ChainBlock]) -> Vec<ExecHeader> {
    let mut out = Vec::new();
    for b in blocks {
        out.extend(follower.on_block(b.clone()).unwrap());
    }
    out
}

/// Answers the follower's ancestor requests from `known` (as a block source does: the block
/// and up to 31 ancestors, newest first) until it asks nothing more.
fn sync(
    follower: &mut ChainFollower,
    known: &HashMap<Root, ChainBlock>,
    mut now: Instant,
) -> Vec<ExecHeader> {
    let mut out = Vec::new();
    for _ in 0..1_000 {
        let Some(mut at) = follower.next_request(now) else {
            return out;
        };
        for _ in 0..RANGE_BLOCKS {
            let Some(b) = known.get(&at) else { break };
            out.extend(follower.on_block(b.clone()).unwrap());
            at = b.header.message.parent_root;
        }
        now += RETRY;
    }
    panic!("the follower never stopped asking");
}

/// The follower's headers are the chain's finalized blocks, in order: numbered from 1,
/// hash-linked from the genesis, with each block's shard roots, `PREVRANDAO` (the mix after
/// it) and slot time.
fn check_against_chain(out: &[ExecHeader], chain: &LiveChain, genesis: &Genesis) {
    let finalized = chain.ancestry(chain.status().finalized.root);
    assert!(!out.is_empty(), "nothing shown final");
    assert!(
        out.len() <= finalized.len(),
        "{} headers shown final, the chain finalized {}",
        out.len(),
        finalized.len()
    );
    let (mut parent, _) = phalanx_cluster::follow::chain_genesis(genesis);
    for (i, (h, f)) in out.iter().zip(&finalized).enumerate() {
        let m = &f.block.header.message;
        assert_eq!(h.number, i as u64 + 1);
        assert_eq!(h.parent, parent, "height {} does not link", h.number);
        assert_eq!(h.shard_roots.to_vec(), m.shard_roots.to_vec());
        assert_eq!(h.prevrandao, f.mix);
        assert_eq!(
            h.timestamp,
            genesis.genesis_time + m.slot.0 * genesis.spec.slot_seconds
        );
        parent = h.hash();
    }
}

#[test]
fn a_gossip_follower_takes_exactly_the_finalized_chain_in_any_order() {
    let (chain, genesis, blocks) = live(6, true);
    let canonical = chain.ancestry(chain.status().head.0).len();
    assert!(
        blocks.len() > canonical,
        "no fork to follow through: {} blocks, {canonical} canonical",
        blocks.len()
    );

    // In the order they were imported.
    let mut follower = ChainFollower::from_genesis(&genesis).unwrap();
    let in_order = deliver(&mut follower, &blocks);
    check_against_chain(&in_order, &chain, &genesis);
    assert!(
        in_order.len() + 2 * genesis.spec.slots_per_epoch as usize
            >= chain.ancestry(chain.status().finalized.root).len(),
        "the follower's finality lags more than two epochs"
    );

    // Newest first: held until finality reaches them, the same headers.
    let mut follower = ChainFollower::from_genesis(&genesis).unwrap();
    let reversed: Vec<ChainBlock> = blocks.iter().rev().cloned().collect();
    assert_eq!(deliver(&mut follower, &reversed), in_order);

    // Only the newest block by gossip: the rest by ancestor requests.
    let known: HashMap<Root, ChainBlock> = blocks.iter().map(|b| (b.root(), b.clone())).collect();
    let head = known[&chain.status().head.0].clone();
    let mut follower = ChainFollower::from_genesis(&genesis).unwrap();
    let mut out = deliver(&mut follower, &[head]);
    out.extend(sync(&mut follower, &known, Instant::now()));
    check_against_chain(&out, &chain, &genesis);
    assert_eq!(out.len(), in_order.len());

    // A restart from a replica's head at height 5: its consensus block is found by the walk
    // back and must derive that header; then the same headers follow.
    let at = &in_order[4];
    let mut follower = ChainFollower::resume(&genesis, at, at.hash()).unwrap();
    assert!(follower.status().anchoring);
    let mut out = deliver(&mut follower, &[known[&chain.status().head.0].clone()]);
    out.extend(sync(&mut follower, &known, Instant::now()));
    assert!(
        !follower.status().anchoring,
        "the head's block was not found"
    );
    assert_eq!(out, in_order[5..]);

    // A replica head the chain never derived (another header at that height) is never
    // anchored, and nothing after it is taken.
    let mut wrong = in_order[4].clone();
    wrong.fee_split_bps = wrong.fee_split_bps.wrapping_add(1);
    let mut follower = ChainFollower::resume(&genesis, &wrong, wrong.hash()).unwrap();
    let mut out = deliver(&mut follower, &[known[&chain.status().head.0].clone()]);
    out.extend(sync(&mut follower, &known, Instant::now()));
    assert!(out.is_empty());
    assert!(follower.status().anchoring);
}

#[test]
fn a_block_that_does_not_verify_is_never_taken_and_a_good_copy_is() {
    let (chain, genesis, blocks) = live(5, false);

    // A body that is not the header's: refused on arrival (the sender is scored down).
    let mut tampered = blocks
        .iter()
        .find(|b| !b.body.attestations.is_empty())
        .unwrap()
        .clone();
    tampered.body.attestations = VariableList::empty();
    let mut follower = ChainFollower::from_genesis(&genesis).unwrap();
    assert!(matches!(
        follower.on_block(tampered),
        Err(BlockRefused::BodyMismatch { .. })
    ));

    // The fourth final block with a bad producer signature (same root: the signature is not
    // in it): final headers stop before it.
    let finalized = chain.ancestry(chain.status().finalized.root);
    let bad_root = finalized[3].root;
    let mut bad = blocks.clone();
    let at = bad.iter().position(|b| b.root() == bad_root).unwrap();
    bad[at].header.signature.0[5] ^= 0x40;
    let mut follower = ChainFollower::from_genesis(&genesis).unwrap();
    let out = deliver(&mut follower, &bad);
    assert_eq!(out.len(), 3, "headers past the bad block were taken");
    assert!(follower.status().refused >= 1);

    // The good copy, when asked for again, lets the rest through.
    let known: HashMap<Root, ChainBlock> = blocks.iter().map(|b| (b.root(), b.clone())).collect();
    let mut rest = sync(&mut follower, &known, Instant::now() + RETRY);
    // Finality is shown again by the next block's arrival or attestation.
    if rest.is_empty() {
        rest = deliver(&mut follower, &blocks[blocks.len() - 1..]);
    }
    let mut all = out;
    all.extend(rest);
    check_against_chain(&all, &chain, &genesis);
    assert!(all.len() > 4);
}

/// A block source answers a consensus block by root with its ancestors, newest first, at most
/// [`RANGE_BLOCKS`] of them; an unknown root gets nothing.
#[tokio::test]
async fn a_block_source_answers_a_block_with_its_ancestors() {
    use phalanx_cluster::feed::Feed;
    use phalanx_cluster::testing::ask_feed;
    use phalanx_cluster::wire::{Message, Request};
    use phalanx_net::PeerKey;
    use phalanx_net::memory::MemoryHub;

    let (chain, _, blocks) = live(6, false);
    let hub = MemoryHub::new();
    let mut feed = Feed::new(hub.join(PeerKey([0xfe; 32])));
    let mut me = hub.join(PeerKey([0x01; 32]));
    for b in &blocks {
        feed.remember_chain(b.clone());
    }
    let mut ask = async |root: Root| {
        let request = Request {
            block: root,
            ..Request::new(Request::CHAIN_ANCESTORS)
        };
        ask_feed(&mut feed, &mut me, request)
            .await
            .into_iter()
            .map(|m| match m {
                Message::ChainBlock(b) => *b,
                other => panic!("answered with {other:?}"),
            })
            .collect::<Vec<_>>()
    };
    let head = chain.status().head.0;
    let canonical: Vec<Root> = chain.ancestry(head).iter().rev().map(|f| f.root).collect();
    assert!(canonical.len() > RANGE_BLOCKS);
    let got = ask(head).await;
    assert_eq!(
        got.iter().map(ChainBlock::root).collect::<Vec<_>>(),
        canonical[..RANGE_BLOCKS]
    );
    // The first block's ancestors end at genesis: only those there are.
    let early = canonical[canonical.len() - 3];
    assert_eq!(ask(early).await.len(), 3);
    assert!(ask(Root::repeat_byte(9)).await.is_empty());
}
