//! The SSZ containers of the chain (DESIGN.md "The chain").
//!
//! A block is ordered data: consensus checks signatures, structure and the shard commitments,
//! and never executes a transaction.
//!
//! * The slot's validator signs a [`Declaration`] naming the producer allowed to build on
//!   `parent_root`, the producer's share of fees, and the validator's RANDAO reveal. Two
//!   different declarations for one slot are slashable ([`DeclarationSlashing`]).
//! * The named producer signs a [`BlockHeader`] that embeds the signed declaration and commits
//!   to each shard by `shard_roots[i] = hash_tree_root(shards[i])` and to the rest of the body
//!   by `body_root = hash_tree_root(body)`.
//! * A [`SignedBlock`] carries the header, the body and the shards. The shards are kept beside
//!   the body, not inside it, so a server that owns shard `i` can check what it downloads
//!   (header + shard `i`) against the header alone.
//! * The block root is `hash_tree_root(BlockHeader)`.

use ssz_derive::{Decode, Encode};
use ssz_types::{BitList, VariableList};
use tree_hash::TreeHash;
use tree_hash_derive::TreeHash;
use typenum::Unsigned;

pub use phalanx_crypto::{PublicKeyBytes, SignatureBytes};

use crate::limits::{
    MaxAttestations, MaxBytesPerTransaction, MaxClaims, MaxExecutorOps, MaxFraudProofBytes,
    MaxFraudProofs, MaxShards, MaxSlashings, MaxTransactionsPerShard, MaxValidatorsPerCommittee,
};
use crate::primitives::{Epoch, ExecutorIndex, ProducerIndex, Root, Slot, ValidatorIndex};

/// One encoded EIP-2718 transaction, opaque to consensus.
pub type Transaction = VariableList<u8, MaxBytesPerTransaction>;

macro_rules! container {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode, TreeHash)]
        #[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty),*
        }
    };
}

container! {
    /// An FFG checkpoint: the block at the start of `epoch`.
    pub struct Checkpoint {
        /// Epoch.
        pub epoch: Epoch,
        /// Root of the epoch's boundary block.
        pub root: Root,
    }
}

container! {
    /// The slot's validator delegates building the block on `parent_root` to `producer`
    /// (seed 000). Irreversible: a second, different declaration for the slot is slashable.
    pub struct Declaration {
        /// The slot.
        pub slot: Slot,
        /// The validator proposing at this slot.
        pub proposer_index: ValidatorIndex,
        /// The only block the producer may extend.
        pub parent_root: Root,
        /// The producer allowed to build.
        pub producer: ProducerIndex,
        /// Producer's share of the block's fees, in basis points (0..=10000).
        pub fee_split_bps: u16,
        /// The proposer's RANDAO reveal: its signature over the slot's epoch.
        pub randao_reveal: SignatureBytes,
    }
}

container! {
    /// A declaration with the proposer's signature.
    pub struct SignedDeclaration {
        /// The declaration.
        pub message: Declaration,
        /// Proposer's BLS signature under the declaration domain.
        pub signature: SignatureBytes,
    }
}

container! {
    /// The header of a block, signed by its producer.
    pub struct BlockHeader {
        /// The slot (equals the declaration's).
        pub slot: Slot,
        /// The parent block root (equals the declaration's).
        pub parent_root: Root,
        /// The proposer's signed declaration naming this producer.
        pub declaration: SignedDeclaration,
        /// The producer that built the block.
        pub producer: ProducerIndex,
        /// `hash_tree_root` of each shard, in shard order.
        pub shard_roots: VariableList<Root, MaxShards>,
        /// `hash_tree_root` of the [`BlockBody`].
        pub body_root: Root,
    }
}

container! {
    /// A header with the producer's signature.
    pub struct SignedBlockHeader {
        /// The header.
        pub message: BlockHeader,
        /// Producer's BLS signature under the block-header domain.
        pub signature: SignatureBytes,
    }
}

