//! State changes, the conflict rule and the effects root.
//!
//! A shard's *effects* are the keys whose value it changed relative to the parent state, with
//! the new values. A key is either an account's fields (nonce, balance, code) or one storage
//! slot. Wiping an account's storage (self-destruct, re-creation, EIP-161 removal) writes its
//! account key and every one of its slots.
//!
//! **Conflict rule** (seed 000, DESIGN.md "Execution"): if two shards of a block change the
//! same key, the block is void. The conflict reported is the smallest key (by address, the
//! account key before its slots, slots ascending) with the first two shards that wrote it.
//!
//! The effects root of a shard is `hash_tree_root` of its [`ShardEffects`] (SSZ), so a
//! dispute about a block can be narrowed to one shard.

use std::collections::BTreeMap;

use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use alloy_trie::TrieAccount;
use phalanx_trie::{EMPTY_ROOT, NodeSource, update_parallel};
use ssz_derive::{Decode, Encode};
use ssz_types::VariableList;
use tree_hash::TreeHash;
use tree_hash_derive::TreeHash;
use typenum::U1048576;

use crate::error::StateError;
use crate::reader::{StateReader, encode_account, encode_storage};

/// An account's fields other than its storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountFields {
    /// Nonce.
    pub nonce: u64,
    /// Balance in wei.
    pub balance: U256,
    /// Hash of its code (`KECCAK_EMPTY` for none).
    pub code_hash: B256,
}

/// What changed in one account, relative to the parent state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccountChange {
    /// `None`: fields unchanged; `Some(None)`: the account was removed; `Some(Some(f))`: set.
    pub fields: Option<Option<AccountFields>>,
    /// The storage was wiped before `storage` was applied.
    pub storage_cleared: bool,
    /// Slots set (a zero value removes the slot).
    pub storage: BTreeMap<U256, U256>,
}

impl AccountChange {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.fields.is_none() && !self.storage_cleared && self.storage.is_empty()
    }

    /// Whether the account key itself is written.
    pub fn writes_account(&self) -> bool {
        self.fields.is_some() || self.storage_cleared
    }
}

/// Changes to a state: accounts and the code they introduced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Changes {
    /// Per-account changes.
    pub accounts: BTreeMap<Address, AccountChange>,
    /// New contract code by hash.
    pub codes: BTreeMap<B256, Bytes>,
}

impl Changes {
    /// Sets `address` to a plain account (no code, nonce 0) holding `balance`: how genesis
    /// allocations, simulators and benchmarks fund accounts.
    pub fn fund(&mut self, address: Address, balance: U256) {
        self.accounts.insert(
            address,
            AccountChange {
                fields: Some(Some(AccountFields {
                    nonce: 0,
                    balance,
                    code_hash: alloy_primitives::KECCAK256_EMPTY,
                })),
                ..Default::default()
            },
        );
    }
}

/// A key of the state, as the conflict rule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StateKey {
    /// An account's nonce, balance and code.
    Account(Address),
    /// One storage slot.
    Storage(Address, U256),
}

impl std::fmt::Display for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateKey::Account(a) => write!(f, "account {a}"),
            StateKey::Storage(a, s) => write!(f, "storage {a} slot {s:#x}"),
        }
    }
}

/// The smallest key two changes to the same account both write, if any.
fn first_shared_key(address: Address, a: &AccountChange, b: &AccountChange) -> Option<StateKey> {
    if a.writes_account() && b.writes_account() {
        return Some(StateKey::Account(address));
    }
    // A wipe writes every slot; otherwise only the listed ones.
    let slot = match (a.storage_cleared, b.storage_cleared) {
        (true, _) if !b.storage.is_empty() => b.storage.keys().next().copied(),
        (_, true) if !a.storage.is_empty() => a.storage.keys().next().copied(),
        _ => a
            .storage
            .keys()
            .find(|s| b.storage.contains_key(*s))
            .copied(),
    };
    slot.map(|s| StateKey::Storage(address, s))
}

