//! A real etcd cluster on loopback for tests and benchmarks: `n` `etcd` processes (Debian's
//! `etcd-server`, installed by `./scripts/test`) with their data in a temporary folder,
//! killed when dropped; and [`ask_feed`], one sync request to a block source in process.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Sends `request` from `me` to `feed` over their in-process hub, lets the feed answer, and
/// returns every message that came back (waiting 100 ms after the last).
pub async fn ask_feed(
    feed: &mut crate::feed::Feed<phalanx_net::memory::MemoryNetwork>,
    me: &mut phalanx_net::memory::MemoryNetwork,
    request: crate::wire::Request,
) -> Vec<crate::wire::Message> {
    use crate::wire::Message;
    use phalanx_net::{NetEvent, Network};
    let to = feed.net_mut().local();
    if me.send(to, Message::Request(request).encode()).is_err() {
        return Vec::new();
    }
    let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(5), feed.net_mut().recv()).await
    else {
        return Vec::new();
    };
    feed.answer(event);
    let mut got = Vec::new();
    while let Ok(Some(NetEvent::Direct { data, .. })) =
        tokio::time::timeout(Duration::from_millis(100), me.recv()).await
    {
        if let Ok(m) = Message::decode(&data) {
            got.push(m);
        }
    }
    got
}

/// Why a local etcd cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum LocalEtcdError {
    /// The `etcd` binary is not on the PATH.
    #[error(
        "`etcd` not found on PATH ({0}); ./scripts/test installs Debian's etcd-server, or run `apt-get install etcd-server`"
    )]
    Missing(std::io::Error),
    /// Something else went wrong.
    #[error("local etcd: {0}")]
    Io(#[from] std::io::Error),
}

/// A running local etcd cluster.
#[derive(Debug)]
pub struct LocalEtcd {
    members: Vec<Option<Child>>,
    clients: Vec<String>,
    dir: PathBuf,
}

/// `n` distinct free ports: every listener is held until all are chosen (one bound and
/// dropped at a time, the kernel can hand the same port out twice — a member whose peer port
/// was another member's client port never started).
fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

impl LocalEtcd {
    /// Starts `n` members with their data and logs under `dir` (fast elections: 50 ms
    /// heartbeat, 500 ms election timeout).
    pub fn start(n: usize, dir: &Path) -> Result<Self, LocalEtcdError> {
        let mut peers = free_ports(2 * n)?;
        let clients = peers.split_off(n);
        let initial: Vec<String> = peers
            .iter()
            .enumerate()
            .map(|(i, p)| format!("m{i}=http://127.0.0.1:{p}"))
            .collect();
        let mut members = Vec::with_capacity(n);
        for i in 0..n {
            let data = dir.join(format!("m{i}"));
            std::fs::create_dir_all(&data)?;
            let log = std::fs::File::create(dir.join(format!("m{i}.log")))?;
            let client = format!("http://127.0.0.1:{}", clients[i]);
            let peer = format!("http://127.0.0.1:{}", peers[i]);
            let child = Command::new("etcd")
                .args(["--name", &format!("m{i}")])
                .arg("--data-dir")
                .arg(&data)
                .args(["--listen-client-urls", &client])
                .args(["--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer])
                .args(["--initial-advertise-peer-urls", &peer])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "phalanx-test"])
                .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => LocalEtcdError::Missing(e),
                    _ => LocalEtcdError::Io(e),
                })?;
            members.push(Some(child));
        }
        Ok(Self {
            members,
            clients: clients
                .iter()
                .map(|p| format!("http://127.0.0.1:{p}"))
                .collect(),
            dir: dir.to_path_buf(),
        })
    }

    /// Client endpoints of every member (dead ones included, as a client would have them).
    pub fn endpoints(&self) -> Vec<String> {
        self.clients.clone()
    }

    /// `kill -9` of member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members.get_mut(i).and_then(Option::take) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The log of member `i` (for a failing test's message).
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("m{i}.log"))).unwrap_or_default()
    }

    /// Waits until every live member answers on its client port.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            let up = self
                .members
                .iter()
                .zip(&self.clients)
                .filter(|(m, _)| m.is_some())
                .all(|(_, url)| {
                    std::net::TcpStream::connect(url.trim_start_matches("http://")).is_ok()
                });
            if up {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for LocalEtcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
