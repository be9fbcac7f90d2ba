//! The custody flow, as the three role actors run it across separate nodes. What differs
//! between plugins (where the key comes from, what it protects) is in [`crate::plugin`].
//!
//! Order of a dealt secret (`safeguardsecret`): the principal publishes the order request and a
//! commitment (Feldman commitments of a fresh scalar key `k`, the group public key, and the
//! plugin's outputs, such as the secret sealed under a key derived from `k`), then deals one
//! sealed share of `k` to each fiduciary. A fiduciary checks its share against the commitment
//! and keeps it through the keystore.
//!
//! Order of a generated key (`bitcoinwallet`, `milagro`): the principal sends the order request;
//! each fiduciary generates a secp256k1 share in its keystore and answers with its public half.
//! With all of them the principal publishes the commitment (every public share, their sum plus
//! the beneficiary's identity key where the plugin includes it, and the outputs such as an
//! address); each fiduciary checks its own share is listed and the sum and outputs follow.
//!
//! Either way each fiduciary then sends back its BLS signature on the commitment; with all n
//! signatures the principal publishes the certificate.
//!
//! Release: the principal's signed release request goes to every fiduciary. Each checks the
//! sender is the order's principal, the order is certified, the beneficiary is a verified
//! identity (and the one whose share the key includes, if any) and the policy allows this
//! release, records the release durably, then seals its share to the beneficiary. The
//! beneficiary rebuilds the key from the first t shares and checks it against the commitment's
//! public key (a dealt share is checked against the Feldman commitments only when that fails,
//! to find and drop the bad one; a generated share against its listed public half on arrival),
//! lets the plugin turn it into the secret, keeps that through its keystore and sends a signed
//! receipt.
//!
//! Log: order request ← commitment ← certificate ← release request ← receipt, each `prev`
//! linking to the one before; key shares hang off the order request, deals and fiduciary
//! signatures off the commitment, share releases off the release request. Every block a node
//! sends or accepts is stored.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use dta_crypto::threshold::{self, Commitments, SecretScalar, Share};
use dta_crypto::{Secret, bls, secp256k1};
use dta_protocol::Cid;
use dta_protocol::dagcbor::{self, Limits};
use dta_protocol::envelope::{Bundle, Draft, Kind, MAX_BUNDLE, SignedEnvelope, VerifiedEnvelope};
use dta_protocol::identity::{IdentityDocument, LocalIdentity, VerifiedIdentity};
use dta_protocol::order::{
    Certificate, CertificateCheck, CertificateError, Commitment, KeyShare, OrderRequest, Receipt,
    ReleasePolicy, ReleaseRequest, SecretBytes, ShareDeal, ShareRelease, custody_message,
};
use libp2p::PeerId;
use ractor::ActorRef;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_bytes::ByteBuf;
use tokio::sync::watch;

use crate::identities::Directory;
use crate::keystore::KeystoreMsg;
use crate::network::NetworkHandle;
pub use crate::plugin::SAFEGUARD_SECRET;
use crate::plugin::{self, KeySource, Plugin, RebuiltKey};
use crate::roles::Role;
use crate::store::{Column, Store};

/// Longest order reference.
pub const MAX_REFERENCE_LEN: usize = 128;
/// How many times a delivery is tried.
pub const DELIVERY_ATTEMPTS: u32 = 4;
/// Wait before the first retry; doubled each time.
pub const DELIVERY_BACKOFF: std::time::Duration = std::time::Duration::from_millis(250);

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
    /// Storage or encoding failed.
    #[error("internal error: {0}")]
    Internal(String),
    /// The node stopped before the step could finish (its runtime cancelled the work); the
    /// step is done again, or not at all, after a restart.
    #[error("the node is stopping")]
    Stopping,
}

pub(crate) fn internal(err: impl std::fmt::Display) -> CustodyError {
    CustodyError::Internal(err.to_string())
}

/// The outcome of work handed to tokio's blocking pool: cancelled only because the runtime is
/// shutting down, which is no failure of the work.
fn joined<T>(result: Result<T, tokio::task::JoinError>) -> Result<T, CustodyError> {
    result.map_err(|err| {
        if err.is_cancelled() {
            CustodyError::Stopping
        } else {
            internal(err)
        }
    })
}

/// A principal's request for a new order.
#[derive(Debug, Clone)]
pub struct NewOrder {
    /// Unique reference; generated when absent.
    pub reference: Option<String>,
    /// Plugin name.
    pub plugin: String,
    /// Fiduciary identity CIDs, in share order.
    pub fiduciaries: Vec<Cid>,
    /// Shares needed to release.
    pub threshold: u32,
    /// Beneficiary, if known now.
    pub beneficiary: Option<Cid>,
    /// How many releases are allowed.
    pub max_releases: u32,
    /// Plugin input (for example `coin` for `bitcoinwallet`).
    pub input: BTreeMap<String, String>,
    /// The secret to safeguard, for plugins that take one.
    pub secret: Option<SecretBytes>,
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
    pub hosted: crate::identities::Hosted,
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
    /// Identities this node, as an M-Pin trust authority, issues server-secret shares to.
    pub mpin_servers: std::sync::Arc<Vec<Cid>>,
    /// Open M-Pin challenges of this node as an authentication server.
    pub mpin_sessions: crate::mpin::AuthSessions,
    /// Where certificate pairing checks run, batched: a fiduciary's before it releases, a
    /// principal's before it certifies.
    pub certificate_checks: crate::certificates::CertificateChecks,
    /// The node's counters.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
}

/// How long a keystore call may take (an HSM can be slow, never this slow).
pub const KEYSTORE_TIMEOUT_MS: u64 = 30_000;

/// How many verified envelopes a node remembers.
pub const VERIFIED_CACHE_CAPACITY: usize = 8192;

/// Envelopes whose signatures were checked (or that this node signed), by CID. Checking an
/// envelope costs a pairing; the custody steps read the same order, commitment and certificate
/// again and again.
#[derive(Debug, Clone, Default)]
pub struct VerifiedCache(std::sync::Arc<std::sync::Mutex<CacheGenerations>>);

/// Checks in progress, by CID, so that a check is done once however many ask at once.
type InFlight =
    std::collections::HashMap<Cid, std::sync::Arc<std::sync::OnceLock<Result<(), CustodyError>>>>;

/// Two generations: when the newer is full it becomes the older and the older is dropped, so
/// what was used recently stays and the size stays bounded.
#[derive(Debug, Default)]
pub struct CacheGenerations {
    newer: std::collections::HashMap<Cid, VerifiedEnvelope>,
    older: std::collections::HashMap<Cid, VerifiedEnvelope>,
    in_flight: InFlight,
}

impl VerifiedCache {
    fn get(&self, cid: &Cid) -> Option<VerifiedEnvelope> {
        let mut cache = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(envelope) = cache.newer.get(cid) {
            return Some(envelope.clone());
        }
        let envelope = cache.older.remove(cid)?;
        Self::put(&mut cache, *cid, envelope.clone());
        Some(envelope)
    }

    /// Runs `check` for `cid` once: callers that come while it runs wait for its result
    /// (a signature check, well under a millisecond) and share it.
    fn once(
        &self,
        cid: Cid,
        check: impl FnOnce() -> Result<(), CustodyError>,
    ) -> Result<(), CustodyError> {
        let cell = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .in_flight
            .entry(cid)
            .or_default()
            .clone();
        let result = cell.get_or_init(check).clone();
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .in_flight
            .remove(&cid);
        result
    }

    fn insert(&self, cid: Cid, envelope: VerifiedEnvelope) {
        let mut cache = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Self::put(&mut cache, cid, envelope);
    }

    fn put(cache: &mut CacheGenerations, cid: Cid, envelope: VerifiedEnvelope) {
        if cache.newer.len() >= VERIFIED_CACHE_CAPACITY / 2 {
            cache.older = std::mem::take(&mut cache.newer);
        }
        cache.newer.insert(cid, envelope);
    }
}

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
    pub state: String,
}

/// What a node records about one order in one role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    /// The order reference.
    pub reference: String,
    /// This node's role in it.
    pub role: String,
    /// Where the order stands for this role.
    pub state: String,
    /// The order request envelope.
    pub order: Cid,
    /// The commitment envelope.
    pub commitment: Option<Cid>,
    /// The principal.
    pub principal: Cid,
    /// The fiduciaries, in share order.
    pub fiduciaries: Vec<Cid>,
    /// Threshold.
    pub threshold: u32,
    /// Releases allowed.
    pub max_releases: u32,
    /// The certificate envelope, once certified.
    pub certificate: Option<Cid>,
    /// Fiduciary signatures received (principal): fiduciary CID → signature bytes.
    pub signatures: BTreeMap<String, ByteBuf>,
    /// Release requests, by sequence number (1, 2, ...).
    #[serde(with = "numbered")]
    pub releases: BTreeMap<u32, Cid>,
    /// Shares received (beneficiary) or held (fiduciary), by index.
    #[serde(with = "numbered")]
    pub shares: BTreeMap<u32, Cid>,
    /// Receipts, by release sequence.
    #[serde(with = "numbered")]
    pub receipts: BTreeMap<u32, Cid>,
    /// Share releases this fiduciary sealed, by release sequence: a repeat of the same
    /// request gets the same envelope again. Absent from the other roles' records.
    #[serde(default, with = "numbered", skip_serializing_if = "BTreeMap::is_empty")]
    pub served: BTreeMap<u32, Cid>,
    /// The latest envelope on the main chain, for audits.
    pub head: Cid,
}

/// DAG-CBOR map keys must be text, so number-keyed maps are stored as `[[n, cid], ...]`.
mod numbered {
    use std::collections::BTreeMap;

