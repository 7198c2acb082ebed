//! `phalanx executor`: flags, the keystore, then `phalanx_executor::run` until Ctrl-C; and
//! `phalanx executor deposit` / `phalanx executor exit`, which sign an executor operation and
//! post it to a node for its producers to carry.

use std::path::PathBuf;

use anyhow::Context as _;
use phalanx_executor::ExecutorConfig;

/// Flags of `phalanx executor`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct ExecutorArgs {
    /// Sign and post an executor operation instead of running an executor.
    #[command(subcommand)]
    op: Option<ExecutorOp>,
    /// The full node to follow and post claims to.
    #[arg(long, default_value = "http://127.0.0.1:8545")]
    node: String,
    /// The chain's genesis file.
    #[arg(long, default_value = "devnet-data/chain/genesis.json")]
    genesis: PathBuf,
    /// The executor's EIP-2335 keystore (`phalanx devnet --external-executors` writes them to
    /// DATA_DIR/executors/).
    #[arg(long)]
    keystore: Option<PathBuf>,
    /// File holding the keystore's password.
    #[arg(long = "password-file")]
    password_file: Option<PathBuf>,
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

/// Executor operations.
#[derive(Debug, clap::Subcommand)]
enum ExecutorOp {
    /// Bond a new executor out of a producer's bond: signed by the executor's key and by the
    /// producer's, posted to the node, carried in a block; the executor can claim once it is
    /// on chain (`phalanx executor --keystore` waits for it).
    Deposit(DepositArgs),
    /// Ask to withdraw: the executor's claims weigh nothing from the including block on; its
    /// bond stays slashable for the withdrawal delay, then is released.
    Exit(ExitArgs),
}

/// The node, the genesis and one keystore.
#[derive(Debug, clap::Args)]
struct Signer {
    /// The node to post to.
    #[arg(long, default_value = "http://127.0.0.1:8545")]
    node: String,
    /// The chain's genesis file.
    #[arg(long, default_value = "devnet-data/chain/genesis.json")]
    genesis: PathBuf,
    /// The executor's EIP-2335 keystore.
    #[arg(long)]
    keystore: PathBuf,
    /// File holding its password.
    #[arg(long = "password-file")]
    password_file: PathBuf,
}

/// Flags of `phalanx executor deposit`.
#[derive(Debug, clap::Args)]
struct DepositArgs {
    #[command(flatten)]
    signer: Signer,
    /// The funding producer's index.
    #[arg(long)]
    producer: u64,
    /// The funding producer's EIP-2335 keystore.
    #[arg(long = "producer-keystore")]
    producer_keystore: PathBuf,
    /// File holding its password.
    #[arg(long = "producer-password-file")]
    producer_password_file: PathBuf,
    /// The bond in Gwei (default: the spec's minimum executor bond).
    #[arg(long = "amount-gwei")]
    amount_gwei: Option<u64>,
    /// Where the executor's bond is due once released.
    #[arg(long = "reward-address")]
    reward_address: alloy_primitives::Address,
}

/// Flags of `phalanx executor exit`.
#[derive(Debug, clap::Args)]
struct ExitArgs {
    #[command(flatten)]
    signer: Signer,
    /// Not valid in a block of an earlier epoch.
    #[arg(long, default_value_t = 0)]
    epoch: u64,
}

fn read_genesis(path: &std::path::Path) -> anyhow::Result<phalanx_spec::Genesis> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the genesis file {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a genesis file", path.display()))
}

fn read_key(
    keystore: &std::path::Path,
    password_file: &std::path::Path,
) -> anyhow::Result<phalanx_crypto::SecretKey> {
    let text = std::fs::read_to_string(keystore)
        .with_context(|| format!("cannot read the keystore {}", keystore.display()))?;
    let keystore_json = phalanx_crypto::keystore::Keystore::from_json_str(&text)
        .with_context(|| format!("{} is not an EIP-2335 keystore", keystore.display()))?;
    let password = std::fs::read_to_string(password_file)
        .with_context(|| format!("cannot read the password file {}", password_file.display()))?;
    keystore_json
        .decrypt(password.trim_end_matches(['\n', '\r']))
        .with_context(|| format!("cannot decrypt {}", keystore.display()))
}

