//! `phalanx bench dv`: a distributed validator cluster as real processes on loopback.
//!
//! For each validator count it deals a cluster (`dv create`), starts one `phalanx dv run`
//! process per member — libp2p over TCP on 127.0.0.1, QBFT, the duty clock — for a few slots,
//! and reads back every member's submissions file. A duty's latency is from its start to the
//! first group signature any member recovered (the moment the cluster could submit it).
//! Figures: latency p50/p99 at the first count, whether every duty was done within a third of a
//! slot at each count (the largest such count is the headline), and each member's peak resident
//! memory (VmHWM).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use phalanx_dv::create::{CreateParams, create, load_operator};
use phalanx_dv::duties::DutyClock;
use phalanx_dv::run::unix_ms;
use serde::Serialize;

/// Flags of `phalanx bench dv`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Validator counts to try, in order; stops at the first that misses the goal.
    #[arg(long, value_delimiter = ',', default_values_t = vec![100, 1000, 2000, 4000])]
    validators: Vec<usize>,
    /// Members (operators) of the cluster.
    #[arg(long, default_value_t = 4)]
    members: usize,
    /// Slot length (ms).
    #[arg(long, default_value_t = 12_000)]
    slot_ms: u64,
    /// Slots per epoch: each validator attests once per epoch (1: every slot, the worst case).
    #[arg(long, default_value_t = 32)]
    slots_per_epoch: u64,
    /// Slots run per validator count.
    #[arg(long, default_value_t = 3)]
    slots: u64,
    /// Print one JSON object instead of lines.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Level {
    validators: usize,
    duties: usize,
    signed: usize,
    within_third_slot: usize,
    p50_ms: u64,
    p99_ms: u64,
    max_ms: u64,
    member_peak_rss_mb: f64,
    key_load_s: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    members: usize,
    slot_ms: u64,
    slots_per_epoch: u64,
    /// Latency at the first validator count.
    p50_ms: u64,
    p99_ms: u64,
    /// The largest count whose every duty was done within a third of a slot.
    max_validators_within_third_slot: usize,
    /// Peak resident memory of one member at the first count.
    member_peak_rss_mb: f64,
    levels: Vec<Level>,
}

fn free_base_port(n: usize) -> anyhow::Result<u16> {
    for attempt in 0..200u16 {
        let base = 20_000 + (unix_ms() % 20_000) as u16 + attempt * 37;
        let ok =
            (0..n as u16).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if ok {
            return Ok(base);
        }
    }
    anyhow::bail!("no {n} consecutive free loopback ports")
}

