//! `phalanx sim light`: executors' claims and one light client, with a real chain behind them.
//!
//! Each block (one per 2 s slot of virtual time) carries signed transfers in two shards and is
//! executed for real by an honest full node (`phalanx_execution`, an in-memory state), which
//! knows the true post-state root. The light client ([`phalanx_light::client`]) trusts the
//! genesis as its checkpoint and gets each header at the slot's start. Every bonded executor
//! signs a claim 100–500 ms later (seeded delays):
//!
//! - honest executors claim the true root;
//! - with `--lying-stake P --lie-at H`, the executors holding the first `P`% of the bond claim a
//!   wrong root at height `H` — with a wrong effects root for shard 0 and the true one for
//!   shard 1, as an executor whose shard 0 went wrong would — and keep building on their wrong
//!   chain afterwards (a consistent lie). The client's proof request then re-executes only
//!   shard 0 (`shards_re_executed` counts them);
//! - with `--withhold`, no executor claims block `H` (`--lie-at`, default 10);
//! - with `--spam`, bonded executors also sign three claims per block about blocks that do
//!   not exist.
//!
//! With `--forged-proofs` a lying full node answers each request first (100 ms), with a
//! witness one byte of which is flipped; the client must refuse it with a typed error.
//!
//! The full node answers the client's requests for a proof of execution 200 ms later (with
//! the shards the client asked to re-execute), and — the interactive part — pushes a full
//! proof to the client on its own whenever it sees a claim whose root it knows to be wrong
//! (1 s after the claim). Each claim a verified proof shows
//! wrong goes on chain as a `WrongClaim` fraud proof (the claim and the proof of execution):
//! `phalanx_consensus::executors::apply_wrong_claim` checks the claim's signature, the
//! execution side's `ClaimVerifier` re-executes, and the executor is slashed with a bounty to
//! the submitter (and weighs nothing to the client from then on).
//!
//! The run ends with one JSON line ([`Report`]).

use std::collections::{BTreeMap, BTreeSet};

use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_primitives::{Address, B256, Bytes, TxKind, U256, keccak256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use phalanx_consensus::executors::ExecutorRegistry;
use phalanx_consensus::executors::apply_wrong_claim;
use phalanx_crypto::SecretKey;
use phalanx_execution::block::BlockEnv;
use phalanx_execution::changes::Changes;
use phalanx_execution::proof::ClaimVerifier;
use phalanx_execution::proof::ExecutionProof;
use phalanx_execution::store::StateStore;
use phalanx_light::client::{Config as ClientConfig, LightClient, LightHeader, Need};
use phalanx_spec::ChainSpec;
use phalanx_spec::devnet::{self, DevnetParams};
use phalanx_types::{
    BlockHeader, Declaration, Encode, ExecutorIndex, FraudProof, FraudProofKind, ProducerIndex,
    Shard, SignedClaim, SignedDeclaration, Slot, TreeHash, ValidatorIndex, WrongClaimEvidence,
};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use ssz_types::VariableList;

/// Slot length (virtual ms).
const SLOT_MS: u64 = 2_000;
/// How long the full node takes to answer a proof request.
const PROOF_DELAY_MS: u64 = 200;
/// How long after a wrong claim the full node pushes its proof: after the client's own request
/// would have been answered — the push is the fallback for a world where no honest claimant
/// raises the disagreement (it is a full proof, since the client then agrees on no shard).
const PUSH_DELAY_MS: u64 = 1_000;
/// Blocks the full node keeps unfinalized (it can prove any of them).
const KEEP: u64 = 64;
/// Senders of the load.
const SENDERS: usize = 16;
/// Transfers per shard.
const TXS_PER_SHARD: usize = 4;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Config {
    /// Bonded executors (equal bonds).
    pub executors: u32,
    /// Percent of the bond that lies.
    pub lying_stake: u32,
    /// The height the liars lie at (and the withheld height).
    pub lie_at: u64,
    /// No claims at `lie_at`.
    pub withhold: bool,
    /// Claims about blocks that do not exist.
    pub spam: bool,
    /// A lying full node answers every proof request first, with a forged witness.
    pub forged_proofs: bool,
    /// Blocks.
    pub blocks: u64,
    /// Seed.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            executors: 10,
            lying_stake: 0,
            lie_at: 10,
            withhold: false,
            spam: false,
            forged_proofs: false,
            blocks: 100,
            seed: 1,
        }
    }
}