/// Posts `ops` to `node`; fails with the node's reasons when it accepted none.
fn post(node: &str, ops: phalanx_light::wire::ExecutorOpsSubmission) -> anyhow::Result<()> {
    let rt = crate::runtime()?;
    rt.block_on(async move {
        let upstream =
            phalanx_light::upstream::Upstream::new(node, std::time::Duration::from_secs(10))?;
        let answer = upstream.submit_executor_ops(&ops).await?;
        if answer.accepted == 0 {
            anyhow::bail!("the node refused it: {}", answer.refused.join("; "));
        }
        println!("accepted by {node}; a producer carries it in a coming block");
        Ok(())
    })
}

fn deposit(args: &DepositArgs) -> anyhow::Result<()> {
    let genesis = read_genesis(&args.signer.genesis)?;
    let key = read_key(&args.signer.keystore, &args.signer.password_file)?;
    let producer = read_key(&args.producer_keystore, &args.producer_password_file)?;
    let message = phalanx_types::ExecutorDeposit {
        pubkey: key.public_key().to_bytes(),
        reward_address: args.reward_address,
        amount: args.amount_gwei.unwrap_or(genesis.spec.min_executor_bond),
        producer: phalanx_types::ProducerIndex(args.producer),
    };
    let signing = genesis.signing_context();
    let signed = phalanx_types::SignedExecutorDeposit {
        executor_signature: signing.sign(&message, &key),
        producer_signature: signing.sign(&message, &producer),
        message,
    };
    post(
        &args.signer.node,
        phalanx_light::wire::ExecutorOpsSubmission {
            deposits: vec![phalanx_types::Encode::as_ssz_bytes(&signed).into()],
            exits: Vec::new(),
        },
    )
}

fn exit(args: &ExitArgs) -> anyhow::Result<()> {
    let genesis = read_genesis(&args.signer.genesis)?;
    let key = read_key(&args.signer.keystore, &args.signer.password_file)?;
    let node = args.signer.node.clone();
    let wanted = key.public_key().to_bytes();
    let rt = crate::runtime()?;
    let index = rt.block_on(async {
        let upstream =
            phalanx_light::upstream::Upstream::new(&node, std::time::Duration::from_secs(10))?;
        let answer = upstream.executors().await?;
        answer
            .executors
            .iter()
            .find(|e| e.pubkey.as_ref() == wanted.as_slice())
            .map(|e| e.index)
            .ok_or_else(|| anyhow::anyhow!("the node's registry has no executor with this key"))
    })?;
    drop(rt);
    let message = phalanx_types::ExecutorExit {
        executor: phalanx_types::ExecutorIndex(index),
        epoch: phalanx_types::Epoch(args.epoch),
    };
    let signed = phalanx_types::SignedExecutorExit {
        signature: genesis.signing_context().sign(&message, &key),
        message,
    };
    post(
        &node,
        phalanx_light::wire::ExecutorOpsSubmission {
            deposits: Vec::new(),
            exits: vec![phalanx_types::Encode::as_ssz_bytes(&signed).into()],
        },
    )
}

pub(crate) fn run(args: &ExecutorArgs) -> anyhow::Result<()> {
    match &args.op {
        Some(ExecutorOp::Deposit(d)) => return deposit(d),
        Some(ExecutorOp::Exit(x)) => return exit(x),
        None => {}
    }
    let (Some(keystore), Some(password_file)) = (&args.keystore, &args.password_file) else {
        anyhow::bail!("--keystore and --password-file are required to run an executor");
    };
    let genesis = read_genesis(&args.genesis)?;
    let key = read_key(keystore, password_file)?;
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
