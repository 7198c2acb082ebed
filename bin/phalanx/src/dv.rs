//! `phalanx dv …`: distributed validator commands.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use phalanx_dv::ceremony::{ClusterDefinition, ReshareDefinition, run_ceremony};
use phalanx_dv::consensus::{BASE_TIMEOUT_MS, STEP_TIMEOUT_MS};
use phalanx_dv::create::{load_operator, write_operator_files};
use phalanx_dv::duties::DutyClock;
use phalanx_dv::identity::{OperatorId, OperatorKey};
use phalanx_dv::lock::ClusterLock;
use phalanx_dv::member::{Member, MemberConfig, Submission};
use phalanx_dv::qbft::Qbft;
use phalanx_dv::run::{DvMetrics, KnownDuties, RunContext, RunReport, duty_validity, unix_ms};
use phalanx_dv::tendermint::Tendermint;
use phalanx_net::PeerKey;
use phalanx_net::p2p::{Config as NetConfig, Libp2pNetwork, Peer};
use phalanx_types::signing::SigningContext;
use phalanx_validator::slashing_protection::SlashingProtection;
use rand::SeedableRng;
use serde::Serialize;

use phalanx_dv::create::{self, CreateParams};

/// Distributed validator commands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum DvCommand {
    /// Create a test cluster with dealt keys (devnets and tests only: one process saw every key).
    Create(CreateArgs),
    /// Make an operator identity key (the key the cluster definition and lock name you by).
    Identity(IdentityArgs),
    /// Run this operator's part of a key ceremony (no trusted dealer) with the other operators.
    Dkg(DkgArgs),
    /// Run a member: agree on every duty with the other members, sign partials, submit.
    Run(RunArgs),
    /// Vote (secret ballot, verifiable tally) on a membership change, with the other current
    /// members.
    Vote(VoteArgs),
    /// Reshare the cluster's keys to a new operator set, keeping the group keys; needs an
    /// approving ballot record from `dv vote`.
    Reshare(ReshareArgs),
    /// Anything else (an error naming the available commands).
    #[command(external_subcommand)]
    Other(Vec<String>),
}

/// Flags of `phalanx dv create`.
#[derive(Debug, clap::Args)]
pub(crate) struct CreateArgs {
    /// Cluster name.
    #[arg(long, default_value = "phalanx-dv")]
    name: String,
    /// Operators n.
    #[arg(long, default_value_t = 4)]
    operators: usize,
    /// Threshold m (default ⌈2n/3⌉).
    #[arg(long)]
    threshold: Option<usize>,
    /// Distributed validators.
    #[arg(long, default_value_t = 1)]
    validators: usize,
    /// The last F operators are failover members.
    #[arg(long, default_value_t = 0)]
    failover: usize,
    /// Operator i listens on 127.0.0.1:BASE_PORT+i.
    #[arg(long, default_value_t = 9100)]
    base_port: u16,
    /// Deterministic keys from this seed (tests and devnets only).
    #[arg(long)]
    seed: Option<u64>,
    /// EIP-2335 standard scrypt keystores (slow to open) instead of light PBKDF2 ones.
    #[arg(long)]
    standard_kdf: bool,
    /// Allow m = n, which leaves no fault tolerance.
    #[arg(long)]
    unsafe_threshold: bool,
    /// Output folder.
    #[arg(long, default_value = "dv-cluster")]
    out: PathBuf,
    /// Overwrite an existing cluster in the folder.
    #[arg(long)]
    force: bool,
}

