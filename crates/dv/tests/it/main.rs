#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ballot;
mod dkg;
mod member;
mod threshold;

use phalanx_dv::identity::OperatorKey;
use phalanx_dv::lock::{Operator, Role};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub(crate) fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

pub(crate) fn operators(n: usize, seed: u64) -> (Vec<OperatorKey>, Vec<Operator>) {
    let mut r = rng(seed);
    let keys: Vec<OperatorKey> = (0..n).map(|_| OperatorKey::generate(&mut r)).collect();
    let ops = keys
        .iter()
        .enumerate()
        .map(|(i, k)| Operator {
            name: format!("op-{}", i + 1),
            identity: k.id(),
            address: format!("/ip4/127.0.0.1/tcp/{}", 9100 + i),
            role: Role::Regular,
        })
        .collect();
    (keys, ops)
}
