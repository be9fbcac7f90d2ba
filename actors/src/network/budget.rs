//! Per-peer budgets for a request an honest peer sends rarely: the identity request (sent once
//! per connection, and again when its answer failed). Its answer is the most a node sends for the least a peer asks, so a peer that
//! floods it is refused past its budget and reported, at most once a second, as flooding.
//!
//! What it does not do: budget deliveries or M-Pin steps (their pace is the business's, and
//! bounded by the streams a connection may open) or drop a connection.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// Identity requests a peer may send at once.
pub const IDENTITY_BURST: f64 = 100.0;
/// Identity requests per second a peer may keep sending: far above what an honest node
/// sends (one per connection).
pub const IDENTITY_RATE: f64 = 10.0;
/// A peer over budget is reported no more often than this.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// Peers tracked at most; past that the budgets start afresh (an attacker with that many
/// peer ids gains one burst each, no more).
const MAX_TRACKED: usize = 4096;

/// What spending one request from a peer's budget gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    /// Within budget: answer it.
    Allowed,
    /// Over budget: refuse it; `report` says whether to report the peer now.
    Refused {
        /// The first refusal in [`REPORT_EVERY`].
        report: bool,
    },
}

/// A token bucket per peer.
#[derive(Debug)]
pub struct Budget {
    burst: f64,
    rate: f64,
    peers: HashMap<PeerId, Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
    reported: Option<Instant>,
}

impl Budget {
    /// A budget of `burst` requests at once and `rate` per second.
    pub fn new(burst: f64, rate: f64) -> Self {
        Self {
            burst,
            rate,
            peers: HashMap::new(),
        }
    }

    /// The budget of identity requests.
    pub fn identity_requests() -> Self {
        Self::new(IDENTITY_BURST, IDENTITY_RATE)
    }

    /// Spends one request of `peer`'s at `now`.
    pub fn spend(&mut self, peer: PeerId, now: Instant) -> Spend {
        if self.peers.len() >= MAX_TRACKED && !self.peers.contains_key(&peer) {
            self.peers.clear();
        }
        let bucket = self.peers.entry(peer).or_insert(Bucket {
            tokens: self.burst,
            at: now,
            reported: None,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Spend::Allowed;
        }
        let report = bucket
            .reported
            .is_none_or(|at| now.saturating_duration_since(at) >= REPORT_EVERY);
        if report {
            bucket.reported = Some(now);
        }
        Spend::Refused { report }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_requests_are_refused_and_reported_once_a_second() {
        let mut budget = Budget::new(3.0, 1.0);
        let (peer, start) = (PeerId::random(), Instant::now());
        for _ in 0..3 {
            assert_eq!(budget.spend(peer, start), Spend::Allowed);
        }
        assert_eq!(budget.spend(peer, start), Spend::Refused { report: true });
        assert_eq!(budget.spend(peer, start), Spend::Refused { report: false });
        // Another peer has a budget of its own.
        assert_eq!(budget.spend(PeerId::random(), start), Spend::Allowed);
        // A second later one request's worth came back, and the next refusal is reported.
        let later = start + Duration::from_secs(1);
        assert_eq!(budget.spend(peer, later), Spend::Allowed);
        assert_eq!(budget.spend(peer, later), Spend::Refused { report: true });
    }

    #[test]
    fn an_idle_peer_gets_its_burst_back_and_no_more() {
        let mut budget = Budget::new(2.0, 10.0);
        let (peer, start) = (PeerId::random(), Instant::now());
        assert_eq!(budget.spend(peer, start), Spend::Allowed);
        assert_eq!(budget.spend(peer, start), Spend::Allowed);
        let much_later = start + Duration::from_secs(3600);
        assert_eq!(budget.spend(peer, much_later), Spend::Allowed);
        assert_eq!(budget.spend(peer, much_later), Spend::Allowed);
        assert_eq!(
            budget.spend(peer, much_later),
            Spend::Refused { report: true }
        );
    }
}
