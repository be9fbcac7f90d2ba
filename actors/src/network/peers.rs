//! Connection management: a node keeps connections with about a target number of peers
//! rather than with every peer it learns of. It dials peers it knows of (from Kademlia, mDNS,
//! its peer book) only while it has fewer than the target, and keeps those connections and
//! the ones peers dialed. The others it made in passing (a Kademlia query's, a request to a
//! peer it does not keep) it closes once idle while it has more than the target and no DHT
//! query of its own is under way or just ended: the peer at the other end did not dial them to
//! keep them either, so no one dials again for them. Once it has three times the target of
//! peers, it closes the idlest of any kind down to twice the target. Peers with requests under
//! way and peers met or used in the last few seconds are spared, and so are the gossip mesh's
//! from the second rule. A hard cap on connections (refused past it) is the
//! swarm's, see `dta_protocol::network::max_connections`. Kademlia's table takes a new peer
//! only where a bucket has room ([`add_to_table`]).
//!
//! Here: the bookkeeping and the choice of whom to close (pure, tested alone), what enters
//! the table, and the loop's side of it. Finding a peer that is not connected is in `lookup`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, DialError};
use libp2p::{Multiaddr, PeerId, kad};
use tracing::{debug, warn};

use super::swarm::SwarmLoop;

/// A new connection is not closed for idleness before this: the peer may be about to ask
/// something (its identity request, a Kademlia bootstrap).
pub const GRACE: Duration = Duration::from_secs(5);
/// A connection used this recently is not idle.
pub const RECENT_USE: Duration = Duration::from_secs(5);

/// First wait before a node with no peer dials its bootstrap addresses again; it doubles up to
/// [`BOOTSTRAP_RETRY_MAX`].
pub const BOOTSTRAP_RETRY_FIRST: Duration = Duration::from_secs(2);
/// Longest wait between two dials of the bootstrap addresses.
pub const BOOTSTRAP_RETRY_MAX: Duration = Duration::from_secs(60);

/// Adds `address` of `peer` to Kademlia's table when the peer is in it already or its bucket
/// has room; whether it did. A full bucket is left as it is: Kademlia would dial the bucket's
/// oldest peer to see whether it is still there, and since a node keeps connections with a
/// few of the peers in its table, that is a connection for every peer met, which the peer
/// dialed meets in turn (a 250-node testnet made six connections a second per node this way,
/// for minutes, and trimmed as many). A peer that is gone leaves the table when a query
/// fails to reach it, which makes room.
pub(super) fn add_to_table(
    kad: &mut kad::Behaviour<kad::store::MemoryStore>,
    peer: PeerId,
    address: Multiaddr,
) -> bool {
    let admitted = kad.kbucket(peer).is_none_or(|bucket| {
        bucket.num_entries() < kad::K_VALUE.get()
            || bucket
                .iter()
                .any(|entry| *entry.node.key.preimage() == peer)
    });
    if admitted {
        kad.add_address(&peer, address);
    }
    admitted
}

/// A dial of `peer`, at `addresses` or wherever the behaviours know. Like every dial of the
/// swarm, it goes out from a new local port (`dta_protocol::new_port`).
pub(super) fn dial_of(peer: PeerId, addresses: Vec<Multiaddr>) -> DialOpts {
    let dial = DialOpts::peer_id(peer);
    if addresses.is_empty() {
        dial.build()
    } else {
        dial.addresses(addresses).build()
    }
}

/// A dial of an address whose peer is not known yet.
pub(super) fn dial_of_address(address: Multiaddr) -> DialOpts {
    DialOpts::unknown_peer_id().address(address).build()
}

/// The bootstrap addresses and when to dial them again. A bootstrap peer that was full or
/// not up yet when the node started would otherwise leave it alone for good.
#[derive(Debug, Default)]
pub(super) struct Bootstrap {
    pub(super) addresses: Vec<Multiaddr>,
    next: Option<Instant>,
    wait: Duration,
    /// Addresses whose failure was logged as a warning: once per address and start.
    warned: std::collections::HashSet<Multiaddr>,
}

