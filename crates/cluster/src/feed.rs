//! A block source: publishes each block's header on the header topic and each shard on its
//! own topic, keeps the last [`KEEP_BLOCKS`] blocks and answers sync requests for them
//! ([`crate::wire::Request`]): a shard by block and index, headers from a height, a whole
//! block by root, whole blocks from a height, one shard index of the blocks from a height.
//! Given the consensus blocks too ([`Feed::publish_chain`]), it publishes them on the block
//! topic and answers for a block and its ancestors by root: what servers following the chain
//! from gossip ([`crate::chain`]) catch up with.
//!
//! The devnet runs one over its gossip network for the chain it executes (`--p2p-listen`),
//! which `phalanx node --follow` servers take their shards from. [`run`] publishes a
//! deterministic [`Load`] instead: the simulator and the benchmark run that in-process, and
//! `phalanx node --feed` as a process; servers following it derive the same genesis from the
//! same load settings and trust its headers.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use alloy_primitives::B256;
use phalanx_net::{NetEvent, Network};
use phalanx_types::consensus::Shard;
use tokio::sync::watch;

use crate::load::{Load, LoadError};
use crate::wire::{
    ATTESTATION_TOPIC, BLOCK_TOPIC, ChainBlock, DECLARATION_TOPIC, ExecHeader, HEADER_TOPIC,
    Message, RANGE_BLOCKS, Request, SLASHING_TOPIC, ShardMessage, shard_topic,
};
use phalanx_types::{Attestation, Evidence, Root, SignedDeclaration};

/// Headers sent for one request by height.
pub const HEADERS_PER_REQUEST: usize = 64;

/// Blocks the feed keeps to answer requests.
pub const KEEP_BLOCKS: usize = 4096;

/// Publishes blocks and answers requests for them.
#[derive(Debug)]
pub struct Feed<N: Network> {
    net: N,
    history: BTreeMap<B256, (ExecHeader, Vec<Shard>)>,
    by_height: BTreeMap<u64, B256>,
    /// Consensus blocks by root, and the order they came in (the oldest forgotten first).
    chain: HashMap<Root, ChainBlock>,
    chain_order: VecDeque<Root>,
}

impl<N: Network> Feed<N> {
    /// A feed on `net`.
    pub fn new(net: N) -> Self {
        Self {
            net,
            history: BTreeMap::new(),
            by_height: BTreeMap::new(),
            chain: HashMap::new(),
            chain_order: VecDeque::new(),
        }
    }

    /// The network, to wait for events on.
    pub fn net_mut(&mut self) -> &mut N {
        &mut self.net
    }

    /// Publishes a block: its header, then each shard on its topic. A publish the network
    /// refuses (no peer subscribed yet) is logged; servers ask for what they missed.
    pub fn publish(&mut self, header: ExecHeader, shards: Vec<Shard>) {
        let hash = header.hash();
        if let Err(e) = self
            .net
            .publish(HEADER_TOPIC, Message::Header(header.clone()).encode())
        {
            tracing::debug!(height = header.number, error = %e, "feed: header not published");
        }
        for (i, shard) in shards.iter().enumerate() {
            let m = ShardMessage {
                block: hash,
                index: i as u16,
                shard: shard.clone(),
            };
            if let Err(e) = self
                .net
                .publish(&shard_topic(i as u16), Message::Shard(m).encode())
            {
                tracing::debug!(shard = i, error = %e, "feed: shard not published");
            }
        }
        self.remember(header, shards);
    }

    /// Keeps a block to answer requests for it, without publishing it (a restarted source
    /// refilling its history).
    pub fn remember(&mut self, header: ExecHeader, shards: Vec<Shard>) {
        let hash = header.hash();
        self.by_height.insert(header.number, hash);
        self.history.insert(hash, (header, shards));
        while self.by_height.len() > KEEP_BLOCKS {
            if let Some((_, old)) = self.by_height.pop_first() {
                self.history.remove(&old);
            }
        }
    }

    /// Publishes a consensus block on the block topic (every block its source imports, forks
    /// included: followers pick the final chain by attestations) and keeps it.
    pub fn publish_chain(&mut self, block: ChainBlock) {
        let slot = block.header.message.slot.0;
        if let Err(e) = self.net.publish(
            BLOCK_TOPIC,
            Message::ChainBlock(Box::new(block.clone())).encode(),
        ) {
            tracing::debug!(slot, error = %e, "feed: consensus block not published");
        }
        self.remember_chain(block);
    }

    /// Keeps a consensus block to answer requests for it (the last [`KEEP_BLOCKS`]).
    pub fn remember_chain(&mut self, block: ChainBlock) {
        let root = block.root();
        if self.chain.insert(root, block).is_none() {
            self.chain_order.push_back(root);
        }
        while self.chain_order.len() > KEEP_BLOCKS {
            if let Some(old) = self.chain_order.pop_front() {
                self.chain.remove(&old);
            }
        }
    }

    /// Publishes an aggregated attestation on the attestation topic.
    pub fn publish_attestation(&self, attestation: &Attestation) {
        if let Err(e) = self.net.publish(
            ATTESTATION_TOPIC,
            Message::Attestation(attestation.clone()).encode(),
        ) {
            tracing::debug!(error = %e, "feed: attestation not published");
        }
    }

    /// Publishes a proposer's signed declaration on the declaration topic.
    pub fn publish_declaration(&self, declaration: &SignedDeclaration) {
        let message = Message::Declaration(declaration.clone()).encode();
        if let Err(e) = self.net.publish(DECLARATION_TOPIC, message) {
            tracing::debug!(error = %e, "feed: declaration not published");
        }
    }

