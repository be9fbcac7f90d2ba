//! What the `/v2/mpin` calls answer, as types: the handlers in `mpin` build these, and the
//! OpenAPI document derives their schemas from them.
//!
//! What it does not do: hold a secret of its own. The answers that carry one (a client
//! secret, a permit, a token) borrow its hex from a buffer the handler wipes, and have no
//! `Debug`.

use dta_actors::mpin::MpinRecord;
use serde::Serialize;
use utoipa::ToSchema;

/// One M-Pin issuance this node recorded (`GET /v2/mpin`).
#[derive(Debug, Serialize, ToSchema)]
pub struct MpinRecordAnswer {
    /// The issuance's reference.
    pub reference: String,
    /// This node's side of it: `requester` or `authority`.
    pub side: String,
    /// What was issued: `client`, `server` or `permit`.
    pub secret: String,
    /// The M-Pin identity (client secrets and permits).
    pub identity: Option<String>,
    /// The permit's date, in days since the Unix epoch.
    pub date: Option<u32>,
    /// The identity CID that asked.
    pub requester: String,
    /// The authorities' identity CIDs, in order.
    pub authorities: Vec<String>,
    /// How many authorities answered.
    pub answered: usize,
    /// Refusals, by authority CID.
    pub refusals: std::collections::BTreeMap<String, String>,
    /// Where it stands: `requested`, `issued` or `refused`.
    pub state: String,
    /// The master secret generated t-of-n that the shares are of, if any.
    pub master: Option<MasterAnswer>,
}

/// The `mpin-master` order whose shares an issuance combined.
#[derive(Debug, Serialize, ToSchema)]
pub struct MasterAnswer {
    /// The order's reference.
    pub reference: String,
    /// Its principal's identity CID.
    pub principal: String,
    /// How many shares are combined.
    pub threshold: u32,
}

impl MpinRecordAnswer {
    /// The answer for `record`.
    pub fn of(record: &MpinRecord) -> Self {
        Self {
            reference: record.reference.clone(),
            side: record.side.to_string(),
            secret: record.secret.name().to_owned(),
            identity: record.identity.clone(),
            date: record.date,
            requester: record.requester.to_string(),
            authorities: authorities_of(record),
            answered: record.answers.len(),
            refusals: record.refusals.clone(),
            state: record.state.to_string(),
            master: record.master.as_ref().map(|m| MasterAnswer {
                reference: m.reference.clone(),
                principal: m.principal.to_string(),
                threshold: m.threshold,
            }),
        }
    }
}

/// The authorities' identity CIDs of `record`.
pub fn authorities_of(record: &MpinRecord) -> Vec<String> {
    record.authorities.iter().map(ToString::to_string).collect()
}

/// `POST /v2/mpin/client-secret`. No `Debug`: it holds the client secret.
#[derive(Serialize, ToSchema)]
pub struct ClientSecretAnswer<'a> {
    /// The issuance's reference (a token can be asked for by it).
    pub reference: &'a str,
    /// The M-Pin identity.
    pub identity: Option<&'a str>,
    /// The authorities whose shares were combined.
    pub authorities: Vec<String>,
    /// The client secret, a G1 point, hex.
    pub client_secret: &'a str,
}

/// `POST /v2/mpin/permit`. No `Debug`: it holds the permit.
#[derive(Serialize, ToSchema)]
pub struct PermitAnswer<'a> {
    /// The issuance's reference.
    pub reference: &'a str,
    /// The M-Pin identity.
    pub identity: Option<&'a str>,
    /// The permit's date, in days since the Unix epoch.
    pub date: Option<u32>,
    /// The time permit, a G1 point, hex.
    pub permit: &'a str,
}

/// `POST /v2/mpin/server-secret`: the secret is kept by this node and not answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerSecretAnswer {
    /// The issuance's reference.
    pub reference: String,
    /// The authorities whose shares were combined.
    pub authorities: Vec<String>,
    /// Always `true`: this node now authenticates with it.
    pub kept: bool,
}

/// `POST /v2/mpin/token`. No `Debug`: the token and the PIN make the client secret.
#[derive(Serialize, ToSchema)]
pub struct MpinTokenAnswer<'a> {
    /// The M-Pin identity.
    pub identity: &'a str,
    /// The token (the client secret with the PIN taken out), a G1 point, hex.
    pub token: &'a str,
}

/// `POST /v2/mpin/auth/challenge`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChallengeAnswer {
    /// The session the verification names.
    pub session: String,
    /// The server's random challenge y, hex.
    pub y: String,
}

/// `POST /v2/mpin/auth/verify`, when the proof holds (a failed one answers 401).
#[derive(Debug, Serialize, ToSchema)]
pub struct VerdictAnswer {
    /// Always `true`.
    pub authenticated: bool,
    /// The identity authenticated, when this node checked the proof itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
}
