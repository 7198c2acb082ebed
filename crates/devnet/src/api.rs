//! The node side of the validator API ([`phalanx_validator::api`] documents the endpoints and
//! the wire format), on the same address as JSON-RPC.
//!
//! The chain thread owns the chain, so the handlers talk to it by message: each signed duty is
//! decoded here (a typed 400 for bad hex, SSZ or kind), then handed to the chain thread, which
//! checks it ([`phalanx_sim::chain::LiveChain::submit`]: key, slot, signature, conflicts) and
//! relays it; the handler answers with the chain's verdict. Events (`duty`, `head`,
//! `finalized_checkpoint`) are published by the chain thread on a broadcast channel; a
//! subscriber that falls behind by more than the channel holds loses the oldest events and is
//! told so in the log (its duties' deadlines would have passed anyway).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::Bytes;
use axum::body::Bytes as Body;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use phalanx_sim::chain::{ExternalData, ExternalDuty, SignedExternal, SubmitError};
use phalanx_types::{AttestationData, Declaration, Decode, Encode, Epoch, Slot, ValidatorIndex};
use phalanx_validator::api::{
    AttesterDuty, CheckpointJson, Data, Duties, DutyEvent, DutyKind, ErrorBody, Failure,
    FinalityCheckpoints, GenesisInfo, ProposerDuty, SignedDuty, SpecInfo,
};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{broadcast, oneshot};

use crate::{Shared, lock};

/// The OpenAPI document of the validator API.
pub(crate) const OPENAPI: &str = include_str!("../../../docs/api/validator-api.json");

/// Events a subscriber may fall behind by before it loses the oldest.
pub(crate) const EVENT_BACKLOG: usize = 4096;

/// How long a submission waits for the chain thread's verdict.
const VERDICT_TIMEOUT: Duration = Duration::from_secs(2);

/// One event for the stream: topic and JSON data.
#[derive(Debug, Clone)]
pub(crate) struct ApiEvent {
    pub(crate) topic: &'static str,
    pub(crate) data: String,
}

/// A signed duty on its way to the chain thread, with where to send the verdict.
pub(crate) type ToChain = (SignedExternal, oneshot::Sender<Result<(), SubmitError>>);

/// What the API handlers share (part of [`Shared`]).
#[derive(Debug)]
pub(crate) struct ApiShared {
    pub(crate) events: broadcast::Sender<ApiEvent>,
    pub(crate) to_chain: std::sync::Mutex<std::sync::mpsc::Sender<ToChain>>,
    pub(crate) genesis: GenesisInfo,
    pub(crate) spec: SpecInfo,
    pub(crate) version: String,
    /// Every validator's key, by index.
    pub(crate) validators: Vec<phalanx_crypto::PublicKeyBytes>,
    /// Proposer duties of the last [`KEEP_PROPOSER_EPOCHS`] epochs, by epoch (published by
    /// the chain thread on each new head).
    pub(crate) proposers: std::sync::Mutex<std::collections::BTreeMap<u64, ProposerDuties>>,
}

/// An epoch's proposers: the block whose mix seeds them, and (slot, validator) per slot.
pub(crate) type ProposerDuties = (phalanx_types::Root, Vec<(Slot, ValidatorIndex)>);

/// Epochs of proposer duties kept for polling.
const KEEP_PROPOSER_EPOCHS: usize = 4;

/// Publishes the proposers of `epoch` (the chain thread calls this on each new head).
pub(crate) fn record_proposers(api: &ApiShared, epoch: u64, duties: ProposerDuties) {
    let mut map = lock(&api.proposers);
    map.insert(epoch, duties);
    while map.len() > KEEP_PROPOSER_EPOCHS {
        map.pop_first();
    }
}

fn bad_request(message: String) -> Response {
    error(StatusCode::BAD_REQUEST, message, Vec::new())
}

