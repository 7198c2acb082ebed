//! The simulated network: a virtual clock and an event queue with seeded delay, loss and
//! partitions.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// A partition: from `from_slot` (inclusive) to `to_slot` (exclusive), nodes below `cut` and
/// nodes at or above it cannot reach each other.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Partition {
    pub(crate) from_ms: u64,
    pub(crate) to_ms: u64,
    pub(crate) cut: usize,
}

/// Events in time order; ties broken by insertion order, so runs are deterministic.
pub(crate) struct Queue<E> {
    heap: BinaryHeap<Reverse<(u64, u64, usize)>>,
    events: Vec<Option<E>>,
    seq: u64,
}

impl<E> Queue<E> {
    pub(crate) fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
            events: Vec::new(),
            seq: 0,
        }
    }

    pub(crate) fn push(&mut self, at_ms: u64, event: E) {
        self.events.push(Some(event));
        self.heap
            .push(Reverse((at_ms, self.seq, self.events.len() - 1)));
        self.seq += 1;
    }

    /// When the next event is due.
    pub(crate) fn next_at(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    pub(crate) fn pop(&mut self) -> Option<(u64, E)> {
        let Reverse((at, _, i)) = self.heap.pop()?;
        self.events
            .get_mut(i)
            .and_then(Option::take)
            .map(|e| (at, e))
    }
}

/// Link behaviour.
pub(crate) struct Links {
    pub(crate) rng: ChaCha8Rng,
    pub(crate) base_ms: u64,
    pub(crate) jitter_ms: u64,
    pub(crate) loss: f64,
    pub(crate) partition: Option<Partition>,
}

impl Links {
    /// When a message sent at `now` from `from` reaches `to`, or `None` if it is lost.
    pub(crate) fn delivery(&mut self, now: u64, from: usize, to: usize) -> Option<u64> {
        if let Some(p) = self.partition
            && now >= p.from_ms
            && now < p.to_ms
            && (from < p.cut) != (to < p.cut)
        {
            return None;
        }
        if from != to && self.loss > 0.0 && self.rng.random_bool(self.loss.clamp(0.0, 1.0)) {
            return None;
        }
        let jitter = if self.jitter_ms == 0 {
            0
        } else {
            self.rng.random_range(0..=self.jitter_ms)
        };
        Some(now + if from == to { 0 } else { self.base_ms + jitter })
    }
}
