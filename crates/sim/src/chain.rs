//! `phalanx sim chain`: the consensus protocol end to end on a virtual clock.
//!
//! Each validator and each producer is a node with its own view (block tree, fork choice,
//! registry, evidence pool). Per slot, the slot's proposer (RANDAO-seeded, stake-weighted, as
//! its view computes it) signs a declaration naming a producer and sends it to that producer;
//! the producer builds a block on the declared parent, including the slashing evidence it
//! knows, and gossips it. Every validator attests once per epoch, at a third of its duty slot,
//! to its LMD-GHOST head with its justified checkpoint as FFG source. Honest validators ask
//! their slashing-protection database (the validator crate's, EIP-3076 minimal) before every
//! signature; equivocators sign two declarations per proposal and two votes per epoch.
//!
//! The network delays each message by 50 ms plus a seeded jitter, drops it with the given
//! probability, and drops everything across a partition while it lasts. A node that receives
//! a block with an unknown parent asks the sender for it (sync), and keeps votes about unknown
//! blocks until the blocks arrive.
//!
//! Signature checks are cached by `(signing root, signature, key)` across nodes, since every
//! node would compute the same answer; this keeps 500 slots well under a minute on 2 cores.
//!
//! Output ([`Report`]):
//! * `finalized_epoch`: the lowest finalized epoch among honest validators at the end;
//! * `max_epochs_without_finality`: the worst finality lag seen by any honest validator at
//!   any epoch boundary, beyond the best case (at the start of epoch `e` the best case is
//!   epoch `e − 1` final, so the lag is `e − 1 − finalized`);
//! * `safety_violations`: pairs of conflicting checkpoints ever finalized by honest views;
//! * `slashed`: validators slashed on the chain as honest validator 0 sees it;
//! * `slashable_signed_by_honest`: slashable pairs among everything honest validators signed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use alloy_primitives::B256;
use phalanx_consensus::claims::{BodyError, ClaimError};
use phalanx_consensus::executors::ExecutorRegistry;
use phalanx_consensus::fork_choice::{ForkChoice, VoteOutcome};
use phalanx_consensus::proposer::{genesis_mix, mix_in, proposer};
use phalanx_consensus::{ChainContext, Registry, check_block};
use phalanx_crypto::{PublicKey, PublicKeyBytes, SecretKey, SignatureBytes};
use phalanx_execution::header::ExecHeader;
use phalanx_spec::ChainSpec;
use phalanx_spec::Genesis;
use phalanx_spec::devnet::{self, DevnetKeys, DevnetParams};
use phalanx_types::signing::{Signable, SigningContext};
use phalanx_types::*;
use phalanx_validator::reputation::{Choice, Outcome, Policy, Reputation};
use phalanx_validator::slashing_protection::SlashingProtection;
use rand::SeedableRng;
use serde::Serialize;
use ssz_types::VariableList;

use crate::net::{Links, Partition, Queue};

mod claims;
mod evidence;

pub use evidence::{EvidenceError, Published};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Config {
    /// Validators (equal stake).
    pub validators: usize,
    /// Producers.
    pub producers: usize,
    /// Slots to run.
    pub slots: u64,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Extra delay, uniform in `0..=jitter_ms`, on top of 50 ms.
    pub jitter_ms: u64,
    /// `(from_slot, to_slot, fraction)`: the first `fraction` of the nodes are cut off from the
    /// rest during those slots.
    pub partition: Option<(u64, u64, f64)>,
    /// The last `equivocators` validators equivocate.
    pub equivocators: usize,
    /// The last `silent_producers` producers never build a block.
    pub silent_producers: usize,
    /// The first `slow` validators are slow: everything they send arrives one slot late.
    pub slow: usize,
    /// Seed of every random choice.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            validators: 16,
            producers: 4,
            slots: 200,
            loss: 0.0,
            jitter_ms: 0,
            partition: None,
            equivocators: 0,
            silent_producers: 0,
            slow: 0,
            seed: 1,
        }
    }
}

/// The result of a run (printed as one JSON line by `phalanx sim chain`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Slots simulated.
    pub slots: u64,
    /// Lowest finalized epoch among honest validators at the end.
    pub finalized_epoch: u64,
    /// Worst finality lag beyond the best case, in epochs.
    pub max_epochs_without_finality: u64,
    /// Conflicting finalized checkpoint pairs.
    pub safety_violations: u64,
    /// Validators slashed on honest validator 0's chain.
    pub slashed: Vec<u64>,
    /// Slashable pairs signed by honest validators.
    pub slashable_signed_by_honest: u64,
    /// Slots with no block on honest validator 0's chain.
    pub missed_slots: u64,
}

/// A configuration that cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// Bad flags.
    #[error("invalid simulation: {0}")]
    Config(String),
    /// The genesis could not be built.
    #[error("cannot build the genesis: {0}")]
    Genesis(String),
}

/// A signed vote of one validator.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Vote {
    validator: u64,
    data: AttestationData,
    signature: SignatureBytes,
}

#[derive(Debug, Clone)]
enum Msg {
    Block(Arc<SignedBlock>),
    Vote(Arc<Vote>),
    Declaration(Arc<SignedDeclaration>),
    Request(Root),
    /// An executor's signed claim, on its way to producers' pools.
    Claim(Arc<SignedClaim>),
    /// A wrong-claim proof, on its way to producers' pools.
    Fraud(Arc<FraudProof>),
    /// An executor deposit, on its way to producers' pools.
    Deposit(Arc<SignedExecutorDeposit>),
    /// An executor exit, on its way to producers' pools.
    Exit(Arc<SignedExecutorExit>),
    /// Slashing evidence heard from outside, on its way to every pool.
    Evidence(Arc<Evidence>),
}

#[derive(Debug)]
enum Event {
    SlotStart(u64),
    Attest(u64),
    Deliver { from: usize, to: usize, msg: Msg },
}

/// One node's view of the chain.
struct View {
    fc: ForkChoice,
    /// Every validator slashing this view has imported, on any branch: keys, fork-choice
    /// weight (a slashed validator's votes weigh nothing anywhere), evidence not to carry.
    registry: Registry,
    /// The registry as each imported block left it (shared while unchanged): whom the chain
    /// through that block schedules to propose. Every view computes the same schedule for the
    /// same chain, whichever branches it has seen slashings on.
    registries: HashMap<Root, Arc<Registry>>,
    blocks: HashMap<Root, Arc<SignedBlock>>,
    mixes: HashMap<Root, B256>,
    orphans: HashMap<Root, Vec<Arc<SignedBlock>>>,
    pending_votes: Vec<Arc<Vote>>,
    votes_seen: HashMap<(u64, u64), Arc<Vote>>,
    declarations_seen: HashMap<u64, SignedDeclaration>,
    declaration_evidence: Vec<DeclarationSlashing>,
    attester_evidence: Vec<AttesterSlashing>,
    /// Individual votes seen, by their data: what a producer aggregates into its blocks.
    vote_pool: HashMap<AttestationData, Vec<(u64, SignatureBytes)>>,
    /// Each block's derived execution header and its hash (the name claims use).
    exec: HashMap<Root, (ExecHeader, B256)>,
    /// The executor registry as each imported block left it (shared while unchanged).
    ledgers: HashMap<Root, Arc<ExecutorRegistry>>,
    /// The genesis executor registry.
    genesis_ledger: Arc<ExecutorRegistry>,
    /// Executor deposits heard, not yet final.
    deposit_pool: Vec<SignedExecutorDeposit>,
    /// Executor exits heard, not yet final.
    exit_pool: Vec<SignedExecutorExit>,
    /// Claims heard, by (height, executor): what a producer puts in its blocks.
    claim_pool: std::collections::BTreeMap<(u64, u64), SignedClaim>,
    /// Wrong-claim proofs heard, not yet applied here.
    fraud_pool: Vec<FraudProof>,
}

