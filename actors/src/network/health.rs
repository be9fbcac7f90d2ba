//! What a node can tell of the network's health, for operators and benchmarks: a probe of
//! the DHT (a lookup of a random key, timed and counted) and when the node first saw each
//! head announcement (published here, or heard in gossip), from which the spread of gossip
//! over a network is measured.
//!
//! Here: the probe's report and bookkeeping, and the bounded record of heads seen. Not here:
//! the lookup itself (Kademlia's) and what heads mean (the directory's).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use dta_protocol::Cid;
use libp2p::kad;
use tokio::sync::oneshot;

use super::swarm::SwarmLoop;

/// Probes under way at once; past that, a probe is refused.
pub const MAX_PROBES: usize = 8;
/// Heads whose first sighting is kept; the oldest is forgotten past that.
pub const HEADS_REMEMBERED: usize = 4096;

/// What a probe of the DHT found: a lookup of the peers closest to a random key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeReport {
    /// How long the lookup took.
    pub millis: u64,
    /// Requests it sent.
    pub requests: u32,
    /// Requests answered.
    pub successes: u32,
    /// Requests that failed (no connection, no answer in time).
    pub failures: u32,
    /// Peers it found closest to the key (at most a bucket's worth, 20).
    pub closest: usize,
}

/// Why a probe gave no report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// The network task is not running, or stopped before the lookup ended.
    #[error("the network is shutting down")]
    Closed,
    /// Too many probes are under way.
    #[error("{MAX_PROBES} probes are under way already; try again when one has ended")]
    Busy,
}

/// Where this node first saw a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadSource {
    /// This node published it (it is the order's principal).
    Published,
    /// A peer gossiped it.
    Gossip,
}

/// When this node first saw a head, in milliseconds since the Unix epoch (the clock of the
/// machine: comparable between nodes of one machine, roughly between machines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadSeen {
    /// When.
    pub unix_ms: u64,
    /// How.
    pub source: HeadSource,
}

/// The first sighting of each of the last [`HEADS_REMEMBERED`] heads. Shared by the handle
/// and the swarm loop, so it outlives restarts of the network actor.
#[derive(Debug, Clone, Default)]
pub struct SeenHeads(Arc<Mutex<Seen>>);

#[derive(Debug, Default)]
struct Seen {
    at: HashMap<Cid, HeadSeen>,
    order: VecDeque<Cid>,
}

impl SeenHeads {
    /// Records `head` as seen now, unless it was seen before.
    pub fn saw(&self, head: Cid, source: HeadSource) {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.saw_at(head, HeadSeen { unix_ms, source });
    }

    fn saw_at(&self, head: Cid, seen: HeadSeen) {
        let mut inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.at.contains_key(&head) {
            return;
        }
        inner.at.insert(head, seen);
        inner.order.push_back(head);
        while inner.order.len() > HEADS_REMEMBERED {
            if let Some(oldest) = inner.order.pop_front() {
                inner.at.remove(&oldest);
            }
        }
    }

    /// When and how `head` was first seen, if it was (among the last remembered).
    pub fn seen(&self, head: &Cid) -> Option<HeadSeen> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .at
            .get(head)
            .copied()
    }
}

impl SwarmLoop {
    /// Starts a lookup of a random key; `reply` gets its report when it ends.
    pub(super) fn probe(&mut self, reply: oneshot::Sender<Result<ProbeReport, ProbeError>>) {
        if self.probes.len() >= MAX_PROBES {
            let _ = reply.send(Err(ProbeError::Busy));
            return;
        }
        let key = libp2p::PeerId::random();
        let query = self.swarm.behaviour_mut().kad.get_closest_peers(key);
        self.probes.insert(query, reply);
    }

    /// Answers the probe of `query`, if it was one, now that it ended.
    pub(super) fn probe_ended(
        &mut self,
        query: kad::QueryId,
        result: &kad::QueryResult,
        stats: &kad::QueryStats,
    ) {
        let Some(reply) = self.probes.remove(&query) else {
            return;
        };
        let closest = match result {
            kad::QueryResult::GetClosestPeers(Ok(ok)) => ok.peers.len(),
            kad::QueryResult::GetClosestPeers(Err(kad::GetClosestPeersError::Timeout {
                peers,
                ..
            })) => peers.len(),
            _ => 0,
        };
        let _ = reply.send(Ok(ProbeReport {
            millis: stats
                .duration()
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            requests: stats.num_requests(),
            successes: stats.num_successes(),
            failures: stats.num_failures(),
            closest,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(n: u32) -> Cid {
        dta_protocol::block::cid_of(dta_protocol::block::DAG_CBOR, &n.to_be_bytes())
    }

    #[test]
    fn a_head_keeps_its_first_sighting_and_the_oldest_are_forgotten() {
        let seen = SeenHeads::default();
        let first = HeadSeen {
            unix_ms: 10,
            source: HeadSource::Gossip,
        };
        seen.saw_at(cid(0), first);
        seen.saw_at(
            cid(0),
            HeadSeen {
                unix_ms: 20,
                source: HeadSource::Published,
            },
        );
        assert_eq!(seen.seen(&cid(0)), Some(first));
        assert_eq!(seen.seen(&cid(1)), None);
        for n in 1..=HEADS_REMEMBERED as u32 {
            seen.saw(cid(n), HeadSource::Gossip);
        }
        assert_eq!(seen.seen(&cid(0)), None, "the oldest is forgotten");
        assert!(seen.seen(&cid(1)).is_some());
        assert!(seen.seen(&cid(HEADS_REMEMBERED as u32)).is_some());
    }
}
