//! The validator API: a Beacon-API-style REST + server-sent-events interface between a node and
//! the validators (and distributed-validator members) it serves. The node side is served by
//! `phalanx devnet` (and, later, every full node); this module holds the wire types both
//! sides share and the client a validator uses.
//!
//! Conventions follow the Ethereum Beacon API: JSON bodies wrapped as `{"data": …}`, 64-bit
//! integers as decimal strings, bytes as `0x` hex, errors as `{"code", "message", "failures"}`.
//! Where the Beacon API has no endpoint (it has no duty *stream*, and phalanx's declarations
//! and RANDAO reveals are their own messages) the additions keep the same style. The data to
//! sign travels as SSZ in hex (`Declaration`, `AttestationData`, or the epoch as 8 bytes
//! little-endian), so a signer signs exactly what the node computed. The OpenAPI document is
//! `docs/api/validator-api.json`, served at `GET /eth/v1/openapi.json`.
//!
//! Endpoints:
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/eth/v1/node/version` | `{"data":{"version"}}` |
//! | GET | `/eth/v1/node/health` | 200 when synced |
//! | GET | `/eth/v1/node/syncing` | head slot, sync distance |
//! | GET | `/eth/v1/beacon/genesis` | genesis time, validators root, fork version |
//! | GET | `/eth/v1/config/spec` | slot length, slots per epoch, … |
//! | GET | `/eth/v1/beacon/states/head/finality_checkpoints` | justified and finalized checkpoints |
//! | GET | `/eth/v1/events?topics=…` | SSE: `head`, `finalized_checkpoint`, `duty` |
//! | GET | `/eth/v1/validator/duties/proposer/{epoch}` | every slot's proposer ([`Duties`] of [`ProposerDuty`]); current epoch and the three before |
//! | POST | `/eth/v1/validator/duties/attester/{epoch}` | `["index", …]` → each one's committee slot and position ([`AttesterDuty`]); up to the next epoch |
//! | POST | `/eth/v1/validator/randao_reveals` | `[SignedDuty]` |
//! | POST | `/eth/v1/validator/declarations` | `[SignedDuty]` |
//! | POST | `/eth/v1/beacon/pool/attestations` | `[SignedDuty]` |

use std::time::Duration;

use alloy_primitives::{B256, Bytes, FixedBytes};
use futures::StreamExt;
use phalanx_crypto::{PublicKeyBytes, SignatureBytes};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// `{"data": …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Data<T> {
    /// The payload.
    pub data: T,
}

/// A Beacon-API error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// HTTP status.
    pub code: u16,
    /// What went wrong.
    pub message: String,
    /// Per item of a list body, which ones failed and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<Failure>,
}

/// One failed item of a list body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Its position in the list.
    pub index: usize,
    /// Why.
    pub message: String,
}

/// `GET /eth/v1/beacon/genesis`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisInfo {
    /// Unix seconds.
    #[serde(with = "quoted")]
    pub genesis_time: u64,
    /// The signing domain's validators root.
    pub genesis_validators_root: B256,
    /// The fork version.
    pub genesis_fork_version: FixedBytes<4>,
}

/// `GET /eth/v1/config/spec` (the part validators use).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct SpecInfo {
    /// Slot length, seconds.
    #[serde(with = "quoted")]
    pub seconds_per_slot: u64,
    /// Slots per epoch.
    #[serde(with = "quoted")]
    pub slots_per_epoch: u64,
    /// Shards per block.
    #[serde(with = "quoted")]
    pub shards_per_block: u64,
    /// Execution chain id.
    #[serde(with = "quoted")]
    pub chain_id: u64,
}

/// The kind of a duty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DutyKind {
    /// Sign the epoch (the RANDAO reveal of a proposal); the declaration follows as a new duty.
    Randao,
    /// Sign the slot's declaration.
    Declaration,
    /// Sign an attestation.
    Attestation,
}

