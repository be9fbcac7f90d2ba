//! What every role step runs on, below the custody flow and M-Pin issuance: the
//! [`RoleContext`] (this node's identity, its store, keystore, network and directory, the
//! verified-envelope cache and the writes a step has staged), the [`CustodyError`] a step
//! answers with, and the [`CustodyEvent`]s a stored record announces. Signing, sealing and
//! verifying envelopes, identity lookups and keystore calls are here; staged writes are in
//! `writes`, the verified-envelope cache in `verified`, delivery to peers in `delivery`.
//!
//! It knows nothing of orders or M-Pin requests: their records and steps are in
//! [`crate::custody`] and [`crate::mpin`], which build on it.

use std::time::{SystemTime, UNIX_EPOCH};

use dta_protocol::Cid;
use dta_protocol::dagcbor::{self, Limits};
use dta_protocol::envelope::{Bundle, Draft, Kind, SignedEnvelope, VerifiedEnvelope};
use dta_protocol::identity::{LocalIdentity, VerifiedIdentity};
use dta_protocol::misconduct::Offence;
use dta_protocol::order::SecretBytes;
use libp2p::PeerId;
use ractor::ActorRef;
use serde::{Serialize, de::DeserializeOwned};
use serde_bytes::ByteBuf;
use tokio::sync::watch;

use crate::identities::Directory;
use crate::keystore::KeystoreMsg;
use crate::network::NetworkHandle;
use crate::role::Role;
use crate::states::RecordState;
use crate::store::{Column, Store};

mod delivery;
mod verified;
mod writes;

pub use delivery::{DELIVERY_ATTEMPTS, DELIVERY_BACKOFF};
pub use verified::{VERIFIED_CACHE_CAPACITY, VerifiedCache};
pub(crate) use writes::Durability;

/// Blocks for one peer, in the order they must arrive.
pub type Delivery = (PeerId, Vec<Vec<u8>>);

/// Why a custody operation was refused. Never carries secret material.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CustodyError {
    /// Malformed request (bad plugin, threshold, reference, secret size...).
    #[error("{0}")]
    Invalid(String),
    /// An identity the request names is not a verified identity here.
    #[error("unknown or unverified identity {0}")]
    UnknownIdentity(String),
    /// The reference is already used.
    #[error("order {0} already exists")]
    Exists(String),
    /// No such order (for this role) on this node.
    #[error("no order {0} here")]
    NotFound(String),
    /// The order is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    /// Not enough fiduciaries could be reached.
    #[error("only {reached} of {fiduciaries} fiduciaries reachable; {threshold} needed")]
    Unreachable {
        /// Fiduciaries that took the request.
        reached: usize,
        /// All fiduciaries.
        fiduciaries: usize,
        /// Threshold.
        threshold: usize,
    },
    /// An identity the step involves was revoked (the text names it, when and why).
    #[error("{0}")]
    Revoked(String),
    /// Storage or encoding failed.
    #[error("internal error: {0}")]
    Internal(String),
    /// The node stopped before the step could finish (its runtime cancelled the work); the
    /// step is done again, or not at all, after a restart.
    #[error("the node is stopping")]
    Stopping,
}

impl CustodyError {
    /// The reason as `/metrics` labels a refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid",
            Self::UnknownIdentity(_) => "unknown_identity",
            Self::Exists(_) => "exists",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::Unreachable { .. } => "unreachable",
            Self::Revoked(_) => "revoked",
            Self::Internal(_) => "internal",
            Self::Stopping => "stopping",
        }
    }
}

impl From<crate::plugin::PluginError> for CustodyError {
    fn from(err: crate::plugin::PluginError) -> Self {
        CustodyError::Invalid(err.to_string())
    }
}

pub(crate) fn internal(err: impl std::fmt::Display) -> CustodyError {
    CustodyError::Internal(err.to_string())
}

/// The outcome of work handed to tokio's blocking pool: cancelled only because the runtime is
/// shutting down, which is no failure of the work.
pub(crate) fn joined<T>(result: Result<T, tokio::task::JoinError>) -> Result<T, CustodyError> {
    result.map_err(|err| {
        if err.is_cancelled() {
            CustodyError::Stopping
        } else {
            internal(err)
        }
    })
}