struct Sim {
    config: Config,
    spec: ChainSpec,
    signing: SigningContext,
    genesis_root: Root,
    validator_keys: Vec<SecretKey>,
    validator_pubkeys: Vec<PublicKey>,
    producer_keys: Vec<SecretKey>,
    views: Vec<View>,
    protection: Vec<SlashingProtection>,
    links: Links,
    queue: Queue<Event>,
    sig_cache: HashMap<(B256, SignatureBytes, PublicKeyBytes), bool>,
    block_cache: HashMap<(Root, u64, usize), bool>,
    tree: HashMap<Root, Root>,
    honest_declarations: Vec<(u64, u64, Root)>,
    honest_votes: Vec<(u64, AttestationData)>,
    finalized_seen: HashSet<Checkpoint>,
    max_lag: u64,
    reputation: Vec<Reputation>,
    declared: Vec<Vec<(u64, ProducerIndex)>>,
    /// Where producers take their shards from (the devnet's pool); placeholders when `None`.
    shard_source: Option<Box<dyn ShardSource>>,
    /// What execution made of each slot's block (the devnet's executed chain); when `None`, a
    /// delivered declaration counts one unit of fees (the simulator's shards are placeholders).
    outcomes: Option<Box<dyn OutcomeSource>>,
    /// Blocks validator 0 imported, in order, while someone records them (the devnet's log).
    imported: Option<Vec<Arc<SignedBlock>>>,
    /// Declarations and evidence to publish, while someone publishes them (the devnet on
    /// libp2p).
    published: Option<Published>,
    /// Validators whose keys are held outside the chain (a distributed validator): their
    /// views compute the duties, someone else signs them.
    external: HashSet<usize>,
    /// Duties of external validators not yet taken.
    external_duties: Vec<ExternalDuty>,
    /// External proposals waiting for their RANDAO reveal: (validator, slot) → (parent, producer).
    external_proposals: HashMap<(usize, u64), (Root, usize)>,
    /// Signed data already relayed for external validators, by (validator, slot, kind).
    external_relayed: HashMap<(usize, u64, ExternalKind), B256>,
    external_signed: u64,
    /// The genesis registry and time, which execution headers are derived with.
    exec_registry: Registry,
    genesis_time: u64,
    /// Claims carried by the blocks validator 0 imported.
    claims_on_chain: u64,
    /// Bounties credited to producers for wrong-claim proofs, as validator 0 saw them.
    bounties_gwei: Gwei,
    /// Executor deposits, and exits, carried by the blocks validator 0 imported.
    executors_deposited: u64,
    executors_exited: u64,
}

fn honest(config: &Config, validator: usize) -> bool {
    validator + config.equivocators < config.validators
}

impl Sim {
    fn new(config: Config) -> Result<Self, SimError> {
        let mut spec = ChainSpec::preset("devnet").map_err(|e| SimError::Genesis(e.to_string()))?;
        spec.shards_per_block = 2;
        let mut params = DevnetParams::new(format!("sim-{}", config.seed), spec);
        params.executors = 0;
        params.accounts = 0;
        Ok(Self::with_params(config, params)?.0)
    }

