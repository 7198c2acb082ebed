//! Reading a parent state: the seam between execution and where state lives.
//!
//! Execution only ever *reads* the parent state through [`StateReader`]; it never writes it.
//! Stateful execution reads a node's flat state (fast key-value lookups, see `store`);
//! stateless execution and witness generation read the trie itself through
//! [`TrieStateReader`], which walks `keccak256(address)` and `keccak256(slot)` paths from the
//! state root.

use std::collections::HashMap;

use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use alloy_trie::TrieAccount;
use phalanx_trie::{EMPTY_ROOT, NodeSource};

use crate::error::StateError;

/// Read access to one state (the parent of the block being executed).
pub trait StateReader: Sync {
    /// The account at `address`, or `None` if it does not exist.
    fn account(&self, address: Address) -> Result<Option<TrieAccount>, StateError>;
    /// The value of `slot` in `address`'s storage (zero if unset).
    fn storage(&self, address: Address, slot: U256) -> Result<U256, StateError>;
    /// Contract code by its hash.
    fn code(&self, code_hash: B256) -> Result<Bytes, StateError>;
}

impl<T: StateReader + ?Sized> StateReader for &T {
    fn account(&self, address: Address) -> Result<Option<TrieAccount>, StateError> {
        (**self).account(address)
    }
    fn storage(&self, address: Address, slot: U256) -> Result<U256, StateError> {
        (**self).storage(address, slot)
    }
    fn code(&self, code_hash: B256) -> Result<Bytes, StateError> {
        (**self).code(code_hash)
    }
}

/// Decodes an account leaf.
pub fn decode_account(rlp: &[u8]) -> Result<TrieAccount, StateError> {
    alloy_rlp::Decodable::decode(&mut &rlp[..])
        .map_err(|e| StateError::MalformedAccount(e.to_string()))
}

/// Encodes an account leaf.
pub fn encode_account(account: &TrieAccount) -> Vec<u8> {
    alloy_rlp::encode(account)
}

/// Decodes a storage leaf (RLP of the value with leading zeros removed).
pub fn decode_storage(rlp: &[u8]) -> Result<U256, StateError> {
    alloy_rlp::Decodable::decode(&mut &rlp[..])
        .map_err(|e| StateError::MalformedAccount(format!("storage value: {e}")))
}

/// Encodes a storage leaf; zero is absent (empty).
pub fn encode_storage(value: U256) -> Vec<u8> {
    if value.is_zero() {
        Vec::new()
    } else {
        alloy_rlp::encode(value)
    }
}

/// Where code comes from when reading a trie.
pub trait CodeSource: Sync {
    /// Code by hash, if held.
    fn code(&self, code_hash: &B256) -> Result<Option<Bytes>, StateError>;
}

impl<T: CodeSource + ?Sized> CodeSource for &T {
    fn code(&self, code_hash: &B256) -> Result<Option<Bytes>, StateError> {
        (**self).code(code_hash)
    }
}

impl CodeSource for HashMap<B256, Bytes> {
    fn code(&self, code_hash: &B256) -> Result<Option<Bytes>, StateError> {
        Ok(self.get(code_hash).cloned())
    }
}

/// Reads a state by walking its trie from the root.
pub struct TrieStateReader<N, C> {
    nodes: N,
    codes: C,
    root: B256,
}

impl<N: NodeSource + Sync, C: CodeSource> TrieStateReader<N, C> {
    /// Reads the state with root `root`.
    pub fn new(nodes: N, codes: C, root: B256) -> Self {
        Self { nodes, codes, root }
    }

    /// The node source.
    pub fn nodes(&self) -> &N {
        &self.nodes
    }
}

impl<N: NodeSource + Sync, C: CodeSource> StateReader for TrieStateReader<N, C> {
    fn account(&self, address: Address) -> Result<Option<TrieAccount>, StateError> {
        phalanx_trie::get(&self.nodes, self.root, keccak256(address).as_slice())?
            .map(|rlp| decode_account(&rlp))
            .transpose()
    }

    fn storage(&self, address: Address, slot: U256) -> Result<U256, StateError> {
        let Some(account) = self.account(address)? else {
            return Ok(U256::ZERO);
        };
        if account.storage_root == EMPTY_ROOT {
            return Ok(U256::ZERO);
        }
        let key = keccak256(B256::from(slot));
        match phalanx_trie::get(&self.nodes, account.storage_root, key.as_slice())? {
            Some(rlp) => decode_storage(&rlp),
            None => Ok(U256::ZERO),
        }
    }

    fn code(&self, code_hash: B256) -> Result<Bytes, StateError> {
        if code_hash == revm::primitives::KECCAK_EMPTY {
            return Ok(Bytes::new());
        }
        self.codes
            .code(&code_hash)?
            .ok_or(StateError::MissingCode(code_hash))
    }
}

/// The empty state (no accounts): the parent of a genesis.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyState;

impl StateReader for EmptyState {
    fn account(&self, _: Address) -> Result<Option<TrieAccount>, StateError> {
        Ok(None)
    }
    fn storage(&self, _: Address, _: U256) -> Result<U256, StateError> {
        Ok(U256::ZERO)
    }
    fn code(&self, code_hash: B256) -> Result<Bytes, StateError> {
        Err(StateError::MissingCode(code_hash))
    }
}
