//! Finding what the node is not connected to, through Kademlia: identities by CID and peers by
//! id. A node announces itself in the DHT as the provider of its own identity and of those it
//! hosts; a node that needs an identity it does not know (an order names it, an envelope comes
//! from it) asks the DHT for its providers and sends them the identity request. A request for a
//! peer whose address no behaviour knows waits while a lookup of the peer finds one.
//!
//! Here: the bookkeeping of those queries and the loop's side of them. It verifies nothing:
//! documents go to the identity directory like those of connected peers.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use dta_protocol::Cid;
use dta_protocol::network::Request;
use libp2p::swarm::DialError;
use libp2p::{Multiaddr, PeerId, kad};
use tokio::sync::oneshot;
use tracing::debug;

use super::swarm::{Reply, SwarmLoop};
use super::{MAX_QUEUED_PER_PEER, RequestError};
use crate::metrics::Metrics;

/// Identity lookups under way at once; past that, a lookup is not started (its waiter times
/// out and may ask again).
pub const MAX_IDENTITY_LOOKUPS: usize = 64;
/// Peer lookups under way at once; past that, a request to a peer of no known address fails.
pub const MAX_PEER_LOOKUPS: usize = 64;
/// Providers of one identity sent the identity request.
pub const PROVIDERS_ASKED: usize = 3;
/// The first announcement of the node's identities in the DHT waits until its table holds a
/// bucket's worth of peers or a lookup of its own key has ended (the table then holds the
/// peers closest to it that the network told of), and at most this long after the node first
/// knows a peer. An announcement made while the table holds a few peers reaches peers that are
/// not the closest to the key and has to be made again: each is a lookup of some sixty-five
/// requests, most of them connections, in a network of 1,000, where a fixed wait of 5 s had
/// every node announce twice while the network formed.
pub const FIRST_PROVIDE_WAIT: Duration = Duration::from_secs(30);
/// The second announcement of the node's identities in the DHT comes this long after the
/// first, or as soon as the node's table holds a bucket's worth of peers; the node repeats it
/// about every [`dta_protocol::network::PROVIDE_INTERVAL`] after that (see
/// [`provide_interval`]).
pub const SECOND_PROVIDE: Duration = Duration::from_secs(30);
/// An announcement that failed is made again this long after, twice as long after each
/// further failure in a row, up to [`PROVIDE_RETRY_MAX`]. Kademlia sends no provider record
/// at all when its search for the closest peers times out (a busy network): waiting the full
/// interval left a node that started last unknown for ten minutes, and every order naming it
/// refused.
pub const PROVIDE_RETRY: Duration = Duration::from_secs(15);
/// The longest wait before an announcement that failed is made again.
pub const PROVIDE_RETRY_MAX: Duration = Duration::from_secs(10 * 60);

/// How long after an announcement of its identities the node makes the next:
/// [`dta_protocol::network::PROVIDE_INTERVAL`] less up to a tenth of it, the amount set by the
/// node's peer id. Nodes started together would otherwise announce together for as long as
/// they run, each announcement a lookup of some sixty-five requests.
pub fn provide_interval(local: &PeerId) -> Duration {
    let interval = dta_protocol::network::PROVIDE_INTERVAL;
    // The last bytes of a peer id are those of its public key: as good as random.
    let bytes = local.to_bytes();
    let share = match bytes.as_slice() {
        [.., a, b] => u32::from(u16::from_le_bytes([*a, *b])),
        _ => 0,
    };
    interval - interval / 10 * share / 65_536
}

/// What waits for a peer's address.
pub(super) enum Waiting {
    /// A request of a command, with where its answer goes.
    Request(Request, Reply),
    /// The identity request (of an identity lookup).
    Identity,
}

/// A provider query under way.
pub(super) struct IdentityLookup {
    identity: Cid,
    asked: HashSet<PeerId>,
    replies: Vec<oneshot::Sender<usize>>,
}

