//! The network actor and the one task that owns the libp2p swarm.
//!
//! Commands come in over a bounded channel behind [`NetworkHandle`]; events go out to the
//! actors that subscribed (as `DerivedActorRef<NetworkEvent>`); read-only state (peer id,
//! listen addresses, connected peers) is published through a `watch` channel. Cheap checks
//! (size caps in the codec, envelope structure, identity dedupe) happen in the loop;
//! signature checks happen in the actors.
//!
//! Here: the handle, commands, events and snapshot. The actor that starts the loop is in
//! `actor`, the loop in `swarm`, head announcements in `heads`, probes of the DHT and heads
//! seen in `health`, Bitswap in [`bitswap`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use dta_protocol::Cid;
use dta_protocol::network::{HeadAnnouncement, Request, Response};
use libp2p::{Multiaddr, PeerId};
use ractor::DerivedActorRef;
use tokio::sync::{mpsc, oneshot, watch};

use crate::network::bitswap::{BitswapCommand, FetchError};
use crate::role::Role;

mod actor;
pub mod bitswap;
mod budget;
mod heads;
mod health;
pub mod lookup;
mod peers;
mod swarm;

pub use actor::{NetworkActor, NetworkArgs, NetworkState};
pub use heads::{HEAD_BATCH_INTERVAL, MAX_HEADS_PER_MESSAGE, OwnHeads};
pub use health::{
    HEADS_REMEMBERED, HeadSeen, HeadSource, MAX_PROBES, ProbeError, ProbeReport, SeenHeads,
};
pub use peers::{GRACE, RECENT_USE};

/// Requests to one peer in flight at once; more wait in a queue. Below the per-connection
/// stream limit of the request-response protocol, so a busy peer is never asked to drop one.
pub const MAX_IN_FLIGHT_PER_PEER: usize = 32;
/// Requests that may wait for one peer; beyond this a request fails at once.
pub const MAX_QUEUED_PER_PEER: usize = 4096;
/// Capacity of the command channel into the swarm task.
pub const COMMAND_CAPACITY: usize = 256;
/// How many identity-document digests the loop remembers to drop repeats.
pub const SEEN_IDENTITIES_CAPACITY: usize = 4096;
/// How often a node whose Kademlia table is small looks around again.
pub const LOOK_AROUND_INTERVAL: Duration = Duration::from_secs(30);

/// What other parts of the node ask of the network.
#[derive(Debug)]
pub enum NetworkCommand {
    /// Dial an address.
    Dial(Multiaddr),
    /// Send a request; the answer (or the failure, or the timeout) comes back on `reply`.
    SendRequest {
        /// The peer.
        peer: PeerId,
        /// The request.
        request: Request,
        /// Always answered.
        reply: oneshot::Sender<Result<Response, RequestError>>,
    },
    /// Route events to another subscriber (for example a restarted actor).
    Subscribe(DerivedActorRef<NetworkEvent>),
    /// Gossip an order's new head (and keep it for peers that connect later).
    AnnounceHead(dta_protocol::network::HeadAnnouncement),
    /// Close every connection with a peer and refuse new ones, both ways, until unblocked.
    Block(PeerId),
    /// Allow a blocked peer again, and dial it.
    Unblock(PeerId),
    /// Announce this node's identities again (one was added).
    AnnounceIdentities,
    /// Find an identity this node does not know: ask the DHT for its providers and send them
    /// the identity request. What they answer reaches the subscribers as
    /// [`NetworkEvent::IdentityReceived`]; `reply` gets how many providers were asked once
    /// the DHT query ends (none: nobody provides it).
    FindIdentity {
        /// The identity.
        identity: Cid,
        /// How many providers were asked.
        reply: oneshot::Sender<usize>,
    },
    /// An identity document fetched by its CID over Bitswap (from a peer that keeps it, not
    /// necessarily its node's): handed to the subscribers as from the peer it names. The
    /// bytes hash to the identity's CID, and the directory checks its signatures as for any.
    IdentityFetched(Vec<u8>),
    /// Serve and gossip a revocation the directory kept.
    Revocation(Vec<u8>),
    /// Look up the peers closest to a random key, as a probe of the DHT's health; `reply`
    /// gets the lookup's figures when it ends.
    Probe(oneshot::Sender<Result<ProbeReport, ProbeError>>),
    /// Answer a request that a subscriber took over (see [`NetworkEvent::Answer`]).
    Respond {
        /// The request's number in that event.
        id: u64,
        /// The answer.
        response: Response,
    },
}

