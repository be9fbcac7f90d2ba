//! The identity directory: verifies identity documents that peers send or gossip, stores the
//! good ones and publishes what the node knows.
//!
//! A document is accepted only if it decodes strictly, its self-signature and proof of
//! possession verify, and its peer id is the peer that sent it (the connection's peer, or the
//! signed gossip publisher). A rejected document is logged with the reason and never stored.
//!
//! Revocations come the same ways (and from the API, for identities this node holds or whose
//! node it operates): one is kept only if it verifies against the identity it names, which
//! must be known here; the earliest kept for an identity stands. Kept ones are stored, put in
//! the directory for the role steps to refuse by, and handed to the network loop, which
//! serves them to peers that connect and gossips them.

use std::collections::BTreeMap;
use std::sync::Arc;

use dta_protocol::Cid;
use dta_protocol::identity::{IdentityDocument, IdentityError, LocalIdentity, VerifiedIdentity};
use dta_protocol::revocation::{Revocation, RevocationError, Revoker, VerifiedRevocation};
use libp2p::PeerId;
use libp2p::identity::Keypair;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::hosted::Hosted;
use crate::metrics::Metrics;
use crate::network::{NetworkCommand, NetworkEvent, NetworkHandle};
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
    /// Revoked identities, by CID as text.
    pub revoked: BTreeMap<String, RevokedIdentity>,
}

/// An identity revoked, as a verified revocation says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedIdentity {
    /// The identity.
    pub identity: Cid,
    /// From when, milliseconds since the epoch.
    pub at: u64,
    /// Why.
    pub reason: String,
    /// Who signed the revocation.
    pub revoker: Revoker,
    /// The revocation's CID.
    pub revocation: Cid,
}

impl RevokedIdentity {
    fn of(revocation: &VerifiedRevocation) -> Self {
        Self {
            identity: revocation.revoked(),
            at: revocation.at(),
            reason: revocation.reason().to_owned(),
            revoker: revocation.revoker(),
            revocation: revocation.cid(),
        }
    }
}

impl std::fmt::Display for RevokedIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "identity {} was revoked by its {} at {} ms",
            self.identity,
            self.revoker.name(),
            self.at
        )?;
        if !self.reason.is_empty() {
            write!(f, " ({})", self.reason)?;
        }
        Ok(())
    }
}

impl Directory {
    /// The revocation of `cid`, if it was revoked.
    pub fn revoked(&self, cid: &Cid) -> Option<&RevokedIdentity> {
        self.revoked.get(&cid.to_string())
    }

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
    /// A rotated document whose predecessor is not the key state known here (it comes
    /// before it, with the chain, in an identity answer).
    #[error("a rotated document that does not follow the key state known here")]
    Unlinked,
    /// The document names another peer than the one that sent it.
    #[error("the document is for peer {claimed}, but came from {sender}")]
    PeerMismatch {
        /// Peer id in the document.
        claimed: String,
        /// Peer that sent it.
        sender: String,
    },
}

/// Verifies a received document against its sender and, for a rotated document, against the
/// key state it replaces, which `directory` must hold. `None` when the directory has this
/// key state or a newer one. Pure, so it can be tested directly.
pub fn verify_received(
    peer: PeerId,
    document: &[u8],
    directory: &Directory,
) -> Result<Option<VerifiedIdentity>, RejectReason> {
    let identity = match IdentityDocument::decode_verified(document) {
        Ok(identity) => {
            if directory
                .identities
                .contains_key(&identity.cid().to_string())
            {
                return Ok(None);
            }
            identity
        }
        Err(IdentityError::Unlinked) => {
            let limits = dta_protocol::dagcbor::Limits {
                max_size: dta_protocol::identity::MAX_IDENTITY_SIZE,
                ..Default::default()
            };
            let rotated: IdentityDocument =
                dta_protocol::dagcbor::decode(document, limits).map_err(IdentityError::from)?;
            let succession = rotated
                .claims
                .succeeds
                .clone()
                .ok_or(RejectReason::Invalid(IdentityError::Unlinked))?;
            let Some(known) = directory.identities.get(&succession.identity.to_string()) else {
                return Err(RejectReason::Unlinked);
            };
            if known.verified.sequence() >= succession.sequence {
                return Ok(None);
            }
            if known.verified.document_cid() != succession.previous {
                return Err(RejectReason::Unlinked);
            }
            rotated.verify_successor(&known.verified)?
        }
        Err(err) => return Err(err.into()),
    };
    let claimed = PeerId::from_bytes(identity.peer_id()).map_err(|_| RejectReason::BadPeerId)?;
    if claimed != peer {
        return Err(RejectReason::PeerMismatch {
            claimed: claimed.to_string(),
            sender: peer.to_string(),
        });
    }
    Ok(Some(identity))
}