    /// Publishes slashing evidence on the slashing topic.
    pub fn publish_evidence(&self, evidence: &Evidence) {
        let message = Message::Slashing(Box::new(evidence.clone())).encode();
        if let Err(e) = self.net.publish(SLASHING_TOPIC, message) {
            tracing::debug!(error = %e, "feed: slashing evidence not published");
        }
    }

    /// Answers one request; anything else is ignored (the feed subscribes to nothing).
    pub fn answer(&mut self, event: NetEvent) {
        let NetEvent::Direct { from, data } = event else {
            return;
        };
        let request = match Message::decode(&data) {
            Ok(Message::Request(r)) => r,
            Ok(_) => return,
            Err(e) => {
                tracing::debug!(peer = %from, error = %e, "feed: undecodable request");
                self.net.report(from, phalanx_net::Offence::Undecodable);
                return;
            }
        };
        let send_shard = |net: &N, block: B256, index: u16, shard: &Shard| {
            let m = ShardMessage {
                block,
                index,
                shard: shard.clone(),
            };
            let _ = net.send(from, Message::Shard(m).encode());
        };
        let send_block = |net: &N, block: B256, header: &ExecHeader, shards: &[Shard]| {
            let _ = net.send(from, Message::Header(header.clone()).encode());
            for (i, shard) in shards.iter().enumerate() {
                send_shard(net, block, i as u16, shard);
            }
        };
        let range = |limit: usize| -> Vec<B256> {
            self.by_height
                .range(request.height..)
                .map(|(_, h)| *h)
                .take(limit)
                .collect()
        };
        match request.kind {
            Request::SHARD => {
                if let Some((_, shards)) = self.history.get(&request.block)
                    && let Some(shard) = shards.get(request.index as usize)
                {
                    send_shard(&self.net, request.block, request.index, shard);
                }
            }
            Request::HEADERS_FROM => {
                for hash in range(HEADERS_PER_REQUEST) {
                    if let Some((header, _)) = self.history.get(&hash) {
                        let _ = self
                            .net
                            .send(from, Message::Header(header.clone()).encode());
                    }
                }
            }
            Request::BLOCK => {
                if let Some((header, shards)) = self.history.get(&request.block) {
                    send_block(&self.net, request.block, header, shards);
                }
            }
            Request::BLOCKS_FROM => {
                for hash in range(RANGE_BLOCKS) {
                    if let Some((header, shards)) = self.history.get(&hash) {
                        send_block(&self.net, hash, header, shards);
                    }
                }
            }
            Request::CHAIN_ANCESTORS => {
                let mut at = request.block;
                for _ in 0..RANGE_BLOCKS {
                    let Some(block) = self.chain.get(&at) else {
                        break;
                    };
                    let _ = self
                        .net
                        .send(from, Message::ChainBlock(Box::new(block.clone())).encode());
                    at = block.header.message.parent_root;
                }
            }
            Request::SHARDS_FROM => {
                for hash in range(RANGE_BLOCKS) {
                    if let Some((_, shards)) = self.history.get(&hash)
                        && let Some(shard) = shards.get(request.index as usize)
                    {
                        send_shard(&self.net, hash, request.index, shard);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Settings of a feed process.
#[derive(Debug, Clone)]
pub struct FeedConfig {
    /// Shards per block.
    pub shards: u16,
    /// Funded senders per shard (the genesis depends on it).
    pub senders: usize,
    /// Transfers per shard per block.
    pub txs_per_shard: usize,
    /// Seed of the load (the genesis depends on it).
    pub seed: u64,
    /// Time between blocks.
    pub slot: Duration,
    /// Blocks to publish; `None`: until shut down.
    pub blocks: Option<u64>,
    /// Wait this long before the first block (peers connect and subscribe).
    pub warmup: Duration,
    /// Append `height block unix-ms` here for each block published.
    pub log: Option<std::path::PathBuf>,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Publishes a block of the load every slot and answers requests until `shutdown` turns
/// true; after the last block it keeps answering.
pub async fn run<N: Network>(
    config: FeedConfig,
    net: N,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), LoadError> {
    let mut load = Load::new(config.shards, config.senders, config.seed);
    let mut feed = Feed::new(net);
    let mut next = tokio::time::Instant::now() + config.warmup;
    let mut published = 0u64;
    tracing::info!(
        shards = config.shards,
        txs_per_shard = config.txs_per_shard,
        slot_ms = config.slot.as_millis() as u64,
        genesis = %load.genesis_header().hash(),
        "feed up"
    );
    loop {
        let more = config.blocks.is_none_or(|b| published < b);
        tokio::select! {
            _ = shutdown.changed() => {
                if *shutdown.borrow() { return Ok(()); }
            }
            event = feed.net_mut().recv() => match event {
                Some(e) => feed.answer(e),
                None => return Err(LoadError("the network has shut down".into())),
            },
            _ = tokio::time::sleep_until(next), if more => {
                next += config.slot;
                let (header, shards) = load.next_block(config.txs_per_shard)?;
                tracing::info!(height = header.number, block = %header.hash(), "feed: block");
                if let Some(path) = &config.log {
                    let line = format!("{} {} {}\n", header.number, header.hash(), unix_ms());
                    let written = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
                    if let Err(e) = written {
                        tracing::warn!(path = %path.display(), error = %e, "feed: cannot log the block");
                    }
                }
                feed.publish(header, shards);
                published += 1;
            }
        }
    }
}