    /// A simulation over the genesis `params` describe (their validator and producer counts
    /// replaced by the configuration's).
    fn with_params(
        config: Config,
        mut params: DevnetParams,
    ) -> Result<(Self, Genesis, DevnetKeys), SimError> {
        if config.validators == 0 || config.producers == 0 {
            return Err(SimError::Config(
                "need at least one validator and one producer".into(),
            ));
        }
        if config.equivocators >= config.validators {
            return Err(SimError::Config(
                "at least one validator must be honest".into(),
            ));
        }
        if config.silent_producers >= config.producers {
            return Err(SimError::Config(
                "at least one producer must build blocks".into(),
            ));
        }
        if !(0.0..=1.0).contains(&config.loss) {
            return Err(SimError::Config(format!(
                "--loss {} is not a probability",
                config.loss
            )));
        }
        let spec = params.spec.clone();
        params.validators = u32::try_from(config.validators)
            .map_err(|_| SimError::Config("too many validators".into()))?;
        params.producers = u32::try_from(config.producers)
            .map_err(|_| SimError::Config("too many producers".into()))?;
        let (genesis, keys) =
            devnet::generate(&params).map_err(|e| SimError::Genesis(e.to_string()))?;
        let registry =
            Registry::from_genesis(&genesis).map_err(|e| SimError::Genesis(e.to_string()))?;
        let signing = genesis.signing_context();
        let genesis_root = genesis.validators_root();
        let stakes: Vec<Gwei> = genesis.validators.iter().map(|v| v.amount).collect();
        let nodes = config.validators + config.producers;
        let executors = Arc::new(
            ExecutorRegistry::from_genesis(&genesis)
                .map_err(|e| SimError::Genesis(e.to_string()))?,
        );
        let genesis_exec = phalanx_light::headers::genesis_header(&genesis, genesis_root);
        let genesis_exec_hash = genesis_exec.hash();
        let views = (0..nodes)
            .map(|_| View {
                fc: ForkChoice::new(genesis_root, stakes.clone(), spec.slots_per_epoch),
                registry: registry.clone(),
                registries: HashMap::from([(genesis_root, Arc::new(registry.clone()))]),
                blocks: HashMap::new(),
                mixes: HashMap::from([(genesis_root, genesis_mix(genesis_root))]),
                orphans: HashMap::new(),
                pending_votes: Vec::new(),
                votes_seen: HashMap::new(),
                declarations_seen: HashMap::new(),
                declaration_evidence: Vec::new(),
                attester_evidence: Vec::new(),
                vote_pool: HashMap::new(),
                exec: HashMap::from([(genesis_root, (genesis_exec.clone(), genesis_exec_hash))]),
                ledgers: HashMap::new(),
                genesis_ledger: executors.clone(),
                deposit_pool: Vec::new(),
                exit_pool: Vec::new(),
                claim_pool: Default::default(),
                fraud_pool: Vec::new(),
            })
            .collect();
        let protection = (0..config.validators)
            .map(|_| SlashingProtection::in_memory(genesis_root))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SimError::Genesis(e.to_string()))?;
        let validator_keys: Vec<SecretKey> =
            keys.validators.iter().map(|(_, k)| k.clone()).collect();
        let validator_pubkeys = validator_keys.iter().map(SecretKey::public_key).collect();
        let partition = config.partition.map(|(from, to, fraction)| Partition {
            from_ms: from * spec.slot_seconds * 1000,
            to_ms: to * spec.slot_seconds * 1000,
            cut: ((nodes as f64) * fraction.clamp(0.0, 1.0)).round() as usize,
        });
        let links = Links {
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(config.seed),
            base_ms: 50,
            jitter_ms: config.jitter_ms,
            loss: config.loss,
            partition,
        };
        let sim = Self {
            spec,
            signing,
            genesis_root,
            validator_keys,
            validator_pubkeys,
            producer_keys: keys.producers.iter().map(|(_, k)| k.clone()).collect(),
            views,
            protection,
            links,
            queue: Queue::new(),
            sig_cache: HashMap::new(),
            block_cache: HashMap::new(),
            tree: HashMap::new(),
            honest_declarations: Vec::new(),
            honest_votes: Vec::new(),
            finalized_seen: HashSet::new(),
            max_lag: 0,
            reputation: vec![Reputation::new(Policy::default()); config.validators],
            declared: vec![Vec::new(); config.validators],
            shard_source: None,
            outcomes: None,
            imported: None,
            published: None,
            external: HashSet::new(),
            external_duties: Vec::new(),
            external_proposals: HashMap::new(),
            external_relayed: HashMap::new(),
            external_signed: 0,
            exec_registry: registry,
            genesis_time: genesis.genesis_time,
            claims_on_chain: 0,
            bounties_gwei: 0,
            executors_deposited: 0,
            executors_exited: 0,
            config,
        };
        Ok((sim, genesis, keys))
    }

    fn slot_ms(&self) -> u64 {
        self.spec.slot_seconds * 1000
    }

    fn epoch(&self, slot: u64) -> Epoch {
        Slot(slot).epoch(self.spec.slots_per_epoch)
    }

    fn verify<T: Signable>(&mut self, msg: &T, key: &PublicKey, sig: &SignatureBytes) -> bool {
        let root = self.signing.signing_root(msg);
        let cache_key = (root, *sig, key.to_bytes());
        if let Some(ok) = self.sig_cache.get(&cache_key) {
            return *ok;
        }
        let ok = self.signing.verify(msg, key, sig).is_ok();
        self.sig_cache.insert(cache_key, ok);
        ok
    }

    /// Sends `msg` from node `from` to node `to` over the simulated network.
    fn send(&mut self, now: u64, from: usize, to: usize, msg: Msg) {
        if let Some(at) = self.links.delivery(now, from, to) {
            let late = if from < self.config.slow.min(self.config.validators) && from != to {
                self.slot_ms()
            } else {
                0
            };
            self.queue.push(at + late, Event::Deliver { from, to, msg });
        }
    }

    /// Gossips to every node (itself included, at once).
    fn gossip(&mut self, now: u64, from: usize, msg: Msg) {
        for to in 0..self.views.len() {
            self.send(now, from, to, msg.clone());
        }
    }

    /// The RANDAO seed of `epoch` on the chain ending at `head`.
    fn seed(&self, node: usize, head: Root, epoch: Epoch) -> B256 {
        let cursor = self.seed_block(node, head, epoch);
        self.views[node]
            .mixes
            .get(&cursor)
            .copied()
            .unwrap_or_else(|| genesis_mix(self.genesis_root))
    }

    /// The block whose mix seeds `epoch` on the chain ending at `head`: the last one before
    /// the epoch starts (the proposers' "dependent root").
    fn seed_block(&self, node: usize, head: Root, epoch: Epoch) -> Root {
        let view = &self.views[node];
        let boundary = epoch.start_slot(self.spec.slots_per_epoch);
        let mut cursor = head;
        loop {
            match view.blocks.get(&cursor) {
                Some(block) if block.header.message.slot >= boundary => {
                    cursor = block.header.message.parent_root
                }
                _ => break,
            }
        }
        cursor
    }

    /// Every producer's record, summed over the validators' books.
    fn producer_records(&self) -> Vec<(ProducerIndex, phalanx_validator::reputation::Record)> {
        let mut sum: std::collections::BTreeMap<
            ProducerIndex,
            phalanx_validator::reputation::Record,
        > = (0..self.config.producers as u64)
            .map(|p| (ProducerIndex(p), Default::default()))
            .collect();
        for book in &self.reputation {
            for (p, r) in book.records() {
                let s = sum.entry(p).or_default();
                s.declared += r.declared;
                s.delivered += r.delivered;
                s.void += r.void;
                s.missed += r.missed;
                s.fees = s.fees.saturating_add(r.fees);
            }
        }
        sum.into_iter().collect()
    }

    /// The producer validator `v` declares for `slot`: by its reputation book, after
    /// recording what came of its earlier declarations. When no producer qualifies the
    /// validator would build its own block; simulated validators hold no producer key, so they
    /// explore instead (round-robin by slot), which is how producers build a record here.
    ///
    /// With an [`OutcomeSource`] a declaration's outcome is what execution made of the slot
    /// (the fees the validator earned, a void block, or no block in the executed chain) and
    /// stays pending until execution has passed the slot; without one, a block seen for the
    /// declaration counts as delivered with one unit of fees.
    fn choose_producer(&mut self, v: usize, slot: u64) -> usize {
        let view = &self.views[v];
        let pending = std::mem::take(&mut self.declared[v]);
        let mut unknown = Vec::new();
        for (declared_slot, producer) in pending {
            let outcome = match &self.outcomes {
                Some(source) => match source.outcome(declared_slot, producer) {
                    Some(o) => o,
                    None => {
                        unknown.push((declared_slot, producer));
                        continue;
                    }
                },
                None => {
                    let delivered = view.declarations_seen.get(&declared_slot).is_some_and(|d| {
                        d.message.proposer_index.0 == v as u64 && d.message.producer == producer
                    });
                    if delivered {
                        Outcome::Delivered { validator_fees: 1 }
                    } else {
                        Outcome::Missed
                    }
                }
            };
            self.reputation[v].record(producer, outcome);
        }
        // Outcomes execution will never report (a block executed before a restart) do not
        // pile up.
        let excess = unknown.len().saturating_sub(MAX_PENDING_OUTCOMES);
        unknown.drain(..excess);
        self.declared[v] = unknown;
        let candidates: Vec<ProducerIndex> = (0..self.config.producers as u64)
            .map(ProducerIndex)
            .filter(|p| view.registry.producer(*p).is_some_and(|x| !x.slashed))
            .collect();
        let producer = match self.reputation[v].choose(&candidates) {
            Choice::Producer(p) => p.0 as usize,
            Choice::SelfProduce => (slot as usize) % self.config.producers,
        };
        self.declared[v].push((slot, ProducerIndex(producer as u64)));
        producer
    }

    fn proposer_of(&self, node: usize, head: Root, slot: u64) -> Option<ValidatorIndex> {
        // The proposers of epoch e come from the mix at the end of epoch e-1 (`seed`).
        let seed = self.seed(node, head, self.epoch(slot));
        proposer(&self.registry_at(node, head), seed, Slot(slot))
    }

    /// The registry as block `root` left it in `node`'s view (genesis's for an unknown root).
    fn registry_at(&self, node: usize, root: Root) -> Arc<Registry> {
        let view = &self.views[node];
        view.registries
            .get(&root)
            .or_else(|| view.registries.get(&self.genesis_root))
            .cloned()
            .unwrap_or_else(|| Arc::new(view.registry.clone()))
    }

    /// The committee of `slot`, in bit order.
    fn committee(&self, slot: u64) -> Vec<u64> {
        phalanx_consensus::committee::committee(
            self.config.validators as u64,
            Slot(slot),
            self.spec.slots_per_epoch,
        )
        .into_iter()
        .map(|v| v.0)
        .collect()
    }

    /// Aggregates the votes of `node`'s pool from the last two epochs, one attestation per
    /// distinct vote, for inclusion in a block at `slot`.
    fn aggregate(&self, node: usize, slot: u64) -> Vec<Attestation> {
        let spe = self.spec.slots_per_epoch;
        let mut pool: Vec<(&AttestationData, &Vec<(u64, SignatureBytes)>)> = self.views[node]
            .vote_pool
            .iter()
            .filter(|(d, _)| d.slot.0 < slot && d.slot.0 + 2 * spe >= slot)
            .collect();
        pool.sort_by_key(|(d, _)| (d.slot, d.tree_hash_root()));
        let mut out = Vec::new();
        for (data, votes) in pool.into_iter().take(128) {
            let committee = self.committee(data.slot.0);
            let Ok(mut bits) = ssz_types::BitList::with_capacity(committee.len()) else {
                continue;
            };
            let mut aggregate = phalanx_crypto::AggregateSignature::default();
            let mut any = false;
            for (v, sig) in votes {
                let (Some(position), Ok(sig)) = (
                    committee.iter().position(|c| c == v),
                    phalanx_crypto::Signature::try_from(sig),
                ) else {
                    continue;
                };
                if bits.get(position).unwrap_or(true) {
                    continue;
                }
                if bits.set(position, true).is_ok() {
                    aggregate.add(&sig);
                    any = true;
                }
            }
            if let (true, Ok(signature)) = (any, aggregate.finish()) {
                out.push(Attestation {
                    aggregation_bits: bits,
                    data: data.clone(),
                    signature: signature.to_bytes(),
                });
            }
        }
        out
    }

    /// Feeds the attestations of an imported block into `node`'s fork choice.
    fn process_attestations(&mut self, node: usize, block: &SignedBlock) {
        for attestation in block.body.attestations.iter() {
            let committee = self.committee(attestation.data.slot.0);
            let Some(indices) = phalanx_consensus::committee::attesters(&committee, attestation)
            else {
                continue;
            };
            let keys: Vec<PublicKey> = indices
                .iter()
                .filter_map(|v| {
                    self.views[node]
                        .registry
                        .validator(ValidatorIndex(*v))
                        .map(|x| x.pubkey)
                })
                .collect();
            if keys.len() != indices.len() || keys.is_empty() {
                continue;
            }
            let root = self.signing.signing_root(&attestation.data);
            let Ok(aggregate_key) = PublicKey::aggregate(&keys) else {
                continue;
            };
            let cache_key = (root, attestation.signature, aggregate_key.to_bytes());
            let valid = match self.sig_cache.get(&cache_key) {
                Some(ok) => *ok,
                None => {
                    let ok = phalanx_crypto::Signature::try_from(&attestation.signature)
                        .is_ok_and(|sig| sig.fast_aggregate_verify(&keys, root.as_slice()));
                    self.sig_cache.insert(cache_key, ok);
                    ok
                }
            };
            if !valid {
                continue;
            }
            let view = &mut self.views[node];
            for v in indices {
                let _ = view.fc.on_attestation(ValidatorIndex(v), &attestation.data);
            }
        }
    }

    fn run(mut self) -> Report {
        for slot in 1..=self.config.slots {
            let start = slot * self.slot_ms();
            self.queue.push(start, Event::SlotStart(slot));
            self.queue
                .push(start + self.slot_ms() / 3, Event::Attest(slot));
        }
        while let Some((now, event)) = self.queue.pop() {
            match event {
                Event::SlotStart(slot) => self.on_slot(now, slot),
                Event::Attest(slot) => self.on_attest_time(now, slot),
                Event::Deliver { from, to, msg } => self.deliver(now, from, to, msg),
            }
        }
        self.report()
    }

    fn on_slot(&mut self, now: u64, slot: u64) {
        if slot.is_multiple_of(self.spec.slots_per_epoch) {
            self.sample_finality(self.epoch(slot));
        }
        for v in 0..self.config.validators {
            let head = self.views[v].fc.head();
            if self.proposer_of(v, head, slot) != Some(ValidatorIndex(v as u64)) {
                continue;
            }
            let producer = self.choose_producer(v, slot);
            if self.external.contains(&v) {
                self.external_proposals.insert((v, slot), (head, producer));
                self.external_duties.push(ExternalDuty {
                    validator: v as u64,
                    slot,
                    start_ms: now,
                    deadline_ms: now + self.slot_ms(),
                    data: ExternalData::Randao(self.epoch(slot)),
                });
                continue;
            }
            let honest = honest(&self.config, v);
            if honest {
                let pubkey = self.validator_pubkeys[v].to_bytes();
                if self.protection[v]
                    .check_and_record_declaration(&pubkey, slot)
                    .is_err()
                {
                    continue;
                }
            }
            let declaration = self.declare(v, slot, head, producer, 5_000);
            if honest {
                self.honest_declarations.push((
                    v as u64,
                    slot,
                    declaration.message.tree_hash_root(),
                ));
            }
            let to = self.config.validators + producer;
            self.announce(&declaration);
            self.send(now, v, to, Msg::Declaration(Arc::new(declaration)));
            if !honest {
                // Equivocation: a second, different declaration for the same slot.
                let other = (producer + 1) % self.config.producers;
                let second = self.declare(v, slot, head, other, 4_000);
                self.announce(&second);
                self.send(
                    now,
                    v,
                    self.config.validators + other,
                    Msg::Declaration(Arc::new(second)),
                );
            }
        }
    }

    fn declare(
        &self,
        v: usize,
        slot: u64,
        parent: Root,
        producer: usize,
        fee_split_bps: u16,
    ) -> SignedDeclaration {
        let key = &self.validator_keys[v];
        let message = Declaration {
            slot: Slot(slot),
            proposer_index: ValidatorIndex(v as u64),
            parent_root: parent,
            producer: ProducerIndex(producer as u64),
            fee_split_bps,
            randao_reveal: self.signing.sign(&self.epoch(slot), key),
        };
        SignedDeclaration {
            signature: self.signing.sign(&message, key),
            message,
        }
    }

    fn on_attest_time(&mut self, now: u64, slot: u64) {
        let epoch = self.epoch(slot);
        for v in self.committee(slot).into_iter().map(|v| v as usize) {
            let fc = &self.views[v].fc;
            let head = fc.head();
            let target = fc.checkpoint(head, epoch);
            // The highest justified checkpoint before this epoch: one justified during the
            // epoch (by the votes of its earlier committees) does not leave the later
            // committees without a vote, as it did when the source was the best justified.
            let Some(source) = fc.source_for(head, epoch) else {
                continue;
            };
            if target.epoch <= source.epoch {
                continue;
            }
            let data = AttestationData {
                slot: Slot(slot),
                committee_index: 0,
                head_root: head,
                source,
                target,
            };
            if self.external.contains(&v) {
                self.external_duties.push(ExternalDuty {
                    validator: v as u64,
                    slot,
                    start_ms: now,
                    deadline_ms: now + self.slot_ms(),
                    data: ExternalData::Attestation(data),
                });
                continue;
            }
            let honest = honest(&self.config, v);
            if honest {
                let pubkey = self.validator_pubkeys[v].to_bytes();
                let p = &self.protection[v];
                if p.check_and_record_attestation(&pubkey, data.source.epoch.0, data.target.epoch.0)
                    .is_err()
                {
                    continue;
                }
                self.honest_votes.push((v as u64, data.clone()));
            }
            let vote = Vote {
                validator: v as u64,
                signature: self.signing.sign(&data, &self.validator_keys[v]),
                data: data.clone(),
            };
            self.gossip(now, v, Msg::Vote(Arc::new(vote)));
            if !honest && data.target.root != head {
                // Equivocation: a second vote for the same target epoch.
                let mut second = data;
                second.head_root = second.target.root;
                let vote = Vote {
                    validator: v as u64,
                    signature: self.signing.sign(&second, &self.validator_keys[v]),
                    data: second,
                };
                self.gossip(now, v, Msg::Vote(Arc::new(vote)));
            }
        }
    }

    fn deliver(&mut self, now: u64, from: usize, to: usize, msg: Msg) {
        match msg {
            Msg::Block(block) => self.on_block(now, from, to, block),
            Msg::Vote(vote) => self.on_vote(to, vote),
            Msg::Declaration(declaration) => self.on_declaration(now, to, &declaration),
            Msg::Claim(claim) => self.on_claim(to, &claim),
            Msg::Fraud(proof) => self.on_fraud_proof(to, &proof),
            Msg::Deposit(d) => self.on_deposit(to, &d),
            Msg::Exit(x) => self.on_exit(to, &x),
            Msg::Evidence(e) => {
                self.pool(to, &e);
            }
            Msg::Request(root) => {
                if let Some(block) = self.views[to].blocks.get(&root).cloned() {
                    self.send(now, to, from, Msg::Block(block));
                }
            }
        }
    }

    fn on_declaration(&mut self, now: u64, node: usize, signed: &SignedDeclaration) {
        let Some(producer) = node.checked_sub(self.config.validators) else {
            return;
        };
        if producer + self.config.silent_producers >= self.config.producers {
            // A silent producer: takes declarations, never builds.
            return;
        }
        let d = &signed.message;
        if d.producer.0 as usize != producer || !self.views[node].fc.contains(&d.parent_root) {
            return;
        }
        let Some(parent_slot) = self.views[node].fc.slot(&d.parent_root) else {
            return;
        };
        if d.slot <= parent_slot
            || self.proposer_of(node, d.parent_root, d.slot.0) != Some(d.proposer_index)
        {
            return;
        }
        let Some(key) = self.views[node]
            .registry
            .validator(d.proposer_index)
            .map(|v| v.pubkey)
        else {
            return;
        };
        if !self.verify(d, &key, &signed.signature) {
            return;
        }
        // Evidence against validators the chain being built on has not slashed yet.
        let included: HashSet<u64> = self
            .registry_at(node, d.parent_root)
            .slashed_validators()
            .map(|v| v.0)
            .collect();
        let view = &self.views[node];
        let declaration_slashings: Vec<DeclarationSlashing> = view
            .declaration_evidence
            .iter()
            .filter(|e| !included.contains(&e.declaration_1.message.proposer_index.0))
            .take(16)
            .cloned()
            .collect();
        let attester_slashings: Vec<AttesterSlashing> = view
            .attester_evidence
            .iter()
            .filter(|e| {
                e.attestation_1
                    .attesting_indices
                    .first()
                    .is_some_and(|v| !included.contains(&v.0))
            })
            .take(16)
            .cloned()
            .collect();
        let count = usize::try_from(self.spec.shards_per_block).unwrap_or(1);
        let shards: Vec<Shard> = match self.shard_source.as_mut() {
            Some(source) => source.shards(d.slot.0, count),
            None => (0..self.spec.shards_per_block)
                .map(|i| {
                    Shard::from_transactions(vec![vec![0x02, i as u8, d.slot.0 as u8]]).unwrap_or(
                        Shard {
                            transactions: VariableList::empty(),
                        },
                    )
                })
                .collect(),
        };
        let attestations = self.aggregate(node, d.slot.0);
        let ops = self.pick_execution_ops(node, d.parent_root, d.slot.0, d.producer);
        let body = BlockBody {
            attestations: VariableList::new(attestations).unwrap_or_default(),
            claims: VariableList::new(ops.claims).unwrap_or_default(),
            declaration_slashings: VariableList::new(declaration_slashings).unwrap_or_default(),
            attester_slashings: VariableList::new(attester_slashings).unwrap_or_default(),
            fraud_proofs: VariableList::new(ops.proofs).unwrap_or_default(),
            executor_deposits: VariableList::new(ops.deposits).unwrap_or_default(),
            executor_exits: VariableList::new(ops.exits).unwrap_or_default(),
        };
        let header = BlockHeader {
            slot: d.slot,
            parent_root: d.parent_root,
            declaration: signed.clone(),
            producer: d.producer,
            shard_roots: VariableList::new(shards.iter().map(TreeHash::tree_hash_root).collect())
                .unwrap_or_default(),
            body_root: body.tree_hash_root(),
        };
        let signature = self.signing.sign(&header, &self.producer_keys[producer]);
        let block = SignedBlock {
            header: SignedBlockHeader {
                message: header,
                signature,
            },
            body,
            shards: VariableList::new(shards).unwrap_or_default(),
        };
        self.tree
            .insert(block.root(), block.header.message.parent_root);
        self.gossip(now, node, Msg::Block(Arc::new(block)));
    }

    fn on_block(&mut self, now: u64, from: usize, node: usize, block: Arc<SignedBlock>) {
        let root = block.root();
        if self.views[node].blocks.contains_key(&root) {
            return;
        }
        let parent = block.header.message.parent_root;
        if !self.views[node].fc.contains(&parent) {
            let orphans = self.views[node].orphans.entry(parent).or_default();
            if orphans.len() < 64 {
                orphans.push(block);
            }
            self.send(now, node, from, Msg::Request(parent));
            return;
        }
        let slot = block.header.message.slot.0;
        let Some(expected) = self.proposer_of(node, parent, slot) else {
            return;
        };
        let registry = self.registry_at(node, parent);
        let slashed_count = registry.slashed_validators().count();
        let cache_key = (root, expected.0, slashed_count);
        let valid = match self.block_cache.get(&cache_key) {
            Some(v) => *v,
            None => {
                let ctx = ChainContext {
                    spec: &self.spec,
                    signing: self.signing,
                    registry: &registry,
                };
                let v = check_block(&ctx, expected, &block).is_ok();
                self.block_cache.insert(cache_key, v);
                v
            }
        };
        if !valid {
            return;
        }
        let reveal = block.header.message.declaration.message.randao_reveal;
        let mix = mix_in(
            self.views[node]
                .mixes
                .get(&parent)
                .copied()
                .unwrap_or_default(),
            reveal.as_slice(),
        );
        let ops = match self.check_execution_ops(node, &block, mix) {
            Ok(ops) => ops,
            Err(e) => {
                if node == 0 {
                    tracing::warn!(slot, block = %root, error = %e, "chain: block refused");
                }
                return;
            }
        };
        if self.views[node]
            .fc
            .on_block(root, parent, Slot(slot))
            .is_err()
        {
            return;
        }
        let view = &mut self.views[node];
        view.mixes.insert(root, mix);
        view.blocks.insert(root, block.clone());
        self.apply_execution_ops(node, root, &block, ops);
        if node == 0
            && let Some(imported) = self.imported.as_mut()
        {
            imported.push(block.clone());
        }
        self.process_slashings(node, &block);
        self.process_attestations(node, &block);
        self.detect_double_declaration(node, &block);
        // Orphans waiting for this block, then votes waiting for blocks.
        if let Some(children) = self.views[node].orphans.remove(&root) {
            for child in children {
                self.on_block(now, from, node, child);
            }
        }
        let pending = std::mem::take(&mut self.views[node].pending_votes);
        for vote in pending {
            self.on_vote(node, vote);
        }
    }

    /// The block's slashing evidence, by `phalanx_consensus::slashing` (signature checks
    /// shared across views through the cache).
    fn process_slashings(&mut self, node: usize, block: &SignedBlock) {
        let mut cache = std::mem::take(&mut self.sig_cache);
        let mut verify = |root: Root, key: &PublicKey, sig: &SignatureBytes| {
            *cache
                .entry((root, *sig, key.to_bytes()))
                .or_insert_with(|| phalanx_consensus::slashing::verify_signature(root, key, sig))
        };
        let root = block.root();
        let mut registry = self.registry_at(node, block.header.message.parent_root);
        let view = &mut self.views[node];
        let on_chain = if block.body.declaration_slashings.is_empty()
            && block.body.attester_slashings.is_empty()
        {
            Vec::new()
        } else {
            phalanx_consensus::slashing::apply_slashings(
                &block.body,
                Arc::make_mut(&mut registry),
                &self.signing,
                &mut verify,
            )
        };
        view.registries.insert(root, registry);
        for v in on_chain {
            view.registry.slash_validator(v);
            view.fc.zero_stake(v);
        }
        self.sig_cache = cache;
    }

    fn detect_double_declaration(&mut self, node: usize, block: &SignedBlock) {
        let declaration = &block.header.message.declaration;
        let slot = declaration.message.slot.0;
        let view = &mut self.views[node];
        match view.declarations_seen.get(&slot) {
            None => {
                view.declarations_seen.insert(slot, declaration.clone());
            }
            Some(first) => {
                if let Some(evidence) =
                    phalanx_consensus::slashing::double_declaration(first, declaration)
                {
                    self.found(node, Evidence::Declaration(evidence));
                }
            }
        }
    }

    fn on_vote(&mut self, node: usize, vote: Arc<Vote>) {
        let Some(key) = self.views[node]
            .registry
            .validator(ValidatorIndex(vote.validator))
            .map(|v| v.pubkey)
        else {
            return;
        };
        if !self.verify(&vote.data, &key, &vote.signature) {
            return;
        }
        let view = &mut self.views[node];
        let known = [
            vote.data.head_root,
            vote.data.source.root,
            vote.data.target.root,
        ]
        .iter()
        .all(|r| view.fc.contains(r));
        if !known {
            if view.pending_votes.len() < 4_096 {
                view.pending_votes.push(vote);
            }
            return;
        }
        match view
            .fc
            .on_attestation(ValidatorIndex(vote.validator), &vote.data)
        {
            Ok(VoteOutcome::Counted) => {
                view.vote_pool
                    .entry(vote.data.clone())
                    .or_default()
                    .push((vote.validator, vote.signature));
                view.votes_seen
                    .insert((vote.validator, vote.data.target.epoch.0), vote);
            }
            Ok(VoteOutcome::Slashable(evidence)) => {
                let Some(first) = view
                    .votes_seen
                    .get(&(vote.validator, evidence.first.target.epoch.0))
                    .cloned()
                else {
                    return;
                };
                let indexed = |v: &Vote| IndexedAttestation {
                    attesting_indices: VariableList::new(vec![ValidatorIndex(v.validator)])
                        .unwrap_or_default(),
                    data: v.data.clone(),
                    signature: v.signature,
                };
                let slashing = AttesterSlashing {
                    attestation_1: indexed(&first),
                    attestation_2: indexed(&vote),
                };
                self.found(node, Evidence::Attester(slashing));
            }
            Ok(VoteOutcome::Duplicate) | Err(_) => {}
        }
    }

    fn honest_validators(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.config.validators).filter(|v| honest(&self.config, *v))
    }

    /// An external validator's signed duty, from its node's API: checked and relayed as its
    /// own node would (step by step in [`LiveChain::submit`]).
    fn submit_external(&mut self, now: u64, signed: SignedExternal) -> Result<(), SubmitError> {
        let v = usize::try_from(signed.validator).unwrap_or(usize::MAX);
        if !self.external.contains(&v) {
            return Err(SubmitError::NotExternal(signed.validator));
        }
        let key = self.validator_pubkeys[v];
        let (slot, kind, root) = match &signed.data {
            ExternalData::Randao(epoch) => {
                (signed.slot, ExternalKind::Randao, epoch.tree_hash_root())
            }
            ExternalData::Declaration(d) => {
                if d.proposer_index.0 != signed.validator {
                    return Err(SubmitError::Mismatch(
                        "proposer index is not the validator".into(),
                    ));
                }
                (d.slot.0, ExternalKind::Declaration, d.tree_hash_root())
            }
            ExternalData::Attestation(a) => {
                (a.slot.0, ExternalKind::Attestation, a.tree_hash_root())
            }
        };
        let current = now / self.slot_ms();
        if slot + 2 < current || slot > current + 1 {
            return Err(SubmitError::Stale { slot, current });
        }
        let ok = match &signed.data {
            ExternalData::Randao(epoch) => self.verify(epoch, &key, &signed.signature),
            ExternalData::Declaration(d) => self.verify(d, &key, &signed.signature),
            ExternalData::Attestation(a) => self.verify(a, &key, &signed.signature),
        };
        if !ok {
            return Err(SubmitError::BadSignature);
        }
        match self.external_relayed.get(&(v, slot, kind)) {
            Some(seen) if *seen == root => return Ok(()),
            Some(_) if kind != ExternalKind::Randao => return Err(SubmitError::Conflict),
            _ => {}
        }
        match signed.data {
            ExternalData::Randao(epoch) => {
                if epoch != self.epoch(slot) {
                    return Err(SubmitError::Mismatch(format!(
                        "RANDAO reveal for epoch {}, slot {slot} is in epoch {}",
                        epoch.0,
                        self.epoch(slot).0
                    )));
                }
                let Some((parent, producer)) = self.external_proposals.remove(&(v, slot)) else {
                    return Err(SubmitError::NoDuty { slot });
                };
                let message = Declaration {
                    slot: Slot(slot),
                    proposer_index: ValidatorIndex(v as u64),
                    parent_root: parent,
                    producer: ProducerIndex(producer as u64),
                    fee_split_bps: 5_000,
                    randao_reveal: signed.signature,
                };
                self.external_duties.push(ExternalDuty {
                    validator: v as u64,
                    slot,
                    start_ms: now,
                    deadline_ms: slot * self.slot_ms() + self.slot_ms(),
                    data: ExternalData::Declaration(message),
                });
            }
            ExternalData::Declaration(message) => {
                let producer = message.producer.0 as usize;
                if producer >= self.config.producers {
                    return Err(SubmitError::Mismatch(format!("no producer {producer}")));
                }
                let declaration = SignedDeclaration {
                    message,
                    signature: signed.signature,
                };
                self.announce(&declaration);
                self.send(
                    now,
                    v,
                    self.config.validators + producer,
                    Msg::Declaration(Arc::new(declaration)),
                );
            }
            ExternalData::Attestation(data) => {
                let vote = Vote {
                    validator: v as u64,
                    data,
                    signature: signed.signature,
                };
                self.gossip(now, v, Msg::Vote(Arc::new(vote)));
            }
        }
        self.external_relayed.insert((v, slot, kind), root);
        self.external_signed += 1;
        if self.external_relayed.len() > 100_000 {
            let keep_from = current.saturating_sub(64);
            self.external_relayed.retain(|(_, s, _), _| *s >= keep_from);
            self.external_proposals.retain(|(_, s), _| *s >= keep_from);
        }
        Ok(())
    }

    fn sample_finality(&mut self, epoch: Epoch) {
        let views: Vec<usize> = self.honest_validators().collect();
        for v in views {
            let finalized = self.views[v].fc.finalized().clone();
            let lag = epoch.0.saturating_sub(1).saturating_sub(finalized.epoch.0);
            self.max_lag = self.max_lag.max(lag);
            self.finalized_seen.insert(finalized);
        }
    }

    fn is_ancestor(&self, a: Root, b: Root) -> bool {
        let mut cursor = b;
        loop {
            if cursor == a {
                return true;
            }
            match self.tree.get(&cursor) {
                Some(parent) => cursor = *parent,
                None => return false,
            }
        }
    }

    fn report(mut self) -> Report {
        let end_epoch = self.epoch(self.config.slots + 1);
        self.sample_finality(end_epoch);
        let finalized: Vec<Checkpoint> = self.finalized_seen.iter().cloned().collect();
        let mut violations = 0u64;
        for (i, a) in finalized.iter().enumerate() {
            for b in &finalized[i + 1..] {
                if !self.is_ancestor(a.root, b.root) && !self.is_ancestor(b.root, a.root) {
                    violations += 1;
                }
            }
        }
        let mut slashable = 0u64;
        for (i, (v, s, r)) in self.honest_declarations.iter().enumerate() {
            slashable += self.honest_declarations[i + 1..]
                .iter()
                .filter(|(v2, s2, r2)| v == v2 && s == s2 && r != r2)
                .count() as u64;
        }
        for (i, (v, a)) in self.honest_votes.iter().enumerate() {
            for (v2, b) in &self.honest_votes[i + 1..] {
                let (s1, t1, s2, t2) = (
                    a.source.epoch,
                    a.target.epoch,
                    b.source.epoch,
                    b.target.epoch,
                );
                if v == v2 && a != b && (t1 == t2 || (s1 < s2 && t2 < t1) || (s2 < s1 && t1 < t2)) {
                    slashable += 1;
                }
            }
        }
        let honest: Vec<usize> = self.honest_validators().collect();
        let finalized_epoch = honest
            .iter()
            .map(|v| self.views[*v].fc.finalized().epoch.0)
            .min()
            .unwrap_or(0);
        let observer = honest.first().copied().unwrap_or(0);
        let slashed = self.views[observer]
            .registry
            .slashed_validators()
            .map(|v| v.0)
            .collect();
        let mut on_chain = 0u64;
        let mut cursor = self.views[observer].fc.head();
        while let Some(block) = self.views[observer].blocks.get(&cursor) {
            on_chain += 1;
            cursor = block.header.message.parent_root;
        }
        Report {
            missed_slots: self.config.slots.saturating_sub(on_chain),
            slots: self.config.slots,
            finalized_epoch,
            max_epochs_without_finality: self.max_lag,
            safety_violations: violations,
            slashed,
            slashable_signed_by_honest: slashable,
        }
    }
}