pub(crate) fn create(args: &CreateArgs) -> anyhow::Result<()> {
    let lock = create::create(
        &CreateParams {
            name: args.name.clone(),
            operators: args.operators,
            threshold: args.threshold,
            validators: args.validators,
            failover: args.failover,
            base_port: args.base_port,
            seed: args.seed,
            standard_kdf: args.standard_kdf,
            allow_no_fault_tolerance: args.unsafe_threshold,
        },
        &args.out,
        args.force,
    )?;
    println!(
        "wrote {}: {}-of-{} cluster, {} validator(s), lock hash {}",
        args.out.join("cluster-lock.json").display(),
        lock.body.threshold,
        lock.body.operators.len(),
        lock.body.validators.len(),
        lock.lock_hash
    );
    for v in &lock.body.validators {
        println!("validator {}", v.public_key);
    }
    Ok(())
}

/// Flags of `phalanx dv identity`.
#[derive(Debug, clap::Args)]
pub(crate) struct IdentityArgs {
    /// The operator's folder; the key goes to `identity-key` in it.
    #[arg(long)]
    out: PathBuf,
}

/// Flags of `phalanx dv dkg`.
#[derive(Debug, clap::Args)]
pub(crate) struct DkgArgs {
    /// The cluster definition every operator agreed on (`cluster-definition.json`).
    #[arg(long)]
    definition: PathBuf,
    /// This operator's folder: holds `identity-key`; the lock and keystores are written here.
    #[arg(long)]
    operator_dir: PathBuf,
    /// Where to listen (multiaddr; default: this operator's address in the definition).
    #[arg(long)]
    listen: Option<String>,
    /// Give up (naming who did not deliver) after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// EIP-2335 standard scrypt keystores (slow to open) instead of light PBKDF2 ones.
    #[arg(long)]
    standard_kdf: bool,
    /// Allow m = n, which leaves no fault tolerance.
    #[arg(long)]
    unsafe_threshold: bool,
    /// Overwrite an existing lock in the folder.
    #[arg(long)]
    force: bool,
}

/// Which duty consensus a member runs.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum ConsensusArg {
    /// QBFT (the default).
    Qbft,
    /// Tendermint.
    Tendermint,
}

/// Where a member's duties come from.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum DutySource {
    /// The node's validator API (`--node`): the live duty stream, submissions posted back.
    Node,
    /// A wall-clock schedule with synthetic data (benchmarks, runs without a node);
    /// submissions go to the submissions file only.
    Clock,
}

/// Flags of `phalanx dv run`.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// This operator's folder (identity key, password, keystores).
    #[arg(long)]
    operator_dir: PathBuf,
    /// The cluster lock (default: `cluster-lock.json` in the operator folder).
    #[arg(long)]
    lock: Option<PathBuf>,
    /// Where to listen (multiaddr; default: this operator's address in the lock).
    #[arg(long)]
    listen: Option<String>,
    /// Duty consensus.
    #[arg(long, value_enum, default_value = "qbft")]
    consensus: ConsensusArg,
    /// Where duties come from.
    #[arg(long, value_enum, default_value = "clock")]
    duties: DutySource,
    /// The node's validator API (with `--duties node`), e.g. a devnet's address.
    #[arg(long, default_value = "http://127.0.0.1:8545")]
    node: String,
    /// Chain spec (preset name or TOML file): fork version and slot timing.
    #[arg(long, default_value = "devnet")]
    chain: String,
    /// When slot 0 started (Unix ms; 0 = the Unix epoch).
    #[arg(long, default_value_t = 0)]
    genesis_ms: u64,
    /// Slot length in ms (default: the chain's).
    #[arg(long)]
    slot_ms: Option<u64>,
    /// Slots per epoch (default: the chain's; 1 = every validator attests every slot).
    #[arg(long)]
    slots_per_epoch: Option<u64>,
    /// First slot to serve (default: the next one).
    #[arg(long)]
    from_slot: Option<u64>,
    /// Serve this many slots, then stop (default: until interrupted).
    #[arg(long)]
    slots: Option<u64>,
    /// Append every submitted group signature here as a JSON line (default:
    /// `submissions.jsonl` in the operator folder).
    #[arg(long)]
    submissions: Option<PathBuf>,
    /// Slashing-protection database (default: `slashing-protection.redb` in the operator folder).
    #[arg(long)]
    protection: Option<PathBuf>,
    /// A failover member releases its partial at this fraction of the way to the deadline.
    #[arg(long, default_value_t = 0.5)]
    failover_fraction: f64,
    /// Prometheus metrics (participation per operator, …) in the text format, rewritten every
    /// few seconds for node_exporter's textfile collector (default: `metrics.prom` in the
    /// operator folder).
    #[arg(long)]
    metrics_file: Option<PathBuf>,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn read_identity(dir: &Path) -> anyhow::Result<OperatorKey> {
    let path = dir.join("identity-key");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{}: no identity key (make one with `phalanx dv identity --out {}`)",
            path.display(),
            dir.display()
        )
    })?;
    let bytes = hex::decode(text.trim().trim_start_matches("0x"))
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .with_context(|| format!("{}: not a 32-byte hex key", path.display()))?;
    Ok(OperatorKey::from_bytes(&bytes))
}

