//! A member as a process: the sans-IO [`Member`] driven by a wall clock, a [`Network`] to the
//! other members and a stream of duties, handing recovered group signatures to a submission
//! sink.
//!
//! The driver owns no protocol rule. It
//!
//! - feeds each duty (with the data this member's node proposes) to the member and records the
//!   duty's instance for the validity predicate ([`duty_validity`]);
//! - decodes direct messages from other members (JSON [`DvMessage`]s) and hands them over with
//!   the sender's position in the lock — the network has already authenticated the sender by its
//!   lock identity key, and a message from a key that is not in the lock is dropped;
//! - keeps the member's timers in a wall-clock queue (Unix milliseconds, the same clock duties
//!   are stamped with);
//! - broadcasts by sending the encoded message to every other member, and forwards each
//!   [`Submission`] to the sink (submission is idempotent at the node).
//!
//! It stops when the duty stream ends (after draining in-flight duties for
//! [`DRAIN`]) or on shutdown, and returns a [`RunReport`] with the participation counts.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use phalanx_net::{NetError, NetEvent, Network, PeerKey};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::consensus::{DutyConsensus, InstanceId, Validity};
use crate::lock::LockBody;
use crate::member::{Duty, DutyData, DutyKind, Member, MemberEffect, MemberTimer, Submission};

/// After the duty stream ends, how long in-flight duties may still finish.
pub const DRAIN: Duration = Duration::from_secs(2);

/// The wall clock duties and timers use: milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Duties this member has been given, by instance, for the validity predicate.
pub type KnownDuties = Arc<Mutex<HashMap<InstanceId, (DutyKind, u64)>>>;

/// The validity predicate of a cluster's duty consensus: the value must decode as duty data
/// that fits the instance's duty (kind and slot). An instance this member's node has not
/// announced yet is checked against every validator of the lock (the instance is a hash of
/// validator, slot and kind), so a fast leader is not refused for being early.
pub fn duty_validity(validators: usize, known: KnownDuties) -> Validity {
    Box::new(move |instance: &InstanceId, value: &[u8]| {
        let Some(data) = DutyData::decode(value) else {
            return false;
        };
        let (kind, slot) = match &data {
            DutyData::Declaration(d) => (DutyKind::Declaration, d.slot.0),
            DutyData::Attestation(a) => (DutyKind::Attestation, a.slot.0),
            DutyData::Randao(r) => (DutyKind::Randao, r.slot.0),
        };
        let known_duty = match known.lock() {
            Ok(k) => k.get(instance).copied(),
            Err(poisoned) => poisoned.into_inner().get(instance).copied(),
        };
        let fits_instance = match known_duty {
            Some((k, s)) => k == kind && s == slot,
            None => (0..validators as u32).any(|validator| {
                Duty {
                    validator,
                    slot,
                    kind,
                    start_ms: 0,
                    deadline_ms: 0,
                }
                .instance()
                    == *instance
            }),
        };
        fits_instance && data.fits(kind, slot)
    })
}

/// A member's Prometheus metrics (registered in the caller's registry, updated by [`run`]).
#[derive(Debug, Clone, Default)]
pub struct DvMetrics {
    /// Valid partials delivered before the duty's deadline, per operator (the reward split).
    pub partials_in_time: Family<OperatorLabel, Counter>,
    /// Invalid partials, per sender.
    pub invalid_partials: Family<OperatorLabel, Counter>,
    /// Duties received.
    pub duties: Counter,
    /// Group signatures recovered and submitted.
    pub submissions: Counter,
    /// Duties the slashing-protection database refused.
    pub refused: Counter,
}

/// The `operator` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperatorLabel {
    /// Operator name from the lock.
    pub operator: String,
}

