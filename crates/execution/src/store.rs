//! The state on disk (redb) and the unfinalized blocks above it (in memory).
//!
//! * **Persisted**: the state after the last finalized block, as flat tables (accounts,
//!   storage, code) for fast reads, plus every trie node ever committed, keyed by hash. Nodes
//!   are never deleted, so the root of every persisted block stays provable. Receipts kept
//!   with a block ([`StateStore::keep_receipts`]) are written in the commit that finalizes
//!   it, by `(height, shard)`.
//! * **Overlays**: each executed, unfinalized block keeps its changes, its new trie nodes and
//!   its code in memory, linked to its parent. The parent state of any unfinalized block is
//!   its overlay chain over the persisted state, so forks are executed side by side and a
//!   reorg needs no unwinding: abandoned overlays are simply dropped.
//! * **Finalizing** a block writes its overlay chain into the database in one transaction
//!   (redb commits are durable and atomic: a crash leaves either the old or the new state,
//!   never a mix) and drops every overlay that does not descend from it. The chain is first
//!   folded (`Flat`): each account and slot is written once with its newest value, and every
//!   table's keys go in in order. [`StateStore::finalize_unsynced`] commits without waiting
//!   for the disk; [`StateStore::sync`] later makes every such commit durable at once (until
//!   then a crash reopens the store at the last synced head, still a whole state).
//! * The state root is updated incrementally: each block re-hashes only the trie nodes on
//!   the paths it touched.
//! * **Pruning** (opt-in, [`StateStore::keep_states`]): a store that keeps `k` states drops,
//!   in the commit that finalizes a block every `k` heights, every trie node that none of
//!   the last `k` finalized state roots reaches (account trie and the storage tries its
//!   accounts name) — marked by walking those tries inside the commit's own write
//!   transaction, so no commit or reader sees a half-pruned table. Unfinalized overlays only
//!   reach nodes of the head's trie or their own, and readers keep their snapshot. If any
//!   kept trie cannot be walked whole, nothing is dropped. Proofs of an older height are then
//!   [`StateError::Pruned`]; flat state, block and height records are kept whatever `k`.
//! * **Receipts** kept with a block ([`StateStore::keep_receipts`]) are written in the commit
//!   that finalizes it and read by block ([`StateStore::block_receipts`], from memory before
//!   that commit) or by height. Every height's are kept unless
//!   [`StateStore::keep_receipt_heights`] bounds them: each commit then drops those of the
//!   heights that fell out of the window, and reading one is [`StateError::ReceiptsPruned`].
//! * **Transactions** kept with a block ([`StateStore::keep_transactions`]: a server keeps
//!   those of the shards it ran) go in the same commit, by `(height, shard)`, with an index
//!   from each transaction's hash to its place ([`StateStore::transaction_location`]), and
//!   share the receipts' window. A block's header kept with it ([`StateStore::keep_header`])
//!   is kept whatever the window: with these a server answers for blocks, transactions and
//!   receipts, not only state.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, RwLock};

use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_trie::TrieAccount;
use phalanx_trie::{EMPTY_ROOT, NodeSource, TrieError};
use redb::{ReadOnlyTable, ReadableDatabase, ReadableTable, TableDefinition};

use crate::block::{
    BlockEnv, BlockResult, Receipt, ShardResult, VoidReason, execute_block, finish_block,
};
use crate::changes::{Changes, apply_changes};
use crate::error::{ExecError, StateError};
use crate::header::ExecHeader;
use crate::reader::{CodeSource, EmptyState, StateReader, decode_account, encode_account};

const NODES: TableDefinition<'_, &[u8; 32], &[u8]> = TableDefinition::new("trie_nodes");
const ACCOUNTS: TableDefinition<'_, &[u8; 20], &[u8]> = TableDefinition::new("accounts");
const STORAGE: TableDefinition<'_, &[u8; 52], &[u8; 32]> = TableDefinition::new("storage");
const CODE: TableDefinition<'_, &[u8; 32], &[u8]> = TableDefinition::new("code");
const BLOCKS: TableDefinition<'_, &[u8; 32], &[u8; 40]> = TableDefinition::new("blocks");
/// Height → hash of the finalized block there (what `eth_getProof` by number needs).
const HEIGHTS: TableDefinition<'_, u64, &[u8; 32]> = TableDefinition::new("finalized_heights");
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
/// `(height, shard)` → that shard's receipts ([`crate::receipts`]), for the shards whose
/// receipts were kept ([`StateStore::keep_receipts`]).
const RECEIPTS: TableDefinition<'_, (u64, u16), &[u8]> = TableDefinition::new("receipts");
/// `(height, shard)` → that shard's transactions (SSZ list of their EIP-2718 encodings), for
/// the shards whose transactions were kept ([`StateStore::keep_transactions`]).
const TRANSACTIONS: TableDefinition<'_, (u64, u16), &[u8]> = TableDefinition::new("transactions");
/// Transaction hash → height (8 bytes), shard (2) and position in the shard (4), big-endian,
/// for every transaction in [`TRANSACTIONS`].
const TX_INDEX: TableDefinition<'_, &[u8; 32], &[u8; 14]> = TableDefinition::new("tx_index");
/// Height → its finalized block's [`ExecHeader`] (SSZ), for the blocks whose header was kept
/// ([`StateStore::keep_header`]).
const HEADERS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("headers");

/// The receipts kept with one block: `(shard, receipts)` per shard, in shard order.
pub type ShardReceipts = Vec<(u16, Vec<Receipt>)>;

/// The transactions kept with one block: `(shard, EIP-2718 encodings)` per shard, in shard
/// order.
pub type ShardTransactions = Vec<(u16, Vec<Bytes>)>;

/// What a commit writes besides the state: receipts, transactions and headers kept with its
/// blocks.
#[derive(Default, Clone, Copy)]
struct Kept<'a> {
    receipts: &'a [(u64, u16, Vec<u8>)],
    transactions: &'a [(u64, u16, Vec<Bytes>)],
    headers: &'a [(u64, Vec<u8>)],
}

/// Where a kept transaction is ([`StateStore::transaction_location`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxLocation {
    /// Finalized height of its block.
    pub number: u64,
    /// Its shard.
    pub shard: u16,
    /// Its position in the shard.
    pub position: u32,
}

impl TxLocation {
    fn encode(&self) -> [u8; 14] {
        let mut out = [0u8; 14];
        out[..8].copy_from_slice(&self.number.to_be_bytes());
        out[8..10].copy_from_slice(&self.shard.to_be_bytes());
        out[10..].copy_from_slice(&self.position.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8; 14]) -> Self {
        let mut number = [0u8; 8];
        number.copy_from_slice(&bytes[..8]);
        let mut position = [0u8; 4];
        position.copy_from_slice(&bytes[10..]);
        Self {
            number: u64::from_be_bytes(number),
            shard: u16::from_be_bytes([bytes[8], bytes[9]]),
            position: u32::from_be_bytes(position),
        }
    }
}

fn encode_transactions(txs: &[Bytes]) -> Vec<u8> {
    use ssz::Encode as _;
    txs.iter()
        .map(|t| t.to_vec())
        .collect::<Vec<_>>()
        .as_ssz_bytes()
}