impl Bootstrap {
    /// Whether this failure of `address` is its first (worth a warning; the retries are not).
    pub(super) fn first_failure(&mut self, address: &Multiaddr) -> bool {
        self.warned.insert(address.clone())
    }
}

/// When a connected peer came, when it was last used, and whether it is kept.
#[derive(Debug, Clone, Copy)]
struct Activity {
    since: Instant,
    last_used: Instant,
    /// One of its connections was dialed by the peer, or by this node to keep it.
    kept: bool,
}

/// The connected peers' activity and the target.
#[derive(Debug)]
pub(super) struct Connections {
    target: usize,
    peers: HashMap<PeerId, Activity>,
    /// Dials under way of connections to keep.
    dials_to_keep: HashSet<ConnectionId>,
    /// When the node's last DHT query ended.
    last_query_ended: Option<Instant>,
}

impl Connections {
    pub(super) fn new(target: usize) -> Self {
        Self {
            target: target.max(1),
            peers: HashMap::new(),
            dials_to_keep: HashSet::new(),
            last_query_ended: None,
        }
    }

    /// One of the node's DHT queries ended.
    pub(super) fn query_ended(&mut self, now: Instant) {
        self.last_query_ended = Some(now);
    }

    /// Whether the connections made in passing may close: no DHT query of the node is under
    /// way (`querying`) or ended in the last [`RECENT_USE`]. Kademlia sends its requests over
    /// the connections its queries made, and a provider record to the closest peers it found
    /// only as the query ends; closed under it, they were lost, and a 1,000-node testnet's
    /// orders between strangers failed to find identities.
    fn dht_quiet(&self, now: Instant, querying: bool) -> bool {
        !querying
            && self
                .last_query_ended
                .is_none_or(|ended| now.duration_since(ended) >= RECENT_USE)
    }

    /// The connection of this dial is one to keep.
    pub(super) fn keep_dial(&mut self, connection: ConnectionId) {
        self.dials_to_keep.insert(connection);
    }

    /// A connection came up or its dial failed: whether it was dialed to be kept.
    pub(super) fn dial_ended(&mut self, connection: &ConnectionId) -> bool {
        self.dials_to_keep.remove(connection)
    }

    /// The number of peers to keep connections with.
    pub(super) fn target(&self) -> usize {
        self.target
    }

    /// Past this many connected peers, the idlest are closed down to [`Self::low_water`].
    pub(super) fn high_water(&self) -> usize {
        3 * self.target
    }

    /// What trimming leaves. Twice the target: each node dials up to the target and is dialed
    /// by about as many, so a node of a formed network has about twice its target of peers.
    /// Trimming down to the target itself (past twice as many) cut the peers of others below
    /// theirs, who dialed again: a 100-node testnet's first node opened 635 connections and
    /// closed 798 in two minutes.
    pub(super) fn low_water(&self) -> usize {
        2 * self.target
    }

    /// A connection with a peer came up; `kept` if the peer dialed it or this node did to
    /// keep it.
    pub(super) fn connected(&mut self, peer: PeerId, now: Instant, kept: bool) {
        self.peers
            .entry(peer)
            .and_modify(|activity| activity.kept |= kept)
            .or_insert(Activity {
                since: now,
                last_used: now,
                kept,
            });
    }

    /// A peer's last connection closed.
    pub(super) fn disconnected(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }

    /// A request went to or came from a peer.
    pub(super) fn used(&mut self, peer: &PeerId, now: Instant) {
        if let Some(activity) = self.peers.get_mut(peer) {
            activity.last_used = now;
        }
    }

    /// How many more peers to dial, given those connected and the dials under way.
    pub(super) fn wanted(&self, connected: usize, dialing: usize) -> usize {
        self.target.saturating_sub(connected + dialing)
    }

