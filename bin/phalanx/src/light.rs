//! `phalanx light`: flags, then `phalanx_light::run::run` until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use phalanx_light::run::RunConfig;
use phalanx_light::wire::Bootstrap;

/// Flags of `phalanx light`.
#[derive(Debug, clap::Args)]
pub(crate) struct LightArgs {
    /// An untrusted full node to follow (its JSON-RPC URL; the light protocol is served
    /// beside it). Repeat for several: headers, claims and attestations are taken from all of
    /// them, proofs and reads from the first whose answer verifies.
    #[arg(long = "node", default_value = "http://127.0.0.1:8545")]
    nodes: Vec<String>,
    /// The chain's genesis file (executors' bonds and keys, signing domain, chain id).
    #[arg(long, default_value = "devnet-data/chain/genesis.json")]
    genesis: PathBuf,
    /// The trusted checkpoint, `HEIGHT:BLOCK_HASH:STATE_ROOT` (the devnet prints its own).
    /// Without it the node's suggestion is taken, with a warning.
    #[arg(long)]
    checkpoint: Option<String>,
    /// Where to serve verified Ethereum JSON-RPC.
    #[arg(long, default_value = "127.0.0.1:8546")]
    listen: SocketAddr,
    /// Fraction of the claiming bond whose disagreement forces a proof of execution.
    #[arg(long, default_value_t = 0.10)]
    disagreement: f64,
    /// Milliseconds to wait for claims after a header before fetching a proof.
    #[arg(long = "claim-timeout-ms", default_value_t = 6_000)]
    claim_timeout_ms: u64,
    /// Milliseconds between polls of the node.
    #[arg(long = "poll-ms", default_value_t = 500)]
    poll_ms: u64,
    /// Also take claims from the chain's gossip network through this peer,
    /// `HEXKEY@MULTIADDR` (repeat; `phalanx devnet --p2p-listen` prints its own).
    #[arg(long = "p2p-peer", value_name = "HEXKEY@MULTIADDR")]
    p2p_peer: Vec<phalanx_net::p2p::Peer>,
    /// Where to listen on the gossip network (with --p2p-peer).
    #[arg(long = "p2p-listen", default_value = "/ip4/127.0.0.1/tcp/0")]
    p2p_listen: String,
}

fn checkpoint(text: &str) -> anyhow::Result<Bootstrap> {
    let parts: Vec<&str> = text.split(':').collect();
    let [height, block, root] = parts.as_slice() else {
        anyhow::bail!("--checkpoint {text:?}: expected HEIGHT:BLOCK_HASH:STATE_ROOT");
    };
    Ok(Bootstrap {
        height: height
            .parse()
            .with_context(|| format!("--checkpoint height {height:?}"))?,
        block_hash: block
            .parse()
            .with_context(|| format!("--checkpoint block hash {block:?}"))?,
        state_root: root
            .parse()
            .with_context(|| format!("--checkpoint state root {root:?}"))?,
    })
}

pub(crate) fn run(args: &LightArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.disagreement) {
        anyhow::bail!("--disagreement must be between 0 and 1");
    }
    let text = std::fs::read_to_string(&args.genesis)
        .with_context(|| format!("cannot read the genesis file {}", args.genesis.display()))?;
    let genesis: phalanx_spec::Genesis = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a genesis file", args.genesis.display()))?;
    let config = RunConfig {
        nodes: args.nodes.clone(),
        listen: args.listen,
        client: phalanx_light::client::Config {
            disagreement: args.disagreement,
            claim_timeout_ms: args.claim_timeout_ms,
            ..Default::default()
        },
        checkpoint: args.checkpoint.as_deref().map(checkpoint).transpose()?,
        genesis,
        poll_ms: args.poll_ms,
        p2p: (!args.p2p_peer.is_empty()).then(|| phalanx_net::p2p::Join {
            listen: args.p2p_listen.clone(),
            peers: args.p2p_peer.clone(),
        }),
    };
    let rt = crate::runtime()?;
    rt.block_on(async move {
        let shutdown = crate::ctrl_c_shutdown();
        phalanx_light::run::run(config, shutdown).await?;
        eprintln!("phalanx light: stopped");
        Ok(())
    })
}
