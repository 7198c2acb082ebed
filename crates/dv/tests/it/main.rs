#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ballot;
mod dkg;
mod member;
mod runtime;
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

mod lock {
    use phalanx_dv::create::{CreateParams, create};
    use phalanx_dv::lock::{ClusterLock, LockError};

    fn params() -> CreateParams {
        CreateParams {
            name: "golden".into(),
            operators: 4,
            threshold: None,
            validators: 1,
            failover: 1,
            base_port: 9100,
            seed: Some(42),
            standard_kdf: false,
            allow_no_fault_tolerance: false,
        }
    }

    /// The lock encoding is frozen: a change here breaks every cluster's lock file.
    #[test]
    fn the_lock_hash_of_a_fixed_cluster_is_frozen() {
        let dir = tempfile::tempdir().unwrap();
        let lock = create(&params(), dir.path(), false).unwrap();
        assert_eq!(
            lock.lock_hash.to_string(),
            "0x13a693d5cdd8b2745573525dcbbd139bbe6ccdde7ca3d809428b550b2d50f1d9"
        );
    }

    #[test]
    fn an_edited_or_unsigned_lock_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let lock = create(&params(), dir.path(), false).unwrap();
        let json = lock.to_json();
        let edited = json.replacen("\"threshold\": 3", "\"threshold\": 2", 1);
        assert!(matches!(
            ClusterLock::from_json(&edited),
            Err(LockError::Validator { .. }) | Err(LockError::HashMismatch)
        ));
        let mut unsigned = lock.clone();
        unsigned.signatures[2] = unsigned.signatures[1];
        assert!(
            matches!(unsigned.verify(), Err(LockError::BadSignature { name, .. }) if name == "op-3")
        );
        assert!(ClusterLock::from_json(r#"{"version": 1}"#).is_err());
        let mut moved = lock;
        moved.body.operators[0].address = "/ip4/10.0.0.1/tcp/1".into();
        assert!(matches!(moved.verify(), Err(LockError::HashMismatch)));
    }
}
