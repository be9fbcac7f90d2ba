//! What the API answers, as types: handlers build these and serialize them, and the OpenAPI
//! document (`openapi`) derives their schemas from the same types, so it says what the node
//! sends. Identities, CIDs and peer ids are strings; times are milliseconds since the Unix
//! epoch.
//!
//! What it does not do: decide what goes in an answer (the handlers do) or hold a secret (a
//! received secret's answer is built where it is read).

use std::collections::BTreeMap;

use dta_actors::custody::OrderRecord;
use dta_actors::identities::{Directory, KnownIdentity, RevokedIdentity};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::ApiState;

/// `GET /v2/health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthAnswer {
    /// `ready`.
    pub status: String,
    /// Listen addresses.
    pub listening: usize,
    /// Connected peers.
    pub peers: usize,
    /// Known identities.
    pub identities: usize,
    /// Whether this node's identity was announced in the DHT since it started: nodes that
    /// never met it can find it from then on.
    pub announced: bool,
}

/// `GET /v2/node`.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeAnswer {
    /// This node's identity CID.
    pub identity: String,
    /// Its name.
    pub name: String,
    /// Its libp2p peer id, once the network runs.
    pub peer_id: Option<String>,
    /// The addresses it listens on.
    pub listen_addrs: Vec<String>,
    /// The roles it plays.
    pub roles: Vec<String>,
    /// The crate version.
    pub version: String,
    /// The git commit it was built from, or `unknown`.
    pub commit: String,
    /// The network protocol it speaks (`/dta/MAJOR.MINOR.PATCH`); it refuses peers of another
    /// major version.
    pub protocol: String,
    /// The layout version of its database.
    pub schema: u32,
}

/// A peer, with the identity known for it (`GET /v2/peers`, `/v2/peers/blocked`).
#[derive(Debug, Serialize, ToSchema, PartialEq, Eq)]
pub struct PeerAnswer {
    /// Its libp2p peer id.
    pub peer_id: String,
    /// Its identity CID, where known.
    pub identity: Option<String>,
    /// Its identity's name, where known.
    pub name: Option<String>,
}

/// A known identity (`GET /v2/identities`, `/v2/identities/{cid}`).
#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityAnswer {
    /// Its CID.
    pub cid: String,
    /// Its name.
    pub name: String,
    /// The peer id of the node that hosts it.
    pub peer_id: String,
    /// When its current document was made.
    pub created_at: u64,
    /// The CID of its current document: the identity's own until its keys are rotated.
    pub document: String,
    /// How often its keys were rotated.
    pub rotations: u64,
    /// The identity document's bytes, hex (one identity only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document_hex: Option<String>,
    /// Its revocation, if this node holds one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked: Option<RevokedAnswer>,
}

impl IdentityAnswer {
    /// The answer for `identity`, without its document.
    pub fn of(identity: &KnownIdentity, directory: &Directory) -> Self {
        Self {
            cid: identity.cid.to_string(),
            name: identity.name.clone(),
            peer_id: identity.peer_id.to_string(),
            created_at: identity.created_at,
            document: identity.verified.document_cid().to_string(),
            rotations: identity.verified.sequence(),
            document_hex: None,
            revoked: directory.revoked(&identity.cid).map(RevokedAnswer::of),
        }
    }
}

/// A revoked identity.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedAnswer {
    /// The identity.
    pub identity: String,
    /// From when, milliseconds since the epoch.
    pub at: u64,
    /// Why.
    pub reason: String,
    /// `identity` or `operator`.
    pub revoker: String,
    /// The revocation's CID.
    pub revocation: String,
}

impl RevokedAnswer {
    /// The answer for a revoked identity.
    pub fn of(revoked: &RevokedIdentity) -> Self {
        Self {
            identity: revoked.identity.to_string(),
            at: revoked.at,
            reason: revoked.reason.clone(),
            revoker: revoked.revoker.name().to_owned(),
            revocation: revoked.revocation.to_string(),
        }
    }
}

/// A release request a fiduciary holds for the order's policy.
#[derive(Debug, Serialize, ToSchema)]
pub struct HeldAnswer {
    /// `release`, `move` or `signature`.
    pub what: String,
    /// Its number, for a release or signature.
    pub sequence: Option<u32>,
    /// The request envelope's CID.
    pub request: String,
    /// When this node first saw it.
    pub since_ms: u64,
}

/// A party the order waits for.
#[derive(Debug, Serialize, ToSchema)]
pub struct AwaitedAnswer {
    /// Its identity CID.
    pub identity: String,
    /// What it has not sent.
    #[serde(rename = "for")]
    pub what: String,
    /// Since when.
    pub since_ms: u64,
}

/// How a `?wait=` ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct WaitedAnswer {
    /// How long the call waited at most.
    pub seconds: u64,
    /// Whether the step landed within it.
    pub reached: bool,
}