/// The result (printed as one JSON line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Blocks simulated.
    pub blocks: u64,
    /// Heights whose believed root is wrong at the end.
    pub wrong_roots_believed: u64,
    /// Heights whose believed root was wrong at some moment (then corrected).
    pub transient_wrong_roots: u64,
    /// Proofs of execution verified and used.
    pub re_executions: u64,
    /// Shards those proofs re-executed (the others were agreed by every claim).
    pub shards_re_executed: u64,
    /// Executors slashed on chain, by index.
    pub slashed: Vec<u64>,
    /// Worst time from a header to the client believing (for good) the true root there.
    pub max_ms_to_correct_root: u64,
    /// Claims about unknown blocks dropped.
    pub spam_dropped: u64,
    /// Proofs the client asked for (disagreement or withheld claims).
    pub proofs_requested: u64,
    /// Proofs the full node pushed on seeing a wrong claim.
    pub proofs_pushed: u64,
    /// Forged proofs the client refused (with `forged_proofs`).
    pub forged_rejected: u64,
    /// Bounties paid to the submitters of the slashing proofs, Gwei.
    pub bounties_gwei: u64,
    /// Heights the light client believed a root at, at the end.
    pub believed_height: u64,
}

/// A configuration that cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LightSimError {
    /// Bad flags.
    #[error("invalid light simulation: {0}")]
    Config(String),
    /// Building or executing the chain failed.
    #[error("light simulation: {0}")]
    Chain(String),
}

#[derive(Debug)]
enum Event {
    Header(u64),
    Claim(Box<SignedClaim>),
    /// A proof re-executing `execute` (every shard when `None`).
    Proof {
        height: u64,
        execute: Option<Vec<usize>>,
    },
    ForgedProof {
        height: u64,
    },
    Tick,
}

struct Block {
    consensus: BlockHeader,
    header: LightHeader,
    shards: Vec<Shard>,
    root: B256,
    effects_roots: Vec<B256>,
}

fn chain(e: impl std::fmt::Display) -> LightSimError {
    LightSimError::Chain(e.to_string())
}

