//! Who executes which shard.
//!
//! A server declares a range of shard indices, `lo-hi`, wrapping past the last shard when
//! `lo > hi` (with 8 shards, `6-1` is 6, 7, 0, 1). The servers *responsible* for shard `i` are
//! the live servers whose range holds `i`; when none is live, exactly one live server takes
//! the shard over: the one whose key comes first in the order of
//! `sha256(shard index ‖ server key)`, which every server computes alike from the same list of
//! live servers (a server seeing a different list for a moment only adds an executor).

use std::collections::BTreeMap;
use std::fmt;

use phalanx_net::PeerKey;
use sha2::{Digest, Sha256};

/// A range of shard indices, inclusive, wrapping when `lo > hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardRange {
    /// First index.
    pub lo: u16,
    /// Last index.
    pub hi: u16,
}

/// A range that does not parse or does not fit the shard count.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("shard range {given:?}: {reason} (expected LO-HI or one index, below {shards})")]
pub struct RangeError {
    /// What was given.
    pub given: String,
    /// What is wrong.
    pub reason: String,
    /// The shard count.
    pub shards: u16,
}

impl ShardRange {
    /// Parses `"lo-hi"` or `"i"` for a chain of `shards` shards.
    pub fn parse(text: &str, shards: u16) -> Result<Self, RangeError> {
        let fail = |reason: &str| RangeError {
            given: text.to_owned(),
            reason: reason.to_owned(),
            shards,
        };
        let number = |s: &str| s.trim().parse::<u16>().map_err(|_| fail("not a number"));
        let (lo, hi) = match text.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => {
                let i = number(text)?;
                (i, i)
            }
        };
        if lo >= shards || hi >= shards {
            return Err(fail("index out of range"));
        }
        Ok(Self { lo, hi })
    }

    /// Whether `shard` is in the range.
    pub fn contains(&self, shard: u16) -> bool {
        if self.lo <= self.hi {
            (self.lo..=self.hi).contains(&shard)
        } else {
            shard >= self.lo || shard <= self.hi
        }
    }

    /// The indices, in order from `lo`.
    pub fn indices(&self, shards: u16) -> Vec<u16> {
        (0..shards)
            .map(|k| (self.lo + k) % shards)
            .take_while({
                let mut done = false;
                move |i| {
                    let keep = !done;
                    done = done || *i == self.hi;
                    keep
                }
            })
            .collect()
    }
}

impl fmt::Display for ShardRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.lo, self.hi)
    }
}

/// The ranges of `servers` servers covering `shards` shards `replication` times each: with
/// `b(k) = ⌊k · shards / servers⌋`, server `k` owns the shards from `b(k)` to
/// `b(k + replication) − 1`, wrapping, so shard `s` has exactly `replication` owners (fewer
/// servers than that: every server owns every shard).
pub fn layout(servers: u16, shards: u16, replication: u16) -> Vec<ShardRange> {
    let servers = servers.max(1);
    let replication = replication.clamp(1, servers);
    (0..servers)
        .map(|k| {
            let lo = (k as u32 * shards as u32 / servers as u32) as u16;
            let next = ((k as u32 + replication as u32) * shards as u32 / servers as u32) as u16;
            let len = next.saturating_sub(lo).clamp(1, shards);
            ShardRange {
                lo: lo % shards,
                hi: (lo + len - 1) % shards,
            }
        })
        .collect()
}

fn takeover_rank(shard: u16, server: &PeerKey) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(shard.to_be_bytes());
    h.update(server.0);
    h.finalize().into()
}

/// The live servers responsible for `shard`, and whether that is a takeover (none of the
/// shard's owners is live).
pub fn responsible(live: &BTreeMap<PeerKey, ShardRange>, shard: u16) -> (Vec<PeerKey>, bool) {
    let owners: Vec<PeerKey> = live
        .iter()
        .filter(|(_, r)| r.contains(shard))
        .map(|(k, _)| *k)
        .collect();
    if !owners.is_empty() {
        return (owners, false);
    }
    let taker = live.keys().min_by_key(|k| takeover_rank(shard, k)).copied();
    (taker.into_iter().collect(), true)
}

/// One more live server for `shard` beyond `current` (when the responsible ones cannot agree
/// in time), chosen like a takeover among the others.
pub fn extra(
    live: &BTreeMap<PeerKey, ShardRange>,
    shard: u16,
    current: &[PeerKey],
) -> Option<PeerKey> {
    live.keys()
        .filter(|k| !current.contains(k))
        .min_by_key(|k| takeover_rank(shard, k))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_wrap_and_reject() {
        let r = ShardRange::parse("6-1", 8).unwrap();
        assert_eq!(r.indices(8), [6, 7, 0, 1]);
        assert!(r.contains(7) && r.contains(0) && !r.contains(2));
        assert_eq!(ShardRange::parse("3", 8).unwrap().indices(8), [3]);
        assert_eq!(ShardRange::parse("0-7", 8).unwrap().indices(8).len(), 8);
        assert!(ShardRange::parse("0-8", 8).is_err());
        assert!(ShardRange::parse("a-2", 8).is_err());
    }

    #[test]
    fn layout_covers_every_shard_r_times() {
        for (servers, shards, r) in [(4, 8, 3), (3, 8, 3), (1, 8, 3), (5, 16, 2), (2, 4, 1)] {
            let ranges = layout(servers, shards, r);
            for s in 0..shards {
                let n = ranges.iter().filter(|x| x.contains(s)).count();
                assert_eq!(
                    n,
                    r.min(servers) as usize,
                    "{servers} {shards} {r} shard {s}"
                );
            }
        }
    }

    #[test]
    fn takeover_picks_one_live_server_alike_everywhere() {
        let a = PeerKey([1; 32]);
        let b = PeerKey([2; 32]);
        let mut live = BTreeMap::new();
        live.insert(a, ShardRange { lo: 0, hi: 1 });
        live.insert(b, ShardRange { lo: 2, hi: 3 });
        assert_eq!(responsible(&live, 0), (vec![a], false));
        let (who, takeover) = responsible(&live, 5);
        assert!(takeover);
        assert_eq!(who.len(), 1);
        let other = extra(&live, 5, &who).unwrap();
        assert_ne!(other, who[0]);
        assert_eq!(extra(&live, 5, &[a, b]), None);
    }
}