fn decode_transactions(bytes: &[u8]) -> Result<Vec<Bytes>, String> {
    use ssz::Decode as _;
    Vec::<Vec<u8>>::from_ssz_bytes(bytes)
        .map(|v| v.into_iter().map(Bytes::from).collect())
        .map_err(|e| format!("{e:?}"))
}

fn db_err(e: impl std::fmt::Display) -> StateError {
    StateError::Database(e.to_string())
}

/// The records of `table` for finalized height `number`, `(shard, record)` in shard order,
/// each decoded by `decode` (`what` names them in errors).
fn read_by_shard<T, E: std::fmt::Display>(
    txn: &redb::ReadTransaction,
    table: TableDefinition<'_, (u64, u16), &[u8]>,
    number: u64,
    what: &str,
    decode: impl Fn(&[u8]) -> Result<T, E>,
) -> Result<Vec<(u16, T)>, StateError> {
    let table = match txn.open_table(table) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(db_err(e)),
    };
    let mut out = Vec::new();
    for entry in table
        .range((number, 0u16)..=(number, u16::MAX))
        .map_err(db_err)?
    {
        let (key, value) = entry.map_err(db_err)?;
        let shard = key.value().1;
        let record = decode(value.value()).map_err(|e| {
            StateError::Database(format!("{what} of height {number}, shard {shard}: {e}"))
        })?;
        out.push((shard, record));
    }
    Ok(out)
}

/// The receipts stored for finalized height `number`, `(shard, receipts)` in shard order.
fn read_receipts(txn: &redb::ReadTransaction, number: u64) -> Result<ShardReceipts, StateError> {
    read_by_shard(txn, RECEIPTS, number, "receipts", crate::receipts::decode)
}

/// The transactions stored for finalized height `number`, in shard order.
fn read_transactions(
    txn: &redb::ReadTransaction,
    number: u64,
) -> Result<ShardTransactions, StateError> {
    read_by_shard(
        txn,
        TRANSACTIONS,
        number,
        "transactions",
        decode_transactions,
    )
}

/// The height of finalized `block`, if the store holds it.
fn block_number(txn: &redb::ReadTransaction, block: B256) -> Result<Option<u64>, StateError> {
    let blocks = txn.open_table(BLOCKS).map_err(db_err)?;
    Ok(blocks.get(&block.0).map_err(db_err)?.map(|entry| {
        let mut number = [0u8; 8];
        number.copy_from_slice(&entry.value()[..8]);
        u64::from_be_bytes(number)
    }))
}

fn storage_key(address: Address, slot: U256) -> [u8; 52] {
    let mut key = [0u8; 52];
    key[..20].copy_from_slice(address.as_slice());
    key[20..].copy_from_slice(&slot.to_be_bytes::<32>());
    key
}

/// The last finalized (persisted) block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Block hash.
    pub block: B256,
    /// Height.
    pub number: u64,
    /// State root after it.
    pub state_root: B256,
}

impl Head {
    fn encode(&self) -> [u8; 72] {
        let mut out = [0u8; 72];
        out[..32].copy_from_slice(self.block.as_slice());
        out[32..40].copy_from_slice(&self.number.to_be_bytes());
        out[40..].copy_from_slice(self.state_root.as_slice());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        if bytes.len() != 72 {
            return Err(StateError::Database(format!(
                "head record of {} bytes",
                bytes.len()
            )));
        }
        let mut number = [0u8; 8];
        number.copy_from_slice(&bytes[32..40]);
        Ok(Self {
            block: B256::from_slice(&bytes[..32]),
            number: u64::from_be_bytes(number),
            state_root: B256::from_slice(&bytes[40..]),
        })
    }
}

/// The block environment stored with the head (`head_env` in the meta table): what a call
/// at the head runs in. Fixed layout, big-endian: number, timestamp, chain id, base fee (8
/// bytes each), `PREVRANDAO` (32), shard and block gas limits (8 each), validator's and
/// producer's reward addresses (20 each), fee split (2). `BLOCKHASH` answers are not kept.
const ENV_LEN: usize = 122;

fn encode_env(env: &BlockEnv) -> [u8; ENV_LEN] {
    let mut out = [0u8; ENV_LEN];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        out[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(&env.number.to_be_bytes());
    put(&env.timestamp.to_be_bytes());
    put(&env.chain_id.to_be_bytes());
    put(&env.basefee.to_be_bytes());
    put(env.prevrandao.as_slice());
    put(&env.shard_gas_limit.to_be_bytes());
    put(&env.block_gas_limit.to_be_bytes());
    put(env.validator_reward.as_slice());
    put(env.producer_reward.as_slice());
    put(&env.fee_split_bps.to_be_bytes());
    out
}

fn decode_env(bytes: &[u8]) -> Result<BlockEnv, StateError> {
    if bytes.len() != ENV_LEN {
        return Err(StateError::Database(format!(
            "head block environment of {} bytes, not {ENV_LEN}",
            bytes.len()
        )));
    }
    let u64_at = |b: &[u8]| {
        let mut n = [0u8; 8];
        n.copy_from_slice(b);
        u64::from_be_bytes(n)
    };
    let mut rest = bytes;
    let mut take = |n: usize| {
        let (head, tail) = rest.split_at(n);
        rest = tail;
        head
    };
    Ok(BlockEnv {
        number: u64_at(take(8)),
        timestamp: u64_at(take(8)),
        chain_id: u64_at(take(8)),
        basefee: u64_at(take(8)),
        prevrandao: B256::from_slice(take(32)),
        shard_gas_limit: u64_at(take(8)),
        block_gas_limit: u64_at(take(8)),
        validator_reward: Address::from_slice(take(20)),
        producer_reward: Address::from_slice(take(20)),
        fee_split_bps: {
            let b = take(2);
            u16::from_be_bytes([b[0], b[1]])
        },
        block_hashes: BTreeMap::new(),
    })
}

/// An executed, unfinalized block.
#[derive(Debug)]
struct Overlay {
    parent: B256,
    number: u64,
    /// The environment the block ran in (`None` for genesis), without `BLOCKHASH` answers.
    env: Option<BlockEnv>,
    state_root: B256,
    accounts: BTreeMap<Address, Option<TrieAccount>>,
    storage: HashMap<(Address, U256), U256>,
    cleared: HashSet<Address>,
    nodes: HashMap<B256, Vec<u8>>,
    codes: HashMap<B256, Bytes>,
}

impl Overlay {
    fn new(parent: B256, env: Option<&BlockEnv>, result: &BlockResult) -> Self {
        let mut storage = HashMap::new();
        let mut cleared = HashSet::new();
        for (address, change) in &result.changes.accounts {
            if change.storage_cleared || change.fields == Some(None) {
                cleared.insert(*address);
            }
            for (slot, value) in &change.storage {
                storage.insert((*address, *slot), *value);
            }
        }
        Self {
            parent,
            number: env.map_or(0, |e| e.number),
            env: env.map(|e| BlockEnv {
                block_hashes: BTreeMap::new(),
                ..e.clone()
            }),
            state_root: result.post_state_root,
            accounts: result.applied.accounts.clone(),
            storage,
            cleared,
            nodes: result.applied.nodes.iter().cloned().collect(),
            codes: result
                .changes
                .codes
                .iter()
                .map(|(k, v)| (*k, v.clone()))
                .collect(),
        }
    }
}

/// An overlay chain (oldest first) folded into the writes that finalizing it makes: each
/// account and slot once, newest value winning, keys in order so the B-tree inserts touch
/// neighbouring pages. A block that clears an account's storage (self-destruct, re-creation)
/// drops the slot writes of the blocks before it; `cleared` then removes the persisted slots.
#[derive(Debug, Default)]
struct Flat<'a> {
    nodes: BTreeMap<B256, &'a [u8]>,
    codes: BTreeMap<B256, &'a Bytes>,
    cleared: BTreeSet<Address>,
    storage: BTreeMap<(Address, U256), U256>,
    accounts: BTreeMap<Address, Option<TrieAccount>>,
}