/// One order record of this node (`/v2/orders` and the calls that change an order).
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordAnswer {
    /// The order's reference.
    pub reference: String,
    /// This node's role in it: `principal`, `fiduciary` or `beneficiary`.
    pub role: String,
    /// Where it stands for that role.
    pub state: String,
    /// The order request envelope's CID.
    pub order: String,
    /// The commitment envelope's CID.
    pub commitment: Option<String>,
    /// The custody certificate's CID.
    pub certificate: Option<String>,
    /// The principal's identity CID.
    pub principal: String,
    /// The fiduciaries' identity CIDs, in share order.
    pub fiduciaries: Vec<String>,
    /// Shares needed.
    pub threshold: u32,
    /// How often the shares were dealt anew.
    pub epoch: u32,
    /// Shares refreshed this often once certified.
    pub refresh_every_ms: Option<u64>,
    /// Fiduciaries that said they deleted their shares.
    pub shares_deleted: usize,
    /// Most releases.
    pub max_releases: u32,
    /// Custody signatures gathered.
    pub signatures: usize,
    /// Release requests by number.
    pub releases: BTreeMap<String, String>,
    /// Shares received or kept, by index.
    pub shares: BTreeMap<String, String>,
    /// Receipts by release number.
    pub receipts: BTreeMap<String, String>,
    /// Share releases served, by release number.
    pub served: BTreeMap<String, String>,
    /// Requests held for the order's policy.
    pub held: Vec<HeldAnswer>,
    /// Approvals and vetoes seen.
    pub votes: Vec<String>,
    /// The order log's newest envelope known here.
    pub head: String,
    /// The release policy and each request's progress under it, if the order has one.
    #[schema(value_type = Option<Object>)]
    pub policy: Value,
    /// Who the order still waits for.
    pub waiting_for: Vec<AwaitedAnswer>,
    /// Signing runs with the order's key.
    #[schema(value_type = Vec<Object>)]
    pub signing: Value,
    /// The order's plugin (one order's answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// The key's public half, hex (one order's answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// The plugin's outputs (one order's answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<BTreeMap<String, String>>,
    /// How a `?wait=` ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waited: Option<WaitedAnswer>,
    /// Fiduciaries an abandoned move left without word (`/abandon`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<Vec<String>>,
}

impl RecordAnswer {
    /// The answer for `record`, with its policy progress, whom it waits for and its signing
    /// runs.
    pub fn of(state: &ApiState, record: &OrderRecord) -> Self {
        let map = |m: &BTreeMap<u32, dta_protocol::Cid>| -> BTreeMap<String, String> {
            m.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        Self {
            reference: record.reference.clone(),
            role: record.role.name().to_owned(),
            state: record.state.to_string(),
            order: record.order.to_string(),
            commitment: record.commitment.map(|c| c.to_string()),
            certificate: record.certificate.map(|c| c.to_string()),
            principal: record.principal.to_string(),
            fiduciaries: record.fiduciaries.iter().map(ToString::to_string).collect(),
            threshold: record.threshold,
            epoch: record.epoch,
            refresh_every_ms: record.refresh_every_ms,
            shares_deleted: record.deletions.len(),
            max_releases: record.max_releases,
            signatures: record.signatures.len(),
            releases: map(&record.releases),
            shares: map(&record.shares),
            receipts: map(&record.receipts),
            served: map(&record.served),
            held: record
                .held
                .iter()
                .map(|h| HeldAnswer {
                    what: h.gated.name().to_owned(),
                    sequence: h.gated.sequence(),
                    request: h.request.to_string(),
                    since_ms: h.seen_ms,
                })
                .collect(),
            votes: record.votes.iter().map(ToString::to_string).collect(),
            head: record.head.to_string(),
            policy: super::policy::progress_json(state, record),
            waiting_for: dta_actors::custody::awaited(&state.store, record)
                .iter()
                .map(|awaited| AwaitedAnswer {
                    identity: awaited.identity.to_string(),
                    what: awaited.what.name().to_owned(),
                    since_ms: awaited.since,
                })
                .collect(),
            signing: super::signing::runs_json(state, record),
            plugin: None,
            public_key: None,
            output: None,
            waited: None,
            missing: None,
        }
    }
}

/// `GET /`: where the endpoints are and what each needs.
#[derive(Debug, Serialize, ToSchema)]
pub struct IndexAnswer {
    /// `dta`.
    pub service: String,
    /// The crate version.
    pub version: String,
    /// This node's identity CID.
    pub identity: String,
    /// Its name.
    pub name: String,
    /// Every endpoint.
    pub endpoints: Vec<EndpointAnswer>,
}

/// One endpoint of the index.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointAnswer {
    /// Its methods, `|`-separated.
    pub method: String,
    /// Its path, `{name}` for a parameter.
    pub path: String,
    /// What it is for.
    pub what: String,
    /// What each method needs: `open`, scopes joined by `+`, `v1:...`, `metrics`.
    pub access: BTreeMap<String, String>,
}

/// `GET /v2/keystore`.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeystoreAnswer {
    /// `soft` or `pkcs11`.
    pub backend: String,
    /// The token's label, for a PKCS#11 keystore.
    pub token: Option<String>,
    /// Secrets kept.
    pub secrets: usize,
}