/// Queries under way and what waits for them.
#[derive(Default)]
pub(super) struct Lookups {
    /// Provider queries: the identity looked for, how many providers were asked, and who
    /// waits to hear that number when the query ends.
    identities: HashMap<kad::QueryId, IdentityLookup>,
    /// Peer queries, with the peer looked for.
    peers: HashMap<kad::QueryId, PeerId>,
    /// What waits for each peer's address.
    waiting: HashMap<PeerId, Vec<Waiting>>,
    /// When the node's identities are next announced in the DHT; none: at the next chance
    /// (the first one, see [`FIRST_PROVIDE_WAIT`]).
    next_provide: Option<Instant>,
    /// Announcements made since the start.
    provided: u32,
    /// Whether one went out once the node's table held a full bucket's worth of peers.
    provided_to_many: bool,
    /// When the node first knew a peer.
    first_peer_at: Option<Instant>,
    /// Whether a lookup of the node's own key ended with an answer (Kademlia's bootstrap or
    /// the loop's `look_around`).
    looked_around: bool,
    /// Announcements that failed since the last that went out.
    provide_failures: u32,
    /// How long after an announcement the next goes out (see [`provide_interval`]); zero:
    /// [`dta_protocol::network::PROVIDE_INTERVAL`].
    interval: Duration,
    /// Bootstraps started only to clear the one Kademlia had scheduled (see
    /// [`SwarmLoop::bootstrap_progressed`]).
    forgone_bootstraps: HashSet<kad::QueryId>,
    /// How many peers answered the lookup of the node's own key of each bootstrap under way.
    bootstrap_answers: HashMap<kad::QueryId, u32>,
}

impl Lookups {
    /// The bookkeeping of the node of peer id `local`.
    pub(super) fn new(local: &PeerId) -> Self {
        Self {
            interval: provide_interval(local),
            ..Self::default()
        }
    }

    /// How long after an announcement the next goes out.
    fn interval(&self) -> Duration {
        if self.interval.is_zero() {
            dta_protocol::network::PROVIDE_INTERVAL
        } else {
            self.interval
        }
    }

    /// Has the node's identities announced again at the next chance (one was added).
    pub(super) fn provide_soon(&mut self) {
        self.next_provide = None;
    }

    /// An announcement failed: it is made again after [`PROVIDE_RETRY`], doubled for each
    /// failure before it (unless one is due sooner).
    pub(super) fn provide_failed(&mut self, now: Instant) {
        let wait = PROVIDE_RETRY
            .saturating_mul(1 << self.provide_failures.min(8))
            .min(PROVIDE_RETRY_MAX);
        let retry = now + wait;
        // Several identities announced at once fail together: they count as one failure.
        if self.next_provide.is_none_or(|at| at > retry) {
            self.next_provide = Some(retry);
            self.provide_failures += 1;
        }
    }

    /// A DHT query made progress (`step`): a lookup of the node's own key (`local`) that had
    /// an answer (`answered`, in that step) lets the first announcement go out. Kademlia's
    /// bootstrap looks up the node's own key in its first step (the rest, a lookup per bucket
    /// farther out, the loop cuts short: its last step asks no one); a closest-peers query
    /// has its answer in its last.
    pub(super) fn query_progressed(
        &mut self,
        local: &PeerId,
        result: &kad::QueryResult,
        step: &kad::ProgressStep,
        answered: bool,
    ) {
        let own_key = match result {
            kad::QueryResult::Bootstrap(_) => step.count.get() == 1,
            kad::QueryResult::GetClosestPeers(Ok(kad::GetClosestPeersOk { key, .. }))
            | kad::QueryResult::GetClosestPeers(Err(kad::GetClosestPeersError::Timeout {
                key,
                ..
            })) => step.last && *key == local.to_bytes(),
            _ => false,
        };
        self.looked_around |= own_key && answered;
    }

    /// Whether the node's identities are to be announced now, its table holding `table`
    /// peers; records that they are. The first announcement waits for a full bucket or a
    /// lookup of the node's own key (see [`FIRST_PROVIDE_WAIT`]); one made before the table
    /// held a bucket's worth is made again as soon as it does (or [`SECOND_PROVIDE`] later).
    fn provide_due(&mut self, now: Instant, table: usize) -> bool {
        if table == 0 {
            return false;
        }
        let full = table >= kad::K_VALUE.get();
        let table_grew = !self.provided_to_many && full;
        let first_peer_at = *self.first_peer_at.get_or_insert(now);
        let due = match self.next_provide {
            Some(at) => now >= at,
            None => {
                self.provided > 0 || self.looked_around || now >= first_peer_at + FIRST_PROVIDE_WAIT
            }
        };
        if !(due || table_grew) {
            return false;
        }
        self.provided_to_many |= full;
        self.provided += 1;
        // Each announcement is a DHT query that connects to about twenty peers, and in a
        // network that forms at once every peer it reaches is a connection made again:
        // after the one that reaches a full table, about every hour.
        let first_only = self.provided == 1 && !self.provided_to_many;
        self.next_provide = Some(if first_only {
            now + SECOND_PROVIDE
        } else {
            now + self.interval()
        });
        true
    }