/// How long a request handed to a subscriber may wait for its answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Most requests handed to subscribers at once.
pub const MAX_AWAITING: usize = 256;

/// Most delivered bundles waiting for their subscribers to finish with them before they are
/// acknowledged; past that a delivery is acknowledged when it arrives (the custody flow's own
/// resumption covers what a crash then loses).
pub const MAX_UNACKNOWLEDGED: usize = 4096;

/// Held by everyone who handles a delivered bundle: when the last holder drops it (the role
/// actors are done with the bundle, their steps durable), the sender gets `Accepted` if a
/// role actor [claimed](Taken::claim) it; if none did (none was running yet, as while a node
/// starts), the request fails and the sender tries again. So a sender learns that a bundle
/// was taken only once the receiver kept what it took.
#[derive(Clone)]
pub struct Taken(Arc<TakenGuard>);

struct TakenGuard {
    id: u64,
    claimed: std::sync::atomic::AtomicBool,
    acknowledged: mpsc::Sender<(u64, bool)>,
}

impl Taken {
    /// Says that a role actor handles the bundle.
    pub fn claim(&self) {
        self.0
            .claimed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for TakenGuard {
    fn drop(&mut self) {
        let claimed = self.claimed.load(std::sync::atomic::Ordering::Relaxed);
        // The channel holds as many slots as bundles may wait, so this cannot be full; a
        // closed one means the swarm task is gone and the sender's request fails anyway.
        let _ = self.acknowledged.try_send((self.id, claimed));
    }
}

impl std::fmt::Debug for Taken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Taken({})", self.0.id)
    }
}

/// What the network tells subscribers.
#[derive(Debug, Clone)]
pub enum NetworkEvent {
    /// A peer sent (or gossiped) an identity document, unverified.
    IdentityReceived {
        /// The connection's or the gossip publisher's peer id.
        peer: PeerId,
        /// The document's bytes.
        document: Vec<u8>,
    },
    /// A peer gossiped the head of an order's log.
    HeadAnnounced {
        /// The signed gossip publisher.
        peer: PeerId,
        /// The announcement.
        announcement: dta_protocol::network::HeadAnnouncement,
    },
    /// A peer sent a request that takes work off the swarm task (an M-Pin authentication
    /// step): a subscriber answers it with [`NetworkCommand::Respond`] and this `id`, or it
    /// expires unanswered after [`ANSWER_TIMEOUT`].
    Answer {
        /// Who asked.
        peer: PeerId,
        /// The request's number, for the response.
        id: u64,
        /// The request.
        request: Request,
    },
    /// A peer delivered a bundle of envelopes that passed the structural and link checks of a
    /// strict decode ([`dta_protocol::envelope::Bundle::decode`]), so subscribers decode its
    /// blocks again with the lenient, cheaper decode. Roles that hand a delivery to themselves
    /// again send only blocks that came this way or that they kept.
    EnvelopesReceived {
        /// Who delivered it.
        peer: PeerId,
        /// The blocks' bytes, oldest first.
        blocks: Vec<Vec<u8>>,
        /// Acknowledges the delivery when the last holder drops it (none: acknowledged
        /// already).
        taken: Option<Taken>,
    },
    /// A peer sent something only a dishonest or broken peer sends (a malformed or oversized
    /// request): refused, and told so that it is counted against the peer's identity.
    Misconduct {
        /// The connection's peer.
        peer: PeerId,
        /// What it did.
        offence: dta_protocol::misconduct::Offence,
        /// Why the request was refused.
        detail: String,
    },
}