fn network_config(
    key: &OperatorKey,
    me: &OperatorId,
    operators: &[phalanx_dv::lock::Operator],
    listen: Option<&String>,
) -> anyhow::Result<NetConfig> {
    let mine = operators
        .iter()
        .find(|o| &o.identity == me)
        .with_context(|| format!("identity {me} is not one of the cluster's operators"))?;
    Ok(NetConfig {
        secret: key.to_bytes(),
        listen: listen.cloned().unwrap_or_else(|| mine.address.clone()),
        peers: operators
            .iter()
            .filter(|o| &o.identity != me)
            .map(|o| Peer {
                key: PeerKey(o.identity.0),
                address: Some(o.address.clone()),
            })
            .collect(),
        closed: true,
    })
}

pub(crate) fn identity(args: &IdentityArgs) -> anyhow::Result<()> {
    let path = args.out.join("identity-key");
    anyhow::ensure!(
        !path.exists(),
        "{} exists; refusing to replace an identity key",
        path.display()
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let key = OperatorKey::generate(&mut rand_chacha::ChaCha20Rng::from_os_rng());
    phalanx_types::fs::write_atomic(&path, hex::encode(key.to_bytes()).as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("{}", key.id());
    Ok(())
}

pub(crate) fn dkg(args: &DkgArgs) -> anyhow::Result<()> {
    let definition = ClusterDefinition::read(&args.definition)?;
    let spec = definition.spec();
    spec.check(args.unsafe_threshold)?;
    let key = read_identity(&args.operator_dir)?;
    let lock_path = args.operator_dir.join("cluster-lock.json");
    anyhow::ensure!(
        args.force || !lock_path.exists(),
        "{} exists; pass --force to replace it",
        lock_path.display()
    );
    let net_config = network_config(&key, &key.id(), &spec.operators, args.listen.as_ref())?;
    let n = spec.operators.len();
    let rt = runtime()?;
    let output = rt.block_on(async {
        let mut net = Libp2pNetwork::start(net_config).await?;
        println!(
            "dkg: {} as {}, {}-of-{n}, {} validator(s); listening on {}",
            definition.name,
            spec.name_of(&key.id()),
            spec.threshold,
            spec.validators,
            net.listening().join(", ")
        );
        ceremony(&mut net, "dkg", &spec, &key, None, args.timeout_secs).await
    })?;
    let output = output.context("this operator receives no shares in the ceremony")?;
    let mut rng = rand_chacha::ChaCha20Rng::from_os_rng();
    write_operator_files(
        &args.operator_dir,
        &key,
        &output.shares,
        &definition.name,
        args.standard_kdf,
        &mut rng,
    )?;
    output.lock.write(&lock_path)?;
    println!(
        "wrote {}: {}-of-{} cluster, {} validator(s), lock hash {}",
        lock_path.display(),
        output.lock.body.threshold,
        output.lock.body.operators.len(),
        output.lock.body.validators.len(),
        output.lock.lock_hash
    );
    for v in &output.lock.body.validators {
        println!("validator {}", v.public_key);
    }
    Ok(())
}

/// Rewrites `path` with the registry's metrics every 5 s (atomically, so a scraper never reads
/// half a file).
async fn write_metrics(
    registry: std::sync::Arc<prometheus_client::registry::Registry>,
    path: PathBuf,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        write_metrics_once(&registry, &path);
    }
}

fn write_metrics_once(registry: &prometheus_client::registry::Registry, path: &Path) {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, registry).is_err() {
        return;
    }
    if let Err(e) = phalanx_types::fs::write_atomic(path, text.as_bytes()) {
        tracing::warn!(path = %path.display(), error = %e, "dv: cannot write metrics");
    }
}