/// A write-write conflict between two shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict {
    /// The key both shards changed.
    pub key: StateKey,
    /// The lower shard index.
    pub shard_a: usize,
    /// The higher shard index.
    pub shard_b: usize,
}

/// Finds the conflict the rule reports, if any.
pub fn find_conflict(shards: &[&Changes]) -> Option<Conflict> {
    let mut writers: BTreeMap<Address, Vec<(usize, &AccountChange)>> = BTreeMap::new();
    for (i, changes) in shards.iter().enumerate() {
        for (address, change) in &changes.accounts {
            writers.entry(*address).or_default().push((i, change));
        }
    }
    let mut best: Option<Conflict> = None;
    for (address, list) in writers.iter().filter(|(_, l)| l.len() > 1) {
        for (x, (ia, a)) in list.iter().enumerate() {
            for (ib, b) in &list[x + 1..] {
                if let Some(key) = first_shared_key(*address, a, b) {
                    let candidate = Conflict {
                        key,
                        shard_a: *ia,
                        shard_b: *ib,
                    };
                    let better = best.is_none_or(|cur| {
                        (candidate.key, candidate.shard_a, candidate.shard_b)
                            < (cur.key, cur.shard_a, cur.shard_b)
                    });
                    if better {
                        best = Some(candidate);
                    }
                }
            }
        }
        if best.is_some() {
            // Addresses are visited in order, so the first address with a conflict holds the
            // smallest key.
            return best;
        }
    }
    best
}

/// Merges conflict-free changes of several shards into the block's changes.
pub fn merge(shards: &[&Changes]) -> Changes {
    let mut out = Changes::default();
    for changes in shards {
        for (address, change) in &changes.accounts {
            let merged = out.accounts.entry(*address).or_default();
            if change.fields.is_some() {
                merged.fields = change.fields;
            }
            if change.storage_cleared {
                merged.storage_cleared = true;
            }
            merged
                .storage
                .extend(change.storage.iter().map(|(k, v)| (*k, *v)));
        }
        out.codes
            .extend(changes.codes.iter().map(|(k, v)| (*k, v.clone())));
    }
    out
}

/// Largest number of accounts or slots in one shard's effects.
pub type MaxEffects = U1048576;

/// One slot's new value in [`AccountEffect`].
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, TreeHash)]
pub struct SlotEffect {
    /// Slot (big-endian).
    pub slot: B256,
    /// New value (big-endian; zero = removed).
    pub value: B256,
}

/// One account's changes, in canonical SSZ form. Its `hash_tree_root` is the SSZ
/// container's (written out below rather than derived only so that the root of an empty
/// `storage` list, twenty levels of zero hashes, is computed once per process instead of once
/// per account: most accounts a transfer touches have no slots).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct AccountEffect {
    /// The account.
    pub address: Address,
    /// 0: fields unchanged, 1: set to the fields below, 2: account removed.
    pub fields_kind: u8,
    /// Nonce (if set).
    pub nonce: u64,
    /// Balance, big-endian (if set).
    pub balance: B256,
    /// Code hash (if set).
    pub code_hash: B256,
    /// Storage wiped first.
    pub storage_cleared: bool,
    /// Slots set, ascending.
    pub storage: VariableList<SlotEffect, MaxEffects>,
}

/// `hash_tree_root` of an empty [`AccountEffect::storage`].
static EMPTY_STORAGE_ROOT: std::sync::LazyLock<tree_hash::Hash256> =
    std::sync::LazyLock::new(|| VariableList::<SlotEffect, MaxEffects>::empty().tree_hash_root());

impl TreeHash for AccountEffect {
    fn tree_hash_type() -> tree_hash::TreeHashType {
        tree_hash::TreeHashType::Container
    }

    fn tree_hash_packed_encoding(&self) -> tree_hash::PackedEncoding {
        unreachable!("a container is never packed")
    }

