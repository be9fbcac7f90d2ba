//! The one task that owns the libp2p swarm: it takes commands from the handle, drives the
//! swarm's events (connections, identify, Kademlia, gossip of identities and heads, the
//! request-response protocol with its per-peer limits and queues, deliveries and their
//! acknowledgements) and publishes snapshots. Nothing else touches the swarm; it verifies no
//! signature (the actors do).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dta_protocol::envelope::Bundle;
use dta_protocol::misconduct::Offence;
use dta_protocol::network::{
    self, Behaviour, BehaviourEvent, HeadAnnouncement, IDENTITY_TOPIC, KAD_PROTOCOL,
    MAX_HEADS_IN_IDENTITY, Request, Response,
};
use dta_protocol::rpc_codec::{Inbound, WireRefusal};
use futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, identify, kad, mdns};
use ractor::DerivedActorRef;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::budget::Spend;
use super::heads::{MAX_HEADS_PER_MESSAGE, decode_heads};
use super::{
    ANSWER_TIMEOUT, LOOK_AROUND_INTERVAL, MAX_AWAITING, MAX_IN_FLIGHT_PER_PEER,
    MAX_QUEUED_PER_PEER, MAX_UNACKNOWLEDGED, NetworkCommand, NetworkEvent, NetworkSnapshot,
    OwnHeads, PeerRoles, ProbeError, ProbeReport, RequestError, SEEN_IDENTITIES_CAPACITY, Taken,
    TakenGuard,
};
use crate::hosted::Hosted;
use crate::metrics::Metrics;
use crate::role::Role;

pub(super) type Reply = oneshot::Sender<Result<Response, RequestError>>;

/// A request sent for a command: where its answer goes.
pub(super) struct Pending {
    reply: Reply,
    peer: PeerId,
    started: Instant,
}

/// Most hosted identity documents taken from one peer's answer.
pub const MAX_HOSTED_IDENTITIES: usize = 64;
/// Most predecessor documents taken from an identity answer.
pub const MAX_PREDECESSORS: usize = dta_protocol::identity::MAX_ROTATIONS as usize;

pub(super) struct SwarmLoop {
    pub(super) swarm: Swarm<Behaviour>,
    pub(super) commands: mpsc::Receiver<NetworkCommand>,
    pub(super) cancel: CancellationToken,
    pub(super) snapshot: Arc<watch::Sender<NetworkSnapshot>>,
    pub(super) own_heads: OwnHeads,
    pub(super) subscribers: Vec<DerivedActorRef<NetworkEvent>>,
    pub(super) identity_document: Vec<u8>,
    /// The documents the node's own one succeeds, the first one first.
    pub(super) predecessors: Vec<Vec<u8>>,
    pub(super) hosted: Hosted,
    /// Revocations the directory kept, served to every peer that connects.
    pub(super) revocations: Vec<Vec<u8>>,
    pub(super) roles: Vec<Role>,
    pub(super) peer_book: crate::store::Store,
    /// Inbound Bitswap streams, for the engine.
    pub(super) bitswap_streams: mpsc::Sender<(PeerId, libp2p::Stream)>,
    pub(super) metrics: Arc<Metrics>,
    /// Requests sent for a command, answered on its reply port, with their start time.
    pub(super) pending: HashMap<OutboundRequestId, Pending>,
    /// Requests sent per peer and not answered yet.
    pub(super) in_flight: HashMap<PeerId, usize>,
    /// Requests waiting for a peer's in-flight count to drop below the limit.
    pub(super) queued: HashMap<PeerId, VecDeque<(Request, Reply)>>,
    /// Heads announced since the last batch went out.
    pub(super) pending_heads: Vec<HeadAnnouncement>,
    /// When they go out (see [`super::heads::HeadWindow`]).
    pub(super) heads_window: super::heads::HeadWindow,
    /// When each head was first seen here (see [`super::health`]).
    pub(super) seen_heads: super::SeenHeads,
    /// Probes of the DHT under way, with where their reports go.
    pub(super) probes: HashMap<kad::QueryId, oneshot::Sender<Result<ProbeReport, ProbeError>>>,
    /// Identity requests the loop sent on its own.
    pub(super) identity_requests: HashSet<OutboundRequestId>,
    /// Connected peers whose identity request failed, asked again at the next tick.
    pub(super) identity_retries: HashSet<PeerId>,
    /// Requests a subscriber answers, by number, with when they arrived.
    pub(super) awaiting: HashMap<u64, (request_response::ResponseChannel<Response>, Instant)>,
    pub(super) next_awaiting: u64,
    /// Delivered bundles not acknowledged yet, by number, with when they arrived.
    pub(super) unacknowledged: HashMap<u64, (request_response::ResponseChannel<Response>, Instant)>,
    pub(super) next_delivery: u64,
    /// Numbers of deliveries whose handlers are done, and whether a role took them
    /// ([`Taken`]).
    pub(super) acknowledged_tx: mpsc::Sender<(u64, bool)>,
    pub(super) acknowledged: mpsc::Receiver<(u64, bool)>,
    /// Digests of identity documents already handed on.
    pub(super) seen_identities: HashSet<[u8; 32]>,
    /// What each peer may still ask of identity requests (see [`super::budget`]).
    pub(super) identity_budget: super::budget::Budget,
    /// The node's own document is to be gossiped at the next tick: a rotated one, once per
    /// start, so that peers that knew its keys before learn the new ones.
    pub(super) announce_due: bool,
    /// A hosted identity was added and not announced yet.
    pub(super) hosted_added: bool,
    /// The connected peers' activity and the target number of peers (see [`super::peers`]).
    pub(super) connections: super::peers::Connections,
    /// Turns of [`Self::manage_connections`], to spread the peers it dials over the table.
    pub(super) connections_round: usize,
    /// Kademlia queries for identities and peers (see [`super::lookup`]).
    pub(super) lookups: super::lookup::Lookups,
    /// Dials to bootstrap addresses not yet answered, so that a failure names its address.
    pub(super) bootstrap_dials: HashMap<libp2p::swarm::ConnectionId, Multiaddr>,
    /// The bootstrap addresses, dialed again while the node has no peer.
    pub(super) bootstrap: super::peers::Bootstrap,
}

