//! What a light client asks an untrusted full node over HTTP, beside its Ethereum JSON-RPC
//! (`eth_getProof` and `eth_getCode` for verified reads):
//!
//! - `GET /phalanx/v1/light/bootstrap` → [`Bootstrap`]: the node's suggestion of a checkpoint.
//!   Only used when the operator gave none, with a warning: whoever answers it decides what
//!   the client trusts (weak subjectivity).
//! - `GET /phalanx/v1/light/updates?from=H&claims_from=C&limit=N` → [`Updates`]: the
//!   executed headers from height `H` (at most `N`, at most [`MAX_HEADERS`]) and the
//!   executors' signed claims the node holds for heights `≥ C` (at most [`MAX_CLAIMS`]), each
//!   SSZ-encoded in hex, with the signed consensus header each execution header derives from.
//!   The client checks those signatures, derives every execution header itself
//!   ([`crate::headers`]), takes headers as final only on attestations (below) and checks
//!   every claim's signature, so the node can only withhold, never forge. It also says up to
//!   which height it can prove state.
//! - `GET /phalanx/v1/light/proof/{height}?execute=I,J` → the block's proof of execution
//!   (`phalanx_execution::proof::ExecutionProof`, SSZ, `application/octet-stream`), or 404.
//!   With `execute`, only the shards listed are given as transactions and every other shard
//!   as its effects (the client agrees on those: `client` rule 7); `execute=` (empty) gives
//!   every shard as effects; without it, every shard is re-executable. A bad list is a 400.
//!
//! - `GET /phalanx/v1/light/finality?from=E` → [`FinalityUpdate`]: aggregated attestations
//!   whose target epoch is `E` or later (SSZ in hex, at most [`MAX_ATTESTATIONS`]); the
//!   client checks each against the committee's keys and runs Casper FFG itself
//!   ([`crate::finality`]), taking headers as final only up to the checkpoint they finalize.
//!
//! And for executors (`phalanx executor`), which follow the same headers:
//!
//! - `GET /phalanx/v1/light/shards/{height}` → [`BlockShards`]: the block's shards (SSZ in
//!   hex), checked by the executor against the header's shard roots; 404 if not held.
//! - `POST /phalanx/v1/light/claims` with [`ClaimsSubmission`] → [`ClaimsAnswer`]: signed
//!   claims for the node to check (bonded signer, valid signature, a block it holds) and pass
//!   on to the light clients it serves.
//! - `GET /phalanx/v1/executors` → [`ExecutorsAnswer`]: the executor registry at the node's
//!   head (an executor bonded by deposit learns its index here; the chain checks every claim's
//!   signature against that index, so a node that lies only gets the executor's claims
//!   refused).
//! - `POST /phalanx/v1/executors/operations` with [`ExecutorOpsSubmission`] →
//!   [`ExecutorOpsAnswer`]: signed executor deposits and exits for the node's producers to
//!   carry (`phalanx_consensus::executor_ops`), each checked against its head first.

use alloy_primitives::{B256, Bytes};
use phalanx_execution::header::ExecHeader;
use serde::{Deserialize, Serialize};

use crate::client::LightHeader;

/// Path of the bootstrap.
pub const BOOTSTRAP_PATH: &str = "/phalanx/v1/light/bootstrap";
/// Path of the updates.
pub const UPDATES_PATH: &str = "/phalanx/v1/light/updates";
/// Path of the proof of execution of `{height}` (axum syntax).
pub const PROOF_ROUTE: &str = "/phalanx/v1/light/proof/{height}";

/// Path of the finality attestations.
pub const FINALITY_PATH: &str = "/phalanx/v1/light/finality";

/// Attestations per finality answer, at most.
pub const MAX_ATTESTATIONS: usize = 2048;

/// The query of a finality request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalityQuery {
    /// Lowest target epoch wanted.
    pub from: u64,
}

/// Aggregated attestations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalityUpdate {
    /// SSZ of each `Attestation`, by target epoch.
    pub attestations: Vec<Bytes>,
}

/// Path of the shards of `{height}` (axum syntax).
pub const SHARDS_ROUTE: &str = "/phalanx/v1/light/shards/{height}";
/// Path claims are posted to.
pub const CLAIMS_PATH: &str = "/phalanx/v1/light/claims";
/// The gossip topic of executors' claims: one SSZ `SignedClaim` per message. A node checks
/// each as it checks posted ones; the author of one that does not decode or check is scored
/// down (`phalanx_net::scoring`), a claim about a block the node does not hold costing
/// little (it may be a race), garbage costing much.
pub const CLAIMS_TOPIC: &str = "claims";

/// Path of the executor registry.
pub const EXECUTORS_PATH: &str = "/phalanx/v1/executors";
/// Path executor deposits and exits are posted to.
pub const EXECUTOR_OPS_PATH: &str = "/phalanx/v1/executors/operations";