    /// The peers to disconnect, idlest first, none within its grace, none used recently and
    /// none `busy`: those not kept, while more than the target are connected and the DHT is
    /// quiet (see [`Self::dht_quiet`]; `querying` says whether a query is under way); then,
    /// while more than the high water mark still are, any but those `in_mesh`, down to the
    /// low water mark.
    pub(super) fn to_trim(
        &self,
        now: Instant,
        querying: bool,
        busy: impl Fn(&PeerId) -> bool,
        in_mesh: impl Fn(&PeerId) -> bool,
    ) -> Vec<PeerId> {
        let passing_may_go = self.dht_quiet(now, querying);
        let mut idle: Vec<(Instant, PeerId, bool)> = self
            .peers
            .iter()
            .filter(|(peer, activity)| {
                now.duration_since(activity.since) >= GRACE
                    && now.duration_since(activity.last_used) >= RECENT_USE
                    && !busy(peer)
            })
            .map(|(peer, activity)| (activity.last_used, *peer, activity.kept))
            .collect();
        idle.sort();
        let mut left = self.peers.len();
        let mut trimmed = Vec::new();
        idle.retain(|(_, peer, kept)| {
            let goes = passing_may_go && !kept && left > self.target;
            if goes {
                trimmed.push(*peer);
                left -= 1;
            }
            !goes
        });
        if left > self.high_water() {
            for (_, peer, _) in idle {
                if left <= self.low_water() {
                    break;
                }
                if !in_mesh(&peer) {
                    trimmed.push(peer);
                    left -= 1;
                }
            }
        }
        trimmed
    }
}

impl SwarmLoop {
    /// Dials a connection to keep (see [`Connections::to_trim`]).
    pub(super) fn dial_to_keep(&mut self, dial: DialOpts) -> Result<(), DialError> {
        let connection = dial.connection_id();
        self.swarm.dial(dial)?;
        self.connections.keep_dial(connection);
        Ok(())
    }

    /// Dials every bootstrap address.
    pub(super) fn dial_bootstrap(&mut self) {
        for address in self.bootstrap.addresses.clone() {
            let dial = dial_of_address(address.clone());
            let connection = dial.connection_id();
            match self.dial_to_keep(dial) {
                Ok(()) => {
                    self.bootstrap_dials.insert(connection, address);
                }
                Err(err) => warn!(%address, %err, "cannot dial bootstrap address"),
            }
        }
    }

    /// Once a second: a node with no peer and no dial under way dials its bootstrap addresses
    /// again, waiting twice as long each time (from 2 s to a minute); one with a peer starts
    /// over from the shortest wait.
    pub(super) fn retry_bootstrap(&mut self) {
        let now = Instant::now();
        let counters = self.swarm.network_info().connection_counters().clone();
        if counters.num_established() > 0 || self.bootstrap.addresses.is_empty() {
            self.bootstrap.next = None;
            self.bootstrap.wait = BOOTSTRAP_RETRY_FIRST;
            return;
        }
        if counters.num_pending_outgoing() > 0 {
            return;
        }
        let Some(next) = self.bootstrap.next else {
            self.bootstrap.wait = BOOTSTRAP_RETRY_FIRST;
            self.bootstrap.next = Some(now + self.bootstrap.wait);
            return;
        };
        if now < next {
            return;
        }
        debug!("no peer: dialing the bootstrap addresses again");
        self.dial_bootstrap();
        self.bootstrap.wait = (self.bootstrap.wait * 2).min(BOOTSTRAP_RETRY_MAX);
        self.bootstrap.next = Some(now + self.bootstrap.wait);
    }

    /// Whether the node wants another peer now (it dials one it learned of only then).
    pub(super) fn wants_peers(&self) -> bool {
        self.peers_wanted() > 0
    }