/// Why the node did not revoke an identity on its operator's word.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RevokeError {
    /// The identity is not known here.
    #[error("unknown identity {0}")]
    Unknown(String),
    /// It is revoked already.
    #[error("{0}")]
    AlreadyRevoked(RevokedIdentity),
    /// This node holds neither the identity's keys nor the operator key of the node its
    /// document names (or not the kind asked for).
    #[error("this node cannot sign a revocation of {identity} as its {revoker}")]
    NoKey {
        /// The identity.
        identity: String,
        /// Who was to sign.
        revoker: &'static str,
    },
    /// The revocation could not be made or did not verify.
    #[error(transparent)]
    Revocation(#[from] RevocationError),
    /// It could not be stored.
    #[error("cannot store the revocation: {0}")]
    Store(String),
}

/// What the API asks of the directory.
#[derive(Debug)]
pub struct RevokeRequest {
    /// The identity to revoke.
    pub identity: Cid,
    /// Why.
    pub reason: String,
    /// Who signs: the identity, the operator, or (none) the identity when this node holds its
    /// keys, else the operator.
    pub revoker: Option<Revoker>,
}

/// Messages to the [`IdentitiesActor`].
#[derive(Debug)]
pub enum IdentitiesMsg {
    /// Something arrived from the network.
    Network(NetworkEvent),
    /// Revoke an identity this node holds or whose node it operates.
    Revoke(
        RevokeRequest,
        RpcReplyPort<Result<RevokedIdentity, RevokeError>>,
    ),
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
            IdentitiesMsg::Revoke(..) => Err(()),
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
    /// This node's identity and keys (to sign a revocation of itself). Shared: the keys are
    /// large, and actor arguments are moved around by value.
    pub local: Arc<LocalIdentity>,
    /// The identities it hosts (to sign a revocation of one).
    pub hosted: Hosted,
    /// The node's libp2p key (to sign a revocation as the operator).
    pub operator: Keypair,
    /// Where kept revocations go, to be served and gossiped.
    pub network: NetworkHandle,
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
        // Pairing checks of every stored document: off the async workers (and off the stack
        // of whoever spawns this actor).
        let (store, local) = (args.store.clone(), args.local.identity().clone());
        let directory = tokio::task::spawn_blocking(move || load(&store, &local)).await??;
        args.directory.send_replace(directory);
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let event = match message {
            IdentitiesMsg::Network(event) => event,
            IdentitiesMsg::Revoke(request, reply) => {
                let _ = reply.send(revoke(state, request).await);
                return Ok(());
            }
        };
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
        let received = verify_received(peer, &document, &state.directory.borrow());
        let identity = match received {
            Ok(Some(identity)) => identity,
            Ok(None) => return Ok(()),
            Err(RejectReason::Unlinked) => {
                debug!(%peer, "rotated identity document of a key state not known here; left");
                return Ok(());
            }
            // Revocations travel the same ways as documents, and anyone may pass one on.
            Err(RejectReason::Invalid(IdentityError::Decode(_)))
                if Revocation::decode(&document).is_ok() =>
            {
                match keep_revocation(state, &document).await {
                    Ok(Some(revoked)) => info!(%peer, "{revoked}"),
                    Ok(None) => {}
                    Err(err) => warn!(%peer, %err, "revocation refused"),
                }
                return Ok(());
            }
            Err(reason) => {
                Metrics::bump(&state.metrics.identities_rejected);
                warn!(%peer, %reason, "identity document rejected");
                return Ok(());
            }
        };
        let cid = identity.cid();
        let Some(entry) = known(&identity) else {
            return Ok(());
        };
        ractor::call_t!(
            state.store_actor,
            |reply| StoreMsg::Put {
                column: Column::Identities,
                // Under the document's own CID: an identity's documents are all kept, and
                // each is a block peers may ask for.
                key: identity.document_cid().to_bytes(),
                value: entry.document.clone(),
                reply,
            },
            STORE_TIMEOUT_MS
        )??;
        match identity.sequence() {
            0 => info!(%peer, %cid, name = %entry.name, "identity verified and stored"),
            rotation => info!(
                %peer, %cid, rotation, document = %identity.document_cid(),
                "identity's keys rotated: verified against its previous keys and stored"
            ),
        }
        Metrics::bump(&state.metrics.identities_accepted);
        state.directory.send_modify(|d| {
            d.identities.insert(cid.to_string(), entry);
        });
        Ok(())
    }
}

