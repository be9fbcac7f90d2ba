//! What a node stores about one order in one role ([`OrderRecord`]), where it is stored
//! (record keys), the keystore names of shares and secrets, and the saving of a record: in one
//! batch with what the step staged, followed by resumption bookkeeping, the head
//! announcement and the event. The states a record moves through are the steps' business.

use std::collections::BTreeMap;

use dta_protocol::Cid;
use dta_protocol::dagcbor::{self, Limits};
use dta_protocol::order::Commitment;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::role::Role;
use crate::states::OrderState;
use crate::store::{Column, Store};

use super::resume::{open_release_key, settles_a_step, signing_open, waits_for_fiduciaries};
use crate::context::Durability;
use crate::context::{CustodyError, CustodyEvent, RoleContext, internal, joined};

/// What a node records about one order in one role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    /// The order reference.
    pub reference: String,
    /// This node's role in it.
    pub role: Role,
    /// Where the order stands for this role.
    pub state: OrderState,
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
    /// Release, move and signature requests this fiduciary holds until the order's release
    /// policy lets them go. Absent from records of orders without release conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<Hold>,
    /// Approval and veto envelopes taken in for this order's releases (fiduciary, principal).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub votes: Vec<Cid>,
    /// A t-of-n key the fiduciaries generate without a dealer: where its key generation
    /// stands (principal, fiduciary). Absent from every other record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_generation: Option<KeyGeneration>,
    /// How many times the order's shares were dealt anew (a refresh): a fiduciary's share is
    /// kept under the name of its epoch ([`held_share_name`]). 0, and absent, before the
    /// first.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch: u32,
    /// A refresh under way (principal, fiduciary). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<Refresh>,
    /// Fiduciary that joined the order's committee after releases: how many there had been
    /// (its own count of releases starts from here). 0, and absent, otherwise.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub releases_before: u32,
    /// Principal: the period of the order's proactive refresh (ms). Absent without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_every_ms: Option<u64>,
    /// Principal: old holders' signed statements that they deleted their shares
    /// ([`dta_protocol::envelope::Kind::ShareDeleted`]), after refreshes and reshares.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deletions: Vec<Cid>,
    /// Threshold signatures of the order's key under way (principal, fiduciary), oldest
    /// first. A signature made leaves the record for an entry of its own
    /// ([`super::signed`]): a record is read and written again at every step, and one that
    /// kept every signature would make each step cost more than the last. Absent when none
    /// is under way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing: Vec<SigningRun>,
    /// Principal: how many signatures were asked of the order's key, so the number of the
    /// last one. Absent before the first.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub signatures_asked: u32,
    /// Beneficiary: share releases of the release being collected that did not fit the
    /// commitment, revealed in its receipt as evidence against their fiduciaries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<Cid>,
    /// Beneficiary: pairs of different share releases one fiduciary sent for the release
    /// being collected, revealed in its receipt as evidence of equivocation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub equivocations: Vec<dta_protocol::order::Equivocation>,
}

/// Where one threshold signature stands (see `super::signing`). Once it is made, only its
/// number, request, attempts, exclusions and signature stay: its envelopes name the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningRun {
    /// Its number among the order's signatures, from 1.
    pub sequence: u32,
    /// The principal's request.
    pub request: Cid,
    /// Principal: the attempt under way, from 1.
    pub attempt: u32,
    /// Principal: each fiduciary's latest envelope carrying commitments not yet put in a
    /// package (a commitment, or a share with its next ones), by index. Fiduciary: the
    /// commitments it sent last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fresh: Vec<(u32, Cid)>,
    /// The package of the attempt under way (principal), or the last one this fiduciary
    /// signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<Cid>,
    /// Principal: when the package under way went out (ms since the Unix epoch); 0 if none.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub package_at_ms: u64,
    /// Signature shares of that package in (principal), or this fiduciary's share of it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<(u32, Cid)>,
    /// Principal: signers whose share failed, with that share's envelope.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<(u32, Cid)>,
    /// The signature, once made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Cid>,
}