/// Runs a simulation.
pub fn run(config: Config) -> Result<Report, SimError> {
    Ok(Sim::new(config)?.run())
}

/// The shards a producer puts in the block it builds: the devnet packs them from its mempool;
/// the simulator's own runs use placeholder shards.
pub trait ShardSource: Send {
    /// Exactly `count` shards for the block of `slot`.
    fn shards(&mut self, slot: u64, count: usize) -> Vec<Shard>;
}

/// Declarations per validator whose outcome an [`OutcomeSource`] has not reported yet; older
/// ones are dropped unrecorded.
const MAX_PENDING_OUTCOMES: usize = 64;

/// What execution made of a declared slot, for the validators' reputation books (the devnet
/// reads it from its executed chain).
pub trait OutcomeSource: Send {
    /// The outcome of `producer`'s declared block at `slot`: delivered with the validator's
    /// share of its fees, void, or missed (the executed chain passed the slot without a block
    /// of that producer there); `None` while execution has not reached the slot.
    fn outcome(&self, slot: u64, producer: ProducerIndex) -> Option<Outcome>;
}

/// What an external validator's duty signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExternalData {
    /// The RANDAO reveal of a proposal: the epoch.
    Randao(Epoch),
    /// The declaration of a proposal (with the reveal in it).
    Declaration(Declaration),
    /// An attestation.
    Attestation(AttestationData),
}

