//! The network over libp2p: TCP, Noise (peers authenticated by their ed25519 keys), Yamux;
//! gossipsub (signed messages, strict validation) for topics and a length-prefixed
//! request-response protocol, `/phalanx/direct/1`, for direct messages.
//!
//! **Validation before relay.** Gossipsub runs with `validate_messages`: a message is not
//! forwarded to anyone until this peer has judged it. A role may give a topic a
//! [`Validator`] ([`Libp2pNetwork::set_validator`]), run on each message as it arrives:
//! [`Verdict::Accept`] forwards it, [`Verdict::Ignore`] (useless, e.g. about a block not
//! held: maybe a race) and [`Verdict::Reject`] (garbage, a bad signature; gossipsub counts it
//! against the peer that relayed it) do not. Every message is still handed to the role, which
//! does its own checks and scoring ([`crate::Network::report`]); a topic without a validator
//! is forwarded at once, as before.
//!
//! The swarm runs in its own task; the [`Libp2pNetwork`] handle talks to it by channels, so a
//! role never blocks on a socket. Listed peers with an address are dialled at start and
//! re-dialled every [`REDIAL`] while not connected. In a *closed* network (a DV cluster) a
//! connection from a peer that is not listed is closed at once and anything it sent is dropped.
//! Events are queued up to [`EVENT_QUEUE`]; past that they are dropped (and counted in the
//! log) rather than letting a slow role stall the swarm.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, ValidationMode};
use libp2p::identity::{self, Keypair};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, noise, tcp, yamux};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::{MAX_MESSAGE_BYTES, NetError, NetEvent, Network, PeerKey, check_size};

/// How often a listed peer that is not connected is dialled again.
pub const REDIAL: Duration = Duration::from_secs(2);
/// Events waiting for the role, at most.
pub const EVENT_QUEUE: usize = 16 * 1024;
const DIRECT_PROTOCOL: &str = "/phalanx/direct/1";

/// What a [`Validator`] makes of a gossip message: whether this peer relays it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Good: relay it.
    Accept,
    /// Not worth relaying, not an offence (e.g. about a block this peer does not hold).
    Ignore,
    /// Bad (garbage, a bad signature): not relayed, held against the peer that relayed it.
    Reject,
}

/// Judges a topic's messages before they are relayed: the payload in, a verdict out. Runs on
/// the network task, so it must be quick (a decode and a signature check).
pub type Validator = Arc<dyn Fn(&[u8]) -> Verdict + Send + Sync>;

/// A peer we know of.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its key.
    pub key: PeerKey,
    /// Where to dial it (a multiaddr such as `/ip4/127.0.0.1/tcp/9101`), if we dial it.
    pub address: Option<String>,
}

impl std::str::FromStr for Peer {
    type Err = NetError;

    /// `HEXKEY@MULTIADDR`: the peer's ed25519 public key in hex and where to dial it.
    fn from_str(text: &str) -> Result<Self, NetError> {
        let (key, address) = text
            .split_once('@')
            .ok_or_else(|| NetError::Config(format!("{text}: expected HEXKEY@MULTIADDR")))?;
        let key: [u8; 32] = hex::decode(key.trim_start_matches("0x"))
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| NetError::Config(format!("{text}: the key is not 32 bytes of hex")))?;
        address
            .parse::<Multiaddr>()
            .map_err(|e| NetError::Config(format!("{text}: {e}")))?;
        Ok(Peer {
            key: PeerKey(key),
            address: Some(address.to_owned()),
        })
    }
}

/// The ed25519 identity seed kept in the file `path` (hex), made with mode 0600 and synced if
/// absent, so a process keeps its peer key across restarts.
pub fn identity_file(path: &std::path::Path) -> Result<[u8; 32], NetError> {
    let bad = |e: &dyn std::fmt::Display| NetError::Config(format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| bad(&e))?;
    }
    match std::fs::read_to_string(path) {
        Ok(text) => hex::decode(text.trim().trim_start_matches("0x"))
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| bad(&"not a 32-byte hex key")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            use std::io::Write;
            let seed: [u8; 32] = rand::random();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(path).map_err(|e| bad(&e))?;
            writeln!(file, "{}", hex::encode(seed)).map_err(|e| bad(&e))?;
            file.sync_all().map_err(|e| bad(&e))?;
            Ok(seed)
        }
        Err(e) => Err(bad(&e)),
    }
}

