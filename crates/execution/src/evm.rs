//! Running transactions of one shard on revm.
//!
//! A shard runs its transactions in order on an overlay over the parent state: every read
//! that the shard has not written itself sees the parent (DESIGN.md: across shards every read
//! sees the parent block's post-state). After each transaction its state changes are folded
//! into the overlay with revm's own rules (self-destruct, creation, EIP-161 removal of touched
//! empty accounts); at the end the overlay is reduced to the shard's net [`Changes`].
//!
//! **Fees** ([`FeeMode::Deferred`], phalanx's rule): the block's beneficiary is the reserved
//! address [`FEE_SINK`]. Whatever a transaction pays it (priority fees, and transfers to
//! `COINBASE`) is summed into the shard's fees and the sink itself is never written, so fee
//! credits never make two shards conflict; the block credits the sum after the merge.
//! [`FeeMode::PerTransaction`] is Ethereum's behaviour (the beneficiary is credited by each
//! transaction), used to run Ethereum's state tests.

use std::collections::{BTreeMap, HashMap};

use alloy_primitives::{Address, B256, Bytes, Log, U256, address};
use revm::context::result::{EVMError, ExecResultAndState, ExecutionResult, InvalidTransaction};
use revm::context::{BlockEnv, CfgEnv, Context, Journal, TxEnv};
use revm::handler::{MainBuilder, MainContext, MainnetEvm};
use revm::primitives::KECCAK_EMPTY;
use revm::primitives::hardfork::SpecId;
use revm::state::{Account, AccountInfo, Bytecode, EvmState};
use revm::{Database, ExecuteEvm};

use crate::changes::{AccountChange, AccountFields, Changes};
use crate::error::{ExecError, StateError};
use crate::reader::StateReader;

/// Beneficiary of every phalanx block: fees paid to it are collected per shard and credited
/// after the merge. Nobody holds its key; it is never written to the state.
pub const FEE_SINK: Address = address!("00000000000000000000000000000000000fee00");

/// How the block's beneficiary is paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeeMode {
    /// phalanx: fees accumulate per shard and are credited after the merge.
    Deferred,
    /// Ethereum: every transaction credits the beneficiary.
    PerTransaction,
}

/// The environment of a block, as the EVM sees it.
#[derive(Debug, Clone)]
pub struct ExecEnv {
    /// Fork rules (phalanx runs Cancun).
    pub spec: SpecId,
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// Block number.
    pub number: u64,
    /// Unix timestamp.
    pub timestamp: u64,
    /// Gas limit the EVM enforces per transaction (a shard's limit).
    pub gas_limit: u64,
    /// EIP-1559 base fee (wei).
    pub basefee: u64,
    /// `PREVRANDAO`.
    pub prevrandao: B256,
    /// `COINBASE`: [`FEE_SINK`] in phalanx blocks.
    pub beneficiary: Address,
    /// EIP-4844 excess blob gas, if blobs are priced.
    pub excess_blob_gas: Option<u64>,
    /// `BLOCKHASH` answers by number (missing numbers read as zero).
    pub block_hashes: BTreeMap<u64, B256>,
    /// How fees are paid.
    pub fee_mode: FeeMode,
}

impl ExecEnv {
    fn cfg(&self) -> CfgEnv {
        let mut cfg = CfgEnv::new_with_spec(self.spec);
        cfg.chain_id = self.chain_id;
        cfg.set_max_blobs_per_tx(6);
        cfg
    }

    fn block(&self, cfg: &CfgEnv) -> BlockEnv {
        let mut block = BlockEnv {
            number: U256::from(self.number),
            beneficiary: self.beneficiary,
            timestamp: U256::from(self.timestamp),
            gas_limit: self.gas_limit,
            basefee: self.basefee,
            prevrandao: Some(self.prevrandao),
            ..BlockEnv::default()
        };
        if let Some(excess) = self.excess_blob_gas {
            block.set_blob_excess_gas_and_price(excess, cfg.blob_base_fee_update_fraction());
        }
        block
    }
}

/// One account in a shard's overlay.
#[derive(Debug, Clone, Default)]
struct OverlayAccount {
    /// Current fields; `None` = does not exist.
    fields: Option<AccountFields>,
    /// Storage wiped since the parent.
    storage_cleared: bool,
    /// Slots written since the parent (or since the wipe).
    storage: HashMap<U256, U256>,
}

