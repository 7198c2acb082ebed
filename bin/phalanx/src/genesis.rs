//! `phalanx genesis`: write a deterministic devnet genesis and its keys.

use std::path::PathBuf;

use anyhow::Context;
use phalanx_spec::ChainSpec;
use phalanx_spec::devnet::{self, DevnetParams, KdfStrength};

/// Flags of `phalanx genesis`.
#[derive(Debug, clap::Args)]
pub(crate) struct GenesisArgs {
    /// Seed: the same seed and flags give byte-identical files.
    #[arg(long, default_value = "phalanx")]
    seed: String,
    /// Output directory.
    #[arg(long, default_value = "genesis")]
    out: PathBuf,
    /// Chain spec preset (`devnet`, `minimal`) or TOML file.
    #[arg(long, default_value = "devnet")]
    spec: String,
    /// Number of validators.
    #[arg(long, default_value_t = 8)]
    validators: u32,
    /// Number of block producers.
    #[arg(long, default_value_t = 2)]
    producers: u32,
    /// Number of bonded executors.
    #[arg(long, default_value_t = 3)]
    executors: u32,
    /// Number of funded development accounts.
    #[arg(long, default_value_t = 20)]
    accounts: u32,
    /// Balance of each development account, in whole units.
    #[arg(long, default_value_t = 1_000_000)]
    balance: u64,
    /// Unix time of slot 0 (0: set by whoever starts the chain).
    #[arg(long, default_value_t = 0)]
    genesis_time: u64,
    /// Use the EIP-2335 standard scrypt KDF for keystores instead of the fast devnet one.
    #[arg(long)]
    standard_kdf: bool,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

pub(crate) fn run(args: GenesisArgs) -> anyhow::Result<()> {
    let spec = ChainSpec::load(&args.spec)?;
    let mut params = DevnetParams::new(args.seed, spec);
    params.validators = args.validators;
    params.producers = args.producers;
    params.executors = args.executors;
    params.accounts = args.accounts;
    params.account_balance = args.balance;
    params.genesis_time = args.genesis_time;
    params.kdf = if args.standard_kdf {
        KdfStrength::Standard
    } else {
        KdfStrength::Light
    };
    anyhow::ensure!(params.validators > 0, "--validators must be at least 1");

    let written = devnet::write(&args.out, &params, args.force)
        .with_context(|| format!("writing genesis into {}", args.out.display()))?;
    let (genesis, keys) = (&written.genesis, &written.keys);
    println!("genesis: {}", written.genesis_path.display());
    println!(
        "chain {} (chain id {}), {} validators, {} producers, {} executors",
        genesis.spec.name,
        genesis.spec.chain_id,
        genesis.validators.len(),
        genesis.producers.len(),
        genesis.executors.len()
    );
    println!("genesis validators root: {}", genesis.validators_root());
    println!(
        "keystores: {}/keys (password in keys/password.txt)",
        args.out.display()
    );
    println!();
    println!("Development accounts (public keys: never hold value with them)");
    for account in keys.accounts.iter().filter(|a| a.label.starts_with("dev/")) {
        println!(
            "  {}  {}  {}",
            account.label, account.address, account.private_key
        );
    }
    Ok(())
}
