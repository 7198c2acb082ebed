//! `phalanx bench cluster`: one clustered node's throughput with 1 server and with more, on
//! the simulator's load (signed transfers, no conflicts), in one process: the real server
//! tasks on a multi-threaded runtime, the in-process network, redb state in a temp folder,
//! and the embedded store (then etcd for the round-trip figure).
//!
//! The feed publishes a block as soon as every server has applied the one before (closed
//! loop; blocks are signed beforehand), so tx/s is the node's execution rate, not the slot.
//! Each configuration reports tx/s, effect bytes received per block (per server), and the
//! coordination round trip of each accepted-key write (p50/p99).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use phalanx_cluster::CoordinationStore;
use phalanx_cluster::embedded::EmbeddedStore;
use phalanx_cluster::etcd::{EtcdConfig, EtcdStore};
use phalanx_cluster::feed::Feed;
use phalanx_cluster::load::Load;
use phalanx_cluster::ownership::layout;
use phalanx_cluster::server::{self, HeaderSource, ServerConfig, ServerStats};
use phalanx_cluster::testing::LocalEtcd;
use phalanx_cluster::wire::ExecHeader;
use phalanx_execution::store::StateStore;
use phalanx_net::memory::MemoryHub;
use phalanx_net::{Network, PeerKey};
use phalanx_types::consensus::Shard;
use serde::Serialize;

/// The block feed's key: the servers run headers from it alone.
const FEED: PeerKey = PeerKey([0xfe; 32]);

/// Flags of `phalanx bench cluster`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Server counts to compare (the first is the baseline).
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 2])]
    servers: Vec<u16>,
    /// Shards per block.
    #[arg(long, default_value_t = 8)]
    shards: u16,
    /// Transfers per shard per block.
    #[arg(long, default_value_t = 200)]
    txs_per_shard: usize,
    /// Blocks per run.
    #[arg(long, default_value_t = 12)]
    blocks: u64,
    /// Make every transaction a call to a compute contract hashing 32 bytes this many times
    /// (about 90 gas a round; no storage writes, so no more state than a transfer): heavier
    /// execution per transaction. 0: plain transfers, the load.
    #[arg(long, default_value_t = 0)]
    work: u64,
    /// Also measure the accepted-key round trip on a local 3-member etcd cluster (needs
    /// `etcd` on PATH and a build with the `etcd` feature).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    etcd: bool,
    /// Threads each server's execution may use (its own pool, as a server on its own machine
    /// has its own cores; 1: a core each, the "2 servers on 2 cores"); 0 runs every
    /// server's execution inline on the process's shared pool.
    #[arg(long = "threads-per-server", default_value_t = 1)]
    threads_per_server: usize,
    /// Blocks published ahead of the last one every server has applied (0: each block waits
    /// for the one before to be applied everywhere; 1: the next block's header and shards are
    /// already there when a server finishes one, as when a node works through a backlog).
    #[arg(long, default_value_t = 1)]
    ahead: u64,
    /// Blocks a server applies before writing them to disk in one commit while more are
    /// waiting (the node's `--persist-blocks`; 1: a commit, fsync included, per block).
    #[arg(long = "persist-blocks", default_value_t = server::DEFAULT_PERSIST_BLOCKS,
          value_parser = clap::value_parser!(u64).range(1..))]
    persist_blocks: u64,
    /// Finalized states whose trie each server keeps (the node's `--keep-states`; 0: every
    /// one, an archive whose commits grow with the history).
    #[arg(long = "keep-states", default_value_t = 0)]
    keep_states: u64,
    /// Sync each commit on the server's own sync thread while it goes on (the node's
    /// default); `false`: every commit waits for its fsync. The run ends when every block is
    /// durable on every server either way.
    #[arg(long = "background-sync", default_value_t = true, action = clap::ArgAction::Set)]
    background_sync: bool,
    /// Keep the transactions of each server's shards with an index by hash, for history reads
    /// (the node's `--keep-transactions`, default true).
    #[arg(long = "keep-transactions", default_value_t = true, action = clap::ArgAction::Set)]
    keep_transactions: bool,
    /// Runs of each configuration, taken in turn (1 server, 2 servers, …, then again): each
    /// row is the median run, with the range of tx/s beside it — on a shared machine one
    /// run's figure moves by tens of percent.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Print one JSON object instead of lines.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Run {
    servers: u16,
    replication: u16,
    agreement: usize,
    store: &'static str,
    /// The median run's (see `--repeat`), and the slowest and fastest run's.
    tx_per_s: f64,
    tx_per_s_range: (f64, f64),
    speedup: f64,
    ms_per_block: f64,
    effect_bytes_per_block: u64,
    accept_rtt_p50_us: u64,
    accept_rtt_p99_us: u64,
    /// Per server per block, ms: where a block's time went (the rest of `ms_per_block` is
    /// waiting: for shards, for the other servers' outcomes, for the store).
    phases_ms: PhasesMs,
}

