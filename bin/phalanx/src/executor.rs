//! `phalanx executor`: flags, the keystore, then `phalanx_executor::run` until Ctrl-C.

use std::path::PathBuf;

use anyhow::Context as _;
use phalanx_executor::ExecutorConfig;

/// Flags of `phalanx executor`.
#[derive(Debug, clap::Args)]
pub(crate) struct ExecutorArgs {
    /// The full node to follow and post claims to.
    #[arg(long, default_value = "http://127.0.0.1:8545")]
    node: String,
    /// The chain's genesis file.
    #[arg(long, default_value = "devnet-data/chain/genesis.json")]
    genesis: PathBuf,
    /// The executor's EIP-2335 keystore (`phalanx devnet --external-executors` writes them to
    /// DATA_DIR/executors/).
    #[arg(long)]
    keystore: PathBuf,
    /// File holding the keystore's password.
    #[arg(long = "password-file")]
    password_file: PathBuf,
    /// Where the executor keeps its state.
    #[arg(long = "data-dir", default_value = "executor-data")]
    data_dir: PathBuf,
    /// Milliseconds between polls of the node.
    #[arg(long = "poll-ms", default_value_t = 250)]
    poll_ms: u64,
    /// Send claims by gossip through this peer, `HEXKEY@MULTIADDR` (repeat; `phalanx devnet
    /// --p2p-listen` prints its own) instead of posting them to --node.
    #[arg(long = "p2p-peer", value_name = "HEXKEY@MULTIADDR")]
    p2p_peer: Vec<phalanx_net::p2p::Peer>,
    /// Where to listen on the gossip network (with --p2p-peer).
    #[arg(long = "p2p-listen", default_value = "/ip4/127.0.0.1/tcp/0")]
    p2p_listen: String,
}

pub(crate) fn run(args: &ExecutorArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.genesis)
        .with_context(|| format!("cannot read the genesis file {}", args.genesis.display()))?;
    let genesis: phalanx_spec::Genesis = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a genesis file", args.genesis.display()))?;
    let keystore = std::fs::read_to_string(&args.keystore)
        .with_context(|| format!("cannot read the keystore {}", args.keystore.display()))?;
    let keystore = phalanx_crypto::keystore::Keystore::from_json_str(&keystore)
        .with_context(|| format!("{} is not an EIP-2335 keystore", args.keystore.display()))?;
    let password = std::fs::read_to_string(&args.password_file).with_context(|| {
        format!(
            "cannot read the password file {}",
            args.password_file.display()
        )
    })?;
    let key = keystore
        .decrypt(password.trim_end_matches(['\n', '\r']))
        .with_context(|| format!("cannot decrypt {}", args.keystore.display()))?;
    let config = ExecutorConfig {
        node: args.node.clone(),
        genesis,
        key,
        data_dir: args.data_dir.clone(),
        poll_ms: args.poll_ms,
        p2p: (!args.p2p_peer.is_empty()).then(|| phalanx_net::p2p::Join {
            listen: args.p2p_listen.clone(),
            peers: args.p2p_peer.clone(),
        }),
    };
    let rt = crate::runtime()?;
    rt.block_on(async move {
        let shutdown = crate::ctrl_c_shutdown();
        phalanx_executor::run(config, shutdown).await?;
        eprintln!("phalanx executor: stopped");
        Ok(())
    })
}