impl SigningRun {
    /// Takes `cid` as the envelope with the unused commitments of signer `index`, in place of
    /// any before.
    pub(crate) fn fresh_from(&mut self, index: u32, cid: Cid) {
        self.fresh.retain(|(i, _)| *i != index);
        self.fresh.push((index, cid));
    }

    /// A run of `request`, number `sequence`, with nothing in yet.
    pub(crate) fn new(sequence: u32, request: Cid) -> Self {
        Self {
            sequence,
            request,
            attempt: 1,
            fresh: Vec::new(),
            package: None,
            package_at_ms: 0,
            shares: Vec::new(),
            excluded: Vec::new(),
            signature: None,
        }
    }
}

impl OrderRecord {
    /// A fiduciary's own share index in its record's committee.
    pub(crate) fn own_index(&self) -> Result<u32, CustodyError> {
        self.shares
            .keys()
            .next()
            .copied()
            .ok_or_else(|| internal("no share index recorded"))
    }

    /// A record of `role` in `principal`'s order `reference` (request envelope `order`) that
    /// has collected nothing yet: no committee, commitment, shares or releases.
    pub(crate) fn fresh(
        reference: String,
        role: Role,
        state: OrderState,
        order: Cid,
        principal: Cid,
        head: Cid,
    ) -> Self {
        Self {
            reference,
            role,
            state,
            order,
            commitment: None,
            principal,
            fiduciaries: Vec::new(),
            threshold: 0,
            max_releases: 0,
            certificate: None,
            signatures: BTreeMap::new(),
            releases: BTreeMap::new(),
            shares: BTreeMap::new(),
            receipts: BTreeMap::new(),
            served: BTreeMap::new(),
            head,
            held: Vec::new(),
            votes: Vec::new(),
            key_generation: None,
            epoch: 0,
            refresh: None,
            releases_before: 0,
            refresh_every_ms: None,
            deletions: Vec::new(),
            signing: Vec::new(),
            signatures_asked: 0,
            refused: Vec::new(),
            equivocations: Vec::new(),
        }
    }

    /// Releases served, with those before this fiduciary joined.
    pub fn releases_served(&self) -> u32 {
        u32::try_from(self.releases.len())
            .unwrap_or(u32::MAX)
            .saturating_add(self.releases_before)
    }
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

fn is_zero_u64(value: &u64) -> bool {
    *value == 0
}

/// Where a refresh stands (see `super::refresh`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refresh {
    /// The principal's request.
    pub request: Cid,
    /// Deal envelopes by dealer: each dealer's to every holder of the next epoch, in share
    /// order (`None` where one is not in yet). A fiduciary records its own deals here.
    pub deals: Vec<DealerDeals>,
    /// Principal: dealers a holder's upheld complaint excluded from this refresh.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<Exclusion>,
}

/// A dealer excluded from a refresh, and the complaint that convicted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exclusion {
    /// The dealer's share index in the old epoch.
    pub dealer: u32,
    /// The holder's complaint envelope.
    pub complaint: Cid,
}

/// One dealer's deal envelopes in a refresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealerDeals {
    /// The dealer's share index.
    pub dealer: u32,
    /// Its deal to each holder, in share order.
    pub to: Vec<Option<Cid>>,
}

/// Where a key generation stands for the principal or one fiduciary (see
/// `super::keygen`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGeneration {
    /// The principal's round envelope, once made (principal) or received (fiduciary).
    pub round: Option<Cid>,
    /// Fiduciary: the shares it dealt, by recipient index. Principal: the key shares the
    /// fiduciaries sent at the end, by index.
    #[serde(with = "numbered")]
    pub sent: BTreeMap<u32, Cid>,
    /// Fiduciary: the shares dealt to it, by dealer index.
    #[serde(with = "numbered")]
    pub received: BTreeMap<u32, Cid>,
    /// Fiduciary: its key share envelope, once it finished.
    pub key_share: Option<Cid>,
    /// The complaint (fiduciary: its own) or abort (principal) that ended the run.
    pub ended_by: Option<Cid>,
}