/// What the store holds, verified again (the database is only as trustworthy as the disk),
/// with this node's own identity.
fn load(store: &Store, local: &VerifiedIdentity) -> Result<Directory, ActorProcessingErr> {
    // What was stored was verified before it was stored; verify again anyway, since the
    // database is only as trustworthy as the disk.
    let mut directory = Directory::default();
    let mut rotated = Vec::new();
    for (_, bytes) in store.scan(Column::Identities)? {
        match IdentityDocument::decode_verified(&bytes) {
            Ok(identity) => {
                if let Some(entry) = known(&identity) {
                    directory.identities.insert(entry.cid.to_string(), entry);
                }
            }
            Err(IdentityError::Unlinked) => rotated.push(bytes),
            Err(err) => warn!(%err, "stored identity document no longer verifies; ignored"),
        }
    }
    // Rotations, each after the key state it replaces: as many passes as the longest chain.
    while !rotated.is_empty() {
        let before = rotated.len();
        rotated.retain(|bytes| {
            let Ok(Some(identity)) = verify_stored_rotation(bytes, &directory) else {
                return true;
            };
            if let Some(entry) = known(&identity) {
                directory.identities.insert(entry.cid.to_string(), entry);
            }
            false
        });
        if rotated.len() == before {
            warn!(
                left = rotated.len(),
                "stored rotated identity documents follow no stored key state; ignored"
            );
            break;
        }
    }
    if let Some(entry) = known(local) {
        directory.identities.insert(entry.cid.to_string(), entry);
    }
    for bytes in crate::revocations::stored(store)? {
        match verify_revocation(&directory, &bytes) {
            Ok(revocation) => {
                let revoked = RevokedIdentity::of(&revocation);
                directory
                    .revoked
                    .insert(revoked.identity.to_string(), revoked);
            }
            Err(err) => warn!(%err, "stored revocation no longer verifies; ignored"),
        }
    }
    Ok(directory)
}

/// A stored rotated document checked against the key state the directory has: `None` when
/// that is not yet the one it replaces.
fn verify_stored_rotation(
    bytes: &[u8],
    directory: &Directory,
) -> Result<Option<VerifiedIdentity>, RejectReason> {
    // The peer check passes by construction: stored documents passed it when they came.
    let Some(peer) = dta_protocol::dagcbor::decode::<IdentityDocument>(
        bytes,
        dta_protocol::dagcbor::Limits::default(),
    )
    .ok()
    .and_then(|document| PeerId::from_bytes(&document.claims.peer_id).ok()) else {
        return Err(RejectReason::BadPeerId);
    };
    match verify_received(peer, bytes, directory) {
        Err(RejectReason::Unlinked) => Ok(None),
        other => other,
    }
}