/// Runs this operator's part of `spec`, printing progress lines prefixed with `label`.
async fn ceremony(
    net: &mut Libp2pNetwork,
    label: &str,
    spec: &phalanx_dv::dkg::CeremonySpec,
    key: &OperatorKey,
    secrets: Option<Vec<phalanx_dv::threshold::SecretShare>>,
    timeout_secs: u64,
) -> anyhow::Result<Option<phalanx_dv::dkg::DkgOutput>> {
    Ok(run_ceremony(
        net,
        spec.clone(),
        key.clone(),
        secrets,
        Duration::from_secs(timeout_secs),
        |p| {
            println!(
                "{label}: dealings verified {}/{} · lock signatures {}/{}",
                p.dealt, p.dealers, p.signed, p.recipients
            );
        },
        interrupted(),
    )
    .await?)
}

/// One submitted group signature, as a line of the submissions file.
#[derive(Debug, Serialize)]
struct SubmissionLine {
    validator: u32,
    slot: u64,
    kind: phalanx_dv::member::DutyKind,
    start_ms: u64,
    deadline_ms: u64,
    submitted_ms: u64,
    signature: String,
    from: Vec<u32>,
}

impl SubmissionLine {
    fn of(s: &Submission, now: u64) -> Self {
        Self {
            validator: s.duty.validator,
            slot: s.duty.slot,
            kind: s.duty.kind,
            start_ms: s.duty.start_ms,
            deadline_ms: s.duty.deadline_ms,
            submitted_ms: now,
            signature: s.signature.to_string(),
            from: s.from.clone(),
        }
    }
}

/// The report `dv run` prints when it stops.
#[derive(Debug, Serialize)]
struct RunSummary {
    #[serde(flatten)]
    report: RunReport,
    /// Each operator's share of the rewards: its in-time partials over all in-time partials.
    reward_split: std::collections::BTreeMap<String, f64>,
}

