//! M-Pin share issuance across nodes: a requester asks k trust authorities (D-TAs) for shares
//! of a client secret, a server secret or a time permit; each authority answers from its
//! master-secret share, which it creates in its keystore on the first request and never
//! exports; the requester checks every answer and adds the shares up.
//!
//! - Requester ([`create_request`], principal role): signs an `MpinRequest` envelope naming the
//!   secret, the identity (and date) and the authorities asked, and delivers it to each.
//!   A client secret or permit for the name of an identity the node hosts is asked for, and
//!   signed, by that identity, so one node serves many end users.
//! - Authority ([`on_request`], fiduciary role): checks the policy (a client secret or permit
//!   only for the requester's own identity name; a server secret only for an identity on the
//!   operator's allow-list, `mpin_servers`), then answers with an `MpinShare` envelope whose
//!   share is sealed to the requester, or with a signed refusal. It records the issuance.
//!   The requester takes every answer, refusals too, so a refused request names every
//!   authority's reason.
//! - Requester ([`on_share`], principal role, which made the request): takes answers only from the authorities it
//!   asked, for its own request; checks each share is a valid point of the right group; keeps
//!   shares and their sum through its keystore. A server secret is also kept as this node's
//!   authentication-server secret ([`SERVER_SECRET`]).
//!
//! Every request and answer is a stored block whose `order` field is the request's reference:
//! the issuance log is the same kind of hash-linked, signed log as an order's.

use std::collections::BTreeMap;

use dta_crypto::mpin::{self, G1Point, G2Point, MpinScalar};
use dta_protocol::Cid;
use dta_protocol::dagcbor::{self, Limits};
use dta_protocol::envelope::{Kind, VerifiedEnvelope};
use dta_protocol::mpin::{MpinAnswer, MpinRequest, MpinSecret, MpinSharePoint};
use serde::{Deserialize, Serialize};

use crate::context::{CustodyError, Delivery, RoleContext, encode, internal};
use crate::role::Role;
use crate::states::{MpinSide, MpinState};
use crate::store::{Column, Store};

/// Keystore name of this node's master-secret share (as an authority).
pub const MASTER_SHARE: &str = "mpin/master-share";
/// Keystore name of this node's authentication-server secret (the latest issued to it).
pub const SERVER_SECRET: &str = "mpin/server-secret";
/// Longest M-Pin identity accepted, in bytes.
pub const MAX_IDENTITY_LEN: usize = 256;
/// Most authorities one request may ask.
pub const MAX_AUTHORITIES: usize = 32;

/// A request to make.
#[derive(Debug, Clone)]
pub struct NewMpinRequest {
    /// What to ask for.
    pub secret: MpinSecret,
    /// The M-Pin identity (client secrets and permits).
    pub identity: Option<String>,
    /// The permit's date, in days since the Unix epoch (permits).
    pub date: Option<u32>,
    /// The authorities to ask (identity CIDs).
    pub authorities: Vec<Cid>,
}

/// What a node records about one issuance, as requester or as authority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MpinRecord {
    /// The request's reference.
    pub reference: String,
    /// Which side of the issuance this node is.
    pub side: MpinSide,
    /// What was asked for.
    pub secret: MpinSecret,
    /// The M-Pin identity.
    pub identity: Option<String>,
    /// The permit's date.
    pub date: Option<u32>,
    /// Who asked.
    pub requester: Cid,
    /// Who was asked.
    pub authorities: Vec<Cid>,
    /// The request envelope.
    pub request: Cid,
    /// Answer envelopes by authority CID (text).
    pub answers: BTreeMap<String, Cid>,
    /// Refusals by authority CID (text).
    pub refusals: BTreeMap<String, String>,
    /// Where it stands.
    pub state: MpinState,
}

/// Where the record of `reference` on `side` is stored.
fn key(side: MpinSide, reference: &str) -> Vec<u8> {
    format!("{side}/{reference}").into_bytes()
}

/// The record of `reference` on `side`.
pub fn record(
    store: &Store,
    side: MpinSide,
    reference: &str,
) -> Result<Option<MpinRecord>, CustodyError> {
    store
        .get(Column::Mpin, &key(side, reference))
        .map_err(internal)?
        .map(|bytes| dagcbor::decode(&bytes, Limits::default()).map_err(internal))
        .transpose()
}