    /// An announcement went out: the next failure waits [`PROVIDE_RETRY`] again.
    pub(super) fn provide_succeeded(&mut self) {
        self.provide_failures = 0;
    }
}

/// The DHT key under which an identity's providers are found.
pub fn provider_key(identity: &Cid) -> kad::RecordKey {
    kad::RecordKey::new(&identity.to_bytes())
}

impl SwarmLoop {
    /// A bootstrap made progress: its first step is the lookup of the node's own key (the
    /// rest, a lookup per bucket farther out, the loop cuts short), and it ends with its last.
    ///
    /// Kademlia schedules the next bootstrap whenever a peer enters a table of fewer than a
    /// bucket's worth, and starts it as soon as the one under way ends, without looking at
    /// the table again; the peers a bootstrap meets enter the table while it runs, so every
    /// node bootstrapped twice while a network formed, the second time with a full table,
    /// asking again the peers it had just asked. Once the lookup of the node's own key heard
    /// from a bucket's worth of peers, or the table holds as many, the one scheduled is
    /// dropped: starting a bootstrap clears the schedule, and one ended before Kademlia polls
    /// it asks no one. (The answers count as well as the table: peers enter the table as
    /// their identify messages arrive, and on a loaded machine that was after the bootstrap
    /// ended for four nodes in ten of a 100-node testnet.)
    pub(super) fn bootstrap_progressed(
        &mut self,
        query: kad::QueryId,
        step: &kad::ProgressStep,
        stats: &kad::QueryStats,
    ) {
        if step.count.get() == 1 {
            if stats.num_requests() > 0 {
                Metrics::bump(&self.metrics.bootstraps);
            }
            self.lookups
                .bootstrap_answers
                .insert(query, stats.num_successes());
        }
        if !step.last {
            return;
        }
        let answers = self.lookups.bootstrap_answers.remove(&query).unwrap_or(0);
        if self.lookups.forgone_bootstraps.remove(&query) {
            return;
        }
        let bucket = kad::K_VALUE.get();
        if usize::try_from(answers).unwrap_or(usize::MAX) < bucket && self.table_size() < bucket {
            return;
        }
        let kad = &mut self.swarm.behaviour_mut().kad;
        if let Ok(forgone) = kad.bootstrap() {
            if let Some(mut query) = kad.query_mut(&forgone) {
                query.finish();
            }
            self.lookups.forgone_bootstraps.insert(forgone);
        }
    }

    /// Starts a lookup of `identity`'s providers, unless one is under way; `reply` hears how
    /// many providers were asked when it ends (none at once when too many are under way).
    pub(super) fn find_identity(&mut self, identity: Cid, reply: oneshot::Sender<usize>) {
        let lookups = &mut self.lookups.identities;
        if let Some(lookup) = lookups.values_mut().find(|l| l.identity == identity) {
            lookup.replies.push(reply);
            return;
        }
        if lookups.len() >= MAX_IDENTITY_LOOKUPS {
            let _ = reply.send(0);
            return;
        }
        debug!(%identity, "looking for the providers of an identity");
        Metrics::bump(&self.metrics.identity_lookups);
        let query = self
            .swarm
            .behaviour_mut()
            .kad
            .get_providers(provider_key(&identity));
        let lookup = IdentityLookup {
            identity,
            asked: HashSet::new(),
            replies: vec![reply],
        };
        self.lookups.identities.insert(query, lookup);
    }

    /// Whether a request to `peer` can go out: it is connected, or a dial to it is under way
    /// or could start now (some behaviour knows an address of it).
    pub(super) fn reachable(&mut self, peer: PeerId) -> bool {
        if self.swarm.is_connected(&peer) {
            return true;
        }
        // The default condition: not connected and no dial under way.
        let dial = super::peers::dial_of(peer, Vec::new());
        match self.swarm.dial(dial) {
            Ok(()) => true,
            Err(DialError::NoAddresses) => false,
            // Dialing already, or refused (blocked, not allowed): the request fails on its own.
            Err(_) => true,
        }
    }

