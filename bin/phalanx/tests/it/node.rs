//! A clustered node as an operator runs it: a 3-member etcd cluster and four `phalanx node`
//! processes on loopback (8 shards, three owners each) following a `phalanx node --feed`
//! process over libp2p, while servers are killed with SIGKILL and restarted, an etcd member
//! dies, every owner of a shard dies, and a server comes back corrupting its effects.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy_primitives::B256;
use phalanx_cluster::load::Load;
use phalanx_cluster::ownership::{ShardRange, layout};
use phalanx_cluster::testing::LocalEtcd;

use phalanx_execution::store::StateStore;

const SHARDS: u16 = 8;
const SERVERS: usize = 4;
const BLOCKS: u64 = 26;
const SLOT_MS: u64 = 1500;
const SENDERS: usize = 4;
const TXS: usize = 4;
const SEED: u64 = 5;

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// One process and how to start it again.
struct Proc {
    name: String,
    dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    starts: usize,
}

impl Proc {
    fn start(&mut self, extra: &[&str]) {
        assert!(self.child.is_none());
        self.starts += 1;
        let log =
            std::fs::File::create(self.dir.join(format!("stderr-{}.log", self.starts))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_phalanx"))
            .args(&self.args)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown, no lease revoked.
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    fn alive(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join(format!("stderr-{}.log", self.starts)))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// height → (state root, first applied unix ms), from `roots.log`. A height applied
    /// again after a crash (it was not on disk yet) must show the same root.
    fn roots(&self) -> BTreeMap<u64, (B256, u64)> {
        let mut roots = BTreeMap::new();
        let text = std::fs::read_to_string(self.dir.join("roots.log")).unwrap_or_default();
        for line in text.lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            let parsed = (|| {
                let h: u64 = w.first()?.parse().ok()?;
                let root: B256 = w.get(2)?.parse().ok()?;
                Some((h, root, w.get(3)?.parse::<u64>().ok()?))
            })();
            let Some((h, root, at)) = parsed else {
                continue;
            };
            let (first, _) = roots.entry(h).or_insert((root, at));
            assert_eq!(
                *first, root,
                "{}: height {h} applied twice, two roots",
                self.name
            );
        }
        roots
    }

    fn head(&self) -> u64 {
        self.roots().keys().last().copied().unwrap_or(0)
    }

    /// A counter from `metrics.prom` (the last run's), summed over its labels.
    fn metric(&self, name: &str) -> u64 {
        let text = std::fs::read_to_string(self.dir.join("metrics.prom")).unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
            .sum()
    }

    /// Shard indices in `phalanx_node_shard_bytes_received_total` received `via` gossip or
    /// request (the last run's).
    fn shards_received(&self, via: &str) -> Vec<u16> {
        let text = std::fs::read_to_string(self.dir.join("metrics.prom")).unwrap_or_default();
        text.lines()
            .filter_map(|l| l.strip_prefix("phalanx_node_shard_bytes_received_total{shard=\""))
            .filter(|l| l.contains(&format!("via=\"{via}\"")))
            .filter_map(|l| l.split('"').next()?.parse().ok())
            .collect()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn read_log<T>(path: &Path, parse: impl Fn(&[&str]) -> Option<T>) -> BTreeMap<u64, T> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            Some((w.first()?.parse().ok()?, parse(&w)?))
        })
        .collect()
}

