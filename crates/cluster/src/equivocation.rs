//! Watching for equivocation: what a node does with the `declaration` and `slashing` topics
//! ([`crate::wire::DECLARATION_TOPIC`], [`crate::wire::SLASHING_TOPIC`]).
//!
//! A proposer's declaration goes to the producer it names, and also to everyone on the
//! declaration topic: a validator that names two producers for one slot hoping that only one
//! block lands is then seen by every node, which proves it. Evidence, found here or heard,
//! travels on the slashing topic to the chain's producers, which carry it in a block; block
//! import slashes the validator ([`phalanx_consensus::slashing`]).
//!
//! 1. **Judge.** A declaration is taken only if its signature verifies under its proposer's
//!    key; evidence only if it shows an offence by the rules block import applies
//!    ([`phalanx_consensus::slashing::offender`]). Keys are the genesis registry's (a
//!    validator's key never changes). Anything else is refused with a typed reason and its
//!    sender scored down; on libp2p the same judgement ([`Judge::verdict`]) is the topic's
//!    gossip validator, so it is not relayed either.
//! 2. **Remember.** The first declaration heard for each (slot, proposer) is remembered, at
//!    most [`MAX_HEARD`]; past that the lowest slots are forgotten first.
//! 3. **Prove.** A later declaration for a remembered (slot, proposer) that differs from the
//!    first is a double declaration: [`Watch::on_declaration`] returns the evidence, which the
//!    node publishes on the slashing topic.
//! 4. **Once.** One piece of evidence slashes a validator: evidence against a validator
//!    already proven here is not new and is not passed on again (at most [`MAX_PROVEN`]
//!    validators remembered).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use phalanx_consensus::Registry;
use phalanx_consensus::slashing::{double_declaration, offender, verify_signature};
use phalanx_spec::Genesis;
use phalanx_types::signing::SigningContext;
use phalanx_types::{Evidence, SignedDeclaration, ValidatorIndex};

use crate::wire::Message;

/// Declarations remembered, at most (a few epochs of every slot's proposer, many times over).
pub const MAX_HEARD: usize = 4_096;

/// Proven validators remembered, at most.
pub const MAX_PROVEN: usize = 4_096;

/// Why a declaration or a piece of evidence was refused (its sender is scored down).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The proposer is not a validator of this chain.
    #[error("validator {0} is not in the registry")]
    UnknownValidator(u64),
    /// The declaration's signature does not verify under its proposer's key.
    #[error("the declaration of validator {validator} for slot {slot} is not signed by it")]
    BadSignature {
        /// The proposer it names.
        validator: u64,
        /// Its slot.
        slot: u64,
    },
    /// The evidence shows no offence (messages that do not conflict, or not both signed by
    /// the validator they name).
    #[error("the evidence shows no offence")]
    NoOffence,
    /// Bytes that are not a message of the topic.
    #[error("not a {0}")]
    Undecodable(&'static str),
}

/// Rule 1: stateless, shared by a node's handler and its gossip validators.
#[derive(Debug, Clone)]
pub struct Judge {
    registry: Registry,
    signing: SigningContext,
}

impl Judge {
    /// Judges by `genesis`'s validators.
    pub fn from_genesis(genesis: &Genesis) -> Result<Self, String> {
        Ok(Self {
            registry: Registry::from_genesis(genesis).map_err(|e| e.to_string())?,
            signing: genesis.signing_context(),
        })
    }

    /// A declaration signed by its proposer.
    pub fn declaration(&self, d: &SignedDeclaration) -> Result<(), Refused> {
        let v = d.message.proposer_index;
        let key = self
            .registry
            .validator(v)
            .ok_or(Refused::UnknownValidator(v.0))?
            .pubkey;
        if verify_signature(self.signing.signing_root(&d.message), &key, &d.signature) {
            Ok(())
        } else {
            Err(Refused::BadSignature {
                validator: v.0,
                slot: d.message.slot.0,
            })
        }
    }