/// Everything the role actors share.
#[derive(Debug, Clone)]
pub struct RoleContext {
    /// This node's identity and keys.
    pub local: LocalIdentity,
    /// Known identities.
    pub directory: watch::Receiver<Directory>,
    /// The database.
    pub store: Store,
    /// The network.
    pub network: NetworkHandle,
    /// The registered name of this node's keystore actor, which wraps shares and secrets.
    pub keystore: String,
    /// Where record changes are announced.
    pub events: tokio::sync::broadcast::Sender<CustodyEvent>,
    /// Envelopes this node already verified, shared by its role actors.
    pub verified: VerifiedCache,
    /// Identities this node hosts (it acts as their beneficiary).
    pub hosted: crate::hosted::Hosted,
    /// Writes of the step in progress, committed together (see [`RoleContext::commit`]).
    pub staged: std::sync::Arc<std::sync::Mutex<Vec<crate::store::Write>>>,
    /// When each order still being made last moved on here, so that resuming leaves alone
    /// the orders that are not stalled. In memory: after a restart everything is resumed once.
    pub progress:
        std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>>,
    /// When each open release (principal: no receipt yet; beneficiary: shares still missing)
    /// was last sent or moved on here, so that resuming leaves the ones under way alone. In
    /// memory: after a restart every open release is resumed once.
    pub releases_open:
        std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>>,
    /// The records the roles' periodic work must look at (see [`crate::attention`]).
    pub attention: crate::attention::Attention,
    /// Identities this node, as an M-Pin trust authority, issues server-secret shares to.
    pub mpin_servers: std::sync::Arc<Vec<Cid>>,
    /// Where certificate pairing checks run, batched: a fiduciary's before it releases, a
    /// principal's before it certifies.
    pub certificate_checks: crate::certificates::CertificateChecks,
    /// Custody batches under way: a principal's orders dealt together, a fiduciary's deals
    /// that wait to be signed together (see [`crate::batches`]).
    pub custody_batches: crate::batches::Batches,
    /// The node's counters.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// How far clocks may disagree when a release policy's times are checked (ms).
    pub clock_tolerance_ms: u64,
    /// The role this node plays dishonestly, in a test build (see [`crate::byzantine`]);
    /// never set otherwise.
    pub misbehaviour: Option<crate::byzantine::Misbehaviour>,
    /// Fiduciary: the nonces it committed to and has not signed with yet. In memory only:
    /// after a restart, fresh ones are made, never the same again.
    pub nonces: std::sync::Arc<crate::nonces::NonceStore>,
    /// Principal: commitments its orders' signers sent and no package used yet, for the
    /// next signatures.
    pub spare_commitments: std::sync::Arc<crate::spare_commitments::SpareCommitments>,
}

/// How long a keystore call may take (an HSM can be slow, never this slow).
pub const KEYSTORE_TIMEOUT_MS: u64 = 30_000;

/// Capacity of the custody event channel; slow watchers miss events, never block custody.
/// Every slot is allocated up front (about 90 bytes each): watchers read while orders run
/// and look at the stored record when they missed some, so a second of a busy principal's
/// events is enough.
pub const EVENT_CAPACITY: usize = 1024;

/// A record changed state (after it was stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustodyEvent {
    /// The order reference.
    pub reference: String,
    /// The role whose record changed.
    pub role: Role,
    /// The new state.
    pub state: RecordState,
}

