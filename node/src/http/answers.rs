//! What the API answers, as types: handlers build these and serialize them, and the OpenAPI
//! document (`openapi`) derives their schemas from the same types, so it says what the node
//! sends. Identities, CIDs and peer ids are strings; times are milliseconds since the Unix
//! epoch.
//!
//! What it does not do: decide what goes in an answer (the handlers do) or hold a secret (a
//! received secret's answer is built where it is read).

use std::collections::BTreeMap;

use dta_actors::custody::OrderRecord;
use dta_actors::identities::KnownIdentity;
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
    /// When it was made.
    pub created_at: u64,
    /// The identity document's bytes, hex (one identity only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document_hex: Option<String>,
}

impl IdentityAnswer {
    /// The answer for `identity`, without its document.
    pub fn of(identity: &KnownIdentity) -> Self {
        Self {
            cid: identity.cid.to_string(),
            name: identity.name.clone(),
            peer_id: identity.peer_id.to_string(),
            created_at: identity.created_at,
            document_hex: None,
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