/// The kind of an [`ExternalData`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExternalKind {
    /// [`ExternalData::Randao`].
    Randao,
    /// [`ExternalData::Declaration`].
    Declaration,
    /// [`ExternalData::Attestation`].
    Attestation,
}

impl ExternalData {
    /// Its kind.
    pub fn kind(&self) -> ExternalKind {
        match self {
            Self::Randao(_) => ExternalKind::Randao,
            Self::Declaration(_) => ExternalKind::Declaration,
            Self::Attestation(_) => ExternalKind::Attestation,
        }
    }
}

/// A duty of an external validator, as its node computed it: what to sign and by when (ms
/// since genesis).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalDuty {
    /// The validator.
    pub validator: u64,
    /// The slot.
    pub slot: u64,
    /// When the duty starts.
    pub start_ms: u64,
    /// When the signature is of no more use.
    pub deadline_ms: u64,
    /// What to sign.
    pub data: ExternalData,
}

/// An external validator's signature over a duty's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedExternal {
    /// The validator.
    pub validator: u64,
    /// The slot (for a RANDAO reveal: the proposal's slot).
    pub slot: u64,
    /// What was signed.
    pub data: ExternalData,
    /// The signature.
    pub signature: SignatureBytes,
}

/// Why a node refused an external validator's submission.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The validator's key is held by this node, or there is no such validator.
    #[error("validator {0} is not served by the validator API")]
    NotExternal(u64),
    /// The signature does not verify under the validator's key.
    #[error("the signature does not verify under the validator's key")]
    BadSignature,
    /// Too old or too far ahead.
    #[error("slot {slot} is not current (the chain is at slot {current})")]
    Stale {
        /// The submission's slot.
        slot: u64,
        /// The chain's.
        current: u64,
    },
    /// Data inconsistent with the duty.
    #[error("{0}")]
    Mismatch(String),
    /// No proposal waits for this reveal.
    #[error("no proposal of this validator waits for a RANDAO reveal at slot {slot}")]
    NoDuty {
        /// The slot.
        slot: u64,
    },
    /// Different signed data for a duty already relayed (slashable; not relayed).
    #[error("conflicts with data already submitted for this duty; not relayed")]
    Conflict,
}

