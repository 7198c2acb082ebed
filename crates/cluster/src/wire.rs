//! What the servers of a node and the chain's block sources say to each other (SSZ bodies
//! behind a one-byte tag), and the gossip topics they say it on.
//!
//! * `header`: [`ExecHeader`], the ordered block as execution needs it (every server);
//! * `shard/{i}`: [`ShardMessage`] for shard `i` (only the servers responsible for `i`);
//! * `effects/{node}`: [`ShardOutcome`], one server's result of one shard, and
//!   [`AcceptedNote`], a server's word that it wrote a shard's accepted key (the node's
//!   servers);
//! * `build/{node}`: [`BuildRequest`] from the node's producer, and the built shards the
//!   accepted builders publish ([`ShardMessage`] whose `block` is the request's id);
//! * `block`: [`ChainBlock`], every consensus block as its source imports it (signed header
//!   and body, not the shards: the header commits to their roots), for servers that follow
//!   the chain from gossip ([`crate::chain`]);
//! * `attestation`: aggregated [`Attestation`]s, counted by those servers towards finality;
//! * `declaration`: every [`SignedDeclaration`] a proposer makes, public so that anyone who
//!   hears two conflicting ones for a slot can prove it;
//! * `slashing`: [`Evidence`] of a double declaration or a double/surround vote, for the
//!   chain's producers to carry in a block;
//! * direct requests [`Request`] and answers (sync): a shard by `(block, index)`, an outcome
//!   by `(block, shard, root)`, headers from a height, a whole block (header and every shard)
//!   by root, whole blocks from a height, one shard index of the blocks from a height
//!   (a server catching up fetches only its own shards, ahead), and a consensus block with
//!   its ancestors by root.

use alloy_primitives::{B256, Bytes};
use phalanx_execution::changes::{ShardEffects, container_root};
use phalanx_types::consensus::Shard;
use phalanx_types::{Attestation, BlockBody, Evidence, Root, SignedBlockHeader, SignedDeclaration};
use ssz::{Decode, Encode};
use ssz_derive::{Decode, Encode};
use ssz_types::VariableList;
use tree_hash::TreeHash;
use tree_hash_derive::TreeHash;
use typenum::{U1024, U16777216};

/// The header topic.
pub const HEADER_TOPIC: &str = "header";

/// The consensus block topic.
pub const BLOCK_TOPIC: &str = "block";

/// The aggregated attestation topic.
pub const ATTESTATION_TOPIC: &str = "attestation";

/// The topic of proposers' signed declarations.
pub const DECLARATION_TOPIC: &str = "declaration";

/// The slashing evidence topic.
pub const SLASHING_TOPIC: &str = "slashing";

/// A consensus block without its shards: what the `block` topic carries and what a
/// [`Request::CHAIN_ANCESTORS`] is answered with. `header.message.body_root` commits to the
/// body, `header.message.shard_roots` to the shards (which travel on their own topics).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ChainBlock {
    /// The signed header.
    pub header: SignedBlockHeader,
    /// The body: attestations, claims, slashings, fraud proofs, executor operations.
    pub body: BlockBody,
}

impl ChainBlock {
    /// The block's consensus root.
    pub fn root(&self) -> Root {
        self.header.message.root()
    }

    /// Whether the body is the one the header commits to.
    pub fn body_matches(&self) -> bool {
        self.body.tree_hash_root() == self.header.message.body_root
    }
}

/// The topic of shard `index`.
pub fn shard_topic(index: u16) -> String {
    format!("shard/{index}")
}

/// The node-internal topic on which a producing node asks its servers to build a block's
/// shards, and the winners publish what they built.
pub fn build_topic(node: &str) -> String {
    format!("build/{node}")
}

/// A producing node asks its servers to build the shards of one block.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct BuildRequest {
    /// Names the block being built (the producer's choice: unique per block; a retry of the
    /// same block reuses it, so the shards already accepted stay accepted).
    pub id: B256,
    /// The block's height.
    pub height: u64,
}

/// The node-internal topic on which a node's servers publish their shard outcomes.
pub fn effects_topic(node: &str) -> String {
    format!("effects/{node}")
}

