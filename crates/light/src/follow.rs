//! Following an untrusted node's executed headers, taking each only once it is checked
//! ([`crate::headers`]) and shown final ([`crate::finality`]): what the light client and the
//! executor process both do before they look at a block.

use std::collections::VecDeque;

use phalanx_execution::header::ExecHeader;
use phalanx_spec::Genesis;
use phalanx_types::{Attestation, BlockBody, Root, SignedBlockHeader};
use ssz::Decode;
use tree_hash::TreeHash;

use crate::finality::Finality;
use crate::headers::HeaderChain;
use crate::upstream::{FetchError, Upstream};
use crate::wire::{Bootstrap, Updates, UpdatesQuery};

/// Checked headers held while none is shown final, at most: past this the follower takes no
/// new header until attestations finalize some (a node withholding them cannot grow it).
pub const MAX_UNFINALIZED: usize = 8_192;

/// Why following could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The genesis file does not give a registry.
    #[error("genesis: {0}")]
    Genesis(String),
    /// The checkpoint's header could not be had or does not match.
    #[error("checkpoint header: {0}")]
    Checkpoint(String),
    /// The node did not answer.
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

/// A block shown final: its execution header, and the consensus block's body when the node
/// served one (checked against the signed header's `body_root`, so it is the chain's).
#[derive(Debug, Clone)]
pub struct FinalBlock {
    /// The execution header.
    pub header: ExecHeader,
    /// The body: attestations, claims, slashings, fraud proofs, executor operations.
    pub body: Option<BlockBody>,
    /// The consensus block's slot.
    pub slot: phalanx_types::Slot,
    /// The consensus block's producer.
    pub producer: phalanx_types::ProducerIndex,
}

/// A checked header not yet final: the execution header, the consensus root, the body, the
/// slot and the producer.
type Pending = (
    ExecHeader,
    Root,
    Option<BlockBody>,
    phalanx_types::Slot,
    phalanx_types::ProducerIndex,
);

/// Checked headers on their way to being final.
#[derive(Debug)]
pub struct FinalHeaders {
    headers: HeaderChain,
    finality: Finality,
    /// Checked headers not yet shown final, with their consensus roots and bodies.
    pending: VecDeque<Pending>,
}

impl FinalHeaders {
    /// From the trusted `checkpoint`: the genesis file at height 0; otherwise the checkpoint's
    /// execution header, fetched from the first of `upstreams` that has it and checked against
    /// the trusted hash.
    pub async fn start(
        genesis: &Genesis,
        checkpoint: &Bootstrap,
        upstreams: &[Upstream],
    ) -> Result<Self, StartError> {
        if checkpoint.height == 0 {
            return Ok(Self {
                headers: HeaderChain::from_genesis(genesis, checkpoint.block_hash)
                    .map_err(StartError::Genesis)?,
                finality: Finality::from_genesis(genesis).map_err(StartError::Genesis)?,
                pending: VecDeque::new(),
            });
        }
        let mut why = StartError::Checkpoint("no full node to ask".into());
        let mut found = None;
        for upstream in upstreams {
            match Self::checkpoint_header(upstream, checkpoint.height).await {
                Ok(h) if h.hash() == checkpoint.block_hash => {
                    found = Some(h);
                    break;
                }
                Ok(h) => {
                    why = StartError::Checkpoint(format!(
                        "{} serves header {} as height {}, the trusted checkpoint is {}",
                        upstream.base(),
                        h.hash(),
                        checkpoint.height,
                        checkpoint.block_hash
                    ));
                }
                Err(e) => why = e,
            }
        }
        let header = found.ok_or(why)?;
        let headers = HeaderChain::from_checkpoint(genesis, &header, checkpoint.block_hash)
            .map_err(|e| StartError::Checkpoint(e.to_string()))?;
        let epoch = headers.slot().epoch(genesis.spec.slots_per_epoch);
        Ok(Self {
            headers,
            finality: Finality::from_checkpoint(genesis, epoch).map_err(StartError::Genesis)?,
            pending: VecDeque::new(),
        })
    }

    /// The execution header at `height` from `upstream`.
    async fn checkpoint_header(upstream: &Upstream, height: u64) -> Result<ExecHeader, StartError> {
        let updates = upstream
            .updates(&UpdatesQuery {
                from: height,
                claims_from: u64::MAX,
                limit: Some(1),
            })
            .await?;
        let raw = updates.headers.first().ok_or_else(|| {
            StartError::Checkpoint(format!(
                "{} has no header at height {height}",
                upstream.base()
            ))
        })?;
        ExecHeader::from_ssz_bytes(raw)
            .map_err(|e| StartError::Checkpoint(format!("malformed: {e:?}")))
    }