/// Runs the simulation.
pub fn run(config: Config) -> Result<Report, LightSimError> {
    if config.executors == 0 || config.blocks == 0 {
        return Err(LightSimError::Config(
            "need at least one executor and one block".into(),
        ));
    }
    if config.lying_stake > 100 {
        return Err(LightSimError::Config(format!(
            "--lying-stake {} is not a percentage",
            config.lying_stake
        )));
    }
    if config.lie_at == 0 {
        return Err(LightSimError::Config("--lie-at starts at 1".into()));
    }
    let spec = ChainSpec::preset("devnet").map_err(chain)?;
    let mut params = DevnetParams::new(format!("sim-light-{}", config.seed), spec.clone());
    params.executors = config.executors;
    params.accounts = 0;
    let (genesis, keys) = devnet::generate(&params).map_err(chain)?;
    let signing = genesis.signing_context();
    let mut registry = ExecutorRegistry::from_genesis(&genesis).map_err(chain)?;
    let executor_keys: Vec<SecretKey> = keys.executors.iter().map(|(_, k)| k.clone()).collect();
    let liars =
        ((u64::from(config.executors) * u64::from(config.lying_stake)).div_ceil(100)) as usize;

    // The honest full node's state.
    let senders: Vec<PrivateKeySigner> = (0..SENDERS)
        .map(|i| {
            PrivateKeySigner::from_bytes(&keccak256(format!("sim-light-sender-{i}"))).map_err(chain)
        })
        .collect::<Result<_, _>>()?;
    let store = StateStore::in_memory().map_err(chain)?;
    let genesis_hash = keccak256(format!("sim-light-genesis-{}", config.seed));
    let genesis_root = store
        .init_genesis(genesis_hash, &alloc(&senders))
        .map_err(chain)?;

    let mut client = LightClient::new(
        ClientConfig::default(),
        signing,
        registry.clone(),
        (0, genesis_hash, genesis_root),
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(config.seed);
    let mut queue: BTreeMap<(u64, u64), Event> = BTreeMap::new();
    let mut seq = 0u64;
    let mut push = |queue: &mut BTreeMap<(u64, u64), Event>, at: u64, e: Event| {
        seq += 1;
        queue.insert((at, seq), e);
    };
    let mut blocks: BTreeMap<u64, Block> = BTreeMap::new();
    let mut parent = (genesis_hash, genesis_root);
    let mut nonces = vec![0u64; SENDERS];
    let mut liar_root: Option<B256> = None;
    for h in 1..=config.blocks {
        push(&mut queue, h * SLOT_MS, Event::Header(h));
    }
    let mut produced = 0u64;
    let mut requested: BTreeSet<u64> = BTreeSet::new();
    let mut pushed_for: BTreeSet<u64> = BTreeSet::new();
    let mut report = Report {
        blocks: config.blocks,
        wrong_roots_believed: 0,
        transient_wrong_roots: 0,
        re_executions: 0,
        shards_re_executed: 0,
        slashed: Vec::new(),
        max_ms_to_correct_root: 0,
        spam_dropped: 0,
        proofs_requested: 0,
        proofs_pushed: 0,
        forged_rejected: 0,
        bounties_gwei: 0,
        believed_height: 0,
    };
    let mut ever_wrong: BTreeSet<u64> = BTreeSet::new();
    let mut proofs: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut correct_since: BTreeMap<u64, u64> = BTreeMap::new();

    while let Some(((now, _), event)) = queue.pop_first() {
        match event {
            Event::Header(h) => {
                // The full node builds and executes block h.
                let block = build_block(&store, h, parent, &spec, &senders, &mut nonces, &mut rng)?;
                produced = h;
                if h > KEEP {
                    let old = blocks
                        .get(&(h - KEEP))
                        .map(|b| b.header.hash)
                        .unwrap_or_default();
                    store.finalize(old).map_err(chain)?;
                }
                client.on_header(block.header.clone(), now).map_err(chain)?;
                // Claims.
                for (i, key) in executor_keys.iter().enumerate() {
                    if config.withhold && h == config.lie_at {
                        break;
                    }
                    let lying = i < liars && h >= config.lie_at;
                    let mut effects = block.effects_roots.clone();
                    let (prev, post) = if lying {
                        effects[0] = keccak256([b"lie".as_slice(), effects[0].as_slice()].concat());
                        let prev = if h == config.lie_at {
                            parent.1
                        } else {
                            liar_root.unwrap_or(parent.1)
                        };
                        (
                            prev,
                            keccak256([b"lie".as_slice(), block.root.as_slice()].concat()),
                        )
                    } else {
                        (parent.1, block.root)
                    };
                    let claim = LightClient::claim_for(&block.header, prev, &effects, post);
                    let signed = SignedClaim {
                        executor: ExecutorIndex(i as u64),
                        signature: signing.sign(&claim, key),
                        message: claim,
                    };
                    let delay = 100 + rng.random_range(0..400);
                    push(&mut queue, now + delay, Event::Claim(Box::new(signed)));
                }
                if liars > 0 && h >= config.lie_at && !(config.withhold && h == config.lie_at) {
                    liar_root = Some(keccak256(
                        [b"lie".as_slice(), block.root.as_slice()].concat(),
                    ));
                }
                if config.spam {
                    for _ in 0..3 {
                        let i = rng.random_range(0..executor_keys.len());
                        let bogus = LightHeader {
                            hash: B256::from(rng.random::<[u8; 32]>()),
                            ..block.header.clone()
                        };
                        let claim =
                            LightClient::claim_for(&bogus, parent.1, &[], B256::repeat_byte(0x5a));
                        let signed = SignedClaim {
                            executor: ExecutorIndex(i as u64),
                            signature: signing.sign(&claim, &executor_keys[i]),
                            message: claim,
                        };
                        push(&mut queue, now + 50, Event::Claim(Box::new(signed)));
                    }
                }
                parent = (block.header.hash, block.root);
                blocks.insert(h, block);
            }
            Event::Claim(signed) => {
                let height = signed.message.height;
                // The full node sees every claim; a slashable one (a bonded executor's wrong
                // root for a block it executed, from the true parent root) makes it push the
                // proof to the client.
                let true_parent = if height <= 1 {
                    Some(genesis_root)
                } else {
                    blocks.get(&(height - 1)).map(|p| p.root)
                };
                if let Some(b) = blocks.get(&height)
                    && signed.message.block_hash == b.header.hash
                    && Some(signed.message.prev_state_root) == true_parent
                    && signed.message.post_state_root != b.root
                    && registry.weight(signed.executor, phalanx_types::Epoch(0)) > 0
                    && pushed_for.insert(height)
                {
                    report.proofs_pushed += 1;
                    push(
                        &mut queue,
                        now + PUSH_DELAY_MS,
                        Event::Proof {
                            height,
                            execute: None,
                        },
                    );
                }
                if let Err(phalanx_light::client::ClaimError::UnknownBlock { .. }) =
                    client.on_claim(*signed)
                {
                    report.spam_dropped += 1;
                }
            }
            Event::Tick => {}
            Event::ForgedProof { height } => {
                let Some(b) = blocks.get(&height) else {
                    continue;
                };
                let parent_root = blocks.get(&(height - 1)).map_or(genesis_root, |p| p.root);
                let view = store.view(b.header.parent).map_err(chain)?;
                let mut proof = ExecutionProof::build(&view, parent_root, &b.header.env, &b.shards)
                    .map_err(chain)?;
                // Flip a byte of one witness node: its hash no longer resolves.
                let mut nodes = proof.witness.nodes.to_vec();
                if let Some(node) = nodes.first_mut() {
                    let mut bytes = node.to_vec();
                    if let Some(x) = bytes.last_mut() {
                        *x ^= 1;
                    }
                    *node = VariableList::new(bytes).unwrap_or_default();
                }
                proof.witness.nodes = VariableList::new(nodes).unwrap_or_default();
                match client.on_proof(height, &proof) {
                    Err(phalanx_light::client::ProofError::Invalid(_)) => {
                        report.forged_rejected += 1
                    }
                    Err(_) => {}
                    Ok(_) => return Err(chain("a forged proof was accepted")),
                }
            }
            Event::Proof { height, execute } => {
                let Some(b) = blocks.get(&height) else {
                    continue;
                };
                let parent_hash = b.header.parent;
                let parent_root = if height == 1 {
                    genesis_root
                } else {
                    blocks.get(&(height - 1)).map_or(genesis_root, |p| p.root)
                };
                let view = store.view(parent_hash).map_err(chain)?;
                let all: Vec<usize> = (0..b.shards.len()).collect();
                let proof = ExecutionProof::build_partial(
                    &view,
                    parent_root,
                    &b.header.env,
                    &b.shards,
                    execute.as_deref().unwrap_or(&all),
                )
                .map_err(chain)?;
                proofs.insert(height, proof.to_bytes());
                match client.on_proof(height, &proof) {
                    Ok(_) => {}
                    Err(phalanx_light::client::ProofError::Unexpected(_)) => {
                        // The client has not reached the parent yet: the full node retries.
                        push(&mut queue, now + 500, Event::Proof { height, execute });
                        continue;
                    }
                    Err(e) => tracing::debug!(height, error = %e, "sim light: proof not used"),
                }
                requested.remove(&height);
            }
        }
        // Claims a proof showed wrong go on chain as `WrongClaim` fraud proofs: consensus
        // checks the claim's signature, execution re-executes, the executor is slashed.
        for wrong in client.take_wrong_claims() {
            let height = wrong.claim.message.height;
            let (Some(b), Some(bytes)) = (blocks.get(&height), proofs.get(&height)) else {
                continue;
            };
            let evidence = WrongClaimEvidence {
                claim: wrong.claim.clone(),
                execution_proof: VariableList::new(bytes.clone()).map_err(chain)?,
            };
            let fraud = FraudProof {
                kind: FraudProofKind::WrongClaim as u8,
                block_root: b.header.hash,
                accused: wrong.claim.executor.0,
                payload: VariableList::new(evidence.as_ssz_bytes()).map_err(chain)?,
            };
            let parent_root = blocks.get(&(height - 1)).map_or(genesis_root, |p| p.root);
            let verifier = ClaimVerifier::new(|h: &BlockHeader| {
                blocks
                    .get(&h.slot.0)
                    .map(|x| (h.root(), x.header.env.clone()))
            });
            match apply_wrong_claim(
                &verifier,
                &fraud,
                &b.consensus,
                parent_root,
                &signing,
                &mut registry,
            ) {
                Ok((e, bounty)) => {
                    report.bounties_gwei += bounty;
                    client.executors_mut().slash(e);
                }
                Err(e) => return Err(chain(format!("a wrong claim was not slashed: {e}"))),
            }
        }
        // The client advances; a block it cannot pass gets a proof request.
        if let Some(Need {
            height, execute, ..
        }) = client.advance(now)
            && requested.insert(height)
        {
            report.proofs_requested += 1;
            if config.forged_proofs {
                push(
                    &mut queue,
                    now + PROOF_DELAY_MS / 2,
                    Event::ForgedProof { height },
                );
            }
            push(
                &mut queue,
                now + PROOF_DELAY_MS,
                Event::Proof {
                    height,
                    execute: Some(execute),
                },
            );
        }
        // Withheld claims are noticed only by the clock: tick while a header waits.
        let (head, _) = client.head();
        if head < produced && !queue.keys().any(|(t, _)| *t <= now + 100) {
            push(&mut queue, now + 100, Event::Tick);
        }
        // Correctness bookkeeping.
        for (h, b) in blocks.range(1..=produced) {
            match client.root_at(*h) {
                Some(r) if r == b.root => {
                    correct_since.entry(*h).or_insert(now);
                }
                Some(_) => {
                    ever_wrong.insert(*h);
                    correct_since.remove(h);
                }
                None => {
                    correct_since.remove(h);
                }
            }
        }
    }
    report.re_executions = client.stats().re_executions;
    report.shards_re_executed = client.stats().shards_re_executed;
    report.transient_wrong_roots = ever_wrong.len() as u64;
    report.believed_height = client.head().0;
    report.wrong_roots_believed = blocks
        .iter()
        .filter(|(h, b)| client.root_at(**h).is_some_and(|r| r != b.root))
        .count() as u64;
    report.max_ms_to_correct_root = blocks
        .keys()
        .map(|h| {
            correct_since
                .get(h)
                .map_or(u64::MAX, |t| t.saturating_sub(h * SLOT_MS))
        })
        .max()
        .unwrap_or(0);
    report.slashed = registry.slashed().map(|e| e.0).collect();
    Ok(report)
}

fn alloc(senders: &[PrivateKeySigner]) -> Changes {
    let mut changes = Changes::default();
    for s in senders {
        changes.fund(s.address(), U256::from(10u64).pow(U256::from(24u64)));
    }
    changes
}

fn build_block(
    store: &StateStore,
    height: u64,
    parent: (B256, B256),
    spec: &ChainSpec,
    senders: &[PrivateKeySigner],
    nonces: &mut [u64],
    rng: &mut rand_chacha::ChaCha8Rng,
) -> Result<Block, LightSimError> {
    let mut shards: Vec<Vec<Bytes>> = vec![Vec::new(), Vec::new()];
    // Shard s takes senders of its own half, so the two shards never touch one account.
    for (s, shard) in shards.iter_mut().enumerate() {
        for _ in 0..TXS_PER_SHARD {
            let i = s * (SENDERS / 2) + rng.random_range(0..SENDERS / 2);
            let to = Address::from(rng.random::<[u8; 20]>());
            let tx = TxEip1559 {
                chain_id: spec.chain_id,
                nonce: nonces[i],
                gas_limit: 21_000,
                max_fee_per_gas: 2_000_000_000,
                max_priority_fee_per_gas: 1_000_000_000,
                to: TxKind::Call(to),
                value: U256::from(1_000u64),
                access_list: Default::default(),
                input: Default::default(),
            };
            let sig = senders[i]
                .sign_hash_sync(&tx.signature_hash())
                .map_err(chain)?;
            let envelope: alloy_consensus::TxEnvelope = tx.into_signed(sig).into();
            shard.push(phalanx_types::transaction::encode(&envelope).into());
            nonces[i] += 1;
        }
    }
    let typed: Vec<Shard> = shards
        .iter()
        .map(|txs| Shard::from_transactions(txs.iter().map(|t| t.to_vec()).collect()))
        .collect::<Result<_, _>>()
        .map_err(|e| chain(format!("{e:?}")))?;
    let shard_roots: Vec<B256> = typed.iter().map(TreeHash::tree_hash_root).collect();
    // A consensus header (unsigned: the simulator's chain is not what is under test here).
    let consensus = BlockHeader {
        slot: Slot(height),
        parent_root: parent.0,
        declaration: SignedDeclaration {
            message: Declaration {
                slot: Slot(height),
                proposer_index: ValidatorIndex(0),
                parent_root: parent.0,
                producer: ProducerIndex(0),
                fee_split_bps: 5_000,
                randao_reveal: Default::default(),
            },
            signature: Default::default(),
        },
        producer: ProducerIndex(0),
        shard_roots: VariableList::new(shard_roots.clone()).map_err(chain)?,
        body_root: B256::ZERO,
    };
    let hash = consensus.root();
    let env = BlockEnv {
        number: height,
        timestamp: 1_700_000_000 + height * SLOT_MS / 1000,
        chain_id: spec.chain_id,
        basefee: 1_000_000_000,
        prevrandao: keccak256(height.to_be_bytes()),
        shard_gas_limit: spec.shard_gas_limit,
        block_gas_limit: spec.shard_gas_limit.saturating_mul(2),
        block_hashes: BTreeMap::new(),
        validator_reward: Address::repeat_byte(0xaa),
        producer_reward: Address::repeat_byte(0xbb),
        fee_split_bps: 5_000,
    };
    let result = store
        .execute(parent.0, hash, &env, &shards)
        .map_err(chain)?;
    Ok(Block {
        consensus,
        header: LightHeader {
            height,
            hash,
            parent: parent.0,
            shard_roots,
            env,
        },
        shards: typed,
        root: result.post_state_root,
        effects_roots: result.effects_roots(),
    })
}
