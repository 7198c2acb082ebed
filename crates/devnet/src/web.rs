//! What the devnet serves over HTTP besides JSON-RPC, on the same address:
//!
//! - `GET /` — the dashboard (one static page polling `/api/status` each second): chain
//!   progress and finality, the executed head and tx/s, recent executed blocks, each server's
//!   applied height, executed shards, takeovers and alarms.
//! - `GET /api/status` — the same figures as JSON.
//!   The distributed validator's figures (duties, group signatures, partials in time per
//!   operator) are read from the members' own counters.
//! - `GET /metrics` — Prometheus text format; names in `docs/devnet.md`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

use crate::{Shared, lock};

const DASHBOARD: &str = include_str!("dashboard.html");

/// Blocks listed on the dashboard.
const RECENT: usize = 12;

pub(crate) async fn dashboard() -> Html<&'static str> {
    Html(DASHBOARD)
}

pub(crate) async fn status(State(shared): State<Arc<Shared>>) -> axum::Json<Value> {
    let v = tokio::task::spawn_blocking(move || status_json(&shared))
        .await
        .unwrap_or(Value::Null);
    axum::Json(v)
}

pub(crate) async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let text = tokio::task::spawn_blocking(move || metrics_text(&shared))
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}

/// tx/s over the last epoch of executed blocks, by their timestamps.
fn tx_rate(shared: &Shared, executed: u64, span: u64) -> f64 {
    let blocks = shared.blocks();
    let (Some(head), Some(base)) = (
        blocks.get(&executed),
        blocks.get(&executed.saturating_sub(span)),
    ) else {
        return 0.0;
    };
    let dt = head.header.timestamp.saturating_sub(base.header.timestamp);
    if dt == 0 {
        return 0.0;
    }
    (head.cumulative_txs - base.cumulative_txs) as f64 / dt as f64
}