/// The epoch a duties request names, and the current epoch by the chain's clock; or the
/// status and reason to answer with.
fn duty_epoch(shared: &Shared, raw: &str) -> Result<(u64, u64), (StatusCode, String)> {
    let epoch = raw.parse().map_err(|_| {
        (
            StatusCode::BAD_REQUEST,
            format!("epoch {raw:?} is not a decimal number"),
        )
    })?;
    let current = lock(&shared.chain)
        .as_ref()
        .map(|c| c.slot / shared.api.spec.slots_per_epoch.max(1))
        .ok_or((StatusCode::SERVICE_UNAVAILABLE, "no head yet".to_string()))?;
    Ok((epoch, current))
}

/// `GET /eth/v1/validator/duties/proposer/{epoch}`: every slot's proposer, for the current
/// epoch or one of the few before it (a later epoch's seed is not known yet).
async fn proposer_duties(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(raw): axum::extract::Path<String>,
) -> Response {
    let (epoch, current) = match duty_epoch(&shared, &raw) {
        Ok(e) => e,
        Err((code, why)) => return error(code, why, Vec::new()),
    };
    if epoch > current {
        return bad_request(format!(
            "the proposers of epoch {epoch} are not known before it starts (current epoch \
             {current}): they are drawn from the RANDAO mix at the end of epoch {}",
            epoch.saturating_sub(1)
        ));
    }
    let Some((root, duties)) = lock(&shared.api.proposers).get(&epoch).cloned() else {
        return bad_request(format!(
            "the proposers of epoch {epoch} are not kept (the last {KEEP_PROPOSER_EPOCHS} \
             epochs are)"
        ));
    };
    let data: Vec<ProposerDuty> = duties
        .iter()
        .filter_map(|(slot, v)| {
            let pubkey = *shared.api.validators.get(usize::try_from(v.0).ok()?)?;
            Some(ProposerDuty {
                pubkey,
                validator_index: v.0,
                slot: slot.0,
            })
        })
        .collect();
    axum::Json(Duties {
        dependent_root: root,
        execution_optimistic: false,
        data,
    })
    .into_response()
}

/// `POST /eth/v1/validator/duties/attester/{epoch}` with a list of validator indices (decimal
/// strings): each one's committee slot and position, for any epoch up to the next one
/// (committees are a fixed assignment: `phalanx_consensus::committee`).
async fn attester_duties(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(raw): axum::extract::Path<String>,
    body: Body,
) -> Response {
    let (epoch, current) = match duty_epoch(&shared, &raw) {
        Ok(e) => e,
        Err((code, why)) => return error(code, why, Vec::new()),
    };
    if epoch > current + 1 {
        return bad_request(format!(
            "attester duties are served up to the next epoch ({}), not {epoch}",
            current + 1
        ));
    }
    let indices: Vec<String> = match serde_json::from_slice(&body) {
        Ok(i) => i,
        Err(e) => {
            return bad_request(format!(
                "the body must be a list of validator indices as decimal strings: {e}"
            ));
        }
    };
    let spe = shared.api.spec.slots_per_epoch.max(1);
    let validators = shared.api.validators.len() as u64;
    let mut data = Vec::with_capacity(indices.len());
    for raw in &indices {
        let Some(v) = raw.parse::<u64>().ok().filter(|v| *v < validators) else {
            return bad_request(format!(
                "validator {raw:?} is not one of the {validators} validators"
            ));
        };
        let slot =
            phalanx_consensus::committee::attestation_slot(ValidatorIndex(v), Epoch(epoch), spe);
        let committee = phalanx_consensus::committee::committee(validators, slot, spe);
        let position = committee.iter().position(|c| c.0 == v).unwrap_or_default();
        data.push(AttesterDuty {
            pubkey: shared.api.validators[v as usize],
            validator_index: v,
            committee_index: 0,
            committee_length: committee.len() as u64,
            committees_at_slot: 1,
            validator_committee_index: position as u64,
            slot: slot.0,
        });
    }
    axum::Json(Duties {
        dependent_root: phalanx_types::Root::ZERO,
        execution_optimistic: false,
        data,
    })
    .into_response()
}

