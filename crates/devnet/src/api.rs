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
use phalanx_types::{AttestationData, Declaration, Decode, Encode, Epoch};
use phalanx_validator::api::{
    CheckpointJson, Data, DutyEvent, DutyKind, ErrorBody, Failure, FinalityCheckpoints,
    GenesisInfo, SignedDuty, SpecInfo,
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