impl<'a> Flat<'a> {
    fn of(chain: &'a [(B256, Arc<Overlay>)]) -> Self {
        let mut flat = Self::default();
        for (_, overlay) in chain {
            flat.nodes
                .extend(overlay.nodes.iter().map(|(h, n)| (*h, n.as_slice())));
            flat.codes
                .extend(overlay.codes.iter().map(|(h, c)| (*h, c)));
            for address in &overlay.cleared {
                let earlier: Vec<_> = flat
                    .storage
                    .range((*address, U256::ZERO)..=(*address, U256::MAX))
                    .map(|(k, _)| *k)
                    .collect();
                for key in earlier {
                    flat.storage.remove(&key);
                }
                flat.cleared.insert(*address);
            }
            flat.storage
                .extend(overlay.storage.iter().map(|(k, v)| (*k, *v)));
            flat.accounts
                .extend(overlay.accounts.iter().map(|(a, r)| (*a, *r)));
        }
        flat
    }
}

struct Inner {
    head: Option<Head>,
    /// The environment of the head's block (`None` at genesis).
    head_env: Option<BlockEnv>,
    overlays: HashMap<B256, Arc<Overlay>>,
    /// Receipts kept with unfinalized blocks, written in the commit that finalizes them.
    receipts: HashMap<B256, ShardReceipts>,
    /// Transactions kept with unfinalized blocks, likewise.
    transactions: HashMap<B256, ShardTransactions>,
    /// Headers kept with unfinalized blocks, likewise.
    headers: HashMap<B256, ExecHeader>,
}

/// The overlays from `block` back to (not including) the persisted `head`, newest first.
fn overlay_chain(
    inner: &Inner,
    head: Head,
    block: B256,
) -> Result<Vec<(B256, Arc<Overlay>)>, StateError> {
    let mut chain = Vec::new();
    let mut cursor = block;
    while cursor != head.block {
        let overlay = inner
            .overlays
            .get(&cursor)
            .ok_or(StateError::UnknownBlock(block))?;
        chain.push((cursor, overlay.clone()));
        cursor = overlay.parent;
    }
    Ok(chain)
}

/// The execution state of one chain: persisted finalized state plus unfinalized overlays.
pub struct StateStore {
    db: redb::Database,
    inner: RwLock<Inner>,
    /// States whose trie is kept (`None`: every one, an archive) and the height of the last
    /// sweep.
    prune: Option<(u64, std::sync::Mutex<Option<u64>>)>,
    /// Finalized heights whose receipts are kept (`None`: every one).
    receipt_heights: Option<u64>,
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sweep {
    /// Trie nodes dropped.
    pub dropped: u64,
    /// Trie nodes kept (those the kept states reach).
    pub kept: u64,
    /// The oldest height whose trie is kept.
    pub from: u64,
}

/// Trie nodes of a table of the write transaction, as a trie source.
struct TableNodes<'a, T>(&'a T);

impl<T: redb::ReadableTable<&'static [u8; 32], &'static [u8]>> NodeSource for TableNodes<'_, T> {
    fn node(&self, hash: &B256) -> Result<Option<Vec<u8>>, TrieError> {
        self.0
            .get(&hash.0)
            .map(|v| v.map(|v| v.value().to_vec()))
            .map_err(|e| TrieError::Malformed {
                hash: *hash,
                reason: format!("state database: {e}"),
            })
    }
}

/// An account with its proofs, as `eth_getProof` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountProof {
    /// The account.
    pub address: Address,
    /// Its record (`None`: proven absent).
    pub account: Option<TrieAccount>,
    /// Nodes from the state root to the account's leaf.
    pub account_proof: Vec<Bytes>,
    /// `(slot, value, proof)` for each slot asked.
    pub storage: Vec<(U256, U256, Vec<Bytes>)>,
}