/// What the chain looks like to the observing validator (validator 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveStatus {
    /// The current slot.
    pub slot: u64,
    /// The head block and its slot.
    pub head: (Root, u64),
    /// The justified checkpoint.
    pub justified: Checkpoint,
    /// The finalized checkpoint.
    pub finalized: Checkpoint,
    /// Validators slashed on the observer's chain.
    pub slashed: usize,
    /// External validators' signed duties relayed so far (each duty once).
    pub external_signed: u64,
    /// Every producer's record, summed over the validators' reputation books (a
    /// declaration's outcome is recorded when its validator next proposes).
    pub producers: Vec<(ProducerIndex, phalanx_validator::reputation::Record)>,
    /// Executors' claims carried by the blocks the observer imported.
    pub claims_on_chain: u64,
    /// Executors slashed on the observer's chain by wrong-claim proofs.
    pub executors_slashed: Vec<u64>,
    /// Bounties those proofs credited to the producers that carried them, Gwei.
    pub bounties_gwei: Gwei,
    /// Executor deposits carried by the blocks the observer imported (a block that later
    /// lost fork choice included).
    pub executors_deposited: u64,
    /// Executor exits carried likewise.
    pub executors_exited: u64,
}

/// The validators' producer-reputation books, as kept across restarts: per validator, its
/// records and the declarations whose outcome it has not recorded yet (slot, producer).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Books {
    /// One book per validator, by index.
    pub validators: Vec<Book>,
}