/// An API token's record (`/v2/tokens`); the token itself only in the answer that made it.
/// No `Debug`: it may hold the token.
#[derive(Serialize, ToSchema)]
pub struct TokenAnswer {
    /// Its id.
    pub id: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// The operator's note.
    pub label: Option<String>,
    /// When it was made.
    pub created_ms: u64,
    /// When it expires, if it does.
    pub expires_ms: Option<u64>,
    /// When it was revoked, if it was.
    pub revoked_ms: Option<u64>,
    /// Whether it works now.
    pub live: bool,
    /// The token (`dta_...`), shown this once, when it was just made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `POST /v2/backup/checkpoint`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointAnswer {
    /// The directory the copy of the database was made in, in the node's home; whoever asked
    /// removes it.
    pub path: String,
}

/// `PUT /v2/peers/blocked/{peer}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct BlockedAnswer {
    /// The peer now blocked.
    pub blocked: String,
}

/// `DELETE /v2/peers/blocked/{peer}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnblockedAnswer {
    /// The peer no longer blocked.
    pub unblocked: String,
}

/// `POST /v2/network/probe`: a lookup of the peers closest to a random key.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProbeAnswer {
    /// How long the lookup took (ms).
    pub millis: u64,
    /// Requests it sent.
    pub requests: u32,
    /// Requests answered.
    pub successes: u32,
    /// Requests that failed (no connection, no answer in time).
    pub failures: u32,
    /// Peers it found closest to the key (at most 20).
    pub closest: usize,
}

/// `GET /v2/network/heads/{cid}`: when this node first saw a head announced.
#[derive(Debug, Serialize, ToSchema)]
pub struct HeadSeenAnswer {
    /// The head's CID.
    pub head: String,
    /// When, in milliseconds since the Unix epoch (this machine's clock).
    pub seen_unix_ms: u64,
    /// How: `published` (this node is the order's principal) or `gossip`.
    pub source: String,
}

/// `PUT /v2/blocks`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StoredBlockAnswer {
    /// The block's CID.
    pub cid: String,
    /// Its size in bytes.
    pub size: usize,
}

/// `POST /v2/blocks/import`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportAnswer {
    /// The archive's roots.
    pub roots: Vec<String>,
    /// Blocks stored.
    pub blocks: usize,
}

/// `POST /v2/orders/{ref}/approvals`.
#[derive(Debug, Serialize, ToSchema)]
pub struct VoteAnswer {
    /// The vote envelope's CID.
    pub cid: String,
    /// `approval` or `veto`.
    pub kind: String,
}

/// An offence an audit proved.
#[derive(Debug, Serialize, ToSchema)]
pub struct MisconductAnswer {
    /// The culprit's identity CID.
    pub culprit: String,
    /// The offence.
    pub offence: String,
    /// The envelope that proves it.
    pub evidence: String,
}

/// An envelope of an audited log, by kind.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditedEnvelope {
    /// Its CID.
    pub cid: String,
    /// Its kind (`order-request`, ...).
    pub kind: String,
    /// Its sender, where a revocation this node holds revoked the sender at or before the
    /// envelope's time: the envelope verifies, but was signed after its signer was revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_revocation_of: Option<String>,
}

/// `GET /v2/orders/{ref}/audit`, when the audit passed.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditAnswer {
    /// The order's reference.
    pub reference: String,
    /// Where the audited log ends.
    pub head: String,
    /// `true` (a failed audit is a 422).
    pub passed: bool,
    /// Envelopes fetched from peers first.
    pub fetched: usize,
    /// Whether the log holds a custody certificate.
    pub certified: bool,
    /// Receipts in the log.
    pub receipts: usize,
    /// Release policies checked.
    pub policies: usize,
    /// Threshold signatures checked.
    pub threshold_signatures: usize,
    /// Offences the log proves.
    pub misconduct: Vec<MisconductAnswer>,
    /// The main chain's envelopes, oldest first.
    pub envelopes: Vec<AuditedEnvelope>,
    /// The revoked identities that signed envelopes of the log, as this node knows them.
    pub revoked: Vec<RevokedAnswer>,
}

/// One envelope of an order's log as the web page draws it.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogEnvelopeAnswer {
    /// Its CID.
    pub cid: String,
    /// Its kind.
    pub kind: String,
    /// The signer's identity CID.
    pub signer: String,
    /// The signer's name, where known.
    pub signer_name: Option<String>,
    /// When the signer made it, by its clock.
    pub timestamp_ms: u64,
    /// The envelope it links back to.
    pub prev: Option<String>,
    /// Whom its sealed part is for (identity CIDs).
    pub sealed_for: Vec<String>,
    /// Whether it is on the main chain (else it hangs off it).
    pub on_chain: bool,
}

/// `GET /v2/orders/{ref}/log`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogAnswer {
    /// The order's reference.
    pub reference: String,
    /// Where the log ends.
    pub head: String,
    /// The main chain oldest first, then what hangs off it in time order.
    pub envelopes: Vec<LogEnvelopeAnswer>,
}