impl StateStore {
    /// Opens (or creates) the state database at `path`.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let db = redb::Database::create(path).map_err(|e| {
            StateError::Database(format!(
                "cannot open state database {}: {e}",
                path.display()
            ))
        })?;
        Self::from_db(db)
    }

    /// A state held in memory only (tests, benchmarks, simulators).
    pub fn in_memory() -> Result<Self, StateError> {
        let db = redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(db_err)?;
        Self::from_db(db)
    }

    fn from_db(db: redb::Database) -> Result<Self, StateError> {
        let txn = db.begin_write().map_err(db_err)?;
        {
            txn.open_table(NODES).map_err(db_err)?;
            txn.open_table(ACCOUNTS).map_err(db_err)?;
            txn.open_table(STORAGE).map_err(db_err)?;
            txn.open_table(CODE).map_err(db_err)?;
            txn.open_table(BLOCKS).map_err(db_err)?;
            txn.open_table(HEIGHTS).map_err(db_err)?;
            txn.open_table(META).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        let (head, head_env) = {
            let read = db.begin_read().map_err(db_err)?;
            let meta = read.open_table(META).map_err(db_err)?;
            let head = match meta.get("head").map_err(db_err)? {
                Some(v) => Some(Head::decode(v.value())?),
                None => None,
            };
            let env = match meta.get("head_env").map_err(db_err)? {
                Some(v) => Some(decode_env(v.value())?),
                None => None,
            };
            (head, env)
        };
        Ok(Self {
            db,
            inner: RwLock::new(Inner {
                head,
                head_env,
                overlays: HashMap::new(),
                receipts: HashMap::new(),
                transactions: HashMap::new(),
                headers: HashMap::new(),
            }),
            prune: None,
            receipt_heights: None,
        })
    }

    /// Keeps the trie nodes of the last `states` finalized heights only, sweeping the rest
    /// once every `states` heights in the commit that makes a block final (module docs); 0
    /// keeps every height (the default: an archive, every finalized root provable). Flat
    /// state, blocks and heights are never dropped.
    pub fn keep_states(mut self, states: u64) -> Self {
        self.prune = (states > 0).then(|| (states, std::sync::Mutex::new(None)));
        self
    }

    /// The states whose trie this store keeps (`None`: every one).
    pub fn kept_states(&self) -> Option<u64> {
        self.prune.as_ref().map(|(k, _)| *k)
    }

    /// Keeps the receipts ([`StateStore::keep_receipts`]) of the last `heights` finalized
    /// heights only: each commit drops those that fell out of the window, so their disk is
    /// bounded. Reading an older height's is then [`StateError::ReceiptsPruned`]. 0 keeps
    /// every height's (the default). Independent of [`StateStore::keep_states`]: receipts are
    /// history, not state.
    pub fn keep_receipt_heights(mut self, heights: u64) -> Self {
        self.receipt_heights = (heights > 0).then_some(heights);
        self
    }

    /// The finalized heights whose receipts this store keeps (`None`: every one).
    pub fn kept_receipt_heights(&self) -> Option<u64> {
        self.receipt_heights
    }

    /// Why the receipts of finalized height `number` are not on disk when pruning explains
    /// it, judged against the head committed in `txn`'s snapshot.
    fn receipts_pruned(
        &self,
        txn: &redb::ReadTransaction,
        number: u64,
    ) -> Result<Option<StateError>, StateError> {
        let Some(keep) = self.receipt_heights else {
            return Ok(None);
        };
        let meta = txn.open_table(META).map_err(db_err)?;
        let Some(head) = meta
            .get("head")
            .map_err(db_err)?
            .map(|v| Head::decode(v.value()))
            .transpose()?
        else {
            return Ok(None);
        };
        Ok(
            (number + keep <= head.number).then_some(StateError::ReceiptsPruned {
                number,
                keep,
                head: head.number,
            }),
        )
    }

    /// Receipt records on disk: one per finalized height and shard whose receipts were kept
    /// ([`StateStore::keep_receipts`]).
    pub fn receipt_records(&self) -> Result<u64, StateError> {
        use redb::ReadableTableMetadata as _;
        let txn = self.db.begin_read().map_err(db_err)?;
        match txn.open_table(RECEIPTS) {
            Ok(t) => t.len().map_err(db_err),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(db_err(e)),
        }
    }

    /// Trie nodes on disk.
    pub fn trie_nodes(&self) -> Result<u64, StateError> {
        use redb::ReadableTableMetadata as _;
        let txn = self.db.begin_read().map_err(db_err)?;
        txn.open_table(NODES).map_err(db_err)?.len().map_err(db_err)
    }

    fn read_inner(&self) -> Result<std::sync::RwLockReadGuard<'_, Inner>, StateError> {
        self.inner
            .read()
            .map_err(|_| StateError::Database("state lock poisoned".into()))
    }

    fn write_inner(&self) -> Result<std::sync::RwLockWriteGuard<'_, Inner>, StateError> {
        self.inner
            .write()
            .map_err(|_| StateError::Database("state lock poisoned".into()))
    }

    /// The last finalized block, if a genesis was written.
    pub fn head(&self) -> Result<Option<Head>, StateError> {
        Ok(self.read_inner()?.head)
    }

    /// The last finalized block with the environment its block ran in, read together: what a
    /// call at the head (`eth_call`) runs in. The environment is `None` at genesis (no block
    /// ran) and for a head written by a build that did not keep it; it has no `BLOCKHASH`
    /// answers.
    pub fn head_env(&self) -> Result<Option<(Head, Option<BlockEnv>)>, StateError> {
        let inner = self.read_inner()?;
        Ok(inner.head.map(|h| (h, inner.head_env.clone())))
    }

    /// Writes the genesis state (`alloc` as changes to the empty state) as finalized block 0.
    /// Fails if the store already holds a chain.
    pub fn init_genesis(&self, block: B256, alloc: &Changes) -> Result<B256, StateError> {
        if let Some(head) = self.head()? {
            return Err(StateError::Database(format!(
                "state already initialised (head {} at {})",
                head.block, head.number
            )));
        }
        let empty = phalanx_trie::MemoryStore::new();
        let applied = apply_changes(&empty, &EmptyState, EMPTY_ROOT, alloc)?;
        let result = BlockResult {
            shards: Vec::new(),
            void: None,
            fees: U256::ZERO,
            validator_fee: U256::ZERO,
            producer_fee: U256::ZERO,
            changes: alloc.clone(),
            post_state_root: applied.root,
            applied,
        };
        let overlay = Overlay::new(B256::ZERO, None, &result);
        let head = Head {
            block,
            number: 0,
            state_root: result.post_state_root,
        };
        self.persist(
            &[(block, Arc::new(overlay))],
            Kept::default(),
            head,
            redb::Durability::Immediate,
        )?;
        let mut inner = self.write_inner()?;
        inner.head = Some(head);
        inner.head_env = None;
        Ok(head.state_root)
    }

    /// The state after `block` (finalized head or any held unfinalized block).
    pub fn view(&self, block: B256) -> Result<StateView, StateError> {
        let inner = self.read_inner()?;
        let head = inner.head.ok_or(StateError::UnknownBlock(block))?;
        let chain: Vec<Arc<Overlay>> = overlay_chain(&inner, head, block)?
            .into_iter()
            .map(|(_, o)| o)
            .collect();
        let root = chain.first().map_or(head.state_root, |o| o.state_root);
        drop(inner);
        self.snapshot(chain, root)
    }

    /// A view of `chain` (newest overlay first) over a snapshot of the database.
    fn snapshot(&self, chain: Vec<Arc<Overlay>>, root: B256) -> Result<StateView, StateError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        Ok(StateView {
            chain,
            root,
            nodes: txn.open_table(NODES).map_err(db_err)?,
            accounts: txn.open_table(ACCOUNTS).map_err(db_err)?,
            storage: txn.open_table(STORAGE).map_err(db_err)?,
            code: txn.open_table(CODE).map_err(db_err)?,
        })
    }

    /// The state root after `block`, if held (unfinalized, or finalized at any time).
    pub fn state_root(&self, block: B256) -> Result<Option<B256>, StateError> {
        {
            let inner = self.read_inner()?;
            if let Some(o) = inner.overlays.get(&block) {
                return Ok(Some(o.state_root));
            }
        }
        let txn = self.db.begin_read().map_err(db_err)?;
        let blocks = txn.open_table(BLOCKS).map_err(db_err)?;
        Ok(blocks
            .get(&block.0)
            .map_err(db_err)?
            .map(|v| B256::from_slice(&v.value()[8..])))
    }

    /// The height of finalized block `block` (`None` if this store did not finalize it).
    pub fn finalized_number(&self, block: B256) -> Result<Option<u64>, StateError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        block_number(&txn, block)
    }

    /// The hash of the finalized block at height `number` (`None` above the head, or for a
    /// height finalized by a build before this index existed).
    pub fn finalized_block(&self, number: u64) -> Result<Option<B256>, StateError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let heights = txn.open_table(HEIGHTS).map_err(db_err)?;
        Ok(heights
            .get(number)
            .map_err(db_err)?
            .map(|v| B256::from(*v.value())))
    }

    /// Executes `block` (height `number`) on the state after `parent` and keeps its result as
    /// an unfinalized overlay.
    pub fn execute(
        &self,
        parent: B256,
        block: B256,
        env: &BlockEnv,
        shards: &[Bytes2d],
    ) -> Result<BlockResult, ExecError> {
        let view = self.view(parent)?;
        let result = execute_block(&view, &view, view.root, env, shards)?;
        let overlay = Overlay::new(parent, Some(env), &result);
        self.write_inner()?
            .overlays
            .insert(block, Arc::new(overlay));
        Ok(result)
    }

    /// Like [`StateStore::execute`], from each shard's outcome obtained elsewhere (the
    /// servers of a clustered node that own the shards): merges them by the block rules and
    /// keeps the result as an unfinalized overlay.
    pub fn apply(
        &self,
        parent: B256,
        block: B256,
        env: &BlockEnv,
        outcomes: Vec<Result<ShardResult, VoidReason>>,
    ) -> Result<BlockResult, ExecError> {
        let view = self.view(parent)?;
        let result = finish_block(&view, &view, view.root, env, outcomes)?;
        let overlay = Overlay::new(parent, Some(env), &result);
        self.write_inner()?
            .overlays
            .insert(block, Arc::new(overlay));
        Ok(result)
    }

    /// Keeps `shards`' receipts (`(shard, receipts)`) with the unfinalized `block`: they are
    /// written in the commit that finalizes it, so they are on disk exactly when its state
    /// is, and read back by block with [`StateStore::block_receipts`] (at once) or by height
    /// with [`StateStore::receipts`] (once final). Dropped with the block if
    /// it never becomes final. A clustered node's server keeps those of the shards it ran.
    pub fn keep_receipts(&self, block: B256, shards: ShardReceipts) -> Result<(), StateError> {
        self.keep_with(block, |inner| {
            inner.receipts.insert(block, shards);
        })
    }

    /// Runs `keep` on the unfinalized state if it holds `block`.
    fn keep_with(&self, block: B256, keep: impl FnOnce(&mut Inner)) -> Result<(), StateError> {
        let mut inner = self.write_inner()?;
        if !inner.overlays.contains_key(&block) {
            return Err(StateError::UnknownBlock(block));
        }
        keep(&mut inner);
        Ok(())
    }

    /// What was kept with `block`: from memory (`held`) while it is not final, from disk
    /// (`read`, by height) once it is; empty for a held block with nothing kept, `None` for a
    /// block the store does not hold, [`StateError::ReceiptsPruned`] past the kept window.
    fn kept_with<T: Clone>(
        &self,
        block: B256,
        held: impl Fn(&Inner) -> Option<&Vec<T>>,
        read: impl Fn(&redb::ReadTransaction, u64) -> Result<Vec<T>, StateError>,
    ) -> Result<Option<Vec<T>>, StateError> {
        {
            let inner = self.read_inner()?;
            if let Some(kept) = held(&inner) {
                return Ok(Some(kept.clone()));
            }
            if inner.overlays.contains_key(&block) {
                return Ok(Some(Vec::new()));
            }
        }
        let txn = self.db.begin_read().map_err(db_err)?;
        let Some(number) = block_number(&txn, block)? else {
            return Ok(None);
        };
        if let Some(pruned) = self.receipts_pruned(&txn, number)? {
            return Err(pruned);
        }
        read(&txn, number).map(Some)
    }

    /// The receipts kept with `block` ([`StateStore::keep_receipts`]), `(shard, receipts)` in
    /// shard order, whether the block is final yet or not: read from memory while it is not,
    /// from disk once it is (a commit writes them before the memory copy goes, so a reader
    /// never falls between the two). Empty if the block was applied with none kept; `None`
    /// if the store does not hold the block (never applied here, or a dropped fork).
    pub fn block_receipts(&self, block: B256) -> Result<Option<ShardReceipts>, StateError> {
        self.kept_with(block, |inner| inner.receipts.get(&block), read_receipts)
    }

    /// Keeps `shards`' transactions (`(shard, encodings)`) with the unfinalized `block`, as
    /// [`StateStore::keep_receipts`] keeps receipts: written in the commit that finalizes it
    /// (with an index by hash, [`StateStore::transaction_location`]), pruned with the
    /// receipts ([`StateStore::keep_receipt_heights`]), dropped with the block if it never
    /// becomes final.
    pub fn keep_transactions(
        &self,
        block: B256,
        shards: ShardTransactions,
    ) -> Result<(), StateError> {
        self.keep_with(block, |inner| {
            inner.transactions.insert(block, shards);
        })
    }

    /// The transactions kept with `block` ([`StateStore::keep_transactions`]), from memory
    /// before its commit and from disk after it, as [`StateStore::block_receipts`].
    pub fn block_transactions(&self, block: B256) -> Result<Option<ShardTransactions>, StateError> {
        self.kept_with(
            block,
            |inner| inner.transactions.get(&block),
            read_transactions,
        )
    }

    /// The transactions kept with finalized height `number`, in shard order (see
    /// [`StateStore::receipts`]).
    pub fn transactions(&self, number: u64) -> Result<ShardTransactions, StateError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        if let Some(pruned) = self.receipts_pruned(&txn, number)? {
            return Err(pruned);
        }
        read_transactions(&txn, number)
    }

    /// Where the transaction with hash `hash` is, if a finalized block of this store kept it
    /// ([`StateStore::keep_transactions`]) and it is inside the kept window. A transaction
    /// included twice (a replay the chain let through as skipped) is found at its latest
    /// place.
    pub fn transaction_location(&self, hash: B256) -> Result<Option<TxLocation>, StateError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = match txn.open_table(TX_INDEX) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(db_err(e)),
        };
        Ok(table
            .get(&hash.0)
            .map_err(db_err)?
            .map(|v| TxLocation::decode(v.value())))
    }

    /// Keeps `header` with the unfinalized block it names, to be written in the commit that
    /// finalizes it and read by height ([`StateStore::header`]).
    pub fn keep_header(&self, header: &ExecHeader) -> Result<(), StateError> {
        let block = header.hash();
        self.keep_with(block, |inner| {
            inner.headers.insert(block, header.clone());
        })
    }

    /// The header kept with the finalized block at height `number`
    /// ([`StateStore::keep_header`]); `None` above the head, at genesis, or where none was
    /// kept.
    pub fn header(&self, number: u64) -> Result<Option<ExecHeader>, StateError> {
        use ssz::Decode as _;
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = match txn.open_table(HEADERS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(db_err(e)),
        };
        table
            .get(number)
            .map_err(db_err)?
            .map(|v| {
                ExecHeader::from_ssz_bytes(v.value())
                    .map_err(|e| StateError::Database(format!("header of height {number}: {e:?}")))
            })
            .transpose()
    }

    /// The receipts kept with finalized height `number` ([`StateStore::keep_receipts`]),
    /// `(shard, receipts)` in shard order; empty if none were kept;
    /// [`StateError::ReceiptsPruned`] if the height is older than the kept window
    /// ([`StateStore::keep_receipt_heights`]).
    pub fn receipts(&self, number: u64) -> Result<ShardReceipts, StateError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        if let Some(pruned) = self.receipts_pruned(&txn, number)? {
            return Err(pruned);
        }
        read_receipts(&txn, number)
    }

    /// Makes `block` final: persists its overlay chain atomically and durably (the commit
    /// is synced to disk before this returns) and drops every overlay that does not descend
    /// from it.
    pub fn finalize(&self, block: B256) -> Result<(), StateError> {
        self.finalize_with(block, redb::Durability::Immediate)
    }

    /// Makes `block` final as [`StateStore::finalize`] does, in a commit that is not synced:
    /// readers see it at once, but it survives a crash only once [`StateStore::sync`] (or a
    /// later [`StateStore::finalize`]) has returned; a crash before that reopens the store at
    /// the last synced head. The commit's pages wait in memory, so the sync that writes them
    /// and waits for the disk can run on a thread of its own while the caller goes on.
    pub fn finalize_unsynced(&self, block: B256) -> Result<(), StateError> {
        self.finalize_with(block, redb::Durability::None)
    }

    /// Makes every finalized block durable: writes the pages of the commits
    /// [`StateStore::finalize_unsynced`] left in memory and waits for the disk (fsync).
    /// Returns the head that is now durable. Waits for a commit in progress.
    pub fn sync(&self) -> Result<Option<Head>, StateError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        let head = {
            let meta = txn.open_table(META).map_err(db_err)?;
            meta.get("head")
                .map_err(db_err)?
                .map(|v| Head::decode(v.value()))
                .transpose()?
        };
        txn.commit().map_err(db_err)?;
        Ok(head)
    }

    fn finalize_with(&self, block: B256, durability: redb::Durability) -> Result<(), StateError> {
        let (chain, head, receipts, transactions, headers) = {
            let inner = self.read_inner()?;
            let head = inner.head.ok_or(StateError::UnknownBlock(block))?;
            if block == head.block {
                return Ok(());
            }
            let mut chain = overlay_chain(&inner, head, block)?;
            chain.reverse();
            let tip = &chain[chain.len() - 1].1;
            let receipts: Vec<(u64, u16, Vec<u8>)> = chain
                .iter()
                .flat_map(|(hash, overlay)| {
                    inner.receipts.get(hash).into_iter().flat_map(|shards| {
                        shards
                            .iter()
                            .map(|(shard, r)| (overlay.number, *shard, crate::receipts::encode(r)))
                    })
                })
                .collect();
            let transactions: Vec<(u64, u16, Vec<Bytes>)> = chain
                .iter()
                .flat_map(|(hash, overlay)| {
                    inner.transactions.get(hash).into_iter().flat_map(|shards| {
                        shards
                            .iter()
                            .map(|(shard, txs)| (overlay.number, *shard, txs.clone()))
                    })
                })
                .collect();
            let headers: Vec<(u64, Vec<u8>)> = chain
                .iter()
                .filter_map(|(hash, overlay)| {
                    use ssz::Encode as _;
                    inner
                        .headers
                        .get(hash)
                        .map(|h| (overlay.number, h.as_ssz_bytes()))
                })
                .collect();
            (
                chain.clone(),
                Head {
                    block,
                    number: tip.number,
                    state_root: tip.state_root,
                },
                receipts,
                transactions,
                headers,
            )
        };
        let kept = Kept {
            receipts: &receipts,
            transactions: &transactions,
            headers: &headers,
        };
        self.persist(&chain, kept, head, durability)?;
        let mut inner = self.write_inner()?;
        inner.head = Some(head);
        inner.head_env = chain.last().and_then(|(_, o)| o.env.clone());
        for (hash, _) in &chain {
            inner.overlays.remove(hash);
        }
        // Keep only overlays that descend from the new head.
        let descends = |start: B256, overlays: &HashMap<B256, Arc<Overlay>>| {
            let mut cursor = start;
            loop {
                if cursor == head.block {
                    return true;
                }
                match overlays.get(&cursor) {
                    Some(o) => cursor = o.parent,
                    None => return false,
                }
            }
        };
        let keep: HashSet<B256> = inner
            .overlays
            .keys()
            .filter(|h| descends(**h, &inner.overlays))
            .copied()
            .collect();
        inner.overlays.retain(|h, _| keep.contains(h));
        inner.receipts.retain(|h, _| keep.contains(h));
        inner.transactions.retain(|h, _| keep.contains(h));
        inner.headers.retain(|h, _| keep.contains(h));
        Ok(())
    }

    /// Number of unfinalized blocks held.
    pub fn unfinalized(&self) -> Result<usize, StateError> {
        Ok(self.read_inner()?.overlays.len())
    }

    fn persist(
        &self,
        chain: &[(B256, Arc<Overlay>)],
        kept: Kept<'_>,
        head: Head,
        durability: redb::Durability,
    ) -> Result<(), StateError> {
        let Kept {
            receipts,
            transactions,
            headers,
        } = kept;
        let mut txn = self.db.begin_write().map_err(db_err)?;
        txn.set_durability(durability).map_err(db_err)?;
        {
            let mut nodes = txn.open_table(NODES).map_err(db_err)?;
            let mut accounts = txn.open_table(ACCOUNTS).map_err(db_err)?;
            let mut storage = txn.open_table(STORAGE).map_err(db_err)?;
            let mut code = txn.open_table(CODE).map_err(db_err)?;
            let mut blocks = txn.open_table(BLOCKS).map_err(db_err)?;
            let mut heights = txn.open_table(HEIGHTS).map_err(db_err)?;
            let mut meta = txn.open_table(META).map_err(db_err)?;
            let flat = Flat::of(chain);
            for (h, n) in &flat.nodes {
                nodes.insert(&h.0, *n).map_err(db_err)?;
            }
            for (h, c) in &flat.codes {
                code.insert(&h.0, c.as_ref()).map_err(db_err)?;
            }
            for address in &flat.cleared {
                let lo = storage_key(*address, U256::ZERO);
                let hi = storage_key(*address, U256::MAX);
                storage
                    .retain_in::<&[u8; 52], _>(&lo..=&hi, |_, _| false)
                    .map_err(db_err)?;
            }
            for ((address, slot), value) in &flat.storage {
                let key = storage_key(*address, *slot);
                if value.is_zero() {
                    storage.remove(&key).map_err(db_err)?;
                } else {
                    storage
                        .insert(&key, &value.to_be_bytes::<32>())
                        .map_err(db_err)?;
                }
            }
            for (address, record) in &flat.accounts {
                match record {
                    Some(a) => accounts
                        .insert(&address.0.0, encode_account(a).as_slice())
                        .map_err(db_err)?,
                    None => accounts.remove(&address.0.0).map_err(db_err)?,
                };
            }
            // Receipts older than the kept window go in the commit that moves the head past
            // them (a few heights' rows per commit once the window is full).
            let expired = self
                .receipt_heights
                .and_then(|keep| (head.number + 1).checked_sub(keep))
                .filter(|below| *below > 0);
            if !receipts.is_empty() || expired.is_some() {
                let mut table = txn.open_table(RECEIPTS).map_err(db_err)?;
                for (number, shard, bytes) in receipts {
                    if expired.is_some_and(|below| *number < below) {
                        continue;
                    }
                    table
                        .insert((*number, *shard), bytes.as_slice())
                        .map_err(db_err)?;
                }
                if let Some(below) = expired {
                    table
                        .retain_in(..(below, 0u16), |_, _| false)
                        .map_err(db_err)?;
                }
            }
            if !transactions.is_empty() || expired.is_some() {
                let mut table = txn.open_table(TRANSACTIONS).map_err(db_err)?;
                let mut index = txn.open_table(TX_INDEX).map_err(db_err)?;
                if let Some(below) = expired {
                    // The index entries of the expired heights' transactions go with them
                    // (unless a later height listed the same hash again).
                    let mut gone = Vec::new();
                    for entry in table.range(..(below, 0u16)).map_err(db_err)? {
                        let (key, value) = entry.map_err(db_err)?;
                        let (number, shard) = key.value();
                        let txs = decode_transactions(value.value()).map_err(|e| {
                            StateError::Database(format!(
                                "transactions of height {number}, shard {shard}: {e}"
                            ))
                        })?;
                        gone.extend(txs.iter().map(alloy_primitives::keccak256));
                    }
                    for hash in gone {
                        let stale = index
                            .get(&hash.0)
                            .map_err(db_err)?
                            .is_some_and(|v| TxLocation::decode(v.value()).number < below);
                        if stale {
                            index.remove(&hash.0).map_err(db_err)?;
                        }
                    }
                    table
                        .retain_in(..(below, 0u16), |_, _| false)
                        .map_err(db_err)?;
                }
                // The index's keys are hashes, so its inserts land all over the table: in key
                // order, each B-tree page is visited once per commit rather than at random.
                let mut entries = Vec::new();
                for (number, shard, txs) in transactions {
                    if expired.is_some_and(|below| *number < below) {
                        continue;
                    }
                    table
                        .insert((*number, *shard), encode_transactions(txs).as_slice())
                        .map_err(db_err)?;
                    for (position, tx) in txs.iter().enumerate() {
                        let at = TxLocation {
                            number: *number,
                            shard: *shard,
                            position: position as u32,
                        };
                        entries.push((alloy_primitives::keccak256(tx).0, at));
                    }
                }
                // (A hash listed twice keeps its latest place: a stable sort keeps the
                // heights in order, and the last insert wins.)
                entries.sort_by_key(|e| e.0);
                for (hash, at) in entries {
                    index.insert(&hash, &at.encode()).map_err(db_err)?;
                }
            }
            for (hash, overlay) in chain {
                let mut entry = [0u8; 40];
                entry[..8].copy_from_slice(&overlay.number.to_be_bytes());
                entry[8..].copy_from_slice(overlay.state_root.as_slice());
                blocks.insert(&hash.0, &entry).map_err(db_err)?;
                heights.insert(overlay.number, &hash.0).map_err(db_err)?;
            }
            if !headers.is_empty() {
                let mut table = txn.open_table(HEADERS).map_err(db_err)?;
                for (number, bytes) in headers {
                    table.insert(*number, bytes.as_slice()).map_err(db_err)?;
                }
            }
            meta.insert("head", head.encode().as_slice())
                .map_err(db_err)?;
            match chain.last().and_then(|(_, o)| o.env.as_ref()) {
                Some(env) => meta.insert("head_env", encode_env(env).as_slice()),
                None => meta.remove("head_env"),
            }
            .map_err(db_err)?;
            if let Some((keep, swept)) = &self.prune {
                let mut swept = swept
                    .lock()
                    .map_err(|_| StateError::Database("prune lock poisoned".into()))?;
                if swept.is_none_or(|at| head.number >= at + keep) {
                    let started = std::time::Instant::now();
                    match sweep(&mut nodes, &blocks, &heights, head, *keep)? {
                        Some(s) => tracing::info!(
                            height = head.number,
                            dropped = s.dropped,
                            kept = s.kept,
                            from = s.from,
                            ms = started.elapsed().as_millis() as u64,
                            "state: pruned the trie nodes no kept state reaches"
                        ),
                        None => tracing::warn!(
                            height = head.number,
                            "state: a kept trie could not be walked whole; nothing pruned"
                        ),
                    }
                    *swept = Some(head.number);
                }
            }
        }
        txn.commit().map_err(db_err)
    }

    /// Proof of `address` and `slots` against the state root after `block`.
    pub fn proof(
        &self,
        block: B256,
        address: Address,
        slots: &[U256],
    ) -> Result<AccountProof, StateError> {
        self.proof_at(block, address, slots).map_err(|e| match e {
            StateError::Trie(TrieError::MissingNode(_)) => self.pruned(block).unwrap_or(e),
            e => e,
        })
    }

    /// Why the trie of finalized `block` is incomplete when pruning explains it.
    fn pruned(&self, block: B256) -> Option<StateError> {
        let keep = self.kept_states()?;
        let head = self.head().ok()??;
        let txn = self.db.begin_read().ok()?;
        let blocks = txn.open_table(BLOCKS).ok()?;
        let entry = blocks.get(&block.0).ok()??;
        let number = u64::from_be_bytes(entry.value()[..8].try_into().ok()?);
        (number + keep <= head.number).then_some(StateError::Pruned {
            number,
            keep,
            head: head.number,
        })
    }

    fn proof_at(
        &self,
        block: B256,
        address: Address,
        slots: &[U256],
    ) -> Result<AccountProof, StateError> {
        let root = self
            .state_root(block)?
            .ok_or(StateError::UnknownBlock(block))?;
        let view = self.view_nodes()?;
        let key = alloy_primitives::keccak256(address);
        let to_bytes = |p: Vec<Vec<u8>>| p.into_iter().map(Bytes::from).collect::<Vec<_>>();
        let account = phalanx_trie::get(&view, root, key.as_slice())?
            .map(|rlp| decode_account(&rlp))
            .transpose()?;
        let account_proof = to_bytes(phalanx_trie::prove(&view, root, key.as_slice())?);
        let storage_root = account.map_or(EMPTY_ROOT, |a| a.storage_root);
        let mut storage = Vec::new();
        for slot in slots {
            let k = alloy_primitives::keccak256(B256::from(*slot));
            let value = match phalanx_trie::get(&view, storage_root, k.as_slice())? {
                Some(rlp) => crate::reader::decode_storage(&rlp)?,
                None => U256::ZERO,
            };
            storage.push((
                *slot,
                value,
                to_bytes(phalanx_trie::prove(&view, storage_root, k.as_slice())?),
            ));
        }
        Ok(AccountProof {
            address,
            account,
            account_proof,
            storage,
        })
    }

    /// Every trie node held: persisted ones and those of all overlays.
    fn view_nodes(&self) -> Result<StateView, StateError> {
        let inner = self.read_inner()?;
        let chain: Vec<Arc<Overlay>> = inner.overlays.values().cloned().collect();
        drop(inner);
        self.snapshot(chain, EMPTY_ROOT)
    }
}