impl DutyKind {
    /// The path its signatures are posted to.
    pub fn submit_path(self) -> &'static str {
        match self {
            Self::Randao => "/eth/v1/validator/randao_reveals",
            Self::Declaration => "/eth/v1/validator/declarations",
            Self::Attestation => "/eth/v1/beacon/pool/attestations",
        }
    }
}

/// A duty, as the `duty` event carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DutyEvent {
    /// Kind.
    pub kind: DutyKind,
    /// The validator's index.
    #[serde(with = "quoted")]
    pub validator_index: u64,
    /// The validator's public key (a distributed validator's group key).
    pub pubkey: PublicKeyBytes,
    /// The slot.
    #[serde(with = "quoted")]
    pub slot: u64,
    /// When the duty starts, Unix ms.
    #[serde(with = "quoted")]
    pub start_ms: u64,
    /// When a signature is of no more use, Unix ms.
    #[serde(with = "quoted")]
    pub deadline_ms: u64,
    /// What to sign, SSZ: `Declaration`, `AttestationData`, or the epoch (8 bytes LE).
    pub data: Bytes,
}

/// A signed duty, posted back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedDuty {
    /// The validator's index.
    #[serde(with = "quoted")]
    pub validator_index: u64,
    /// The slot.
    #[serde(with = "quoted")]
    pub slot: u64,
    /// What was signed, as the duty gave it.
    pub data: Bytes,
    /// The (group) signature.
    pub signature: SignatureBytes,
}

/// `head` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadEvent {
    /// Head slot.
    #[serde(with = "quoted")]
    pub slot: u64,
    /// Head block root.
    pub block: B256,
}

/// A checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointJson {
    /// Epoch.
    #[serde(with = "quoted")]
    pub epoch: u64,
    /// Boundary block root.
    pub root: B256,
}

/// `finalized_checkpoint` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalizedEvent {
    /// The finalized block root.
    pub block: B256,
    /// Its epoch.
    #[serde(with = "quoted")]
    pub epoch: u64,
}

/// `GET /eth/v1/beacon/states/head/finality_checkpoints`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalityCheckpoints {
    /// Justified.
    pub current_justified: CheckpointJson,
    /// Finalized.
    pub finalized: CheckpointJson,
}

/// Path of the proposer duties of an epoch (`GET`).
pub fn proposer_duties_path(epoch: u64) -> String {
    format!("/eth/v1/validator/duties/proposer/{epoch}")
}

/// Path of the attester duties of an epoch (`POST` a list of validator indices).
pub fn attester_duties_path(epoch: u64) -> String {
    format!("/eth/v1/validator/duties/attester/{epoch}")
}

/// Duties of one epoch, with the block their assignment depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Duties<T> {
    /// The block whose state decided the assignment (the last block before the epoch for
    /// proposers: its RANDAO mix is the seed; zero for attesters, whose committees do not
    /// depend on randomness yet). A change means the duties must be fetched again.
    pub dependent_root: B256,
    /// Always `false`: the node answers from its own view.
    pub execution_optimistic: bool,
    /// The duties.
    pub data: Vec<T>,
}

/// A slot's proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposerDuty {
    /// The validator's key.
    pub pubkey: PublicKeyBytes,
    /// The validator.
    #[serde(with = "quoted")]
    pub validator_index: u64,
    /// The slot.
    #[serde(with = "quoted")]
    pub slot: u64,
}

/// A validator's attestation duty in an epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttesterDuty {
    /// The validator's key.
    pub pubkey: PublicKeyBytes,
    /// The validator.
    #[serde(with = "quoted")]
    pub validator_index: u64,
    /// Its committee (one per slot: always 0).
    #[serde(with = "quoted")]
    pub committee_index: u64,
    /// Members of the committee.
    #[serde(with = "quoted")]
    pub committee_length: u64,
    /// Committees at the slot (always 1).
    #[serde(with = "quoted")]
    pub committees_at_slot: u64,
    /// Its bit in the committee's aggregation bits.
    #[serde(with = "quoted")]
    pub validator_committee_index: u64,
    /// The slot it attests at.
    #[serde(with = "quoted")]
    pub slot: u64,
}