pub use phalanx_execution::header::ExecHeader;

/// One shard of one block on its topic.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ShardMessage {
    /// The block.
    pub block: B256,
    /// The shard index.
    pub index: u16,
    /// Its transactions.
    pub shard: Shard,
}

/// Largest contract code carried with an outcome.
pub type MaxCodeBytes = U16777216;

/// One server's result of one shard. Its `hash_tree_root` is what the coordination store
/// accepts.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, TreeHash)]
pub struct ShardOutcome {
    /// The block.
    pub block: B256,
    /// The shard index.
    pub shard: u16,
    /// The shard voids the block: a transaction overflowed the shard gas limit.
    pub void: bool,
    /// If void: the index of that transaction.
    pub void_tx: u64,
    /// The shard's effects (empty if void).
    pub effects: ShardEffects,
    /// Code of the contracts the shard created.
    pub codes: VariableList<VariableList<u8, MaxCodeBytes>, U1024>,
}

impl ShardOutcome {
    /// What the coordination store accepts.
    pub fn root(&self) -> B256 {
        self.tree_hash_root()
    }

    /// [`ShardOutcome::root`] and the root of its effects, the effects hashed once (the
    /// merge needs the second; the container root is the derived one, field by field).
    pub fn roots(&self) -> (B256, B256) {
        let effects = self.effects.tree_hash_root();
        let root = container_root(&[
            self.block.tree_hash_root(),
            self.shard.tree_hash_root(),
            self.void.tree_hash_root(),
            self.void_tx.tree_hash_root(),
            effects,
            self.codes.tree_hash_root(),
        ]);
        (root, effects)
    }

    /// Back to the execution layer's form, with the effects root from
    /// [`ShardOutcome::roots`].
    pub fn to_result(
        &self,
        shard_gas_limit: u64,
        effects_root: B256,
    ) -> Result<phalanx_execution::block::ShardResult, phalanx_execution::block::VoidReason> {
        use phalanx_execution::block::{ShardResult, VoidReason};
        if self.void {
            return Err(VoidReason::ShardGasLimit {
                shard: self.shard as usize,
                tx: self.void_tx as usize,
                limit: shard_gas_limit,
            });
        }
        Ok(ShardResult::from_effects_with_root(
            &self.effects,
            effects_root,
            self.codes.iter().map(|c| Bytes::from(c.to_vec())),
        ))
    }
}

/// Blocks one range request (kinds [`Request::BLOCKS_FROM`], [`Request::SHARDS_FROM`]) is
/// answered with, at most.
pub const RANGE_BLOCKS: usize = 32;

/// A direct request to a peer.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Request {
    /// What is asked: [`Request::SHARD`], [`Request::OUTCOME`], [`Request::HEADERS_FROM`],
    /// [`Request::BLOCK`], [`Request::BLOCKS_FROM`], [`Request::SHARDS_FROM`],
    /// [`Request::CHAIN_ANCESTORS`].
    pub kind: u8,
    /// The block.
    pub block: B256,
    /// Shard index.
    pub index: u16,
    /// Outcome root wanted.
    pub root: B256,
    /// First height (headers).
    pub height: u64,
}

impl Request {
    /// Shard `index` of `block`: answered with one [`Message::Shard`].
    pub const SHARD: u8 = 0;
    /// The outcome of shard `index` of `block` whose root is `root`: one [`Message::Outcome`].
    pub const OUTCOME: u8 = 1;
    /// Headers from `height`: up to 64 [`Message::Header`]s.
    pub const HEADERS_FROM: u8 = 2;
    /// Block `block` by root: its [`Message::Header`], then each of its shards.
    pub const BLOCK: u8 = 3;
    /// Blocks from `height`: up to [`RANGE_BLOCKS`], each as for [`Request::BLOCK`].
    pub const BLOCKS_FROM: u8 = 4;
    /// Shard `index` of the blocks from `height`: up to [`RANGE_BLOCKS`] [`Message::Shard`]s.
    pub const SHARDS_FROM: u8 = 5;
    /// Consensus block `block` by root and its ancestors, newest first: up to
    /// [`RANGE_BLOCKS`] [`Message::ChainBlock`]s.
    pub const CHAIN_ANCESTORS: u8 = 6;
    /// Node-internal: where the transaction whose hash is `root` is, among the shards the
    /// asked server kept: one [`Message::Located`].
    pub const LOCATE_TX: u8 = 7;
    /// Node-internal: the transactions and receipts of shard `index` of finalized block
    /// `block` as the asked server kept them: one [`Message::Record`].
    pub const RECORD: u8 = 8;