pub(crate) fn run(args: &RunArgs) -> anyhow::Result<()> {
    let lock_path = args
        .lock
        .clone()
        .unwrap_or_else(|| args.operator_dir.join("cluster-lock.json"));
    let lock = ClusterLock::read(&lock_path)?;
    lock.verify()?;
    let files = load_operator(&args.operator_dir, &lock)?;
    let me = files.key.id();
    let index = lock
        .body
        .index_of(&me)
        .context("this identity is not in the lock")?
        - 1;
    let spec = phalanx_spec::ChainSpec::load(&args.chain)?;
    let clock = DutyClock {
        genesis_ms: args.genesis_ms,
        slot_ms: args.slot_ms.unwrap_or(spec.slot_seconds * 1000),
        slots_per_epoch: args.slots_per_epoch.unwrap_or(spec.slots_per_epoch),
        validators: lock.body.validators.len() as u32,
    };
    anyhow::ensure!(clock.slot_ms >= 30, "--slot-ms must be at least 30");
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.failover_fraction),
        "--failover-fraction must be within 0..=1"
    );
    let rt = runtime()?;
    let link = match args.duties {
        DutySource::Node => Some(
            phalanx_validator::api::ApiClient::new(&args.node)
                .map(|c| phalanx_dv::node::NodeLink::new(c, &lock.body))?,
        ),
        DutySource::Clock => None,
    };
    // With a node, the signing domain is the node's chain's (its genesis validators root and
    // fork version); the clock's synthetic duties sign under the spec's fork and a zero root.
    let signing = match &link {
        Some(_) => {
            let client = phalanx_validator::api::ApiClient::new(&args.node)?;
            let g = rt.block_on(client.genesis()).with_context(|| {
                format!(
                    "cannot read the genesis from the node at {} (is it running?)",
                    args.node
                )
            })?;
            SigningContext {
                fork_version: g.genesis_fork_version.0,
                genesis_validators_root: g.genesis_validators_root,
            }
        }
        None => SigningContext {
            fork_version: spec.fork_version.0,
            genesis_validators_root: alloy_primitives::B256::ZERO,
        },
    };
    let protection_path = args
        .protection
        .clone()
        .unwrap_or_else(|| args.operator_dir.join("slashing-protection.redb"));
    let protection = SlashingProtection::open(&protection_path, signing.genesis_validators_root)
        .with_context(|| format!("slashing protection {}", protection_path.display()))?;
    let submissions_path = args
        .submissions
        .clone()
        .unwrap_or_else(|| args.operator_dir.join("submissions.jsonl"));
    let metrics_path = args
        .metrics_file
        .clone()
        .unwrap_or_else(|| args.operator_dir.join("metrics.prom"));
    let net_config = network_config(&files.key, &me, &lock.body.operators, args.listen.as_ref())?;
    let ids: Vec<OperatorId> = lock.body.operators.iter().map(|o| o.identity).collect();
    let known = KnownDuties::default();
    let validity = duty_validity(lock.body.validators.len(), known.clone());
    let member_config = MemberConfig {
        index,
        failover_fraction: args.failover_fraction,
        signing,
    };
    let report = rt.block_on(async {
        let net = Libp2pNetwork::start(net_config).await?;
        let from = args
            .from_slot
            .unwrap_or_else(|| clock.slot_at(unix_ms()) + 1);
        let to = args.slots.map(|n| from + n);
        eprintln!(
            "dv run: {} as {} ({}-of-{}, {} validator(s)), {} consensus, listening on {}, slots {from}..{}",
            lock.body.name,
            lock.body.operators[index as usize].name,
            lock.body.threshold,
            lock.body.operators.len(),
            lock.body.validators.len(),
            match args.consensus {
                ConsensusArg::Qbft => "qbft",
                ConsensusArg::Tendermint => "tendermint",
            },
            net.listening().join(", "),
            to.map_or_else(|| "∞".to_owned(), |t| t.to_string()),
        );
        let (duty_tx, duty_rx) = tokio::sync::mpsc::channel(4096);
        let (sub_tx, mut sub_rx) = tokio::sync::mpsc::unbounded_channel::<Submission>();
        let counts = std::sync::Arc::new(phalanx_dv::node::SubmitCounts::default());
        let mut submitter = None;
        match &link {
            Some(link) => {
                eprintln!("dv run: duties from the validator API at {}", args.node);
                let follower = link.clone();
                tokio::spawn(async move { follower.follow(duty_tx, interrupted()).await });
                // Every submission goes to the node and to the submissions file.
                let (node_tx, node_rx) = tokio::sync::mpsc::unbounded_channel::<Submission>();
                let (file_tx, file_rx) = tokio::sync::mpsc::unbounded_channel::<Submission>();
                tokio::spawn(async move {
                    while let Some(s) = sub_rx.recv().await {
                        let _ = node_tx.send(s.clone());
                        let _ = file_tx.send(s);
                    }
                });
                sub_rx = file_rx;
                let (link, counts) = (link.clone(), counts.clone());
                submitter = Some(tokio::spawn(async move { link.submit_all(node_rx, &counts).await }));
            }
            None => {
                tokio::spawn(clock.feed(from, to, duty_tx, interrupted()));
            }
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&submissions_path)
            .with_context(|| format!("cannot open {}", submissions_path.display()))?;
        let writer = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write as _;
            while let Some(s) = sub_rx.blocking_recv() {
                let line = SubmissionLine::of(&s, unix_ms());
                let json = serde_json::to_string(&line).map_err(std::io::Error::other)?;
                writeln!(file, "{json}")?;
                file.flush()?;
            }
            file.sync_all()
        });
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = DvMetrics::register(&mut registry);
        let registry = std::sync::Arc::new(registry);
        let metrics_writer = tokio::spawn(write_metrics(registry.clone(), metrics_path.clone()));
        let report = match args.consensus {
            ConsensusArg::Qbft => {
                let engine = Qbft::new(ids, index, files.key.clone(), validity, BASE_TIMEOUT_MS, STEP_TIMEOUT_MS);
                let member = Member::new(member_config, lock.body.clone(), &files.shares, protection, engine)?;
                let ctx = RunContext { lock: &lock.body, known, metrics: Some(metrics) };
                phalanx_dv::run::run(member, ctx, net, duty_rx, sub_tx, interrupted()).await?
            }
            ConsensusArg::Tendermint => {
                let engine = Tendermint::new(ids, index, files.key.clone(), validity, BASE_TIMEOUT_MS, STEP_TIMEOUT_MS);
                let member = Member::new(member_config, lock.body.clone(), &files.shares, protection, engine)?;
                let ctx = RunContext { lock: &lock.body, known, metrics: Some(metrics) };
                phalanx_dv::run::run(member, ctx, net, duty_rx, sub_tx, interrupted()).await?
            }
        };
        metrics_writer.abort();
        write_metrics_once(&registry, &metrics_path);
        if let Some(task) = submitter {
            let _ = task.await;
            eprintln!(
                "dv run: the node accepted {} group signature(s), refused {}",
                counts.accepted.load(std::sync::atomic::Ordering::Relaxed),
                counts.failed.load(std::sync::atomic::Ordering::Relaxed)
            );
        }
        writer
            .await
            .context("submission writer")?
            .with_context(|| format!("cannot write {}", submissions_path.display()))?;
        anyhow::Ok(report)
    })?;
    let total: u64 = report.participation.values().sum();
    let reward_split = report
        .participation
        .iter()
        .map(|(name, n)| {
            (
                name.clone(),
                if total == 0 {
                    0.0
                } else {
                    *n as f64 / total as f64
                },
            )
        })
        .collect();
    println!(
        "{}",
        serde_json::to_string(&RunSummary {
            report,
            reward_split
        })?
    );
    Ok(())
}

