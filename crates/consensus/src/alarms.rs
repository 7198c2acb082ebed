//! Eclipse and Sybil alarms (seed 000): a node that sees too few blocks, or too little of the
//! stake attesting, may be cut off from the real network or surrounded by fake peers.
//!
//! * **Block rate**: over the last `window_slots` slots, the share of slots with a block must
//!   stay at or above `min_block_rate` (checked once the window is full).
//! * **Participation**: in each epoch, the stake whose attestations arrived must be at least
//!   `min_participation` of the total stake.
//!
//! A breached threshold is logged (`tracing` warning) and counted in the Prometheus counter
//! `phalanx_consensus_alarms_total{kind="block_rate"|"participation"}`.

use std::collections::VecDeque;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlarmConfig {
    /// Slots in the block-rate window.
    pub window_slots: usize,
    /// Least share of slots with a block.
    pub min_block_rate: f64,
    /// Least share of stake attesting per epoch.
    pub min_participation: f64,
}

impl Default for AlarmConfig {
    fn default() -> Self {
        Self {
            window_slots: 32,
            min_block_rate: 0.5,
            min_participation: 0.6,
        }
    }
}

/// A breached threshold.
#[derive(Debug, Clone, PartialEq)]
pub enum Alarm {
    /// Too few blocks.
    LowBlockRate {
        /// Observed share.
        rate: f64,
        /// Threshold.
        threshold: f64,
    },
    /// Too little stake attesting.
    LowParticipation {
        /// The epoch.
        epoch: u64,
        /// Observed share.
        participation: f64,
        /// Threshold.
        threshold: f64,
    },
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}

/// The alarm state of one node.
#[derive(Debug)]
pub struct Alarms {
    config: AlarmConfig,
    slots: VecDeque<bool>,
    counter: Family<Kind, Counter>,
}

impl Alarms {
    /// Alarms with `config`; the counter is registered in `registry`.
    pub fn new(config: AlarmConfig, registry: &mut Registry) -> Self {
        let counter = Family::<Kind, Counter>::default();
        registry.register(
            "phalanx_consensus_alarms",
            "Eclipse/Sybil alarms raised, by kind",
            counter.clone(),
        );
        Self {
            config,
            slots: VecDeque::new(),
            counter,
        }
    }

    fn raise(&self, alarm: Alarm) -> Alarm {
        let kind = match alarm {
            Alarm::LowBlockRate { .. } => "block_rate",
            Alarm::LowParticipation { .. } => "participation",
        };
        self.counter.get_or_create(&Kind { kind }).inc();
        tracing::warn!(?alarm, "possible eclipse or Sybil attack");
        alarm
    }

    /// Records whether `slot` had a block; returns the alarm if the rate is too low.
    pub fn on_slot(&mut self, had_block: bool) -> Option<Alarm> {
        self.slots.push_back(had_block);
        while self.slots.len() > self.config.window_slots.max(1) {
            self.slots.pop_front();
        }
        if self.slots.len() < self.config.window_slots.max(1) {
            return None;
        }
        let rate = self.slots.iter().filter(|b| **b).count() as f64 / self.slots.len() as f64;
        (rate < self.config.min_block_rate).then(|| {
            self.raise(Alarm::LowBlockRate {
                rate,
                threshold: self.config.min_block_rate,
            })
        })
    }

    /// Records an epoch's attesting stake; returns the alarm if participation is too low.
    pub fn on_epoch(
        &mut self,
        epoch: u64,
        attesting_stake: u64,
        total_stake: u64,
    ) -> Option<Alarm> {
        let participation = if total_stake == 0 {
            0.0
        } else {
            attesting_stake as f64 / total_stake as f64
        };
        (participation < self.config.min_participation).then(|| {
            self.raise(Alarm::LowParticipation {
                epoch,
                participation,
                threshold: self.config.min_participation,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap_or_default();
        out
    }

    #[test]
    fn a_thin_block_rate_raises_an_alarm_and_counts_it() {
        let mut registry = Registry::default();
        let mut alarms = Alarms::new(
            AlarmConfig {
                window_slots: 4,
                min_block_rate: 0.5,
                min_participation: 0.6,
            },
            &mut registry,
        );
        assert_eq!(alarms.on_slot(false), None, "the window is not full yet");
        assert_eq!(alarms.on_slot(true), None);
        assert_eq!(alarms.on_slot(false), None);
        assert_eq!(alarms.on_slot(true), None, "2 of 4 meets 0.5");
        assert_eq!(
            alarms.on_slot(false),
            None,
            "the window slides: still 2 of 4"
        );
        assert_eq!(
            alarms.on_slot(false),
            Some(Alarm::LowBlockRate {
                rate: 0.25,
                threshold: 0.5
            })
        );
        assert!(
            metrics(&registry).contains("phalanx_consensus_alarms_total{kind=\"block_rate\"} 1")
        );
    }

    #[test]
    fn low_participation_raises_an_alarm() {
        let mut registry = Registry::default();
        let mut alarms = Alarms::new(AlarmConfig::default(), &mut registry);
        assert_eq!(alarms.on_epoch(3, 70, 100), None);
        assert!(matches!(
            alarms.on_epoch(4, 50, 100),
            Some(Alarm::LowParticipation { epoch: 4, .. })
        ));
        assert!(metrics(&registry).contains("kind=\"participation\"} 1"));
    }
}
