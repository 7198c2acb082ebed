//! The network seam (DESIGN.md, "Real parts, not mocks"): how a role talks to its peers.
//!
//! A role sees one small interface, [`Network`]:
//!
//! - **direct messages** to one peer ([`Network::send`]): best effort, fire and forget, for
//!   protocols between a known set of peers (a distributed validator's members, a DKG);
//! - **gossip** on a topic ([`Network::publish`], [`Network::subscribe`]): for the chain's
//!   topics and a clustered node's per-shard topics;
//! - **events** in ([`Network::recv`]), each naming the authenticated peer it came from.
//!
//! Peers are named by their ed25519 public key ([`PeerKey`]) — the key in a DV cluster lock,
//! which libp2p's Noise handshake proves the remote holds. Two implementations:
//!
//! - [`p2p`]: libp2p over TCP + Noise + Yamux, gossipsub for topics and a request-response protocol for
//!   direct messages; with [`p2p::Config::closed`] only listed peers may connect.
//! - [`memory`]: an in-process hub (the simulator's and the devnet's default): same interface,
//!   no sockets.
//!
//! Peers that send bad messages are scored down and banned ([`scoring`], [`Network::report`]).
//!
//! Delivery is not guaranteed by either: the protocols above resend what matters (DKG
//! messages until acked, duty consensus by round changes). A message over
//! [`MAX_MESSAGE_BYTES`] is refused at the sender and dropped at the receiver.

use std::fmt;
use std::future::Future;

pub mod memory;
pub mod p2p;
pub mod scoring;

pub use scoring::Offence;

/// Largest message either implementation carries.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// A peer: its ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey(pub [u8; 32]);

impl fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerKey({self})")
    }
}

impl fmt::Display for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(&self.0[..6]))
    }
}

/// Something that arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    /// A direct message.
    Direct {
        /// The authenticated sender.
        from: PeerKey,
        /// Payload.
        data: Vec<u8>,
    },
    /// A gossip message on a subscribed topic.
    Gossip {
        /// The authenticated author (not the peer that forwarded it).
        from: PeerKey,
        /// Topic.
        topic: String,
        /// Payload.
        data: Vec<u8>,
    },
}

/// Errors of the network.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The network task has stopped.
    #[error("the network has shut down")]
    Closed,
    /// A message too large to carry.
    #[error("message of {size} bytes is over the {max}-byte limit")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A bad address or key in the configuration.
    #[error("network configuration: {0}")]
    Config(String),
    /// Could not listen.
    #[error("cannot listen on {address}: {reason}")]
    Listen {
        /// Where.
        address: String,
        /// Why.
        reason: String,
    },
}

/// The seam every role talks through.
pub trait Network: Send + 'static {
    /// This peer.
    fn local(&self) -> PeerKey;

    /// Sends `data` to `to` (best effort).
    fn send(&self, to: PeerKey, data: Vec<u8>) -> Result<(), NetError>;

    /// Publishes `data` on `topic` to every subscribed peer.
    fn publish(&self, topic: &str, data: Vec<u8>) -> Result<(), NetError>;

    /// Subscribes to `topic`.
    fn subscribe(&self, topic: &str) -> Result<(), NetError>;

    /// Stops receiving `topic`.
    fn unsubscribe(&self, topic: &str) -> Result<(), NetError>;

    /// Tells the network that `peer` sent something bad ([`scoring`]): it loses score and,
    /// past the threshold, is banned (dropped, disconnected, not dialled) for a while.
    fn report(&self, peer: PeerKey, offence: Offence);
    /// The next event; `None` once the network has shut down.
    fn recv(&mut self) -> impl Future<Output = Option<NetEvent>> + Send;
}

fn check_size(data: &[u8]) -> Result<(), NetError> {
    if data.len() > MAX_MESSAGE_BYTES {
        return Err(NetError::TooLarge {
            size: data.len(),
            max: MAX_MESSAGE_BYTES,
        });
    }
    Ok(())
}
