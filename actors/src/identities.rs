//! The identity directory: verifies identity documents that peers send or gossip, stores the
//! good ones and publishes what the node knows.
//!
//! A document is accepted only if it decodes strictly, its self-signature and proof of
//! possession verify, and its peer id is the peer that sent it (the connection's peer, or the
//! signed gossip publisher). A rejected document is logged with the reason and never stored.

use std::collections::BTreeMap;
use std::sync::Arc;

use dta_protocol::Cid;
use dta_protocol::identity::{IdentityDocument, VerifiedIdentity};
use libp2p::PeerId;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::network::NetworkEvent;
use crate::store::{Column, Store, StoreMsg};

/// How long a durable write may take before the actor gives up on it.
const STORE_TIMEOUT_MS: u64 = 10_000;

/// One known identity, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownIdentity {
    /// Identity CID.
    pub cid: Cid,
    /// Node name.
    pub name: String,
    /// Peer id.
    pub peer_id: PeerId,
    /// Creation time, seconds since the epoch.
    pub created_at: u64,
    /// The document's bytes.
    pub document: Vec<u8>,
    /// The verified identity, so that users do not verify it again (two pairings each time).
    pub verified: VerifiedIdentity,
}

/// Everything the node knows, keyed by CID (as text, for stable ordering).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    /// Known identities, this node's own included.
    pub identities: BTreeMap<String, KnownIdentity>,
    /// The last head announced for each order, by reference and announcer (two principals
    /// may use one reference). Only a hint of where to start an audit: the audit itself
    /// checks everything.
    pub heads: BTreeMap<(String, Cid), Cid>,
}

impl Directory {
    /// The identity CID of a peer, if known.
    pub fn cid_of(&self, peer: &PeerId) -> Option<Cid> {
        self.identities
            .values()
            .find(|i| i.peer_id == *peer)
            .map(|i| i.cid)
    }
}

/// Why a received identity document was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RejectReason {
    /// The document itself is invalid.
    #[error(transparent)]
    Invalid(#[from] dta_protocol::identity::IdentityError),
    /// The peer id inside is not parseable.
    #[error("the document's peer id is not a libp2p peer id")]
    BadPeerId,
    /// The document names another peer than the one that sent it.
    #[error("the document is for peer {claimed}, but came from {sender}")]
    PeerMismatch {
        /// Peer id in the document.
        claimed: String,
        /// Peer that sent it.
        sender: String,
    },
}

/// Verifies a received document against its sender. Pure, so it can be tested directly.
pub fn verify_received(peer: PeerId, document: &[u8]) -> Result<VerifiedIdentity, RejectReason> {
    let identity = IdentityDocument::decode_verified(document)?;
    let claimed = PeerId::from_bytes(identity.peer_id()).map_err(|_| RejectReason::BadPeerId)?;
    if claimed != peer {
        return Err(RejectReason::PeerMismatch {
            claimed: claimed.to_string(),
            sender: peer.to_string(),
        });
    }
    Ok(identity)
}

/// Messages to the [`IdentitiesActor`].
#[derive(Debug)]
pub enum IdentitiesMsg {
    /// Something arrived from the network.
    Network(NetworkEvent),
}

impl From<NetworkEvent> for IdentitiesMsg {
    fn from(event: NetworkEvent) -> Self {
        Self::Network(event)
    }
}

impl TryFrom<IdentitiesMsg> for NetworkEvent {
    type Error = ();
    fn try_from(message: IdentitiesMsg) -> Result<Self, ()> {
        match message {
            IdentitiesMsg::Network(event) => Ok(event),
        }
    }
}

/// Start-up arguments.
#[derive(Debug, Clone)]
pub struct IdentitiesArgs {
    /// For reading what is stored.
    pub store: Store,
    /// For durable writes.
    pub store_actor: ActorRef<StoreMsg>,
    /// This node's identity.
    pub local: VerifiedIdentity,
    /// Where the directory is published.
    pub directory: Arc<watch::Sender<Directory>>,
    /// Counters.
    pub metrics: Arc<Metrics>,
}