#[derive(Debug, Serialize)]
struct PhasesMs {
    /// Checking shards against their header's roots, on the server's task.
    check: f64,
    execute: f64,
    merge: f64,
    apply: f64,
    finalize: f64,
    /// Syncing commits on the server's sync thread, off its path (`--background-sync`).
    sync: f64,
    /// Waiting after its execution: until every shard had an outcome, then until every shard
    /// was accepted (a second agreeing outcome where agreement is 2, the store).
    wait_outcomes: f64,
    wait_accepts: f64,
    /// The run's end, whole (not per block): from the last block applied on every server to
    /// it durable on every server.
    last_sync: f64,
}

impl PhasesMs {
    /// Per server per block from the servers' counters; `last_sync` as measured.
    fn of(stats: &[Arc<ServerStats>], blocks: u64, last_sync: Duration) -> Self {
        let per = |f: fn(&ServerStats) -> &std::sync::atomic::AtomicU64| {
            let us: u64 = stats.iter().map(|s| f(s).load(Ordering::Relaxed)).sum();
            let ms = us as f64 / 1000.0 / (stats.len().max(1) as f64 * blocks.max(1) as f64);
            (ms * 10.0).round() / 10.0
        };
        Self {
            check: per(|s| &s.phases.check_us),
            execute: per(|s| &s.phases.execute_us),
            merge: per(|s| &s.phases.merge_us),
            apply: per(|s| &s.phases.apply_us),
            finalize: per(|s| &s.phases.finalize_us),
            sync: per(|s| &s.phases.sync_us),
            wait_outcomes: per(|s| &s.phases.wait_outcomes_us),
            wait_accepts: per(|s| &s.phases.wait_accepts_us),
            last_sync: (last_sync.as_secs_f64() * 10_000.0).round() / 10.0,
        }
    }
}

#[derive(Debug, Serialize)]
struct Report {
    threads_per_server: usize,
    shards: u16,
    txs_per_block: usize,
    /// Keccak rounds per transaction (`--work`; 0: transfers).
    work: u64,
    blocks: u64,
    cores: usize,
    repeat: u32,
    runs: Vec<Run>,
}

struct Setting {
    servers: u16,
    replication: u16,
    agreement: usize,
    etcd: Option<Vec<String>>,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

type Blocks = Vec<(ExecHeader, Vec<Shard>)>;

/// Waits until every server has applied `height` (and, `durable`, synced it to disk),
/// answering the servers' requests meanwhile.
async fn wait_applied<N: Network>(
    feed: &mut Feed<N>,
    stats: &[Arc<ServerStats>],
    height: u64,
    durable: bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while stats
        .iter()
        .any(|s| s.head() < height || (durable && s.synced.load(Ordering::Relaxed) < height))
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "block {height} not applied (and synced) by every server within 120 s"
        );
        tokio::select! {
            e = feed.net_mut().recv() => if let Some(e) = e { feed.answer(e) },
            _ = tokio::time::sleep(Duration::from_millis(1)) => {}
        }
    }
    Ok(())
}

