//! The chain's public gossip of declarations and slashing evidence, as validator 0's node takes
//! part in it (the devnet publishes it on libp2p, `phalanx_cluster::equivocation`):
//!
//! * **Out.** While someone publishes it ([`super::LiveChain::take_published`]), every
//!   declaration this node's validators sign (an external validator's included) and every
//!   piece of slashing evidence validator 0's view finds (a double declaration in two blocks,
//!   a double or surround vote) are kept for publishing, in order.
//! * **In.** Evidence from the network is judged against validator 0's registry by the rules
//!   block import applies (`phalanx_consensus::slashing::offender`): evidence that shows no
//!   offence is refused; against a validator the head's chain has slashed, or already pooled,
//!   it is not new;
//!   otherwise it is gossiped to every node's evidence pool, from which producers carry it
//!   (at most [`POOL`] pieces of each kind per view).

use std::sync::Arc;

use phalanx_consensus::slashing::{offender, verify_signature};
use phalanx_types::{Evidence, SignedDeclaration};

use super::{Msg, Sim};

/// Pieces of evidence of each kind a view pools, at most.
const POOL: usize = 1_024;

/// Declarations and evidence validator 0's node publishes ([`super::LiveChain::take_published`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Published {
    /// Declarations its validators signed, in order.
    pub declarations: Vec<SignedDeclaration>,
    /// Slashing evidence validator 0's view found, in order.
    pub evidence: Vec<Evidence>,
}

/// Why evidence from the network was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    /// Not two conflicting messages both signed by the validator they name.
    #[error("the evidence shows no offence")]
    NoOffence,
}

impl Sim {
    /// A declaration one of this node's validators signed, kept for publishing.
    pub(super) fn announce(&mut self, declaration: &SignedDeclaration) {
        if let Some(out) = self.published.as_mut() {
            out.declarations.push(declaration.clone());
        }
    }

    /// Evidence a view found: pooled there, and kept for publishing if the view is
    /// validator 0's.
    pub(super) fn found(&mut self, node: usize, evidence: Evidence) {
        if !self.pool(node, &evidence) {
            return;
        }
        if node == 0
            && let Some(out) = self.published.as_mut()
        {
            out.evidence.push(evidence);
        }
    }

    /// Puts `evidence` in `node`'s pool; whether it was not there yet (and there was room).
    pub(super) fn pool(&mut self, node: usize, evidence: &Evidence) -> bool {
        let view = &mut self.views[node];
        match evidence {
            Evidence::Declaration(d) => {
                let fresh = !view.declaration_evidence.contains(d)
                    && view.declaration_evidence.len() < POOL;
                if fresh {
                    view.declaration_evidence.push(d.clone());
                }
                fresh
            }
            Evidence::Attester(a) => {
                let fresh =
                    !view.attester_evidence.contains(a) && view.attester_evidence.len() < POOL;
                if fresh {
                    view.attester_evidence.push(a.clone());
                }
                fresh
            }
        }
    }

    /// [`super::LiveChain::submit_evidence`].
    pub(super) fn submit_evidence(
        &mut self,
        now: u64,
        evidence: Evidence,
    ) -> Result<bool, EvidenceError> {
        let view = &self.views[0];
        let v = offender(
            &evidence,
            &view.registry,
            &self.signing,
            &mut verify_signature,
        )
        .ok_or(EvidenceError::NoOffence)?;
        let slashed = self
            .registry_at(0, view.fc.head())
            .validator(v)
            .is_some_and(|x| x.slashed);
        if slashed || !self.pool(0, &evidence) {
            return Ok(false);
        }
        self.gossip(now, 0, Msg::Evidence(Arc::new(evidence)));
        Ok(true)
    }
}