/// Drops every trie node that the state roots of heights `head - keep + 1 ..= head` do not
/// reach (with their accounts' storage tries). A kept root that is itself absent (pruned
/// under a smaller `keep`, or not kept by an older build) is passed over; any other node
/// missing below a kept root aborts the sweep with nothing dropped (`None`).
fn sweep(
    nodes: &mut redb::Table<'_, &'static [u8; 32], &'static [u8]>,
    blocks: &redb::Table<'_, &'static [u8; 32], &'static [u8; 40]>,
    heights: &redb::Table<'_, u64, &'static [u8; 32]>,
    head: Head,
    keep: u64,
) -> Result<Option<Sweep>, StateError> {
    use redb::{ReadableTable as _, ReadableTableMetadata as _};
    let from = head.number.saturating_sub(keep.saturating_sub(1));
    let mut roots = vec![head.state_root];
    for number in from..head.number {
        let Some(hash) = heights.get(number).map_err(db_err)? else {
            continue;
        };
        if let Some(entry) = blocks.get(hash.value()).map_err(db_err)? {
            roots.push(B256::from_slice(&entry.value()[8..]));
        }
    }
    let mut marked = HashSet::new();
    {
        let source = TableNodes(&*nodes);
        let mut storage_roots = Vec::new();
        let mut bad = None;
        for root in roots {
            match source.node(&root) {
                Ok(Some(_)) => {}
                _ if root == EMPTY_ROOT => {}
                Ok(None) => continue,
                Err(_) => return Ok(None),
            }
            let walked =
                phalanx_trie::mark(
                    &source,
                    root,
                    &mut marked,
                    &mut |value| match decode_account(value) {
                        Ok(a) if a.storage_root != EMPTY_ROOT => storage_roots.push(a.storage_root),
                        Ok(_) => {}
                        Err(e) => bad = Some(e),
                    },
                );
            if walked.is_err() || bad.is_some() {
                return Ok(None);
            }
        }
        for root in storage_roots {
            if phalanx_trie::mark(&source, root, &mut marked, &mut |_| {}).is_err() {
                return Ok(None);
            }
        }
    }
    let before = nodes.len().map_err(db_err)?;
    nodes
        .retain(|hash, _| marked.contains(&B256::from(*hash)))
        .map_err(db_err)?;
    let after = nodes.len().map_err(db_err)?;
    Ok(Some(Sweep {
        dropped: before - after,
        kept: after,
        from,
    }))
}

