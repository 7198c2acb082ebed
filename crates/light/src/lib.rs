//! The light client (seed 003; DESIGN.md "Executors and the light client"): it trusts a
//! checkpoint, follows headers, weighs bonded executors' claims about state roots, and
//! re-executes a block from a proof of execution whenever the claims disagree or are withheld.
//!
//! - [`client`]: the rules, top to bottom, as a sans-IO state machine.
//! - [`headers`]: the headers it follows, checked against their signed consensus headers.
//! - [`finality`]: Casper FFG over aggregated attestations, so it takes a header as final
//!   only when the validators' signatures say so; [`follow`]: both, over an untrusted node.
//! - [`reads`]: verified reads — account, storage and code checked against the believed root.
//! - [`wire`]: what it asks an untrusted full node over HTTP; [`upstream`]: asking it.
//! - [`rpc`]: its Ethereum JSON-RPC endpoint, answering only what it verified.
//! - [`run`]: `phalanx light`, the process: `run(config, shutdown)`.

pub mod client;
pub mod finality;
pub mod follow;
pub mod headers;
pub mod reads;
pub mod rpc;
pub mod run;
pub mod upstream;
pub mod wire;