/// Read-only network state, published after every change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkSnapshot {
    /// This node's peer id.
    pub peer_id: Option<PeerId>,
    /// Addresses the node listens on, as resolved.
    pub listen_addrs: Vec<Multiaddr>,
    /// Peers with at least one open connection.
    pub connected: BTreeSet<PeerId>,
    /// Peers blocked by [`NetworkCommand::Block`].
    pub blocked: BTreeSet<PeerId>,
    /// The roles this node plays.
    pub roles: Vec<Role>,
    /// What connected peers said of themselves when they answered the identity request.
    pub peer_roles: BTreeMap<PeerId, PeerRoles>,
    /// Whether an announcement of the node's own identity in the DHT went out since the
    /// network started: its provider record sent to the peers closest to its key, so that a
    /// node that never met it can find it.
    pub announced: bool,
}

/// A peer's own identity and the roles its node plays, as it answered the identity request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRoles {
    /// The node's own identity (not one it hosts).
    pub identity: Cid,
    /// The roles the node plays; empty if it did not say.
    pub roles: Vec<Role>,
}

impl NetworkSnapshot {
    /// Whether the node of `identity` plays `role`, where that is known: `Some(false)` if
    /// its node said it does not (or `identity` is only hosted there, and `role` is not
    /// the beneficiary's: hosted identities only receive), `None` if nothing is known.
    pub fn plays(&self, peer: &PeerId, identity: &Cid, role: Role) -> Option<bool> {
        let (own, roles) = if self.peer_id.as_ref() == Some(peer) {
            (None, self.roles.as_slice())
        } else {
            let known = self.peer_roles.get(peer)?;
            (Some(known.identity), known.roles.as_slice())
        };
        if roles.is_empty() {
            return None;
        }
        let hosted_only = own.is_some_and(|own| own != *identity);
        Some(roles.contains(&role) && (!hosted_only || role == Role::Beneficiary))
    }
}

/// Why the network could not take a command.
#[derive(Debug, thiserror::Error)]
#[error("the network task is not running")]
pub struct NetworkClosed;

/// Why a request to a peer got no answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The network task is not running, or stopped before the answer came.
    #[error("the network is shutting down")]
    Closed,
    /// Too many requests to that peer wait already.
    #[error("too many requests queued for {0}")]
    Busy(PeerId),
    /// No address of the peer is known here, and a lookup in the DHT found none.
    #[error("no address of {0} is known here or found in the DHT")]
    Unreachable(PeerId),
    /// libp2p could not send it or get its answer (no connection, timeout, refused protocol).
    #[error("request to {peer} failed: {error}")]
    Failed {
        /// The peer.
        peer: PeerId,
        /// What libp2p reported.
        error: libp2p::request_response::OutboundFailure,
    },
}

/// A cloneable way in to the network. It follows restarts of the network actor.
#[derive(Clone, Debug)]
pub struct NetworkHandle {
    commands: watch::Receiver<mpsc::Sender<NetworkCommand>>,
    bitswap: watch::Receiver<mpsc::Sender<BitswapCommand>>,
    snapshot: watch::Receiver<NetworkSnapshot>,
    heads: OwnHeads,
    seen_heads: SeenHeads,
}

impl NetworkHandle {
    /// Sends a command, waiting while the channel is full.
    pub async fn send(&self, command: NetworkCommand) -> Result<(), NetworkClosed> {
        let sender = self.commands.borrow().clone();
        sender.send(command).await.map_err(|_| NetworkClosed)
    }

    /// Sends a request and waits for its answer.
    pub async fn request(&self, peer: PeerId, request: Request) -> Result<Response, RequestError> {
        let (reply, answer) = oneshot::channel();
        self.send(NetworkCommand::SendRequest {
            peer,
            request,
            reply,
        })
        .await
        .map_err(|_| RequestError::Closed)?;
        answer.await.map_err(|_| RequestError::Closed)?
    }