/// One executor of the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorInfo {
    /// Its index (what its claims name).
    pub index: u64,
    /// Its BLS key (48 bytes).
    pub pubkey: Bytes,
    /// Bond, Gwei.
    pub bond: u64,
    /// Slashed.
    pub slashed: bool,
    /// The epoch it asked to withdraw at.
    pub exit_epoch: Option<u64>,
}

/// The executor registry at the node's head.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorsAnswer {
    /// Executors not yet released, by index.
    pub executors: Vec<ExecutorInfo>,
}

/// Executor operations to carry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorOpsSubmission {
    /// SSZ of each `SignedExecutorDeposit`.
    #[serde(default)]
    pub deposits: Vec<Bytes>,
    /// SSZ of each `SignedExecutorExit`.
    #[serde(default)]
    pub exits: Vec<Bytes>,
}

/// What the node did with them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorOpsAnswer {
    /// Operations handed to the producers.
    pub accepted: usize,
    /// Why each other one was refused.
    pub refused: Vec<String>,
}

/// The path of the shards at `height`.
pub fn shards_path(height: u64) -> String {
    format!("/phalanx/v1/light/shards/{height}")
}

/// A block's shards.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockShards {
    /// SSZ of each `Shard`, in shard order.
    pub shards: Vec<Bytes>,
}

/// Claims an executor posts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimsSubmission {
    /// SSZ of each `SignedClaim`.
    pub claims: Vec<Bytes>,
}

/// What the node did with them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimsAnswer {
    /// Claims taken.
    pub accepted: usize,
    /// Why each other one was refused.
    pub refused: Vec<String>,
}

/// The path of the proof at `height` re-executing the shards in `execute`.
pub fn proof_path(height: u64, execute: &[usize]) -> String {
    let list: Vec<String> = execute.iter().map(usize::to_string).collect();
    format!(
        "/phalanx/v1/light/proof/{height}?execute={}",
        list.join(",")
    )
}

/// The query of a proof request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofQuery {
    /// Comma-separated shard indices to re-execute; absent: all.
    pub execute: Option<String>,
}

impl ProofQuery {
    /// The shards to re-execute of a block with `shards` shards (all when absent), or why the
    /// list is refused.
    pub fn shards(&self, shards: usize) -> Result<Vec<usize>, String> {
        let Some(list) = self.execute.as_deref() else {
            return Ok((0..shards).collect());
        };
        let mut out = Vec::new();
        for part in list.split(',').filter(|p| !p.is_empty()) {
            let i: usize = part
                .trim()
                .parse()
                .map_err(|_| format!("execute: {part:?} is not a shard index"))?;
            if i >= shards {
                return Err(format!(
                    "execute: shard {i} of a block with {shards} shards"
                ));
            }
            if !out.contains(&i) {
                out.push(i);
            }
        }
        Ok(out)
    }
}

/// Headers per updates answer, at most.
pub const MAX_HEADERS: usize = 256;
/// Claims per updates answer, at most.
pub const MAX_CLAIMS: usize = 4096;

/// A checkpoint: a block and the state root after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bootstrap {
    /// Height.
    pub height: u64,
    /// Block hash (`hash_tree_root` of its header).
    pub block_hash: B256,
    /// State root after it.
    pub state_root: B256,
}

/// The query of an updates request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdatesQuery {
    /// First header height wanted.
    pub from: u64,
    /// Lowest height whose claims are wanted.
    pub claims_from: u64,
    /// Headers wanted, at most.
    pub limit: Option<u64>,
}

/// Headers and claims.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Updates {
    /// The highest block whose state the node can prove (`eth_getProof`). Only used to pick
    /// which verified root `latest` reads use: a node lying about it can make the client
    /// answer from an older verified root, never from an unverified one.
    #[serde(default)]
    pub provable: u64,
    /// SSZ of each `ExecHeader`, in height order.
    pub headers: Vec<Bytes>,
    /// SSZ of the finalized consensus header (`SignedBlockHeader`) each of `headers` derives
    /// from, in the same order (empty for the genesis): the light client checks the
    /// signatures and derives the execution header itself ([`crate::headers`]).
    #[serde(default)]
    pub blocks: Vec<Bytes>,
    /// SSZ of the `BlockBody` of each of those consensus blocks, in the same order (empty
    /// for the genesis; may be absent altogether): the client checks each against its
    /// header's `body_root` and applies the executor slashings the chain made in it, and
    /// takes the claims it carries.
    #[serde(default)]
    pub bodies: Vec<Bytes>,
    /// SSZ of each `SignedClaim`.
    pub claims: Vec<Bytes>,
}

impl From<&ExecHeader> for LightHeader {
    fn from(h: &ExecHeader) -> Self {
        LightHeader {
            height: h.number,
            hash: h.hash(),
            parent: h.parent,
            shard_roots: h.shard_roots.to_vec(),
            env: h.env(),
        }
    }
}