/// Decodes a revocation and checks it against the identity it names, which must be known.
fn verify_revocation(
    directory: &Directory,
    bytes: &[u8],
) -> Result<VerifiedRevocation, RevocationError> {
    let revocation = Revocation::decode(bytes)?;
    let revoked = revocation.claims.revoked;
    let Some(known) = directory.identities.get(&revoked.to_string()) else {
        return Err(RevocationError::WrongIdentity {
            revoked: revoked.to_string(),
            given: "no identity known here".into(),
        });
    };
    revocation.verify(&known.verified)
}

/// Keeps a revocation that verifies: stored, in the directory, handed to the network loop.
/// `None` when the identity was revoked already (the earlier revocation stands).
async fn keep_revocation(
    state: &IdentitiesArgs,
    bytes: &[u8],
) -> Result<Option<RevokedIdentity>, RevokeError> {
    let revocation = verify_revocation(&state.directory.borrow(), bytes)?;
    if state
        .directory
        .borrow()
        .revoked(&revocation.revoked())
        .is_some()
    {
        return Ok(None);
    }
    ractor::call_t!(
        state.store_actor,
        |reply| StoreMsg::Put {
            column: Column::Metadata,
            key: crate::revocations::key(&revocation.revoked()),
            value: revocation.bytes().to_vec(),
            reply,
        },
        STORE_TIMEOUT_MS
    )
    .map_err(|e| RevokeError::Store(e.to_string()))?
    .map_err(|e| RevokeError::Store(e.to_string()))?;
    let revoked = RevokedIdentity::of(&revocation);
    state.directory.send_modify(|d| {
        d.revoked
            .insert(revoked.identity.to_string(), revoked.clone());
    });
    // A network loop that is restarting reads the store when it starts again.
    let _ = state
        .network
        .send(NetworkCommand::Revocation(revocation.bytes().to_vec()))
        .await;
    Ok(Some(revoked))
}

/// Signs a revocation with the keys the request asks for (or the best this node holds) and
/// keeps it.
async fn revoke(
    state: &IdentitiesArgs,
    request: RevokeRequest,
) -> Result<RevokedIdentity, RevokeError> {
    let identity = request.identity;
    let known = state
        .directory
        .borrow()
        .identities
        .get(&identity.to_string())
        .cloned()
        .ok_or_else(|| RevokeError::Unknown(identity.to_string()))?;
    if let Some(revoked) = state.directory.borrow().revoked(&identity) {
        return Err(RevokeError::AlreadyRevoked(revoked.clone()));
    }
    let keys = if state.local.cid() == identity {
        Some(LocalIdentity::clone(&state.local))
    } else {
        state.hosted.get(&identity)
    };
    let operates = known.peer_id == state.operator.public().to_peer_id();
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let made = match (request.revoker, keys) {
        (Some(Revoker::Identity) | None, Some(keys)) => {
            Revocation::by_identity(keys.keys(), identity, at, &request.reason)?
        }
        (Some(Revoker::Operator), _) | (None, None) if operates => {
            Revocation::by_operator(&state.operator, identity, at, &request.reason)?
        }
        (revoker, _) => {
            return Err(RevokeError::NoKey {
                identity: identity.to_string(),
                revoker: revoker.unwrap_or(Revoker::Operator).name(),
            });
        }
    };
    match keep_revocation(state, made.bytes()).await? {
        Some(revoked) => {
            warn!("{revoked}");
            Ok(revoked)
        }
        None => Err(RevokeError::AlreadyRevoked(
            state
                .directory
                .borrow()
                .revoked(&identity)
                .cloned()
                .ok_or_else(|| RevokeError::Unknown(identity.to_string()))?,
        )),
    }
}