/// 64-bit integers as decimal strings (the Beacon API's convention).
pub mod quoted {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as a string.
    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    /// Takes a string (or, leniently, a number).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            S(String),
            N(u64),
        }
        match Either::deserialize(d)? {
            Either::S(s) => s.parse().map_err(serde::de::Error::custom),
            Either::N(n) => Ok(n),
        }
    }
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `event:` (empty when absent).
    pub event: String,
    /// `data:` lines joined by `\n`.
    pub data: String,
}

/// An incremental parser of a `text/event-stream` body (the WHATWG rules a validator
/// needs: `event` and `data` fields, comments and other fields ignored, events ended by a
/// blank line, `\n` or `\r\n` line ends).
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    event: String,
    data: Vec<String>,
}

/// Longest line accepted; a node streaming longer lines is broken or hostile.
pub const MAX_SSE_LINE: usize = 1 << 20;

impl SseParser {
    /// Feeds bytes; returns the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, ApiError> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8(line)
                .map_err(|_| ApiError::Stream("event stream is not UTF-8".into()))?;
            if line.is_empty() {
                if !self.data.is_empty() {
                    out.push(SseEvent {
                        event: std::mem::take(&mut self.event),
                        data: std::mem::take(&mut self.data).join("\n"),
                    });
                }
                self.event.clear();
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((&line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => self.event = value.to_owned(),
                "data" => self.data.push(value.to_owned()),
                _ => {}
            }
        }
        if self.buf.len() > MAX_SSE_LINE {
            return Err(ApiError::Stream(format!(
                "event stream line over {MAX_SSE_LINE} bytes"
            )));
        }
        Ok(out)
    }
}

/// Errors talking to a node.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The base URL is not usable.
    #[error("validator API address {0}: not an http:// URL")]
    Url(String),
    /// Transport.
    #[error("validator API: {0}")]
    Http(#[from] reqwest::Error),
    /// The node answered with an error.
    #[error("validator API refused ({code}): {message}")]
    Refused {
        /// HTTP status.
        code: u16,
        /// The node's message (and per-item failures).
        message: String,
    },
    /// The event stream broke its format.
    #[error("validator API event stream: {0}")]
    Stream(String),
}

