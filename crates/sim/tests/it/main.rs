//! Integration tests of `phalanx-sim`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may panic

mod chain;
mod chain_follow;
mod cluster;
mod evidence;
mod executor_ops;
mod light;
mod live;

/// A live chain's shard source for tests: empty shards.
mod live_util {
    use phalanx_sim::chain::ShardSource;
    use phalanx_types::Shard;
    use ssz_types::VariableList;

    /// Empty shards, as many as asked.
    pub(crate) struct Empty;

    impl ShardSource for Empty {
        fn shards(&mut self, _slot: u64, count: usize) -> Vec<Shard> {
            (0..count)
                .map(|_| Shard {
                    transactions: VariableList::empty(),
                })
                .collect()
        }
    }
}
