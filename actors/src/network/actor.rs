//! The network actor: builds the swarm from its arguments, starts the one task that owns it
//! ([`super::swarm`]) and the Bitswap engine, and hands out the [`super::NetworkHandle`]. It
//! holds no network state of its own; when it stops, the swarm task is cancelled.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use dta_protocol::network::{self, SwarmConfig};
use libp2p::Multiaddr;
use libp2p::identity::Keypair;
use ractor::{Actor, ActorProcessingErr, ActorRef, DerivedActorRef};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::swarm::SwarmLoop;
use super::{COMMAND_CAPACITY, MAX_UNACKNOWLEDGED, NetworkChannels, NetworkEvent};
use crate::hosted::Hosted;
use crate::metrics::Metrics;
use crate::role::Role;

/// Everything the network actor needs to start (and restart).
#[derive(Debug, Clone)]
pub struct NetworkArgs {
    /// The node's libp2p key.
    pub keypair: Keypair,
    /// Swarm options (mDNS, allow-list).
    pub swarm: SwarmConfig,
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Addresses to dial at start.
    pub bootstrap: Vec<Multiaddr>,
    /// This node's identity document, served on request and announced on gossip.
    pub identity_document: Vec<u8>,
    /// The documents the node's own one succeeds (after rotations of its keys), the first
    /// one first.
    pub predecessors: Vec<Vec<u8>>,
    /// Identities this node hosts, served and announced with its own.
    pub hosted: Hosted,
    /// Where events go.
    pub subscribers: Vec<DerivedActorRef<NetworkEvent>>,
    /// Channels shared with the handle.
    pub channels: NetworkChannels,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Blocks served to peers that ask.
    pub blocks: Arc<dyn dta_protocol::network::BlockSource>,
    /// The roles this node plays, told to every peer with the identity document.
    pub roles: Vec<Role>,
    /// Where the addresses of the peers met are kept (see [`crate::peer_book`]).
    pub peer_book: crate::store::Store,
}

/// The actor that owns the swarm task's lifecycle.
#[derive(Debug)]
pub struct NetworkActor;

/// The network actor's state: the running swarm task.
#[derive(Debug)]
pub struct NetworkState {
    /// Cancels the swarm task.
    cancel: CancellationToken,
    /// The swarm task.
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Actor for NetworkActor {
    type Msg = ();
    type State = NetworkState;
    type Arguments = NetworkArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: NetworkArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut swarm = network::build_swarm(args.keypair.clone(), &args.swarm)?;
        let local = *swarm.local_peer_id();
        // Blocks outlive a restart of this actor and of the node: they are the operator's,
        // not the swarm's.
        let mut blocked = args.channels.snapshot.borrow().blocked.clone();
        blocked.extend(crate::block_list::peers(&args.peer_book)?);
        for peer in blocked {
            swarm.behaviour_mut().block.block_peer(peer);
        }
        for address in &args.listen {
            swarm
                .listen_on(address.clone())
                .map_err(|e| format!("cannot listen on {address}: {e}"))?;
        }
        let (sender, commands) = mpsc::channel(COMMAND_CAPACITY);
        args.channels.commands.send_replace(sender);
        let cancel = CancellationToken::new();
        let (sender, bitswap_commands) = mpsc::channel(crate::network::bitswap::COMMAND_CAPACITY);
        args.channels.bitswap.send_replace(sender);
        let (bitswap_streams, inbound) = mpsc::channel(crate::network::bitswap::INBOUND_STREAMS);
        tokio::spawn(
            crate::network::bitswap::Engine {
                control: swarm.behaviour().stream.new_control(),
                inbound,
                blocks: args.blocks,
                snapshot: args.channels.snapshot.subscribe(),
                commands: bitswap_commands,
                cancel: cancel.clone(),
                metrics: args.metrics.clone(),
            }
            .run(),
        );
        let (acknowledged_tx, acknowledged) = mpsc::channel(MAX_UNACKNOWLEDGED);
        let rotated = !args.predecessors.is_empty();
        let task = tokio::spawn(
            SwarmLoop {
                swarm,
                commands,
                cancel: cancel.clone(),
                snapshot: args.channels.snapshot.clone(),
                own_heads: args.channels.heads.clone(),
                seen_heads: args.channels.seen_heads.clone(),
                probes: HashMap::new(),
                subscribers: args.subscribers,
                identity_document: args.identity_document,
                predecessors: args.predecessors,
                hosted: args.hosted,
                revocations: crate::revocations::stored(&args.peer_book)?,
                roles: args.roles,
                peer_book: args.peer_book,
                bitswap_streams,
                metrics: args.metrics,
                pending: HashMap::new(),
                in_flight: HashMap::new(),
                queued: HashMap::new(),
                identity_requests: HashSet::new(),
                identity_retries: HashSet::new(),
                pending_heads: Vec::new(),
                heads_window: Default::default(),
                seen_identities: HashSet::new(),
                identity_budget: crate::network::budget::Budget::identity_requests(),
                awaiting: HashMap::new(),
                next_awaiting: 0,
                unacknowledged: HashMap::new(),
                next_delivery: 0,
                acknowledged_tx,
                acknowledged,
                // A rotated document goes to the peers connected at start; a first one is
                // asked for or looked up.
                announce_due: rotated,
                hosted_added: false,
                connections: crate::network::peers::Connections::new(args.swarm.target_peers),
                connections_round: 0,
                lookups: crate::network::lookup::Lookups::new(&local),
                bootstrap_dials: HashMap::new(),
                bootstrap: crate::network::peers::Bootstrap::default(),
            }
            .run(args.bootstrap),
        );
        Ok(NetworkState {
            cancel,
            task: Some(task),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        _message: (),
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.cancel.cancel();
        if let Some(task) = state.task.take() {
            let _ = task.await;
        }
        Ok(())
    }
}
