//! History reads across a node's servers: a block's transactions and receipts, and where a
//! transaction is, for a server's JSON-RPC (`eth_getTransactionReceipt`, `eth_getBlockReceipts`,
//! `eth_getTransactionByHash`, `eth_getBlockByNumber`).
//!
//! Every server applies every block, but it runs — and so keeps the transactions and
//! receipts of — only the shards it is responsible for (`docs/protocol/cluster.md`,
//! *Receipts on disk*), and it never downloads another shard. Every server keeps every
//! block's header. So a read of history is put together from the node's servers:
//!
//! 1. **Where a transaction is.** The server looks in its own index
//!    ([`StateStore::transaction_location`](phalanx_execution::store::StateStore::transaction_location)); if it is not there it asks every member of the
//!    node ([`Request::LOCATE_TX`](crate::wire::Request::LOCATE_TX)) and takes the first that found it. Not found anywhere
//!    (every member said so, or [`LOOKUP_TIMEOUT`] passed) is `None`: the transaction is not
//!    in a finalized block any server kept.
//! 2. **A finalized block's records.** With the header of height `n` from its own store, the
//!    server takes the shards it kept itself and asks every member for each other shard
//!    ([`Request::RECORD`](crate::wire::Request::RECORD)). An answer counts only if it comes from a member, its
//!    transactions hash to the header's root of that shard, and its receipts decode and name
//!    those transactions in order (or are empty: a void block has none). The first such
//!    answer per shard is taken; a shard that no member could give by [`LOOKUP_TIMEOUT`] is
//!    reported missing, never made up.
//!
//! A server answers these requests only for members of its node, from its store (memory
//! before a commit, disk after). The RPC side ([`Queries`]) hands a query to the server task
//! and blocks on its reply; if the server task is not running the reply is an error saying
//! so.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{B256, Bytes, keccak256};
use phalanx_execution::block::Receipt;
use phalanx_execution::header::ExecHeader;
use phalanx_execution::history::{BlockReceipts, BlockRef};
use phalanx_execution::store::TxLocation;
use phalanx_net::PeerKey;
use phalanx_types::consensus::Shard;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tree_hash::TreeHash;

use crate::wire::{ShardRecord, TxLocated};

/// How long a server waits for the node's other servers to answer a lookup.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Queries waiting for the server task, at most.
const QUEUED: usize = 64;

/// Lookups one server has in flight, at most; more are refused with [`LookupError::Busy`].
const IN_FLIGHT: usize = 256;

/// Why a lookup has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The server task is not running (stopping, or restarting after a store outage).
    #[error("the server is not running")]
    ServerDown,
    /// Too many lookups are in flight.
    #[error("too many history reads in flight; try again")]
    Busy,
    /// The height is not a finalized height this server kept a header for.
    #[error(
        "height {0} is not a finalized block of this server (above its disk head, or from before it kept headers)"
    )]
    NotFinalized(u64),
    /// The state store failed or pruned what was asked.
    #[error("{0}")]
    State(String),
}

/// One shard's transactions and receipts (the receipts empty when the block was void).
pub type ShardHistory = (Vec<Bytes>, Vec<Receipt>);

/// A finalized block's header and, per shard, its transactions and receipts as a server of
/// the node kept them (`None`: no server could give that shard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRecords {
    /// The block's header.
    pub header: ExecHeader,
    /// Per shard index: `(transactions, receipts)`; receipts are empty when the block was
    /// void.
    pub shards: Vec<Option<ShardHistory>>,
}

impl BlockRecords {
    /// Whether every shard was found.
    pub fn complete(&self) -> bool {
        self.shards.iter().all(Option::is_some)
    }

    /// The shards that no server could give.
    pub fn missing(&self) -> Vec<u16> {
        (0..self.shards.len() as u16)
            .filter(|i| self.shards[*i as usize].is_none())
            .collect()
    }

    /// The block put together: its receipts with the block-wide figures, and every
    /// transaction it lists as `(shard, encoding)` in block order. Complete when every shard
    /// was found (a void block's transactions then have no receipts, as it ran none).
    pub fn assemble(&self) -> (BlockReceipts, Vec<(u16, Bytes)>) {
        let mut raw = Vec::new();
        let mut by_shard = BTreeMap::new();
        for (i, found) in self.shards.iter().enumerate() {
            if let Some((txs, receipts)) = found {
                raw.extend(txs.iter().map(|t| (i as u16, t.clone())));
                by_shard.insert(i as u16, receipts.clone());
            }
        }
        let mut block = BlockReceipts::assemble(BlockRef::of(&self.header), raw.clone(), &by_shard);
        block.complete = self.complete();
        (block, raw)
    }
}