    /// Keeps `waiting` until `peer` is found, and starts looking for it.
    pub(super) fn park(&mut self, peer: PeerId, waiting: Waiting) {
        let under_way = self.lookups.peers.values().any(|p| *p == peer);
        if !under_way && self.lookups.peers.len() >= MAX_PEER_LOOKUPS {
            fail(peer, waiting);
            return;
        }
        let queue = self.lookups.waiting.entry(peer).or_default();
        if queue.len() >= MAX_QUEUED_PER_PEER {
            if let Waiting::Request(_, reply) = waiting {
                let _ = reply.send(Err(RequestError::Busy(peer)));
            }
            return;
        }
        queue.push(waiting);
        if !under_way {
            debug!(%peer, "looking for a peer of no known address");
            Metrics::bump(&self.metrics.peer_lookups);
            let query = self.swarm.behaviour_mut().kad.get_closest_peers(peer);
            self.lookups.peers.insert(query, peer);
        }
    }

    /// Sends what waited for `peer`, now that it is connected or found (or fails it, when it
    /// was not found).
    pub(super) fn release_waiting(&mut self, peer: PeerId) {
        let Some(waiting) = self.lookups.waiting.remove(&peer) else {
            return;
        };
        let reachable = self.reachable(peer);
        for waiting in waiting {
            match waiting {
                _ if !reachable => fail(peer, waiting),
                Waiting::Request(request, reply) => self.send_or_queue(peer, request, reply),
                Waiting::Identity => self.request_identity(peer),
            }
        }
    }

    /// Kademlia reported progress on a query: providers found, a peer found, or the end.
    pub(super) fn on_query(&mut self, query: kad::QueryId, result: kad::QueryResult, last: bool) {
        match result {
            kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
                providers,
                ..
            })) => self.on_providers(query, providers),
            kad::QueryResult::GetProviders(_) => {}
            kad::QueryResult::GetClosestPeers(result) => {
                let found = match result {
                    Ok(ok) => ok.peers,
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
                };
                self.on_closest_peers(query, found);
            }
            kad::QueryResult::StartProviding(Err(err)) => {
                debug!(%err, "identity not announced in the DHT; announcing again soon");
                self.lookups.provide_failed(Instant::now());
            }
            kad::QueryResult::StartProviding(Ok(announced)) => {
                self.lookups.provide_succeeded();
                let own = dta_protocol::identity::claimed_identity(&self.identity_document);
                if announced.key == provider_key(&own) {
                    self.snapshot
                        .send_if_modified(|s| !std::mem::replace(&mut s.announced, true));
                }
            }
            _ => {}
        }
        if last && let Some(lookup) = self.lookups.identities.remove(&query) {
            if lookup.asked.is_empty() {
                debug!(identity = %lookup.identity, "no provider of the identity found");
            }
            for reply in lookup.replies {
                let _ = reply.send(lookup.asked.len());
            }
        }
    }

    fn on_providers(&mut self, query: kad::QueryId, providers: HashSet<PeerId>) {
        let local = *self.swarm.local_peer_id();
        let Some(lookup) = self.lookups.identities.get_mut(&query) else {
            return;
        };
        let identity = lookup.identity;
        let room = PROVIDERS_ASKED.saturating_sub(lookup.asked.len());
        // Every peer that holds the record names the same providers: each is asked once.
        let chosen: Vec<PeerId> = providers
            .into_iter()
            .filter(|p| *p != local && !lookup.asked.contains(p))
            .take(room)
            .collect();
        lookup.asked.extend(chosen.iter().copied());
        let done = lookup.asked.len() >= PROVIDERS_ASKED;
        for provider in chosen {
            debug!(%identity, %provider, "asking a provider for an identity");
            self.request_identity(provider);
        }
        if done && let Some(mut query) = self.swarm.behaviour_mut().kad.query_mut(&query) {
            query.finish();
        }
    }

    fn on_closest_peers(&mut self, query: kad::QueryId, found: Vec<kad::PeerInfo>) {
        let Some(peer) = self.lookups.peers.remove(&query) else {
            return;
        };
        let addresses: Vec<Multiaddr> = found
            .into_iter()
            .find(|info| info.peer_id == peer)
            .map(|info| info.addrs)
            .unwrap_or_default();
        if !addresses.is_empty()
            && !self.swarm.is_connected(&peer)
            && let Err(err) = self.swarm.dial(super::peers::dial_of(peer, addresses))
        {
            debug!(%peer, %err, "cannot dial a peer found in the DHT");
        }
        self.release_waiting(peer);
    }

    /// Announces the node's identities (its own and those it hosts) as provided by it, when
    /// that is due (see [`Lookups::provide_due`]).
    pub(super) fn provide_if_due(&mut self) {
        let table = self.table_size();
        if !self.lookups.provide_due(Instant::now(), table) {
            return;
        }
        let own = dta_protocol::identity::claimed_identity(&self.identity_document);
        let identities = std::iter::once(own).chain(self.hosted.cids());
        for identity in identities {
            let kad = &mut self.swarm.behaviour_mut().kad;
            if let Err(err) = kad.start_providing(provider_key(&identity)) {
                debug!(%identity, %err, "identity not announced in the DHT");
            }
        }
    }
}