/// The duty event of an external duty (times turned from ms since genesis to Unix ms).
pub(crate) fn duty_event(
    duty: &ExternalDuty,
    pubkey: phalanx_crypto::PublicKeyBytes,
    genesis_ms: u64,
) -> DutyEvent {
    let (kind, data) = match &duty.data {
        ExternalData::Randao(e) => (DutyKind::Randao, e.as_ssz_bytes()),
        ExternalData::Declaration(d) => (DutyKind::Declaration, d.as_ssz_bytes()),
        ExternalData::Attestation(a) => (DutyKind::Attestation, a.as_ssz_bytes()),
    };
    DutyEvent {
        kind,
        validator_index: duty.validator,
        pubkey,
        slot: duty.slot,
        start_ms: genesis_ms + duty.start_ms,
        deadline_ms: genesis_ms + duty.deadline_ms,
        data: Bytes::from(data),
    }
}

/// Decodes a signed duty's data as `kind`.
pub(crate) fn decode(kind: DutyKind, signed: &SignedDuty) -> Result<SignedExternal, String> {
    let bytes = &signed.data[..];
    let data = match kind {
        DutyKind::Randao => ExternalData::Randao(
            Epoch::from_ssz_bytes(bytes).map_err(|e| format!("data is not an epoch: {e:?}"))?,
        ),
        DutyKind::Declaration => ExternalData::Declaration(
            Declaration::from_ssz_bytes(bytes)
                .map_err(|e| format!("data is not a declaration: {e:?}"))?,
        ),
        DutyKind::Attestation => ExternalData::Attestation(
            AttestationData::from_ssz_bytes(bytes)
                .map_err(|e| format!("data is not attestation data: {e:?}"))?,
        ),
    };
    Ok(SignedExternal {
        validator: signed.validator_index,
        slot: signed.slot,
        data,
        signature: signed.signature,
    })
}

fn error(code: StatusCode, message: impl Into<String>, failures: Vec<Failure>) -> Response {
    (
        code,
        axum::Json(ErrorBody {
            code: code.as_u16(),
            message: message.into(),
            failures,
        }),
    )
        .into_response()
}

pub(crate) fn router() -> axum::Router<Arc<Shared>> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/eth/v1/node/version", get(version))
        .route("/eth/v1/node/health", get(health))
        .route("/eth/v1/node/syncing", get(syncing))
        .route("/eth/v1/beacon/genesis", get(genesis))
        .route("/eth/v1/config/spec", get(spec))
        .route(
            "/eth/v1/beacon/states/head/finality_checkpoints",
            get(finality),
        )
        .route("/eth/v1/events", get(events))
        .route(
            "/eth/v1/validator/duties/proposer/{epoch}",
            get(proposer_duties),
        )
        .route(
            "/eth/v1/validator/duties/attester/{epoch}",
            post(attester_duties),
        )
        .route("/eth/v1/openapi.json", get(openapi))
        .route(DutyKind::Randao.submit_path(), post(submit_randao))
        .route(
            DutyKind::Declaration.submit_path(),
            post(submit_declarations),
        )
        .route(
            DutyKind::Attestation.submit_path(),
            post(submit_attestations),
        )
}

async fn version(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(Data {
        data: json!({ "version": shared.api.version }),
    })
    .into_response()
}

async fn health(State(shared): State<Arc<Shared>>) -> StatusCode {
    if lock(&shared.chain).is_some() {
        StatusCode::OK
    } else {
        // Before slot 1 the node has no head yet: "syncing" in Beacon-API terms.
        StatusCode::PARTIAL_CONTENT
    }
}

async fn syncing(State(shared): State<Arc<Shared>>) -> Response {
    let head = lock(&shared.chain)
        .as_ref()
        .map_or((0, 0), |c| (c.head.1, c.slot));
    axum::Json(Data {
        data: json!({
            "head_slot": head.0.to_string(),
            "sync_distance": head.1.saturating_sub(head.0).to_string(),
            "is_syncing": false,
            "is_optimistic": false,
            "el_offline": false,
        }),
    })
    .into_response()
}