/// A query for the server task.
#[derive(Debug)]
pub enum Query {
    /// Where the transaction with this hash is.
    Locate {
        /// The transaction's hash.
        tx: B256,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<Option<TxLocation>, LookupError>>,
    },
    /// The records of the finalized block at this height.
    Block {
        /// The height.
        number: u64,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<BlockRecords, LookupError>>,
    },
}

/// The RPC's side: hands queries to the server task.
#[derive(Debug, Clone)]
pub struct Queries(mpsc::Sender<Query>);

/// The server task's side ([`crate::server::ServerConfig::queries`]); a server task that
/// restarts takes it up again.
#[derive(Debug, Clone)]
pub struct QueryInbox(pub(crate) Arc<tokio::sync::Mutex<mpsc::Receiver<Query>>>);

/// A connected pair.
pub fn channel() -> (Queries, QueryInbox) {
    let (tx, rx) = mpsc::channel(QUEUED);
    (
        Queries(tx),
        QueryInbox(Arc::new(tokio::sync::Mutex::new(rx))),
    )
}

impl Queries {
    fn ask<T>(
        &self,
        query: impl FnOnce(oneshot::Sender<Result<T, LookupError>>) -> Query,
    ) -> Result<T, LookupError> {
        let (reply, answer) = oneshot::channel();
        self.0.try_send(query(reply)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => LookupError::Busy,
            mpsc::error::TrySendError::Closed(_) => LookupError::ServerDown,
        })?;
        answer
            .blocking_recv()
            .map_err(|_| LookupError::ServerDown)?
    }

    /// Where the transaction `tx` is (blocks the calling thread: call it off the async
    /// runtime).
    pub fn locate_blocking(&self, tx: B256) -> Result<Option<TxLocation>, LookupError> {
        self.ask(|reply| Query::Locate { tx, reply })
    }

    /// The records of finalized height `number` (blocks, as above).
    pub fn block_blocking(&self, number: u64) -> Result<BlockRecords, LookupError> {
        self.ask(|reply| Query::Block { number, reply })
    }
}

/// A locate waiting for the node's other servers.
struct Locating {
    tx: B256,
    /// Members that have not answered yet.
    waiting: BTreeSet<PeerKey>,
    reply: oneshot::Sender<Result<Option<TxLocation>, LookupError>>,
    deadline: Instant,
}

/// A block's records waiting for the node's other servers.
struct Gathering {
    records: BlockRecords,
    hash: B256,
    /// Per missing shard, the members that have not answered yet.
    waiting: BTreeMap<u16, BTreeSet<PeerKey>>,
    reply: oneshot::Sender<Result<BlockRecords, LookupError>>,
    deadline: Instant,
}

/// The lookups a server has in flight.
#[derive(Default)]
pub(crate) struct Lookups {
    locating: Vec<Locating>,
    gathering: Vec<Gathering>,
}

/// What a lookup that cannot be answered at once needs sent: `(member, shard)` record
/// requests, or the members to ask where a transaction is.
pub(crate) enum Asks {
    /// Answered already.
    None,
    /// Ask these members where the transaction is.
    Locate(B256, Vec<PeerKey>),
    /// Ask these members for these shards of block `B256`.
    Records(B256, Vec<(PeerKey, u16)>),
}

impl Lookups {
    /// Lookups in flight.
    pub(crate) fn len(&self) -> usize {
        self.locating.len() + self.gathering.len()
    }

    /// Starts a locate the server could not answer from its own index.
    pub(crate) fn locate(
        &mut self,
        tx: B256,
        members: &BTreeSet<PeerKey>,
        reply: oneshot::Sender<Result<Option<TxLocation>, LookupError>>,
        now: Instant,
    ) -> Asks {
        if members.is_empty() {
            let _ = reply.send(Ok(None));
            return Asks::None;
        }
        if self.len() >= IN_FLIGHT {
            let _ = reply.send(Err(LookupError::Busy));
            return Asks::None;
        }
        self.locating.push(Locating {
            tx,
            waiting: members.clone(),
            reply,
            deadline: now + LOOKUP_TIMEOUT,
        });
        Asks::Locate(tx, members.iter().copied().collect())
    }

