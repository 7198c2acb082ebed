//! The devnet's executors and light client (issue #7 inside #8).
//!
//! - **Executors.** Each of the genesis executors keeps its own state replica (in memory,
//!   rebuilt from the chain's finalized blocks at start), executes every block the clustered
//!   node executes, and signs a `Claim` about its post-state root with its bonded key.
//! - **Light client.** A [`LightClient`] trusting the genesis follows the same headers and the
//!   executors' claims, decides each block by the rules of `phalanx_light::client`, and fetches
//!   a proof of execution from executor 0's replica (an untrusted full node as far as it is
//!   concerned) whenever claims disagree or are missing.
//!
//! The dashboard and metrics show the light client's head and how much of the claiming bond
//! agreed with the root it believes.

use std::collections::BTreeMap;
use std::sync::Arc;

use alloy_primitives::{B256, Bytes};
use phalanx_cluster::wire::ExecHeader;
use phalanx_consensus::executors::ExecutorRegistry;
use phalanx_crypto::SecretKey;
use phalanx_execution::changes::Changes;
use phalanx_execution::proof::ExecutionProof;
use phalanx_execution::store::StateStore;
use phalanx_light::client::{Config, LightClient, LightHeader};
use phalanx_types::{ExecutorIndex, Shard, SignedClaim, SigningContext};
use tokio::sync::{mpsc, watch};

use crate::{Shared, lock};

/// Unfinalized blocks each executor keeps (it can prove any of them).
const KEEP: u64 = 64;

/// What the dashboard reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LightStatus {
    /// The light client's head height.
    pub(crate) head: u64,
    /// Its root there.
    pub(crate) root: B256,
    /// Share of the claiming bond that agreed with the believed root, over the last decided
    /// blocks (1.0 when every claim agreed).
    pub(crate) agreement: f64,
    /// Proofs of execution the client re-executed.
    pub(crate) re_executions: u64,
    /// Claims signed by the executors.
    pub(crate) claims: u64,
    /// Executors.
    pub(crate) executors: usize,
}

struct Executor {
    index: u64,
    key: SecretKey,
    store: StateStore,
    /// Executed blocks not yet finalized in the replica, oldest first.
    kept: std::collections::VecDeque<B256>,
}

/// Starts the executors and the light client on the blocks of `blocks` (after replaying
/// `resumed`). Returns the task.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start(
    keys: Vec<SecretKey>,
    registry: ExecutorRegistry,
    signing: SigningContext,
    genesis: (ExecHeader, Changes),
    resumed: Vec<(ExecHeader, Vec<Shard>)>,
    mut blocks: mpsc::UnboundedReceiver<(ExecHeader, Vec<Shard>)>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let (genesis_header, alloc) = genesis;
    let mut executors = Vec::new();
    let mut genesis_root = B256::ZERO;
    for (i, key) in keys.into_iter().enumerate() {
        let store = StateStore::in_memory().map_err(|e| e.to_string())?;
        genesis_root = store
            .init_genesis(genesis_header.hash(), &alloc)
            .map_err(|e| e.to_string())?;
        executors.push(Executor {
            index: i as u64,
            key,
            store,
            kept: Default::default(),
        });
    }
    let client = LightClient::new(
        Config::default(),
        signing,
        registry,
        (0, genesis_header.hash(), genesis_root),
    );
    let count = executors.len();
    Ok(tokio::spawn(async move {
        let mut run = Run {
            executors,
            client,
            signing,
            roots: BTreeMap::from([(0, genesis_root)]),
            shards: BTreeMap::new(),
            shared,
            claims: 0,
            count,
            requested: None,
        };
        for (header, shards) in resumed {
            run.block(&header, &shards, now_ms());
        }
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
        loop {
            tokio::select! {
                r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return; },
                b = blocks.recv() => match b {
                    Some((header, shards)) => run.block(&header, &shards, now_ms()),
                    None => return,
                },
                _ = tick.tick() => run.decide(now_ms()),
            }
        }
    }))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

struct Run {
    executors: Vec<Executor>,
    client: LightClient,
    signing: SigningContext,
    /// True roots as executor 0 computed them, by height (for the proof it serves).
    roots: BTreeMap<u64, B256>,
    /// The shards of the blocks executor 0 can prove, by height.
    shards: BTreeMap<u64, Vec<Shard>>,
    shared: Arc<Shared>,
    claims: u64,
    count: usize,
    requested: Option<u64>,
}

