//! The equivocation watch: a declaration counts only if signed by its proposer, evidence only
//! if it shows an offence; the second, different declaration of a (slot, proposer) proves a
//! double declaration, once per validator; memory is bounded. And a server following the chain
//! from gossip publishes the proof of a double declaration it hears, and scores down the
//! sender of forged evidence.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use alloy_primitives::B256;
use phalanx_cluster::equivocation::{Heard, Judge, MAX_HEARD, Refused, Watch};
use phalanx_cluster::follow::chain_genesis;
use phalanx_cluster::ownership::ShardRange;
use phalanx_cluster::server::{HeaderSource, ServerConfig};
use phalanx_cluster::wire::{DECLARATION_TOPIC, Message, SLASHING_TOPIC};
use phalanx_consensus::testing::{double_vote, signed_declaration};
use phalanx_execution::store::StateStore;
use phalanx_net::memory::MemoryHub;
use phalanx_net::p2p::Verdict;
use phalanx_net::{NetEvent, Network, PeerKey};
use phalanx_spec::devnet::{self, DevnetKeys, DevnetParams};
use phalanx_spec::{ChainSpec, Genesis};
use phalanx_types::signing::SigningContext;
use phalanx_types::{Evidence, ProducerIndex, SignedDeclaration, ValidatorIndex};

use crate::LoneServer;

struct Chain {
    genesis: Genesis,
    keys: DevnetKeys,
    signing: SigningContext,
    spe: u64,
}

fn chain() -> Chain {
    let params = DevnetParams::new("equivocation", ChainSpec::preset("devnet").unwrap());
    let (genesis, keys) = devnet::generate(&params).unwrap();
    let signing = genesis.signing_context();
    let spe = genesis.spec.slots_per_epoch;
    Chain {
        genesis,
        keys,
        signing,
        spe,
    }
}

impl Chain {
    /// Validator `v`'s declaration for `slot` naming `producer`.
    fn declaration(&self, slot: u64, v: u64, producer: u64) -> SignedDeclaration {
        signed_declaration(
            &self.signing,
            self.spe,
            slot,
            ValidatorIndex(v),
            &self.keys.validators[v as usize].1,
            B256::repeat_byte(3),
            ProducerIndex(producer),
        )
    }
}

#[test]
fn the_watch_proves_double_declarations_once_and_judges_what_it_hears() {
    let c = chain();
    let judge = Arc::new(Judge::from_genesis(&c.genesis).unwrap());
    let mut watch = Watch::new(judge.clone());

    // The first declaration of (slot 5, validator 2) is remembered; itself again is nothing.
    let first = c.declaration(5, 2, 0);
    assert_eq!(watch.on_declaration(first.clone()), Ok(None));
    assert_eq!(watch.on_declaration(first.clone()), Ok(None));
    // Other slots and other proposers do not conflict with it.
    assert_eq!(watch.on_declaration(c.declaration(6, 2, 1)), Ok(None));
    assert_eq!(watch.on_declaration(c.declaration(5, 3, 1)), Ok(None));
    // A second producer for the same slot: proven, with the first declaration first.
    let second = c.declaration(5, 2, 1);
    let Ok(Some(Evidence::Declaration(proof))) = watch.on_declaration(second.clone()) else {
        panic!("no proof");
    };
    assert_eq!((proof.declaration_1, proof.declaration_2), (first, second));
    // Once per validator: a third conflicting declaration, or evidence heard against it,
    // is not new.
    let mut third = c.declaration(5, 2, 1);
    third.message.fee_split_bps = 1;
    third.signature = c.signing.sign(&third.message, &c.keys.validators[2].1);
    assert_eq!(watch.on_declaration(third), Ok(None));
    let votes = Evidence::Attester(double_vote(
        &c.signing,
        c.spe,
        ValidatorIndex(2),
        &c.keys.validators[2].1,
        1,
    ));
    assert_eq!(watch.on_evidence(votes), Ok(None));

    // Refused: a declaration signed by another key, an unknown proposer, evidence showing
    // no offence, bytes that are no declaration or evidence.
    let mut forged = c.declaration(7, 4, 0);
    forged.signature = c.signing.sign(&forged.message, &c.keys.validators[5].1);
    assert_eq!(
        watch.on_declaration(forged.clone()),
        Err(Refused::BadSignature {
            validator: 4,
            slot: 7
        })
    );
    let mut unknown = c.declaration(7, 4, 0);
    unknown.message.proposer_index = ValidatorIndex(999);
    assert_eq!(
        watch.on_declaration(unknown),
        Err(Refused::UnknownValidator(999))
    );
    let mut same = double_vote(
        &c.signing,
        c.spe,
        ValidatorIndex(6),
        &c.keys.validators[6].1,
        1,
    );
    same.attestation_2 = same.attestation_1.clone();
    assert_eq!(
        watch.on_evidence(Evidence::Attester(same)),
        Err(Refused::NoOffence)
    );
    // Evidence against someone not proven yet is new, once.
    let votes = Evidence::Attester(double_vote(
        &c.signing,
        c.spe,
        ValidatorIndex(6),
        &c.keys.validators[6].1,
        1,
    ));
    assert_eq!(watch.on_evidence(votes.clone()), Ok(Some(votes.clone())));
    assert_eq!(watch.on_evidence(votes.clone()), Ok(None));

    // On the wire: the same judgement, and a gossip verdict to match.
    let wire = Message::Slashing(Box::new(votes.clone())).encode();
    assert_eq!(
        judge.message(&wire),
        Ok(Heard::Evidence(Box::new(votes), ValidatorIndex(6)))
    );
    assert!(matches!(judge.verdict(&wire), Verdict::Accept));
    let forged_wire = Message::Declaration(forged).encode();
    assert!(matches!(judge.verdict(&forged_wire), Verdict::Reject));
    assert!(matches!(judge.verdict(&[0xff, 1, 2]), Verdict::Reject));
    let header = Message::Request(phalanx_cluster::wire::Request::new(0)).encode();
    assert!(matches!(
        judge.message(&header),
        Err(Refused::Undecodable(_))
    ));
}