/// One shard of a block: transactions executed in order, concurrently with other shards.
///
/// Its SSZ root is the one `#[derive(TreeHash)]` would give (a container of one field: the
/// root of the transaction list), computed with each transaction's bytes merkleized in one
/// piece ([`transaction_root`]): `ssz_types` hashes a byte list by writing it to its hasher a
/// byte at a time (a 150-transfer shard: 0.63–0.73 ms that way, 0.41–0.48 ms this way;
/// property test `shard_root_is_the_derived_one` holds the two equal).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Shard {
    /// Encoded EIP-2718 transactions.
    pub transactions: VariableList<Transaction, MaxTransactionsPerShard>,
}

/// SSZ root of one transaction as a `ByteList[MAX_BYTES_PER_TRANSACTION]`:
/// `mix_in_length(merkleize(pack(bytes), limit), len)`.
pub fn transaction_root(tx: &[u8]) -> Root {
    let limit = MaxBytesPerTransaction::USIZE.div_ceil(tree_hash::BYTES_PER_CHUNK);
    tree_hash::mix_in_length(&tree_hash::merkle_root(tx, limit), tx.len())
}

impl TreeHash for Shard {
    fn tree_hash_type() -> tree_hash::TreeHashType {
        tree_hash::TreeHashType::Container
    }

    fn tree_hash_packed_encoding(&self) -> tree_hash::PackedEncoding {
        unreachable!("Struct should never be packed.")
    }

    fn tree_hash_packing_factor() -> usize {
        unreachable!("Struct should never be packed.")
    }

    fn tree_hash_root(&self) -> Root {
        let mut hasher = tree_hash::MerkleHasher::with_leaves(MaxTransactionsPerShard::USIZE);
        for tx in self.transactions.iter() {
            if hasher.write(transaction_root(tx).as_slice()).is_err() {
                // Cannot happen (the list is bounded by the same limit); the slow path is
                // the definition.
                return self.transactions.tree_hash_root();
            }
        }
        match hasher.finish() {
            Ok(root) => tree_hash::mix_in_length(&root, self.transactions.len()),
            Err(_) => self.transactions.tree_hash_root(),
        }
    }
}

container! {
    /// What an attester votes for: an LMD-GHOST head and an FFG source → target link.
    pub struct AttestationData {
        /// The slot of the attester's committee.
        pub slot: Slot,
        /// The committee's index within the slot.
        pub committee_index: u64,
        /// The head block the attester sees.
        pub head_root: Root,
        /// FFG source (the attester's justified checkpoint).
        pub source: Checkpoint,
        /// FFG target (the current epoch's boundary).
        pub target: Checkpoint,
    }
}

container! {
    /// Aggregated attestation of one committee: equal data, BLS-aggregated signatures.
    pub struct Attestation {
        /// Which committee members signed.
        pub aggregation_bits: BitList<MaxValidatorsPerCommittee>,
        /// The common vote.
        pub data: AttestationData,
        /// Aggregate signature of the members set in `aggregation_bits`.
        pub signature: SignatureBytes,
    }
}

container! {
    /// An attestation with explicit, sorted validator indices (slashing evidence).
    pub struct IndexedAttestation {
        /// Sorted indices of the signers.
        pub attesting_indices: VariableList<ValidatorIndex, MaxValidatorsPerCommittee>,
        /// The vote.
        pub data: AttestationData,
        /// Aggregate signature.
        pub signature: SignatureBytes,
    }
}

container! {
    /// An executor's claim about the result of executing a block in one execution domain
    /// (seed 003).
    pub struct Claim {
        /// Height of the claimed block.
        pub height: u64,
        /// Execution domain (0 = EVM).
        pub domain: u64,
        /// Post-state root of the parent block in this domain.
        pub prev_state_root: Root,
        /// Meta state root (over all domains) after the parent block.
        pub prior_meta_state_root: Root,
        /// Root of the claimed block.
        pub block_hash: Root,
        /// Root of each shard's effects, in shard order.
        pub effects_roots: VariableList<Root, MaxShards>,
        /// Post-state root of this block in this domain.
        pub post_state_root: Root,
    }
}

