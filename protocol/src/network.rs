//! dta's libp2p wire: the composed behaviour, the request-response protocol and its limits.
//!
//! This module defines what goes over the wire and how big it may be; it does not run a
//! swarm (the network actor in `dta-actors` owns the one swarm task).

use std::time::Duration;

use libp2p::allow_block_list::{self, AllowedPeers};
use libp2p::core::Transport;
use libp2p::identity::Keypair;
use libp2p::{
    PeerId, StreamProtocol, Swarm, connection_limits, gossipsub, identify, kad, mdns, noise, ping,
};
use libp2p::{request_response, tcp, yamux};
use serde::{Deserialize, Serialize};

use crate::new_port::NewPortDials;

/// Gossipsub topic for identity news: revocations, identities a node starts hosting, and a
/// node's rotated document. First documents are not gossiped: peers ask for them when they
/// connect, or find their providers in the DHT when they need one.
pub const IDENTITY_TOPIC: &str = "dta/identities/v1";
/// Gossipsub topic on which principals announce the newest envelope of each order's log.
pub const HEADS_TOPIC: &str = "dta/heads/v1";
/// dta's own Kademlia protocol, so that dta nodes form their own DHT.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/dta/kad/1.0.0");
/// The request-response protocol.
pub const RPC_PROTOCOL: StreamProtocol = StreamProtocol::new("/dta/rpc/1.0.0");
/// Identify's protocol version string: `/dta/MAJOR.MINOR.PATCH`. Nodes of one major version
/// speak to each other; a new major version is a change older nodes cannot follow.
pub const IDENTIFY_PROTOCOL: &str = "/dta/1.0.0";

/// Whether this node can speak to a peer that announced `announced` as its identify protocol
/// version: yes for a dta peer of the same major version, and for a peer that is not dta at
/// all (an IPFS peer, which only ever exchanges blocks); else why not.
pub fn compatible(announced: &str) -> Result<(), String> {
    let Some(version) = announced.strip_prefix("/dta/") else {
        return Ok(());
    };
    let major = |v: &str| v.split('.').next().and_then(|m| m.parse::<u32>().ok());
    let ours = major(&IDENTIFY_PROTOCOL["/dta/".len()..]);
    match major(version) {
        Some(theirs) if Some(theirs) == ours => Ok(()),
        Some(_) => Err(format!(
            "it speaks dta protocol {announced}, this node {IDENTIFY_PROTOCOL}: another major \
             version, whose messages this node cannot read"
        )),
        None => Err(format!(
            "it announces dta protocol {announced:?}, which names no version this node knows"
        )),
    }
}
/// Largest request accepted: one envelope plus framing.
pub const MAX_REQUEST_SIZE: u64 = 1024 * 1024 + 4096;
/// Largest response accepted.
pub const MAX_RESPONSE_SIZE: u64 = 1024 * 1024 + 4096;
/// Largest gossip message (identity documents are under 2 KiB).
pub const MAX_GOSSIP_SIZE: usize = 64 * 1024;
/// Gossip messages that may wait for one peer's connection (half of them forwards, half
/// publishes and control messages). Gossipsub allocates the forward half in full for every
/// peer, 232 bytes a slot: its default of 5 000 cost about 0.6 MiB per connected peer, the
/// largest part of a node's memory in a 50-node network. dta gossips a batch of heads every
/// 250 ms and identity news (revocations, hosted identities) now and then; 64 queued forwards
/// absorbed the burst of every identity of a 50-node network starting at once, when first
/// documents were still gossiped (gossipsub's "couldn't consume" debug line, logged for every
/// message dropped, stayed silent there), and each slot fewer saves 232 bytes per connected
/// peer.
pub const GOSSIP_QUEUE_LEN: usize = 128;
/// How long a request may wait for its response.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Concurrent inbound plus outbound request streams per connection.
pub const MAX_CONCURRENT_STREAMS: usize = 64;

