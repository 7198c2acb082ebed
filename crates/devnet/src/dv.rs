//! The devnet's distributed validator: the last `dv_validators` validators are held by one
//! cluster of `dv_members` members (threshold ⌈2n/3⌉ unless set), each a
//! [`phalanx_dv::member::Member`] running QBFT over an in-process network, taking its duties
//! from the devnet's own validator API over HTTP (the SSE duty stream) and posting group
//! signatures back to it — the same path `phalanx dv run --duties node` takes against a node.
//!
//! With `dv_external_port = Some(base)` the devnet runs no members: it writes each operator's
//! folder (`dv/op-N`: identity key, password, EIP-2335 keystores of its shares, the lock with
//! addresses `/ip4/127.0.0.1/tcp/{base + i}`) for `phalanx dv run --operator-dir dv/op-N
//! --duties node` processes to use.
//!
//! The keys: the devnet's validator keys are deterministic (from the seed), and the cluster's
//! shares are split from them ([`phalanx_dv::create::split_keys`]) with a seeded dealer, so a
//! restart rebuilds the same lock. A real cluster's key never exists whole: it comes from
//! `phalanx dv dkg`. The lock is written to `dv/cluster-lock.json` for inspection; each
//! member's slashing-protection database is `dv/op-N/slashing-protection.redb`, kept across
//! restarts.

use std::path::Path;
use std::sync::Arc;

use phalanx_crypto::SecretKey;
use phalanx_dv::consensus::{BASE_TIMEOUT_MS, STEP_TIMEOUT_MS};
use phalanx_dv::create::{default_threshold, split_keys};
use phalanx_dv::lock::{LockBody, Role};
use phalanx_dv::member::{Member, MemberConfig};
use phalanx_dv::node::{NodeLink, SubmitCounts};
use phalanx_dv::qbft::Qbft;
use phalanx_dv::run::{DvMetrics, KnownDuties, RunContext, duty_validity};
use phalanx_net::PeerKey;
use phalanx_net::memory::MemoryHub;
use phalanx_types::SigningContext;
use phalanx_validator::api::ApiClient;
use phalanx_validator::slashing_protection::SlashingProtection;
use rand::SeedableRng;
use tokio::sync::{mpsc, watch};

use crate::{DevnetConfig, DevnetError};

/// What the dashboard and metrics read about the cluster.
#[derive(Debug)]
pub(crate) struct DvShared {
    /// Operator names, in lock order.
    pub(crate) names: Vec<String>,
    /// The chain's indices of the cluster's validators.
    pub(crate) validators: Vec<u64>,
    /// Partials needed.
    pub(crate) threshold: usize,
    /// Members run as separate processes (their counters are theirs, not shown here).
    pub(crate) external: bool,
    /// Each member's metrics.
    pub(crate) metrics: Vec<DvMetrics>,
    /// Group signatures each member got accepted by the node (or not).
    pub(crate) submitted: Vec<SubmitCounts>,
}

/// A cluster dealt and ready to start.
pub(crate) struct Cluster {
    lock: LockBody,
    keys: Vec<phalanx_dv::identity::OperatorKey>,
    shares: Vec<Vec<phalanx_dv::threshold::SecretShare>>,
    protection: Vec<SlashingProtection>,
    pub(crate) shared: Arc<DvShared>,
    /// Members run as processes elsewhere.
    pub(crate) external: bool,
}