    use dta_protocol::Cid;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<u32, Cid>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        map.iter().collect::<Vec<_>>().serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<u32, Cid>, D::Error> {
        Ok(Vec::<(u32, Cid)>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

/// Whether a write waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// Synced before it returns: for steps whose results are sent to others.
    Synced,
    /// In the log, synced by the next synced write: for what can be had again.
    Buffered,
}

/// Where a record is stored: a principal's under its reference (its own references are
/// unique), a fiduciary's and a beneficiary's under the order's principal and reference, so
/// that two principals using one reference never meet.
fn record_key(role: Role, principal: &Cid, reference: &str) -> Vec<u8> {
    match role {
        Role::Principal => format!("principal/{reference}"),
        Role::Fiduciary | Role::Beneficiary => format!("{}/{principal}/{reference}", role.name()),
    }
    .into_bytes()
}

/// The record `store` holds for `role` of `principal`'s order `reference`.
pub fn stored_record(
    store: &Store,
    role: Role,
    principal: &Cid,
    reference: &str,
) -> Result<Option<OrderRecord>, CustodyError> {
    store
        .get(Column::Orders, &record_key(role, principal, reference))
        .map_err(internal)?
        .map(|bytes| dagcbor::decode(&bytes, Limits::default()).map_err(internal))
        .transpose()
}

/// The keystore name of a fiduciary's share of an order.
pub fn share_name(principal: &Cid, reference: &str) -> String {
    format!("share/{principal}/{reference}")
}

/// The keystore name of a share a beneficiary received.
pub fn received_name(principal: &Cid, reference: &str, index: u32) -> String {
    format!("received/{principal}/{reference}/{index}")
}

/// The keystore name of the secret a beneficiary rebuilt.
pub fn secret_name(principal: &Cid, reference: &str) -> String {
    format!("secret/{principal}/{reference}")
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl RoleContext {
    /// The stored record for `role` of `principal`'s order `reference`.
    pub fn record(
        &self,
        role: Role,
        principal: &Cid,
        reference: &str,
    ) -> Result<Option<OrderRecord>, CustodyError> {
        stored_record(&self.store, role, principal, reference)
    }

    /// This node's own order `reference`, as principal.
    pub fn own_record(&self, reference: &str) -> Result<Option<OrderRecord>, CustodyError> {
        self.record(Role::Principal, &self.local.cid(), reference)
    }

    /// Every record on this node.
    pub fn records(&self) -> Result<Vec<OrderRecord>, CustodyError> {
        self.store
            .scan(Column::Orders)
            .map_err(internal)?
            .into_iter()
            .map(|(_, bytes)| dagcbor::decode(&bytes, Limits::default()).map_err(internal))
            .collect()
    }

    /// Stages the record with everything staged before it and writes them all in one synced
    /// batch: the step is durable, or none of it is.
    async fn save(&self, role: Role, record: &OrderRecord) -> Result<(), CustodyError> {
        self.save_as(role, record, Durability::Synced).await
    }

    /// Like [`RoleContext::save`], for steps that send nothing and can be repeated: the batch
    /// is written without waiting for the disk.
    async fn save_buffered(&self, role: Role, record: &OrderRecord) -> Result<(), CustodyError> {
        self.save_as(role, record, Durability::Buffered).await
    }

    async fn save_as(
        &self,
        role: Role,
        record: &OrderRecord,
        durability: Durability,
    ) -> Result<(), CustodyError> {
        let bytes = dagcbor::encode(record).map_err(internal)?;
        self.stage(
            Column::Orders,
            record_key(role, &record.principal, &record.reference),
            bytes,
        );
        self.write_staged(durability).await?;
        self.saved(role, record, durability).await;
        Ok(())
    }

    /// Like [`RoleContext::save`], with `work` done while the disk syncs: CPU work (a
    /// signature) that the step's answer needs and its record does not. Its outcome is
    /// returned only once the record is durable, so nothing it produced leaves before the
    /// step is on disk; whatever it stages goes out with the next write.
    async fn save_while<T>(
        &self,
        role: Role,
        record: &OrderRecord,
        work: impl Future<Output = Result<T, CustodyError>>,
    ) -> Result<T, CustodyError> {
        let bytes = dagcbor::encode(record).map_err(internal)?;
        self.stage(
            Column::Orders,
            record_key(role, &record.principal, &record.reference),
            bytes,
        );
        let entries = std::mem::take(
            &mut *self
                .staged
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let store = self.store.clone();
        let write = tokio::task::spawn_blocking(move || store.write_durable(entries));
        let outcome = work.await;
        joined(write.await)?.map_err(internal)?;
        self.saved(role, record, Durability::Synced).await;
        outcome
    }

    /// What follows a stored record: progress for resuming, the head announcement, the event.
    async fn saved(&self, role: Role, record: &OrderRecord, durability: Durability) {
        {
            let mut open = self
                .releases_open
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let state = record.state.as_str();
            let key = open_release_key(record);
            if (role == Role::Principal && state == "releasing")
                || (role == Role::Beneficiary && state == "collecting")
            {
                open.insert(key, std::time::Instant::now());
            } else {
                open.remove(&key);
            }
        }
        if role == Role::Principal {
            let mut progress = self
                .progress
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if RESUMABLE.contains(&record.state.as_str()) {
                progress.insert(record.reference.clone(), std::time::Instant::now());
            } else {
                progress.remove(&record.reference);
            }
        }
        // Auditors only need a hint of where an order's log ends: announce the heads that
        // settle a step (certified, released), not every one on the way.
        if role == Role::Principal
            && durability == Durability::Synced
            && ANNOUNCED_STATES.contains(&record.state.as_str())
        {
            // A full channel only delays the announcement; it is a hint for auditors.
            let _ = self
                .network
                .send(crate::network::NetworkCommand::AnnounceHead(
                    dta_protocol::network::HeadAnnouncement {
                        reference: record.reference.clone(),
                        head: record.head,
                    },
                ))
                .await;
        }
        // Nobody listening is fine: the events are for watchers, the record is the truth.
        let _ = self.events.send(CustodyEvent {
            reference: record.reference.clone(),
            role,
            state: record.state.clone(),
        });
    }

    /// Orders this principal is still making (not certified yet).
    fn orders_in_progress(&self) -> usize {
        self.progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    pub(crate) fn stage(&self, column: Column, key: Vec<u8>, value: Vec<u8>) {
        self.staged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((column, key, value));
    }

    /// Writes everything staged in one synced batch.
    pub async fn commit(&self) -> Result<(), CustodyError> {
        self.write_staged(Durability::Synced).await
    }

    /// Writes everything staged (blocks kept for audits and later steps) without waiting for
    /// the disk; the next synced write makes it durable too.
    pub async fn flush(&self) -> Result<(), CustodyError> {
        self.write_staged(Durability::Buffered).await
    }

    async fn write_staged(&self, durability: Durability) -> Result<(), CustodyError> {
        let entries = std::mem::take(
            &mut *self
                .staged
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if entries.is_empty() {
            return Ok(());
        }
        let store = self.store.clone();
        match durability {
            // A synced write blocks on the disk: keep it off the async workers.
            Durability::Synced => {
                joined(tokio::task::spawn_blocking(move || store.write_durable(entries)).await)?
                    .map_err(internal)
            }
            Durability::Buffered => store.write_buffered(entries).map_err(internal),
        }
    }

    pub(crate) fn staged_value(&self, column: Column, key: &[u8]) -> Option<Vec<u8>> {
        self.staged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .rev()
            .find(|(c, k, _)| *c == column && k.as_slice() == key)
            .map(|(_, _, v)| v.clone())
    }

    /// Stages an envelope this node made, and remembers it as verified.
    pub(crate) async fn save_block(
        &self,
        envelope: &VerifiedEnvelope,
    ) -> Result<(Cid, Vec<u8>), CustodyError> {
        let (cid, bytes) = self.save_signed(envelope.signed())?;
        self.verified.insert(cid, envelope.clone());
        Ok((cid, bytes))
    }

    /// Stages an envelope checked by other means (custody signatures, in the aggregate).
    fn save_signed(&self, envelope: &SignedEnvelope) -> Result<(Cid, Vec<u8>), CustodyError> {
        let block = envelope.to_block().map_err(internal)?;
        let (cid, bytes) = (block.cid(), block.into_bytes());
        self.stage(Column::Blocks, cid.to_bytes(), bytes.clone());
        Ok((cid, bytes))
    }

    fn keystore_actor(&self) -> Result<ActorRef<KeystoreMsg>, CustodyError> {
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
        .map_err(CustodyError::Internal)?;
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
        .map_err(CustodyError::Internal)
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
    fn envelope_as(
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
    fn verified_block(&self, cid: &Cid) -> Result<VerifiedEnvelope, CustodyError> {
        if let Some(envelope) = self.verified.get(cid) {
            return Ok(envelope);
        }
        let bytes = self
            .block(cid)
            .ok_or_else(|| CustodyError::Invalid(format!("block {cid} is not here")))?;
        self.verify(&bytes)
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
    /// verified before) and remembers every envelope in it as verified.
    pub fn verify_bundle(&self, blocks: &[Vec<u8>]) -> Result<(), CustodyError> {
        let bundle = Bundle::decode(blocks).map_err(|e| CustodyError::Invalid(e.to_string()))?;
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

    /// Sends blocks to a peer in order; true if every one was accepted. Runs of blocks that
    /// form one sender's `prev` chain go as one bundle, checked with one signature. A peer that
    /// cannot be reached is tried again a few times, since a node that just restarted may not
    /// know every address yet.
    pub async fn deliver(network: &NetworkHandle, peer: PeerId, blocks: Vec<Vec<u8>>) -> bool {
        for bundle in bundles(blocks) {
            let mut attempt = 0;
            loop {
                match network
                    .request(
                        peer,
                        dta_protocol::network::Request::Deliver {
                            blocks: bundle.clone(),
                        },
                    )
                    .await
                {
                    Ok(dta_protocol::network::Response::Accepted) => break,
                    Ok(other) => {
                        tracing::warn!(%peer, ?other, "delivery refused");
                        return false;
                    }
                    Err(err) if attempt + 1 < DELIVERY_ATTEMPTS => {
                        tracing::debug!(%peer, %err, attempt, "delivery failed; trying again");
                        tokio::time::sleep(DELIVERY_BACKOFF * 2u32.pow(attempt)).await;
                        attempt += 1;
                    }
                    Err(err) => {
                        tracing::warn!(%peer, %err, "delivery failed");
                        return false;
                    }
                }
            }
        }
        true
    }

    /// The public payload of a block this node stored; stored blocks were verified before
    /// they were kept, so this skips the signature check.
    fn stored_payload<T: DeserializeOwned>(&self, cid: &Cid) -> Result<T, CustodyError> {
        let bytes = self
            .block(cid)
            .ok_or_else(|| internal(format!("block {cid} is missing")))?;
        SignedEnvelope::decode(&bytes)
            .map_err(internal)?
            .envelope
            .public
            .ok_or_else(|| internal(format!("block {cid} has no payload")))
            .and_then(|public| dagcbor::decode(&public, Limits::default()).map_err(internal))
    }

    pub(crate) fn payload<T: DeserializeOwned>(
        envelope: &VerifiedEnvelope,
    ) -> Result<T, CustodyError> {
        envelope
            .public_payload()
            .map_err(|e| CustodyError::Invalid(e.to_string()))?
            .ok_or_else(|| CustodyError::Invalid("envelope has no payload".into()))
    }

    fn sealed<T: DeserializeOwned>(&self, envelope: &VerifiedEnvelope) -> Result<T, CustodyError> {
        Self::sealed_for(envelope, &self.local)
    }

    /// Opens the sealed payload as `me` (this node's identity or one it hosts).
    pub(crate) fn sealed_for<T: DeserializeOwned>(
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

/// Splits blocks, in order, into bundles: each run of blocks where every one links to the one
/// before (same sender, `prev` pointing to it) goes together.
fn bundles(blocks: Vec<Vec<u8>>) -> Vec<Vec<ByteBuf>> {
    let mut bundles: Vec<Vec<ByteBuf>> = Vec::new();
    for block in blocks {
        match bundles.last_mut() {
            Some(bundle)
                if bundle.len() < MAX_BUNDLE
                    && bundle
                        .last()
                        .is_some_and(|last| Bundle::links(last, &block)) =>
            {
                bundle.push(ByteBuf::from(block));
            }
            _ => bundles.push(vec![ByteBuf::from(block)]),
        }
    }
    bundles
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CustodyError> {
    dagcbor::encode(value).map_err(internal)
}

// ---------------------------------------------------------------------------------------------
// Principal

/// What the principal prepared for a new order: the record and, per fiduciary, the blocks to
/// deliver.
#[derive(Debug)]
pub struct Prepared {
    /// The stored record.
    pub record: OrderRecord,
    /// (fiduciary peer, blocks in delivery order).
    pub deliveries: Vec<Delivery>,
}

/// Principal: builds, stores and returns everything for a new order.
pub async fn create_order(ctx: &RoleContext, new: NewOrder) -> Result<Prepared, CustodyError> {
    let plugin = plugin::find(&new.plugin).ok_or_else(|| {
        CustodyError::Invalid(format!(
            "unknown plugin {:?}; this node supports {}",
            new.plugin,
            plugin::names()
        ))
    })?;
    let n = new.fiduciaries.len();
    if new.threshold == 0 || new.threshold as usize > n {
        return Err(CustodyError::Invalid(format!(
            "threshold must be between 1 and the number of fiduciaries ({n})"
        )));
    }
    let mut distinct = new.fiduciaries.clone();
    distinct.sort();
    distinct.dedup();
    if distinct.len() != n {
        return Err(CustodyError::Invalid("a fiduciary is listed twice".into()));
    }
    if new.max_releases == 0 {
        return Err(CustodyError::Invalid(
            "max_releases must be at least 1".into(),
        ));
    }
    let reference = new
        .reference
        .clone()
        .unwrap_or_else(|| format!("order-{}", hex::encode(Secret::<8>::random().expose())));
    if reference.is_empty()
        || reference.len() > MAX_REFERENCE_LEN
        || !reference
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(CustodyError::Invalid(format!(
            "reference must be 1 to {MAX_REFERENCE_LEN} characters of A-Z a-z 0-9 - _ ."
        )));
    }
    let request = OrderRequest {
        plugin: new.plugin.clone(),
        principal: ctx.local.cid(),
        fiduciaries: new.fiduciaries.clone(),
        threshold: new.threshold,
        beneficiary: new.beneficiary,
        policy: ReleasePolicy {
            max_releases: new.max_releases,
        },
        input: new.input.clone(),
    };
    plugin
        .check_order(&request)
        .and_then(|()| plugin.check_secret(new.secret.as_ref()))
        .map_err(CustodyError::Invalid)?;
    if ctx.own_record(&reference)?.is_some() {
        return Err(CustodyError::Exists(reference));
    }
    let fiduciaries: Vec<VerifiedIdentity> = ctx.known_identities(&new.fiduciaries)?;
    if let Some(beneficiary) = &new.beneficiary {
        ctx.identity(beneficiary)
            .ok_or_else(|| CustodyError::UnknownIdentity(beneficiary.to_string()))?;
        check_can_receive(ctx, beneficiary)?;
    }
    for fiduciary in &new.fiduciaries {
        check_holds_shares(ctx, fiduciary)?;
    }
    let fiduciary_peers: Vec<PeerId> = fiduciaries
        .iter()
        .map(|f| {
            ctx.peer_of(&f.cid())
                .ok_or_else(|| CustodyError::UnknownIdentity(f.cid().to_string()))
        })
        .collect::<Result<_, _>>()?;
    // Plugins seal before anything is staged, so a refusal leaves nothing behind.
    let key = SecretScalar::random();
    let sealed_output = match plugin.key_source() {
        KeySource::Dealt => plugin
            .seal(&reference, &key, new.secret.as_ref())
            .map_err(CustodyError::Invalid)?,
        KeySource::Generated => BTreeMap::new(),
    };

    let (order_cid, order_bytes) = ctx
        .publish(Kind::OrderRequest, &reference, None, &request)
        .await?;
    let mut record = OrderRecord {
        reference: reference.clone(),
        role: Role::Principal.name().into(),
        state: "ordered".into(),
        order: order_cid,
        commitment: None,
        principal: ctx.local.cid(),
        fiduciaries: new.fiduciaries.clone(),
        threshold: new.threshold,
        max_releases: new.max_releases,
        certificate: None,
        signatures: BTreeMap::new(),
        releases: BTreeMap::new(),
        shares: BTreeMap::new(),
        receipts: BTreeMap::new(),
        served: BTreeMap::new(),
        head: order_cid,
    };
    if plugin.key_source() == KeySource::Generated {
        // Each fiduciary answers the request with the public half of a share it generates.
        ctx.save(Role::Principal, &record).await?;
        let deliveries = fiduciary_peers
            .into_iter()
            .map(|peer| (peer, vec![order_bytes.clone()]))
            .collect();
        return Ok(Prepared { record, deliveries });
    }

    let (shares, commitments) =
        threshold::split(&key, new.threshold as usize, n).map_err(internal)?;
    let feldman: Vec<ByteBuf> = commitments
        .to_bytes()
        .iter()
        .map(|c| ByteBuf::from(c.to_vec()))
        .collect();
    let commitment = Commitment {
        order: order_cid,
        plugin: new.plugin.clone(),
        threshold: new.threshold,
        fiduciaries: new.fiduciaries.clone(),
        feldman: feldman.clone(),
        key_shares: Vec::new(),
        beneficiary_share: None,
        // The constant term's commitment is the group public key, already encoded.
        public_key: feldman[0].clone(),
        output: sealed_output,
    };
    let (commitment_cid, commitment_bytes) = ctx
        .publish(Kind::Commitment, &reference, Some(order_cid), &commitment)
        .await?;

    let mut deliveries = Vec::with_capacity(n);
    for ((fiduciary, share), peer) in fiduciaries.iter().zip(&shares).zip(fiduciary_peers) {
        let deal = ShareDeal {
            order: order_cid,
            index: share.index(),
            share: SecretBytes::new(share.value_bytes().expose().to_vec()),
            commitments: feldman.clone(),
        };
        let plain = zeroize::Zeroizing::new(encode(&deal)?);
        let envelope = ctx.envelope(
            Kind::ShareDeal,
            &reference,
            Some(commitment_cid),
            None,
            Some(&plain),
            &[fiduciary],
        )?;
        let (deal_cid, deal_bytes) = ctx.save_block(&envelope).await?;
        record.shares.insert(share.index(), deal_cid);
        deliveries.push((
            peer,
            vec![order_bytes.clone(), commitment_bytes.clone(), deal_bytes],
        ));
    }
    record.state = "dealt".into();
    record.commitment = Some(commitment_cid);
    record.head = commitment_cid;
    // With no other order on its way, the certificate will be checked alone (see
    // `on_commitment_signature`): the half of that check that needs no signature is made
    // while the record reaches the disk and the fiduciaries sign.
    if ctx.orders_in_progress() == 0 {
        ctx.certificate_checks.prepare(commitment_cid, fiduciaries);
    }
    ctx.save(Role::Principal, &record).await?;
    Ok(Prepared { record, deliveries })
}

/// Moves what a fiduciary or beneficiary stored before its records were keyed by the order's
/// principal (`fiduciary/REF`, `share/REF`, `received/REF/I`, `secret/REF`) to its keys under
/// the principal, once, at the role's start. Secrets are unwrapped and wrapped again under
/// their new names (a wrapped secret is bound to its name). The new record is written before
/// the old keys are deleted, so a crash half-way only means moving it again. Returns how many
/// records moved.
pub async fn migrate_unkeyed_records(ctx: &RoleContext, role: Role) -> Result<usize, CustodyError> {
    if role == Role::Principal {
        return Ok(0);
    }
    let prefix = format!("{}/", role.name());
    let mut moved = 0;
    for (key, bytes) in ctx.store.scan(Column::Orders).map_err(internal)? {
        let Some(rest) = key.strip_prefix(prefix.as_bytes()) else {
            continue;
        };
        // References have no '/': a key with one more part is keyed already.
        if rest.contains(&b'/') {
            continue;
        }
        // One record that cannot move does not keep the others where they were.
        match migrate_record(ctx, role, key, bytes).await {
            Ok(()) => moved += 1,
            Err(err) => tracing::warn!(role = role.name(), %err, "an old record did not move"),
        }
    }
    Ok(moved)
}

/// Moves one record stored under `key` (see [`migrate_unkeyed_records`]).
async fn migrate_record(
    ctx: &RoleContext,
    role: Role,
    key: Vec<u8>,
    bytes: Vec<u8>,
) -> Result<(), CustodyError> {
    let record: OrderRecord = dagcbor::decode(&bytes, Limits::default()).map_err(internal)?;
    let (principal, reference) = (record.principal, record.reference.as_str());
    let mut names = Vec::new();
    if role == Role::Fiduciary {
        names.push((
            format!("share/{reference}"),
            share_name(&principal, reference),
        ));
    } else {
        for index in record.shares.keys() {
            names.push((
                format!("received/{reference}/{index}"),
                received_name(&principal, reference, *index),
            ));
        }
        names.push((
            format!("secret/{reference}"),
            secret_name(&principal, reference),
        ));
    }
    let mut old_keys = Vec::new();
    for (old, new) in names {
        let stored = ctx
            .store
            .get(Column::Keystore, old.as_bytes())
            .map_err(internal)?;
        if stored.is_none() {
            continue;
        }
        let value = ctx.load_secret(&old).await?;
        ctx.keep_secret(new, value.expose().to_vec()).await?;
        old_keys.push((Column::Keystore, old.into_bytes()));
    }
    ctx.stage(
        Column::Orders,
        record_key(role, &principal, reference),
        bytes,
    );
    ctx.commit().await?;
    // The old record last: while it is there, the move runs again at the next start.
    old_keys.push((Column::Orders, key));
    for (column, key) in old_keys {
        ctx.store.delete_durable(column, &key).map_err(internal)?;
    }
    tracing::info!(order = %reference, %principal, role = role.name(),
            "record moved under its principal");
    Ok(())
}

/// Principal states whose head is announced: the ones that settle a step.
pub const ANNOUNCED_STATES: [&str; 2] = ["certified", "released"];

/// Keeps the heads of this node's settled orders for peers that connect later (at start:
/// announcements made before a restart are in no peer's memory of gossip).
pub fn remember_settled_heads(ctx: &RoleContext) -> Result<(), CustodyError> {
    for record in ctx.records()? {
        if record.role == Role::Principal.name()
            && ANNOUNCED_STATES.contains(&record.state.as_str())
        {
            ctx.network
                .remember_head(dta_protocol::network::HeadAnnouncement {
                    reference: record.reference,
                    head: record.head,
                });
        }
    }
    Ok(())
}

/// Principal states in which an order waits for fiduciaries, and may need resuming.
const RESUMABLE: [&str; 3] = ["ordered", "dealt", "committed"];

/// Principal: what to send again so that stalled orders (no progress for `quiet_for`) move
/// on: the order request to every fiduciary that has not sent its key share, and the deal or
/// commitment to every fiduciary that has not signed yet (open releases are sent again by
/// [`resume_releases`]). Deliveries are idempotent on the receiving side, so sending too
/// often costs only bandwidth.
pub fn resume(
    ctx: &RoleContext,
    quiet_for: std::time::Duration,
) -> Result<Vec<Delivery>, CustodyError> {
    let mut deliveries = Vec::new();
    for record in ctx.records()? {
        if record.role != Role::Principal.name() || !RESUMABLE.contains(&record.state.as_str()) {
            continue;
        }
        let recent = ctx
            .progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&record.reference)
            .is_some_and(|at| at.elapsed() < quiet_for);
        if recent {
            continue;
        }
        let waiting = |have: &dyn Fn(u32, &Cid) -> bool| {
            record
                .fiduciaries
                .iter()
                .enumerate()
                .filter(move |(position, fiduciary)| !have(*position as u32 + 1, fiduciary))
                .map(|(position, fiduciary)| (position as u32 + 1, *fiduciary))
                .collect::<Vec<_>>()
        };
        let mut send = |fiduciary: &Cid, cids: &[Option<Cid>]| {
            let blocks: Option<Vec<Vec<u8>>> = cids
                .iter()
                .map(|cid| cid.and_then(|c| ctx.block(&c)))
                .collect();
            if let (Some(peer), Some(blocks)) = (ctx.peer_of(fiduciary), blocks) {
                deliveries.push((peer, blocks));
            }
        };
        let signed = |_: u32, f: &Cid| record.signatures.contains_key(&f.to_string());
        match record.state.as_str() {
            "ordered" => {
                for (_, fiduciary) in waiting(&|index, _| record.shares.contains_key(&index)) {
                    send(&fiduciary, &[Some(record.order)]);
                }
            }
            "dealt" => {
                for (index, fiduciary) in waiting(&signed) {
                    let deal = record.shares.get(&index).copied();
                    send(&fiduciary, &[Some(record.order), record.commitment, deal]);
                }
            }
            "committed" => {
                for (_, fiduciary) in waiting(&signed) {
                    send(&fiduciary, &[record.commitment]);
                }
            }
            _ => {}
        }
    }
    Ok(deliveries)
}

/// How [`RoleContext::releases_open`] names a record's open release: by principal and
/// reference, as two principals may use one reference.
fn open_release_key(record: &OrderRecord) -> String {
    format!("{}/{}", record.principal, record.reference)
}

/// Whether `record`'s open release moved on (or was sent again) within `quiet_for`; if not,
/// it counts as sent again now.
fn release_is_recent(
    ctx: &RoleContext,
    record: &OrderRecord,
    quiet_for: std::time::Duration,
) -> bool {
    let mut open = ctx
        .releases_open
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let key = open_release_key(record);
    if open.get(&key).is_some_and(|at| at.elapsed() < quiet_for) {
        return true;
    }
    open.insert(key, std::time::Instant::now());
    false
}

/// Principal: the releases that no receipt answered within `quiet_for`, to send again as
/// they were: the chain to the beneficiary, then the request to every fiduciary. A fiduciary
/// that served it answers with the same sealed share, so a beneficiary that lost what it had
/// received (it crashed before its record was durable) gets it again, and nothing is
/// released twice.
pub fn resume_releases(
    ctx: &RoleContext,
    quiet_for: std::time::Duration,
) -> Result<Vec<ReleasePlan>, CustodyError> {
    let mut plans = Vec::new();
    for record in ctx.records()? {
        if record.role != Role::Principal.name() || record.state != "releasing" {
            continue;
        }
        let (Some(certificate), Some((cid, bytes, request))) =
            (record.certificate, open_release(ctx, &record)?)
        else {
            continue;
        };
        if release_is_recent(ctx, &record, quiet_for) {
            continue;
        }
        match release_deliveries(ctx, &record, certificate, cid, bytes, &request.beneficiary) {
            Ok((beneficiary, fiduciaries)) => {
                tracing::info!(order = %record.reference, sequence = request.sequence,
                    "no receipt yet: release sent again");
                plans.push(ReleasePlan {
                    record,
                    beneficiary,
                    fiduciaries,
                });
            }
            Err(err) => {
                tracing::debug!(order = %record.reference, %err, "open release not sent again");
            }
        }
    }
    Ok(plans)
}

/// Beneficiary: asks again for the shares an open release still lacks, once nothing arrived
/// for `quiet_for`: it sends the principal's own release request (and the certificate it
/// relies on) to each fiduciary whose share is missing. Fiduciaries that served it answer
/// with the same sealed share, so a beneficiary restarted in the middle of a release
/// completes it without the principal.
pub fn resume_receiving(
    ctx: &RoleContext,
    quiet_for: std::time::Duration,
) -> Result<Vec<Delivery>, CustodyError> {
    let mut deliveries = Vec::new();
    for record in ctx.records()? {
        if record.role != Role::Beneficiary.name() || record.state != "collecting" {
            continue;
        }
        let (Some(certificate), Some((_, request))) = (
            record.certificate,
            record
                .releases
                .iter()
                .next_back()
                .filter(|(sequence, _)| !record.receipts.contains_key(sequence)),
        ) else {
            continue;
        };
        if release_is_recent(ctx, &record, quiet_for) {
            continue;
        }
        let (Some(certificate_bytes), Some(request_bytes)) =
            (ctx.block(&certificate), ctx.block(request))
        else {
            continue;
        };
        let before = deliveries.len();
        for (position, fiduciary) in record.fiduciaries.iter().enumerate() {
            if record.shares.contains_key(&(position as u32 + 1)) {
                continue;
            }
            if let Some(peer) = ctx.peer_of(fiduciary) {
                deliveries.push((peer, vec![certificate_bytes.clone(), request_bytes.clone()]));
            }
        }
        if deliveries.len() > before {
            tracing::info!(order = %record.reference, asked = deliveries.len() - before,
                "shares still missing: fiduciaries asked again");
        }
    }
    Ok(deliveries)
}

/// Beneficiary: a release request it already answered with a receipt came again (the
/// principal never got the receipt): the receipt goes to the principal again.
pub fn receipt_again(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    request_cid: Cid,
) -> Result<Option<Delivery>, CustodyError> {
    let principal = envelope.envelope().sender;
    let Some(record) = ctx.record(Role::Beneficiary, &principal, &envelope.envelope().order)?
    else {
        return Ok(None);
    };
    let Some(receipt) = record
        .releases
        .iter()
        .find(|(_, cid)| **cid == request_cid)
        .and_then(|(sequence, _)| record.receipts.get(sequence))
    else {
        return Ok(None);
    };
    let (Some(bytes), Some(peer)) = (ctx.block(receipt), ctx.peer_of(&record.principal)) else {
        return Ok(None);
    };
    Ok(Some((peer, vec![bytes])))
}

/// Someone an order waits for, and for what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Awaited {
    /// The identity that has not answered.
    pub identity: Cid,
    /// What it has not sent.
    pub what: AwaitedStep,
    /// Since when, in milliseconds since the Unix epoch: the time of the envelope that asked
    /// for it (the order, the commitment or the release request).
    pub since: u64,
}

/// What a stalled order waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwaitedStep {
    /// A fiduciary's share of a generated key.
    KeyShare,
    /// A fiduciary's signature of the commitment.
    CustodySignature,
    /// The beneficiary's receipt of an open release.
    Receipt,
}

impl AwaitedStep {
    /// How the API names it.
    pub fn name(self) -> &'static str {
        match self {
            Self::KeyShare => "key share",
            Self::CustodySignature => "custody signature",
            Self::Receipt => "receipt",
        }
    }
}

/// Principal: who has not answered yet an order that is still being made or released (for
/// `dta order show`); empty for other roles' records and settled orders.
pub fn awaited(store: &Store, record: &OrderRecord) -> Vec<Awaited> {
    if record.role != Role::Principal.name() {
        return Vec::new();
    }
    let envelope = |cid: &Cid| {
        store
            .get(Column::Blocks, &cid.to_bytes())
            .ok()
            .flatten()
            .and_then(|bytes| SignedEnvelope::decode(&bytes).ok())
            .map(|signed| signed.envelope)
    };
    let fiduciaries = |missing: &dyn Fn(u32, &Cid) -> bool, what, since: Option<u64>| {
        let since = since.unwrap_or_default();
        record
            .fiduciaries
            .iter()
            .enumerate()
            .filter(|(position, fiduciary)| missing(*position as u32 + 1, fiduciary))
            .map(|(_, fiduciary)| Awaited {
                identity: *fiduciary,
                what,
                since,
            })
            .collect()
    };
    let unsigned = |_: u32, f: &Cid| !record.signatures.contains_key(&f.to_string());
    match record.state.as_str() {
        "ordered" => fiduciaries(
            &|index, _| !record.shares.contains_key(&index),
            AwaitedStep::KeyShare,
            envelope(&record.order).map(|e| e.timestamp),
        ),
        "dealt" | "committed" => fiduciaries(
            &unsigned,
            AwaitedStep::CustodySignature,
            envelope(record.commitment.as_ref().unwrap_or(&record.order)).map(|e| e.timestamp),
        ),
        "releasing" => record
            .releases
            .iter()
            .next_back()
            .filter(|(sequence, _)| !record.receipts.contains_key(sequence))
            .and_then(|(_, cid)| envelope(cid))
            .and_then(|envelope| {
                let request: ReleaseRequest =
                    dagcbor::decode(envelope.public.as_ref()?, Limits::default()).ok()?;
                Some(Awaited {
                    identity: request.beneficiary,
                    what: AwaitedStep::Receipt,
                    since: envelope.timestamp,
                })
            })
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

/// Principal: a fiduciary's key share arrived. Once every fiduciary's is in, publishes the
/// commitment to the whole key and returns its deliveries.
pub async fn on_key_share(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    cid: Cid,
) -> Result<Vec<Delivery>, CustodyError> {
    let reference = envelope.envelope().order.clone();
    let mut record = ctx
        .own_record(&reference)?
        .ok_or_else(|| CustodyError::NotFound(reference.clone()))?;
    let share: KeyShare = RoleContext::payload(envelope)?;
    let sender = envelope.envelope().sender;
    if share.index == 0 || record.fiduciaries.get(share.index as usize - 1) != Some(&sender) {
        return Err(CustodyError::Invalid(format!(
            "{sender} is not fiduciary {} of {reference}",
            share.index
        )));
    }
    if share.order != record.order || envelope.envelope().prev != Some(record.order) {
        return Err(CustodyError::Invalid("key share for another order".into()));
    }
    secp256k1::PublicKey::from_sec1(&share.public_key)
        .map_err(|e| CustodyError::Invalid(e.to_string()))?;
    if record.state != "ordered" || record.shares.contains_key(&share.index) {
        return Ok(Vec::new());
    }
    record.shares.insert(share.index, cid);
    if record.shares.len() < record.fiduciaries.len() {
        ctx.save_buffered(Role::Principal, &record).await?;
        return Ok(Vec::new());
    }
    let order: OrderRequest = RoleContext::payload(&ctx.verified_block(&record.order)?)?;
    let plugin = order_plugin(&order)?;
    let key_shares: Vec<ByteBuf> = record
        .shares
        .values()
        .map(|cid| {
            let share: KeyShare = ctx.stored_payload(cid)?;
            Ok(share.public_key)
        })
        .collect::<Result<_, CustodyError>>()?;
    let beneficiary_share = plugin.beneficiary_share(&order);
    let public_key = combined_key(ctx, &key_shares, beneficiary_share)?;
    let commitment = Commitment {
        order: record.order,
        plugin: order.plugin.clone(),
        threshold: order.threshold,
        fiduciaries: order.fiduciaries.clone(),
        feldman: Vec::new(),
        key_shares,
        beneficiary_share,
        public_key: ByteBuf::from(public_key.to_compressed().to_vec()),
        output: plugin
            .key_output(&order, &public_key)
            .map_err(CustodyError::Invalid)?,
    };
    let (commitment_cid, bytes) = ctx
        .publish(
            Kind::Commitment,
            &reference,
            Some(record.order),
            &commitment,
        )
        .await?;
    record.commitment = Some(commitment_cid);
    record.head = commitment_cid;
    record.state = "committed".into();
    // As for a dealt order (see `create_order`).
    if ctx.orders_in_progress() <= 1 {
        let fiduciaries = ctx.known_identities(&record.fiduciaries)?;
        ctx.certificate_checks.prepare(commitment_cid, fiduciaries);
    }
    ctx.save(Role::Principal, &record).await?;
    tracing::info!(order = %reference, commitment = %commitment_cid, "key shares combined");
    Ok(record
        .fiduciaries
        .iter()
        .filter_map(|f| ctx.peer_of(f))
        .map(|peer| (peer, vec![bytes.clone()]))
        .collect())
}

/// The plugin an order names.
fn order_plugin(order: &OrderRequest) -> Result<&'static dyn Plugin, CustodyError> {
    plugin::find(&order.plugin)
        .ok_or_else(|| CustodyError::Invalid(format!("unknown plugin {:?}", order.plugin)))
}

/// `Σ S_i`, plus the beneficiary's identity key when it holds a share.
fn combined_key(
    ctx: &RoleContext,
    key_shares: &[ByteBuf],
    beneficiary: Option<Cid>,
) -> Result<secp256k1::PublicKey, CustodyError> {
    let mut keys: Vec<secp256k1::PublicKey> = key_shares
        .iter()
        .map(|k| {
            secp256k1::PublicKey::from_sec1(k).map_err(|e| CustodyError::Invalid(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    if let Some(beneficiary) = beneficiary {
        let identity = ctx
            .identity(&beneficiary)
            .ok_or_else(|| CustodyError::UnknownIdentity(beneficiary.to_string()))?;
        keys.push(*identity.secp256k1_key());
    }
    let (first, rest) = keys
        .split_first()
        .ok_or_else(|| CustodyError::Invalid("no key shares".into()))?;
    rest.iter().try_fold(*first, |sum, k| {
        sum.add(k).map_err(|e| CustodyError::Invalid(e.to_string()))
    })
}

/// Principal: a fiduciary's custody signature arrived (a commitment signature envelope,
/// whose signature is the custody signature). Once every fiduciary's is in, aggregates them and
/// stores the certificate.
///
/// A signature delivered by the fiduciary's own node (the connection authenticates it) is
/// checked only inside the aggregate: one pairing check per order instead of one per
/// fiduciary. One delivered by any other peer is checked on its own at once, so nobody can
/// slip a bad signature in for someone else. The aggregate's pairing check runs here when this
/// is the only order on its way, finished from the half made when the commitment was (see
/// [`crate::certificates::CertificateChecks::prepare`]); otherwise it is handed back as a [`PendingCheck`], to run off
/// the role's queue batched with other orders' checks, and the signature is then handled again
/// and finds the outcome. If the aggregate fails, each signature is checked and the bad ones
/// are dropped, to be asked for again.
pub async fn on_commitment_signature(
    ctx: &RoleContext,
    peer: PeerId,
    signed: &SignedEnvelope,
) -> Result<Option<PendingCheck>, CustodyError> {
    let reference = signed.envelope.order.clone();
    let mut record = ctx
        .own_record(&reference)?
        .ok_or_else(|| CustodyError::NotFound(reference.clone()))?;
    let sender = signed.envelope.sender;
    if signed.envelope.kind != Kind::CommitmentSignature || !record.fiduciaries.contains(&sender) {
        return Err(CustodyError::Invalid(format!(
            "{sender} is not a fiduciary of {reference}"
        )));
    }
    if signed.envelope.prev != record.commitment {
        return Err(CustodyError::Invalid(
            "signature for another commitment".into(),
        ));
    }
    if record.certificate.is_some() {
        return Ok(None);
    }
    // The point itself is decoded and group-checked once, with the others, below.
    if signed.signature.len() != bls::SIGNATURE_LEN {
        return Err(CustodyError::Invalid(format!(
            "custody signature of {sender} is {} bytes, not {}",
            signed.signature.len(),
            bls::SIGNATURE_LEN
        )));
    }
    if ctx.peer_of(&sender) != Some(peer) {
        ctx.verify(&signed.to_block().map_err(internal)?.into_bytes())?;
    }
    record
        .signatures
        .insert(sender.to_string(), ByteBuf::from(signed.signature.clone()));
    // Partial signatures need not survive a crash: resuming asks for missing ones again.
    if record.signatures.len() < record.fiduciaries.len() {
        ctx.save_buffered(Role::Principal, &record).await?;
        return Ok(None);
    }
    let identities: Vec<VerifiedIdentity> = ctx.known_identities(&record.fiduciaries)?;
    let commitment = record.commitment.ok_or_else(|| internal("no commitment"))?;
    let encoded: Vec<(&VerifiedIdentity, &[u8])> = identities
        .iter()
        .map(|i| (i, record.signatures[&i.cid().to_string()].as_slice()))
        .collect();
    let aggregated = Certificate::aggregate_unchecked(commitment, &encoded).ok();
    let outcome = match &aggregated {
        Some((certificate, check)) => {
            let key = dta_protocol::block::Block::encode(certificate)
                .map_err(internal)?
                .cid();
            match ctx.certificate_checks.take_outcome(&key) {
                // The only order on its way: a batch would be of one, and the hand-off
                // would only add latency. Its signature-free half was made at the deal.
                None if ctx.orders_in_progress() <= 1 => {
                    Some(ctx.certificate_checks.check_alone(&commitment, check).await)
                }
                None => {
                    ctx.certificate_checks.forget_prepared(&commitment);
                    return Ok(Some(PendingCheck {
                        key,
                        check: check.clone(),
                    }));
                }
                outcome => outcome,
            }
        }
        None => Some(false),
    };
    let certificate = match (aggregated, outcome) {
        (Some((certificate, _)), Some(true)) => certificate,
        _ => {
            // Some signature is bad: find it, drop it, and let resuming ask that fiduciary
            // again. The good ones stay.
            let message = custody_message(&commitment);
            let bad: Vec<Cid> = encoded
                .iter()
                .filter(|(i, s)| {
                    bls::Signature::from_bytes(s).map_or(true, |s| {
                        i.bls_key().public_key().verify(&message, &s).is_err()
                    })
                })
                .map(|(i, _)| i.cid())
                .collect();
            for fiduciary in &bad {
                record.signatures.remove(&fiduciary.to_string());
            }
            ctx.save_buffered(Role::Principal, &record).await?;
            return Err(CustodyError::Invalid(format!(
                "custody signature of {} does not verify",
                bad.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    // The fiduciaries' signature envelopes, rebuilt from their parts, are kept for audits.
    for (identity, signature) in &encoded {
        let rebuilt = SignedEnvelope::custody_signature(
            identity.cid(),
            &reference,
            commitment,
            signature.to_vec(),
        )
        .map_err(internal)?;
        ctx.save_signed(&rebuilt)?;
    }
    let (cid, _) = ctx
        .publish(
            Kind::Certificate,
            &reference,
            Some(record.head),
            &certificate,
        )
        .await?;
    record.certificate = Some(cid);
    record.head = cid;
    record.state = "certified".into();
    ctx.save(Role::Principal, &record).await?;
    tracing::info!(order = %reference, certificate = %cid, "order certified");
    Ok(None)
}

/// A release ready to deliver.
#[derive(Debug)]
pub struct ReleasePlan {
    /// The stored record.
    pub record: OrderRecord,
    /// The beneficiary's peer and the chain it needs, delivered first.
    pub beneficiary: Delivery,
    /// Each fiduciary's peer and the release request.
    pub fiduciaries: Vec<Delivery>,
}

/// Principal: prepares the next release of an order. A release that got no receipt yet (for
/// example because too few fiduciaries were reachable, or the beneficiary lost what it had
/// received) is sent again as it was, so retrying never uses up the policy.
///
/// An order that names its beneficiary is released to it alone; one that names none (as in
/// the original D-TA's flow) to whichever identity the release names. Either way the
/// beneficiary's node must play the beneficiary role, where that is known, before anything
/// is published: a release to a node that cannot receive would be spent for nothing.
pub async fn create_release(
    ctx: &RoleContext,
    reference: &str,
    beneficiary: Option<Cid>,
) -> Result<ReleasePlan, CustodyError> {
    let mut record = ctx
        .own_record(reference)?
        .ok_or_else(|| CustodyError::NotFound(reference.to_owned()))?;
    let certificate = record
        .certificate
        .ok_or_else(|| CustodyError::Conflict(format!("order {reference} is not certified yet")))?;
    let (cid, bytes, beneficiary) = match open_release(ctx, &record)? {
        Some((cid, bytes, request)) => {
            if beneficiary.is_some_and(|b| b != request.beneficiary) {
                return Err(CustodyError::Conflict(format!(
                    "release {} of {reference} to {} is still open",
                    request.sequence, request.beneficiary
                )));
            }
            (cid, bytes, request.beneficiary)
        }
        None => {
            let sequence = record.releases.len() as u32 + 1;
            if sequence > record.max_releases {
                return Err(CustodyError::Conflict(format!(
                    "order {reference} allows {} release(s), all used",
                    record.max_releases
                )));
            }
            let order: OrderRequest = RoleContext::payload(&ctx.verified_block(&record.order)?)?;
            let beneficiary = match (order.beneficiary, beneficiary) {
                (Some(named), Some(asked)) if named != asked => {
                    return Err(CustodyError::Invalid(format!(
                        "order {reference} is for beneficiary {named}; it cannot be released \
                         to {asked}"
                    )));
                }
                (Some(beneficiary), _) | (None, Some(beneficiary)) => beneficiary,
                (None, None) => {
                    return Err(CustodyError::Invalid("no beneficiary named".into()));
                }
            };
            ctx.identity(&beneficiary)
                .ok_or_else(|| CustodyError::UnknownIdentity(beneficiary.to_string()))?;
            check_can_receive(ctx, &beneficiary)?;
            let commitment = record
                .commitment
                .ok_or_else(|| internal("certified order without commitment"))?;
            check_beneficiary(ctx, &commitment, &beneficiary)?;
            let release = ReleaseRequest {
                order: record.order,
                certificate,
                beneficiary,
                sequence,
            };
            let (cid, bytes) = ctx
                .publish(Kind::ReleaseRequest, reference, Some(record.head), &release)
                .await?;
            record.releases.insert(sequence, cid);
            record.head = cid;
            record.state = "releasing".into();
            ctx.save(Role::Principal, &record).await?;
            (cid, bytes, beneficiary)
        }
    };
    let (beneficiary, fiduciaries) =
        release_deliveries(ctx, &record, certificate, cid, bytes, &beneficiary)?;
    Ok(ReleasePlan {
        record,
        beneficiary,
        fiduciaries,
    })
}

/// The newest release of a principal's record if no receipt answered it yet: its CID, its
/// bytes and the request.
fn open_release(
    ctx: &RoleContext,
    record: &OrderRecord,
) -> Result<Option<(Cid, Vec<u8>, ReleaseRequest)>, CustodyError> {
    let Some(cid) = record
        .releases
        .iter()
        .next_back()
        .filter(|(sequence, _)| !record.receipts.contains_key(sequence))
        .map(|(_, cid)| *cid)
    else {
        return Ok(None);
    };
    let request: ReleaseRequest = RoleContext::payload(&ctx.verified_block(&cid)?)?;
    let bytes = ctx
        .block(&cid)
        .ok_or_else(|| internal("release block missing"))?;
    Ok(Some((cid, bytes, request)))
}

/// What a release sends: the chain the beneficiary needs to check shares and open the
/// secret, and the certificate with the request for each fiduciary (fiduciaries learn of the
/// certificate with the first release that relies on it; the request links to it).
fn release_deliveries(
    ctx: &RoleContext,
    record: &OrderRecord,
    certificate: Cid,
    request: Cid,
    request_bytes: Vec<u8>,
    beneficiary: &Cid,
) -> Result<(Delivery, Vec<Delivery>), CustodyError> {
    let beneficiary_peer = ctx
        .peer_of(beneficiary)
        .ok_or_else(|| CustodyError::UnknownIdentity(beneficiary.to_string()))?;
    let certificate_bytes = ctx
        .block(&certificate)
        .ok_or_else(|| internal("certificate block missing"))?;
    let fiduciaries = record
        .fiduciaries
        .iter()
        .filter_map(|c| ctx.peer_of(c))
        .map(|peer| (peer, vec![certificate_bytes.clone(), request_bytes.clone()]))
        .collect();
    let chain = [
        Some(record.order),
        record.commitment,
        Some(certificate),
        Some(request),
    ];
    let blocks: Vec<Vec<u8>> = chain
        .iter()
        .flatten()
        .filter_map(|c| ctx.block(c))
        .collect();
    Ok(((beneficiary_peer, blocks), fiduciaries))
}

/// Refuses a beneficiary whose node is known not to receive: a node (this one included)
/// without the beneficiary role keeps no share that reaches it.
fn check_can_receive(ctx: &RoleContext, beneficiary: &Cid) -> Result<(), CustodyError> {
    let snapshot = ctx.network.snapshot();
    let plays = match ctx.own(beneficiary) {
        Some(_) => Some(snapshot.roles.is_empty() || snapshot.roles.contains(&Role::Beneficiary)),
        None => ctx
            .peer_of(beneficiary)
            .and_then(|peer| snapshot.plays(&peer, beneficiary, Role::Beneficiary)),
    };
    if plays == Some(false) {
        return Err(CustodyError::Invalid(format!(
            "identity {beneficiary} cannot receive: its node does not play the beneficiary role"
        )));
    }
    Ok(())
}

/// Refuses a fiduciary whose node is known not to hold shares: it would never answer, and
/// the order would wait forever. Only a node's own identity (not one it hosts) and only a
/// node that plays the fiduciary role holds shares.
fn check_holds_shares(ctx: &RoleContext, fiduciary: &Cid) -> Result<(), CustodyError> {
    let snapshot = ctx.network.snapshot();
    let plays = if *fiduciary == ctx.local.cid() {
        Some(snapshot.roles.is_empty() || snapshot.roles.contains(&Role::Fiduciary))
    } else if ctx.own(fiduciary).is_some() {
        Some(false)
    } else {
        ctx.peer_of(fiduciary)
            .and_then(|peer| snapshot.plays(&peer, fiduciary, Role::Fiduciary))
    };
    if plays == Some(false) {
        return Err(CustodyError::Invalid(format!(
            "identity {fiduciary} cannot hold a share: its node does not play the fiduciary role"
        )));
    }
    Ok(())
}

/// A key that includes a beneficiary's own share is useless to anyone else: refuses to
/// release it elsewhere.
fn check_beneficiary(
    ctx: &RoleContext,
    commitment: &Cid,
    beneficiary: &Cid,
) -> Result<(), CustodyError> {
    let commitment: Commitment = ctx.stored_payload(commitment)?;
    match commitment.beneficiary_share {
        Some(holder) if holder != *beneficiary => Err(CustodyError::Invalid(format!(
            "the key includes the share of beneficiary {holder}; only it can receive the key"
        ))),
        _ => Ok(()),
    }
}

/// Principal: the beneficiary's receipt arrived.
pub async fn on_receipt(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    cid: Cid,
) -> Result<(), CustodyError> {
    let reference = envelope.envelope().order.clone();
    let mut record = ctx
        .own_record(&reference)?
        .ok_or_else(|| CustodyError::NotFound(reference.clone()))?;
    let receipt: Receipt = RoleContext::payload(envelope)?;
    let Some((sequence, _)) = record.releases.iter().find(|(_, c)| **c == receipt.release) else {
        return Err(CustodyError::Invalid(
            "receipt for an unknown release".into(),
        ));
    };
    let release: ReleaseRequest = RoleContext::payload(&ctx.verified_block(&receipt.release)?)?;
    if release.beneficiary != envelope.envelope().sender {
        return Err(CustodyError::Invalid(
            "receipt not from the beneficiary".into(),
        ));
    }
    let sequence = *sequence;
    // A receipt sent again (the beneficiary answered a resent release) changes nothing: the
    // log may have moved on to a later release since.
    if record.receipts.contains_key(&sequence) {
        return Ok(());
    }
    record.receipts.insert(sequence, cid);
    record.head = cid;
    record.state = "released".into();
    ctx.save(Role::Principal, &record).await
}

// ---------------------------------------------------------------------------------------------
// Fiduciary

/// Fiduciary: an order request arrived. For a plugin whose fiduciaries generate the key, this
/// node generates its share, keeps it through the keystore and returns the delivery of the
/// share's public half to the principal. Orders of dealt secrets wait for their deal.
pub async fn on_order_request(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    order_cid: Cid,
) -> Result<Option<Delivery>, CustodyError> {
    let reference = envelope.envelope().order.clone();
    let order: OrderRequest = RoleContext::payload(envelope)?;
    let plugin = order_plugin(&order)?;
    let me = ctx.local.cid();
    let Some(position) = order.fiduciaries.iter().position(|f| *f == me) else {
        return Ok(None);
    };
    if plugin.key_source() != KeySource::Generated {
        return Ok(None);
    }
    let principal = envelope.envelope().sender;
    if order.principal != principal || envelope.envelope().prev.is_some() {
        return Err(CustodyError::Invalid(
            "order request not from its principal".into(),
        ));
    }
    let index = position as u32 + 1;
    let peer = ctx
        .peer_of(&principal)
        .ok_or_else(|| CustodyError::UnknownIdentity(principal.to_string()))?;
    if let Some(existing) = ctx.record(Role::Fiduciary, &principal, &reference)? {
        // Asked again (our key share was lost on the way): send the same one.
        if existing.order == order_cid {
            let share = existing
                .shares
                .get(&index)
                .and_then(|cid| ctx.block(cid))
                .ok_or_else(|| internal("key share block missing"))?;
            return Ok(Some((peer, vec![share])));
        }
        return Err(CustodyError::Exists(existing.reference));
    }
    plugin
        .accept_custody(&order)
        .map_err(CustodyError::Invalid)?;
    let key = secp256k1::SecretKey::random();
    ctx.keep_secret(
        share_name(&principal, &reference),
        key.to_bytes().expose().to_vec(),
    )
    .await?;
    let share = KeyShare {
        order: order_cid,
        index,
        public_key: ByteBuf::from(key.public_key().to_compressed().to_vec()),
    };
    let (share_cid, bytes) = ctx
        .publish(Kind::KeyShare, &reference, Some(order_cid), &share)
        .await?;
    let record = OrderRecord {
        reference: reference.clone(),
        role: Role::Fiduciary.name().into(),
        state: "generated".into(),
        order: order_cid,
        commitment: None,
        principal,
        fiduciaries: order.fiduciaries,
        threshold: order.threshold,
        max_releases: order.policy.max_releases,
        certificate: None,
        signatures: BTreeMap::new(),
        releases: BTreeMap::new(),
        shares: BTreeMap::from([(index, share_cid)]),
        receipts: BTreeMap::new(),
        served: BTreeMap::new(),
        head: order_cid,
    };
    ctx.save(Role::Fiduciary, &record).await?;
    tracing::info!(order = %reference, index, "key share generated and kept");
    Ok(Some((peer, vec![bytes])))
}

/// Fiduciary: the commitment to a generated key arrived. Checks that it lists this node's key
/// share, that the key is the sum of the shares it lists and that the outputs follow from it,
/// then signs it. Commitments of dealt secrets are checked with their deal instead.
pub async fn on_commitment(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    commitment_cid: Cid,
) -> Result<Option<Delivery>, CustodyError> {
    let reference = envelope.envelope().order.clone();
    let commitment: Commitment = RoleContext::payload(envelope)?;
    if commitment.key_shares.is_empty() {
        return Ok(None);
    }
    let principal = envelope.envelope().sender;
    let Some(mut record) = ctx.record(Role::Fiduciary, &principal, &reference)? else {
        return Ok(None);
    };
    if envelope.envelope().sender != record.principal || commitment.order != record.order {
        return Err(CustodyError::Invalid(
            "commitment not from the order's principal".into(),
        ));
    }
    match record.commitment {
        // Sent again (the principal did not get our signature): sign again.
        Some(signed) if signed == commitment_cid => {
            return sign_commitment(ctx, &reference, commitment_cid, record.principal)
                .await
                .map(Some);
        }
        Some(_) => {
            return Err(CustodyError::Conflict(format!(
                "order {reference} already has another commitment"
            )));
        }
        None => {}
    }
    let order: OrderRequest = ctx.stored_payload(&record.order)?;
    let plugin = order_plugin(&order)?;
    let (index, share_cid) = record
        .shares
        .iter()
        .next()
        .map(|(i, c)| (*i, *c))
        .ok_or_else(|| internal("no key share recorded"))?;
    let mine: KeyShare = ctx.stored_payload(&share_cid)?;
    let expected_shape = commitment.plugin == order.plugin
        && commitment.threshold == order.threshold
        && commitment.fiduciaries == order.fiduciaries
        && commitment.feldman.is_empty()
        && commitment.key_shares.len() == order.fiduciaries.len()
        && commitment.beneficiary_share == plugin.beneficiary_share(&order);
    if !expected_shape {
        return Err(CustodyError::Invalid(
            "commitment does not match the order".into(),
        ));
    }
    if commitment.key_shares.get(index as usize - 1) != Some(&mine.public_key) {
        return Err(CustodyError::Invalid(
            "commitment does not list this node's key share".into(),
        ));
    }
    let public_key = combined_key(ctx, &commitment.key_shares, commitment.beneficiary_share)?;
    let output = plugin
        .key_output(&order, &public_key)
        .map_err(CustodyError::Invalid)?;
    if commitment.public_key.as_slice() != public_key.to_compressed().as_slice()
        || commitment.output != output
    {
        return Err(CustodyError::Invalid(
            "commitment key or outputs do not follow from its key shares".into(),
        ));
    }
    record.commitment = Some(commitment_cid);
    record.head = commitment_cid;
    record.state = "holding".into();
    let delivery = sign_commitment(ctx, &reference, commitment_cid, record.principal).await?;
    ctx.save(Role::Fiduciary, &record).await?;
    Ok(Some(delivery))
}

/// Fiduciary: a share was dealt to this node. Returns the signature's delivery to the
/// principal.
pub async fn on_share_deal(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    deal_cid: Cid,
) -> Result<Delivery, CustodyError> {
    let reference = envelope.envelope().order.clone();
    if let Some(existing) = ctx.record(Role::Fiduciary, &envelope.envelope().sender, &reference)? {
        // The same deal again (the principal did not get our signature): sign again.
        if existing.shares.values().any(|c| *c == deal_cid)
            && envelope.envelope().sender == existing.principal
        {
            let commitment = existing
                .commitment
                .ok_or_else(|| internal("held order without commitment"))?;
            return sign_commitment(ctx, &reference, commitment, existing.principal).await;
        }
        return Err(CustodyError::Exists(existing.reference));
    }
    let commitment_cid = envelope
        .envelope()
        .prev
        .ok_or_else(|| CustodyError::Invalid("deal does not link its commitment".into()))?;
    let commitment_envelope = ctx.verified_block(&commitment_cid)?;
    let commitment: Commitment = RoleContext::payload(&commitment_envelope)?;
    let order_envelope = ctx.verified_block(&commitment.order)?;
    let order: OrderRequest = RoleContext::payload(&order_envelope)?;
    let principal = envelope.envelope().sender;
    if order_envelope.envelope().sender != principal
        || commitment_envelope.envelope().sender != principal
        || order.principal != principal
    {
        return Err(CustodyError::Invalid(
            "deal, commitment and order have different senders".into(),
        ));
    }
    if order_envelope.envelope().order != reference
        || commitment_envelope.envelope().order != reference
    {
        return Err(CustodyError::Invalid("blocks of another order".into()));
    }
    let deal: ShareDeal = ctx.sealed(envelope)?;
    let me = ctx.local.cid();
    let position = order.fiduciaries.iter().position(|f| *f == me);
    if position.map(|p| p as u32 + 1) != Some(deal.index) || deal.order != commitment.order {
        return Err(CustodyError::Invalid(
            "this share is not this node's".into(),
        ));
    }
    let value: [u8; 32] = deal
        .share
        .expose()
        .try_into()
        .map_err(|_| CustodyError::Invalid("share is not 32 bytes".into()))?;
    let share =
        Share::from_parts(deal.index, &value).map_err(|e| CustodyError::Invalid(e.to_string()))?;
    Commitments::from_bytes(&commitment.feldman)
        .map_err(|e| CustodyError::Invalid(e.to_string()))?
        .verify_share(&share)
        .map_err(|e| CustodyError::Invalid(e.to_string()))?;
    ctx.keep_secret(
        share_name(&envelope.envelope().sender, &reference),
        value.to_vec(),
    )
    .await?;

    let record = OrderRecord {
        reference: reference.clone(),
        role: Role::Fiduciary.name().into(),
        state: "holding".into(),
        order: commitment.order,
        commitment: Some(commitment_cid),
        principal,
        fiduciaries: order.fiduciaries,
        threshold: order.threshold,
        max_releases: order.policy.max_releases,
        certificate: None,
        signatures: BTreeMap::new(),
        releases: BTreeMap::new(),
        shares: BTreeMap::from([(deal.index, deal_cid)]),
        receipts: BTreeMap::new(),
        served: BTreeMap::new(),
        head: commitment_cid,
    };
    // The custody signature is made while the share and record reach the disk.
    let delivery = ctx
        .save_while(
            Role::Fiduciary,
            &record,
            sign_commitment(ctx, &reference, commitment_cid, principal),
        )
        .await?;
    tracing::info!(order = %reference, index = deal.index, "share verified and kept");
    Ok(delivery)
}

/// Fiduciary: signs the commitment and returns the signature's delivery to the principal.
async fn sign_commitment(
    ctx: &RoleContext,
    reference: &str,
    commitment_cid: Cid,
    principal: Cid,
) -> Result<Delivery, CustodyError> {
    // The envelope's signature is the custody signature over the commitment.
    let reply = ctx.envelope(
        Kind::CommitmentSignature,
        reference,
        Some(commitment_cid),
        None,
        None,
        &[],
    )?;
    // Staged: it goes to disk with the caller's record, or with the blocks of the event.
    let (_, bytes) = ctx.save_block(&reply).await?;
    let peer = ctx
        .peer_of(&principal)
        .ok_or_else(|| CustodyError::UnknownIdentity(principal.to_string()))?;
    Ok((peer, vec![bytes]))
}

/// Fiduciary: the certificate arrived.
pub async fn on_certificate(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    cid: Cid,
) -> Result<(), CustodyError> {
    let reference = envelope.envelope().order.clone();
    let principal = envelope.envelope().sender;
    let Some(mut record) = ctx.record(Role::Fiduciary, &principal, &reference)? else {
        return Ok(());
    };
    // Sent again by a resuming principal: already recorded, and the state may have moved on.
    if record.certificate == Some(cid) {
        return Ok(());
    }
    if envelope.envelope().sender != record.principal {
        return Err(CustodyError::Invalid(
            "certificate not from the principal".into(),
        ));
    }
    // The recorded certificate passed its pairing check when a release relied on it. An honest
    // principal stores its one certificate before any release names it, so a different one
    // now is refused: recorded over the first, it would turn a released order back into a
    // certified one and make the next genuine release look like it names another certificate.
    if let Some(recorded) = record.certificate
        && !record.releases.is_empty()
    {
        return Err(CustodyError::Invalid(format!(
            "order {reference} was released under certificate {recorded}; another is refused"
        )));
    }
    // The aggregate signature is checked when a release relies on it (one pairing check per
    // release instead of one per order at every fiduciary); until then the principal's
    // signed word that the order is certified is enough to record it.
    let certificate: Certificate = RoleContext::payload(envelope)?;
    if Some(certificate.commitment) != record.commitment {
        return Err(CustodyError::Invalid(
            "certificate for another commitment".into(),
        ));
    }
    record.certificate = Some(cid);
    record.head = cid;
    record.state = "certified".into();
    // The release that brought it syncs it before anything is sent.
    ctx.save_buffered(Role::Fiduciary, &record).await
}

/// The pairing check of an order's certificate, after its cheap checks.
fn prepare_certificate_check(
    ctx: &RoleContext,
    record: &OrderRecord,
    certificate: &Certificate,
) -> Result<CertificateCheck, CustodyError> {
    let identities: Vec<VerifiedIdentity> = ctx.known_identities(&record.fiduciaries)?;
    let refs: Vec<&VerifiedIdentity> = identities.iter().collect();
    let commitment = record.commitment.ok_or_else(|| internal("no commitment"))?;
    certificate
        .prepare_check(commitment, &refs)
        .map_err(|e| CustodyError::Invalid(e.to_string()))
}

/// A certificate's pairing check that a step waits for. The role has it run off its queue,
/// batched with others (see [`crate::certificates`]), then handles the step's delivery again,
/// and the step finds the outcome under `key`.
#[derive(Debug)]
pub struct PendingCheck {
    /// What the check vouches for: the certificate's CID (as a block of its own payload, for
    /// one not published yet).
    pub key: Cid,
    /// The check.
    pub check: CertificateCheck,
}

/// What a fiduciary does next with a release request.
#[derive(Debug)]
pub enum ReleaseStep {
    /// Send the sealed share (recorded durably already) to the beneficiary.
    Deliver(Delivery),
    /// Have the order's certificate checked first; nothing was recorded yet.
    CheckCertificate(Box<PendingCheck>),
}

/// Refuses a release to anyone but the beneficiary an order names, where it names one.
fn check_named_beneficiary(
    reference: &str,
    order: &OrderRequest,
    request: &ReleaseRequest,
) -> Result<(), CustodyError> {
    match order.beneficiary {
        Some(named) if named != request.beneficiary => Err(CustodyError::Invalid(format!(
            "release {} of {reference} is for {}, but the order is for beneficiary {named}",
            request.sequence, request.beneficiary
        ))),
        _ => Ok(()),
    }
}

/// Fiduciary: a release request arrived. Checks it, records the release durably, and returns
/// the share's delivery to the beneficiary; or, the first time, asks for the certificate's
/// pairing check, which runs off the role's queue (batched with other releases' checks).
pub async fn on_release_request(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    request_cid: Cid,
) -> Result<ReleaseStep, CustodyError> {
    let reference = envelope.envelope().order.clone();
    // Found under its sender: a request from anyone but the order's principal finds none.
    let mut record = ctx
        .record(Role::Fiduciary, &envelope.envelope().sender, &reference)?
        .ok_or_else(|| CustodyError::NotFound(reference.clone()))?;
    if envelope.envelope().sender != record.principal {
        return Err(CustodyError::Invalid(format!(
            "release of {reference} requested by {}, not by its principal",
            envelope.envelope().sender
        )));
    }
    let request: ReleaseRequest = RoleContext::payload(envelope)?;
    let certificate_cid = record.certificate.ok_or_else(|| {
        CustodyError::Conflict(format!("order {reference} is not certified here"))
    })?;
    if request.certificate != certificate_cid || request.order != record.order {
        return Err(CustodyError::Invalid(
            "release names another order or certificate".into(),
        ));
    }
    if record.releases.get(&request.sequence) == Some(&request_cid)
        && let Some(served) = record.served.get(&request.sequence)
    {
        // The same request again: the beneficiary lost what was sent, or never got it. It
        // gets the same sealed share; nothing is released or counted again.
        let bytes = ctx
            .block(served)
            .ok_or_else(|| internal("served share block missing"))?;
        let peer = ctx
            .peer_of(&request.beneficiary)
            .ok_or_else(|| CustodyError::UnknownIdentity(request.beneficiary.to_string()))?;
        tracing::info!(order = %reference, sequence = request.sequence, "served share sent again");
        return Ok(ReleaseStep::Deliver((peer, vec![bytes])));
    }
    if record.releases.contains_key(&request.sequence) {
        return Err(CustodyError::Conflict(format!(
            "release {} of {reference} was already served (replay)",
            request.sequence
        )));
    }
    let order: OrderRequest = ctx.stored_payload(&record.order)?;
    check_named_beneficiary(&reference, &order, &request)?;
    if request.sequence == 0
        || request.sequence > record.max_releases
        || request.sequence != record.releases.len() as u32 + 1
    {
        return Err(CustodyError::Conflict(format!(
            "release {} of {reference} is not allowed by its policy ({} allowed, {} served)",
            request.sequence,
            record.max_releases,
            record.releases.len()
        )));
    }
    let certificate: Certificate = ctx.stored_payload(&certificate_cid)?;
    match ctx.certificate_checks.take_outcome(&certificate_cid) {
        Some(true) => {}
        Some(false) => {
            return Err(CustodyError::Invalid(
                CertificateError::Signature.to_string(),
            ));
        }
        None => {
            return Ok(ReleaseStep::CheckCertificate(Box::new(PendingCheck {
                key: certificate_cid,
                check: prepare_certificate_check(ctx, &record, &certificate)?,
            })));
        }
    }
    let beneficiary = ctx
        .identity(&request.beneficiary)
        .ok_or_else(|| CustodyError::UnknownIdentity(request.beneficiary.to_string()))?;
    let commitment_cid = record
        .commitment
        .ok_or_else(|| internal("held order without commitment"))?;
    check_beneficiary(ctx, &commitment_cid, &request.beneficiary)?;
    let beneficiary_peer = ctx
        .peer_of(&request.beneficiary)
        .ok_or_else(|| CustodyError::UnknownIdentity(request.beneficiary.to_string()))?;
    let value = ctx
        .load_secret(&share_name(&record.principal, &reference))
        .await?;
    let index = *record
        .shares
        .keys()
        .next()
        .ok_or_else(|| internal("no share index recorded"))?;
    let released = ShareRelease {
        release: request_cid,
        index,
        share: value,
    };
    let plain = zeroize::Zeroizing::new(encode(&released)?);
    let reply = ctx.envelope(
        Kind::ShareRelease,
        &reference,
        Some(request_cid),
        None,
        Some(&plain),
        &[&beneficiary],
    )?;
    // The release is recorded with the sealed share in one synced batch before the share is
    // sent: after a crash either both are on disk (and the sequence is used) or neither is
    // (and nothing was sent), so the same sequence is never released twice.
    let (reply_cid, bytes) = ctx.save_block(&reply).await?;
    record.releases.insert(request.sequence, request_cid);
    record.served.insert(request.sequence, reply_cid);
    record.head = request_cid;
    record.state = "released".into();
    ctx.save(Role::Fiduciary, &record).await?;
    tracing::info!(order = %reference, sequence = request.sequence, "share released to the beneficiary");
    Ok(ReleaseStep::Deliver((beneficiary_peer, vec![bytes])))
}

// ---------------------------------------------------------------------------------------------
// Beneficiary

/// Beneficiary: whether a share release comes after its release was already rebuilt (with
/// n > t, the last shares always do), so it needs no signature check or opening.
pub fn share_is_late(ctx: &RoleContext, signed: &SignedEnvelope) -> bool {
    let Some(release) = signed.envelope.prev else {
        return false;
    };
    let Some(principal) = ctx
        .block(&release)
        .and_then(|bytes| SignedEnvelope::decode(&bytes).ok())
        .map(|request| request.envelope.sender)
    else {
        return false;
    };
    ctx.record(Role::Beneficiary, &principal, &signed.envelope.order)
        .ok()
        .flatten()
        .is_some_and(|record| {
            record
                .releases
                .iter()
                .any(|(sequence, cid)| *cid == release && record.receipts.contains_key(sequence))
        })
}

/// Beneficiary: a share arrived. Once t are in, rebuilds the key, checks it against the
/// commitment (dropping the shares off it if it does not match), keeps the secret and returns
/// the receipt's delivery to the principal.
pub async fn on_share_release(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    cid: Cid,
) -> Result<Option<Delivery>, CustodyError> {
    let reference = envelope.envelope().order.clone();
    let request_cid = envelope
        .envelope()
        .prev
        .ok_or_else(|| CustodyError::Invalid("share release does not link its request".into()))?;
    let request_envelope = ctx.verified_block(&request_cid)?;
    let request: ReleaseRequest = RoleContext::payload(&request_envelope)?;
    // The beneficiary is this node's identity or one it hosts.
    let me = ctx
        .own(&request.beneficiary)
        .ok_or_else(|| CustodyError::Invalid("release is for another beneficiary".into()))?;
    let order_envelope = ctx.verified_block(&request.order)?;
    let order: OrderRequest = RoleContext::payload(&order_envelope)?;
    if request_envelope.envelope().sender != order.principal
        || order_envelope.envelope().sender != order.principal
    {
        return Err(CustodyError::Invalid(
            "release request not from the principal".into(),
        ));
    }
    check_named_beneficiary(&reference, &order, &request)?;
    let sender = envelope.envelope().sender;
    let Some(position) = order.fiduciaries.iter().position(|f| *f == sender) else {
        return Err(CustodyError::Invalid(format!(
            "{sender} is not a fiduciary of {reference}"
        )));
    };
    let released: ShareRelease = RoleContext::sealed_for(envelope, &me)?;
    if released.index != position as u32 + 1 || released.release != request_cid {
        return Err(CustodyError::Invalid(format!(
            "share from {sender} has the wrong index or release"
        )));
    }
    let certificate_envelope = ctx.verified_block(&request.certificate)?;
    let certificate: Certificate = RoleContext::payload(&certificate_envelope)?;
    let commitment_envelope = ctx.verified_block(&certificate.commitment)?;
    let commitment: Commitment = RoleContext::payload(&commitment_envelope)?;
    let plugin = order_plugin(&order)?;
    let value: [u8; 32] = released
        .share
        .expose()
        .try_into()
        .map_err(|_| CustodyError::Invalid("share is not 32 bytes".into()))?;
    let mismatch =
        || CustodyError::Invalid(format!("share from {sender} does not match the commitment"));
    if commitment.key_shares.is_empty() {
        // Checked against the Feldman commitments only if the key rebuilt from t shares does
        // not match the commitment's public key (see below): one scalar multiplication for
        // the key instead of one per share, plus the decoding of every commitment.
        Share::from_parts(released.index, &value).map_err(|_| mismatch())?;
    } else {
        let key = secp256k1::SecretKey::from_bytes(&value).map_err(|_| mismatch())?;
        let expected = commitment.key_shares.get(released.index as usize - 1);
        if expected.map(|k| k.as_slice()) != Some(key.public_key().to_compressed().as_slice()) {
            return Err(mismatch());
        }
    }

    let mut record = match ctx.record(Role::Beneficiary, &order.principal, &reference)? {
        Some(record) => record,
        None => OrderRecord {
            reference: reference.clone(),
            role: Role::Beneficiary.name().into(),
            state: "collecting".into(),
            order: request.order,
            commitment: Some(certificate.commitment),
            principal: order.principal,
            fiduciaries: order.fiduciaries.clone(),
            threshold: order.threshold,
            max_releases: order.policy.max_releases,
            certificate: Some(request.certificate),
            signatures: BTreeMap::new(),
            releases: BTreeMap::from([(request.sequence, request_cid)]),
            shares: BTreeMap::new(),
            receipts: BTreeMap::new(),
            served: BTreeMap::new(),
            head: request_cid,
        },
    };
    if record.receipts.contains_key(&request.sequence) {
        return Ok(None);
    }
    // A later release of an order received before (a policy allowing several): its shares
    // are collected afresh (they are the same shares; the kept ones are overwritten).
    if let std::collections::btree_map::Entry::Vacant(entry) =
        record.releases.entry(request.sequence)
    {
        entry.insert(request_cid);
        record.shares.clear();
        record.certificate = Some(request.certificate);
        record.head = request_cid;
        record.state = "collecting".into();
    }
    if record.shares.contains_key(&released.index) {
        return Ok(None);
    }
    ctx.keep_secret(
        received_name(&order.principal, &reference, released.index),
        value.to_vec(),
    )
    .await?;
    record.shares.insert(released.index, cid);
    if record.shares.len() < order.threshold as usize {
        ctx.save(Role::Beneficiary, &record).await?;
        return Ok(None);
    }
    let mut values = Vec::with_capacity(record.shares.len());
    for index in record.shares.keys() {
        let bytes = ctx
            .load_secret(&received_name(&order.principal, &reference, *index))
            .await?;
        let value: [u8; 32] = bytes.expose().try_into().map_err(internal)?;
        values.push((*index, value));
    }
    let key = match rebuild(&me, &commitment, &order, &values) {
        Ok(key) => key,
        Err(err) if commitment.key_shares.is_empty() => {
            // Some dealt share is off the committed polynomial: find it and drop it, so that
            // the next honest share completes the set. The good ones stay.
            let bad = shares_off_the_commitment(&commitment, &values)?;
            if bad.is_empty() {
                return Err(err);
            }
            for index in &bad {
                record.shares.remove(index);
            }
            ctx.save(Role::Beneficiary, &record).await?;
            return Err(CustodyError::Invalid(format!(
                "share from {} does not match the commitment",
                bad.iter()
                    .map(|index| {
                        (*index as usize)
                            .checked_sub(1)
                            .and_then(|position| order.fiduciaries.get(position))
                            .map_or_else(|| format!("index {index}"), ToString::to_string)
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Err(err) => return Err(err),
    };
    let secret = plugin
        .finish(&reference, &commitment, key)
        .map_err(CustodyError::Invalid)?;
    ctx.keep_secret(
        secret_name(&order.principal, &reference),
        secret.expose().to_vec(),
    )
    .await?;

    let receipt = Receipt {
        release: request_cid,
        shares_from: record
            .shares
            .keys()
            .map(|i| order.fiduciaries[*i as usize - 1])
            .collect(),
        public_key: commitment.public_key.clone(),
    };
    let envelope = RoleContext::envelope_as(
        &me,
        Kind::Receipt,
        &reference,
        Some(request_cid),
        Some(encode(&receipt)?),
        &[],
        None,
    )?;
    let (receipt_cid, bytes) = ctx.save_block(&envelope).await?;
    record.receipts.insert(request.sequence, receipt_cid);
    record.head = receipt_cid;
    record.state = "received".into();
    ctx.save(Role::Beneficiary, &record).await?;
    tracing::info!(order = %reference, "secret rebuilt and kept; receipt sent");
    let peer = ctx
        .peer_of(&order.principal)
        .ok_or_else(|| CustodyError::UnknownIdentity(order.principal.to_string()))?;
    Ok(Some((peer, vec![bytes])))
}

/// The indices of dealt shares (index, value) that are not on the polynomial the Feldman
/// commitments commit to.
fn shares_off_the_commitment(
    commitment: &Commitment,
    values: &[(u32, [u8; 32])],
) -> Result<Vec<u32>, CustodyError> {
    let commitments = Commitments::from_bytes(&commitment.feldman)
        .map_err(|e| CustodyError::Invalid(e.to_string()))?;
    Ok(values
        .iter()
        .filter(|(index, value)| {
            Share::from_parts(*index, value)
                .map_or(true, |share| commitments.verify_share(&share).is_err())
        })
        .map(|(index, _)| *index)
        .collect())
}

/// Rebuilds an order's key from released shares (index, value) and checks it against the
/// commitment: Lagrange interpolation of a dealt scalar, or the sum of generated secp256k1
/// shares plus this beneficiary's own share where the key includes it.
fn rebuild(
    me: &LocalIdentity,
    commitment: &Commitment,
    order: &OrderRequest,
    values: &[(u32, [u8; 32])],
) -> Result<RebuiltKey, CustodyError> {
    let mismatch = || CustodyError::Invalid("rebuilt key does not match the commitment".into());
    if commitment.key_shares.is_empty() {
        let shares: Vec<Share> = values
            .iter()
            .map(|(index, value)| Share::from_parts(*index, value).map_err(internal))
            .collect::<Result<_, _>>()?;
        let key = threshold::recover(&shares, order.threshold as usize).map_err(internal)?;
        let rebuilt = key.to_bls().map_err(internal)?.public_key();
        if rebuilt.to_bytes().as_slice() != commitment.public_key.as_slice() {
            return Err(mismatch());
        }
        return Ok(RebuiltKey::Scalar(key));
    }
    let mut keys: Vec<secp256k1::SecretKey> = values
        .iter()
        .map(|(_, value)| secp256k1::SecretKey::from_bytes(value).map_err(internal))
        .collect::<Result<_, _>>()?;
    match commitment.beneficiary_share {
        Some(holder) if holder == me.cid() => keys.push(me.keys().secp256k1().clone()),
        Some(holder) => {
            return Err(CustodyError::Invalid(format!(
                "the key includes the share of {holder}, not of this node"
            )));
        }
        None => {}
    }
    let (first, rest) = keys.split_first().ok_or_else(mismatch)?;
    let key = rest
        .iter()
        .try_fold(first.clone(), |sum, k| sum.add(k))
        .map_err(|_| mismatch())?;
    if key.public_key().to_compressed().as_slice() != commitment.public_key.as_slice() {
        return Err(mismatch());
    }
    Ok(RebuiltKey::Secp256k1(key))
}

/// Audits an order's log ending at `head` with the blocks in `store` and the identities in
/// `directory` (fetch missing blocks first with [`fetch_chain`]). A sender the directory does
/// not know may still be an identity document kept as a block (one imported with the log's
/// archive): it is verified (PoP and self-signature) before the audit relies on it.
pub fn audit(
    store: &Store,
    directory: &crate::identities::Directory,
    reference: &str,
    head: Cid,
) -> Result<dta_protocol::audit::AuditReport, dta_protocol::audit::AuditError> {
    dta_protocol::audit::audit(
        reference,
        head,
        |cid| store.block(cid).ok().flatten(),
        |cid| match directory.identities.get(&cid.to_string()) {
            Some(known) => Some(known.verified.clone()),
            None => store
                .block(cid)
                .ok()
                .flatten()
                .and_then(|bytes| IdentityDocument::decode_verified(&bytes).ok())
                .filter(|identity| identity.cid() == *cid),
        },
    )
}

/// Fetches the blocks of a chain that are not here, walking `prev` links back from `head` and
/// asking connected peers over Bitswap. Every fetched block is checked against its CID before
/// it is stored. Returns how many blocks were fetched.
pub async fn fetch_chain(
    store: &Store,
    network: &NetworkHandle,
    head: Cid,
) -> Result<usize, CustodyError> {
    let mut fetched = 0;
    let mut next = Some(head);
    let mut steps = 0;
    while let Some(cid) = next {
        steps += 1;
        if steps > dta_protocol::audit::MAX_CHAIN {
            return Err(CustodyError::Invalid("chain too long".into()));
        }
        let bytes = match store
            .get(Column::Blocks, &cid.to_bytes())
            .map_err(internal)?
        {
            Some(bytes) => bytes,
            None => {
                let bytes = network
                    .fetch_block(cid)
                    .await
                    .map_err(|e| CustodyError::NotFound(e.to_string()))?;
                let stored = bytes.clone();
                let store = store.clone();
                tokio::task::spawn_blocking(move || {
                    store.put_durable(Column::Blocks, &cid.to_bytes(), &stored)
                })
                .await
                .map_err(internal)?
                .map_err(internal)?;
                fetched += 1;
                bytes
            }
        };
        next = SignedEnvelope::decode(&bytes)
            .map_err(|e| CustodyError::Invalid(format!("block {cid}: {e}")))?
            .envelope
            .prev;
    }
    Ok(fetched)
}

/// Stages an envelope that passed verification, for audits and later steps; it is written
/// with the step's record, or by the next [`RoleContext::commit`].
pub async fn keep_block(ctx: &RoleContext, bytes: &[u8]) -> Result<Cid, CustodyError> {
    let cid = dta_protocol::block::cid_of(dta_protocol::block::DAG_CBOR, bytes);
    ctx.stage(Column::Blocks, cid.to_bytes(), bytes.to_vec());
    Ok(cid)
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