async fn run_one(
    args: &Args,
    setting: &Setting,
    genesis: &(alloy_primitives::B256, phalanx_execution::changes::Changes),
    blocks: &Blocks,
) -> anyhow::Result<Measured> {
    let dir = tempfile::tempdir()?;
    let hub = MemoryHub::new();
    let store: Arc<dyn CoordinationStore> = match &setting.etcd {
        None => Arc::new(EmbeddedStore::new()),
        Some(endpoints) => Arc::new(EtcdStore::connect(EtcdConfig::new(endpoints.clone())).await?),
    };
    let node = format!("bench-{}", rand::random::<u32>());
    let ranges = layout(setting.servers, args.shards, setting.replication);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut stats = Vec::new();
    let mut tasks = Vec::new();
    for (i, range) in ranges.iter().enumerate() {
        let state =
            StateStore::open(&dir.path().join(format!("s{i}.redb")))?.keep_states(args.keep_states);
        state.init_genesis(genesis.0, &genesis.1)?;
        let mut config = ServerConfig::new(&node, *range, args.shards);
        config.agreement = setting.agreement;
        config.threads = (args.threads_per_server > 0).then_some(args.threads_per_server);
        config.tick = Duration::from_millis(5);
        config.persist_blocks = args.persist_blocks;
        config.background_sync = args.background_sync;
        config.keep_transactions = args.keep_transactions;
        // Nobody is killed here: a lease long enough that a server busy with a block is never
        // taken for dead (a takeover would run its shards twice and spoil the figure).
        config.lease_ttl = Duration::from_secs(3);
        config.accept_timeout = Duration::from_secs(30);
        config.headers = HeaderSource::Gossip {
            publisher: Some(FEED),
        };
        let s = Arc::new(ServerStats::default());
        let mut key = [0u8; 32];
        key[..2].copy_from_slice(&(i as u16).to_be_bytes());
        key[31] = 1;
        tasks.push(tokio::spawn(server::run(
            config,
            Arc::new(state),
            store.clone(),
            hub.join(PeerKey(key)),
            s.clone(),
            shutdown.clone(),
        )));
        stats.push(s);
    }
    let mut feed = Feed::new(hub.join(FEED));
    // Servers announce themselves and subscribe.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let started = Instant::now();
    for (i, (header, shards)) in blocks.iter().enumerate() {
        // Height i+1 goes out once every server has applied height i - ahead.
        wait_applied(
            &mut feed,
            &stats,
            (i as u64).saturating_sub(args.ahead),
            false,
        )
        .await?;
        feed.publish(header.clone(), shards.clone());
    }
    // The run ends when the last block is durable everywhere.
    let last = blocks.len() as u64;
    wait_applied(&mut feed, &stats, last, false).await?;
    let applied = Instant::now();
    wait_applied(&mut feed, &stats, last, true).await?;
    let (elapsed, last_sync) = (started.elapsed(), applied.elapsed());
    let _ = stop.send(true);
    for t in tasks {
        let _ = t.await;
    }
    Ok((elapsed, stats, last_sync))
}

/// One run: its time, its servers' stats, and how long its end waited for the last block
/// to be durable everywhere once it was applied everywhere (part of the time).
type Measured = (Duration, Vec<Arc<ServerStats>>, Duration);

pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.servers.is_empty() && args.servers.iter().all(|s| *s >= 1),
        "--servers needs counts of at least 1"
    );
    anyhow::ensure!(
        args.blocks >= 1 && args.shards >= 1,
        "--blocks and --shards must be at least 1"
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut load = Load::new(args.shards, args.txs_per_shard.max(1), 1).with_work(args.work);
    let genesis = (load.genesis_header().hash(), load.genesis_alloc());
    eprintln!(
        "bench cluster: signing {} blocks of {} × {} {}",
        args.blocks,
        args.shards,
        args.txs_per_shard,
        if args.work > 0 {
            format!("calls of {} keccak rounds", args.work)
        } else {
            "transfers".to_string()
        }
    );
    let blocks: Blocks = (0..args.blocks)
        .map(|_| load.next_block(args.txs_per_shard))
        .collect::<Result<_, _>>()?;
    let max_servers = args.servers.iter().copied().max().unwrap_or(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(max_servers).max(2))
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Pure sharding (one executor per shard, first result wins), then the default safety
    // (two agreeing executors per shard).
    let mut settings: Vec<Setting> = args
        .servers
        .iter()
        .map(|&servers| Setting {
            servers,
            replication: 1,
            agreement: 1,
            etcd: None,
        })
        .collect();
    settings.push(Setting {
        servers: max_servers.max(2),
        replication: 3.min(max_servers.max(2)),
        agreement: 2,
        etcd: None,
    });
    let _etcd_guard;
    let etcd_dir = tempfile::tempdir()?;
    if args.etcd && !cfg!(feature = "etcd") {
        eprintln!(
            "bench cluster: etcd skipped: this build has no etcd client (cargo build --release \
             --features etcd; needs protoc)"
        );
    } else if args.etcd {
        match LocalEtcd::start(3, etcd_dir.path()) {
            Ok(etcd) if etcd.wait_ready(Duration::from_secs(20)) => {
                settings.push(Setting {
                    servers: max_servers.max(2),
                    replication: 3.min(max_servers.max(2)),
                    agreement: 2,
                    etcd: Some(etcd.endpoints()),
                });
                _etcd_guard = etcd;
            }
            Ok(etcd) => eprintln!(
                "bench cluster: etcd did not start, skipped: {}",
                etcd.log(0)
            ),
            Err(e) => eprintln!("bench cluster: etcd skipped: {e}"),
        }
    }
    let txs = usize::from(args.shards) * args.txs_per_shard;
    let mut measured: Vec<Vec<Measured>> = settings.iter().map(|_| Vec::new()).collect();
    for round in 0..args.repeat {
        if args.repeat > 1 {
            eprintln!("bench cluster: round {} of {}", round + 1, args.repeat);
        }
        for (setting, runs) in settings.iter().zip(&mut measured) {
            runs.push(rt.block_on(run_one(args, setting, &genesis, &blocks))?);
        }
    }
    let rate = |elapsed: Duration| (txs as f64 * args.blocks as f64) / elapsed.as_secs_f64();
    let round1 = |x: f64| (x * 10.0).round() / 10.0;
    let mut runs = Vec::new();
    let mut baseline = None;
    for (setting, mut all) in settings.iter().zip(measured) {
        all.sort_by_key(|(elapsed, _, _)| *elapsed);
        let range = (round1(rate(all[all.len() - 1].0)), round1(rate(all[0].0)));
        let (elapsed, stats, last_sync) = all.swap_remove(all.len() / 2);
        let tx_per_s = rate(elapsed);
        let base = *baseline.get_or_insert(tx_per_s);
        let mut rtt: Vec<u64> = stats
            .iter()
            .flat_map(|s| {
                s.accept_rtt_us
                    .lock()
                    .map(|v| v.clone())
                    .unwrap_or_default()
            })
            .collect();
        rtt.sort_unstable();
        let effect_bytes: u64 = stats
            .iter()
            .map(|s| s.effect_bytes.load(Ordering::Relaxed))
            .sum::<u64>()
            / u64::from(setting.servers).max(1);
        let run = Run {
            servers: setting.servers,
            replication: setting.replication,
            agreement: setting.agreement,
            store: if setting.etcd.is_some() {
                "etcd"
            } else {
                "embedded"
            },
            tx_per_s: round1(tx_per_s),
            tx_per_s_range: range,
            speedup: (tx_per_s / base * 100.0).round() / 100.0,
            ms_per_block: (elapsed.as_secs_f64() * 1000.0 / args.blocks as f64 * 10.0).round()
                / 10.0,
            effect_bytes_per_block: effect_bytes / args.blocks,
            accept_rtt_p50_us: percentile(&rtt, 0.5),
            accept_rtt_p99_us: percentile(&rtt, 0.99),
            phases_ms: PhasesMs::of(&stats, args.blocks, last_sync),
        };
        if !args.json {
            let spread = if args.repeat > 1 {
                format!(
                    " [median of {}; {:.0}–{:.0}]",
                    args.repeat, run.tx_per_s_range.0, run.tx_per_s_range.1
                )
            } else {
                String::new()
            };
            println!(
                "{} server(s), R={}, agreement {}, {} store: {:.0} tx/s{spread} ({:.2}×), {:.1} ms/block, {} effect bytes/block/server, accept round trip p50 {} µs p99 {} µs",
                run.servers,
                run.replication,
                run.agreement,
                run.store,
                run.tx_per_s,
                run.speedup,
                run.ms_per_block,
                run.effect_bytes_per_block,
                run.accept_rtt_p50_us,
                run.accept_rtt_p99_us
            );
            let ph = &run.phases_ms;
            println!(
                "    per server per block: check {:.1} ms, execute {:.1} ms, merge {:.1} ms, apply {:.1} ms, finalize {:.1} ms, waiting {:.1} ms; sync {:.1} ms off its path",
                ph.check,
                ph.execute,
                ph.merge,
                ph.apply,
                ph.finalize,
                (run.ms_per_block - ph.check - ph.execute - ph.merge - ph.apply - ph.finalize)
                    .max(0.0),
                ph.sync,
            );
            println!(
                "    waiting after execution: {:.1} ms until every shard had an outcome, then {:.1} ms until every shard was accepted; the run's end waited {:.1} ms (whole) for the last sync",
                ph.wait_outcomes, ph.wait_accepts, ph.last_sync,
            );
        }
        runs.push(run);
    }
    let report = Report {
        threads_per_server: args.threads_per_server,
        shards: args.shards,
        txs_per_block: txs,
        work: args.work,
        blocks: args.blocks,
        cores,
        repeat: args.repeat,
        runs,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}