/// Splits `keys` (the chain's validators `validators`) among the configured members.
pub(crate) fn deal(
    config: &DevnetConfig,
    validators: Vec<u64>,
    keys: &[SecretKey],
    dir: &Path,
    signing: SigningContext,
) -> Result<Cluster, DevnetError> {
    let (seed, members, external_port) = (&config.seed, config.dv_members, config.dv_external_port);
    let threshold = config
        .dv_threshold
        .unwrap_or_else(|| default_threshold(members));
    if members == 0 || threshold == 0 || threshold > members {
        return Err(DevnetError::Config(format!(
            "--dv-threshold {threshold} of --dv-members {members}: need 1 ≤ threshold ≤ members"
        )));
    }
    let mut rng = rand_chacha::ChaCha20Rng::from_seed(*alloy_primitives::keccak256(format!(
        "{seed}/dv-cluster"
    )));
    let dealt = split_keys(
        "devnet-dv",
        threshold,
        keys,
        &vec![Role::Regular; members],
        |i| match external_port {
            Some(base) => format!("/ip4/127.0.0.1/tcp/{}", u32::from(base) + i as u32),
            None => format!("memory://op-{}", i + 1),
        },
        &mut rng,
    )
    .map_err(|e| DevnetError::Config(format!("dv cluster: {e}")))?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DevnetError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let lock_path = dir.join("cluster-lock.json");
    dealt
        .lock
        .write(&lock_path)
        .map_err(|e| DevnetError::Config(format!("{}: {e}", lock_path.display())))?;
    let mut protection = Vec::with_capacity(members);
    for i in 0..members {
        let op_dir = dir.join(format!("op-{}", i + 1));
        std::fs::create_dir_all(&op_dir).map_err(io(&op_dir))?;
        if external_port.is_some() {
            // The member runs as its own process, which opens its own protection database.
            phalanx_dv::create::write_operator_files(
                &op_dir,
                &dealt.keys[i],
                &dealt.shares[i],
                "devnet-dv",
                false,
                &mut rng,
            )
            .map_err(|e| DevnetError::Config(format!("{}: {e}", op_dir.display())))?;
            let path = op_dir.join("cluster-lock.json");
            dealt
                .lock
                .write(&path)
                .map_err(|e| DevnetError::Config(format!("{}: {e}", path.display())))?;
            continue;
        }
        let path = op_dir.join("slashing-protection.redb");
        protection.push(
            SlashingProtection::open(&path, signing.genesis_validators_root)
                .map_err(|e| DevnetError::Config(format!("{}: {e}", path.display())))?,
        );
    }
    let lock = dealt.lock.body;
    let shared = Arc::new(DvShared {
        names: lock.operators.iter().map(|o| o.name.clone()).collect(),
        validators,
        threshold,
        external: external_port.is_some(),
        metrics: (0..members).map(|_| DvMetrics::default()).collect(),
        submitted: (0..members).map(|_| SubmitCounts::default()).collect(),
    });
    Ok(Cluster {
        lock,
        keys: dealt.keys,
        shares: dealt.shares,
        protection,
        shared,
        external: external_port.is_some(),
    })
}

impl Cluster {
    /// Starts every member against the validator API at `api` (`http://…`).
    pub(crate) fn start(
        self,
        api: &str,
        signing: SigningContext,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>, DevnetError> {
        if self.external {
            return Ok(Vec::new());
        }
        let hub = MemoryHub::new();
        let ids: Vec<_> = self.lock.operators.iter().map(|o| o.identity).collect();
        let mut tasks = Vec::new();
        let lock = Arc::new(self.lock);
        for (i, ((key, shares), protection)) in self
            .keys
            .into_iter()
            .zip(self.shares)
            .zip(self.protection)
            .enumerate()
        {
            let index = i as u32;
            let client =
                ApiClient::new(api).map_err(|e| DevnetError::Config(format!("dv: {e}")))?;
            let link = NodeLink::new(client, &lock);
            let known = KnownDuties::default();
            let validity = duty_validity(lock.validators.len(), known.clone());
            let engine = Qbft::new(
                ids.clone(),
                index,
                key.clone(),
                validity,
                BASE_TIMEOUT_MS,
                STEP_TIMEOUT_MS,
            );
            let member = Member::new(
                MemberConfig {
                    index,
                    failover_fraction: 0.5,
                    signing,
                },
                (*lock).clone(),
                &shares,
                protection,
                engine,
            )
            .map_err(|e| DevnetError::Config(format!("dv member {}: {e}", i + 1)))?;
            let net = hub.join(PeerKey(key.id().0));
            let (duty_tx, duty_rx) = mpsc::channel(4096);
            let (sub_tx, sub_rx) = mpsc::unbounded_channel();
            let metrics = self.shared.metrics[i].clone();
            let shared = self.shared.clone();
            let lock = lock.clone();
            let stop = stopped(shutdown.clone());
            let stop2 = stopped(shutdown.clone());
            tasks.push(tokio::spawn(async move {
                let follow = link.follow(duty_tx, stop);
                let submit = link.submit_all(sub_rx, &shared.submitted[i]);
                let run = async {
                    let ctx = RunContext {
                        lock: &lock,
                        known,
                        metrics: Some(metrics),
                    };
                    if let Err(e) =
                        phalanx_dv::run::run(member, ctx, net, duty_rx, sub_tx, stop2).await
                    {
                        tracing::error!(member = i + 1, error = %e, "devnet: dv member stopped");
                    }
                };
                tokio::join!(follow, submit, run);
            }));
        }
        Ok(tasks)
    }
}

/// Resolves once `shutdown` turns true (or its sender is gone).
async fn stopped(mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}
