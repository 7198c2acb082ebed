//! Verified reads (DESIGN.md: reads served by untrusted full nodes, checked by Merkle proofs
//! against the state root the client believes): what an `eth_getBalance`,
//! `eth_getTransactionCount`, `eth_getCode` or `eth_getStorageAt` answer from a light client
//! rests on. Each check takes the EIP-1186 pieces a full node sends (`eth_getProof`: the
//! account proof, the storage proofs; the code by `eth_getCode`) and returns the value only if
//! it follows from the believed root; otherwise a typed error says why, as Helios does. A
//! height the client holds no root for is an error too, never a guess.

use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use alloy_trie::TrieAccount;

use crate::client::LightClient;

/// Why a read could not be verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The client believes no root at that height (not reached, or disputed).
    #[error("no verified state root at height {0}")]
    NoRoot(u64),
    /// The proof does not lead from the root to the key.
    #[error("proof does not verify against the believed root: {0}")]
    Proof(String),
    /// The proven leaf does not decode.
    #[error("malformed proven value: {0}")]
    Malformed(String),
    /// Code whose hash is not the account's code hash.
    #[error("code hash {got} is not the account's {expected}")]
    CodeMismatch {
        /// Hash of the code sent.
        got: B256,
        /// The proven code hash.
        expected: B256,
    },
}

/// An account as proven (absent accounts read as empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProvenAccount {
    /// Nonce.
    pub nonce: u64,
    /// Balance, wei.
    pub balance: U256,
    /// Storage root.
    pub storage_root: B256,
    /// Code hash.
    pub code_hash: B256,
}

/// `address`'s account under state root `root`, from `account_proof` (EIP-1186
/// `accountProof`); `None` when the proof shows it absent.
pub fn verify_account_at(
    root: B256,
    address: Address,
    account_proof: &[Bytes],
) -> Result<Option<TrieAccount>, ReadError> {
    let leaf = phalanx_trie::verify_proof(root, keccak256(address).as_slice(), account_proof)
        .map_err(|e| ReadError::Proof(e.to_string()))?;
    leaf.map(|rlp| {
        alloy_rlp::Decodable::decode(&mut rlp.as_slice())
            .map_err(|e: alloy_rlp::Error| ReadError::Malformed(e.to_string()))
    })
    .transpose()
}

impl From<Option<TrieAccount>> for ProvenAccount {
    fn from(a: Option<TrieAccount>) -> Self {
        match a {
            None => ProvenAccount {
                storage_root: phalanx_trie::EMPTY_ROOT,
                code_hash: alloy_primitives::KECCAK256_EMPTY,
                ..ProvenAccount::default()
            },
            Some(a) => ProvenAccount {
                nonce: a.nonce,
                balance: a.balance,
                storage_root: a.storage_root,
                code_hash: a.code_hash,
            },
        }
    }
}

impl LightClient {
    /// `address`'s account after block `height`, from `account_proof` (EIP-1186
    /// `accountProof`).
    pub fn verify_account(
        &self,
        height: u64,
        address: Address,
        account_proof: &[Bytes],
    ) -> Result<ProvenAccount, ReadError> {
        let root = self.root_at(height).ok_or(ReadError::NoRoot(height))?;
        verify_account_at(root, address, account_proof).map(ProvenAccount::from)
    }

    /// A storage slot of a proven account, from its `storageProof` entry.
    pub fn verify_storage(
        account: &ProvenAccount,
        slot: U256,
        storage_proof: &[Bytes],
    ) -> Result<U256, ReadError> {
        let key = keccak256(B256::from(slot));
        match phalanx_trie::verify_proof(account.storage_root, key.as_slice(), storage_proof)
            .map_err(|e| ReadError::Proof(e.to_string()))?
        {
            None => Ok(U256::ZERO),
            Some(rlp) => alloy_rlp::Decodable::decode(&mut rlp.as_slice())
                .map_err(|e: alloy_rlp::Error| ReadError::Malformed(e.to_string())),
        }
    }

    /// Code sent for a proven account: accepted only if it hashes to the account's code hash.
    pub fn verify_code(account: &ProvenAccount, code: Bytes) -> Result<Bytes, ReadError> {
        let got = keccak256(&code);
        if got == account.code_hash {
            Ok(code)
        } else {
            Err(ReadError::CodeMismatch {
                got,
                expected: account.code_hash,
            })
        }
    }
}