/// Shards as lists of encoded transactions.
pub type Bytes2d = Vec<Bytes>;

/// The state after one block: its overlay chain over a snapshot of the database.
pub struct StateView {
    chain: Vec<Arc<Overlay>>,
    root: B256,
    nodes: ReadOnlyTable<&'static [u8; 32], &'static [u8]>,
    accounts: ReadOnlyTable<&'static [u8; 20], &'static [u8]>,
    storage: ReadOnlyTable<&'static [u8; 52], &'static [u8; 32]>,
    code: ReadOnlyTable<&'static [u8; 32], &'static [u8]>,
}

impl StateView {
    /// The state root of this state.
    pub fn root(&self) -> B256 {
        self.root
    }
}

impl StateReader for StateView {
    fn account(&self, address: Address) -> Result<Option<TrieAccount>, StateError> {
        for overlay in &self.chain {
            if let Some(record) = overlay.accounts.get(&address) {
                return Ok(*record);
            }
        }
        match self.accounts.get(&address.0.0).map_err(db_err)? {
            Some(v) => Ok(Some(decode_account(v.value())?)),
            None => Ok(None),
        }
    }

    fn storage(&self, address: Address, slot: U256) -> Result<U256, StateError> {
        for overlay in &self.chain {
            if let Some(value) = overlay.storage.get(&(address, slot)) {
                return Ok(*value);
            }
            if overlay.cleared.contains(&address) {
                return Ok(U256::ZERO);
            }
        }
        Ok(self
            .storage
            .get(&storage_key(address, slot))
            .map_err(db_err)?
            .map_or(U256::ZERO, |v| U256::from_be_bytes(*v.value())))
    }