    /// Starts gathering a block's records: `records` holds what the server kept itself.
    pub(crate) fn gather(
        &mut self,
        records: BlockRecords,
        members: &BTreeSet<PeerKey>,
        reply: oneshot::Sender<Result<BlockRecords, LookupError>>,
        now: Instant,
    ) -> Asks {
        let missing = records.missing();
        if missing.is_empty() || members.is_empty() {
            let _ = reply.send(Ok(records));
            return Asks::None;
        }
        if self.len() >= IN_FLIGHT {
            let _ = reply.send(Err(LookupError::Busy));
            return Asks::None;
        }
        let hash = records.header.hash();
        let asks = missing
            .iter()
            .flat_map(|shard| members.iter().map(move |m| (*m, *shard)))
            .collect();
        self.gathering.push(Gathering {
            records,
            hash,
            waiting: missing.iter().map(|s| (*s, members.clone())).collect(),
            reply,
            deadline: now + LOOKUP_TIMEOUT,
        });
        Asks::Records(hash, asks)
    }

    /// A member's answer to a locate.
    pub(crate) fn on_located(&mut self, from: PeerKey, answer: &TxLocated) {
        let mut i = 0;
        while i < self.locating.len() {
            let l = &mut self.locating[i];
            if l.tx != answer.tx || !l.waiting.remove(&from) {
                i += 1;
                continue;
            }
            if answer.found || l.waiting.is_empty() {
                let l = self.locating.swap_remove(i);
                let found = answer.found.then_some(TxLocation {
                    number: answer.height,
                    shard: answer.shard,
                    position: answer.position,
                });
                let _ = l.reply.send(Ok(found));
            } else {
                i += 1;
            }
        }
    }

    /// A member's answer to a record request. Returns why it was refused, if it was (a
    /// member that sends a record not matching the header is faulty).
    pub(crate) fn on_record(&mut self, from: PeerKey, record: &ShardRecord) -> Option<String> {
        let mut refused = None;
        let mut i = 0;
        while i < self.gathering.len() {
            let g = &mut self.gathering[i];
            let shard = record.shard;
            let asked = g.hash == record.block
                && g.waiting
                    .get_mut(&shard)
                    .is_some_and(|waiting| waiting.remove(&from));
            if !asked {
                i += 1;
                continue;
            }
            if record.found {
                match checked(&g.records.header, record) {
                    Ok(found) => {
                        g.records.shards[shard as usize] = Some(found);
                        g.waiting.remove(&shard);
                    }
                    Err(why) => refused = Some(why),
                }
            }
            if g.waiting.get(&shard).is_some_and(BTreeSet::is_empty) {
                // Every member answered for this shard and none had it.
                g.waiting.remove(&shard);
            }
            if g.waiting.is_empty() {
                let g = self.gathering.swap_remove(i);
                let _ = g.reply.send(Ok(g.records));
            } else {
                i += 1;
            }
        }
        refused
    }

    /// Answers the lookups whose time is up with what they have.
    pub(crate) fn expire(&mut self, now: Instant) {
        let (done, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.locating)
            .into_iter()
            .partition(|l| l.deadline <= now);
        self.locating = kept;
        for l in done {
            let _ = l.reply.send(Ok(None));
        }
        let (done, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.gathering)
            .into_iter()
            .partition(|g| g.deadline <= now);
        self.gathering = kept;
        for g in done {
            tracing::debug!(
                height = g.records.header.number,
                missing = ?g.waiting.keys().collect::<Vec<_>>(),
                "history read: no server of the node gave these shards in time"
            );
            let _ = g.reply.send(Ok(g.records));
        }
    }
}