pub(crate) fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl RoleContext {
    /// Refuses a step that involves a revoked identity, naming the first one.
    pub(crate) fn refuse_revoked<'a>(
        &self,
        identities: impl IntoIterator<Item = &'a Cid>,
    ) -> Result<(), CustodyError> {
        let directory = self.directory.borrow();
        for identity in identities {
            if let Some(revoked) = directory.revoked(identity) {
                return Err(CustodyError::Revoked(revoked.to_string()));
            }
        }
        Ok(())
    }

    pub(crate) fn keystore_actor(&self) -> Result<ActorRef<KeystoreMsg>, CustodyError> {
        ractor::registry::where_is(self.keystore.clone())
            .map(Into::into)
            .ok_or_else(|| internal("the keystore actor is not running"))
    }

    /// Wraps a secret through the keystore actor and stages the blob with the step.
    pub(crate) async fn keep_secret(
        &self,
        name: String,
        secret: Vec<u8>,
    ) -> Result<(), CustodyError> {
        let keystore = self.keystore_actor()?;
        let wrap_name = name.clone();
        let blob = ractor::call_t!(
            keystore,
            |reply| KeystoreMsg::Wrap {
                name: wrap_name,
                secret: SecretBytes::new(secret),
                reply
            },
            KEYSTORE_TIMEOUT_MS
        )
        .map_err(internal)?
        .map_err(internal)?;
        self.stage(Column::Keystore, name.into_bytes(), blob);
        Ok(())
    }

    /// Loads (staged or stored) and unwraps a secret through the keystore actor.
    pub(crate) async fn load_secret(&self, name: &str) -> Result<SecretBytes, CustodyError> {
        let blob = match self.staged_value(Column::Keystore, name.as_bytes()) {
            Some(blob) => blob,
            None => self
                .store
                .get(Column::Keystore, name.as_bytes())
                .map_err(internal)?
                .ok_or_else(|| CustodyError::Internal(format!("secret {name} is missing")))?,
        };
        let keystore = self.keystore_actor()?;
        ractor::call_t!(
            keystore,
            |reply| KeystoreMsg::Unwrap {
                name: name.to_owned(),
                blob,
                reply
            },
            KEYSTORE_TIMEOUT_MS
        )
        .map_err(internal)?
        .map_err(internal)
    }

    /// A stored (or staged) block.
    pub fn block(&self, cid: &Cid) -> Option<Vec<u8>> {
        self.staged_value(Column::Blocks, &cid.to_bytes())
            .or_else(|| {
                self.store
                    .get(Column::Blocks, &cid.to_bytes())
                    .ok()
                    .flatten()
            })
    }

    pub(crate) fn identity(&self, cid: &Cid) -> Option<VerifiedIdentity> {
        let directory = self.directory.borrow();
        let known = directory.identities.get(&cid.to_string())?;
        Some(known.verified.clone())
    }

    /// Makes sure the directory knows `cids`: those it does not are looked up in the DHT
    /// (see [`crate::identity_lookup`]), and the step waits until the directory verified and
    /// kept them, for at most its `LOOKUP_TIMEOUT`.
    /// Nodes do not learn every identity of a network: they ask for one when they need it.
    pub(crate) async fn ensure_known(&self, cids: &[Cid]) -> Result<(), CustodyError> {
        use crate::identity_lookup::{LOOKUP_TIMEOUT, LookupError, find};
        match find(&self.network, &self.directory, cids, LOOKUP_TIMEOUT).await {
            Ok(()) => Ok(()),
            Err(LookupError::NotFound(cid)) => Err(CustodyError::UnknownIdentity(cid.to_string())),
            Err(LookupError::Closed) => Err(internal(LookupError::Closed)),
        }
    }

    /// The verified identities of `cids`, failing on the first unknown one.
    pub(crate) fn known_identities(
        &self,
        cids: &[Cid],
    ) -> Result<Vec<VerifiedIdentity>, CustodyError> {
        cids.iter()
            .map(|c| {
                self.identity(c)
                    .ok_or_else(|| CustodyError::UnknownIdentity(c.to_string()))
            })
            .collect()
    }

    pub(crate) fn peer_of(&self, cid: &Cid) -> Option<PeerId> {
        self.directory
            .borrow()
            .identities
            .get(&cid.to_string())
            .map(|i| i.peer_id)
    }

    /// The peer of a known identity, or why there is none.
    pub(crate) fn known_peer(&self, cid: &Cid) -> Result<PeerId, CustodyError> {
        self.peer_of(cid)
            .ok_or_else(|| CustodyError::UnknownIdentity(cid.to_string()))
    }

    /// This node's identity or one it hosts, with its keys.
    pub fn own(&self, cid: &Cid) -> Option<LocalIdentity> {
        if *cid == self.local.cid() {
            return Some(self.local.clone());
        }
        self.hosted.get(cid)
    }

    pub(crate) fn envelope(
        &self,
        kind: Kind,
        reference: &str,
        prev: Option<Cid>,
        public: Option<Vec<u8>>,
        secret: Option<&[u8]>,
        recipients: &[&VerifiedIdentity],
    ) -> Result<VerifiedEnvelope, CustodyError> {
        Self::envelope_as(
            &self.local,
            kind,
            reference,
            prev,
            public,
            recipients,
            secret,
        )
    }

    /// Signs a public envelope (payload, no recipients) and stages it; its CID and bytes.
    pub(crate) async fn publish<T: Serialize>(
        &self,
        kind: Kind,
        reference: &str,
        prev: Option<Cid>,
        payload: &T,
    ) -> Result<(Cid, Vec<u8>), CustodyError> {
        self.publish_as(&self.local, kind, reference, prev, payload)
            .await
    }

    /// [`Self::publish`], signed by `sender`: this node's identity or one it hosts.
    pub(crate) async fn publish_as<T: Serialize>(
        &self,
        sender: &LocalIdentity,
        kind: Kind,
        reference: &str,
        prev: Option<Cid>,
        payload: &T,
    ) -> Result<(Cid, Vec<u8>), CustodyError> {
        let envelope = Self::envelope_as(
            sender,
            kind,
            reference,
            prev,
            Some(encode(payload)?),
            &[],
            None,
        )?;
        self.save_block(&envelope).await
    }

    /// An envelope signed by `sender`: this node's identity or one it hosts.
    pub(crate) fn envelope_as(
        sender: &LocalIdentity,
        kind: Kind,
        reference: &str,
        prev: Option<Cid>,
        public: Option<Vec<u8>>,
        recipients: &[&VerifiedIdentity],
        secret: Option<&[u8]>,
    ) -> Result<VerifiedEnvelope, CustodyError> {
        VerifiedEnvelope::create(
            sender,
            Draft {
                kind,
                order: reference,
                prev,
                timestamp: now_millis(),
                public,
                secret,
                recipients,
            },
        )
        .map_err(internal)
    }

    /// Verifies a stored block as an envelope from a known identity.
    pub(crate) fn verified_block(&self, cid: &Cid) -> Result<VerifiedEnvelope, CustodyError> {
        if let Some(envelope) = self.verified.get(cid) {
            return Ok(envelope);
        }
        let bytes = self
            .block(cid)
            .ok_or_else(|| CustodyError::Invalid(format!("block {cid} is not here")))?;
        self.verify(&bytes)
    }

    /// A sealed envelope this node received, as evidence for a complaint: its block and the
    /// content key that opens it for anyone (see `dta_protocol::evidence`).
    pub(crate) fn reveal(&self, cid: &Cid) -> Result<(ByteBuf, Vec<u8>), CustodyError> {
        let envelope = self.verified_block(cid)?;
        // Without its content key the envelope cannot be shown to anyone.
        let content_key = envelope
            .content_key(&self.local)
            .map_err(|e| CustodyError::Invalid(format!("envelope {cid} does not open: {e}")))?;
        let block = self
            .block(cid)
            .ok_or_else(|| internal(format!("block {cid} missing")))?;
        Ok((ByteBuf::from(block), content_key.expose().to_vec()))
    }

    /// Decodes and verifies envelope bytes against the sender's verified identity, and
    /// remembers the result so later steps do not verify the same block again.
    pub fn verify(&self, bytes: &[u8]) -> Result<VerifiedEnvelope, CustodyError> {
        let cid = dta_protocol::block::cid_of(dta_protocol::block::DAG_CBOR, bytes);
        if let Some(envelope) = self.verified.get(&cid) {
            return Ok(envelope);
        }
        let signed =
            SignedEnvelope::decode(bytes).map_err(|e| CustodyError::Invalid(e.to_string()))?;
        let sender = self
            .identity(&signed.envelope.sender)
            .ok_or_else(|| CustodyError::UnknownIdentity(signed.envelope.sender.to_string()))?;
        let envelope = signed
            .verify(&sender)
            .map_err(|e| CustodyError::Invalid(e.to_string()))?;
        self.verified.insert(cid, envelope.clone());
        Ok(envelope)
    }

    /// Verifies a delivered bundle with one signature check (none if its newest envelope was
    /// verified before) and remembers every envelope in it as verified. The blocks are those
    /// of a [`crate::network::NetworkEvent::EnvelopesReceived`]: the network loop decoded them
    /// strictly before handing them over (or this node kept them), so they are not encoded
    /// again to check that.
    pub fn verify_bundle(&self, blocks: &[Vec<u8>]) -> Result<(), CustodyError> {
        // Another role of this node verified the same delivery already: each block is known
        // good on its own.
        if blocks.iter().all(|block| {
            let cid = dta_protocol::block::cid_of(dta_protocol::block::DAG_CBOR, block);
            self.verified.contains(&cid)
        }) {
            return Ok(());
        }
        let bundle =
            Bundle::decode_seen(blocks).map_err(|e| CustodyError::Invalid(e.to_string()))?;
        let newest = bundle.newest().0;
        // Several role actors of this node get the same delivery at the same time: the first
        // checks the signature, the others wait for its answer instead of checking it again.
        let checked = self.verified.once(newest, || {
            if self.verified.get(&newest).is_some() {
                return Ok(());
            }
            let sender = self
                .identity(&bundle.sender())
                .ok_or_else(|| CustodyError::UnknownIdentity(bundle.sender().to_string()))?;
            let verified = bundle
                .newest()
                .1
                .clone()
                .verify(&sender)
                .map_err(|e| CustodyError::Invalid(e.to_string()))?;
            // Cached before the check counts as done, so nobody checks it again.
            self.verified.insert(newest, verified);
            Ok(())
        });
        checked?;
        for (cid, envelope) in bundle.vouched() {
            self.verified.insert(cid, envelope);
        }
        Ok(())
    }

    /// A peer was caught at `offence`: logged with its identity and counted by offence and
    /// culprit ([`crate::metrics::Metrics::record_misconduct`]). Returns the refusal the step
    /// gives, which names the culprit too.
    pub(crate) fn misconduct(&self, culprit: Cid, offence: Offence, detail: &str) -> CustodyError {
        tracing::warn!(%culprit, offence = offence.name(), "misconduct: {detail}");
        self.metrics.record_misconduct(offence, Some(culprit));
        CustodyError::Invalid(format!("{offence} by {culprit}: {detail}"))
    }

    /// The public payload of a block this node stored; stored blocks were verified before
    /// they were kept, so this skips the signature check.
    pub(crate) fn stored_payload<T: DeserializeOwned + Serialize>(
        &self,
        cid: &Cid,
    ) -> Result<T, CustodyError> {
        let bytes = self
            .block(cid)
            .ok_or_else(|| internal(format!("block {cid} is missing")))?;
        // Kept blocks were decoded strictly when they arrived or were made.
        SignedEnvelope::decode_seen(&bytes)
            .map_err(internal)?
            .envelope
            .public
            .ok_or_else(|| internal(format!("block {cid} has no payload")))
            .and_then(|public| dagcbor::decode(&public, Limits::default()).map_err(internal))
    }

    pub(crate) fn payload<T: DeserializeOwned + Serialize>(
        envelope: &VerifiedEnvelope,
    ) -> Result<T, CustodyError> {
        envelope
            .public_payload()
            .map_err(|e| CustodyError::Invalid(e.to_string()))?
            .ok_or_else(|| CustodyError::Invalid("envelope has no payload".into()))
    }

    pub(crate) fn sealed<T: DeserializeOwned + Serialize>(
        &self,
        envelope: &VerifiedEnvelope,
    ) -> Result<T, CustodyError> {
        Self::sealed_for(envelope, &self.local)
    }

    /// Opens the sealed payload as `me` (this node's identity or one it hosts).
    pub(crate) fn sealed_for<T: DeserializeOwned + Serialize>(
        envelope: &VerifiedEnvelope,
        me: &LocalIdentity,
    ) -> Result<T, CustodyError> {
        let opened = envelope
            .open(me)
            .map_err(|e| CustodyError::Invalid(e.to_string()))?;
        dagcbor::decode(&opened, Limits::default())
            .map_err(|e| CustodyError::Invalid(e.to_string()))
    }
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CustodyError> {
    dagcbor::encode(value).map_err(internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_cancelled_by_a_stopping_runtime_is_no_failure_of_the_step() {
        // A runtime that shuts down cancels its blocking work the way `abort` does.
        let cancelled = tokio::spawn(std::future::pending::<()>());
        cancelled.abort();
        assert_eq!(joined(cancelled.await), Err(CustodyError::Stopping));
        let panicked = tokio::spawn(async { panic!("the write panicked") }).await;
        assert!(matches!(
            joined::<()>(panicked),
            Err(CustodyError::Internal(_))
        ));
        assert_eq!(joined(Ok(7)), Ok(7));
    }
}