container! {
    /// A claim with its bonded executor's signature.
    pub struct SignedClaim {
        /// The executor.
        pub executor: ExecutorIndex,
        /// The claim.
        pub message: Claim,
        /// Executor's BLS signature under the claim domain.
        pub signature: SignatureBytes,
    }
}

container! {
    /// A producer bonds a new executor out of its own bond (seed 003's deposit, as a block
    /// operation: see `phalanx_consensus::executors`).
    pub struct ExecutorDeposit {
        /// The new executor's BLS key.
        pub pubkey: PublicKeyBytes,
        /// Execution-layer address its rewards, and its bond once withdrawn, are due to.
        pub reward_address: alloy_primitives::Address,
        /// The bond, in Gwei, moved out of the producer's bond.
        pub amount: u64,
        /// The producer whose bond pays for it.
        pub producer: ProducerIndex,
    }
}

container! {
    /// A deposit signed twice: by the new executor's key (it holds the key and consents) and
    /// by the funding producer's key (it moves the value).
    pub struct SignedExecutorDeposit {
        /// The deposit.
        pub message: ExecutorDeposit,
        /// The new executor's signature under the executor-deposit domain.
        pub executor_signature: SignatureBytes,
        /// The producer's signature under the same domain.
        pub producer_signature: SignatureBytes,
    }
}

container! {
    /// An executor asks to withdraw: its claims weigh nothing from the including block's epoch
    /// on; its bond stays slashable for the withdrawal delay, then is released.
    pub struct ExecutorExit {
        /// The executor.
        pub executor: ExecutorIndex,
        /// Not valid in a block of an earlier epoch.
        pub epoch: Epoch,
    }
}

container! {
    /// An exit signed by the executor's key.
    pub struct SignedExecutorExit {
        /// The exit.
        pub message: ExecutorExit,
        /// The executor's signature under the executor-exit domain.
        pub signature: SignatureBytes,
    }
}

container! {
    /// Two different declarations signed by one proposer for one slot.
    pub struct DeclarationSlashing {
        /// First declaration.
        pub declaration_1: SignedDeclaration,
        /// Second, different declaration for the same slot.
        pub declaration_2: SignedDeclaration,
    }
}

container! {
    /// Two attestations that form an FFG double vote or surround vote.
    pub struct AttesterSlashing {
        /// First attestation.
        pub attestation_1: IndexedAttestation,
        /// Second attestation.
        pub attestation_2: IndexedAttestation,
    }
}

/// Slashing evidence of either kind, as one message (the `slashing` gossip topic): an SSZ
/// union, selector 0 for a double declaration, 1 for a double or surround vote.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[ssz(enum_behaviour = "union")]
pub enum Evidence {
    /// Two declarations for one slot.
    Declaration(DeclarationSlashing),
    /// An FFG double or surround vote.
    Attester(AttesterSlashing),
}

container! {
    /// Evidence against a producer or an executor that only execution can judge: consensus
    /// passes `payload` to a verifier the execution side implements.
    pub struct FraudProof {
        /// What is proven (see [`FraudProofKind`]).
        pub kind: u8,
        /// The block the proof is about.
        pub block_root: Root,
        /// The producer or executor index accused.
        pub accused: u64,
        /// Encoded proof (shards, witnesses); its format belongs to `kind`.
        pub payload: VariableList<u8, MaxFraudProofBytes>,
    }
}