/// A request from one node to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// "Send me your identity document."
    Identity,
    /// "Take these envelope blocks": a [`crate::envelope::Bundle`], one sender's `prev` chain
    /// segment, oldest first. Checked for structure and links on arrival.
    Deliver {
        /// The encoded signed envelopes.
        blocks: Vec<serde_bytes::ByteBuf>,
    },
    /// An M-Pin client's first pass to this node as authentication server: U for an
    /// identity (and date). Answered with [`Response::MpinChallenge`].
    MpinChallenge {
        /// The M-Pin identity.
        identity: String,
        /// U, a G1 point in Milagro's encoding.
        #[serde(with = "serde_bytes")]
        u: Vec<u8>,
        /// The date of a time permit, if the client used one.
        date: Option<u32>,
    },
    /// "Where does your log of this order end?", to the order's principal: answered with
    /// [`Response::Heads`], empty when the responder is not its principal. A node asks this
    /// when it audits an order it heard of while away, or too long ago for the newest heads
    /// an identity response carries.
    Head {
        /// The order's principal (this node's identity, or one it hosts).
        principal: cid::Cid,
        /// The order reference.
        reference: String,
    },
    /// The client's second pass: V for an open session. Answered with
    /// [`Response::MpinVerdict`].
    MpinVerify {
        /// The session the challenge opened.
        session: String,
        /// V, a G1 point in Milagro's encoding.
        #[serde(with = "serde_bytes")]
        v: Vec<u8>,
    },
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The responder's identity document (canonical DAG-CBOR), and the documents of the
    /// identities it hosts (same peer id, keys in its keystore).
    Identity {
        /// The document's bytes.
        #[serde(with = "serde_bytes")]
        document: Vec<u8>,
        /// Hosted identities' documents.
        #[serde(default)]
        hosted: Vec<serde_bytes::ByteBuf>,
        /// The newest heads of the responder's own orders as principal (at most
        /// [`MAX_HEADS_IN_IDENTITY`]): a node that missed their announcements while it was
        /// away or cut off learns them when it connects again.
        #[serde(default)]
        heads: Vec<HeadAnnouncement>,
        /// The roles the responder's node plays (`principal`, `fiduciary`, `beneficiary`):
        /// a principal refuses an order or a release that the named node cannot serve
        /// before anything is published. Empty from a node that does not say.
        #[serde(default)]
        roles: Vec<String>,
        /// Revocations the responder holds (at most 1024), each checked by the receiver
        /// against the identity it names.
        #[serde(default)]
        revocations: Vec<serde_bytes::ByteBuf>,
        /// The documents `document` succeeds, after rotations of the responder's keys, the
        /// first one first: the receiver checks each against the one before.
        #[serde(default)]
        predecessors: Vec<serde_bytes::ByteBuf>,
    },
    /// The delivered block was taken.
    Accepted,
    /// The delivered block was refused, and why.
    Rejected {
        /// A readable reason.
        reason: String,
    },
    /// The server's challenge y (a 48-byte scalar) for a new session.
    MpinChallenge {
        /// The session to answer in.
        session: String,
        /// y.
        #[serde(with = "serde_bytes")]
        y: Vec<u8>,
    },
    /// The server's verdict.
    MpinVerdict {
        /// Whether the client proved its token and PIN.
        authenticated: bool,
        /// Why not.
        reason: Option<String>,
    },
    /// The answer to [`Request::Head`]: the order's head, or none.
    Heads {
        /// At most one head, of the order asked about.
        heads: Vec<HeadAnnouncement>,
    },
}

/// Most order heads an identity response carries.
pub const MAX_HEADS_IN_IDENTITY: usize = 256;

/// "The log of order `reference` now ends at `head`", gossiped by the order's principal so
/// that any node can audit the order by its reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadAnnouncement {
    /// The order reference.
    pub reference: String,
    /// The newest envelope of its main chain.
    pub head: cid::Cid,
}

/// Where Bitswap reads the blocks that peers ask for. Reads block on storage: callers run
/// them off the async workers.
pub trait BlockSource: Send + Sync + std::fmt::Debug + 'static {
    /// The block's bytes, if present.
    fn block(&self, cid: &cid::Cid) -> Option<Vec<u8>>;
}

pub use composed::{Behaviour, BehaviourEvent};

/// The derive macro generates `BehaviourEvent` without docs, hence the module-level allow.
mod composed {
    #![allow(missing_docs)]

    use libp2p::allow_block_list::{self, AllowedPeers, BlockedPeers};
    use libp2p::swarm::NetworkBehaviour;
    use libp2p::swarm::behaviour::toggle::Toggle;
    use libp2p::{gossipsub, identify, kad, mdns, ping, request_response};

    use crate::rpc_codec::RpcCodec;