    fn tree_hash_packing_factor() -> usize {
        unreachable!("a container is never packed")
    }

    /// The SSZ container root over the seven fields, as `#[derive(TreeHash)]` computes it.
    fn tree_hash_root(&self) -> tree_hash::Hash256 {
        let storage = if self.storage.is_empty() {
            *EMPTY_STORAGE_ROOT
        } else {
            self.storage.tree_hash_root()
        };
        container_root(&[
            self.address.tree_hash_root(),
            self.fields_kind.tree_hash_root(),
            self.nonce.tree_hash_root(),
            self.balance.tree_hash_root(),
            self.code_hash.tree_hash_root(),
            self.storage_cleared.tree_hash_root(),
            storage,
        ])
    }
}

/// The SSZ root of a container from its fields' roots, in field order: what
/// `#[derive(TreeHash)]` computes, for containers that reuse a field's root computed elsewhere.
pub fn container_root(fields: &[B256]) -> B256 {
    let mut hasher = tree_hash::MerkleHasher::with_leaves(fields.len());
    for field in fields {
        // As many leaves as the hasher was sized for: neither call can fail.
        let _ = hasher.write(field.as_slice());
    }
    hasher.finish().unwrap_or_default()
}

/// A shard's effects, in canonical SSZ form: its root is the shard's effects root.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, TreeHash)]
pub struct ShardEffects {
    /// Changed accounts, ascending by address.
    pub accounts: VariableList<AccountEffect, MaxEffects>,
    /// Gas used by the shard.
    pub gas_used: u64,
    /// Fees the shard collected (wei, big-endian), before the split.
    pub fees: B256,
}