    /// Fetches a block from connected peers over Bitswap; the bytes are checked against the
    /// CID, not stored.
    pub async fn fetch_block(&self, cid: dta_protocol::Cid) -> Result<Vec<u8>, FetchError> {
        let (reply, answer) = oneshot::channel();
        let sender = self.bitswap.borrow().clone();
        sender
            .send(BitswapCommand::Fetch { cid, reply })
            .await
            .map_err(|_| FetchError::Closed)?;
        answer.await.map_err(|_| FetchError::Closed)?
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> NetworkSnapshot {
        self.snapshot.borrow().clone()
    }

    /// Whether `peer` is this node or one it has a connection with now.
    pub fn reaches(&self, peer: &PeerId) -> bool {
        let snapshot = self.snapshot.borrow();
        snapshot.peer_id.as_ref() == Some(peer) || snapshot.connected.contains(peer)
    }

    /// A receiver to wait for snapshot changes.
    pub fn watch(&self) -> watch::Receiver<NetworkSnapshot> {
        self.snapshot.clone()
    }

    /// Keeps an order's head for peers that connect later, without gossiping it (heads
    /// found in the store at start).
    pub fn remember_head(&self, announcement: HeadAnnouncement) {
        self.heads.remember(announcement);
    }

    /// When and how this node first saw a head announced (see [`SeenHeads`]).
    pub fn head_seen(&self, head: &Cid) -> Option<HeadSeen> {
        self.seen_heads.seen(head)
    }

    /// Probes the DHT: looks up the peers closest to a random key and reports the lookup.
    pub async fn probe(&self) -> Result<ProbeReport, ProbeError> {
        let (reply, answer) = oneshot::channel();
        self.send(NetworkCommand::Probe(reply))
            .await
            .map_err(|_| ProbeError::Closed)?;
        answer.await.map_err(|_| ProbeError::Closed)?
    }
}

/// The shared ends the supervisor keeps so the network can restart behind the same handle.
#[derive(Debug, Clone)]
pub struct NetworkChannels {
    commands: Arc<watch::Sender<mpsc::Sender<NetworkCommand>>>,
    bitswap: Arc<watch::Sender<mpsc::Sender<BitswapCommand>>>,
    snapshot: Arc<watch::Sender<NetworkSnapshot>>,
    heads: OwnHeads,
    seen_heads: SeenHeads,
}

impl NetworkChannels {
    /// Has the handle say that `peers` are connected, as a swarm would: for tests with no
    /// swarm.
    #[cfg(test)]
    pub(crate) fn pretend_connected(&self, peers: impl IntoIterator<Item = PeerId>) {
        self.snapshot
            .send_modify(|snapshot| snapshot.connected.extend(peers));
    }

    /// New channels and the handle that reads them.
    pub fn new() -> (Self, NetworkHandle) {
        // A placeholder sender whose receiver is dropped: commands fail until the actor runs.
        let (placeholder, _) = mpsc::channel(1);
        let (commands, commands_rx) = watch::channel(placeholder);
        let (placeholder, _) = mpsc::channel(1);
        let (bitswap, bitswap_rx) = watch::channel(placeholder);
        let (snapshot, snapshot_rx) = watch::channel(NetworkSnapshot::default());
        let heads = OwnHeads::default();
        let seen_heads = SeenHeads::default();
        (
            Self {
                commands: Arc::new(commands),
                bitswap: Arc::new(bitswap),
                snapshot: Arc::new(snapshot),
                heads: heads.clone(),
                seen_heads: seen_heads.clone(),
            },
            NetworkHandle {
                commands: commands_rx,
                bitswap: bitswap_rx,
                snapshot: snapshot_rx,
                heads,
                seen_heads,
            },
        )
    }
}