/// The next event of an optional network: for a role whose network is optional, to put in a
/// `select!` (without a network it never completes).
pub async fn next_event(net: &mut Option<Libp2pNetwork>) -> Option<NetEvent> {
    match net {
        Some(n) => n.recv().await,
        None => std::future::pending().await,
    }
}

/// How a process joins the chain's open gossip network: where it listens and whom it dials.
#[derive(Debug, Clone)]
pub struct Join {
    /// Where to listen (multiaddr; port 0 picks one).
    pub listen: String,
    /// Peers to dial.
    pub peers: Vec<Peer>,
}

/// How to start a libp2p network.
#[derive(Clone)]
pub struct Config {
    /// The ed25519 secret key (32-byte seed) this peer is known by.
    pub secret: [u8; 32],
    /// Where to listen (multiaddr; port 0 picks a free port).
    pub listen: String,
    /// Known peers.
    pub peers: Vec<Peer>,
    /// Only listed peers may connect.
    pub closed: bool,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("peers", &self.peers)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

/// The public key of the ed25519 secret (32-byte seed) `secret`.
pub fn public_key(secret: &[u8; 32]) -> Result<PeerKey, NetError> {
    let mut secret = *secret;
    let keypair = Keypair::ed25519_from_bytes(&mut secret)
        .map_err(|e| NetError::Config(format!("identity key: {e}")))?;
    let public = keypair
        .public()
        .try_into_ed25519()
        .map_err(|e| NetError::Config(e.to_string()))?;
    Ok(PeerKey(public.to_bytes()))
}

/// The libp2p peer id of `key`.
pub fn peer_id(key: &PeerKey) -> Result<PeerId, NetError> {
    let pk = identity::ed25519::PublicKey::try_from_bytes(&key.0)
        .map_err(|e| NetError::Config(format!("peer key {key}: {e}")))?;
    Ok(identity::PublicKey::from(pk).to_peer_id())
}

/// The ed25519 key inside `id`, if it is an (inlined) ed25519 peer id.
pub fn peer_key(id: &PeerId) -> Option<PeerKey> {
    let mh: &libp2p::multihash::Multihash<64> = id.as_ref();
    if mh.code() != 0 {
        return None;
    }
    let pk = identity::PublicKey::try_decode_protobuf(mh.digest()).ok()?;
    Some(PeerKey(pk.try_into_ed25519().ok()?.to_bytes()))
}

/// Length-prefixed raw bytes; the response is empty (an ack that the bytes arrived).
#[derive(Debug, Clone, Default)]
struct DirectCodec;

async fn read_frame<T: futures::AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over the {MAX_MESSAGE_BYTES}-byte limit"),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: futures::AsyncWrite + Unpin + Send>(
    io: &mut T,
    data: &[u8],
) -> io::Result<()> {
    let len = u32::try_from(data.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(data).await?;
    io.flush().await
}

#[async_trait::async_trait]
impl request_response::Codec for DirectCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        read_frame(io).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        read_frame(io).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        write_frame(io, &res).await
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    gossip: gossipsub::Behaviour,
    direct: request_response::Behaviour<DirectCodec>,
}

enum Command {
    Send(PeerKey, Vec<u8>),
    Publish(String, Vec<u8>),
    Subscribe(String),
    Unsubscribe(String),
    Connected(oneshot::Sender<Vec<PeerKey>>),
    Report(PeerKey, crate::Offence),
    Validate(String, Validator),
}

/// A running libp2p network.
#[derive(Debug)]
pub struct Libp2pNetwork {
    local: PeerKey,
    listening: Vec<String>,
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::Receiver<NetEvent>,
    task: JoinHandle<()>,
}