/// What a release policy holds back at a fiduciary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gated {
    /// A release, by its sequence number.
    Release(u32),
    /// A move of custody to another committee or threshold: authorized like a release, but
    /// not one (it counts against no `max_releases`).
    Move,
    /// A threshold signature, by its number: authorized like a release, but not one.
    Signature(u32),
    /// The order's cancellation: authorized like a release, but not one.
    Cancel,
}

impl Gated {
    /// What the API calls it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Release(_) => "release",
            Self::Move => "move",
            Self::Signature(_) => "signature",
            Self::Cancel => "cancel",
        }
    }

    /// Its number, where it has one.
    pub fn sequence(self) -> Option<u32> {
        match self {
            Self::Release(sequence) | Self::Signature(sequence) => Some(sequence),
            Self::Move | Self::Cancel => None,
        }
    }
}

impl std::fmt::Display for Gated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Release(sequence) => write!(f, "release {sequence}"),
            Self::Move => f.write_str("the move of custody"),
            Self::Signature(sequence) => write!(f, "signature {sequence}"),
            Self::Cancel => f.write_str("the cancellation"),
        }
    }
}

/// A request waiting for its policy: approvals, or the end of its delay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredHold", into = "StoredHold")]
pub struct Hold {
    /// What it holds back.
    pub gated: Gated,
    /// The request envelope.
    pub request: Cid,
    /// When this node first saw it (its clock, ms): the delay runs from here.
    pub seen_ms: u64,
}

/// How a [`Hold`] is stored: a release by its number, a move as number 0, a signature as
/// number 0 with its own number beside, a cancellation as number 0 marked so (records written
/// before signatures or cancellations were held decode as they were).
#[derive(Clone, Serialize, Deserialize)]
struct StoredHold {
    sequence: u32,
    request: Cid,
    seen_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<u32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    cancel: bool,
}

impl From<StoredHold> for Hold {
    fn from(stored: StoredHold) -> Self {
        let gated = match (stored.signature, stored.sequence) {
            _ if stored.cancel => Gated::Cancel,
            (Some(sequence), _) => Gated::Signature(sequence),
            (None, 0) => Gated::Move,
            (None, sequence) => Gated::Release(sequence),
        };
        Self {
            gated,
            request: stored.request,
            seen_ms: stored.seen_ms,
        }
    }
}