impl Run {
    /// One finalized block: every executor executes and claims; the light client takes the
    /// header and the claims.
    fn block(&mut self, header: &ExecHeader, shards: &[Shard], now: u64) {
        let light = LightHeader {
            height: header.number,
            hash: header.hash(),
            parent: header.parent,
            shard_roots: header.shard_roots.to_vec(),
            env: header.env(),
        };
        if let Err(e) = self.client.on_header(light.clone(), now) {
            tracing::warn!(error = %e, "devnet light client: header refused");
            return;
        }
        let txs: Vec<Vec<Bytes>> = shards
            .iter()
            .map(|s| {
                s.transactions
                    .iter()
                    .map(|t| Bytes::copy_from_slice(t))
                    .collect()
            })
            .collect();
        let prev = self
            .roots
            .get(&header.number.saturating_sub(1))
            .copied()
            .unwrap_or_default();
        for ex in &mut self.executors {
            let result = match ex
                .store
                .execute(header.parent, light.hash, &light.env, &txs)
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(executor = ex.index, height = header.number, error = %e,
                        "devnet executor: cannot execute");
                    continue;
                }
            };
            ex.kept.push_back(light.hash);
            if ex.kept.len() as u64 > KEEP
                && let Some(old) = ex.kept.pop_front()
                && let Err(e) = ex.store.finalize(old)
            {
                tracing::error!(executor = ex.index, error = %e, "devnet executor: finalize");
            }
            if ex.index == 0 {
                self.roots.insert(header.number, result.post_state_root);
                self.shards.insert(header.number, shards.to_vec());
                // Executor 0 can prove the blocks its replica keeps unfinalized: no further.
                while self.roots.len() as u64 > KEEP + 1 {
                    self.roots.pop_first();
                }
                while self.shards.len() as u64 > KEEP {
                    self.shards.pop_first();
                }
            }
            let message = LightClient::claim_for(
                &light,
                prev,
                &result.effects_roots(),
                result.post_state_root,
            );
            let signed = SignedClaim {
                executor: ExecutorIndex(ex.index),
                signature: self.signing.sign(&message, &ex.key),
                message,
            };
            self.claims += 1;
            if let Err(e) = self.client.on_claim(signed) {
                tracing::warn!(error = %e, "devnet light client: claim refused");
            }
        }
        self.decide(now);
    }

    /// Lets the light client decide; serves it a proof from executor 0's replica when asked.
    fn decide(&mut self, now: u64) {
        if let Some(need) = self.client.advance(now)
            && self.requested != Some(need.height)
        {
            self.requested = Some(need.height);
            tracing::info!(height = need.height, reason = ?need.reason,
                "devnet light client: fetching a proof of execution");
            if let Some(proof) = self.proof(need.height) {
                match self.client.on_proof(need.height, &proof) {
                    Ok(root) => tracing::info!(height = need.height, %root,
                        "devnet light client: re-executed"),
                    Err(e) => tracing::warn!(error = %e, "devnet light client: proof refused"),
                }
                let _ = self.client.advance(now);
            }
        }
        self.publish();
    }

    fn proof(&self, height: u64) -> Option<ExecutionProof> {
        let ex = self.executors.first()?;
        let header = self.client.header(height)?;
        let parent_root = *self.roots.get(&height.checked_sub(1)?)?;
        let view = ex.store.view(header.parent).ok()?;
        let shards = self.shards.get(&height)?;
        ExecutionProof::build(&view, parent_root, &header.env, shards).ok()
    }

    fn publish(&mut self) {
        let (head, root) = self.client.head();
        // Agreement over the last 8 decided blocks: bond claiming the believed root over all
        // claiming bond.
        let mut agree = 0u128;
        let mut total = 0u128;
        for h in head.saturating_sub(7)..=head {
            let (Some(believed), Some(prev)) = (
                self.client.root_at(h),
                h.checked_sub(1).and_then(|p| self.client.root_at(p)),
            ) else {
                continue;
            };
            for (post, bond) in self.client.claims_from(h, prev) {
                total += u128::from(bond);
                if post == believed {
                    agree += u128::from(bond);
                }
            }
        }
        let status = LightStatus {
            head,
            root,
            agreement: if total == 0 {
                1.0
            } else {
                agree as f64 / total as f64
            },
            re_executions: self.client.stats().re_executions,
            claims: self.claims,
            executors: self.count,
        };
        *lock(&self.shared.light) = Some(status);
    }
}