impl DvMetrics {
    /// Registers the metrics under `phalanx_dv_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "phalanx_dv_partials_in_time",
            "Valid partial signatures delivered before the duty deadline, per operator",
            m.partials_in_time.clone(),
        );
        registry.register(
            "phalanx_dv_invalid_partials",
            "Partial signatures that failed verification, per sender",
            m.invalid_partials.clone(),
        );
        registry.register("phalanx_dv_duties", "Duties received", m.duties.clone());
        registry.register(
            "phalanx_dv_submissions",
            "Group signatures recovered and submitted",
            m.submissions.clone(),
        );
        registry.register(
            "phalanx_dv_refused",
            "Duties refused by slashing protection",
            m.refused.clone(),
        );
        m
    }

    /// Brings the counters up to `report` (counters only ever grow by the difference).
    fn update(&self, report: &RunReport) {
        for (name, n) in &report.participation {
            let c = self.partials_in_time.get_or_create(&OperatorLabel {
                operator: name.clone(),
            });
            c.inc_by(n.saturating_sub(c.get()));
        }
        for (name, n) in &report.invalid_partials {
            let c = self.invalid_partials.get_or_create(&OperatorLabel {
                operator: name.clone(),
            });
            c.inc_by(n.saturating_sub(c.get()));
        }
        self.duties
            .inc_by(report.duties.saturating_sub(self.duties.get()));
        self.submissions
            .inc_by(report.submitted.saturating_sub(self.submissions.get()));
        self.refused
            .inc_by(report.refused.saturating_sub(self.refused.get()));
    }
}

/// How often [`DvMetrics`] are brought up to date while running.
pub const METRICS_EVERY: Duration = Duration::from_secs(1);

/// What a member runs against, besides its network and streams.
#[derive(Debug, Clone)]
pub struct RunContext<'a> {
    /// The cluster lock.
    pub lock: &'a LockBody,
    /// The duties given so far (shared with the validity predicate).
    pub known: KnownDuties,
    /// Metrics to keep up to date.
    pub metrics: Option<DvMetrics>,
}