    fn code(&self, code_hash: B256) -> Result<Bytes, StateError> {
        if code_hash == revm::primitives::KECCAK_EMPTY {
            return Ok(Bytes::new());
        }
        CodeSource::code(self, &code_hash)?.ok_or(StateError::MissingCode(code_hash))
    }
}

impl CodeSource for StateView {
    fn code(&self, code_hash: &B256) -> Result<Option<Bytes>, StateError> {
        for overlay in &self.chain {
            if let Some(code) = overlay.codes.get(code_hash) {
                return Ok(Some(code.clone()));
            }
        }
        Ok(self
            .code
            .get(&code_hash.0)
            .map_err(db_err)?
            .map(|v| Bytes::copy_from_slice(v.value())))
    }
}

impl NodeSource for StateView {
    fn node(&self, hash: &B256) -> Result<Option<Vec<u8>>, TrieError> {
        for overlay in &self.chain {
            if let Some(node) = overlay.nodes.get(hash) {
                return Ok(Some(node.clone()));
            }
        }
        self.nodes
            .get(&hash.0)
            .map(|v| v.map(|v| v.value().to_vec()))
            .map_err(|e| TrieError::Store(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_environment_round_trips_and_a_wrong_length_is_an_error() {
        let env = BlockEnv {
            number: 0x0102_0304_0506_0708,
            timestamp: 1_700_000_002,
            chain_id: 7_777,
            basefee: 1_000_000_007,
            prevrandao: B256::repeat_byte(5),
            shard_gas_limit: 30_000_000,
            block_gas_limit: 240_000_001,
            block_hashes: BTreeMap::from([(1, B256::repeat_byte(9))]),
            validator_reward: Address::repeat_byte(0xaa),
            producer_reward: Address::repeat_byte(0xbb),
            fee_split_bps: 0x1234,
        };
        let back = decode_env(&encode_env(&env)).unwrap();
        assert_eq!(
            back,
            BlockEnv {
                block_hashes: BTreeMap::new(),
                ..env
            }
        );
        for len in [0, ENV_LEN - 1, ENV_LEN + 1] {
            assert!(matches!(
                decode_env(&vec![0u8; len]),
                Err(StateError::Database(_))
            ));
        }
    }

    fn overlay(
        accounts: &[(Address, Option<u64>)],
        storage: &[(Address, u64, u64)],
        cleared: &[Address],
    ) -> Arc<Overlay> {
        Arc::new(Overlay {
            parent: B256::ZERO,
            number: 0,
            env: None,
            state_root: B256::ZERO,
            accounts: accounts
                .iter()
                .map(|(a, nonce)| {
                    let record = nonce.map(|nonce| TrieAccount {
                        nonce,
                        ..TrieAccount::default()
                    });
                    (*a, record)
                })
                .collect(),
            storage: storage
                .iter()
                .map(|(a, slot, value)| ((*a, U256::from(*slot)), U256::from(*value)))
                .collect(),
            cleared: cleared.iter().copied().collect(),
            nodes: HashMap::new(),
            codes: HashMap::new(),
        })
    }

    #[test]
    fn a_chain_folds_to_its_last_writes_and_a_clear_drops_earlier_slots() {
        let (a, b) = (Address::repeat_byte(1), Address::repeat_byte(2));
        let chain = vec![
            (
                B256::repeat_byte(1),
                overlay(
                    &[(a, Some(1)), (b, Some(1))],
                    &[(a, 1, 10), (b, 1, 10)],
                    &[],
                ),
            ),
            (
                B256::repeat_byte(2),
                overlay(&[(a, Some(2))], &[(a, 2, 20)], &[a]),
            ),
            (
                B256::repeat_byte(3),
                overlay(&[(b, None)], &[(a, 3, 30), (b, 1, 0)], &[]),
            ),
        ];
        let flat = Flat::of(&chain);
        let nonces: Vec<_> = flat
            .accounts
            .iter()
            .map(|(addr, r)| (*addr, r.map(|r| r.nonce)))
            .collect();
        assert_eq!(nonces, vec![(a, Some(2)), (b, None)]);
        assert_eq!(flat.cleared, BTreeSet::from([a]));
        // Slot 1 of `a` was written before the clear, slots 2 and 3 at and after it.
        let storage: Vec<_> = flat
            .storage
            .iter()
            .map(|((addr, slot), v)| (*addr, slot.to::<u64>(), v.to::<u64>()))
            .collect();
        assert_eq!(storage, vec![(a, 2, 20), (a, 3, 30), (b, 1, 0)]);
    }
}