impl Drop for Libp2pNetwork {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Libp2pNetwork {
    /// Starts the swarm (on the current tokio runtime) and waits until it listens.
    pub async fn start(config: Config) -> Result<Self, NetError> {
        let mut secret = config.secret;
        let keypair = Keypair::ed25519_from_bytes(&mut secret)
            .map_err(|e| NetError::Config(format!("identity key: {e}")))?;
        let local = PeerKey(
            keypair
                .public()
                .try_into_ed25519()
                .map_err(|e| NetError::Config(e.to_string()))?
                .to_bytes(),
        );
        let mut swarm = build_swarm(keypair)?;
        let listen: Multiaddr = config.listen.parse().map_err(|e| NetError::Listen {
            address: config.listen.clone(),
            reason: format!("{e}"),
        })?;
        swarm.listen_on(listen).map_err(|e| NetError::Listen {
            address: config.listen.clone(),
            reason: e.to_string(),
        })?;
        let listening = wait_listening(&mut swarm, &config.listen).await?;

        let mut known: HashMap<PeerId, (PeerKey, Option<Multiaddr>)> = HashMap::new();
        for p in &config.peers {
            if p.key == local {
                continue;
            }
            let id = peer_id(&p.key)?;
            let addr = match &p.address {
                Some(a) => Some(
                    a.parse::<Multiaddr>()
                        .map_err(|e| NetError::Config(format!("address of {}: {a}: {e}", p.key)))?,
                ),
                None => None,
            };
            if let Some(a) = &addr {
                swarm.add_peer_address(id, a.clone());
            }
            known.insert(id, (p.key, addr));
        }
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::channel(EVENT_QUEUE);
        let driver = Driver {
            swarm,
            known,
            closed: config.closed,
            connected: HashSet::new(),
            events: event_tx,
            dropped: 0,
            scores: crate::scoring::PeerScores::new(),
            validators: HashMap::new(),
        };
        let task = tokio::spawn(driver.run(command_rx));
        Ok(Self {
            local,
            listening,
            commands,
            events,
            task,
        })
    }

    /// Joins the open network `join` describes as the identity kept in `key_file`
    /// ([`identity_file`]: made on first use, kept across restarts).
    pub async fn join(key_file: &std::path::Path, join: &Join) -> Result<Self, NetError> {
        Self::start(Config {
            secret: identity_file(key_file)?,
            listen: join.listen.clone(),
            peers: join.peers.clone(),
            closed: false,
        })
        .await
    }

    /// This peer as others name it: `HEXKEY@MULTIADDR` (its first listening address).
    pub fn peer_string(&self) -> Option<String> {
        self.listening
            .first()
            .map(|a| format!("{}@{a}", hex::encode(self.local.0)))
    }

    /// Judges `topic`'s messages with `validator` before relaying them (see the module
    /// docs); replaces an earlier one.
    pub fn set_validator(&self, topic: &str, validator: Validator) -> Result<(), NetError> {
        self.commands
            .send(Command::Validate(topic.to_owned(), validator))
            .map_err(|_| NetError::Closed)
    }

    /// The addresses it listens on.
    pub fn listening(&self) -> &[String] {
        &self.listening
    }

    /// The peers connected now.
    pub async fn connected(&self) -> Result<Vec<PeerKey>, NetError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Connected(tx))
            .map_err(|_| NetError::Closed)?;
        rx.await.map_err(|_| NetError::Closed)
    }
}