fn rss_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn level(args: &Args, validators: usize, dir: &Path) -> anyhow::Result<Level> {
    let n = args.members;
    let base_port = free_base_port(n)?;
    create(
        &CreateParams {
            name: format!("bench-{validators}"),
            operators: n,
            threshold: None,
            validators,
            failover: 0,
            base_port,
            seed: None,
            standard_kdf: false,
            allow_no_fault_tolerance: false,
        },
        dir,
        true,
    )?;
    // Every member decrypts its keystores before it can sign: time one, and start the duties
    // after all of them (sharing this machine's cores) are ready.
    let lock = phalanx_dv::lock::ClusterLock::read(&dir.join("cluster-lock.json"))?;
    let t = Instant::now();
    load_operator(&dir.join("op-1"), &lock)?;
    let key_load_s = t.elapsed().as_secs_f64();
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get()) as f64;
    let margin_ms = 3_000 + (key_load_s * n as f64 / cores * 1_500.0) as u64;
    let clock = DutyClock {
        genesis_ms: 0,
        slot_ms: args.slot_ms,
        slots_per_epoch: args.slots_per_epoch,
        validators: validators as u32,
    };
    let from = clock.slot_at(unix_ms() + margin_ms) + 1;
    let exe = std::env::current_exe().context("cannot find the phalanx binary")?;
    let mut children: Vec<Child> = Vec::new();
    for i in 1..=n {
        let op = dir.join(format!("op-{i}"));
        let _ = std::fs::remove_file(op.join("submissions.jsonl"));
        let child = Command::new(&exe)
            .args(["--log", "warn", "dv", "run", "--operator-dir"])
            .arg(&op)
            .arg("--lock")
            .arg(dir.join("cluster-lock.json"))
            .args(["--slot-ms", &args.slot_ms.to_string()])
            .args(["--slots-per-epoch", &args.slots_per_epoch.to_string()])
            .args([
                "--from-slot",
                &from.to_string(),
                "--slots",
                &args.slots.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(op.join("member.log"))
                    .context("cannot create the member log")?,
            ))
            .spawn()
            .context("cannot start a member")?;
        children.push(child);
    }
    let mut peak_kb = vec![0u64; n];
    loop {
        let mut running = false;
        for (i, c) in children.iter_mut().enumerate() {
            if c.try_wait()?.is_none() {
                running = true;
                if let Some(kb) = rss_kb(c.id(), "VmHWM:") {
                    peak_kb[i] = peak_kb[i].max(kb);
                }
            }
        }
        if !running {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output()?;
        if !out.status.success() {
            let log = std::fs::read_to_string(dir.join(format!("op-{}/member.log", i + 1)))
                .unwrap_or_default();
            anyhow::bail!(
                "member op-{} failed: {}",
                i + 1,
                log.lines().last().unwrap_or_default()
            );
        }
    }
    // Earliest submission per duty, over all members.
    let mut first: BTreeMap<(u32, u64, String), u64> = BTreeMap::new();
    for i in 1..=n {
        let path = dir.join(format!("op-{i}/submissions.jsonl"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for line in text.lines() {
            let s: serde_json::Value = serde_json::from_str(line)?;
            let key = (
                s["validator"].as_u64().unwrap_or_default() as u32,
                s["slot"].as_u64().unwrap_or_default(),
                s["kind"].as_str().unwrap_or_default().to_owned(),
            );
            let latency = s["submitted_ms"]
                .as_u64()
                .unwrap_or_default()
                .saturating_sub(s["start_ms"].as_u64().unwrap_or_default());
            let e = first.entry(key).or_insert(latency);
            *e = (*e).min(latency);
        }
    }
    let duties: usize = (from..from + args.slots)
        .map(|s| clock.duties(s).len())
        .sum();
    let mut lat: Vec<u64> = first.values().copied().collect();
    lat.sort_unstable();
    let third = args.slot_ms / 3;
    Ok(Level {
        validators,
        duties,
        signed: first.len(),
        within_third_slot: lat.iter().filter(|l| **l <= third).count(),
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        max_ms: lat.last().copied().unwrap_or_default(),
        member_peak_rss_mb: peak_kb.iter().copied().max().unwrap_or_default() as f64 / 1024.0,
        key_load_s,
    })
}

pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.validators.is_empty(),
        "give at least one --validators count"
    );
    anyhow::ensure!(args.members >= 2, "--members must be at least 2");
    let mut levels = Vec::new();
    let mut best = 0;
    for &v in &args.validators {
        let dir = tempfile::tempdir().context("cannot make a temporary folder")?;
        if !args.json {
            println!(
                "bench dv: {v} validators, {} members, {} slots of {} ms…",
                args.members, args.slots, args.slot_ms
            );
        }
        let l = level(args, v, dir.path())?;
        let ok = l.signed == l.duties && l.within_third_slot == l.duties;
        if !args.json {
            println!(
                "  {}/{} duties signed, {} within 1/3 slot; latency p50 {} ms, p99 {} ms, max {} ms; member peak RSS {:.1} MB; key load {:.1} s per member",
                l.signed,
                l.duties,
                l.within_third_slot,
                l.p50_ms,
                l.p99_ms,
                l.max_ms,
                l.member_peak_rss_mb,
                l.key_load_s
            );
        }
        levels.push(l);
        if !ok {
            break;
        }
        best = v;
    }
    let report = Report {
        members: args.members,
        slot_ms: args.slot_ms,
        slots_per_epoch: args.slots_per_epoch,
        p50_ms: levels[0].p50_ms,
        p99_ms: levels[0].p99_ms,
        max_validators_within_third_slot: best,
        member_peak_rss_mb: levels[0].member_peak_rss_mb,
        levels,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "bench dv: {} members, first count {} validators: p50 {} ms, p99 {} ms, member peak RSS {:.1} MB; every duty within 1/3 slot up to {} validators",
            report.members,
            report.levels[0].validators,
            report.p50_ms,
            report.p99_ms,
            report.member_peak_rss_mb,
            report.max_validators_within_third_slot
        );
    }
    Ok(())
}
