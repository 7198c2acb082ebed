//! The validator API of a running devnet, as a validator client sees it: genesis and spec,
//! the documented endpoints answering, the live duty stream, and refusals of bad submissions
//! with Beacon-API error bodies. Called by the devnet test (one devnet for both).

use std::net::SocketAddr;
use std::time::Duration;

use alloy_primitives::Bytes;
use phalanx_crypto::SignatureBytes;
use phalanx_validator::api::{ApiClient, ApiError, DutyEvent, DutyKind, ErrorBody, SignedDuty};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Status code and body of one request.
pub(crate) async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    let (code, body) = request_bytes(addr, method, path, body).await;
    (code, String::from_utf8(body).unwrap())
}

/// [`request`] for any answer, binary ones included.
pub(crate) async fn request_bytes(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(response[..split].to_vec()).unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, response[split + 4..].to_vec())
}

pub(crate) async fn check_validator_api(addr: SocketAddr, dv_validators: std::ops::Range<u64>) {
    let client = ApiClient::new(&format!("http://{addr}")).unwrap();
    let genesis = client.genesis().await.unwrap();
    assert_ne!(
        genesis.genesis_validators_root,
        alloy_primitives::B256::ZERO
    );
    let spec = client.spec().await.unwrap();
    assert_eq!(spec.slots_per_epoch, 8);
    assert_eq!(spec.chain_id, 7331);

    // Every GET path of the OpenAPI document answers (not 404); every POST path takes an
    // empty list.
    let (code, doc) = request(addr, "GET", "/eth/v1/openapi.json", "").await;
    assert_eq!(code, 200);
    let doc: Value = serde_json::from_str(&doc).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 13, "{}", paths.len());
    let (_, status) = request(addr, "GET", "/api/status", "").await;
    let status: Value = serde_json::from_str(&status).unwrap();
    let epoch = status["chain"]["slot"].as_u64().unwrap() / 8;
    for (path, ops) in paths {
        if path == "/eth/v1/events" {
            continue;
        }
        let path = &path.replace("{epoch}", &epoch.to_string());
        if ops.get("get").is_some() {
            let (code, body) = request(addr, "GET", path, "").await;
            assert!(code == 200 || code == 206, "GET {path}: {code} {body}");
        }
        if ops.get("post").is_some() {
            let (code, body) = request(addr, "POST", path, "[]").await;
            assert_eq!(code, 200, "POST {path}: {body}");
        }
    }

    // Polling duties: every slot's proposer in the current epoch; each validator's committee
    // slot and position; the pubkeys agree; a future epoch, a bad epoch or index is a 400.
    assert!(
        epoch >= 1,
        "the devnet should be past epoch 0 by now: {status}"
    );
    let proposers = client.proposer_duties(epoch).await.unwrap();
    assert_eq!(proposers.data.len(), 8, "{proposers:?}");
    assert!(!proposers.execution_optimistic);
    for (i, d) in proposers.data.iter().enumerate() {
        assert_eq!(d.slot, epoch * 8 + i as u64, "{proposers:?}");
        assert!(d.validator_index < 8, "{proposers:?}");
    }
    let all: Vec<u64> = (0..8).collect();
    let attesters = client.attester_duties(epoch, &all).await.unwrap();
    assert_eq!(attesters.data.len(), 8);
    for d in &attesters.data {
        assert_eq!(d.slot, epoch * 8 + d.validator_index % 8, "{d:?}");
        assert_eq!(
            (d.committee_length, d.validator_committee_index),
            (1, 0),
            "{d:?}"
        );
        if let Some(p) = proposers
            .data
            .iter()
            .find(|p| p.validator_index == d.validator_index)
        {
            assert_eq!(p.pubkey, d.pubkey);
        }
    }
    for (method, path, body) in [
        (
            "GET",
            format!("/eth/v1/validator/duties/proposer/{}", epoch + 5),
            "",
        ),
        (
            "GET",
            "/eth/v1/validator/duties/proposer/soon".to_string(),
            "",
        ),
        (
            "POST",
            format!("/eth/v1/validator/duties/attester/{epoch}"),
            "[\"99\"]",
        ),
        (
            "POST",
            format!("/eth/v1/validator/duties/attester/{epoch}"),
            "{}",
        ),
        (
            "POST",
            format!("/eth/v1/validator/duties/attester/{}", epoch + 5),
            "[\"1\"]",
        ),
    ] {
        let (code, answer) = request(addr, method, &path, body).await;
        assert_eq!(code, 400, "{method} {path} {body}: {answer}");
        let answer: ErrorBody = serde_json::from_str(&answer).unwrap();
        assert!(!answer.message.is_empty());
    }

    // The duty stream carries the cluster's validators' duties, with data a signer can use.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<DutyEvent>(64);
    let follower = client.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        follower
            .follow_duties(tx, Duration::from_millis(200), async {
                let _ = stop_rx.await;
            })
            .await
    });
    let duty = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("no duty event in 20 s")
        .unwrap();
    let _ = stop_tx.send(());
    let _ = task.await;
    assert!(
        dv_validators.contains(&duty.validator_index),
        "duty of validator {} outside the cluster",
        duty.validator_index
    );
    assert!(duty.start_ms < duty.deadline_ms);
    assert!(!duty.data.is_empty());

    // Refusals: typed, Beacon-API bodies; nothing relayed.
    let bad_signature = SignedDuty {
        validator_index: duty.validator_index,
        slot: duty.slot,
        data: duty.data.clone(),
        signature: SignatureBytes::repeat_byte(0x11),
    };
    match client.submit(duty.kind, &[bad_signature]).await {
        Err(ApiError::Refused { code: 400, message }) => {
            assert!(message.contains("#0"), "{message}")
        }
        other => panic!("a forged signature was not refused: {other:?}"),
    }
    let garbage = SignedDuty {
        validator_index: duty.validator_index,
        slot: duty.slot,
        data: Bytes::from(vec![1, 2, 3]),
        signature: SignatureBytes::ZERO,
    };
    match client.submit(DutyKind::Attestation, &[garbage]).await {
        Err(ApiError::Refused { code: 400, message }) => {
            assert!(message.contains("not attestation data"), "{message}")
        }
        other => panic!("undecodable data was not refused: {other:?}"),
    }
    let (code, body) = request(
        addr,
        "POST",
        DutyKind::Declaration.submit_path(),
        "{not json",
    )
    .await;
    assert_eq!(code, 400, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], 400);
    let (code, _) = request(addr, "GET", "/eth/v1/events?topics=nonsense", "").await;
    assert_eq!(code, 400);
}
