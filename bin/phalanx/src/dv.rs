//! `phalanx dv …`: distributed validator commands.

use std::path::PathBuf;

use phalanx_dv::create::{self, CreateParams};

/// Distributed validator commands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum DvCommand {
    /// Create a test cluster with dealt keys (devnets and tests only: one process saw every key).
    Create(CreateArgs),
    /// Commands that have not landed yet (dkg, run, reshare).
    #[command(external_subcommand)]
    Other(Vec<String>),
}

/// Flags of `phalanx dv create`.
#[derive(Debug, clap::Args)]
pub(crate) struct CreateArgs {
    /// Cluster name.
    #[arg(long, default_value = "phalanx-dv")]
    name: String,
    /// Operators n.
    #[arg(long, default_value_t = 4)]
    operators: usize,
    /// Threshold m (default ⌈2n/3⌉).
    #[arg(long)]
    threshold: Option<usize>,
    /// Distributed validators.
    #[arg(long, default_value_t = 1)]
    validators: usize,
    /// The last F operators are failover members.
    #[arg(long, default_value_t = 0)]
    failover: usize,
    /// Operator i listens on 127.0.0.1:BASE_PORT+i.
    #[arg(long, default_value_t = 9100)]
    base_port: u16,
    /// Deterministic keys from this seed (tests and devnets only).
    #[arg(long)]
    seed: Option<u64>,
    /// EIP-2335 standard scrypt keystores (slow to open) instead of light PBKDF2 ones.
    #[arg(long)]
    standard_kdf: bool,
    /// Allow m = n, which leaves no fault tolerance.
    #[arg(long)]
    unsafe_threshold: bool,
    /// Output folder.
    #[arg(long, default_value = "dv-cluster")]
    out: PathBuf,
    /// Overwrite an existing cluster in the folder.
    #[arg(long)]
    force: bool,
}

/// The issue a not-yet-landed `dv` command comes with.
pub(crate) fn pending(args: &[String]) -> Option<(&'static str, u32, &'static str)> {
    Some(match args.first().map(String::as_str) {
        Some("dkg") => (
            "dv dkg",
            5,
            "Distributed validator: the ceremony between processes",
        ),
        Some("run") => ("dv run", 5, "Distributed validator: a member process"),
        Some("reshare") => (
            "dv reshare",
            5,
            "Distributed validator: resharing between processes",
        ),
        _ => return None,
    })
}

pub(crate) fn create(args: &CreateArgs) -> anyhow::Result<()> {
    let lock = create::create(
        &CreateParams {
            name: args.name.clone(),
            operators: args.operators,
            threshold: args.threshold,
            validators: args.validators,
            failover: args.failover,
            base_port: args.base_port,
            seed: args.seed,
            standard_kdf: args.standard_kdf,
            allow_no_fault_tolerance: args.unsafe_threshold,
        },
        &args.out,
        args.force,
    )?;
    println!(
        "wrote {}: {}-of-{} cluster, {} validator(s), lock hash {}",
        args.out.join("cluster-lock.json").display(),
        lock.body.threshold,
        lock.body.operators.len(),
        lock.body.validators.len(),
        lock.lock_hash
    );
    for v in &lock.body.validators {
        println!("validator {}", v.public_key);
    }
    Ok(())
}