    /// A request of `kind` with every other field zero.
    pub fn new(kind: u8) -> Self {
        Self {
            kind,
            block: B256::ZERO,
            index: 0,
            root: B256::ZERO,
            height: 0,
        }
    }
}

/// A message between peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A header (gossip, or an answer).
    Header(ExecHeader),
    /// A shard (gossip, or an answer).
    Shard(ShardMessage),
    /// A shard outcome (gossip, or an answer).
    Outcome(ShardOutcome),
    /// A request.
    Request(Request),
    /// Build the shards of a block (node-internal, when the node produces).
    Build(BuildRequest),
    /// A consensus block (gossip, or an answer).
    ChainBlock(Box<ChainBlock>),
    /// An aggregated attestation (gossip).
    Attestation(Attestation),
    /// A proposer's signed declaration (gossip).
    Declaration(SignedDeclaration),
    /// Slashing evidence (gossip).
    Slashing(Box<Evidence>),
    /// A server wrote a shard's accepted key (node-internal gossip).
    Accepted(AcceptedNote),
    /// Where a transaction is (node-internal, an answer to [`Request::LOCATE_TX`]).
    Located(TxLocated),
    /// A shard's transactions and receipts (node-internal, an answer to [`Request::RECORD`]).
    Record(ShardRecord),
}

/// A server's answer to [`Request::LOCATE_TX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct TxLocated {
    /// The transaction's hash.
    pub tx: B256,
    /// Whether the server kept it; the other fields are zero when not.
    pub found: bool,
    /// Height of its finalized block.
    pub height: u64,
    /// Its shard.
    pub shard: u16,
    /// Its position in the shard.
    pub position: u32,
}

/// A server's answer to [`Request::RECORD`]: what it kept of one shard of one finalized
/// block (the shards a server ran: `docs/protocol/cluster.md`, *Receipts on disk*).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ShardRecord {
    /// The block.
    pub block: B256,
    /// The shard index.
    pub shard: u16,
    /// Whether the server kept the shard; the lists are empty when not.
    pub found: bool,
    /// The shard's transactions (EIP-2718 encodings), in order.
    pub transactions: Vec<Vec<u8>>,
    /// The shard's receipts, one per transaction, as the state store keeps them
    /// ([`phalanx_execution::receipts`]); empty when the block was void.
    pub receipts: Vec<u8>,
}

impl ShardRecord {
    /// The answer of a server that did not keep shard `shard` of `block`.
    pub fn none(block: B256, shard: u16) -> Self {
        Self {
            block,
            shard,
            found: false,
            transactions: Vec::new(),
            receipts: Vec::new(),
        }
    }
}

/// A server's word, on its node's effects topic, that its write of `(block, shard)`'s
/// accepted key won: the node's other servers read the key now instead of at their next
/// tick. It names no root — what was accepted is read from the coordination store only, so a
/// false note costs one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct AcceptedNote {
    /// The block.
    pub block: B256,
    /// The shard index.
    pub shard: u16,
}

/// A message that could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("undecodable message: {0}")]
pub struct DecodeError(pub String);