/// The revm database of a shard: its own writes over the parent state.
pub struct ShardDb<'a, R> {
    parent: &'a R,
    accounts: HashMap<Address, OverlayAccount>,
    codes: HashMap<B256, Bytes>,
    block_hashes: &'a BTreeMap<u64, B256>,
}

fn fields_of(info: &AccountInfo) -> AccountFields {
    AccountFields {
        nonce: info.nonce,
        balance: info.balance,
        code_hash: info.code_hash,
    }
}

impl<'a, R: StateReader> ShardDb<'a, R> {
    fn new(parent: &'a R, block_hashes: &'a BTreeMap<u64, B256>) -> Self {
        Self {
            parent,
            accounts: HashMap::new(),
            codes: HashMap::new(),
            block_hashes,
        }
    }

    fn parent_fields(&self, address: Address) -> Result<Option<AccountFields>, StateError> {
        Ok(self.parent.account(address)?.map(|a| AccountFields {
            nonce: a.nonce,
            balance: a.balance,
            code_hash: a.code_hash,
        }))
    }

    fn entry(&mut self, address: Address) -> Result<&mut OverlayAccount, StateError> {
        if !self.accounts.contains_key(&address) {
            let fields = self.parent_fields(address)?;
            self.accounts.insert(
                address,
                OverlayAccount {
                    fields,
                    ..Default::default()
                },
            );
        }
        self.accounts
            .get_mut(&address)
            .ok_or_else(|| StateError::Database("overlay entry vanished".into()))
    }

    /// Folds one transaction's state changes into the overlay (revm's commit rules).
    fn commit_tx(&mut self, state: EvmState, skip: Option<Address>) -> Result<(), StateError> {
        for (address, account) in state {
            if !account.is_touched() || Some(address) == skip {
                continue;
            }
            self.commit_account(address, account)?;
        }
        Ok(())
    }

    fn commit_account(&mut self, address: Address, account: Account) -> Result<(), StateError> {
        if let Some(code) = &account.info.code
            && account.info.code_hash != KECCAK_EMPTY
        {
            self.codes
                .entry(account.info.code_hash)
                .or_insert_with(|| code.original_bytes());
        }
        let is_destroyed = account.is_selfdestructed();
        let is_created = account.is_created();
        let is_empty = account.is_empty();
        let entry = self.entry(address)?;
        if is_destroyed || (!is_created && is_empty) {
            // Self-destructed, or touched while empty (EIP-161): the account is removed.
            entry.fields = None;
            entry.storage_cleared = true;
            entry.storage.clear();
            return Ok(());
        }
        if is_created {
            entry.storage_cleared = true;
            entry.storage.clear();
            entry
                .storage
                .extend(account.storage.iter().map(|(k, v)| (*k, v.present_value)));
        } else {
            entry.storage.extend(
                account
                    .changed_storage_slots()
                    .map(|(k, v)| (*k, v.present_value)),
            );
        }
        entry.fields = Some(fields_of(&account.info));
        Ok(())
    }

    /// The overlay reduced to net changes against the parent.
    fn net_changes(&self) -> Result<Changes, StateError> {
        let mut out = Changes::default();
        for (address, entry) in &self.accounts {
            let parent = self.parent.account(*address)?;
            let parent_fields = parent.map(|a| AccountFields {
                nonce: a.nonce,
                balance: a.balance,
                code_hash: a.code_hash,
            });
            // Wiping storage that was already empty changes nothing.
            let had_storage = parent.is_some_and(|a| a.storage_root != phalanx_trie::EMPTY_ROOT);
            let cleared = entry.storage_cleared && had_storage;
            let mut change = AccountChange {
                storage_cleared: cleared,
                ..Default::default()
            };
            if cleared || entry.fields != parent_fields {
                change.fields = Some(entry.fields);
            }
            if entry.fields.is_some() {
                for (slot, value) in &entry.storage {
                    let before = if entry.storage_cleared {
                        U256::ZERO
                    } else {
                        self.parent.storage(*address, *slot)?
                    };
                    if *value != before {
                        change.storage.insert(*slot, *value);
                    }
                }
            }
            if !change.is_empty() {
                if let Some(Some(f)) = change.fields
                    && let Some(code) = self.codes.get(&f.code_hash)
                {
                    out.codes.insert(f.code_hash, code.clone());
                }
                out.accounts.insert(*address, change);
            }
        }
        Ok(out)
    }
}