/// The identity directory actor.
#[derive(Debug)]
pub struct IdentitiesActor;

fn known(identity: &VerifiedIdentity) -> Option<KnownIdentity> {
    Some(KnownIdentity {
        cid: identity.cid(),
        name: identity.name().to_owned(),
        peer_id: PeerId::from_bytes(identity.peer_id()).ok()?,
        created_at: identity.document().claims.created_at,
        document: dta_protocol::dagcbor::encode(identity.document()).ok()?,
        verified: identity.clone(),
    })
}

impl Actor for IdentitiesActor {
    type Msg = IdentitiesMsg;
    type State = IdentitiesArgs;
    type Arguments = IdentitiesArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: IdentitiesArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        // What was stored was verified before it was stored; verify again anyway, since the
        // database is only as trustworthy as the disk.
        let mut directory = Directory::default();
        for (_, bytes) in args.store.scan(Column::Identities)? {
            match IdentityDocument::decode_verified(&bytes) {
                Ok(identity) => {
                    if let Some(entry) = known(&identity) {
                        directory.identities.insert(entry.cid.to_string(), entry);
                    }
                }
                Err(err) => warn!(%err, "stored identity document no longer verifies; ignored"),
            }
        }
        if let Some(entry) = known(&args.local) {
            directory.identities.insert(entry.cid.to_string(), entry);
        }
        args.directory.send_replace(directory);
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let IdentitiesMsg::Network(event) = message;
        let (peer, document) = match event {
            NetworkEvent::IdentityReceived { peer, document } => (peer, document),
            NetworkEvent::HeadAnnounced { peer, announcement } => {
                // Heads count only from known identities; unknown announcers are ignored.
                let announcer = state.directory.borrow().cid_of(&peer);
                if let Some(announcer) = announcer {
                    state.directory.send_modify(|d| {
                        d.heads
                            .insert((announcement.reference, announcer), announcement.head);
                    });
                }
                return Ok(());
            }
            NetworkEvent::Misconduct {
                peer,
                offence,
                detail,
            } => {
                // Counted against the peer's identity when it is known; a stranger's offences
                // are counted under no culprit, so strangers cannot add labels.
                let culprit = state.directory.borrow().cid_of(&peer);
                match culprit {
                    Some(culprit) => {
                        warn!(%peer, %culprit, offence = offence.name(), "misconduct: {detail}");
                    }
                    None => warn!(%peer, offence = offence.name(), "misconduct: {detail}"),
                }
                state.metrics.record_misconduct(offence, culprit);
                return Ok(());
            }
            NetworkEvent::EnvelopesReceived { .. } | NetworkEvent::Answer { .. } => return Ok(()),
        };
        let identity = match verify_received(peer, &document) {
            Ok(identity) => identity,
            Err(reason) => {
                Metrics::bump(&state.metrics.identities_rejected);
                warn!(%peer, %reason, "identity document rejected");
                return Ok(());
            }
        };
        let cid = identity.cid();
        if state
            .directory
            .borrow()
            .identities
            .contains_key(&cid.to_string())
        {
            return Ok(());
        }
        let Some(entry) = known(&identity) else {
            return Ok(());
        };
        ractor::call_t!(
            state.store_actor,
            |reply| StoreMsg::Put {
                column: Column::Identities,
                key: cid.to_bytes(),
                value: entry.document.clone(),
                reply,
            },
            STORE_TIMEOUT_MS
        )??;
        info!(%peer, %cid, name = %entry.name, "identity verified and stored");
        Metrics::bump(&state.metrics.identities_accepted);
        state.directory.send_modify(|d| {
            d.identities.insert(cid.to_string(), entry);
        });
        Ok(())
    }
}