container! {
    /// The payload of a `WrongClaim` [`FraudProof`]: the accused claim and the proof of
    /// execution showing it wrong (SSZ of `phalanx_execution::proof::ExecutionProof`, opaque
    /// to consensus, which checks the claim's signature and leaves re-execution to the
    /// verifier).
    pub struct WrongClaimEvidence {
        /// The claim.
        pub claim: SignedClaim,
        /// The encoded proof of execution.
        pub execution_proof: VariableList<u8, MaxFraudProofBytes>,
    }
}

/// The kinds of [`FraudProof`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FraudProofKind {
    /// Two shards of one block wrote the same key: the producer built a void block.
    ShardConflict = 0,
    /// An executor's claim disagrees with re-execution of the block.
    WrongClaim = 1,
}

impl TryFrom<u8> for FraudProofKind {
    type Error = u8;
    fn try_from(value: u8) -> Result<Self, u8> {
        match value {
            0 => Ok(Self::ShardConflict),
            1 => Ok(Self::WrongClaim),
            other => Err(other),
        }
    }
}

container! {
    /// Everything in a block except the shards.
    pub struct BlockBody {
        /// Aggregated attestations.
        pub attestations: VariableList<Attestation, MaxAttestations>,
        /// Executors' claims.
        pub claims: VariableList<SignedClaim, MaxClaims>,
        /// Double-declaration evidence.
        pub declaration_slashings: VariableList<DeclarationSlashing, MaxSlashings>,
        /// Double/surround-vote evidence.
        pub attester_slashings: VariableList<AttesterSlashing, MaxSlashings>,
        /// Fraud proofs against producers and executors.
        pub fraud_proofs: VariableList<FraudProof, MaxFraudProofs>,
        /// New executors' deposits.
        pub executor_deposits: VariableList<SignedExecutorDeposit, MaxExecutorOps>,
        /// Executors' exits.
        pub executor_exits: VariableList<SignedExecutorExit, MaxExecutorOps>,
    }
}

container! {
    /// A whole block: signed header, body and shards.
    pub struct SignedBlock {
        /// The signed header.
        pub header: SignedBlockHeader,
        /// The body (`header.body_root` commits to it).
        pub body: BlockBody,
        /// The shards (`header.shard_roots` commits to them).
        pub shards: VariableList<Shard, MaxShards>,
    }
}

container! {
    /// One entry of a registry (validators, producers or executors): a BLS key, the stake or
    /// bond behind it, and where its rewards go.
    pub struct RegistryEntry {
        /// BLS public key.
        pub pubkey: PublicKeyBytes,
        /// Stake (validators) or bond (producers, executors), in Gwei.
        pub amount: u64,
        /// Execution-layer address credited with rewards.
        pub reward_address: alloy_primitives::Address,
    }
}

impl Default for BlockBody {
    /// A body carrying nothing.
    fn default() -> Self {
        Self {
            attestations: VariableList::empty(),
            claims: VariableList::empty(),
            declaration_slashings: VariableList::empty(),
            attester_slashings: VariableList::empty(),
            fraud_proofs: VariableList::empty(),
            executor_deposits: VariableList::empty(),
            executor_exits: VariableList::empty(),
        }
    }
}

impl BlockHeader {
    /// The block root: `hash_tree_root` of the header.
    pub fn root(&self) -> Root {
        self.tree_hash_root()
    }
}

impl SignedBlock {
    /// The block root.
    pub fn root(&self) -> Root {
        self.header.message.root()
    }

    /// `hash_tree_root` of every shard, as `header.shard_roots` must hold them.
    pub fn compute_shard_roots(&self) -> Vec<Root> {
        self.shards.iter().map(TreeHash::tree_hash_root).collect()
    }
}

impl Shard {
    /// A shard from encoded transactions; fails if a limit is exceeded.
    pub fn from_transactions(txs: Vec<Vec<u8>>) -> Result<Self, ssz_types::Error> {
        let txs = txs
            .into_iter()
            .map(Transaction::new)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            transactions: VariableList::new(txs)?,
        })
    }
}
