//! Counters the node exposes on `/metrics`. Plain atomics: they are not network state, just
//! tallies that the swarm loop and actors bump and the HTTP API reads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds, in seconds, of the request-latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 8] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

/// The node's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests sent over `/dta/rpc`.
    pub rpc_requests_sent: AtomicU64,
    /// Requests received over `/dta/rpc`.
    pub rpc_requests_received: AtomicU64,
    /// Inbound requests that failed (oversized, malformed, timed out).
    pub rpc_inbound_failures: AtomicU64,
    /// Outbound requests that failed.
    pub rpc_outbound_failures: AtomicU64,
    /// Gossip messages received.
    pub gossip_received: AtomicU64,
    /// Gossip messages published.
    pub gossip_published: AtomicU64,
    /// Identify exchanges completed.
    pub identify_received: AtomicU64,
    /// Identity documents verified and stored.
    pub identities_accepted: AtomicU64,
    /// Identity documents rejected.
    pub identities_rejected: AtomicU64,
    /// Custody deliveries and steps refused (a bad signature, a sender that may not ask, a
    /// certificate that does not verify...).
    pub custody_rejected: AtomicU64,
    /// Custody deliveries given up after every attempt (the peer was unreachable or refused
    /// them); the principal's and the beneficiary's resumption sends what matters again.
    pub deliveries_abandoned: AtomicU64,
    /// Release requests a fiduciary holds for their order's release policy (approvals
    /// missing, or the delay running), counted once each.
    pub releases_held: AtomicU64,
    /// Release requests a fiduciary refused under their order's release policy (too early,
    /// vetoed, no releases left).
    pub releases_refused_by_policy: AtomicU64,
    /// HTTP API calls refused for want of a valid token (401).
    pub api_denied_unauthenticated: AtomicU64,
    /// HTTP API calls refused because the token lacks the scope (403).
    pub api_denied_scope: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
}

impl Metrics {
    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the round trip of one request.
    pub fn observe_latency(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// Cumulative bucket counts, total count and sum in seconds.
    pub fn latency(&self) -> (Vec<(f64, u64)>, u64, f64) {
        let buckets = LATENCY_BUCKETS
            .iter()
            .zip(&self.latency_buckets)
            .map(|(bound, count)| (*bound, count.load(Ordering::Relaxed)))
            .collect();
        (
            buckets,
            self.latency_count.load(Ordering::Relaxed),
            self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        )
    }
}