    /// The next height to ask the node for.
    pub fn next_height(&self) -> u64 {
        self.headers.height() + 1
    }

    /// The finalized epoch shown so far.
    pub fn finalized_epoch(&self) -> u64 {
        self.finality.finalized().epoch.0
    }

    /// Checked headers waiting to be shown final.
    pub fn unfinalized(&self) -> usize {
        self.pending.len()
    }

    /// Checks the headers of `updates` (stopping at the first refused one, logged) and their
    /// bodies when served (a body that does not hash to its header's `body_root` refuses the
    /// header), fetches the attestations after the finalized epoch when some wait, and
    /// returns the blocks now shown final, in height order.
    pub async fn take(
        &mut self,
        updates: &Updates,
        upstream: &Upstream,
    ) -> Result<Vec<FinalBlock>, FetchError> {
        let room = MAX_UNFINALIZED.saturating_sub(self.pending.len());
        if room == 0 && !updates.headers.is_empty() {
            tracing::warn!(
                unfinalized = self.pending.len(),
                "no attestations finalize the checked headers; taking no new ones until some do"
            );
        }
        for (i, raw) in updates.headers.iter().enumerate().take(room) {
            let header = match ExecHeader::from_ssz_bytes(raw) {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(error = ?e, "malformed header from the node");
                    break;
                }
            };
            let signed = match updates
                .blocks
                .get(i)
                .map(|b| SignedBlockHeader::from_ssz_bytes(b))
            {
                Some(Ok(s)) => s,
                Some(Err(e)) => {
                    tracing::warn!(height = header.number, error = ?e,
                        "malformed consensus header from the node");
                    break;
                }
                None => {
                    tracing::warn!(
                        height = header.number,
                        "the node serves no signed consensus header for this block; not taken"
                    );
                    break;
                }
            };
            let body = match updates.bodies.get(i).filter(|b| !b.is_empty()) {
                None => None,
                Some(raw) => match BlockBody::from_ssz_bytes(raw) {
                    Ok(b) if b.tree_hash_root() == signed.message.body_root => Some(b),
                    Ok(_) => {
                        tracing::warn!(
                            height = header.number,
                            "the node serves a body that is not the block's (body root differs); header not taken"
                        );
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(height = header.number, error = ?e,
                            "malformed block body from the node; header not taken");
                        break;
                    }
                },
            };
            match self.headers.verify(&signed, &header) {
                Ok(root) => {
                    // The chain applies a block's slashings at import: so does the follower,
                    // before the next header (the proposer schedule excludes the slashed).
                    if let Some(b) = &body {
                        for v in self.headers.apply_body(b) {
                            tracing::info!(
                                validator = v.0,
                                height = header.number,
                                "validator slashed on chain"
                            );
                            self.finality.slash(v);
                        }
                    }
                    self.pending.push_back((
                        header,
                        root,
                        body,
                        signed.message.slot,
                        signed.message.producer,
                    ));
                }
                Err(e) => {
                    tracing::warn!(height = header.number, error = %e, "header refused");
                    break;
                }
            }
        }
        if self.pending.is_empty() {
            return Ok(Vec::new());
        }
        self.count_attestations(upstream).await?;
        let finalized = self.finality.finalized().root;
        Ok(
            match self.pending.iter().position(|(_, r, ..)| *r == finalized) {
                Some(at) => self
                    .pending
                    .drain(..=at)
                    .map(|(header, _, body, slot, producer)| FinalBlock {
                        header,
                        body,
                        slot,
                        producer,
                    })
                    .collect(),
                None => Vec::new(),
            },
        )
    }

    /// Fetches the attestations after the finalized epoch and counts them.
    async fn count_attestations(&mut self, upstream: &Upstream) -> Result<(), FetchError> {
        let from = self.finality.finalized().epoch.0 + 1;
        let attestations = upstream.finality(from).await?;
        let mut refused = 0usize;
        for raw in &attestations {
            let counted = Attestation::from_ssz_bytes(raw)
                .map_err(|e| format!("{e:?}"))
                .and_then(|a| self.finality.on_attestation(&a).map_err(|e| e.to_string()));
            match counted {
                Ok(true) => {
                    let f = self.finality.finalized();
                    tracing::debug!(epoch = f.epoch.0, root = %f.root,
                        "checkpoint finalized by attestations");
                }
                Ok(false) => {}
                Err(e) => {
                    refused += 1;
                    tracing::debug!(error = %e, "attestation refused");
                }
            }
        }
        if refused > 0 {
            tracing::warn!(refused, "the node served attestations that do not verify");
        }
        Ok(())
    }
}
