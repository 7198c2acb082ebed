//! The devnet's integration tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api;
mod devnet;
mod gossip;
mod light;
mod nodes;
mod onchain;
mod store;

/// A contract creation with `init` code at `nonce` (1 gwei tip, 2 gwei cap).
pub(crate) fn create_tx(
    nonce: u64,
    gas_limit: u64,
    init: alloy_primitives::Bytes,
) -> alloy_consensus::TxEip1559 {
    alloy_consensus::TxEip1559 {
        chain_id: 7331,
        nonce,
        gas_limit,
        max_fee_per_gas: 2_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: alloy_primitives::TxKind::Create,
        value: alloy_primitives::U256::ZERO,
        access_list: Default::default(),
        input: init,
    }
}

/// `tx` signed by `signer`, as `eth_sendRawTransaction` takes it.
pub(crate) fn raw_tx(
    signer: &alloy_signer_local::PrivateKeySigner,
    tx: alloy_consensus::TxEip1559,
) -> alloy_primitives::Bytes {
    use alloy_consensus::SignableTransaction as _;
    use alloy_signer::SignerSync as _;
    let sig = signer.sign_hash_sync(&tx.signature_hash()).unwrap();
    let envelope: alloy_consensus::TxEnvelope = tx.into_signed(sig).into();
    phalanx_types::transaction::encode(&envelope).into()
}

/// A node that forwards everything to the devnet at `devnet` but passes the light protocol's
/// updates through `edit`.
pub(crate) async fn updates_proxy(
    devnet: std::net::SocketAddr,
    edit: fn(&mut phalanx_light::wire::Updates),
) -> std::net::SocketAddr {
    type Ctx = (std::net::SocketAddr, fn(&mut phalanx_light::wire::Updates));
    async fn forward(
        axum::extract::State((devnet, edit)): axum::extract::State<Ctx>,
        method: axum::http::Method,
        uri: axum::http::Uri,
        body: String,
    ) -> (axum::http::StatusCode, Vec<u8>) {
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        let (code, answer) = api::request_bytes(devnet, method.as_str(), &path, &body).await;
        let code = axum::http::StatusCode::from_u16(code).unwrap();
        if uri.path() == phalanx_light::wire::UPDATES_PATH {
            let mut updates: phalanx_light::wire::Updates =
                serde_json::from_slice(&answer).unwrap();
            edit(&mut updates);
            return (code, serde_json::to_vec(&updates).unwrap());
        }
        (code, answer)
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .fallback(forward)
        .with_state((devnet, edit));
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A light client (`phalanx_light::run`, as `phalanx light` runs it) trusting the devnet's
/// genesis checkpoint, following `nodes` (and the gossip network when `p2p` says so).
pub(crate) async fn light_client(
    devnet: &phalanx_devnet::Devnet,
    nodes: &[std::net::SocketAddr],
    p2p: Option<phalanx_net::p2p::Join>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> phalanx_light::run::Running {
    phalanx_light::run::start(
        phalanx_light::run::RunConfig {
            nodes: nodes.iter().map(|n| format!("http://{n}")).collect(),
            listen: "127.0.0.1:0".parse().unwrap(),
            genesis: devnet.genesis().clone(),
            checkpoint: devnet.light_checkpoint(),
            client: phalanx_light::client::Config::default(),
            poll_ms: 100,
            p2p,
        },
        shutdown,
    )
    .await
    .unwrap()
}