impl<R: StateReader> Database for ShardDb<'_, R> {
    type Error = StateError;

    fn basic(&mut self, address: Address) -> Result<Option<AccountInfo>, StateError> {
        let fields = match self.accounts.get(&address) {
            Some(entry) => entry.fields,
            None => self.parent_fields(address)?,
        };
        // `AccountInfo::default()` carries empty code; leave it `None` so revm loads the real
        // code through `code_by_hash`.
        Ok(fields.map(|f| AccountInfo {
            balance: f.balance,
            nonce: f.nonce,
            code_hash: f.code_hash,
            code: None,
            ..Default::default()
        }))
    }

    fn code_by_hash(&mut self, code_hash: B256) -> Result<Bytecode, StateError> {
        if code_hash == KECCAK_EMPTY {
            return Ok(Bytecode::default());
        }
        let bytes = match self.codes.get(&code_hash) {
            Some(code) => code.clone(),
            None => self.parent.code(code_hash)?,
        };
        Ok(
            Bytecode::new_raw_checked(bytes.clone())
                .unwrap_or_else(|_| Bytecode::new_legacy(bytes)),
        )
    }

    fn storage(&mut self, address: Address, slot: U256) -> Result<U256, StateError> {
        if let Some(entry) = self.accounts.get(&address) {
            if let Some(value) = entry.storage.get(&slot) {
                return Ok(*value);
            }
            if entry.storage_cleared || entry.fields.is_none() {
                return Ok(U256::ZERO);
            }
        }
        self.parent.storage(address, slot)
    }

    fn block_hash(&mut self, number: u64) -> Result<B256, StateError> {
        Ok(self.block_hashes.get(&number).copied().unwrap_or_default())
    }
}

type ShardEvm<'a, R> =
    MainnetEvm<Context<BlockEnv, TxEnv, CfgEnv, ShardDb<'a, R>, Journal<ShardDb<'a, R>>, ()>>;

/// What became of one transaction.
#[derive(Debug, Clone)]
pub enum TxOutcome {
    /// It ran (successfully, reverted or halted); its effects are in the overlay.
    Executed(ExecutionResult),
    /// It could not run: nothing changed.
    Invalid(InvalidTransaction),
}

/// A shard being executed.
pub struct ShardRun<'a, R: StateReader> {
    evm: ShardEvm<'a, R>,
    fee_mode: FeeMode,
    beneficiary: Address,
    fees: U256,
}

impl<'a, R: StateReader> ShardRun<'a, R> {
    /// Starts a shard over `parent`.
    pub fn new(parent: &'a R, env: &'a ExecEnv) -> Self {
        let cfg = env.cfg();
        let block = env.block(&cfg);
        let evm = Context::mainnet()
            .with_db(ShardDb::new(parent, &env.block_hashes))
            .with_cfg(cfg)
            .with_block(block)
            .build_mainnet();
        Self {
            evm,
            fee_mode: env.fee_mode,
            beneficiary: env.beneficiary,
            fees: U256::ZERO,
        }
    }

    /// Runs one transaction. An invalid transaction changes nothing; an error is about the
    /// state (e.g. a missing witness node), never about the transaction.
    pub fn transact(&mut self, tx: TxEnv) -> Result<TxOutcome, ExecError> {
        match self.evm.transact(tx) {
            Ok(ExecResultAndState { result, mut state }) => {
                let skip = match self.fee_mode {
                    FeeMode::Deferred => {
                        if let Some(sink) = state.remove(&self.beneficiary) {
                            let paid = sink
                                .info
                                .balance
                                .saturating_sub(sink.original_info().balance);
                            self.fees = self.fees.saturating_add(paid);
                        }
                        Some(self.beneficiary)
                    }
                    FeeMode::PerTransaction => None,
                };
                self.evm
                    .ctx
                    .journaled_state
                    .database
                    .commit_tx(state, skip)?;
                Ok(TxOutcome::Executed(result))
            }
            Err(EVMError::Transaction(invalid)) => Ok(TxOutcome::Invalid(invalid)),
            Err(EVMError::Database(e)) => Err(ExecError::State(e)),
            Err(other) => Err(ExecError::Evm(other.to_string())),
        }
    }

    /// Fees collected so far ([`FeeMode::Deferred`] only).
    pub fn fees(&self) -> U256 {
        self.fees
    }

    /// The shard's net changes against the parent.
    pub fn changes(&self) -> Result<Changes, StateError> {
        self.evm.ctx.journaled_state.database.net_changes()
    }
}

