//! Peer scoring: a peer that sends what does not decode or does not check out loses score; at
//! or below [`BAN_SCORE`] it is banned for [`BAN_DURATION`] — its messages are dropped, its
//! connections closed and it is not dialled — and then starts again from zero. Scores recover
//! [`RECOVERY_PER_SECOND`] toward zero, so an honest peer that sends a rare bad message (a
//! version skew, a race with a restart) is never banned, while one that keeps sending garbage
//! is banned after a handful of messages.
//!
//! Roles decide what is an offence (they are the ones that decode and check) and tell their
//! [`crate::Network`] with [`crate::Network::report`]; both implementations keep a
//! [`PeerScores`] and enforce its bans.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::PeerKey;

/// Score at or below which a peer is banned.
pub const BAN_SCORE: f64 = -100.0;
/// How long a ban lasts.
pub const BAN_DURATION: Duration = Duration::from_secs(600);
/// Points a peer's negative score recovers each second.
pub const RECOVERY_PER_SECOND: f64 = 1.0;

/// What a peer did wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Offence {
    /// A message that does not decode.
    Undecodable,
    /// A message that decodes but fails a check (a signature, a root, a limit).
    Invalid,
    /// A message about something unknown or useless (e.g. a claim about a block not in the
    /// chain): cheap to send, so cheap to penalise.
    Useless,
}

impl Offence {
    /// Points it costs.
    pub fn penalty(self) -> f64 {
        match self {
            Offence::Undecodable | Offence::Invalid => 30.0,
            Offence::Useless => 5.0,
        }
    }
}

/// Scores and bans of the peers one node has heard from.
#[derive(Debug, Default)]
pub struct PeerScores {
    scores: HashMap<PeerKey, (f64, Instant)>,
    banned: HashMap<PeerKey, Instant>,
}

impl PeerScores {
    /// No scores yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// `peer`'s score at `now` (0 for a peer never reported).
    pub fn score(&self, peer: &PeerKey, now: Instant) -> f64 {
        self.scores.get(peer).map_or(0.0, |(score, at)| {
            let recovered = now.saturating_duration_since(*at).as_secs_f64() * RECOVERY_PER_SECOND;
            (score + recovered).min(0.0)
        })
    }

    /// Records `offence` by `peer`; `true` when this bans it.
    pub fn report(&mut self, peer: PeerKey, offence: Offence, now: Instant) -> bool {
        if self.is_banned(&peer, now) {
            return false;
        }
        let score = self.score(&peer, now) - offence.penalty();
        if score <= BAN_SCORE {
            self.scores.remove(&peer);
            self.banned.insert(peer, now + BAN_DURATION);
            return true;
        }
        self.scores.insert(peer, (score, now));
        false
    }

    /// Whether `peer` is banned at `now`.
    pub fn is_banned(&self, peer: &PeerKey, now: Instant) -> bool {
        self.banned.get(peer).is_some_and(|until| now < *until)
    }

    /// Lifts the bans that ended by `now`, returning those peers.
    pub fn lift_expired(&mut self, now: Instant) -> Vec<PeerKey> {
        let ended: Vec<PeerKey> = self
            .banned
            .iter()
            .filter(|(_, until)| now >= **until)
            .map(|(p, _)| *p)
            .collect();
        for p in &ended {
            self.banned.remove(p);
        }
        ended
    }
}
