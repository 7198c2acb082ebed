//! The duty-consensus seam: how the members of a cluster agree on the exact data to sign.
//!
//! An implementation is a sans-IO state machine over many *instances* (one per duty). It never
//! reads a clock or a socket: the caller feeds it proposals, messages and expired timers, and
//! drains [`Effect`]s — messages to broadcast, timers to set, decisions. The rules every
//! implementation must obey:
//!
//! - **Agreement**: no two correct members decide different values for one instance, whatever
//!   up to `f = ⌊(n − 1) / 3⌋` byzantine members and the network do.
//! - **Validity**: a decided value passed the `is_valid` predicate the engine was built with
//!   (so a byzantine leader cannot make the cluster sign data for another duty).
//! - **Termination**: once the network delivers messages in time, every correct member that
//!   proposed decides.
//! - **Authenticity**: every message is signed with the sender's identity key and checked
//!   before use; a message from a non-member or with a bad signature is dropped.
//! - **Determinism**: the same inputs in the same order give the same effects.

use alloy_primitives::B256;

/// Identifies one consensus instance: the hash of the duty it decides.
pub type InstanceId = B256;

/// First-round timeout of the duty consensus engines (ms).
pub const BASE_TIMEOUT_MS: u64 = 750;
/// Added per round (ms).
pub const STEP_TIMEOUT_MS: u64 = 250;

/// The predicate a decided value must satisfy for its instance.
pub type Validity = Box<dyn Fn(&InstanceId, &[u8]) -> bool + Send>;

/// A timer an engine asks its driver to set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timer {
    /// The instance.
    pub instance: InstanceId,
    /// The round whose timeout it is.
    pub round: u32,
}

/// What an engine asks of its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect<M> {
    /// Send `M` to every other member.
    Broadcast(M),
    /// Call [`DutyConsensus::on_timeout`] with `timer` at `at_ms`.
    SetTimer {
        /// The timer.
        timer: Timer,
        /// When it expires.
        at_ms: u64,
    },
    /// The instance decided `value`.
    Decided {
        /// The instance.
        instance: InstanceId,
        /// The agreed value.
        value: Vec<u8>,
    },
}

/// A BFT consensus over duty data (QBFT by default).
pub trait DutyConsensus: Send {
    /// The wire message.
    type Message: Clone + std::fmt::Debug + Send + serde::Serialize + serde::de::DeserializeOwned;

    /// Short name for logs and reports.
    fn name(&self) -> &'static str;

    /// Starts (or joins) `instance` with this member's proposed `value`.
    fn propose(&mut self, instance: InstanceId, value: Vec<u8>, now_ms: u64);

    /// Handles a message received from member `from` (0-based position in the lock).
    fn on_message(&mut self, from: u32, msg: Self::Message, now_ms: u64);

    /// Handles an expired timer. Stale timers are ignored.
    fn on_timeout(&mut self, timer: Timer, now_ms: u64);

    /// The instance a message belongs to (for routing and buffering).
    fn instance_of(msg: &Self::Message) -> InstanceId;

    /// Drops all state of `instance` (after its duty's deadline).
    fn forget(&mut self, instance: &InstanceId);

    /// Effects produced since the last call.
    fn drain_effects(&mut self) -> Vec<Effect<Self::Message>>;
}

/// The quorum size for `n` members: `⌈(n + f + 1) / 2⌉` with `f = ⌊(n − 1) / 3⌋`.
pub fn quorum(n: usize) -> usize {
    let f = n.saturating_sub(1) / 3;
    (n + f + 2) / 2
}

/// Faults tolerated by `n` members.
pub fn faults(n: usize) -> usize {
    n.saturating_sub(1) / 3
}

/// Round-robin leader of `round` of `instance` among `n` members: `(λ + round) mod n`, with `λ`
/// the instance id's first eight bytes, so consecutive duties start with different leaders.
pub fn round_robin(instance: &InstanceId, round: u32, n: usize) -> u32 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&instance[..8]);
    let n = n.max(1) as u64;
    ((u64::from_be_bytes(b) % n + u64::from(round)) % n) as u32
}