/// Errors of a member run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The network failed.
    #[error(transparent)]
    Net(#[from] NetError),
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunReport {
    /// Duties received.
    pub duties: u64,
    /// Group signatures this member recovered and submitted.
    pub submitted: u64,
    /// Valid partials delivered in time, per operator name (the reward split).
    pub participation: BTreeMap<String, u64>,
    /// Invalid partials seen, per sender name.
    pub invalid_partials: BTreeMap<String, u64>,
    /// Duties the slashing-protection database refused.
    pub refused: u64,
    /// Messages that did not decode.
    pub undecodable: u64,
}

/// Drives `member` until the duty stream ends or `shutdown` resolves.
pub async fn run<N: Network, C: DutyConsensus>(
    member: Member<C>,
    ctx: RunContext<'_>,
    net: N,
    duties: mpsc::Receiver<(Duty, DutyData)>,
    submissions: mpsc::UnboundedSender<Submission>,
    shutdown: impl Future<Output = ()>,
) -> Result<RunReport, RunError> {
    let span = tracing::info_span!("dv-member", index = member.index());
    drive(member, ctx, net, duties, submissions, shutdown)
        .instrument(span)
        .await
}

async fn drive<N: Network, C: DutyConsensus>(
    mut member: Member<C>,
    ctx: RunContext<'_>,
    mut net: N,
    mut duties: mpsc::Receiver<(Duty, DutyData)>,
    submissions: mpsc::UnboundedSender<Submission>,
    shutdown: impl Future<Output = ()>,
) -> Result<RunReport, RunError> {
    let RunContext {
        lock,
        known,
        metrics,
    } = ctx;
    let me = member.index();
    let mut metrics_tick = tokio::time::interval(METRICS_EVERY);
    let peers: Vec<(u32, PeerKey)> = lock
        .operators
        .iter()
        .enumerate()
        .filter(|(i, _)| *i as u32 != me)
        .map(|(i, o)| (i as u32, PeerKey(o.identity.0)))
        .collect();
    let index_of: HashMap<PeerKey, u32> = peers.iter().map(|(i, k)| (*k, *i)).collect();
    let mut timers: BTreeMap<(u64, u64), MemberTimer> = BTreeMap::new();
    let mut seq = 0u64;
    let mut report = RunReport::default();
    let mut stream_open = true;
    let mut drain_until = u64::MAX;
    tokio::pin!(shutdown);
    loop {
        for effect in member.drain_effects() {
            match effect {
                MemberEffect::Broadcast(msg) => match serde_json::to_vec(&msg) {
                    Ok(bytes) => {
                        for (_, key) in &peers {
                            net.send(*key, bytes.clone())?;
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "dv: cannot encode a message"),
                },
                MemberEffect::Timer { at_ms, timer } => {
                    seq += 1;
                    timers.insert((at_ms, seq), timer);
                }
                MemberEffect::Submit(s) => {
                    report.submitted += 1;
                    // A closed sink only means nobody listens for submissions any more.
                    let _ = submissions.send(s);
                }
            }
        }
        let now = unix_ms();
        if !stream_open && now >= drain_until {
            break;
        }
        let next_timer = timers
            .first_key_value()
            .map(|((at, _), _)| *at)
            .unwrap_or(u64::MAX)
            .min(drain_until);
        let sleep = tokio::time::sleep(Duration::from_millis(
            next_timer.saturating_sub(now).min(3_600_000),
        ));
        tokio::select! {
            duty = duties.recv(), if stream_open => match duty {
                Some((duty, data)) => {
                    report.duties += 1;
                    if let Ok(mut k) = known.lock() {
                        k.insert(duty.instance(), (duty.kind, duty.slot));
                    }
                    member.on_duty(duty, &data, unix_ms());
                }
                None => {
                    stream_open = false;
                    drain_until = unix_ms().saturating_add(DRAIN.as_millis() as u64);
                }
            },
            ev = net.recv() => match ev {
                None => return Err(NetError::Closed.into()),
                Some(NetEvent::Direct { from, data }) => {
                    let Some(index) = index_of.get(&from).copied() else {
                        tracing::warn!(%from, "dv: message from a key not in the lock dropped");
                        continue;
                    };
                    match serde_json::from_slice(&data) {
                        Ok(msg) => member.on_message(index, msg, unix_ms()),
                        Err(e) => {
                            report.undecodable += 1;
                            net.report(from, phalanx_net::Offence::Undecodable);
                            tracing::warn!(%from, error = %e, "dv: undecodable message dropped");
                        }
                    }
                }
                Some(NetEvent::Gossip { .. }) => {}
            },
            () = sleep => {
                let now = unix_ms();
                while let Some(entry) = timers.first_entry() {
                    if entry.key().0 > now {
                        break;
                    }
                    let timer = entry.remove();
                    if let MemberTimer::Expire(instance) = timer
                        && let Ok(mut k) = known.lock()
                    {
                        k.remove(&instance);
                    }
                    member.on_timer(timer, now);
                }
            }
            _ = metrics_tick.tick(), if metrics.is_some() => {
                if let Some(m) = &metrics {
                    fill(&mut report, &member, lock);
                    m.update(&report);
                }
            }
            () = &mut shutdown => break,
        }
    }
    fill(&mut report, &member, lock);
    if let Some(m) = &metrics {
        m.update(&report);
    }
    Ok(report)
}

/// Fills `report`'s counts from the member.
fn fill<C: DutyConsensus>(report: &mut RunReport, member: &Member<C>, lock: &LockBody) {
    let name = |i: u32| {
        lock.operators
            .get(i as usize)
            .map_or_else(|| format!("#{i}"), |o| o.name.clone())
    };
    report.participation = member
        .participation()
        .iter()
        .map(|(i, n)| (name(*i), *n))
        .collect();
    report.invalid_partials.clear();
    for inv in member.invalid_partials() {
        *report.invalid_partials.entry(name(inv.sender)).or_default() += 1;
    }
    report.refused = member.refused();
}