fn build_swarm(keypair: Keypair) -> Result<Swarm<Behaviour>, NetError> {
    let cfg = |e: &dyn std::fmt::Display| NetError::Config(e.to_string());
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| cfg(&e))?
        .with_behaviour(|key| {
            let gossip_config = gossipsub::ConfigBuilder::default()
                .max_transmit_size(MAX_MESSAGE_BYTES)
                .validation_mode(ValidationMode::Strict)
                .validate_messages()
                .heartbeat_interval(Duration::from_millis(700))
                .build()
                .map_err(|e| e.to_string())?;
            let gossip =
                gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), gossip_config)?;
            let direct = request_response::Behaviour::with_codec(
                DirectCodec,
                [(StreamProtocol::new(DIRECT_PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(10))
                    .with_max_concurrent_streams(1024),
            );
            Ok(Behaviour { gossip, direct })
        })
        .map_err(|e| cfg(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    Ok(swarm)
}

async fn wait_listening(
    swarm: &mut Swarm<Behaviour>,
    asked: &str,
) -> Result<Vec<String>, NetError> {
    let wait = async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::NewListenAddr { address, .. } => return Ok(vec![address.to_string()]),
                SwarmEvent::ListenerError { error, .. } => {
                    return Err(NetError::Listen {
                        address: asked.to_owned(),
                        reason: error.to_string(),
                    });
                }
                SwarmEvent::ListenerClosed { reason, .. } => {
                    return Err(NetError::Listen {
                        address: asked.to_owned(),
                        reason: format!("{reason:?}"),
                    });
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .map_err(|_| NetError::Listen {
            address: asked.to_owned(),
            reason: "no listening address after 10 s".into(),
        })?
}

struct Driver {
    swarm: Swarm<Behaviour>,
    known: HashMap<PeerId, (PeerKey, Option<Multiaddr>)>,
    closed: bool,
    connected: HashSet<PeerId>,
    events: mpsc::Sender<NetEvent>,
    dropped: u64,
    scores: crate::scoring::PeerScores,
    validators: HashMap<String, Validator>,
}

impl Driver {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        self.redial();
        let mut redial = tokio::time::interval(REDIAL);
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => break,
                },
                ev = self.swarm.select_next_some() => self.swarm_event(ev),
                _ = redial.tick() => {
                    self.lift_bans();
                    self.redial();
                }
            }
        }
        tracing::debug!("network: handle dropped, swarm stops");
    }

    fn redial(&mut self) {
        let targets: Vec<(PeerId, Multiaddr)> = self
            .known
            .iter()
            .filter(|(id, _)| !self.connected.contains(id) && !self.banned(id))
            .filter_map(|(id, (_, addr))| addr.clone().map(|a| (*id, a)))
            .collect();
        for (id, addr) in targets {
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(id)
                .addresses(vec![addr])
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::trace!(peer = %id, error = %e, "network: dial not started");
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Send(to, data) => match peer_id(&to) {
                Ok(id) => {
                    self.swarm.behaviour_mut().direct.send_request(&id, data);
                }
                Err(e) => tracing::warn!(error = %e, "network: cannot send"),
            },
            Command::Publish(topic, data) => {
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .gossip
                    .publish(IdentTopic::new(topic.clone()), data)
                {
                    tracing::debug!(%topic, error = %e, "network: publish failed");
                }
            }
            Command::Subscribe(topic) => {
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .gossip
                    .subscribe(&IdentTopic::new(topic.clone()))
                {
                    tracing::warn!(%topic, error = %e, "network: subscribe failed");
                }
            }
            Command::Unsubscribe(topic) => {
                self.swarm
                    .behaviour_mut()
                    .gossip
                    .unsubscribe(&IdentTopic::new(topic));
            }
            Command::Connected(reply) => {
                let peers = self.connected.iter().filter_map(peer_key).collect();
                let _ = reply.send(peers);
            }
            Command::Validate(topic, validator) => {
                self.validators.insert(topic, validator);
            }
            Command::Report(peer, offence) => {
                if self.scores.report(peer, offence, std::time::Instant::now())
                    && let Ok(id) = peer_id(&peer)
                {
                    tracing::warn!(peer = %peer, ?offence, "network: peer banned for bad messages; disconnecting");
                    self.swarm.behaviour_mut().gossip.blacklist_peer(&id);
                    let _ = self.swarm.disconnect_peer_id(id);
                }
            }
        }
    }

    fn banned(&self, id: &PeerId) -> bool {
        peer_key(id).is_some_and(|k| self.scores.is_banned(&k, std::time::Instant::now()))
    }

    fn lift_bans(&mut self) {
        for peer in self.scores.lift_expired(std::time::Instant::now()) {
            if let Ok(id) = peer_id(&peer) {
                tracing::info!(peer = %peer, "network: ban ended");
                self.swarm
                    .behaviour_mut()
                    .gossip
                    .remove_blacklisted_peer(&id);
            }
        }
    }

    fn allowed(&self, id: &PeerId) -> bool {
        (!self.closed || self.known.contains_key(id)) && !self.banned(id)
    }

    fn deliver(&mut self, event: NetEvent) {
        if self.events.try_send(event).is_err() {
            self.dropped += 1;
            if self.dropped.is_power_of_two() {
                tracing::warn!(
                    dropped = self.dropped,
                    "network: role is not keeping up, events dropped"
                );
            }
        }
    }

    fn swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                if !self.allowed(&peer_id) {
                    tracing::warn!(peer = %peer_id, "network: closing connection from an unlisted or banned peer");
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                tracing::debug!(peer = %peer_id, "network: connected");
                self.connected.insert(peer_id);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.connected.remove(&peer_id);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Direct(ev)) => self.direct_event(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                let from = message
                    .source
                    .filter(|s| self.allowed(s) && self.allowed(&propagation_source))
                    .and_then(|s| peer_key(&s));
                let verdict = match (&from, self.validators.get(message.topic.as_str())) {
                    (None, _) => Verdict::Ignore,
                    (Some(_), None) => Verdict::Accept,
                    (Some(_), Some(validate)) => validate(&message.data),
                };
                let acceptance = match verdict {
                    Verdict::Accept => gossipsub::MessageAcceptance::Accept,
                    Verdict::Ignore => gossipsub::MessageAcceptance::Ignore,
                    Verdict::Reject => gossipsub::MessageAcceptance::Reject,
                };
                self.swarm
                    .behaviour_mut()
                    .gossip
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
                let Some(from) = from else {
                    tracing::debug!(peer = %propagation_source, "network: gossip from a peer not allowed (or not ed25519) dropped");
                    return;
                };
                self.deliver(NetEvent::Gossip {
                    from,
                    topic: message.topic.into_string(),
                    data: message.data,
                });
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::trace!(peer = ?peer_id, error = %error, "network: dial failed");
            }
            _ => {}
        }
    }

    fn direct_event(&mut self, ev: request_response::Event<Vec<u8>, Vec<u8>>) {
        match ev {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .direct
                    .send_response(channel, Vec::new());
                if !self.allowed(&peer) {
                    return;
                }
                match peer_key(&peer) {
                    Some(from) => self.deliver(NetEvent::Direct {
                        from,
                        data: request,
                    }),
                    None => {
                        tracing::debug!(%peer, "network: message from a non-ed25519 peer dropped")
                    }
                }
            }
            request_response::Event::OutboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "network: direct message not delivered");
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "network: inbound direct message failed");
            }
            _ => {}
        }
    }
}

impl Network for Libp2pNetwork {
    fn local(&self) -> PeerKey {
        self.local
    }

    fn send(&self, to: PeerKey, data: Vec<u8>) -> Result<(), NetError> {
        check_size(&data)?;
        self.commands
            .send(Command::Send(to, data))
            .map_err(|_| NetError::Closed)
    }

    fn publish(&self, topic: &str, data: Vec<u8>) -> Result<(), NetError> {
        check_size(&data)?;
        self.commands
            .send(Command::Publish(topic.to_owned(), data))
            .map_err(|_| NetError::Closed)
    }

    fn subscribe(&self, topic: &str) -> Result<(), NetError> {
        self.commands
            .send(Command::Subscribe(topic.to_owned()))
            .map_err(|_| NetError::Closed)
    }

    fn unsubscribe(&self, topic: &str) -> Result<(), NetError> {
        self.commands
            .send(Command::Unsubscribe(topic.to_owned()))
            .map_err(|_| NetError::Closed)
    }

    fn report(&self, peer: PeerKey, offence: crate::Offence) {
        // A stopped network has nobody left to ban.
        let _ = self.commands.send(Command::Report(peer, offence));
    }

    async fn recv(&mut self) -> Option<NetEvent> {
        self.events.recv().await
    }
}