#[test]
fn the_watch_forgets_the_lowest_slots_first() {
    let c = chain();
    let mut watch = Watch::new(Arc::new(Judge::from_genesis(&c.genesis).unwrap()));
    // `remember` takes declarations known to be signed (a node's own): signatures unchecked.
    let base = c.declaration(1, 1, 0);
    let unsigned = |slot: u64, producer: u64| {
        let mut d = base.clone();
        d.message.slot = phalanx_types::Slot(slot);
        d.message.producer = ProducerIndex(producer);
        d
    };
    for slot in 0..=MAX_HEARD as u64 {
        assert_eq!(watch.remember(unsigned(slot, 0)), None);
    }
    // Slot 0 was forgotten: a conflict there goes unseen; slot 1 is still remembered.
    assert_eq!(watch.remember(unsigned(0, 1)), None);
    assert!(watch.remember(unsigned(1, 1)).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_following_the_chain_proves_a_double_declaration_it_hears() {
    let c = chain();
    let genesis = Arc::new(c.genesis.clone());
    let (hash, alloc) = chain_genesis(&genesis);
    let state = StateStore::in_memory().unwrap();
    state.init_genesis(hash, &alloc).unwrap();
    let hub = MemoryHub::new();
    let source = PeerKey([0xfe; 32]);
    let mut config = ServerConfig::new("watch", ShardRange { lo: 0, hi: 0 }, 1);
    config.headers = HeaderSource::Chain {
        genesis,
        blocks: source,
    };
    config.tick = Duration::from_millis(10);
    let me = PeerKey([0x11; 32]);
    let server = LoneServer::spawn(config, state, &hub, me);
    let stats = server.stats.clone();
    let mut peer = hub.join(PeerKey([0x22; 32]));
    peer.subscribe(SLASHING_TOPIC).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Forged evidence: refused, counted, nothing published.
    let mut forged = double_vote(
        &c.signing,
        c.spe,
        ValidatorIndex(1),
        &c.keys.validators[1].1,
        1,
    );
    forged.attestation_2.signature = c
        .signing
        .sign(&forged.attestation_2.data, &c.keys.validators[2].1);
    let forged = Message::Slashing(Box::new(Evidence::Attester(forged))).encode();
    peer.publish(SLASHING_TOPIC, forged).unwrap();

    // Validator 3 declares producer 0, then producer 1, for slot 9.
    let first = c.declaration(9, 3, 0);
    let second = c.declaration(9, 3, 1);
    for d in [&first, &second] {
        peer.publish(DECLARATION_TOPIC, Message::Declaration(d.clone()).encode())
            .unwrap();
    }
    let published = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(NetEvent::Gossip { topic, data, .. }) = peer.recv().await
                && topic == SLASHING_TOPIC
            {
                return Message::decode(&data).unwrap();
            }
        }
    })
    .await
    .expect("no evidence published");
    let Message::Slashing(evidence) = published else {
        panic!("not evidence: {published:?}");
    };
    let Evidence::Declaration(proof) = *evidence else {
        panic!("not a double declaration");
    };
    assert_eq!((proof.declaration_1, proof.declaration_2), (first, second));
    assert_eq!(stats.evidence.load(Ordering::Relaxed), 1);
    assert_eq!(stats.invalid.load(Ordering::Relaxed), 1);
    server.stop().await;
}