/// Every issuance this node recorded, as requester or authority.
pub fn records(store: &Store) -> Result<Vec<MpinRecord>, CustodyError> {
    store
        .scan(Column::Mpin)
        .map_err(internal)?
        .into_iter()
        .map(|(_, bytes)| dagcbor::decode(&bytes, Limits::default()).map_err(internal))
        .collect()
}

/// Stages the record with the step's other writes, writes them in one synced batch and
/// announces the new state (as the requester's principal role, or the authority's
/// fiduciary role).
async fn save(ctx: &RoleContext, record: &MpinRecord) -> Result<(), CustodyError> {
    ctx.stage(
        Column::Mpin,
        key(record.side, &record.reference),
        encode(record)?,
    );
    ctx.commit().await?;
    let role = if record.side == MpinSide::Requester {
        Role::Principal
    } else {
        Role::Fiduciary
    };
    let _ = ctx.events.send(crate::context::CustodyEvent {
        reference: record.reference.clone(),
        role,
        state: record.state.into(),
    });
    Ok(())
}

/// Requester: checks, signs and stores a request; the record and a delivery per authority.
pub async fn create_request(
    ctx: &RoleContext,
    new: NewMpinRequest,
) -> Result<(MpinRecord, Vec<Delivery>), CustodyError> {
    let invalid = |m: &str| Err(CustodyError::Invalid(m.to_owned()));
    if new.authorities.is_empty() || new.authorities.len() > MAX_AUTHORITIES {
        return invalid(&format!(
            "ask between 1 and {MAX_AUTHORITIES} trust authorities"
        ));
    }
    let mut distinct = new.authorities.clone();
    distinct.sort();
    distinct.dedup();
    if distinct.len() != new.authorities.len() {
        return invalid("an authority is listed twice");
    }
    match (new.secret, &new.identity, new.date) {
        (MpinSecret::Server, None, None) => {}
        (MpinSecret::Server, _, _) => return invalid("a server secret takes no identity or date"),
        (MpinSecret::Client, Some(_), None) | (MpinSecret::Permit, Some(_), Some(_)) => {}
        (MpinSecret::Client, _, _) => return invalid("a client secret needs an identity, no date"),
        (MpinSecret::Permit, _, _) => return invalid("a time permit needs an identity and a date"),
    }
    if let Some(identity) = &new.identity
        && (identity.is_empty() || identity.len() > MAX_IDENTITY_LEN)
    {
        return invalid(&format!(
            "an M-Pin identity is 1 to {MAX_IDENTITY_LEN} bytes"
        ));
    }
    let authorities = ctx.known_identities(&new.authorities)?;
    let peers = authorities
        .iter()
        .map(|a| {
            ctx.peer_of(&a.cid())
                .ok_or_else(|| CustodyError::UnknownIdentity(a.cid().to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let reference = format!(
        "mpin-{}",
        hex::encode(dta_crypto::Secret::<8>::random().expose())
    );
    let request = MpinRequest {
        secret: new.secret,
        identity: new.identity.clone(),
        date: new.date,
        authorities: new.authorities.clone(),
    };
    // A client secret or permit for an identity this node hosts is asked for by that
    // identity: an authority issues one only to the identity it names.
    let requester = match &new.identity {
        Some(name) if new.secret != MpinSecret::Server && ctx.local.identity().name() != name => {
            ctx.hosted.named(name).unwrap_or_else(|| ctx.local.clone())
        }
        _ => ctx.local.clone(),
    };
    let (request_cid, request_bytes) = ctx
        .publish_as(&requester, Kind::MpinRequest, &reference, None, &request)
        .await?;
    let record = MpinRecord {
        reference,
        side: MpinSide::Requester,
        secret: new.secret,
        identity: new.identity,
        date: new.date,
        requester: requester.cid(),
        authorities: new.authorities,
        request: request_cid,
        answers: BTreeMap::new(),
        refusals: BTreeMap::new(),
        state: MpinState::Requested,
    };
    save(ctx, &record).await?;
    let deliveries = peers
        .into_iter()
        .map(|peer| (peer, vec![request_bytes.clone()]))
        .collect();
    Ok((record, deliveries))
}

/// Authority: answers a request that names this node, once; a repeated request gets the same
/// answer again.
pub async fn on_request(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    cid: Cid,
) -> Result<Option<Delivery>, CustodyError> {
    let me = ctx.local.cid();
    let request: MpinRequest = RoleContext::payload(envelope)?;
    if !request.authorities.contains(&me) {
        return Ok(None);
    }
    let reference = envelope.envelope().order.clone();
    let requester = envelope.envelope().sender;
    let peer = ctx
        .peer_of(&requester)
        .ok_or_else(|| CustodyError::UnknownIdentity(requester.to_string()))?;
    if let Some(done) = record(&ctx.store, MpinSide::Authority, &reference)? {
        let answer = done
            .answers
            .get(&me.to_string())
            .and_then(|cid| ctx.block(cid))
            .ok_or_else(|| internal("the recorded answer is missing"))?;
        return Ok(Some((peer, vec![answer])));
    }
    let requester_identity = ctx
        .identity(&requester)
        .ok_or_else(|| CustodyError::UnknownIdentity(requester.to_string()))?;
    let share = match policy(ctx, &request, requester_identity.name(), &requester) {
        Err(reason) => Err(reason),
        Ok(()) => {
            let master = master_share(ctx).await?;
            share_of(&master, &request).map_err(|e| e.to_string())
        }
    };
    let answer = MpinAnswer {
        request: cid,
        secret: request.secret,
        refused: share.as_ref().err().cloned(),
    };
    let sealed = match &share {
        Ok(point) => Some(zeroize::Zeroizing::new(encode(&MpinSharePoint {
            point: point.clone(),
        })?)),
        Err(_) => None,
    };
    let recipients = [&requester_identity];
    let signed = ctx.envelope(
        Kind::MpinShare,
        &reference,
        Some(cid),
        Some(encode(&answer)?),
        sealed.as_ref().map(|s| s.as_slice()),
        if sealed.is_some() { &recipients } else { &[] },
    )?;
    let (answer_cid, answer_bytes) = ctx.save_block(&signed).await?;
    let mut record = MpinRecord {
        reference,
        side: MpinSide::Authority,
        secret: request.secret,
        identity: request.identity,
        date: request.date,
        requester,
        authorities: request.authorities,
        request: cid,
        answers: BTreeMap::from([(me.to_string(), answer_cid)]),
        refusals: BTreeMap::new(),
        state: MpinState::Issued,
    };
    if let Err(reason) = share {
        tracing::info!(order = %record.reference, %reason, "M-Pin request refused");
        record.refusals.insert(me.to_string(), reason);
        record.state = MpinState::Refused;
    } else {
        tracing::info!(order = %record.reference, secret = request.secret.name(), "M-Pin share issued");
    }
    save(ctx, &record).await?;
    Ok(Some((peer, vec![answer_bytes])))
}

/// Who may ask for what: client secrets and permits only for the requester's own identity
/// name; server secrets only for identities on the operator's allow-list.
fn policy(
    ctx: &RoleContext,
    request: &MpinRequest,
    requester_name: &str,
    requester: &Cid,
) -> Result<(), String> {
    match request.secret {
        MpinSecret::Server if ctx.mpin_servers.contains(requester) => Ok(()),
        MpinSecret::Server => Err(format!(
            "{requester} is not on this authority's list of authentication servers"
        )),
        MpinSecret::Client | MpinSecret::Permit => match &request.identity {
            Some(identity) if identity == requester_name => Ok(()),
            Some(identity) => Err(format!(
                "{requester} may only ask for its own identity {requester_name:?}, not {identity:?}"
            )),
            None => Err("no identity named".into()),
        },
    }
}

/// This node's master-secret share, created (and staged with the step) on first use.
async fn master_share(ctx: &RoleContext) -> Result<MpinScalar, CustodyError> {
    let stored = ctx
        .store
        .get(Column::Keystore, MASTER_SHARE.as_bytes())
        .map_err(internal)?
        .is_some()
        || ctx
            .staged_value(Column::Keystore, MASTER_SHARE.as_bytes())
            .is_some();
    if stored {
        let bytes = ctx.load_secret(MASTER_SHARE).await?;
        return MpinScalar::from_bytes(bytes.expose()).map_err(internal);
    }
    let share = MpinScalar::random();
    ctx.keep_secret(MASTER_SHARE.to_owned(), share.to_bytes().to_vec())
        .await?;
    tracing::info!("M-Pin master-secret share created");
    Ok(share)
}

fn share_of(master: &MpinScalar, request: &MpinRequest) -> Result<Vec<u8>, mpin::MpinError> {
    let identity = request.identity.as_deref().unwrap_or_default().as_bytes();
    Ok(match (request.secret, request.date) {
        (MpinSecret::Client, _) => mpin::client_secret(master, identity).to_bytes().to_vec(),
        (MpinSecret::Server, _) => mpin::server_secret(master).to_bytes().to_vec(),
        (MpinSecret::Permit, Some(date)) => mpin::time_permit(master, date, identity)
            .to_bytes()
            .to_vec(),
        (MpinSecret::Permit, None) => return Err(mpin::MpinError::NoShares),
    })
}

/// Keystore name of one authority's share of a request.
fn share_name(reference: &str, authority: &Cid) -> String {
    format!("mpin/{reference}/{authority}")
}

/// Keystore name of a request's combined secret.
pub fn combined_name(reference: &str) -> String {
    format!("mpin/{reference}")
}

/// Requester: takes one authority's answer to its request.
pub async fn on_share(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    cid: Cid,
) -> Result<(), CustodyError> {
    let reference = envelope.envelope().order.clone();
    let mut record = record(&ctx.store, MpinSide::Requester, &reference)?
        .ok_or_else(|| CustodyError::NotFound(reference.clone()))?;
    let authority = envelope.envelope().sender;
    if !record.authorities.contains(&authority) {
        return Err(CustodyError::Invalid(format!(
            "{authority} answered {reference}, but it was not asked"
        )));
    }
    let answer: MpinAnswer = RoleContext::payload(envelope)?;
    if answer.request != record.request
        || envelope.envelope().prev != Some(record.request)
        || answer.secret != record.secret
    {
        return Err(CustodyError::Invalid(format!(
            "{authority}'s answer does not answer {reference}"
        )));
    }
    let key = authority.to_string();
    if record.state != MpinState::Requested || record.answers.contains_key(&key) {
        return Ok(());
    }
    // A refusal does not end the request at once: the others' answers are still taken, so
    // that the requester learns every authority's reason.
    if let Some(reason) = answer.refused {
        record.answers.insert(key.clone(), cid);
        record.refusals.insert(key, reason);
        if record.answers.len() == record.authorities.len() {
            record.state = MpinState::Refused;
        }
        return save(ctx, &record).await;
    }
    let me = ctx
        .own(&record.requester)
        .ok_or_else(|| internal("the requester's identity is not here"))?;
    let sealed: MpinSharePoint = RoleContext::sealed_for(envelope, &me)?;
    // A share must be a point of the right group before it is kept.
    let valid = match record.secret {
        MpinSecret::Server => G2Point::from_bytes(&sealed.point).map(drop),
        MpinSecret::Client | MpinSecret::Permit => G1Point::from_bytes(&sealed.point).map(drop),
    };
    valid.map_err(|e| CustodyError::Invalid(format!("{authority}'s share: {e}")))?;
    ctx.keep_secret(share_name(&reference, &authority), sealed.point.clone())
        .await?;
    record.answers.insert(key, cid);
    if record.answers.len() == record.authorities.len() && !record.refusals.is_empty() {
        record.state = MpinState::Refused;
    } else if record.answers.len() == record.authorities.len() {
        let mut points = Vec::with_capacity(record.authorities.len());
        for authority in &record.authorities {
            points.push(ctx.load_secret(&share_name(&reference, authority)).await?);
        }
        let combined = combine(record.secret, &points)
            .map_err(|e| CustodyError::Invalid(format!("the shares do not combine: {e}")))?;
        if record.secret == MpinSecret::Server {
            ctx.keep_secret(SERVER_SECRET.to_owned(), combined.clone())
                .await?;
        }
        ctx.keep_secret(combined_name(&reference), combined).await?;
        record.state = MpinState::Issued;
    }
    save(ctx, &record).await
}

fn combine(
    secret: MpinSecret,
    points: &[dta_protocol::order::SecretBytes],
) -> Result<Vec<u8>, mpin::MpinError> {
    Ok(match secret {
        MpinSecret::Server => {
            let shares = points
                .iter()
                .map(|p| G2Point::from_bytes(p.expose()))
                .collect::<Result<Vec<_>, _>>()?;
            mpin::recombine_g2(&shares)?.to_bytes().to_vec()
        }
        MpinSecret::Client | MpinSecret::Permit => {
            let shares = points
                .iter()
                .map(|p| G1Point::from_bytes(p.expose()))
                .collect::<Result<Vec<_>, _>>()?;
            mpin::recombine_g1(&shares)?.to_bytes().to_vec()
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Authentication server

/// How long a challenge stays open, and how many may be open at once.
pub const SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(60);
/// Most open challenges.
pub const MAX_SESSIONS: usize = 4096;

/// Why an authentication step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Malformed input (bad point, identity too long).
    #[error("{0}")]
    Invalid(String),
    /// No such open session.
    #[error("no such authentication session (or it expired)")]
    NoSession,
    /// Too many sessions open.
    #[error("too many authentications in progress")]
    Busy,
    /// This node was issued no server secret.
    #[error(
        "this node has no M-Pin server secret: ask trust authorities with POST /v2/mpin/server-secret"
    )]
    NoServerSecret,
    /// The proof does not verify: wrong PIN, token or identity.
    #[error("authentication failed")]
    Failed,
}

/// One open challenge.
#[derive(Debug)]
pub struct AuthSession {
    identity: String,
    date: Option<u32>,
    u: G1Point,
    y: MpinScalar,
    opened: std::time::Instant,
}

/// Today, as M-Pin dates time permits: days since 1970-01-01, UTC.
pub fn today() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| (d.as_secs() / 86_400) as u32)
}

/// Open challenges of this node as an authentication server, shared by its HTTP API and its
/// answers to peers.
#[derive(Debug, Clone, Default)]
pub struct AuthSessions(
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, AuthSession>>>,
);

impl AuthSessions {
    /// Opens a session for U: its id and the challenge y (48 bytes).
    pub fn challenge(
        &self,
        identity: String,
        u: &[u8],
        date: Option<u32>,
    ) -> Result<(String, Vec<u8>), AuthError> {
        if identity.is_empty() || identity.len() > MAX_IDENTITY_LEN {
            return Err(AuthError::Invalid(format!(
                "an M-Pin identity is 1 to {MAX_IDENTITY_LEN} bytes"
            )));
        }
        if let Some(date) = date {
            let today = today();
            if date != today {
                return Err(AuthError::Invalid(format!(
                    "a time permit for day {date} is not valid today: this server's date is day \
                     {today} (days since 1970-01-01, UTC)"
                )));
            }
        }
        let u = G1Point::from_bytes(u).map_err(|e| AuthError::Invalid(format!("u: {e}")))?;
        let y = MpinScalar::random();
        let challenge = y.to_bytes().to_vec();
        let session = hex::encode(dta_crypto::Secret::<16>::random().expose());
        let mut sessions = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        sessions.retain(|_, s| s.opened.elapsed() < SESSION_TTL);
        if sessions.len() >= MAX_SESSIONS {
            return Err(AuthError::Busy);
        }
        sessions.insert(
            session.clone(),
            AuthSession {
                identity,
                date,
                u,
                y,
                opened: std::time::Instant::now(),
            },
        );
        Ok((session, challenge))
    }

    /// Closes a session, for its check; it cannot be answered twice.
    pub fn take(&self, session: &str) -> Result<AuthSession, AuthError> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(session)
            .filter(|s| s.opened.elapsed() < SESSION_TTL)
            .ok_or(AuthError::NoSession)
    }
}

/// The server's check of V for a closed session; the authenticated identity. Costs a pairing
/// product: call it off the async workers.
pub fn check(session: &AuthSession, server_secret: &[u8], v: &[u8]) -> Result<String, AuthError> {
    let v = G1Point::from_bytes(v).map_err(|e| AuthError::Invalid(format!("v: {e}")))?;
    let server_secret =
        G2Point::from_bytes(server_secret).map_err(|_| AuthError::NoServerSecret)?;
    mpin::server_check(
        session.identity.as_bytes(),
        session.date,
        &session.y,
        &server_secret,
        &session.u,
        &v,
    )
    .map(|()| session.identity.clone())
    .map_err(|_| AuthError::Failed)
}

/// Answers a peer's authentication step (a [`crate::network::NetworkEvent::Answer`]) with this
/// node's sessions and server secret.
pub async fn serve(
    ctx: &RoleContext,
    sessions: &AuthSessions,
    request: dta_protocol::network::Request,
) -> dta_protocol::network::Response {
    use dta_protocol::network::{Request, Response};
    let rejected = |e: AuthError| Response::Rejected {
        reason: e.to_string(),
    };
    match request {
        Request::MpinChallenge { identity, u, date } => {
            match sessions.challenge(identity, &u, date) {
                Ok((session, y)) => Response::MpinChallenge { session, y },
                Err(e) => rejected(e),
            }
        }
        Request::MpinVerify { session, v } => {
            let session = match sessions.take(&session) {
                Ok(session) => session,
                Err(e) => return rejected(e),
            };
            let stored = ctx
                .store
                .get(Column::Keystore, SERVER_SECRET.as_bytes())
                .ok()
                .flatten()
                .is_some();
            if !stored {
                return rejected(AuthError::NoServerSecret);
            }
            let server_secret = match ctx.load_secret(SERVER_SECRET).await {
                Ok(secret) => secret,
                Err(e) => return rejected(AuthError::Invalid(e.to_string())),
            };
            let verdict =
                tokio::task::spawn_blocking(move || check(&session, server_secret.expose(), &v))
                    .await;
            match verdict {
                Ok(Ok(_)) => Response::MpinVerdict {
                    authenticated: true,
                    reason: None,
                },
                Ok(Err(AuthError::Failed)) => Response::MpinVerdict {
                    authenticated: false,
                    reason: Some(AuthError::Failed.to_string()),
                },
                Ok(Err(e)) => rejected(e),
                Err(e) => rejected(AuthError::Invalid(e.to_string())),
            }
        }
        _ => Response::Rejected {
            reason: "not an M-Pin authentication step".into(),
        },
    }
}

#[cfg(test)]
mod record_tests {
    use super::*;

    fn cid(seed: &[u8]) -> Cid {
        dta_protocol::block::cid_of(dta_protocol::block::DAG_CBOR, seed)
    }

    /// Records written before states were typed: a requester's and an authority's.
    fn written_before() -> Vec<MpinRecord> {
        [("requester", "issued"), ("authority", "refused")]
            .into_iter()
            .map(|(side, state)| MpinRecord {
                reference: format!("mpin-{side}"),
                side: side.parse().unwrap(),
                secret: MpinSecret::Permit,
                identity: Some("alice@example.org".into()),
                date: Some(20_426),
                requester: cid(b"requester"),
                authorities: vec![cid(b"a1"), cid(b"a2")],
                request: cid(b"request"),
                answers: BTreeMap::from([(cid(b"a1").to_string(), cid(b"answer"))]),
                refusals: BTreeMap::from([(cid(b"a2").to_string(), "not yours".to_owned())]),
                state: state.parse().unwrap(),
            })
            .collect()
    }

    /// The stored bytes of those records, as the code of the string states wrote them: the
    /// typed side and state read them and write them back unchanged.
    #[test]
    fn records_written_before_states_were_typed_read_and_write_the_same_bytes() {
        crate::states::stored::reads_and_writes_back(
            include_str!("../testdata/mpin-records.hex"),
            written_before(),
        );
    }
}