/// Flags of `phalanx dv vote`.
#[derive(Debug, clap::Args)]
pub(crate) struct VoteArgs {
    /// The change voted on (`reshare-definition.json`).
    #[arg(long)]
    reshare: PathBuf,
    /// This operator's folder; the record is written to `ballot-record.json` in it.
    #[arg(long)]
    operator_dir: PathBuf,
    /// The current lock (default: `cluster-lock.json` in the operator folder).
    #[arg(long)]
    lock: Option<PathBuf>,
    /// This member's vote.
    #[arg(long, value_parser = ["yes", "no"])]
    vote: String,
    /// The member that collects and relays (default: the lock's first operator).
    #[arg(long)]
    coordinator: Option<String>,
    /// Where to listen (multiaddr; default: this operator's address in the lock).
    #[arg(long)]
    listen: Option<String>,
    /// The coordinator waits this long for every ballot before settling for m of them.
    #[arg(long, default_value_t = 10)]
    ballot_wait_secs: u64,
    /// Give up (naming who did not deliver) after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
}

/// Flags of `phalanx dv reshare`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReshareArgs {
    /// The change (`reshare-definition.json`).
    #[arg(long)]
    reshare: PathBuf,
    /// This operator's folder (identity key; a current member's keystores). The new lock and
    /// keystores replace the old ones here.
    #[arg(long)]
    operator_dir: PathBuf,
    /// The current lock (default: `cluster-lock.json` in the operator folder).
    #[arg(long)]
    lock: Option<PathBuf>,
    /// The approving record from `dv vote` (default: `ballot-record.json` in the operator folder).
    #[arg(long)]
    ballot: Option<PathBuf>,
    /// Where to listen (multiaddr; default: this operator's address in the new set, else the
    /// current lock).
    #[arg(long)]
    listen: Option<String>,
    /// Give up (naming who did not deliver) after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// EIP-2335 standard scrypt keystores (slow to open) instead of light PBKDF2 ones.
    #[arg(long)]
    standard_kdf: bool,
    /// Allow a new threshold m = n, which leaves no fault tolerance.
    #[arg(long)]
    unsafe_threshold: bool,
}