    /// Every protocol a dta node speaks, in one behaviour.
    #[derive(NetworkBehaviour)]
    #[allow(missing_debug_implementations)]
    pub struct Behaviour {
        /// Refuses connections past the hard cap (see [`super::SwarmConfig::max_connections`]).
        pub limits: libp2p::connection_limits::Behaviour,
        /// With an allow-list configured, connections with any other peer are denied.
        pub allow: Toggle<allow_block_list::Behaviour<AllowedPeers>>,
        /// Peers the operator blocked: no connection with them, in either direction.
        pub block: allow_block_list::Behaviour<BlockedPeers>,
        /// Exchanges listen addresses and protocols.
        pub identify: identify::Behaviour,
        /// Keeps connections alive and measures round trips.
        pub ping: ping::Behaviour,
        /// LAN discovery; off when configured so (and always in tests outside namespaces).
        pub mdns: Toggle<mdns::tokio::Behaviour>,
        /// Peer routing beyond the LAN.
        pub kad: kad::Behaviour<kad::store::MemoryStore>,
        /// Identity announcements (and later, log heads).
        pub gossipsub: gossipsub::Behaviour,
        /// dta requests, CBOR-encoded, size-capped.
        pub rpc: request_response::Behaviour<RpcCodec>,
        /// Raw outbound streams (Bitswap), opened outside the swarm task through a control.
        pub stream: libp2p_stream::Behaviour,
        /// Inbound Bitswap streams, queued and handed to the swarm owner.
        pub bitswap: crate::inbound::Behaviour,
    }
}

/// How many peers a node keeps connections with when it can choose: about gossipsub's mesh
/// degree and its spare. A node dials peers it learns of only while it has fewer, and closes
/// the idlest connections (down to twice as many) once it has three times as many.
pub const DEFAULT_TARGET_PEERS: usize = 12;

/// How many connections a node of `target_peers` accepts at most; past that, new ones are
/// refused. Far above the target, so that a bootstrap node takes newcomers long enough for
/// them to look around and DHT queries find room: a cap of `4 × target + 16` left nodes of a
/// 100-node testnet that started at once without any peer (their one bootstrap peer was
/// full) and slowed the others' start threefold.
pub fn max_connections(target_peers: usize) -> u32 {
    u32::try_from(8 * target_peers + 32).unwrap_or(u32::MAX)
}

/// How long a connection no protocol needs stays open. Long: the network loop closes the
/// idlest connections itself once it has too many, and one closed early would be dialed again
/// as soon as the node has fewer than its target.
pub const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// How often a node announces again, in the DHT, that it provides its identities (a little
/// sooner, by an amount of its own: see `dta_actors::network::lookup::provide_interval`). The
/// peers that hold a provider record keep it 48 hours; announcing again reaches the peers
/// that joined closer to the key since. Each announcement is a lookup of some sixty-five
/// requests, most of them connections: every ten minutes, they were about a sixth of what an
/// idle 250-node testnet spent (26 of some 160 CPU-seconds) and 30 connections per node
/// each time, nearly all the connections the formed network made.
pub const PROVIDE_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// How to build a swarm.
#[derive(Debug, Clone)]
pub struct SwarmConfig {
    /// Discover peers on the LAN with mDNS.
    pub mdns: bool,
    /// Only these peers may connect, if set.
    pub allow_list: Option<Vec<PeerId>>,
    /// How many peers to keep connections with (see [`DEFAULT_TARGET_PEERS`]).
    pub target_peers: usize,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        Self {
            mdns: false,
            allow_list: None,
            target_peers: DEFAULT_TARGET_PEERS,
        }
    }
}

impl SwarmConfig {
    /// The hard cap on established connections.
    pub fn max_connections(&self) -> u32 {
        max_connections(self.target_peers)
    }
}

/// Why a swarm could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    /// The transport could not be set up.
    #[error("transport: {0}")]
    Transport(String),
    /// A behaviour could not be set up.
    #[error("behaviour: {0}")]
    Behaviour(String),
}

/// Builds the swarm: QUIC, and TCP dialing from new ports ([`crate::new_port`]) with noise and
/// yamux; and [`Behaviour`].
pub fn build_swarm(keypair: Keypair, config: &SwarmConfig) -> Result<Swarm<Behaviour>, SwarmError> {
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_quic()
        .with_other_transport(
            |key| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
                let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
                // What `SwarmBuilder::with_tcp` builds, on the wrapped transport.
                Ok(NewPortDials::new(tcp)
                    .upgrade(libp2p::core::upgrade::Version::V1Lazy)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(yamux::Config::default()))
            },
        )
        .map_err(|e| SwarmError::Transport(e.to_string()))?
        .with_behaviour(|key| behaviour(key, config))
        .map_err(|e| SwarmError::Behaviour(e.to_string()))?
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT)
                // A new stream proposes its one protocol and sends its first message at once
                // instead of waiting a round trip for the peer's consent: every request opens
                // a stream, so over a WAN this saves a round trip per message.
                .with_substream_upgrade_protocol_override(libp2p::core::upgrade::Version::V1Lazy)
        })
        .build();
    Ok(swarm)
}