/// A DHT query's kind, for logs.
pub(super) fn query_kind(result: &kad::QueryResult) -> &'static str {
    match result {
        kad::QueryResult::Bootstrap(_) => "bootstrap",
        kad::QueryResult::GetClosestPeers(_) => "closest peers",
        kad::QueryResult::GetProviders(_) => "providers",
        kad::QueryResult::StartProviding(_) | kad::QueryResult::RepublishProvider(_) => "provide",
        kad::QueryResult::GetRecord(_)
        | kad::QueryResult::PutRecord(_)
        | kad::QueryResult::RepublishRecord(_) => "record",
    }
}

/// Fails what waited for a peer that was not found.
fn fail(peer: PeerId, waiting: Waiting) {
    if let Waiting::Request(_, reply) = waiting {
        let _ = reply.send(Err(RequestError::Unreachable(peer)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dta_protocol::network::PROVIDE_INTERVAL;
    use std::num::NonZeroUsize;

    /// The only step of a query.
    const ONLY_STEP: kad::ProgressStep = kad::ProgressStep {
        count: NonZeroUsize::MIN,
        last: true,
    };

    /// A closest-peers query's result for `key`.
    fn closest_peers(key: &PeerId) -> kad::QueryResult {
        kad::QueryResult::GetClosestPeers(Ok(kad::GetClosestPeersOk {
            key: key.to_bytes(),
            peers: Vec::new(),
        }))
    }

    #[test]
    fn the_first_announcement_waits_for_a_lookup_of_the_node_s_own_key_or_a_full_bucket() {
        let local = PeerId::random();
        let start = Instant::now();
        let mut lookups = Lookups::default();
        // No peer, nothing to tell; a few peers: not yet, however long they have been known
        // (short of the longest wait).
        assert!(!lookups.provide_due(start, 0));
        assert!(!lookups.provide_due(start, 3));
        let later = start + FIRST_PROVIDE_WAIT / 2;
        assert!(!lookups.provide_due(later, 3));
        // Lookups of other keys, or of its own that nobody answered, do not count.
        lookups.query_progressed(&local, &closest_peers(&PeerId::random()), &ONLY_STEP, true);
        lookups.query_progressed(&local, &closest_peers(&local), &ONLY_STEP, false);
        assert!(!lookups.provide_due(later, 3));
        // Its own key looked up: it goes out, and again once the table holds a bucket's worth.
        lookups.query_progressed(&local, &closest_peers(&local), &ONLY_STEP, true);
        assert!(lookups.provide_due(later, 3));
        assert!(!lookups.provide_due(later, 3));
        assert!(lookups.provide_due(later, kad::K_VALUE.get()));
        assert_eq!(lookups.next_provide, Some(later + PROVIDE_INTERVAL));
        assert!(!lookups.provide_due(later, kad::K_VALUE.get()));

        // A full bucket lets the first go out at once, and no second follows.
        let mut lookups = Lookups::default();
        assert!(lookups.provide_due(start, kad::K_VALUE.get()));
        assert_eq!(lookups.next_provide, Some(start + PROVIDE_INTERVAL));
        // Neither a lookup nor a full bucket: the longest wait, then a second in a while.
        let mut lookups = Lookups::default();
        assert!(!lookups.provide_due(start, 3));
        assert!(lookups.provide_due(start + FIRST_PROVIDE_WAIT, 3));
        assert_eq!(
            lookups.next_provide,
            Some(start + FIRST_PROVIDE_WAIT + SECOND_PROVIDE)
        );
    }

    #[test]
    fn a_bootstrap_answered_in_its_first_step_lets_the_first_announcement_go_out() {
        let local = PeerId::random();
        let start = Instant::now();
        let mut lookups = Lookups::default();
        assert!(!lookups.provide_due(start, 3));
        let bootstrap = kad::QueryResult::Bootstrap(Ok(kad::BootstrapOk {
            peer: local,
            num_remaining: 2,
        }));
        let step = |count: usize, last: bool| kad::ProgressStep {
            count: NonZeroUsize::new(count).unwrap(),
            last,
        };
        // The lookup of its own key, answered; then the bucket refreshes, cut short, the last
        // one asking no one.
        lookups.query_progressed(&local, &bootstrap, &step(1, false), true);
        lookups.query_progressed(&local, &bootstrap, &step(2, false), false);
        lookups.query_progressed(&local, &bootstrap, &step(3, true), false);
        assert!(lookups.provide_due(start, 3));
        // A bootstrap whose own-key lookup nobody answered does not count, whatever follows.
        let mut lookups = Lookups::default();
        assert!(!lookups.provide_due(start, 3));
        lookups.query_progressed(&local, &bootstrap, &step(1, false), false);
        lookups.query_progressed(&local, &bootstrap, &step(2, true), true);
        assert!(!lookups.provide_due(start, 3));
    }

    #[test]
    fn nodes_started_together_announce_again_at_moments_of_their_own() {
        let start = Instant::now();
        let next: Vec<Duration> = (0..50)
            .map(|_| {
                let mut lookups = Lookups::new(&PeerId::random());
                assert!(lookups.provide_due(start, kad::K_VALUE.get()));
                lookups.next_provide.unwrap() - start
            })
            .collect();
        let earliest = PROVIDE_INTERVAL - PROVIDE_INTERVAL / 10;
        for wait in &next {
            assert!(
                (earliest..=PROVIDE_INTERVAL).contains(wait),
                "{wait:?} is not within a tenth below {PROVIDE_INTERVAL:?}"
            );
        }
        // Spread over the tenth: no two minutes hold more than a few of the fifty.
        let mut per_minute = std::collections::HashMap::new();
        for wait in &next {
            *per_minute.entry(wait.as_secs() / 60).or_insert(0) += 1;
        }
        let crowded = per_minute.values().max().copied().unwrap_or(0);
        assert!(
            per_minute.len() >= 4 && crowded <= 25,
            "the fifty fall in {} minutes, {crowded} in one",
            per_minute.len()
        );
        // A node keeps its moment: the same peer id, the same wait.
        let peer = PeerId::random();
        assert_eq!(provide_interval(&peer), provide_interval(&peer));
    }

    #[test]
    fn a_failed_announcement_is_made_again_within_seconds_then_less_and_less_often() {
        let now = Instant::now();
        let mut lookups = Lookups {
            provided: 1,
            next_provide: Some(now + PROVIDE_INTERVAL),
            ..Lookups::default()
        };
        lookups.provide_failed(now);
        assert_eq!(lookups.next_provide, Some(now + PROVIDE_RETRY));
        // The identities announced with it fail at the same moment: no longer wait for them.
        lookups.provide_failed(now);
        assert_eq!(lookups.next_provide, Some(now + PROVIDE_RETRY));
        // The retry fails in turn: it waits twice as long, and so on up to the interval.
        let later = now + PROVIDE_RETRY;
        lookups.next_provide = Some(later + PROVIDE_INTERVAL);
        lookups.provide_failed(later);
        assert_eq!(lookups.next_provide, Some(later + 2 * PROVIDE_RETRY));
        for _ in 0..20 {
            lookups.next_provide = None;
            lookups.provide_failed(later);
        }
        assert_eq!(lookups.next_provide, Some(later + PROVIDE_RETRY_MAX));
        // One that goes out starts the count again.
        lookups.provide_succeeded();
        lookups.next_provide = Some(later + PROVIDE_INTERVAL);
        lookups.provide_failed(later);
        assert_eq!(lookups.next_provide, Some(later + PROVIDE_RETRY));
    }
}