pub(crate) fn vote(args: &VoteArgs) -> anyhow::Result<()> {
    let lock_path = args
        .lock
        .clone()
        .unwrap_or_else(|| args.operator_dir.join("cluster-lock.json"));
    let lock = ClusterLock::read(&lock_path)?;
    lock.verify()?;
    let change = ReshareDefinition::read(&args.reshare)?;
    let files = load_operator(&args.operator_dir, &lock)?;
    let share = files
        .shares
        .first()
        .cloned()
        .context("the lock has no validators")?;
    let coordinator = match &args.coordinator {
        Some(name) => {
            lock.body
                .operators
                .iter()
                .find(|o| &o.name == name)
                .with_context(|| format!("coordinator {name} is not an operator of the lock"))?
                .identity
        }
        None => {
            lock.body
                .operators
                .first()
                .context("the lock has no operators")?
                .identity
        }
    };
    let net_config = network_config(
        &files.key,
        &files.key.id(),
        &lock.body.operators,
        args.listen.as_ref(),
    )?;
    let proposal = change.proposal(&lock);
    let record = runtime()?.block_on(async {
        let mut net = Libp2pNetwork::start(net_config).await?;
        eprintln!(
            "vote: \"{}\" on lock {}; voting {}",
            proposal.description, lock.lock_hash, args.vote
        );
        let record = phalanx_dv::vote::run_vote(
            &mut net,
            phalanx_dv::vote::VoteParams {
                lock: &lock,
                proposal: proposal.clone(),
                key: files.key.clone(),
                share,
                approve: args.vote == "yes",
                coordinator,
                ballot_wait: Duration::from_secs(args.ballot_wait_secs),
                timeout: Duration::from_secs(args.timeout_secs),
            },
            interrupted(),
        )
        .await?;
        // Let the acknowledgement leave before the network stops.
        tokio::time::sleep(Duration::from_millis(300)).await;
        anyhow::Ok(record)
    })?;
    let path = args.operator_dir.join("ballot-record.json");
    phalanx_types::fs::write_atomic(&path, serde_json::to_string_pretty(&record)?.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "vote: {} of {} ballots yes (threshold {}): {}; record written to {}",
        record.yes,
        record.ballots.len(),
        lock.body.threshold,
        if record.approved {
            "approved"
        } else {
            "rejected"
        },
        path.display()
    );
    Ok(())
}