fn behaviour(
    key: &Keypair,
    config: &SwarmConfig,
) -> Result<Behaviour, Box<dyn std::error::Error + Send + Sync>> {
    let peer_id = key.public().to_peer_id();
    let allow = config.allow_list.as_ref().map(|peers| {
        let mut allow = allow_block_list::Behaviour::<AllowedPeers>::default();
        for peer in peers {
            allow.allow_peer(*peer);
        }
        allow
    });
    let mdns = if config.mdns {
        Some(mdns::tokio::Behaviour::new(
            mdns::Config::default(),
            peer_id,
        )?)
    } else {
        None
    };
    let mut kad_config = kad::Config::new(KAD_PROTOCOL);
    // The network loop announces its identities again itself, every `PROVIDE_INTERVAL`.
    kad_config.set_provider_publication_interval(None);
    // The network loop decides what enters the table (see `dta_actors::network::peers`):
    // left to itself, Kademlia dials a bucket's oldest peer whenever a new one finds the
    // bucket full, and with most of the table not connected that dial is a connection made
    // again for every connection made.
    kad_config.set_kbucket_inserts(kad::BucketInserts::Manual);
    // Nor does it refresh every bucket every five minutes, a lookup per bucket (see
    // `dta_actors::network::swarm::look_around`); the loop announces the node's identities
    // every `PROVIDE_INTERVAL`, and a table that lost peers fills again from those that
    // connect.
    kad_config.set_periodic_bootstrap_interval(None);
    let mut kad =
        kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
    kad.set_mode(Some(kad::Mode::Server));
    let gossipsub_config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .max_transmit_size(MAX_GOSSIP_SIZE)
        .connection_handler_queue_len(GOSSIP_QUEUE_LEN)
        .build()?;
    let mut gossipsub = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(key.clone()),
        gossipsub_config,
    )?;
    gossipsub.subscribe(&gossipsub::IdentTopic::new(IDENTITY_TOPIC))?;
    gossipsub.subscribe(&gossipsub::IdentTopic::new(HEADS_TOPIC))?;
    let rpc = request_response::Behaviour::with_codec(
        crate::rpc_codec::RpcCodec::default(),
        [(RPC_PROTOCOL, request_response::ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(REQUEST_TIMEOUT)
            .with_max_concurrent_streams(MAX_CONCURRENT_STREAMS),
    );
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(config.max_connections()))
        // Two peers that dial each other at once hold two connections for a moment.
        .with_max_established_per_peer(Some(2));
    Ok(Behaviour {
        limits: connection_limits::Behaviour::new(limits),
        allow: allow.into(),
        block: allow_block_list::Behaviour::default(),
        identify: identify::Behaviour::new(identify::Config::new(
            IDENTIFY_PROTOCOL.into(),
            key.public(),
        )),
        ping: ping::Behaviour::default(),
        mdns: mdns.into(),
        kad,
        gossipsub,
        rpc,
        stream: libp2p_stream::Behaviour::new(),
        bitswap: crate::inbound::Behaviour::new(libp2p::StreamProtocol::new(
            crate::bitswap::PROTOCOL,
        )),
    })
}

#[cfg(test)]
mod version_tests {
    use super::compatible;

    #[test]
    fn peers_of_another_major_version_are_refused_with_a_reason() {
        assert_eq!(compatible("/dta/1.0.0"), Ok(()));
        assert_eq!(compatible("/dta/1.7.3"), Ok(()));
        assert_eq!(
            compatible("ipfs/0.1.0"),
            Ok(()),
            "an IPFS peer takes part in Bitswap"
        );
        let refused = compatible("/dta/2.0.0").unwrap_err();
        assert!(
            refused.contains("/dta/2.0.0") && refused.contains("/dta/1.0.0"),
            "{refused}"
        );
        assert!(compatible("/dta/").is_err());
        assert!(compatible("/dta/x.1").is_err());
    }
}