fn identity(dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_phalanx"))
        .args(["node", "--print-identity", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The true root of every height: the same load executed here on one state.
fn reference_roots() -> BTreeMap<u64, B256> {
    let mut load = Load::new(SHARDS, SENDERS, SEED);
    let state = StateStore::in_memory().unwrap();
    let genesis = load.genesis_header().hash();
    state.init_genesis(genesis, &load.genesis_alloc()).unwrap();
    let mut parent = genesis;
    let mut roots = BTreeMap::new();
    for _ in 0..BLOCKS {
        let (header, shards) = load.next_block(TXS).unwrap();
        let raw = phalanx_cluster::load::raw_transactions(&shards);
        let result = state
            .execute(parent, header.hash(), &header.env(), &raw)
            .unwrap();
        state.finalize(header.hash()).unwrap();
        parent = header.hash();
        roots.insert(header.number, result.post_state_root);
    }
    roots
}

struct Cluster {
    feed: Proc,
    servers: Vec<Proc>,
    ranges: Vec<ShardRange>,
    deadline: Instant,
}

impl Cluster {
    fn wait(&mut self, what: &str, mut done: impl FnMut(&[Proc]) -> bool) {
        while !done(&self.servers) {
            if Instant::now() > self.deadline {
                let mut report = format!("timed out waiting for {what}\n");
                for s in &self.servers {
                    report += &format!("--- {} (head {}):\n{}\n", s.name, s.head(), s.log_tail());
                }
                report += &format!("--- feed:\n{}", self.feed.log_tail());
                panic!("{report}");
            }
            for s in &mut self.servers {
                if s.child.is_some() && !s.alive() {
                    panic!("{} exited:\n{}", s.name, s.log_tail());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn max_head(s: &[Proc]) -> u64 {
    s.iter().map(Proc::head).max().unwrap_or(0)
}

#[test]
fn four_server_node_on_etcd_survives_kills_takes_over_and_rejects_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = LocalEtcd::start(3, &dir.path().join("etcd")).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        etcd.wait_ready(Duration::from_secs(20)),
        "etcd did not start: {}",
        etcd.log(0)
    );
    let endpoints = etcd.endpoints().join(",");
    let ranges = layout(SERVERS as u16, SHARDS, 3);
    let names: Vec<String> = (0..SERVERS)
        .map(|i| format!("s{i}"))
        .chain(["feed".to_owned()])
        .collect();
    let dirs: Vec<PathBuf> = names.iter().map(|n| dir.path().join(n)).collect();
    let keys: Vec<String> = dirs.iter().map(|d| identity(d)).collect();
    let ports = crate::free_ports(names.len());
    let addr = |i: usize| format!("/ip4/127.0.0.1/tcp/{}", ports[i]);
    // The feed first: a server following a feed runs the headers of its first `--peer` alone.
    let peers = |me: usize| -> Vec<String> {
        std::iter::once(SERVERS)
            .chain(0..SERVERS)
            .filter(|&j| j != me)
            .flat_map(|j| ["--peer".to_owned(), format!("{}@{}", keys[j], addr(j))])
            .collect()
    };
    let common = |i: usize| -> Vec<String> {
        let mut a: Vec<String> = vec!["node".into(), "--data-dir".into()];
        a.push(dirs[i].display().to_string());
        a.extend(["--listen".into(), addr(i)]);
        a.extend(["--total-shards".into(), SHARDS.to_string()]);
        a.extend(["--seed".into(), SEED.to_string()]);
        a.extend(["--senders".into(), SENDERS.to_string()]);
        a.extend(peers(i));
        a
    };
    let servers: Vec<Proc> = (0..SERVERS)
        .map(|i| {
            let mut args = common(i);
            args.extend(["--shards".into(), ranges[i].to_string()]);
            args.extend(["--etcd".into(), endpoints.clone()]);
            args.extend(["--node-id".into(), "n1".into()]);
            args.extend(["--lease-ms".into(), "600".into()]);
            args.extend(["--accept-timeout-ms".into(), "750".into()]);
            Proc {
                name: names[i].clone(),
                dir: dirs[i].clone(),
                args,
                child: None,
                starts: 0,
            }
        })
        .collect();
    let mut feed_args = common(SERVERS);
    feed_args.extend(["--feed".into(), "--blocks".into(), BLOCKS.to_string()]);
    feed_args.extend(["--slot-ms".into(), SLOT_MS.to_string()]);
    feed_args.extend(["--txs-per-shard".into(), TXS.to_string()]);
    feed_args.extend(["--warmup-ms".into(), "3000".into()]);
    let mut c = Cluster {
        feed: Proc {
            name: "feed".into(),
            dir: dirs[SERVERS].clone(),
            args: feed_args,
            child: None,
            starts: 0,
        },
        servers,
        ranges: ranges.clone(),
        deadline: Instant::now() + Duration::from_secs(BLOCKS * SLOT_MS / 1000 + 90),
    };
    for s in &mut c.servers {
        s.start(&[]);
    }
    c.feed.start(&[]);

    // A server killed, restarted three blocks later: it catches up from disk.
    c.wait("every server at height 3", |s| {
        s.iter().all(|p| p.head() >= 3)
    });
    c.servers[0].kill9();
    c.wait("height 6", |s| max_head(s) >= 6);
    c.servers[0].start(&[]);

    // One etcd member killed for good: the node goes on with the other two.
    c.wait("height 8", |s| max_head(s) >= 8);
    etcd.kill(0);

    // Every owner of the shards s3 does not own killed: s3 takes them over.
    c.wait("height 10", |s| max_head(s) >= 10);
    let orphaned: Vec<u16> = (0..SHARDS).filter(|i| !c.ranges[3].contains(*i)).collect();
    assert!(!orphaned.is_empty());
    let killed_at = unix_ms();
    for s in &mut c.servers[..3] {
        s.kill9();
    }
    c.wait("s3 alone at height 14", |s| s[3].head() >= 14);
    let restarted_at = unix_ms();
    let s3_takeovers = c.servers[3].metric("phalanx_node_takeovers_total");
    for s in &mut c.servers[..3] {
        s.start(&[]);
    }

    // s3 killed and back corrupting its effects.
    c.wait("every server at height 17", |s| {
        s.iter().all(|p| p.head() >= 17)
    });
    c.servers[3].kill9();
    c.wait("height 19", |s| max_head(s) >= 19);
    c.servers[3].start(&["--corrupt"]);

    c.wait("every server at the last height", |s| {
        s.iter().all(|p| p.head() >= BLOCKS)
    });
    std::thread::sleep(Duration::from_millis(1500)); // metrics rewritten each second

    // No block left unexecuted, every server's root the true one at every height.
    let reference = reference_roots();
    for s in &c.servers {
        let roots = s.roots();
        for (h, root) in &reference {
            let got = roots.get(h).map(|r| r.0);
            assert_eq!(got, Some(*root), "{} at height {h}", s.name);
        }
    }

    // Takeover within two slots: every block published while s3 was alone was applied by it
    // within two slots of its publication.
    assert!(s3_takeovers > 0, "s3 took nothing over");
    let published = read_log(&c.feed.dir.join("blocks.log"), |w| {
        w.get(2)?.parse::<u64>().ok()
    });
    let s3 = c.servers[3].roots();
    let mut alone = 0;
    for (h, at) in published
        .iter()
        .filter(|(_, at)| **at > killed_at && **at < restarted_at)
    {
        let applied = s3[h].1;
        assert!(
            applied.saturating_sub(*at) <= 2 * SLOT_MS,
            "height {h}: applied {} ms after publication",
            applied - at
        );
        alone += 1;
    }
    assert!(alone >= 3, "only {alone} blocks while s3 was alone");

    // The corrupting server's effects were never accepted (the roots above), and its
    // peers raised alarms.
    let alarms: u64 = c.servers[..3]
        .iter()
        .map(|s| s.metric("phalanx_node_alarms_total"))
        .sum();
    assert!(alarms > 0, "no alarm raised about s3's corrupt effects");

    // Shard bytes: since their last start (no takeover then), each server received by gossip
    // the shards of its own range only. (A shard stuck without two agreeing outcomes is run
    // by one more server, which fetches it by request: counted apart.)
    for (s, range) in c.servers.iter().zip(&c.ranges) {
        let received = s.shards_received("gossip");
        assert!(!received.is_empty(), "{} received no shard", s.name);
        for shard in received {
            assert!(
                range.contains(shard),
                "{} received shard {shard} outside {range}",
                s.name
            );
        }
    }
}