pub(crate) fn reshare(args: &ReshareArgs) -> anyhow::Result<()> {
    let lock_path = args
        .lock
        .clone()
        .unwrap_or_else(|| args.operator_dir.join("cluster-lock.json"));
    let old = ClusterLock::read(&lock_path)?;
    old.verify()?;
    let change = ReshareDefinition::read(&args.reshare)?;
    let ballot_path = args
        .ballot
        .clone()
        .unwrap_or_else(|| args.operator_dir.join("ballot-record.json"));
    let ballot: phalanx_dv::ballot::BallotRecord =
        serde_json::from_str(&std::fs::read_to_string(&ballot_path).with_context(|| {
            format!(
                "{}: no ballot record (a membership change needs an approving `phalanx dv vote`)",
                ballot_path.display()
            )
        })?)
        .with_context(|| format!("{} is not a ballot record", ballot_path.display()))?;
    let spec = change.spec(&old, Some(ballot))?;
    spec.check(args.unsafe_threshold)?;
    let key = read_identity(&args.operator_dir)?;
    let me = key.id();
    let dealing = spec.dealers().contains(&me);
    let receiving = spec.recipients().contains(&me);
    anyhow::ensure!(
        dealing || receiving,
        "{me} neither deals nor receives in this reshare"
    );
    let secrets = if dealing {
        Some(load_operator(&args.operator_dir, &old)?.shares)
    } else {
        None
    };
    // Everyone who takes part, at the newest address known for them.
    let mut operators = spec.operators.clone();
    for o in &old.body.operators {
        if spec.dealers().contains(&o.identity)
            && !operators.iter().any(|n| n.identity == o.identity)
        {
            operators.push(o.clone());
        }
    }
    let net_config = network_config(&key, &me, &operators, args.listen.as_ref())?;
    let output = runtime()?.block_on(async {
        let mut net = Libp2pNetwork::start(net_config).await?;
        println!(
            "reshare: {} → {} operators, threshold {} → {}; {} here",
            old.body.operators.len(),
            spec.operators.len(),
            old.body.threshold,
            spec.threshold,
            match (dealing, receiving) {
                (true, true) => "dealing and receiving",
                (true, false) => "dealing (leaving the cluster)",
                _ => "receiving (joining the cluster)",
            }
        );
        ceremony(&mut net, "reshare", &spec, &key, secrets, args.timeout_secs).await
    })?;
    let new_lock_path = args.operator_dir.join("cluster-lock.json");
    match output {
        Some(out) => {
            anyhow::ensure!(
                out.lock
                    .body
                    .validators
                    .iter()
                    .zip(&old.body.validators)
                    .all(|(n, o)| n.public_key == o.public_key),
                "the new lock changed a group key (refusing to write it)"
            );
            // Keep the previous lock for the record, then replace keystores and lock: the old
            // keystores are overwritten (erased from the folder) by the new shares.
            if new_lock_path.exists() {
                let prev = args.operator_dir.join(format!(
                    "cluster-lock.generation-{}.json",
                    old.body.generation
                ));
                old.write(&prev)?;
            }
            let mut rng = rand_chacha::ChaCha20Rng::from_os_rng();
            write_operator_files(
                &args.operator_dir,
                &key,
                &out.shares,
                &out.lock.body.name,
                args.standard_kdf,
                &mut rng,
            )?;
            out.lock.write(&new_lock_path)?;
            println!(
                "wrote {}: generation {}, {}-of-{}, same group key(s), lock hash {}{}",
                new_lock_path.display(),
                out.lock.body.generation,
                out.lock.body.threshold,
                out.lock.body.operators.len(),
                out.lock.lock_hash,
                if dealing { "; old shares replaced" } else { "" }
            );
        }
        None => {
            // A departing member: its old shares must not outlive the change.
            let mut erased = 0;
            for v in 0..old.body.validators.len() {
                let p = args.operator_dir.join(format!("keystore-{v}.json"));
                if p.exists() {
                    std::fs::remove_file(&p)
                        .with_context(|| format!("cannot erase {}", p.display()))?;
                    erased += 1;
                }
            }
            let _ = std::fs::remove_file(args.operator_dir.join("password"));
            println!(
                "reshare: done; this operator left the cluster and erased {erased} old keystore(s)"
            );
        }
    }
    Ok(())
}
