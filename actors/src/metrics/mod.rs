//! Counters and histograms the node exposes on `/metrics`. Plain atomics (and, for the
//! labelled families of [`family`], small capped maps): they are not network state, just
//! tallies that the swarm loop, the actors and the HTTP API bump and `/metrics` reads.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dta_protocol::Cid;
use dta_protocol::misconduct::Offence;

pub mod family;

pub use family::{CounterFamily, HistogramFamily, HistogramReading};

/// Upper bounds, in seconds, of the request-latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 8] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

/// The two parts of a release policy's cost to a fiduciary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyStep {
    /// An approval or veto arrived: its signature checked, the envelope kept, the vote
    /// checked against the order's policy and recorded.
    Vote,
    /// A release request met a policy: the recorded votes read and the policy evaluated.
    Check,
}

impl PolicyStep {
    /// Both, in the order [`Metrics::policy_time`] reports them.
    pub const ALL: [PolicyStep; 2] = [PolicyStep::Vote, PolicyStep::Check];

    /// The label value on `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            PolicyStep::Vote => "vote",
            PolicyStep::Check => "check",
        }
    }
}

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
    /// DHT lookups of an identity's providers started (an identity this node needed and did
    /// not know).
    pub identity_lookups: AtomicU64,
    /// DHT lookups of a peer's addresses started (a request to a peer of no known address).
    pub peer_lookups: AtomicU64,
    /// Kademlia bootstraps (lookups of the node's own key that asked at least one peer).
    pub bootstraps: AtomicU64,
    /// Connections established that this node dialed (each a transport handshake).
    pub connections_dialed: AtomicU64,
    /// Connections established that a peer dialed.
    pub connections_accepted: AtomicU64,
    /// Peers disconnected because they speak another major version of the dta protocol.
    pub peers_refused_version: AtomicU64,
    /// Identity documents verified and stored.
    pub identities_accepted: AtomicU64,
    /// Identity documents rejected.
    pub identities_rejected: AtomicU64,
    /// Custody deliveries and steps refused (a bad signature, a sender that may not ask, a
    /// certificate that does not verify...), by reason: `invalid`, `unknown_identity`,
    /// `exists`, `conflict`, `not_found`, `unreachable`, `internal`.
    pub custody_rejected: CounterFamily,
    /// Time a role actor took over one delivered envelope, by role and envelope kind.
    pub custody_steps: HistogramFamily,
    /// Records entering a state, by kind (`order`, `mpin`), role and state: orders certified
    /// and released, keys generated without a dealer, committees refreshed, M-Pin shares
    /// issued or refused.
    pub record_states: CounterFamily,
    /// Signatures made with a key nobody holds, by scheme (`bip340` for FROST, or threshold
    /// BLS), as they land at the coordinating principal.
    pub threshold_signatures: CounterFamily,
    /// Custody deliveries sent again after a failed attempt.
    pub delivery_retries: AtomicU64,
    /// Bitswap blocks this node fetched from peers, and their bytes.
    pub bitswap_blocks_received: AtomicU64,
    /// Bytes of those blocks.
    pub bitswap_bytes_received: AtomicU64,
    /// Bitswap blocks this node served to peers.
    pub bitswap_blocks_sent: AtomicU64,
    /// Bytes of those blocks.
    pub bitswap_bytes_sent: AtomicU64,
    /// HTTP API calls answered, by route template, method and status.
    pub http_requests: CounterFamily,
    /// Time the HTTP API took to answer, by route template and method.
    pub http_latency: HistogramFamily,
    /// Keystore operations and their time, by backend (`soft`, `pkcs11`) and operation.
    pub keystore_operations: HistogramFamily,
    /// Custody deliveries given up after every attempt (the peer was unreachable or refused
    /// them); the principal's and the beneficiary's resumption sends what matters again.
    pub deliveries_abandoned: AtomicU64,
    /// Release requests a fiduciary holds for their order's release policy (approvals
    /// missing, or the delay running), counted once each.
    pub releases_held: AtomicU64,
    /// Release requests a fiduciary refused under their order's release policy (too early,
    /// vetoed, no releases left).
    pub releases_refused_by_policy: AtomicU64,
    /// Certificate pairing checks the role actors had made (several waiting at once are
    /// checked in one batch, but each counts).
    pub certificate_checks: AtomicU64,
    /// HTTP API calls refused for want of a valid token (401).
    pub api_denied_unauthenticated: AtomicU64,
    /// HTTP API calls refused because the token lacks the scope (403).
    pub api_denied_scope: AtomicU64,
    /// Time spent on policy work, by [`PolicyStep`] (microseconds, and how many).
    policy_micros: [AtomicU64; 2],
    policy_steps: [AtomicU64; 2],
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    /// Offences this node saw, by offence and culprit (see [`Metrics::record_misconduct`]).
    misconduct: Mutex<BTreeMap<(Offence, Option<Cid>), u64>>,
}

/// Most series (offence and culprit) [`Metrics::record_misconduct`] keeps apart; offences of
/// culprits past them are still logged, and counted under no culprit.
pub const MAX_CULPRITS: usize = 256;

impl Metrics {
    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one offence of `culprit`'s. The culprits are identities this node verified,
    /// so only members can add labels, and no more than [`MAX_CULPRITS`] series: past that,
    /// offences of new culprits are counted under no culprit.
    pub fn record_misconduct(&self, offence: Offence, culprit: Option<Cid>) {
        let mut seen = self
            .misconduct
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let culprits = seen.len();
        let culprit =
            culprit.filter(|c| culprits < MAX_CULPRITS || seen.contains_key(&(offence, Some(*c))));
        *seen.entry((offence, culprit)).or_default() += 1;
    }

    /// Offences seen so far, by offence and culprit (none for those counted past
    /// [`MAX_CULPRITS`]).
    pub fn misconduct(&self) -> Vec<(Offence, Option<Cid>, u64)> {
        self.misconduct
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|((offence, culprit), count)| (*offence, *culprit, *count))
            .collect()
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

    /// Records the time one policy step took (wall time of the step: an upper bound of its
    /// CPU time).
    pub fn observe_policy(&self, step: PolicyStep, elapsed: Duration) {
        self.policy_micros[step as usize].fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.policy_steps[step as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// How many steps of this kind ran, and the time they took in all.
    pub fn policy_time(&self, step: PolicyStep) -> (u64, Duration) {
        (
            self.policy_steps[step as usize].load(Ordering::Relaxed),
            Duration::from_micros(self.policy_micros[step as usize].load(Ordering::Relaxed)),
        )
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