/// A client of a node's validator API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client of the node at `base` (e.g. `http://127.0.0.1:8545`).
    pub fn new(base: &str) -> Result<Self, ApiError> {
        let base = base.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            return Err(ApiError::Url(base));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()?;
        Ok(Self { base, http })
    }

    /// The node's address.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(5))
            .send()
            .await?;
        let response = check(response).await?;
        Ok(response.json::<Data<T>>().await?.data)
    }

    /// `GET /eth/v1/beacon/genesis`.
    pub async fn genesis(&self) -> Result<GenesisInfo, ApiError> {
        self.get("/eth/v1/beacon/genesis").await
    }

    /// `GET /eth/v1/config/spec`.
    pub async fn spec(&self) -> Result<SpecInfo, ApiError> {
        self.get("/eth/v1/config/spec").await
    }

    /// `GET /eth/v1/validator/duties/proposer/{epoch}`.
    pub async fn proposer_duties(&self, epoch: u64) -> Result<Duties<ProposerDuty>, ApiError> {
        let response = self
            .http
            .get(format!("{}{}", self.base, proposer_duties_path(epoch)))
            .timeout(Duration::from_secs(5))
            .send()
            .await?;
        Ok(check(response).await?.json().await?)
    }

    /// `POST /eth/v1/validator/duties/attester/{epoch}` for `validators`.
    pub async fn attester_duties(
        &self,
        epoch: u64,
        validators: &[u64],
    ) -> Result<Duties<AttesterDuty>, ApiError> {
        let body: Vec<String> = validators.iter().map(u64::to_string).collect();
        let response = self
            .http
            .post(format!("{}{}", self.base, attester_duties_path(epoch)))
            .timeout(Duration::from_secs(5))
            .json(&body)
            .send()
            .await?;
        Ok(check(response).await?.json().await?)
    }

    /// Posts signed duties of one kind.
    pub async fn submit(&self, kind: DutyKind, signed: &[SignedDuty]) -> Result<(), ApiError> {
        let response = self
            .http
            .post(format!("{}{}", self.base, kind.submit_path()))
            .timeout(Duration::from_secs(5))
            .json(signed)
            .send()
            .await?;
        check(response).await.map(|_| ())
    }

    /// Follows the `duty` events, sending each to `tx`, reconnecting (after `retry`) whenever
    /// the stream breaks, until `tx` closes or `shutdown` resolves. Connection trouble is
    /// logged, not returned: a node restart must not stop a validator.
    pub async fn follow_duties(
        &self,
        tx: mpsc::Sender<DutyEvent>,
        retry: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut connected_once = false;
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                r = self.stream_duties(&tx, &mut connected_once) => match r {
                    Ok(()) => return,
                    Err(e) => tracing::warn!(node = %self.base, error = %e,
                        "validator API: duty stream lost; reconnecting"),
                },
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(retry) => {}
            }
        }
    }

    /// One connection's worth of duty events; `Ok` when the receiver is gone.
    async fn stream_duties(
        &self,
        tx: &mpsc::Sender<DutyEvent>,
        connected_once: &mut bool,
    ) -> Result<(), ApiError> {
        let response = self
            .http
            .get(format!("{}/eth/v1/events?topics=duty", self.base))
            .header("accept", "text/event-stream")
            .send()
            .await?;
        let response = check(response).await?;
        if !*connected_once {
            tracing::info!(node = %self.base, "validator API: following the duty stream");
            *connected_once = true;
        }
        let mut parser = SseParser::default();
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            for event in parser.push(&chunk?)? {
                if event.event != "duty" {
                    continue;
                }
                match serde_json::from_str::<DutyEvent>(&event.data) {
                    Ok(duty) => {
                        if tx.send(duty).await.is_err() {
                            return Ok(());
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "validator API: undecodable duty event, skipped")
                    }
                }
            }
        }
        Err(ApiError::Stream("the node closed the stream".into()))
    }
}

async fn check(response: reqwest::Response) -> Result<reqwest::Response, ApiError> {
    if response.status().is_success() {
        return Ok(response);
    }
    let code = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let message = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) if body.failures.is_empty() => body.message,
        Ok(body) => format!(
            "{}: {}",
            body.message,
            body.failures
                .iter()
                .map(|f| format!("#{} {}", f.index, f.message))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        Err(_) => text,
    };
    Err(ApiError::Refused { code, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_split_across_chunks_and_line_ends() {
        let mut p = SseParser::default();
        assert!(p.push(b": keep-alive\n\nevent: du").unwrap().is_empty());
        let got = p
            .push(b"ty\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\nevent:head\ndata:x\n\n")
            .unwrap();
        assert_eq!(
            got,
            vec![
                SseEvent {
                    event: "duty".into(),
                    data: "{\"a\":\n1}".into()
                },
                SseEvent {
                    event: "head".into(),
                    data: "x".into()
                },
            ]
        );
        assert!(p.push(&vec![b'x'; MAX_SSE_LINE + 1]).is_err());
    }

    #[test]
    fn integers_are_quoted_and_bytes_hex() {
        let e = SignedDuty {
            validator_index: 5,
            slot: 18_446_744_073_709_551_615,
            data: Bytes::from(vec![1, 2]),
            signature: SignatureBytes::repeat_byte(0xab),
        };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["validator_index"], "5");
        assert_eq!(json["slot"], "18446744073709551615");
        assert_eq!(json["data"], "0x0102");
        let back: SignedDuty = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
        assert!(
            serde_json::from_str::<SignedDuty>(
                r#"{"validator_index":"x","slot":"1","data":"0x","signature":"0x00"}"#
            )
            .is_err()
        );
    }
}