impl From<Hold> for StoredHold {
    fn from(hold: Hold) -> Self {
        let (sequence, signature) = match hold.gated {
            Gated::Release(sequence) => (sequence, None),
            Gated::Move | Gated::Cancel => (0, None),
            Gated::Signature(sequence) => (0, Some(sequence)),
        };
        Self {
            sequence,
            request: hold.request,
            seen_ms: hold.seen_ms,
            signature,
            cancel: hold.gated == Gated::Cancel,
        }
    }
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

/// Where a record is stored: a principal's under its reference (its own references are
/// unique), a fiduciary's and a beneficiary's under the order's principal and reference, so
/// that two principals using one reference never meet.
pub fn record_key(role: Role, principal: &Cid, reference: &str) -> Vec<u8> {
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
        .map(|bytes| dagcbor::decode_lenient(&bytes, Limits::default()).map_err(internal))
        .transpose()
}

/// Every order record `store` holds, of every role.
pub fn stored_records(store: &Store) -> Result<Vec<OrderRecord>, CustodyError> {
    store
        .scan(Column::Orders)
        .map_err(internal)?
        .into_iter()
        .map(|(_, bytes)| dagcbor::decode_lenient(&bytes, Limits::default()).map_err(internal))
        .collect()
}

/// The records that come after the store key `after` (from the first without it), in key
/// order, that `keep` keeps, at most `limit` of them. Reads no further than it must.
pub fn stored_records_after(
    store: &Store,
    after: Option<&[u8]>,
    limit: Option<usize>,
    mut keep: impl FnMut(&OrderRecord) -> bool,
) -> Result<Vec<OrderRecord>, CustodyError> {
    let mut kept = Vec::new();
    let mut failure = None;
    store
        .visit_after(Column::Orders, after, |_, bytes| {
            match dagcbor::decode_lenient::<OrderRecord>(bytes, Limits::default()) {
                Ok(record) if keep(&record) => kept.push(record),
                Ok(_) => {}
                Err(err) => {
                    failure = Some(internal(err));
                    return false;
                }
            }
            limit.is_none_or(|limit| kept.len() < limit)
        })
        .map_err(internal)?;
    match failure {
        Some(err) => Err(err),
        None => Ok(kept),
    }
}

/// The keystore name of a fiduciary's share of an order.
pub fn share_name(principal: &Cid, reference: &str) -> String {
    format!("share/{principal}/{reference}")
}

/// The keystore name of a fiduciary's share of an order in `epoch` (0 for the order's first
/// shares, as [`share_name`]; one more after each refresh).
pub fn held_share_name(principal: &Cid, reference: &str, epoch: u32) -> String {
    match epoch {
        0 => share_name(principal, reference),
        _ => format!("share/{principal}/{reference}/epoch-{epoch}"),
    }
}

/// The keystore name of what a fiduciary keeps between the parts of a key generation (its
/// polynomial, then what FROST keeps after dealing); deleted once its key share is kept.
pub fn round_name(principal: &Cid, reference: &str) -> String {
    format!("dkg-round/{principal}/{reference}")
}

/// The keystore name of a share a beneficiary received.
pub fn received_name(principal: &Cid, reference: &str, index: u32) -> String {
    format!("received/{principal}/{reference}/{index}")
}

/// The keystore name of the secret a beneficiary rebuilt.
pub fn secret_name(principal: &Cid, reference: &str) -> String {
    format!("secret/{principal}/{reference}")
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

    /// The principal's record of its order `reference`, or [`CustodyError::NotFound`].
    pub(crate) fn principal_record(&self, reference: &str) -> Result<OrderRecord, CustodyError> {
        self.own_record(reference)?
            .ok_or_else(|| CustodyError::NotFound(reference.to_owned()))
    }

    /// Fiduciary: its record of `principal`'s order `reference`, or not found.
    pub(crate) fn fiduciary_record(
        &self,
        principal: &Cid,
        reference: &str,
    ) -> Result<OrderRecord, CustodyError> {
        self.record(Role::Fiduciary, principal, reference)?
            .ok_or_else(|| CustodyError::NotFound(reference.to_owned()))
    }

    /// The commitment in force of a record's order.
    pub(crate) fn committed(&self, record: &OrderRecord) -> Result<Commitment, CustodyError> {
        let cid = record
            .commitment
            .ok_or_else(|| internal(format!("order {} has no commitment", record.reference)))?;
        self.stored_payload(&cid)
    }

    /// Every record on this node.
    pub fn records(&self) -> Result<Vec<OrderRecord>, CustodyError> {
        stored_records(&self.store)
    }

    /// Stages the record with everything staged before it and writes them all in one synced
    /// batch: the step is durable, or none of it is.
    pub(crate) async fn save(&self, role: Role, record: &OrderRecord) -> Result<(), CustodyError> {
        self.save_as(role, record, Durability::Synced).await
    }

    /// Like [`RoleContext::save`], for steps that send nothing and can be repeated: the batch
    /// is written without waiting for the disk.
    pub(crate) async fn save_buffered(
        &self,
        role: Role,
        record: &OrderRecord,
    ) -> Result<(), CustodyError> {
        self.save_as(role, record, Durability::Buffered).await
    }

    pub(crate) async fn save_as(
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
    pub(crate) async fn save_while<T>(
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
    pub(crate) async fn saved(&self, role: Role, record: &OrderRecord, durability: Durability) {
        self.note_attention(role, record);
        {
            let mut open = self
                .releases_open
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let key = open_release_key(record);
            let open_release = match role {
                Role::Principal => record.state == OrderState::Releasing,
                Role::Beneficiary => record.state == OrderState::Collecting,
                Role::Fiduciary => false,
            };
            if open_release {
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
            if waits_for_fiduciaries(record.state) || signing_open(record) {
                progress.insert(record.reference.clone(), std::time::Instant::now());
            } else {
                progress.remove(&record.reference);
            }
        }
        // Auditors only need a hint of where an order's log ends: announce the heads that
        // settle a step (certified, released), not every one on the way.
        if role == Role::Principal
            && durability == Durability::Synced
            && settles_a_step(record.state)
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
            state: record.state.into(),
        });
    }

    /// Orders this principal is still making (not certified yet).
    pub(crate) fn orders_in_progress(&self) -> usize {
        self.progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(seed: &[u8]) -> Cid {
        dta_protocol::block::cid_of(dta_protocol::block::DAG_CBOR, seed)
    }

    /// Records written before states were typed, one per role with every field set.
    fn written_before() -> Vec<OrderRecord> {
        let maps = |n: u32| {
            (1..=n)
                .map(|i| (i, cid(&[i as u8])))
                .collect::<BTreeMap<_, _>>()
        };
        [
            ("principal", "releasing"),
            ("fiduciary", "holding"),
            ("beneficiary", "collecting"),
        ]
        .into_iter()
        .map(|(role, state)| OrderRecord {
            reference: format!("vault-{role}"),
            role: role.parse().unwrap(),
            state: state.parse().unwrap(),
            order: cid(b"order"),
            commitment: Some(cid(b"commitment")),
            principal: cid(b"principal"),
            fiduciaries: vec![cid(b"f1"), cid(b"f2"), cid(b"f3")],
            threshold: 2,
            max_releases: 3,
            certificate: Some(cid(b"certificate")),
            signatures: BTreeMap::from([(cid(b"f1").to_string(), ByteBuf::from(vec![7; 96]))]),
            releases: maps(2),
            shares: maps(3),
            receipts: maps(1),
            served: if role == "fiduciary" {
                maps(1)
            } else {
                BTreeMap::new()
            },
            head: cid(b"head"),
            held: Vec::new(),
            votes: Vec::new(),
            key_generation: None,
            epoch: 0,
            refresh: None,
            releases_before: 0,
            refresh_every_ms: None,
            deletions: Vec::new(),
            signing: Vec::new(),
            signatures_asked: 0,
            refused: Vec::new(),
            equivocations: Vec::new(),
        })
        .collect()
    }

    /// The stored bytes of those records, as the code of the string states wrote them: the
    /// typed states read them and write them back unchanged.
    #[test]
    fn records_written_before_states_were_typed_read_and_write_the_same_bytes() {
        crate::states::stored::reads_and_writes_back(
            include_str!("../../testdata/order-records.hex"),
            written_before(),
        );
    }

    /// Holds stored before signatures were held (a release by its number, a move as 0) read
    /// as they were meant; each kind writes back the bytes it reads.
    #[test]
    fn holds_read_as_stored_before_signatures_were_held_and_round_trip() {
        #[derive(Serialize)]
        struct Before {
            sequence: u32,
            request: Cid,
            seen_ms: u64,
        }
        let before = |sequence| {
            dagcbor::encode(&Before {
                sequence,
                request: cid(b"request"),
                seen_ms: 5,
            })
            .unwrap()
        };
        let read = |bytes: &[u8]| dagcbor::decode::<Hold>(bytes, Limits::default()).unwrap();
        assert_eq!(read(&before(3)).gated, Gated::Release(3));
        assert_eq!(read(&before(0)).gated, Gated::Move);
        for gated in [Gated::Release(2), Gated::Move, Gated::Signature(4)] {
            let hold = Hold {
                gated,
                request: cid(b"request"),
                seen_ms: 9,
            };
            let bytes = dagcbor::encode(&hold).unwrap();
            assert_eq!(read(&bytes), hold);
            assert_eq!(dagcbor::encode(&read(&bytes)).unwrap(), bytes);
        }
        assert_eq!(
            dagcbor::encode(&Hold {
                gated: Gated::Release(3),
                request: cid(b"request"),
                seen_ms: 5,
            })
            .unwrap(),
            before(3),
            "a release is stored as before"
        );
    }
}
