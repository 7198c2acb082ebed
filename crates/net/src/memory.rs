//! The in-process transport: every [`MemoryNetwork`] joined to one [`MemoryHub`] reaches the
//! others through unbounded channels. Same interface and the same delivery promise (none) as
//! libp2p; used by the devnet (all roles in one process) and by tests.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::scoring::PeerScores;
use crate::{NetError, NetEvent, Network, Offence, PeerKey, check_size};

#[derive(Default)]
struct Hub {
    peers: HashMap<PeerKey, mpsc::UnboundedSender<NetEvent>>,
    topics: HashMap<String, BTreeSet<PeerKey>>,
}

/// A set of in-process peers.
#[derive(Clone, Default)]
pub struct MemoryHub {
    inner: Arc<Mutex<Hub>>,
}

impl std::fmt::Debug for MemoryHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryHub").finish_non_exhaustive()
    }
}

impl MemoryHub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// Joins `key` to the hub (replacing an earlier endpoint with the same key).
    pub fn join(&self, key: PeerKey) -> MemoryNetwork {
        let (tx, rx) = mpsc::unbounded_channel();
        self.with(|hub| {
            hub.peers.insert(key, tx);
        });
        MemoryNetwork {
            hub: self.clone(),
            key,
            rx,
            scores: Mutex::new(PeerScores::new()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Hub) -> T) -> T {
        // A poisoned lock only means another thread panicked mid-update of plain maps; the
        // maps themselves are still consistent.
        let mut guard = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }
}

/// One peer on a [`MemoryHub`].
#[derive(Debug)]
pub struct MemoryNetwork {
    hub: MemoryHub,
    key: PeerKey,
    rx: mpsc::UnboundedReceiver<NetEvent>,
    /// Peers this endpoint reported; a banned peer's messages are dropped here.
    scores: Mutex<PeerScores>,
}

impl MemoryNetwork {
    fn scores(&self) -> std::sync::MutexGuard<'_, PeerScores> {
        self.scores
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for MemoryNetwork {
    fn drop(&mut self) {
        let key = self.key;
        self.hub.with(|hub| {
            hub.peers.remove(&key);
            for subs in hub.topics.values_mut() {
                subs.remove(&key);
            }
        });
    }
}

impl Network for MemoryNetwork {
    fn local(&self) -> PeerKey {
        self.key
    }

    fn send(&self, to: PeerKey, data: Vec<u8>) -> Result<(), NetError> {
        check_size(&data)?;
        let from = self.key;
        self.hub.with(|hub| {
            if let Some(tx) = hub.peers.get(&to) {
                // A peer that left simply misses the message, as over a real network.
                let _ = tx.send(NetEvent::Direct { from, data });
            }
        });
        Ok(())
    }

    fn publish(&self, topic: &str, data: Vec<u8>) -> Result<(), NetError> {
        check_size(&data)?;
        let from = self.key;
        self.hub.with(|hub| {
            for peer in hub.topics.get(topic).into_iter().flatten() {
                if *peer == from {
                    continue;
                }
                if let Some(tx) = hub.peers.get(peer) {
                    let _ = tx.send(NetEvent::Gossip {
                        from,
                        topic: topic.to_owned(),
                        data: data.clone(),
                    });
                }
            }
        });
        Ok(())
    }

    fn subscribe(&self, topic: &str) -> Result<(), NetError> {
        let key = self.key;
        self.hub.with(|hub| {
            hub.topics.entry(topic.to_owned()).or_default().insert(key);
        });
        Ok(())
    }

    fn unsubscribe(&self, topic: &str) -> Result<(), NetError> {
        let key = self.key;
        self.hub.with(|hub| {
            if let Some(peers) = hub.topics.get_mut(topic) {
                peers.remove(&key);
            }
        });
        Ok(())
    }

    fn report(&self, peer: PeerKey, offence: Offence) {
        let now = std::time::Instant::now();
        let mut scores = self.scores();
        scores.lift_expired(now);
        if scores.report(peer, offence, now) {
            tracing::warn!(peer = %peer, ?offence, "network: peer banned for bad messages");
        }
    }

    async fn recv(&mut self) -> Option<NetEvent> {
        loop {
            let event = self.rx.recv().await?;
            let from = match &event {
                NetEvent::Direct { from, .. } | NetEvent::Gossip { from, .. } => *from,
            };
            if !self.scores().is_banned(&from, std::time::Instant::now()) {
                return Some(event);
            }
        }
    }
}