/// One validator's book.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Book {
    /// Its record of each producer.
    pub records: Vec<(ProducerIndex, phalanx_validator::reputation::Record)>,
    /// Declarations waiting for their outcome.
    pub pending: Vec<(u64, ProducerIndex)>,
}

/// A block on the finalized chain, with what execution needs beyond the block itself.
#[derive(Debug, Clone)]
pub struct FinalizedBlock {
    /// The block.
    pub block: Arc<SignedBlock>,
    /// Its root.
    pub root: Root,
    /// The RANDAO mix after it (execution's `PREVRANDAO`).
    pub mix: B256,
}

/// The consensus protocol live: the simulator's validators and producers, each with its own
/// view, slashing protection and producer reputation, driven by the wall clock over perfect
/// in-process links (50 ms). The devnet runs its chain this way, in one process, until the
/// validator and producer roles run as separate tasks over the network seam.
pub struct LiveChain {
    sim: Sim,
    scheduled: u64,
    now: u64,
}

impl std::fmt::Debug for LiveChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveChain")
            .field("validators", &self.sim.config.validators)
            .field("producers", &self.sim.config.producers)
            .field("now_ms", &self.now)
            .finish()
    }
}

impl LiveChain {
    /// A chain of `validators` and `producers` from `params` (whose validator and producer
    /// counts are replaced), its producers taking their shards from `source`. Returns the
    /// genesis and keys it was built from.
    ///
    /// With `protection`, each validator's slashing-protection database is the file
    /// `validator-N.redb` in that folder (kept across restarts); otherwise in memory.
    pub fn new(
        validators: usize,
        producers: usize,
        params: DevnetParams,
        source: Box<dyn ShardSource>,
        protection: Option<&std::path::Path>,
    ) -> Result<(Self, Genesis, DevnetKeys), SimError> {
        let config = Config {
            validators,
            producers,
            slots: u64::MAX,
            ..Config::default()
        };
        let (mut sim, genesis, keys) = Sim::with_params(config, params)?;
        sim.shard_source = Some(source);
        sim.imported = Some(Vec::new());
        if let Some(dir) = protection {
            std::fs::create_dir_all(dir)
                .map_err(|e| SimError::Config(format!("{}: {e}", dir.display())))?;
            sim.protection = (0..validators)
                .map(|i| {
                    let path = dir.join(format!("validator-{i}.redb"));
                    SlashingProtection::open(&path, sim.genesis_root)
                        .map_err(|e| SimError::Config(format!("{}: {e}", path.display())))
                })
                .collect::<Result<Vec<_>, _>>()?;
        }
        Ok((
            Self {
                sim,
                scheduled: 0,
                now: 0,
            },
            genesis,
            keys,
        ))
    }

    /// Slot length, ms.
    pub fn slot_ms(&self) -> u64 {
        self.sim.slot_ms()
    }

    /// Judges the validators' declarations by what execution made of them (fees earned, void
    /// blocks) instead of by the blocks seen.
    pub fn set_outcomes(&mut self, source: Box<dyn OutcomeSource>) {
        self.sim.outcomes = Some(source);
    }

    /// The genesis block's root (the registry's root, as in the simulator).
    pub fn genesis_root(&self) -> Root {
        self.sim.genesis_root
    }

    /// Runs everything due up to `now_ms` (milliseconds since genesis).
    pub fn advance(&mut self, now_ms: u64) {
        let slot_ms = self.slot_ms();
        while (self.scheduled + 1) * slot_ms <= now_ms {
            let slot = self.scheduled + 1;
            self.sim.queue.push(slot * slot_ms, Event::SlotStart(slot));
            self.sim
                .queue
                .push(slot * slot_ms + slot_ms / 3, Event::Attest(slot));
            self.scheduled = slot;
        }
        while let Some(at) = self.sim.queue.next_at() {
            if at > now_ms {
                break;
            }
            let Some((at, event)) = self.sim.queue.pop() else {
                break;
            };
            match event {
                Event::SlotStart(slot) => self.sim.on_slot(at, slot),
                Event::Attest(slot) => self.sim.on_attest_time(at, slot),
                Event::Deliver { from, to, msg } => self.sim.deliver(at, from, to, msg),
            }
        }
        self.now = now_ms;
        // Signature checks are cached only to spare identical work across views; a long
        // devnet run must not grow the cache without bound.
        if self.sim.sig_cache.len() > 200_000 {
            self.sim.sig_cache.clear();
        }
        if self.sim.block_cache.len() > 50_000 {
            self.sim.block_cache.clear();
        }
    }