impl SwarmLoop {
    pub(super) async fn run(mut self, bootstrap: Vec<Multiaddr>) {
        let local = *self.swarm.local_peer_id();
        self.snapshot.send_modify(|s| {
            *s = NetworkSnapshot {
                peer_id: Some(local),
                roles: self.roles.clone(),
                ..NetworkSnapshot::default()
            }
        });
        // Blocks carried over from a previous run of the loop.
        self.publish_snapshot();
        self.bootstrap.addresses = bootstrap;
        self.dial_bootstrap();
        self.dial_known_peers().await;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        // Armed only while a window of head announcements is open (see `HeadWindow`).
        let heads_window_closes = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(heads_window_closes);
        let mut ticks = 0u64;
        loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => break,
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => break,
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                Some((id, claimed)) = self.acknowledged.recv() => self.acknowledge(id, claimed),
                () = &mut heads_window_closes, if self.heads_window.open_until().is_some() => {
                    let pending = !self.pending_heads.is_empty();
                    if self.heads_window.on_close(pending, tokio::time::Instant::now()) {
                        self.publish_heads();
                    }
                }
                _ = tick.tick() => {
                    ticks += 1;
                    // A small table looks around again (see `table_is_small`).
                    if ticks.is_multiple_of(LOOK_AROUND_INTERVAL.as_secs())
                        && self.table_is_small()
                    {
                        self.look_around();
                    }
                    self.retry_identity_requests();
                    self.retry_bootstrap();
                    self.manage_connections();
                    self.provide_if_due();
                    // Connected peers asked before a newly hosted identity existed.
                    if self.hosted_added || self.announce_due {
                        self.announce();
                    }
                }
            }
            if !self.pending_heads.is_empty()
                && self.heads_window.on_pending(tokio::time::Instant::now())
            {
                self.publish_heads();
            }
            if let Some(closes) = self.heads_window.open_until()
                && heads_window_closes.deadline() != closes
            {
                heads_window_closes.as_mut().reset(closes);
            }
        }
        // Every pending command is answered, even on the way out.
        for (_, pending) in self.pending.drain() {
            let _ = pending.reply.send(Err(RequestError::Closed));
        }
        for (_, reply) in self.queued.drain().flat_map(|(_, q)| q) {
            let _ = reply.send(Err(RequestError::Closed));
        }
        debug!("swarm loop stopped");
    }

    /// Whether Kademlia's table holds fewer peers than one bucket. Such a node may have
    /// bootstrapped (asked its peers whom they know) before they knew the others: a node
    /// that joined with another, both through one bootstrap peer under load, was seen to
    /// learn of neither the other nor its identity, as Kademlia asks again only after five
    /// minutes. Large tables are left to Kademlia: bootstrapping costs every peer a sort of
    /// its table.
    fn table_is_small(&mut self) -> bool {
        self.table_size() < kad::K_VALUE.get()
    }

    /// Asks the DHT for the peers closest to this node, which introduces it to them and
    /// them to it. One lookup: Kademlia's own bootstrap adds one for every bucket farther out
    /// (about nine in a network of 250), each a connection to some twenty peers, and a
    /// network that forms at once then spends minutes of both cores on handshakes. The far
    /// buckets fill anyway, with every peer that connects.
    pub(super) fn look_around(&mut self) {
        let local = *self.swarm.local_peer_id();
        self.swarm.behaviour_mut().kad.get_closest_peers(local);
    }

    /// How many peers Kademlia's table holds.
    pub(super) fn table_size(&mut self) -> usize {
        self.swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .map(|bucket| bucket.num_entries())
            .sum()
    }

    /// Asks again for the identity of connected peers whose answer failed.
    fn retry_identity_requests(&mut self) {
        for peer in std::mem::take(&mut self.identity_retries) {
            if self.swarm.is_connected(&peer) {
                self.request_identity(peer);
            }
        }
    }

    pub(super) fn request_identity(&mut self, peer: PeerId) {
        if !self.reachable(peer) {
            self.park(peer, super::lookup::Waiting::Identity);
            return;
        }
        let id = self
            .swarm
            .behaviour_mut()
            .rpc
            .send_request(&peer, Ok(Request::Identity));
        Metrics::bump(&self.metrics.rpc_requests_sent);
        self.identity_requests.insert(id);
    }

    /// Gossips identity news to the peers connected now: the hosted identities (one was
    /// added or rotated) and the node's own document when it is due (see `announce_due`).
    /// First documents are not gossiped to the whole network: a network of n nodes would
    /// check n² of them. Peers ask a node for its documents when they connect, and the
    /// others find them in the DHT when they need them (see [`super::lookup`]).
    fn announce(&mut self) {
        let topic = gossipsub::IdentTopic::new(IDENTITY_TOPIC);
        // Hosted identities first: once the node's own document is out, the round is done.
        if self.hosted_added {
            for document in self.hosted.documents() {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(topic.clone(), document);
            }
        }
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic, self.identity_document.clone())
        {
            Ok(_) => {
                Metrics::bump(&self.metrics.gossip_published);
                self.announce_due = false;
                self.hosted_added = false;
            }
            // No subscribed peers yet (or the same document again): try again at the next tick.
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
            Err(err) => {
                debug!(%err, "identity announcement not published");
                self.announce_due = false;
                self.hosted_added = false;
            }
        }
    }

    fn emit(&mut self, event: NetworkEvent) {
        // A subscriber that is gone (a restarted actor) is dropped; its successor subscribes.
        self.subscribers
            .retain(|subscriber| subscriber.send_message(event.clone()).is_ok());
    }

    fn on_command(&mut self, command: NetworkCommand) {
        match command {
            NetworkCommand::Dial(address) => {
                if let Err(err) = self.dial_to_keep(super::peers::dial_of_address(address.clone()))
                {
                    warn!(%address, %err, "dial failed");
                }
            }
            NetworkCommand::SendRequest {
                peer,
                request,
                reply,
            } if peer == *self.swarm.local_peer_id() => {
                // A node playing several roles in one order talks to itself without the wire.
                let _ = reply.send(Ok(self.answer(peer, request)));
            }
            NetworkCommand::SendRequest {
                peer,
                request,
                reply,
            } => self.send_or_queue(peer, request, reply),
            NetworkCommand::Subscribe(subscriber) => {
                self.subscribers.push(subscriber);
                // A restarted actor may have lost documents it was handed but had not
                // stored: it gets repeats of them again.
                self.seen_identities.clear();
            }
            NetworkCommand::Respond { id, response } => {
                if let Some((channel, _)) = self.awaiting.remove(&id)
                    && self
                        .swarm
                        .behaviour_mut()
                        .rpc
                        .send_response(channel, response)
                        .is_err()
                {
                    debug!(id, "response not sent: connection closed");
                }
            }
            NetworkCommand::AnnounceIdentities => {
                self.hosted_added = true;
                self.lookups.provide_soon();
                self.announce();
            }
            NetworkCommand::FindIdentity { identity, reply } => {
                self.find_identity(identity, reply);
            }
            NetworkCommand::IdentityFetched(document) => {
                if let Some(peer) = dta_protocol::identity::claimed_peer(&document) {
                    self.on_identity(peer, document);
                }
            }
            NetworkCommand::Revocation(bytes) => {
                // Peers connected now hear it by gossip; later ones in their identity answer.
                let topic = gossipsub::IdentTopic::new(IDENTITY_TOPIC);
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(topic, bytes.clone());
                if !self.revocations.contains(&bytes) {
                    self.revocations.push(bytes);
                    let excess = self
                        .revocations
                        .len()
                        .saturating_sub(crate::revocations::MAX_SERVED);
                    self.revocations.drain(..excess);
                }
            }
            NetworkCommand::Probe(reply) => self.probe(reply),
            NetworkCommand::Block(peer) => {
                self.swarm.behaviour_mut().block.block_peer(peer);
                self.publish_snapshot();
            }
            NetworkCommand::Unblock(peer) => {
                if self.swarm.behaviour_mut().block.unblock_peer(peer) {
                    // Addresses come from Kademlia and mDNS; a peer that cannot be reached
                    // now is found again by them later.
                    if let Err(err) = self.dial_to_keep(super::peers::dial_of(peer, Vec::new())) {
                        debug!(%peer, %err, "unblocked peer not dialled");
                    }
                }
                self.publish_snapshot();
            }
            NetworkCommand::AnnounceHead(announcement) => {
                self.own_heads.remember(announcement.clone());
                self.pending_heads
                    .retain(|h| h.reference != announcement.reference);
                self.pending_heads.push(announcement);
            }
        }
    }

    /// Gossips the heads announced since the last batch, in messages of at most
    /// [`MAX_HEADS_PER_MESSAGE`]. Every peer checks the signature of every copy of a gossip
    /// message it receives, so one message per batch instead of one per head saves most of
    /// that work when orders are many.
    fn publish_heads(&mut self) {
        let pending = std::mem::take(&mut self.pending_heads);
        for batch in pending.chunks(MAX_HEADS_PER_MESSAGE) {
            let topic = gossipsub::IdentTopic::new(dta_protocol::network::HEADS_TOPIC);
            match dta_protocol::dagcbor::encode(&batch) {
                Ok(data) => {
                    // Stamped before it leaves: a peer on the same clock may record hearing it
                    // before `publish` returns, and must never seem to have heard it first.
                    for announcement in batch {
                        self.seen_heads
                            .saw(announcement.head, super::HeadSource::Published);
                    }
                    match self.swarm.behaviour_mut().gossipsub.publish(topic, data) {
                        Ok(_) => Metrics::bump(&self.metrics.gossip_published),
                        Err(err) => debug!(%err, "head announcements not published"),
                    }
                }
                Err(err) => warn!(%err, "cannot encode head announcements"),
            }
        }
    }

    /// Sends now if the peer has room, else queues; a full queue is answered at once. A peer
    /// of no known address is looked for first (see [`super::lookup`]).
    pub(super) fn send_or_queue(&mut self, peer: PeerId, request: Request, reply: Reply) {
        if !self.reachable(peer) {
            self.park(peer, super::lookup::Waiting::Request(request, reply));
            return;
        }
        if self.in_flight.get(&peer).copied().unwrap_or(0) < MAX_IN_FLIGHT_PER_PEER {
            self.send(peer, request, reply);
            return;
        }
        let queue = self.queued.entry(peer).or_default();
        if queue.len() >= MAX_QUEUED_PER_PEER {
            let _ = reply.send(Err(RequestError::Busy(peer)));
        } else {
            queue.push_back((request, reply));
        }
    }

    fn send(&mut self, peer: PeerId, request: Request, reply: Reply) {
        let id = self
            .swarm
            .behaviour_mut()
            .rpc
            .send_request(&peer, Ok(request));
        Metrics::bump(&self.metrics.rpc_requests_sent);
        self.connections.used(&peer, Instant::now());
        *self.in_flight.entry(peer).or_default() += 1;
        self.pending.insert(
            id,
            Pending {
                reply,
                peer,
                started: Instant::now(),
            },
        );
    }

    /// A request to `peer` finished: make room and send the next queued one.
    fn finished(&mut self, peer: PeerId) {
        if let Some(count) = self.in_flight.get_mut(&peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.in_flight.remove(&peer);
            }
        }
        let next = self.queued.get_mut(&peer).and_then(VecDeque::pop_front);
        if self.queued.get(&peer).is_some_and(VecDeque::is_empty) {
            self.queued.remove(&peer);
        }
        if let Some((request, reply)) = next {
            self.send(peer, request, reply);
        }
    }

    /// Dials the peers met most recently before this start (a restarted node whose bootstrap
    /// peers are down still finds the network) and gives their addresses to Kademlia.
    async fn dial_known_peers(&mut self) {
        let store = self.peer_book.clone();
        let known = match tokio::task::spawn_blocking(move || {
            crate::peer_book::recent(&store, crate::peer_book::MAX_REDIALS)
        })
        .await
        {
            Ok(Ok(known)) => known,
            Ok(Err(err)) => {
                warn!(%err, "cannot read the peers met before");
                return;
            }
            Err(_) => return,
        };
        let local = *self.swarm.local_peer_id();
        for (peer, addresses) in known {
            if peer == local || addresses.is_empty() || self.swarm.is_connected(&peer) {
                continue;
            }
            for address in &addresses {
                super::peers::add_to_table(
                    &mut self.swarm.behaviour_mut().kad,
                    peer,
                    address.clone(),
                );
            }
            // The others stay in the table, for when the node wants more peers.
            if !self.wants_peers() {
                continue;
            }
            if let Err(err) = self.swarm.dial(super::peers::dial_of(peer, addresses)) {
                debug!(%peer, %err, "cannot dial a peer met before");
            }
        }
    }

    /// Keeps what a peer said of its roles (unknown names are ignored: a newer node may play
    /// more), for as long as it is connected.
    fn on_roles(&mut self, peer: PeerId, document: &[u8], roles: &[String]) {
        let known = PeerRoles {
            identity: dta_protocol::identity::claimed_identity(document),
            roles: roles.iter().filter_map(|r| Role::parse(r)).collect(),
        };
        self.snapshot.send_if_modified(|s| {
            s.peer_roles.insert(peer, known.clone()).as_ref() != Some(&known)
        });
    }

    fn publish_snapshot(&self) {
        let listen_addrs: Vec<Multiaddr> = self.swarm.listeners().cloned().collect();
        let connected: BTreeSet<PeerId> = self.swarm.connected_peers().copied().collect();
        let blocked: BTreeSet<PeerId> = self
            .swarm
            .behaviour()
            .block
            .blocked_peers()
            .iter()
            .copied()
            .collect();
        self.snapshot.send_if_modified(|s| {
            let changed =
                s.listen_addrs != listen_addrs || s.connected != connected || s.blocked != blocked;
            s.peer_roles.retain(|peer, _| connected.contains(peer));
            s.listen_addrs = listen_addrs;
            s.connected = connected;
            s.blocked = blocked;
            changed
        });
    }

    /// Hands an inbound Bitswap stream to the engine. The swarm task never waits: a full
    /// queue drops the stream, and the peer's unanswered wants come again.
    fn on_bitswap_stream(&mut self, peer: PeerId, stream: libp2p::Stream) {
        self.connections.used(&peer, Instant::now());
        if self.bitswap_streams.try_send((peer, stream)).is_err() {
            warn!(%peer, "bitswap engine busy; inbound stream dropped");
        }
    }

    fn on_identity(&mut self, peer: PeerId, document: Vec<u8>) {
        let digest: [u8; 32] = Sha256::digest(&document).into();
        if self.seen_identities.contains(&digest) {
            return;
        }
        if self.seen_identities.len() >= SEEN_IDENTITIES_CAPACITY {
            self.seen_identities.clear();
        }
        self.seen_identities.insert(digest);
        self.emit(NetworkEvent::IdentityReceived { peer, document });
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                self.publish_snapshot();
            }
            SwarmEvent::ExpiredListenAddr { .. } | SwarmEvent::ListenerClosed { .. } => {
                self.publish_snapshot();
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                connection_id,
                endpoint,
                ..
            } => {
                self.bootstrap_dials.remove(&connection_id);
                let kept = self.connections.dial_ended(&connection_id) || endpoint.is_listener();
                self.connections.connected(peer_id, Instant::now(), kept);
                Metrics::bump(if endpoint.is_dialer() {
                    &self.metrics.connections_dialed
                } else {
                    &self.metrics.connections_accepted
                });
                self.publish_snapshot();
                if num_established.get() == 1 {
                    debug!(peer = %peer_id, dialed = endpoint.is_dialer(), kept, "connected");
                    // The node learns the identities of the peers it keeps, up to its target;
                    // not of every peer a DHT query touches (each document costs a pairing
                    // check). The others it looks up when it needs them.
                    if self.swarm.connected_peers().count() <= self.connections.target() {
                        self.request_identity(peer_id);
                    }
                    self.release_waiting(peer_id);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                ..
            } => {
                if num_established == 0 {
                    self.connections.disconnected(&peer_id);
                }
                self.publish_snapshot();
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                peer_id,
            } => {
                self.connections.dial_ended(&connection_id);
                // A warning once per address and start; the retries (see `retry_bootstrap`)
                // only in the debug log.
                if let Some(address) = self.bootstrap_dials.remove(&connection_id) {
                    if self.bootstrap.first_failure(&address) {
                        warn!(%address, %error, "cannot reach bootstrap address");
                    } else {
                        debug!(%address, %error, "cannot reach bootstrap address again");
                    }
                } else if let Some(peer) = peer_id {
                    debug!(%peer, %error, "dial failed");
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => debug!(%send_back_addr, %error, "incoming connection failed"),
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Rpc(event) => self.on_rpc(event),
            BehaviourEvent::Bitswap((peer, stream)) => self.on_bitswap_stream(peer, stream),
            BehaviourEvent::Gossipsub(gossipsub::Event::Message { message, .. }) => {
                Metrics::bump(&self.metrics.gossip_received);
                // Strict validation means `source` is the signed publisher.
                if let Some(source) = message.source {
                    if message.topic.as_str() == IDENTITY_TOPIC {
                        self.on_identity(source, message.data);
                    } else if message.topic.as_str() == dta_protocol::network::HEADS_TOPIC {
                        match decode_heads(&message.data) {
                            Ok(announcements) => {
                                for announcement in
                                    announcements.into_iter().take(MAX_HEADS_PER_MESSAGE)
                                {
                                    self.seen_heads
                                        .saw(announcement.head, super::HeadSource::Gossip);
                                    self.emit(NetworkEvent::HeadAnnounced {
                                        peer: source,
                                        announcement,
                                    });
                                }
                            }
                            Err(err) => debug!(%source, %err, "malformed head announcement"),
                        }
                    }
                }
            }
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                Metrics::bump(&self.metrics.identify_received);
                if let Err(reason) = dta_protocol::network::compatible(&info.protocol_version) {
                    warn!(peer = %peer_id, %reason, "peer refused");
                    Metrics::bump(&self.metrics.peers_refused_version);
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                // Only dta peers go into dta's DHT.
                if info.protocols.contains(&KAD_PROTOCOL) {
                    // Kept for the next start, off the swarm task (a write to the store).
                    let (store, addresses) = (self.peer_book.clone(), info.listen_addrs.clone());
                    tokio::task::spawn_blocking(move || {
                        if let Err(err) = crate::peer_book::remember(&store, peer_id, &addresses) {
                            debug!(%err, "cannot keep a peer's addresses");
                        }
                    });
                    // A node whose table was empty looks around by itself: Kademlia
                    // bootstraps while its table holds fewer than a bucket's worth.
                    let kad = &mut self.swarm.behaviour_mut().kad;
                    for address in info.listen_addrs {
                        super::peers::add_to_table(kad, peer_id, address);
                    }
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, address) in found {
                    debug!(%peer, %address, "found on the LAN");
                    super::peers::add_to_table(
                        &mut self.swarm.behaviour_mut().kad,
                        peer,
                        address.clone(),
                    );
                    if !self.swarm.is_connected(&peer) && self.wants_peers() {
                        let _ = self.dial_to_keep(super::peers::dial_of(peer, vec![address]));
                    }
                }
            }
            // A peer that dialed in tells its listening addresses through identify instead.
            BehaviourEvent::Kad(kad::Event::RoutablePeer { peer, address }) => {
                super::peers::add_to_table(&mut self.swarm.behaviour_mut().kad, peer, address);
            }
            BehaviourEvent::Kad(kad::Event::RoutingUpdated { peer, .. })
                if !self.swarm.is_connected(&peer) && self.wants_peers() =>
            {
                debug!(%peer, "dialing a peer new in the table: fewer peers than the target");
                let _ = self.dial_to_keep(super::peers::dial_of(peer, Vec::new()));
            }
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result,
                step,
                stats,
            }) => {
                // Kademlia bootstraps by itself while its table is small: a lookup of the
                // node's own key, then one per bucket farther out. The rest is cut short (each
                // step ends as soon as it starts), as in `look_around`.
                if matches!(result, kad::QueryResult::Bootstrap(_))
                    && !step.last
                    && let Some(mut query) = self.swarm.behaviour_mut().kad.query_mut(&id)
                {
                    query.finish();
                }
                if matches!(result, kad::QueryResult::Bootstrap(_)) {
                    self.bootstrap_progressed(id, &step, &stats);
                }
                let local = *self.swarm.local_peer_id();
                let answered = stats.num_successes() > 0;
                self.lookups
                    .query_progressed(&local, &result, &step, answered);
                if step.last {
                    self.connections.query_ended(Instant::now());
                    self.probe_ended(id, &result, &stats);
                    debug!(
                        kind = super::lookup::query_kind(&result),
                        requests = stats.num_requests(),
                        failures = stats.num_failures(),
                        ms = stats.duration().map_or(0, |d| d.as_millis()),
                        "DHT query ended"
                    );
                }
                self.on_query(id, result, step.last);
            }
            _ => {}
        }
    }

    /// Parks a request for a subscriber to answer ([`NetworkEvent::Answer`]); refuses it when
    /// too many wait already. Unanswered ones expire after [`ANSWER_TIMEOUT`].
    fn hand_over(
        &mut self,
        peer: PeerId,
        request: Request,
        channel: request_response::ResponseChannel<Response>,
    ) {
        self.awaiting
            .retain(|_, (_, since)| since.elapsed() < ANSWER_TIMEOUT);
        if self.awaiting.len() >= MAX_AWAITING {
            let busy = Response::Rejected {
                reason: "too many requests in progress".into(),
            };
            let _ = self.swarm.behaviour_mut().rpc.send_response(channel, busy);
            return;
        }
        let id = self.next_awaiting;
        self.next_awaiting += 1;
        self.awaiting.insert(id, (channel, Instant::now()));
        self.emit(NetworkEvent::Answer { peer, id, request });
    }

    /// Hands a peer's well-formed bundle to the subscribers and answers `Accepted` once they
    /// are done with it (see [`Taken`]), or at once when too many wait already.
    fn take_delivery(
        &mut self,
        peer: PeerId,
        blocks: Vec<serde_bytes::ByteBuf>,
        channel: request_response::ResponseChannel<Response>,
    ) {
        let blocks = blocks.into_iter().map(|b| b.into_vec()).collect();
        self.unacknowledged
            .retain(|_, (_, since)| since.elapsed() < network::REQUEST_TIMEOUT);
        if self.unacknowledged.len() >= MAX_UNACKNOWLEDGED {
            debug!(%peer, "too many deliveries waiting: acknowledged on arrival");
            let _ = self
                .swarm
                .behaviour_mut()
                .rpc
                .send_response(channel, Response::Accepted);
            self.emit(NetworkEvent::EnvelopesReceived {
                peer,
                blocks,
                taken: None,
            });
            return;
        }
        let id = self.next_delivery;
        self.next_delivery += 1;
        self.unacknowledged.insert(id, (channel, Instant::now()));
        let taken = Taken(Arc::new(TakenGuard {
            id,
            claimed: std::sync::atomic::AtomicBool::new(false),
            acknowledged: self.acknowledged_tx.clone(),
        }));
        self.emit(NetworkEvent::EnvelopesReceived {
            peer,
            blocks,
            taken: Some(taken),
        });
    }

    /// Answers a delivery whose handlers are done with it; one no role actor took is not
    /// answered (its channel is dropped), so the sender's request fails and is tried again.
    fn acknowledge(&mut self, id: u64, claimed: bool) {
        let Some((channel, _)) = self.unacknowledged.remove(&id) else {
            return;
        };
        if !claimed {
            debug!(id, "a delivery no role took: not acknowledged");
            return;
        }
        if self
            .swarm
            .behaviour_mut()
            .rpc
            .send_response(channel, Response::Accepted)
            .is_err()
        {
            debug!(id, "acknowledgement not sent: connection closed");
        }
    }

    /// The answer to a request, from a peer or from this node itself.
    fn answer(&mut self, peer: PeerId, request: Request) -> Response {
        match request {
            Request::Identity => Response::Identity {
                document: self.identity_document.clone(),
                predecessors: self
                    .predecessors
                    .iter()
                    .cloned()
                    .map(serde_bytes::ByteBuf::from)
                    .collect(),
                hosted: self
                    .hosted
                    .documents()
                    .into_iter()
                    .map(serde_bytes::ByteBuf::from)
                    .collect(),
                heads: self.own_heads.all(),
                roles: self.roles.iter().map(|r| r.name().to_owned()).collect(),
                revocations: self
                    .revocations
                    .iter()
                    .cloned()
                    .map(serde_bytes::ByteBuf::from)
                    .collect(),
            },
            // Reached only when they could not be handed over (or from this node itself).
            Request::MpinChallenge { .. } | Request::MpinVerify { .. } => Response::Rejected {
                reason: "this node cannot take M-Pin authentications now".into(),
            },
            // A node that is no principal holds no order's log as its own; from this node
            // itself, its newest heads are all it has here.
            Request::Head { reference, .. } => Response::Heads {
                heads: self
                    .own_heads
                    .all()
                    .into_iter()
                    .filter(|h| h.reference == reference)
                    .collect(),
            },
            // From this node itself (a peer's delivery waits for its handlers, see `on_rpc`).
            Request::Deliver { blocks } => match Bundle::decode(&blocks) {
                Ok(_) => {
                    let blocks = blocks.into_iter().map(|b| b.into_vec()).collect();
                    self.emit(NetworkEvent::EnvelopesReceived {
                        peer,
                        blocks,
                        taken: None,
                    });
                    Response::Accepted
                }
                Err(err) => Response::Rejected {
                    reason: err.to_string(),
                },
            },
        }
    }

    /// A peer sent a request that is none (or too big to read, or of a kind this node does
    /// not know): it is told so, and its misconduct (not a newer peer's request) goes out to
    /// be counted against it.
    fn refuse(
        &mut self,
        peer: PeerId,
        refusal: WireRefusal,
        channel: request_response::ResponseChannel<Response>,
    ) {
        let offence = match refusal {
            WireRefusal::Oversized => Some(Offence::OversizedMessage),
            WireRefusal::Malformed(_) => Some(Offence::MalformedMessage),
            WireRefusal::Unknown(_) => None,
        };
        let reason = refusal.to_string();
        let _ = self.swarm.behaviour_mut().rpc.send_response(
            channel,
            Response::Rejected {
                reason: reason.clone(),
            },
        );
        if let Some(offence) = offence {
            self.emit(NetworkEvent::Misconduct {
                peer,
                offence,
                detail: reason,
            });
        }
    }

    /// A peer asked for identities past its budget: it is told so, and reported as flooding
    /// when `report` says it is time to.
    fn refuse_flood(
        &mut self,
        peer: PeerId,
        report: bool,
        channel: request_response::ResponseChannel<Response>,
    ) {
        let reason = "too many identity requests".to_owned();
        let _ = self.swarm.behaviour_mut().rpc.send_response(
            channel,
            Response::Rejected {
                reason: reason.clone(),
            },
        );
        if report {
            self.emit(NetworkEvent::Misconduct {
                peer,
                offence: Offence::Flood,
                detail: format!(
                    "{reason} (over {} at once or {} a second)",
                    super::budget::IDENTITY_BURST,
                    super::budget::IDENTITY_RATE
                ),
            });
        }
    }

    fn on_rpc(&mut self, event: request_response::Event<Inbound, Response>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    Metrics::bump(&self.metrics.rpc_requests_received);
                    self.connections.used(&peer, Instant::now());
                    let request = match request {
                        Ok(Request::Identity) => {
                            match self.identity_budget.spend(peer, Instant::now()) {
                                Spend::Allowed => Request::Identity,
                                Spend::Refused { report } => {
                                    self.refuse_flood(peer, report, channel);
                                    return;
                                }
                            }
                        }
                        Ok(request) => request,
                        Err(refusal) => {
                            self.refuse(peer, refusal, channel);
                            return;
                        }
                    };
                    let principal_answers = matches!(request, Request::Head { .. })
                        && self.roles.contains(&Role::Principal);
                    if principal_answers
                        || matches!(
                            request,
                            Request::MpinChallenge { .. } | Request::MpinVerify { .. }
                        )
                    {
                        self.hand_over(peer, request, channel);
                        return;
                    }
                    let request = match request {
                        Request::Deliver { blocks } => match Bundle::decode(&blocks) {
                            Ok(_) => {
                                self.take_delivery(peer, blocks, channel);
                                return;
                            }
                            Err(err) => {
                                let detail = format!("a delivery of no envelopes: {err}");
                                self.emit(NetworkEvent::Misconduct {
                                    peer,
                                    offence: Offence::MalformedMessage,
                                    detail,
                                });
                                Request::Deliver { blocks }
                            }
                        },
                        other => other,
                    };
                    let response = self.answer(peer, request);
                    if self
                        .swarm
                        .behaviour_mut()
                        .rpc
                        .send_response(channel, response)
                        .is_err()
                    {
                        debug!(%peer, "response not sent: connection closed");
                    }
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(pending) = self.pending.remove(&request_id) {
                        self.metrics.observe_latency(pending.started.elapsed());
                        let _ = pending.reply.send(Ok(response));
                        self.finished(pending.peer);
                    } else if self.identity_requests.remove(&request_id)
                        && let Response::Identity {
                            document,
                            hosted,
                            heads,
                            roles,
                            revocations,
                            predecessors,
                        } = response
                    {
                        self.on_roles(peer, &document, &roles);
                        // Each document checked against the one before it.
                        let chain = predecessors.into_iter().take(MAX_PREDECESSORS);
                        for predecessor in chain {
                            self.on_identity(peer, predecessor.into_vec());
                        }
                        self.on_identity(peer, document);
                        for document in hosted.into_iter().take(MAX_HOSTED_IDENTITIES) {
                            self.on_identity(peer, document.into_vec());
                        }
                        // After the documents, which they are checked against.
                        let served = crate::revocations::MAX_SERVED;
                        for revocation in revocations.into_iter().take(served) {
                            self.on_identity(peer, revocation.into_vec());
                        }
                        // After the identity, so that its announcer is known when they land.
                        for announcement in heads.into_iter().take(MAX_HEADS_IN_IDENTITY) {
                            self.emit(NetworkEvent::HeadAnnounced { peer, announcement });
                        }
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                Metrics::bump(&self.metrics.rpc_outbound_failures);
                debug!(%peer, %error, "request failed");
                // A peer that does not speak dta (a kubo or Helia peer fetching blocks) is
                // not asked again; one that timed out, failed mid-way or closed one of
                // several connections is (only while still connected).
                if self.identity_requests.remove(&request_id)
                    && matches!(
                        error,
                        request_response::OutboundFailure::Timeout
                            | request_response::OutboundFailure::Io(_)
                            | request_response::OutboundFailure::ConnectionClosed
                    )
                {
                    self.identity_retries.insert(peer);
                }
                if let Some(pending) = self.pending.remove(&request_id) {
                    let _ = pending
                        .reply
                        .send(Err(RequestError::Failed { peer, error }));
                    self.finished(pending.peer);
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                Metrics::bump(&self.metrics.rpc_inbound_failures);
                debug!(%peer, %error, "inbound request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}