impl Message {
    /// Tag byte, then SSZ.
    pub fn encode(&self) -> Vec<u8> {
        let (tag, body) = match self {
            Message::Header(m) => (0u8, m.as_ssz_bytes()),
            Message::Shard(m) => (1, m.as_ssz_bytes()),
            Message::Outcome(m) => (2, m.as_ssz_bytes()),
            Message::Request(m) => (3, m.as_ssz_bytes()),
            Message::Build(m) => (4, m.as_ssz_bytes()),
            Message::ChainBlock(m) => (5, m.as_ssz_bytes()),
            Message::Attestation(m) => (6, m.as_ssz_bytes()),
            Message::Declaration(m) => (7, m.as_ssz_bytes()),
            Message::Slashing(m) => (8, m.as_ssz_bytes()),
            Message::Accepted(m) => (9, m.as_ssz_bytes()),
            Message::Located(m) => (10, m.as_ssz_bytes()),
            Message::Record(m) => (11, m.as_ssz_bytes()),
        };
        let mut out = Vec::with_capacity(1 + body.len());
        out.push(tag);
        out.extend_from_slice(&body);
        out
    }

    /// The inverse of [`Message::encode`]; any other bytes are a typed error.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (tag, body) = bytes
            .split_first()
            .ok_or_else(|| DecodeError("empty".into()))?;
        let err = |e: ssz::DecodeError| DecodeError(format!("{e:?}"));
        Ok(match tag {
            0 => Message::Header(ExecHeader::from_ssz_bytes(body).map_err(err)?),
            1 => Message::Shard(ShardMessage::from_ssz_bytes(body).map_err(err)?),
            2 => Message::Outcome(ShardOutcome::from_ssz_bytes(body).map_err(err)?),
            3 => Message::Request(Request::from_ssz_bytes(body).map_err(err)?),
            4 => Message::Build(BuildRequest::from_ssz_bytes(body).map_err(err)?),
            5 => Message::ChainBlock(Box::new(ChainBlock::from_ssz_bytes(body).map_err(err)?)),
            6 => Message::Attestation(Attestation::from_ssz_bytes(body).map_err(err)?),
            7 => Message::Declaration(SignedDeclaration::from_ssz_bytes(body).map_err(err)?),
            8 => Message::Slashing(Box::new(Evidence::from_ssz_bytes(body).map_err(err)?)),
            9 => Message::Accepted(AcceptedNote::from_ssz_bytes(body).map_err(err)?),
            10 => Message::Located(TxLocated::from_ssz_bytes(body).map_err(err)?),
            11 => Message::Record(ShardRecord::from_ssz_bytes(body).map_err(err)?),
            t => return Err(DecodeError(format!("unknown tag {t}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use alloy_primitives::{Address, U256};
    use phalanx_execution::changes::Changes;

    use super::*;

    fn outcome(seed: u8) -> ShardOutcome {
        let mut changes = Changes::default();
        for i in 0..3u8 {
            changes.fund(
                Address::repeat_byte(seed.wrapping_add(i)),
                U256::from(u64::from(seed) * 1000 + u64::from(i)),
            );
        }
        ShardOutcome {
            block: B256::repeat_byte(seed),
            shard: u16::from(seed),
            void: false,
            void_tx: 0,
            effects: ShardEffects::new(&changes, 21_000 * 3, U256::from(seed)).expect("effects"),
            codes: VariableList::new(vec![VariableList::new(vec![seed; 5]).expect("code")])
                .expect("codes"),
        }
    }

    /// The root hashed field by field is the derived container root, and the effects root
    /// beside it is the effects' own; every field moves the root.
    #[test]
    fn roots_are_the_derived_root_and_the_effects_root() {
        let base = outcome(7);
        assert_eq!(base.roots(), (base.tree_hash_root(), base.effects.root()));
        let mut variants = vec![base.clone(); 6];
        variants[0].block = B256::repeat_byte(8);
        variants[1].shard = 8;
        variants[2].void = true;
        variants[3].void_tx = 1;
        variants[4].effects = outcome(8).effects;
        variants[5].codes = outcome(8).codes;
        for v in &variants {
            assert_eq!(v.roots(), (v.tree_hash_root(), v.effects.root()));
            assert_ne!(v.roots().0, base.roots().0);
        }
        // The merge's input: what the effects and codes alone give.
        let result = base
            .to_result(30_000_000, base.roots().1)
            .expect("not void");
        let expected = phalanx_execution::block::ShardResult::from_effects(
            &base.effects,
            base.codes.iter().map(|c| Bytes::from(c.to_vec())),
        );
        assert_eq!(result.effects_root, expected.effects_root);
        assert_eq!(result.changes, expected.changes);
    }

    /// The accepted note goes through the wire unchanged; a cut one is a typed error.
    #[test]
    fn an_accepted_note_round_trips_and_a_cut_one_is_refused() {
        let note = AcceptedNote {
            block: B256::repeat_byte(3),
            shard: 513,
        };
        let bytes = Message::Accepted(note).encode();
        assert_eq!(bytes.len(), 1 + 32 + 2);
        assert!(matches!(Message::decode(&bytes), Ok(Message::Accepted(n)) if n == note));
        assert!(Message::decode(&bytes[..bytes.len() - 1]).is_err());
    }

    /// One valid message of each of the node's own kinds (the consensus kinds — chain blocks,
    /// attestations, declarations, evidence — have the same properties in `phalanx-types`).
    fn own_kinds() -> Vec<Message> {
        let (header, shards) = crate::load::Load::new(2, 3, 5)
            .next_block(2)
            .expect("a block of the load");
        let mut request = Request::new(Request::SHARDS_FROM);
        request.block = header.hash();
        request.index = 1;
        request.root = B256::repeat_byte(9);
        request.height = 1 << 40;
        vec![
            Message::Shard(ShardMessage {
                block: header.hash(),
                index: 1,
                shard: shards[1].clone(),
            }),
            Message::Header(header),
            Message::Outcome(outcome(4)),
            Message::Request(request),
            Message::Build(BuildRequest {
                id: B256::repeat_byte(2),
                height: 7,
            }),
            Message::Accepted(AcceptedNote {
                block: B256::repeat_byte(3),
                shard: 1,
            }),
            Message::Located(TxLocated {
                tx: B256::repeat_byte(4),
                found: true,
                height: 9,
                shard: 2,
                position: 70_000,
            }),
            Message::Record(ShardRecord {
                block: B256::repeat_byte(5),
                shard: 1,
                found: true,
                transactions: shards[1].transactions.iter().map(|t| t.to_vec()).collect(),
                receipts: vec![1, 2, 3],
            }),
        ]
    }

    #[test]
    fn every_own_kind_round_trips() {
        for message in own_kinds() {
            let bytes = message.encode();
            assert_eq!(
                Message::decode(&bytes).expect("own encoding decodes"),
                message
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 512,
            ..Default::default()
        })]

        /// Any bytes behind any tag are a message or a typed error, never a panic; what
        /// decodes re-encodes to exactly those bytes (one encoding per message, so gossip's
        /// message ids cannot be dodged by re-encoding).
        #[test]
        fn any_bytes_are_a_message_or_an_error(
            tag in 0u8..14,
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1024),
        ) {
            let mut bytes = vec![tag];
            bytes.extend_from_slice(&body);
            if let Ok(message) = Message::decode(&bytes) {
                proptest::prop_assert_eq!(message.encode(), bytes);
            }
        }

        /// A valid message of each kind, maybe under another kind's tag, with bytes
        /// overwritten, then maybe cut short: never a panic, and what still decodes is
        /// canonical.
        #[test]
        fn corrupted_messages_are_a_message_or_an_error(
            kind in proptest::prelude::any::<proptest::sample::Index>(),
            retag in proptest::option::of(0u8..14),
            edits in proptest::collection::vec(
                (proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()),
                1..6,
            ),
            cut in proptest::prelude::any::<proptest::sample::Index>(),
            truncate in proptest::prelude::any::<bool>(),
        ) {
            let kinds = own_kinds();
            let mut bytes = kinds[kind.index(kinds.len())].encode();
            if let Some(tag) = retag {
                bytes[0] = tag;
            }
            for (at, byte) in edits {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            if truncate {
                bytes.truncate(cut.index(bytes.len()));
            }
            if let Ok(message) = Message::decode(&bytes) {
                proptest::prop_assert_eq!(message.encode(), bytes);
            }
        }
    }
}