/// A found record checked against the block's header: the transactions hash to the header's
/// shard root, and the receipts (if any) decode and name those transactions in order.
fn checked(header: &ExecHeader, record: &ShardRecord) -> Result<ShardHistory, String> {
    let shard = record.shard;
    let expected = header
        .shard_roots
        .get(shard as usize)
        .ok_or_else(|| format!("shard {shard} is not in the block"))?;
    let body = Shard::from_transactions(record.transactions.clone())
        .map_err(|e| format!("shard {shard}: {e:?}"))?;
    if body.tree_hash_root() != *expected {
        return Err(format!(
            "shard {shard}: transactions do not match the header's shard root"
        ));
    }
    let receipts = phalanx_execution::receipts::decode(&record.receipts)
        .map_err(|e| format!("shard {shard}: receipts: {e}"))?;
    let aligned = receipts.is_empty()
        || (receipts.len() == record.transactions.len()
            && receipts
                .iter()
                .zip(&record.transactions)
                .all(|(r, t)| r.tx_hash == keccak256(t)));
    if !aligned {
        return Err(format!(
            "shard {shard}: receipts do not name the shard's transactions in order"
        ));
    }
    Ok((
        record
            .transactions
            .iter()
            .map(|t| Bytes::from(t.clone()))
            .collect(),
        receipts,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Load;

    fn peer(i: u8) -> PeerKey {
        PeerKey([i; 32])
    }

    fn record_of(header: &ExecHeader, shard: u16, txs: &Shard, found: bool) -> ShardRecord {
        ShardRecord {
            block: header.hash(),
            shard,
            found,
            transactions: txs.transactions.iter().map(|t| t.to_vec()).collect(),
            receipts: phalanx_execution::receipts::encode(&[]),
        }
    }

    /// A block's missing shards are asked of every member; a record that does not match the
    /// header's shard root is refused (and reported), a matching one is taken, and a shard
    /// every member lacks stays missing once all have answered.
    #[test]
    fn gathering_takes_only_records_matching_the_header() {
        let (header, shards) = Load::new(3, 2, 7).next_block(2).expect("a block");
        let members = BTreeSet::from([peer(1), peer(2)]);
        let mut lookups = Lookups::default();
        let (reply, mut answer) = oneshot::channel();
        let mut records = BlockRecords {
            header: header.clone(),
            shards: vec![None; 3],
        };
        records.shards[0] = Some((Vec::new(), Vec::new()));
        let now = Instant::now();
        let Asks::Records(hash, asks) = lookups.gather(records, &members, reply, now) else {
            panic!("shards 1 and 2 are missing");
        };
        assert_eq!(hash, header.hash());
        assert_eq!(asks.len(), 4, "two shards of two members: {asks:?}");
        // A stranger's answer counts for nothing, even a true one.
        assert!(
            lookups
                .on_record(peer(9), &record_of(&header, 1, &shards[1], true))
                .is_none()
        );
        assert_eq!(lookups.gathering[0].records.shards[1], None);
        // Member 1 sends shard 2's transactions as shard 1: refused.
        let why = lookups.on_record(peer(1), &record_of(&header, 1, &shards[2], true));
        assert!(why.is_some_and(|w| w.contains("shard root")));
        lookups.on_record(peer(2), &record_of(&header, 1, &shards[1], true));
        // Shard 2: neither member has it.
        lookups.on_record(
            peer(1),
            &record_of(
                &header,
                2,
                &Shard {
                    transactions: ssz_types::VariableList::empty(),
                },
                false,
            ),
        );
        assert!(
            answer.try_recv().is_err(),
            "member 2 has not answered shard 2"
        );
        lookups.on_record(
            peer(2),
            &record_of(
                &header,
                2,
                &Shard {
                    transactions: ssz_types::VariableList::empty(),
                },
                false,
            ),
        );
        let got = answer.try_recv().expect("answered").expect("records");
        assert_eq!(lookups.len(), 0);
        assert!(!got.complete());
        let txs: Vec<Bytes> = shards[1]
            .transactions
            .iter()
            .map(|t| Bytes::from(t.to_vec()))
            .collect();
        assert_eq!(got.shards[1], Some((txs, Vec::new())));
        assert_eq!(got.shards[2], None);
    }

    /// A locate ends at the first member that found the transaction, or once every member
    /// said it has none; an unanswered one ends at its deadline with `None`.
    #[test]
    fn a_locate_ends_at_the_first_find_or_when_all_said_no() {
        let tx = B256::repeat_byte(1);
        let members = BTreeSet::from([peer(1), peer(2), peer(3)]);
        let mut lookups = Lookups::default();
        let now = Instant::now();
        let (reply, mut answer) = oneshot::channel();
        assert!(matches!(
            lookups.locate(tx, &members, reply, now),
            Asks::Locate(_, ref to) if to.len() == 3
        ));
        let no = TxLocated {
            tx,
            found: false,
            height: 0,
            shard: 0,
            position: 0,
        };
        lookups.on_located(peer(1), &no);
        assert!(answer.try_recv().is_err());
        let yes = TxLocated {
            found: true,
            height: 5,
            shard: 2,
            position: 7,
            ..no
        };
        lookups.on_located(peer(3), &yes);
        assert_eq!(
            answer.try_recv().expect("answered").expect("no error"),
            Some(TxLocation {
                number: 5,
                shard: 2,
                position: 7
            })
        );
        let (reply, mut answer) = oneshot::channel();
        lookups.locate(tx, &members, reply, now);
        for p in [1, 2, 3] {
            lookups.on_located(peer(p), &no);
        }
        assert_eq!(answer.try_recv().expect("answered"), Ok(None));
        let (reply, mut answer) = oneshot::channel();
        lookups.locate(tx, &members, reply, now);
        lookups.on_located(peer(1), &no);
        lookups.expire(now + LOOKUP_TIMEOUT / 2);
        assert!(answer.try_recv().is_err(), "not yet");
        lookups.expire(now + LOOKUP_TIMEOUT);
        assert_eq!(answer.try_recv().expect("answered"), Ok(None));
        assert_eq!(lookups.len(), 0);
    }
}