/// `keccak256(rlp(logs))`, the logs hash of Ethereum's state tests.
pub fn logs_hash(logs: &[Log]) -> B256 {
    let mut out = Vec::with_capacity(alloy_rlp::list_length(logs));
    alloy_rlp::encode_list(logs, &mut out);
    alloy_primitives::keccak256(&out)
}

/// Why a transaction was skipped: it changes nothing and uses no gas.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    /// Not an EIP-2718 transaction.
    #[error("undecodable: {0}")]
    Undecodable(String),
    /// The signature does not recover a sender.
    #[error("bad signature")]
    BadSignature,
    /// Missing or wrong EIP-155 chain id.
    #[error("wrong chain id: expected {expected}, got {got:?}")]
    WrongChainId {
        /// The chain's id.
        expected: u64,
        /// The transaction's.
        got: Option<u64>,
    },
    /// A transaction type phalanx does not run (blob, set-code).
    #[error("transaction type {0} is not supported")]
    UnsupportedType(u8),
    /// Nonce is not the sender's next nonce.
    #[error("bad nonce: account is at {expected}, transaction has {got}")]
    BadNonce {
        /// The account's nonce.
        expected: u64,
        /// The transaction's.
        got: u64,
    },
    /// The sender cannot pay gas limit × fee + value.
    #[error("cannot pay: {0}")]
    CannotPay(String),
    /// The gas limit is below the intrinsic gas.
    #[error("intrinsic gas too low: {0}")]
    IntrinsicGasTooLow(String),
    /// The fee cap is below the base fee, or the tip above the cap.
    #[error("fee too low: {0}")]
    FeeTooLow(String),
    /// EIP-3607: the sender has code.
    #[error("sender has code (EIP-3607)")]
    SenderHasCode,
    /// Any other rule of transaction validity.
    #[error("invalid: {0}")]
    Invalid(String),
}

impl From<InvalidTransaction> for SkipReason {
    fn from(e: InvalidTransaction) -> Self {
        match e {
            InvalidTransaction::NonceTooHigh { tx, state }
            | InvalidTransaction::NonceTooLow { tx, state } => SkipReason::BadNonce {
                expected: state,
                got: tx,
            },
            InvalidTransaction::LackOfFundForMaxFee { .. }
            | InvalidTransaction::OverflowPaymentInTransaction => {
                SkipReason::CannotPay(e.to_string())
            }
            InvalidTransaction::CallGasCostMoreThanGasLimit { .. }
            | InvalidTransaction::GasFloorMoreThanGasLimit { .. } => {
                SkipReason::IntrinsicGasTooLow(e.to_string())
            }
            InvalidTransaction::GasPriceLessThanBasefee
            | InvalidTransaction::PriorityFeeGreaterThanMaxFee => {
                SkipReason::FeeTooLow(e.to_string())
            }
            InvalidTransaction::RejectCallerWithCode => SkipReason::SenderHasCode,
            InvalidTransaction::InvalidChainId | InvalidTransaction::MissingChainId => {
                SkipReason::Invalid(e.to_string())
            }
            other => SkipReason::Invalid(other.to_string()),
        }
    }
}

/// The EVM transaction of a decoded, recovered envelope; blob (type 3) and set-code (type 4)
/// transactions are not run.
pub fn tx_env(
    tx: &alloy_consensus::TxEnvelope,
    sender: Address,
    chain_id: u64,
) -> Result<TxEnv, SkipReason> {
    use alloy_consensus::Transaction as _;
    use alloy_consensus::TxEnvelope as E;
    if tx.chain_id() != Some(chain_id) {
        return Err(SkipReason::WrongChainId {
            expected: chain_id,
            got: tx.chain_id(),
        });
    }
    let ty = tx.tx_type() as u8;
    if matches!(tx, E::Eip4844(_) | E::Eip7702(_)) {
        return Err(SkipReason::UnsupportedType(ty));
    }
    Ok(TxEnv {
        tx_type: ty,
        caller: sender,
        gas_limit: tx.gas_limit(),
        gas_price: tx.max_fee_per_gas(),
        kind: tx.kind(),
        value: tx.value(),
        data: tx.input().clone(),
        nonce: tx.nonce(),
        chain_id: tx.chain_id(),
        access_list: tx.access_list().cloned().unwrap_or_default(),
        gas_priority_fee: tx.max_priority_fee_per_gas(),
        ..TxEnv::default()
    })
}