pub(crate) fn status_json(shared: &Shared) -> Value {
    let status = shared.status();
    let chain = status.chain.as_ref().map(|c| {
        json!({
            "slot": c.slot,
            "head_slot": c.head.1,
            "head_root": c.head.0,
            "justified_epoch": c.justified.epoch.0,
            "finalized_epoch": c.finalized.epoch.0,
            "slashed_validators": c.slashed,
            "claims_on_chain": c.claims_on_chain,
            "executors_slashed": c.executors_slashed,
            "bounties_gwei": c.bounties_gwei,
            "executors_deposited": c.executors_deposited,
            "executors_exited": c.executors_exited,
            "claims_gossip_accepted": shared.gossip.accepted.load(Ordering::Relaxed),
            "claims_gossip_refused": shared.gossip.refused.load(Ordering::Relaxed),
            "slashing_gossip_evidence": shared.gossip.evidence.load(Ordering::Relaxed),
            "slashing_gossip_refused": shared.gossip.slashing_refused.load(Ordering::Relaxed),
        })
    });
    let recent: Vec<Value> = {
        let blocks = shared.blocks();
        blocks
            .range(..=status.executed)
            .rev()
            .take(RECENT)
            .map(|(n, b)| {
                json!({
                    "number": n,
                    "hash": b.header.hash(),
                    "timestamp": b.header.timestamp,
                    "transactions": b.transactions.len(),
                })
            })
            .collect()
    };
    let servers: Vec<Value> = shared
        .stats
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({
                "server": format!("s{i}"),
                "head": s.head(),
                "executed_shards": s.executed.load(Ordering::Relaxed),
                "takeovers": s.takeovers.load(Ordering::Relaxed),
                "alarms": s.alarms.load(Ordering::Relaxed),
                "accepts_won": s.accepts_won.load(Ordering::Relaxed),
            })
        })
        .collect();
    let dv = shared.dv.as_ref().map(|d| {
        let seen_by_first = d.metrics.first();
        let operators: Vec<Value> = d
            .names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let label = phalanx_dv::run::OperatorLabel {
                    operator: name.clone(),
                };
                json!({
                    "name": name,
                    "duties": d.metrics[i].duties.get(),
                    "submissions": d.metrics[i].submissions.get(),
                    "accepted": d.submitted[i].accepted.load(Ordering::Relaxed),
                    "refused": d.submitted[i].failed.load(Ordering::Relaxed),
                    "partials_in_time": seen_by_first.map_or(0, |m| m.partials_in_time.get_or_create(&label).get()),
                    "invalid_partials": seen_by_first.map_or(0, |m| m.invalid_partials.get_or_create(&label).get()),
                })
            })
            .collect();
        json!({
            "validators": d.validators,
            "threshold": d.threshold,
            "members": d.names.len(),
            "external": d.external,
            "signed_duties": status.chain.as_ref().map_or(0, |c| c.external_signed),
            "api_accepted": shared.api_accepted.load(Ordering::Relaxed),
            "operators": operators,
        })
    });
    let producers: Vec<Value> = status
        .chain
        .as_ref()
        .map(|c| {
            c.producers
                .iter()
                .map(|(p, r)| {
                    json!({
                        "producer": p.0,
                        "declared": r.declared,
                        "delivered": r.delivered,
                        "void": r.void,
                        "missed": r.missed,
                        "reliability_bps": r.reliability_bps(),
                        "validator_fees_gwei": gwei(r.fees),
                        "fee_yield_gwei": gwei(r.fee_yield()),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let light = lock(&shared.light).clone().map(|l| {
        json!({
            "head": l.head,
            "root": l.root,
            "claims_agreement": (l.agreement * 1000.0).round() / 1000.0,
            "re_executions": l.re_executions,
            "claims": l.claims,
            "executors": l.executors,
        })
    });
    json!({
        "chain_id": shared.chain_id,
        "dv": dv,
        "light": light,
        "chain": chain,
        "executed": status.executed,
        "transactions_executed": status.txs_executed,
        "tx_per_s": (tx_rate(shared, status.executed, 8) * 10.0).round() / 10.0,
        "pool": status.mempool,
        "alarms": status.alarms,
        "recent_blocks": recent,
        "servers": servers,
        "producers": producers,
    })
}

/// Reads one figure of a distributed validator member.
type ReadMember = fn(&crate::dv::DvShared, usize) -> u64;

/// Reads one figure of a server.
type ReadStat = fn(&phalanx_cluster::server::ServerStats) -> u64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabel {
    server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProducerLabel {
    producer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MemberLabel {
    member: String,
}

fn metrics_text(shared: &Shared) -> String {
    let status = shared.status();
    let mut registry = Registry::with_prefix("phalanx_devnet");
    let gauge = |registry: &mut Registry, name: &str, help: &str, value: u64| {
        let g: Gauge<u64, AtomicU64> = Gauge::default();
        g.set(value);
        registry.register(name, help, g);
    };
    let chain = status.chain.as_ref();
    gauge(
        &mut registry,
        "slot",
        "Current slot",
        chain.map_or(0, |c| c.slot),
    );
    gauge(
        &mut registry,
        "head_slot",
        "Slot of the head block",
        chain.map_or(0, |c| c.head.1),
    );
    gauge(
        &mut registry,
        "justified_epoch",
        "Latest justified epoch",
        chain.map_or(0, |c| c.justified.epoch.0),
    );
    gauge(
        &mut registry,
        "finalized_epoch",
        "Latest finalized epoch",
        chain.map_or(0, |c| c.finalized.epoch.0),
    );
    gauge(
        &mut registry,
        "slashed_validators",
        "Validators slashed on the chain",
        chain.map_or(0, |c| c.slashed as u64),
    );
    gauge(
        &mut registry,
        "claims_on_chain",
        "Executors' claims carried by the chain's blocks",
        chain.map_or(0, |c| c.claims_on_chain),
    );
    gauge(
        &mut registry,
        "executors_slashed",
        "Executors slashed on the chain by wrong-claim proofs",
        chain.map_or(0, |c| c.executors_slashed.len() as u64),
    );
    gauge(
        &mut registry,
        "executors_deposited",
        "Executor deposits carried by the chain's blocks",
        chain.map_or(0, |c| c.executors_deposited),
    );
    gauge(
        &mut registry,
        "executors_exited",
        "Executor exits carried by the chain's blocks",
        chain.map_or(0, |c| c.executors_exited),
    );
    gauge(
        &mut registry,
        "claims_gossip_accepted",
        "Claims received on the gossip topic and accepted",
        shared.gossip.accepted.load(Ordering::Relaxed),
    );
    gauge(
        &mut registry,
        "claims_gossip_refused",
        "Claims received on the gossip topic and refused (their authors scored down)",
        shared.gossip.refused.load(Ordering::Relaxed),
    );
    gauge(
        &mut registry,
        "slashing_gossip_evidence",
        "New slashing evidence taken from the gossip network (heard, or made from two conflicting declarations heard)",
        shared.gossip.evidence.load(Ordering::Relaxed),
    );
    gauge(
        &mut registry,
        "slashing_gossip_refused",
        "Declarations and slashing evidence received by gossip and refused (their authors scored down)",
        shared.gossip.slashing_refused.load(Ordering::Relaxed),
    );
    gauge(
        &mut registry,
        "executor_bounties_gwei",
        "Bounties paid to producers for carrying wrong-claim proofs, Gwei",
        chain.map_or(0, |c| c.bounties_gwei),
    );
    gauge(
        &mut registry,
        "executed_height",
        "Height of the executed head",
        status.executed,
    );
    gauge(
        &mut registry,
        "transactions_executed",
        "Transactions in executed blocks",
        status.txs_executed,
    );
    gauge(
        &mut registry,
        "pool_transactions",
        "Transactions waiting in the pool",
        status.mempool as u64,
    );
    let families: [(&str, &str, ReadStat); 5] = [
        (
            "server_applied_height",
            "Height of the last block a server applied",
            |s| s.head(),
        ),
        ("server_executed_shards", "Shards a server executed", |s| {
            s.executed.load(Ordering::Relaxed)
        }),
        ("server_takeovers", "Shards a server took over", |s| {
            s.takeovers.load(Ordering::Relaxed)
        }),
        (
            "server_alarms",
            "Shard results a server saw differ from the accepted one",
            |s| s.alarms.load(Ordering::Relaxed),
        ),
        (
            "server_accepts_won",
            "Accepted-result writes a server won",
            |s| s.accepts_won.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, read) in families {
        let family: Family<ServerLabel, Gauge<i64, AtomicI64>> = Family::default();
        for (i, s) in shared.stats.iter().enumerate() {
            family
                .get_or_create(&ServerLabel {
                    server: format!("s{i}"),
                })
                .set(i64::try_from(read(s)).unwrap_or(i64::MAX));
        }
        registry.register(name, help, family);
    }
    if let Some(c) = chain {
        type ReadRecord = fn(&phalanx_validator::reputation::Record) -> u64;
        let per_producer: [(&str, &str, ReadRecord); 6] = [
            (
                "producer_declared",
                "Declarations naming a producer, summed over the validators' reputation books",
                |r| r.declared,
            ),
            (
                "producer_delivered",
                "Valid, non-void blocks a producer delivered for those declarations",
                |r| r.delivered,
            ),
            ("producer_void", "Void blocks a producer delivered", |r| {
                r.void
            }),
            ("producer_missed", "Declared slots a producer missed", |r| {
                r.missed
            }),
            (
                "producer_reliability_bps",
                "Delivered over declared, basis points",
                |r| r.reliability_bps(),
            ),
            (
                "producer_validator_fees_gwei",
                "Fees a producer's executed blocks paid the declaring validators, Gwei",
                |r| gwei(r.fees),
            ),
        ];
        for (name, help, read) in per_producer {
            let family: Family<ProducerLabel, Gauge<i64, AtomicI64>> = Family::default();
            for (p, r) in &c.producers {
                family
                    .get_or_create(&ProducerLabel {
                        producer: p.0.to_string(),
                    })
                    .set(i64::try_from(read(r)).unwrap_or(i64::MAX));
            }
            registry.register(name, help, family);
        }
    }
    if let Some(l) = lock(&shared.light).clone() {
        gauge(
            &mut registry,
            "light_head",
            "Height of the light client's head (the root it believes there)",
            l.head,
        );
        gauge(
            &mut registry,
            "light_re_executions",
            "Proofs of execution the light client re-executed",
            l.re_executions,
        );
        gauge(
            &mut registry,
            "claims_signed",
            "Claims the executors signed",
            l.claims,
        );
        gauge(
            &mut registry,
            "claims_agreement_permille",
            "Share of the claiming bond agreeing with the light client's roots over the last 8 blocks, per mille",
            (l.agreement * 1000.0).round() as u64,
        );
    }
    if let Some(d) = &shared.dv {
        gauge(
            &mut registry,
            "dv_signed_duties",
            "Distributed validator duties signed and relayed (each once)",
            chain.map_or(0, |c| c.external_signed),
        );
        let per_member: [(&str, &str, ReadMember); 4] = [
            (
                "dv_member_duties",
                "Duties a member received from the validator API",
                |d, i| d.metrics[i].duties.get(),
            ),
            (
                "dv_member_submissions",
                "Group signatures a member recovered",
                |d, i| d.metrics[i].submissions.get(),
            ),
            (
                "dv_member_accepted",
                "Group signatures the validator API accepted from a member",
                |d, i| d.submitted[i].accepted.load(Ordering::Relaxed),
            ),
            (
                "dv_member_refused",
                "Group signatures the validator API refused from a member (or that failed to reach it)",
                |d, i| d.submitted[i].failed.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, read) in per_member {
            let family: Family<MemberLabel, Gauge<i64, AtomicI64>> = Family::default();
            for (i, member) in d.names.iter().enumerate() {
                family
                    .get_or_create(&MemberLabel {
                        member: member.clone(),
                    })
                    .set(i64::try_from(read(d, i)).unwrap_or(i64::MAX));
            }
            registry.register(name, help, family);
        }
        if let Some(first) = d.metrics.first() {
            registry.register(
                "dv_partials_in_time",
                "Valid partials each operator delivered before the deadline, as the first member saw them (the reward split)",
                first.partials_in_time.clone(),
            );
            registry.register(
                "dv_invalid_partials",
                "Invalid partials per sender, as the first member saw them",
                first.invalid_partials.clone(),
            );
        }
    }
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        return String::new();
    }
    out
}

/// Wei to whole Gwei.
fn gwei(wei: u128) -> u64 {
    u64::try_from(wei / 1_000_000_000).unwrap_or(u64::MAX)
}