impl ShardEffects {
    /// Canonical form of `changes`. Fails only past 2^20 accounts or slots, which no shard
    /// within the gas limit can reach.
    pub fn new(changes: &Changes, gas_used: u64, fees: U256) -> Result<Self, String> {
        let accounts = changes
            .accounts
            .iter()
            .map(|(address, c)| {
                let (fields_kind, f) = match c.fields {
                    None => (0, None),
                    Some(Some(f)) => (1, Some(f)),
                    Some(None) => (2, None),
                };
                let storage = c
                    .storage
                    .iter()
                    .map(|(k, v)| SlotEffect {
                        slot: B256::from(*k),
                        value: B256::from(*v),
                    })
                    .collect::<Vec<_>>();
                Ok(AccountEffect {
                    address: *address,
                    fields_kind,
                    nonce: f.map(|f| f.nonce).unwrap_or_default(),
                    balance: f.map(|f| B256::from(f.balance)).unwrap_or_default(),
                    code_hash: f.map(|f| f.code_hash).unwrap_or_default(),
                    storage_cleared: c.storage_cleared,
                    storage: VariableList::new(storage).map_err(|e| format!("{e:?}"))?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self {
            accounts: VariableList::new(accounts).map_err(|e| format!("{e:?}"))?,
            gas_used,
            fees: B256::from(fees),
        })
    }

    /// The effects root.
    pub fn root(&self) -> B256 {
        self.tree_hash_root()
    }

    /// Back to [`Changes`], with `codes` (the code each set code hash names, as published
    /// beside the effects). The inverse of [`ShardEffects::new`].
    pub fn to_changes(&self, codes: impl IntoIterator<Item = Bytes>) -> Changes {
        let accounts = self
            .accounts
            .iter()
            .map(|a| {
                let fields = match a.fields_kind {
                    0 => None,
                    1 => Some(Some(AccountFields {
                        nonce: a.nonce,
                        balance: U256::from_be_bytes(a.balance.0),
                        code_hash: a.code_hash,
                    })),
                    _ => Some(None),
                };
                let storage = a
                    .storage
                    .iter()
                    .map(|s| {
                        (
                            U256::from_be_bytes(s.slot.0),
                            U256::from_be_bytes(s.value.0),
                        )
                    })
                    .collect();
                (
                    a.address,
                    AccountChange {
                        fields,
                        storage_cleared: a.storage_cleared,
                        storage,
                    },
                )
            })
            .collect();
        Changes {
            accounts,
            codes: codes.into_iter().map(|c| (keccak256(&c), c)).collect(),
        }
    }

    /// Fees as a number.
    pub fn fees(&self) -> U256 {
        U256::from_be_bytes(self.fees.0)
    }
}

/// The result of applying changes to a state's tries.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// The new state root.
    pub root: B256,
    /// New trie nodes `(hash, rlp)`.
    pub nodes: phalanx_trie::Nodes,
    /// Every changed account's new record (`None` = removed), storage root included.
    pub accounts: BTreeMap<Address, Option<TrieAccount>>,
}

/// Applies `changes` to the state with root `parent_root`: updates each touched storage trie
/// (in parallel), then the account trie (its sixteen top subtries in parallel). Only nodes on
/// touched paths are read or written.
pub fn apply_changes<N: NodeSource + Sync, R: StateReader>(
    nodes: &N,
    parent: &R,
    parent_root: B256,
    changes: &Changes,
) -> Result<Applied, StateError> {
    use rayon::prelude::*;

    let touched: Vec<(&Address, &AccountChange)> = changes
        .accounts
        .iter()
        .filter(|(_, c)| !c.is_empty())
        .collect();
    // New record (or removal) of each account, with its new storage trie nodes.
    let records: Vec<(Address, Option<TrieAccount>, phalanx_trie::Nodes)> = touched
        .par_iter()
        .map(|(address, change)| {
            let before = parent.account(**address)?;
            let fields = match change.fields {
                Some(f) => f,
                None => before.map(|a| AccountFields {
                    nonce: a.nonce,
                    balance: a.balance,
                    code_hash: a.code_hash,
                }),
            };
            let Some(fields) = fields else {
                return Ok((**address, None, Vec::new()));
            };
            let mut storage_root = match (change.storage_cleared, before) {
                (false, Some(a)) => a.storage_root,
                _ => EMPTY_ROOT,
            };
            let mut new_nodes = Vec::new();
            if !change.storage.is_empty() {
                let slots: Vec<(Vec<u8>, Vec<u8>)> = change
                    .storage
                    .iter()
                    .map(|(slot, value)| {
                        (
                            keccak256(B256::from(*slot)).to_vec(),
                            encode_storage(*value),
                        )
                    })
                    .collect();
                let (root, committed) = update_parallel(nodes, storage_root, &slots)?;
                storage_root = root;
                new_nodes = committed;
            }
            let record = TrieAccount {
                nonce: fields.nonce,
                balance: fields.balance,
                storage_root,
                code_hash: fields.code_hash,
            };
            Ok((**address, Some(record), new_nodes))
        })
        .collect::<Result<_, StateError>>()?;

    let mut out = Applied::default();
    let mut batch = Vec::with_capacity(records.len());
    for (address, record, mut new_nodes) in records {
        out.nodes.append(&mut new_nodes);
        batch.push((
            keccak256(address).to_vec(),
            record.as_ref().map(encode_account).unwrap_or_default(),
        ));
        out.accounts.insert(address, record);
    }
    let (root, mut new_nodes) = update_parallel(nodes, parent_root, &batch)?;
    out.root = root;
    out.nodes.append(&mut new_nodes);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`AccountEffect`] with the derived hash: the written-out one must equal it.
    #[derive(TreeHash)]
    struct DerivedAccountEffect {
        address: Address,
        fields_kind: u8,
        nonce: u64,
        balance: B256,
        code_hash: B256,
        storage_cleared: bool,
        storage: VariableList<SlotEffect, MaxEffects>,
    }

    #[test]
    fn the_written_out_account_hash_is_the_derived_one() {
        let slot_list = |n: u64| {
            VariableList::new(
                (0..n)
                    .map(|i| SlotEffect {
                        slot: B256::from(U256::from(i)),
                        value: B256::from(U256::from(i * 7 + 1)),
                    })
                    .collect(),
            )
            .unwrap()
        };
        for (kind, slots, cleared) in [
            (0u8, 0, false),
            (1, 0, false),
            (2, 0, true),
            (1, 3, true),
            (0, 1, false),
        ] {
            let a = AccountEffect {
                address: Address::repeat_byte(kind + 9),
                fields_kind: kind,
                nonce: 41 + u64::from(kind),
                balance: B256::from(U256::from(10u64.pow(18))),
                code_hash: keccak256([kind]),
                storage_cleared: cleared,
                storage: slot_list(slots),
            };
            let derived = DerivedAccountEffect {
                address: a.address,
                fields_kind: a.fields_kind,
                nonce: a.nonce,
                balance: a.balance,
                code_hash: a.code_hash,
                storage_cleared: a.storage_cleared,
                storage: a.storage.clone(),
            };
            assert_eq!(
                a.tree_hash_root(),
                derived.tree_hash_root(),
                "kind {kind}, {slots} slots"
            );
        }
        // And the hash sees every field: changing one changes the root.
        let a = AccountEffect {
            address: Address::repeat_byte(1),
            fields_kind: 1,
            nonce: 1,
            balance: B256::ZERO,
            code_hash: B256::ZERO,
            storage_cleared: false,
            storage: slot_list(0),
        };
        let mut b = a.clone();
        b.storage_cleared = true;
        assert_ne!(a.tree_hash_root(), b.tree_hash_root());
    }

    fn fields(n: u64) -> Option<Option<AccountFields>> {
        Some(Some(AccountFields {
            nonce: n,
            balance: U256::from(n),
            code_hash: B256::ZERO,
        }))
    }

    fn changes(entries: Vec<(u8, AccountChange)>) -> Changes {
        Changes {
            accounts: entries
                .into_iter()
                .map(|(a, c)| (Address::repeat_byte(a), c))
                .collect(),
            codes: BTreeMap::new(),
        }
    }

    #[test]
    fn conflicts_follow_the_key_model() {
        let slot = |s: u64| AccountChange {
            storage: [(U256::from(s), U256::from(1))].into(),
            ..Default::default()
        };
        let acct = AccountChange {
            fields: fields(1),
            ..Default::default()
        };
        let wipe = AccountChange {
            storage_cleared: true,
            fields: fields(0),
            ..Default::default()
        };
        // Fields in one shard, a slot of the same account in another: different keys.
        assert_eq!(
            find_conflict(&[
                &changes(vec![(1, acct.clone())]),
                &changes(vec![(1, slot(3))])
            ]),
            None
        );
        // Same slot: conflict on that slot.
        let c = find_conflict(&[
            &changes(vec![(1, slot(3))]),
            &changes(vec![(2, acct.clone())]),
            &changes(vec![(1, slot(3))]),
        ])
        .unwrap();
        assert_eq!(
            (c.key, c.shard_a, c.shard_b),
            (
                StateKey::Storage(Address::repeat_byte(1), U256::from(3)),
                0,
                2
            )
        );
        // A wipe conflicts with any slot write of the account.
        let c = find_conflict(&[&changes(vec![(1, slot(9))]), &changes(vec![(1, wipe)])]).unwrap();
        assert_eq!(
            c.key,
            StateKey::Storage(Address::repeat_byte(1), U256::from(9))
        );
        // The smallest conflicting address is reported.
        let c = find_conflict(&[
            &changes(vec![(5, acct.clone()), (2, acct.clone())]),
            &changes(vec![(5, acct.clone()), (2, acct)]),
        ])
        .unwrap();
        assert_eq!(c.key, StateKey::Account(Address::repeat_byte(2)));
    }
}