    /// Blocks validator 0 imported since the last call, in import order (for a block log).
    pub fn take_imported(&mut self) -> Vec<Arc<SignedBlock>> {
        self.sim
            .imported
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Resumes from `blocks` (as [`LiveChain::take_imported`] gave them before a stop): every
    /// node imports them in order, rebuilding its block tree, fork choice (from the blocks'
    /// attestations), registry and RANDAO mixes; slots before `now_ms` are not run again.
    pub fn resume(&mut self, blocks: Vec<Arc<SignedBlock>>, now_ms: u64) {
        let imported = self.sim.imported.take();
        for block in blocks {
            self.sim
                .tree
                .insert(block.root(), block.header.message.parent_root);
            for node in 0..self.sim.views.len() {
                self.sim.on_block(now_ms, node, node, block.clone());
            }
        }
        self.sim.imported = imported;
        self.scheduled = now_ms / self.slot_ms();
        self.now = now_ms;
    }

    /// The chain from genesis (exclusive) to `root` (inclusive), oldest first, as validator 0
    /// sees it; empty if `root` is unknown.
    pub fn ancestry(&self, root: Root) -> Vec<FinalizedBlock> {
        self.finalized_between(self.sim.genesis_root, root)
    }

    fn finalized_between(&self, after: Root, upto: Root) -> Vec<FinalizedBlock> {
        let view = &self.sim.views[0];
        let mut out = Vec::new();
        let mut cursor = upto;
        while cursor != after {
            let Some(block) = view.blocks.get(&cursor) else {
                return Vec::new();
            };
            out.push(FinalizedBlock {
                block: block.clone(),
                root: cursor,
                mix: view.mixes.get(&cursor).copied().unwrap_or_default(),
            });
            cursor = block.header.message.parent_root;
        }
        out.reverse();
        out
    }

    /// The chain as validator 0 sees it.
    pub fn status(&self) -> LiveStatus {
        let view = &self.sim.views[0];
        let head = view.fc.head();
        LiveStatus {
            slot: self.now / self.slot_ms(),
            head: (head, view.fc.slot(&head).map_or(0, |s| s.0)),
            justified: view.fc.justified().clone(),
            finalized: view.fc.finalized().clone(),
            slashed: view.registry.slashed_validators().count(),
            external_signed: self.sim.external_signed,
            producers: self.sim.producer_records(),
            claims_on_chain: self.sim.claims_on_chain,
            executors_slashed: view.head_executors().slashed().map(|e| e.0).collect(),
            executors_deposited: self.sim.executors_deposited,
            executors_exited: self.sim.executors_exited,
            bounties_gwei: self.sim.bounties_gwei,
        }
    }

    /// An executor's signed claim, to be carried in a block: checked as validator 0's node
    /// would before gossiping it (a known executor's valid signature, a block of its chain in
    /// the claim window, not on chain yet), then gossiped to every producer's pool. The same
    /// claim twice is accepted and gossiped once.
    pub fn submit_claim(&mut self, claim: SignedClaim) -> Result<(), ClaimError> {
        self.sim.submit_claim(self.now, claim)
    }

    /// A wrong-claim proof, to be carried in a block: checked against validator 0's chain as
    /// block import will check it (`phalanx_consensus::claims`, rules 4–5), then gossiped.
    /// `Ok(false)`: the executor is already slashed, nothing to do.
    pub fn submit_fraud_proof(&mut self, proof: FraudProof) -> Result<bool, BodyError> {
        self.sim.submit_fraud_proof(self.now, proof)
    }

    /// Slashing evidence from the network, to be carried in a block: judged against validator
    /// 0's registry by the rules block import applies, then gossiped to every pool.
    /// `Ok(false)`: nothing new (the validator is slashed, or the evidence already pooled).
    pub fn submit_evidence(&mut self, evidence: Evidence) -> Result<bool, EvidenceError> {
        self.sim.submit_evidence(self.now, evidence)
    }

    /// Starts keeping what validator 0's node publishes on a public network: its validators'
    /// declarations and the slashing evidence its view finds ([`LiveChain::take_published`]).
    pub fn publish(&mut self) {
        self.sim.published.get_or_insert_with(Published::default);
    }

    /// What to publish since the last call (empty unless [`LiveChain::publish`] was called).
    pub fn take_published(&mut self) -> Published {
        self.sim
            .published
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Fault injection: the last `n` validators equivocate (two declarations per proposal,
    /// two votes per epoch), so the chain carries slashing evidence. Validator 0 (the
    /// observer) stays honest.
    pub fn set_equivocators(&mut self, n: usize) -> Result<(), SimError> {
        if n >= self.sim.config.validators {
            return Err(SimError::Config(
                "at least one validator must be honest".into(),
            ));
        }
        self.sim.config.equivocators = n;
        Ok(())
    }

    /// The validators' producer-reputation books (to keep them across a restart).
    pub fn books(&self) -> Books {
        Books {
            validators: self
                .sim
                .reputation
                .iter()
                .zip(&self.sim.declared)
                .map(|(book, pending)| Book {
                    records: book.records().collect(),
                    pending: pending.clone(),
                })
                .collect(),
        }
    }

    /// Puts back books [`LiveChain::books`] gave; refused when they are not one per validator.
    pub fn restore_books(&mut self, books: Books) -> Result<(), SimError> {
        if books.validators.len() != self.sim.reputation.len() {
            return Err(SimError::Config(format!(
                "{} reputation books for {} validators",
                books.validators.len(),
                self.sim.reputation.len()
            )));
        }
        for (v, book) in books.validators.into_iter().enumerate() {
            self.sim.reputation[v] = Reputation::from_records(Policy::default(), book.records);
            self.sim.declared[v] = book.pending;
        }
        Ok(())
    }

    /// The executors as validator 0's head left them (slashings, deposits, exits and
    /// releases applied).
    pub fn executors(&self) -> &ExecutorRegistry {
        self.sim.views[0].head_executors()
    }

    /// A new executor's deposit, to be carried in a block: checked against validator 0's head
    /// (both signatures, the bond, the key not registered, the producer's funds), then gossiped
    /// to every producer's pool.
    pub fn submit_deposit(
        &mut self,
        deposit: SignedExecutorDeposit,
    ) -> Result<(), phalanx_consensus::executor_ops::DepositError> {
        self.sim.submit_deposit(self.now, deposit)
    }

    /// An executor's exit, to be carried in a block: checked against validator 0's head (an
    /// active executor's valid signature), then gossiped; an exit for a later epoch waits in
    /// the pools until then.
    pub fn submit_exit(
        &mut self,
        exit: SignedExecutorExit,
    ) -> Result<(), phalanx_consensus::executor_ops::ExitError> {
        self.sim.submit_exit(self.now, exit)
    }

    /// Hands the duties of `validators` to someone else (a distributed validator behind the
    /// validator API): their views still compute each duty and its data, which
    /// [`LiveChain::take_duties`] yields; [`LiveChain::submit`] takes the signatures back.
    /// Validator 0 (the observer) cannot be one of them.
    pub fn set_external(
        &mut self,
        validators: impl IntoIterator<Item = usize>,
    ) -> Result<(), SimError> {
        let set: HashSet<usize> = validators.into_iter().collect();
        if let Some(bad) = set
            .iter()
            .find(|v| **v == 0 || **v >= self.sim.config.validators)
        {
            return Err(SimError::Config(format!(
                "validator {bad} cannot be external (1..{} can)",
                self.sim.config.validators
            )));
        }
        self.sim.external = set;
        Ok(())
    }

    /// External validators' duties computed since the last call, in order.
    pub fn take_duties(&mut self) -> Vec<ExternalDuty> {
        std::mem::take(&mut self.sim.external_duties)
    }

    /// An external validator's signed duty, checked as its node would before relaying it:
    /// the validator must be external; the slot within two slots back and one ahead; the
    /// signature valid under the validator's key. A RANDAO reveal must be for the slot's epoch
    /// and a proposal waiting for it; the node then asks for the declaration (a new duty)
    /// with the reveal in it. A declaration goes to the producer it names, an attestation to
    /// everyone. Submitting the same data twice is accepted and relayed once; different data
    /// for a duty already relayed is refused (it would be slashable).
    pub fn submit(&mut self, signed: SignedExternal) -> Result<(), SubmitError> {
        self.sim.submit_external(self.now, signed)
    }

    /// Validator `v`'s public key.
    pub fn validator_pubkey(&self, v: usize) -> Option<PublicKeyBytes> {
        self.sim.validator_pubkeys.get(v).map(PublicKey::to_bytes)
    }

    /// The chain's signing context.
    pub fn signing(&self) -> SigningContext {
        self.sim.signing
    }

    /// The proposers of every slot of `epoch` on validator 0's head chain, with the block whose
    /// mix seeds them; `None` for an epoch after the current one (its seed is the mix at the
    /// end of the current epoch, not known yet).
    pub fn proposer_duties(&self, epoch: Epoch) -> Option<(Root, Vec<(Slot, ValidatorIndex)>)> {
        let spe = self.sim.spec.slots_per_epoch;
        if epoch.0 > (self.now / self.slot_ms()) / spe {
            return None;
        }
        let head = self.sim.views[0].fc.head();
        let seed = self.sim.seed(0, head, epoch);
        let duties = (epoch.start_slot(spe).0..epoch.start_slot(spe).0 + spe)
            .filter(|s| *s > 0)
            .filter_map(|s| {
                proposer(&self.sim.registry_at(0, head), seed, Slot(s)).map(|v| (Slot(s), v))
            })
            .collect();
        Some((self.sim.seed_block(0, head, epoch), duties))
    }

    /// The aggregated attestations in the bodies of the blocks on validator 0's canonical
    /// chain (head back to the first block before `from`'s start) whose target epoch is `from`
    /// or later, each distinct aggregate once: the votes a light client checks finality by
    /// (`phalanx_light::finality`). Block bodies carry the aggregates of the last two epochs,
    /// so a supermajority link shows up here a slot or two after fork choice counted it from
    /// gossip.
    pub fn attestations_since(&self, from: Epoch) -> Vec<Attestation> {
        let view = &self.sim.views[0];
        let start = from.start_slot(self.sim.spec.slots_per_epoch);
        let mut seen: HashSet<Root> = HashSet::new();
        let mut out = Vec::new();
        let mut cursor = view.fc.head();
        while let Some(block) = view.blocks.get(&cursor) {
            for a in block.body.attestations.iter() {
                if a.data.target.epoch >= from && seen.insert(a.tree_hash_root()) {
                    out.push(a.clone());
                }
            }
            if block.header.message.slot < start {
                break;
            }
            cursor = block.header.message.parent_root;
        }
        out.sort_by_key(|a| (a.data.target.epoch, a.data.slot));
        out
    }

    /// The finalized blocks after `after` (exclusive), oldest first, as validator 0 sees
    /// them. Empty when nothing new is final, or when `after` is not on the finalized chain.
    pub fn finalized_after(&self, after: Root) -> Vec<FinalizedBlock> {
        self.finalized_between(after, self.sim.views[0].fc.finalized().root)
    }
}