    /// How many more peers to dial now, counting the dials under way.
    fn peers_wanted(&self) -> usize {
        let dialing = self
            .swarm
            .network_info()
            .connection_counters()
            .num_pending_outgoing() as usize;
        self.connections
            .wanted(self.swarm.connected_peers().count(), dialing)
    }

    /// Once a second: closes the idlest connections when there are too many, and dials peers
    /// from Kademlia's table when there are too few.
    pub(super) fn manage_connections(&mut self) {
        let mesh: std::collections::HashSet<PeerId> = self
            .swarm
            .behaviour()
            .gossipsub
            .all_mesh_peers()
            .copied()
            .collect();
        let busy =
            |peer: &PeerId| self.in_flight.contains_key(peer) || self.queued.contains_key(peer);
        let in_mesh = |peer: &PeerId| mesh.contains(peer);
        let querying = self
            .swarm
            .behaviour_mut()
            .kad
            .iter_queries()
            .next()
            .is_some();
        let trimmed = self
            .connections
            .to_trim(Instant::now(), querying, busy, in_mesh);
        for peer in trimmed {
            debug!(%peer, "idle connection closed: more peers than needed");
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        let wanted = self.peers_wanted();
        if wanted == 0 {
            return;
        }
        let candidates: Vec<PeerId> = self
            .swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .flat_map(|bucket| {
                bucket
                    .iter()
                    .map(|entry| *entry.node.key.preimage())
                    .collect::<Vec<_>>()
            })
            .collect();
        let candidates: Vec<PeerId> = candidates
            .into_iter()
            .filter(|peer| !self.swarm.is_connected(peer))
            .collect();
        // Spread over the table: a node that always dialed the first peers of its table
        // would leave the same corner of the network unconnected in every node.
        let step = candidates.len().div_ceil(wanted).max(1);
        let offset = self.connections_round % step;
        self.connections_round = self.connections_round.wrapping_add(1);
        for peer in candidates
            .into_iter()
            .skip(offset)
            .step_by(step)
            .take(wanted)
        {
            debug!(%peer, "dialing a peer of the table: fewer peers than the target");
            if let Err(err) = self.dial_to_keep(dial_of(peer, Vec::new())) {
                debug!(%peer, %err, "cannot dial a peer from the table");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(n: usize) -> Vec<PeerId> {
        (0..n).map(|_| PeerId::random()).collect()
    }

    #[test]
    fn no_kept_peer_is_trimmed_up_to_three_times_the_target() {
        let start = Instant::now();
        let mut connections = Connections::new(3);
        for peer in peers(9) {
            connections.connected(peer, start, true);
        }
        assert!(
            connections
                .to_trim(start + GRACE * 10, false, |_| false, |_| false)
                .is_empty()
        );
    }

    #[test]
    fn past_the_target_the_idle_peers_not_kept_go_mesh_or_not_busy_ones_stay() {
        let start = Instant::now();
        let mut connections = Connections::new(2);
        let all = peers(6);
        // all[0] and all[1] are kept; all[2..] were met in passing, and all[2] became kept
        // through a second connection.
        for (index, peer) in all.iter().enumerate() {
            connections.connected(*peer, start, index < 2);
        }
        connections.connected(all[2], start, true);
        let later = start + GRACE + RECENT_USE;
        assert!(
            connections
                .to_trim(start, false, |_| false, |_| false)
                .is_empty(),
            "new connections have their grace"
        );
        // all[3] is busy; all[4] is in the mesh, which spares no peer that is not kept.
        let trimmed =
            connections.to_trim(later, false, |peer| *peer == all[3], |peer| *peer == all[4]);
        let mut expected = vec![all[4], all[5]];
        expected.sort();
        let mut trimmed = trimmed;
        trimmed.sort();
        assert_eq!(trimmed, expected);
        // At the target, nothing goes.
        connections.disconnected(&all[4]);
        connections.disconnected(&all[5]);
        connections.disconnected(&all[3]);
        assert_eq!(
            connections.to_trim(later, false, |_| false, |_| false),
            Vec::new()
        );
    }

    #[test]
    fn far_past_the_target_the_peers_not_kept_go_first_even_from_the_mesh() {
        let start = Instant::now();
        let mut connections = Connections::new(1);
        let all = peers(5);
        for (index, peer) in all.iter().enumerate() {
            connections.connected(*peer, start, index == 0);
        }
        let later = start + GRACE + RECENT_USE;
        let mut trimmed = connections.to_trim(later, false, |_| false, |_| true);
        trimmed.sort();
        let mut expected = all[1..].to_vec();
        expected.sort();
        assert_eq!(trimmed, expected, "all but the kept one, mesh or not");
    }

    #[test]
    fn the_peers_not_kept_stay_while_a_dht_query_runs_and_just_after() {
        let start = Instant::now();
        let mut connections = Connections::new(1);
        let all = peers(3);
        for (index, peer) in all.iter().enumerate() {
            connections.connected(*peer, start, index == 0);
        }
        let later = start + GRACE + RECENT_USE;
        let none = |_: &PeerId| false;
        assert!(connections.to_trim(later, true, none, none).is_empty());
        connections.query_ended(later);
        assert!(connections.to_trim(later, false, none, none).is_empty());
        let quiet = later + RECENT_USE;
        assert_eq!(connections.to_trim(quiet, false, none, none).len(), 2);
    }

    #[test]
    fn a_connection_is_kept_when_dialed_to_be_and_only_once() {
        let mut connections = Connections::new(2);
        let kept = ConnectionId::new_unchecked(1);
        connections.keep_dial(kept);
        assert!(connections.dial_ended(&kept));
        assert!(!connections.dial_ended(&kept));
        assert!(!connections.dial_ended(&ConnectionId::new_unchecked(2)));
    }

    #[test]
    fn past_three_times_the_target_the_idlest_go_down_to_twice_sparing_new_busy_and_used() {
        let start = Instant::now();
        let mut connections = Connections::new(1);
        let all = peers(7);
        for peer in &all {
            connections.connected(*peer, start, true);
        }
        let later = start + GRACE + RECENT_USE;
        // all[0] was used recently, all[1] is in the mesh, all[6] just connected.
        connections.used(&all[0], later - Duration::from_secs(1));
        connections.disconnected(&all[6]);
        connections.connected(all[6], later, true);
        // all[5] is the least idle of the rest.
        connections.used(&all[5], start + Duration::from_secs(5));
        let trimmed = connections.to_trim(later, false, |_| false, |peer| *peer == all[1]);
        // Five would go to leave two (twice the target of one), but three are spared: the four
        // others go, idlest first.
        assert_eq!(trimmed.len(), 4);
        assert_eq!(trimmed[3], all[5], "the least idle goes last");
        let mut first: Vec<PeerId> = trimmed[..3].to_vec();
        first.sort();
        let mut expected = vec![all[2], all[3], all[4]];
        expected.sort();
        assert_eq!(first, expected);
    }

    /// A swarm of Kademlia alone, configured as the node's (the table filled by the loop).
    fn kademlia_swarm(
        keypair: libp2p::identity::Keypair,
    ) -> libp2p::Swarm<kad::Behaviour<kad::store::MemoryStore>> {
        libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                libp2p::tcp::Config::default(),
                libp2p::noise::Config::new,
                libp2p::yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|key| {
                let local = key.public().to_peer_id();
                let mut config = kad::Config::new(libp2p::StreamProtocol::new("/dta-test/kad"));
                config.set_kbucket_inserts(kad::BucketInserts::Manual);
                kad::Behaviour::with_config(local, kad::store::MemoryStore::new(local), config)
            })
            .unwrap()
            .build()
    }

    /// A swarm in the farthest bucket of `local`, listening on loopback and running on its
    /// own task; its id and address.
    async fn live_peer_far_from(local: PeerId) -> (PeerId, Multiaddr) {
        use futures::StreamExt;
        let local = kad::KBucketKey::from(local);
        let key = std::iter::repeat_with(libp2p::identity::Keypair::generate_ed25519)
            .find(|key| {
                let peer = kad::KBucketKey::from(key.public().to_peer_id());
                peer.distance(&local).ilog2() == Some(255)
            })
            .unwrap();
        let peer = key.public().to_peer_id();
        let mut swarm = kademlia_swarm(key);
        swarm
            .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .unwrap();
        let address = loop {
            let event = swarm.select_next_some().await;
            if let libp2p::swarm::SwarmEvent::NewListenAddr { address, .. } = event {
                break address;
            }
        };
        tokio::spawn(async move {
            loop {
                swarm.select_next_some().await;
            }
        });
        (peer, address)
    }

    #[tokio::test]
    async fn a_peer_met_when_its_bucket_is_full_is_left_out_and_dials_nobody() {
        use futures::StreamExt;
        use libp2p::swarm::SwarmEvent;
        let mut swarm = kademlia_swarm(libp2p::identity::Keypair::generate_ed25519());
        let local = *swarm.local_peer_id();
        // A full bucket of live peers. Filling it starts Kademlia's bootstrap, which connects
        // to them; once it is over they are all disconnected, as most of a node's table is.
        let mut in_table = Vec::new();
        for _ in 0..kad::K_VALUE.get() {
            let (peer, address) = live_peer_far_from(local).await;
            assert!(add_to_table(swarm.behaviour_mut(), peer, address));
            in_table.push(peer);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let event = tokio::time::timeout_at(deadline, swarm.select_next_some()).await;
            if let SwarmEvent::Behaviour(kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::Bootstrap(_),
                step,
                ..
            }) = event.expect("Kademlia's bootstrap did not end")
                && step.last
            {
                break;
            }
        }
        for peer in &in_table {
            let _ = swarm.disconnect_peer_id(*peer);
        }
        while swarm.connected_peers().next().is_some() {
            let event = tokio::time::timeout_at(deadline, swarm.select_next_some()).await;
            event.expect("connections to the table's peers did not close");
        }
        assert!(
            add_to_table(
                swarm.behaviour_mut(),
                in_table[0],
                "/ip4/127.0.0.1/tcp/1".parse().unwrap()
            ),
            "a peer in the table is updated"
        );
        // A peer of the same bucket, met through a connection.
        let (newcomer, address) = live_peer_far_from(local).await;
        swarm.dial(address.clone()).unwrap();
        loop {
            let event = tokio::time::timeout_at(deadline, swarm.select_next_some()).await;
            if let SwarmEvent::ConnectionEstablished { peer_id, .. } =
                event.expect("no connection to the newcomer")
                && peer_id == newcomer
            {
                break;
            }
        }
        let admitted = add_to_table(swarm.behaviour_mut(), newcomer, address);
        assert!(!admitted, "the full bucket took the newcomer");
        let table: usize = swarm
            .behaviour_mut()
            .kbuckets()
            .map(|b| b.num_entries())
            .sum();
        assert_eq!(table, kad::K_VALUE.get());
        let mut dialed = Vec::new();
        let watch = tokio::time::Instant::now() + Duration::from_millis(500);
        while let Ok(event) = tokio::time::timeout_at(watch, swarm.select_next_some()).await {
            if let SwarmEvent::Dialing {
                peer_id: Some(peer),
                ..
            } = event
            {
                dialed.push(peer);
            }
        }
        assert!(dialed.is_empty(), "dialed peers of the table: {dialed:?}");
    }

    #[test]
    fn peers_are_wanted_only_below_the_target_counting_dials() {
        let connections = Connections::new(4);
        assert_eq!(connections.wanted(1, 1), 2);
        assert_eq!(connections.wanted(3, 1), 0);
        assert_eq!(connections.wanted(6, 0), 0);
    }
}