    /// Evidence of an offence: the offender.
    pub fn evidence(&self, e: &Evidence) -> Result<ValidatorIndex, Refused> {
        offender(e, &self.registry, &self.signing, &mut verify_signature).ok_or(Refused::NoOffence)
    }

    /// Rule 1 on the wire: a gossip message of the declaration or slashing topic, decoded and
    /// judged. Returns what it is, or why it is refused.
    pub fn message(&self, bytes: &[u8]) -> Result<Heard, Refused> {
        match Message::decode(bytes) {
            Ok(Message::Declaration(d)) => self
                .declaration(&d)
                .map(|()| Heard::Declaration(Box::new(d))),
            Ok(Message::Slashing(e)) => self.evidence(&e).map(|v| Heard::Evidence(e, v)),
            _ => Err(Refused::Undecodable("declaration or slashing evidence")),
        }
    }

    /// [`Judge::message`] as a gossip validator's verdict: good ones are relayed, bad ones
    /// held against the peer that relayed them.
    pub fn verdict(&self, bytes: &[u8]) -> phalanx_net::p2p::Verdict {
        match self.message(bytes) {
            Ok(_) => phalanx_net::p2p::Verdict::Accept,
            Err(_) => phalanx_net::p2p::Verdict::Reject,
        }
    }
}

/// A judged message of the declaration or slashing topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// A declaration signed by its proposer.
    Declaration(Box<SignedDeclaration>),
    /// Evidence, and the validator it shows offending.
    Evidence(Box<Evidence>, ValidatorIndex),
}

/// Rules 2–4: one node's memory of declarations and of the validators it has proven.
#[derive(Debug)]
pub struct Watch {
    judge: Arc<Judge>,
    heard: BTreeMap<(u64, u64), SignedDeclaration>,
    proven: BTreeSet<u64>,
}

impl Watch {
    /// A watch judging by `judge`.
    pub fn new(judge: Arc<Judge>) -> Self {
        Self {
            judge,
            heard: BTreeMap::new(),
            proven: BTreeSet::new(),
        }
    }

    /// Its judge (for gossip validators).
    pub fn judge(&self) -> &Arc<Judge> {
        &self.judge
    }

    /// A judged message from the network ([`Judge::message`]): new evidence, if it makes
    /// some (a double declaration) or is some (evidence against a validator not proven yet).
    pub fn on_heard(&mut self, heard: Heard) -> Option<Evidence> {
        match heard {
            Heard::Declaration(d) => self.remember(*d),
            Heard::Evidence(e, v) => self.prove(v).then_some(*e),
        }
    }

    /// A declaration from the network: judged (rule 1), then rules 2–4.
    pub fn on_declaration(&mut self, d: SignedDeclaration) -> Result<Option<Evidence>, Refused> {
        self.judge.declaration(&d)?;
        Ok(self.remember(d))
    }

    /// Evidence from the network: judged (rule 1); `Some` if it is new (rule 4).
    pub fn on_evidence(&mut self, e: Evidence) -> Result<Option<Evidence>, Refused> {
        let v = self.judge.evidence(&e)?;
        Ok(self.prove(v).then_some(e))
    }

    /// Rules 2–3 for a declaration known to be signed (this node's own validators').
    pub fn remember(&mut self, d: SignedDeclaration) -> Option<Evidence> {
        let key = (d.message.slot.0, d.message.proposer_index.0);
        if let Some(first) = self.heard.get(&key) {
            let evidence = double_declaration(first, &d)?;
            return self
                .prove(d.message.proposer_index)
                .then_some(Evidence::Declaration(evidence));
        }
        self.heard.insert(key, d);
        while self.heard.len() > MAX_HEARD {
            self.heard.pop_first();
        }
        None
    }

    /// Rule 4: whether `v` is proven for the first time.
    fn prove(&mut self, v: ValidatorIndex) -> bool {
        if !self.proven.insert(v.0) {
            return false;
        }
        while self.proven.len() > MAX_PROVEN {
            self.proven.pop_first();
        }
        true
    }
}
