#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may panic

mod equivocation;
mod server;
mod store;
mod sync;

use std::sync::Arc;

use phalanx_cluster::embedded::EmbeddedStore;
use phalanx_cluster::server::{ServerConfig, ServerError, ServerStats};
use phalanx_execution::store::StateStore;
use phalanx_net::PeerKey;
use phalanx_net::memory::MemoryHub;

/// One server running on `hub` as `me`, with an embedded store of its own.
struct LoneServer {
    stats: Arc<ServerStats>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl LoneServer {
    fn spawn(config: ServerConfig, state: StateStore, hub: &MemoryHub, me: PeerKey) -> Self {
        let stats = Arc::new(ServerStats::default());
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(phalanx_cluster::server::run(
            config,
            Arc::new(state),
            Arc::new(EmbeddedStore::new()),
            hub.join(me),
            stats.clone(),
            shutdown,
        ));
        Self { stats, stop, task }
    }

    /// Stops it; it must have run without an error.
    async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.unwrap().unwrap();
    }
}