async fn genesis(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(Data {
        data: shared.api.genesis.clone(),
    })
    .into_response()
}

async fn spec(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(Data {
        data: shared.api.spec.clone(),
    })
    .into_response()
}

async fn finality(State(shared): State<Arc<Shared>>) -> Response {
    let Some(chain) = lock(&shared.chain).clone() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no head yet", Vec::new());
    };
    let cp = |c: &phalanx_types::Checkpoint| CheckpointJson {
        epoch: c.epoch.0,
        root: c.root,
    };
    axum::Json(Data {
        data: FinalityCheckpoints {
            current_justified: cp(&chain.justified),
            finalized: cp(&chain.finalized),
        },
    })
    .into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

#[derive(Debug, Deserialize)]
struct Topics {
    topics: Option<String>,
}

const TOPICS: [&str; 3] = ["head", "finalized_checkpoint", "duty"];

async fn events(State(shared): State<Arc<Shared>>, Query(q): Query<Topics>) -> Response {
    let Some(asked) = q.topics.filter(|t| !t.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("topics is required (one or more of {})", TOPICS.join(",")),
            Vec::new(),
        );
    };
    let mut topics: Vec<&'static str> = Vec::new();
    for t in asked.split(',') {
        match TOPICS.iter().find(|k| **k == t.trim()) {
            Some(k) => topics.push(k),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown topic {t:?} (known: {})", TOPICS.join(",")),
                    Vec::new(),
                );
            }
        }
    }
    let rx = shared.api.events.subscribe();
    let stream = futures::stream::unfold((rx, topics), |(mut rx, topics)| async move {
        loop {
            match rx.recv().await {
                Ok(e) if topics.contains(&e.topic) => {
                    let event = Event::default().event(e.topic).data(e.data);
                    return Some((Ok::<_, Infallible>(event), (rx, topics)));
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        lost = n,
                        "validator API: a subscriber fell behind; oldest events dropped"
                    );
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(5)))
        .into_response()
}

async fn submit_randao(State(shared): State<Arc<Shared>>, body: Body) -> Response {
    submit(shared, DutyKind::Randao, body).await
}

async fn submit_declarations(State(shared): State<Arc<Shared>>, body: Body) -> Response {
    submit(shared, DutyKind::Declaration, body).await
}

async fn submit_attestations(State(shared): State<Arc<Shared>>, body: Body) -> Response {
    submit(shared, DutyKind::Attestation, body).await
}

/// Most signed duties in one request.
const MAX_ITEMS: usize = 1024;

async fn submit(shared: Arc<Shared>, kind: DutyKind, body: Body) -> Response {
    let items: Vec<SignedDuty> = match serde_json::from_slice(&body) {
        Ok(items) => items,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("body is not a list of signed duties: {e}"),
                Vec::new(),
            );
        }
    };
    if items.len() > MAX_ITEMS {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{} items; at most {MAX_ITEMS} per request", items.len()),
            Vec::new(),
        );
    }
    let mut failures = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let verdict = match decode(kind, item) {
            Err(message) => Err(message),
            Ok(signed) => {
                let (tx, rx) = oneshot::channel();
                let sent = lock(&shared.api.to_chain).send((signed, tx)).is_ok();
                if !sent {
                    return error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the chain is stopping",
                        Vec::new(),
                    );
                }
                match tokio::time::timeout(VERDICT_TIMEOUT, rx).await {
                    Ok(Ok(v)) => v.map_err(|e| e.to_string()),
                    _ => {
                        return error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "the chain did not answer in time",
                            Vec::new(),
                        );
                    }
                }
            }
        };
        match verdict {
            Ok(()) => {
                shared
                    .api_accepted
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err(message) => {
                tracing::debug!(?kind, index, %message, "validator API: submission refused");
                failures.push(Failure { index, message });
            }
        }
    }
    if failures.is_empty() {
        StatusCode::OK.into_response()
    } else {
        error(
            StatusCode::BAD_REQUEST,
            "some signed duties were refused; the others were relayed",
            failures,
        )
    }
}
