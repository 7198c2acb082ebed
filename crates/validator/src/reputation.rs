//! Producer reputation and the choice of a producer for each slot (seed 000).
//!
//! A validator keeps, for every producer it declared, what came of it: a block delivered (and
//! the fees it earned the validator), a void block, or a missed slot. It then picks, for each
//! slot it proposes:
//!
//! * among producers with at least `min_observations` declarations and a reliability
//!   (`delivered non-void / declared`) of at least `min_reliability_bps`, the one with the
//!   highest mean fee yield to the validator (ties: higher reliability, then lower index);
//! * if none qualifies, itself ([`Choice::SelfProduce`]): a validator with no good candidate
//!   builds its own block, which is also how a new producer starts a record.

use std::collections::BTreeMap;

use phalanx_types::ProducerIndex;

/// What came of one declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A valid, non-void block; the validator earned `validator_fees` wei from it.
    Delivered {
        /// The validator's share of the block's fees.
        validator_fees: u128,
    },
    /// The block was void (a shard conflict).
    Void,
    /// No block arrived for the slot.
    Missed,
}

/// One producer's record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// Declarations naming it.
    pub declared: u64,
    /// Valid, non-void blocks it delivered.
    pub delivered: u64,
    /// Void blocks.
    pub void: u64,
    /// Missed slots.
    pub missed: u64,
    /// Fees earned by the validator from its blocks.
    pub fees: u128,
}

impl Record {
    /// Share of declarations that became valid, non-void blocks, in basis points.
    pub fn reliability_bps(&self) -> u64 {
        self.delivered
            .saturating_mul(10_000)
            .checked_div(self.declared)
            .unwrap_or(0)
    }

    /// Mean fees per declaration (a missed or void slot earns nothing).
    pub fn fee_yield(&self) -> u128 {
        self.fees
            .checked_div(u128::from(self.declared))
            .unwrap_or(0)
    }
}

/// The thresholds a producer must meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Least declarations before a producer can qualify.
    pub min_observations: u64,
    /// Least reliability, basis points.
    pub min_reliability_bps: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            min_observations: 3,
            min_reliability_bps: 9_000,
        }
    }
}

/// Whom to declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// A producer with a good record.
    Producer(ProducerIndex),
    /// No candidate qualifies: the validator produces its own block.
    SelfProduce,
}

/// A validator's view of producers.
#[derive(Debug, Clone, Default)]
pub struct Reputation {
    policy: Policy,
    records: BTreeMap<ProducerIndex, Record>,
}

impl Reputation {
    /// An empty record book with `policy`.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            records: BTreeMap::new(),
        }
    }

    /// A book with `policy` holding `records` (a book kept across restarts).
    pub fn from_records(
        policy: Policy,
        records: impl IntoIterator<Item = (ProducerIndex, Record)>,
    ) -> Self {
        Self {
            policy,
            records: records.into_iter().collect(),
        }
    }

    /// Records what came of declaring `producer`.
    pub fn record(&mut self, producer: ProducerIndex, outcome: Outcome) {
        let r = self.records.entry(producer).or_default();
        r.declared += 1;
        match outcome {
            Outcome::Delivered { validator_fees } => {
                r.delivered += 1;
                r.fees = r.fees.saturating_add(validator_fees);
            }
            Outcome::Void => r.void += 1,
            Outcome::Missed => r.missed += 1,
        }
    }

    /// Every record, by producer.
    pub fn records(&self) -> impl Iterator<Item = (ProducerIndex, Record)> + '_ {
        self.records.iter().map(|(p, r)| (*p, *r))
    }

    /// A producer's record.
    pub fn get(&self, producer: ProducerIndex) -> Record {
        self.records.get(&producer).copied().unwrap_or_default()
    }

    /// The producer to declare among `candidates` (e.g. those not slashed).
    pub fn choose(&self, candidates: &[ProducerIndex]) -> Choice {
        candidates
            .iter()
            .map(|p| (*p, self.get(*p)))
            .filter(|(_, r)| {
                r.declared >= self.policy.min_observations
                    && r.reliability_bps() >= self.policy.min_reliability_bps
            })
            .max_by(|(pa, a), (pb, b)| {
                (a.fee_yield(), a.reliability_bps())
                    .cmp(&(b.fee_yield(), b.reliability_bps()))
                    .then_with(|| pb.cmp(pa))
            })
            .map_or(Choice::SelfProduce, |(p, _)| Choice::Producer(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P0: ProducerIndex = ProducerIndex(0);
    const P1: ProducerIndex = ProducerIndex(1);
    const P2: ProducerIndex = ProducerIndex(2);

    #[test]
    fn no_record_means_self_production() {
        let rep = Reputation::new(Policy::default());
        assert_eq!(rep.choose(&[P0, P1]), Choice::SelfProduce);
    }

    #[test]
    fn the_best_yield_among_reliable_producers_wins() {
        let mut rep = Reputation::new(Policy::default());
        for _ in 0..10 {
            rep.record(
                P0,
                Outcome::Delivered {
                    validator_fees: 100,
                },
            );
            rep.record(
                P1,
                Outcome::Delivered {
                    validator_fees: 300,
                },
            );
            rep.record(
                P2,
                Outcome::Delivered {
                    validator_fees: 900,
                },
            );
        }
        // P2 pays most but voids blocks: unreliable, so it does not qualify.
        for _ in 0..5 {
            rep.record(P2, Outcome::Void);
        }
        assert_eq!(rep.choose(&[P0, P1, P2]), Choice::Producer(P1));
        // A slashed P1 is not a candidate.
        assert_eq!(rep.choose(&[P0, P2]), Choice::Producer(P0));
        // Missed slots erode reliability too.
        for _ in 0..3 {
            rep.record(P0, Outcome::Missed);
        }
        assert_eq!(rep.get(P0).reliability_bps(), 7_692);
        assert_eq!(rep.choose(&[P0, P2]), Choice::SelfProduce);
    }

    #[test]
    fn ties_go_to_the_lower_index() {
        let mut rep = Reputation::new(Policy {
            min_observations: 1,
            min_reliability_bps: 0,
        });
        rep.record(P1, Outcome::Delivered { validator_fees: 5 });
        rep.record(P0, Outcome::Delivered { validator_fees: 5 });
        assert_eq!(rep.choose(&[P1, P0]), Choice::Producer(P0));
    }
}
