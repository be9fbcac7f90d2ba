//! `/v2/orders`: custody orders, releases, received secrets and audits.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use dta_actors::custody::{CustodyError, OrderRecord, SAFEGUARD_SECRET};
use dta_actors::roles::{Role, RoleMsg};
use dta_actors::store::Column;
use dta_api::orders::{CreateBody, ReleaseBody, ReshareBody};
use dta_api::secret::BASE64;
use dta_protocol::Cid;
use dta_protocol::block::parse_cid;
use ractor::ActorRef;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::answers::{AuditAnswer, AuditedEnvelope, MisconductAnswer, RevokedAnswer};
use super::wait::{self, WaitQuery, Waited};
use super::{ApiError, ApiState};

/// How long an order or release call may take before the API answers 504.
pub(super) const CALL_TIMEOUT_MS: u64 = dta_actors::roles::CALL_TIMEOUT_MS;

fn status(err: &CustodyError) -> StatusCode {
    match err {
        CustodyError::Invalid(_) | CustodyError::UnknownIdentity(_) => StatusCode::BAD_REQUEST,
        CustodyError::Exists(_) | CustodyError::Conflict(_) | CustodyError::Revoked(_) => {
            StatusCode::CONFLICT
        }
        CustodyError::NotFound(_) => StatusCode::NOT_FOUND,
        CustodyError::Unreachable { .. } | CustodyError::Stopping => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        CustodyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<CustodyError> for ApiError {
    fn from(err: CustodyError) -> Self {
        ApiError(status(&err), err.to_string())
    }
}

pub(super) fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

fn cid(text: &str) -> Result<Cid, ApiError> {
    parse_cid(text).map_err(|e| bad_request(format!("{text:?}: {e}")))
}

pub(super) fn role_actor(state: &ApiState, role: Role) -> Result<ActorRef<RoleMsg>, ApiError> {
    dta_actors::registry::role(&state.prefix, role).ok_or_else(|| {
        ApiError(
            StatusCode::CONFLICT,
            format!("this node does not play the {} role", role.name()),
        )
    })
}

/// A record as the API shows it, with who the order still waits for (principal).
pub(super) fn record_json(state: &ApiState, record: &OrderRecord) -> Value {
    serde_json::to_value(super::answers::RecordAnswer::of(state, record)).unwrap_or(Value::Null)
}

fn records(state: &ApiState) -> Result<Vec<OrderRecord>, ApiError> {
    Ok(dta_actors::custody::stored_records(&state.store)?)
}

/// The records of `reference`, of `principal`'s order alone when one is named: two principals
/// may use one reference.
fn records_of(
    state: &ApiState,
    reference: &str,
    principal: Option<&Cid>,
) -> Result<Vec<OrderRecord>, ApiError> {
    let found: Vec<OrderRecord> = records(state)?
        .into_iter()
        .filter(|r| r.reference == reference && principal.is_none_or(|p| r.principal == *p))
        .collect();
    if found.is_empty() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no order {reference} here"),
        ));
    }
    Ok(found)
}

/// `?principal=CID`: whose order, where two principals used one reference.
#[derive(Debug, Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PrincipalQuery {
    /// Whose order (an identity CID), where two principals used one reference.
    principal: Option<String>,
}

impl PrincipalQuery {
    fn principal(&self) -> Result<Option<Cid>, ApiError> {
        self.principal.as_deref().map(cid).transpose()
    }
}

/// The one record of `role` for `reference` that `candidates` hold, or a 409 naming the
/// principals to choose from.
fn only_one(
    reference: &str,
    candidates: Vec<OrderRecord>,
) -> Result<Option<OrderRecord>, ApiError> {
    if candidates.len() > 1 {
        let principals: Vec<String> = candidates.iter().map(|r| r.principal.to_string()).collect();
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "{} principals used reference {reference}: name one with ?principal= ({})",
                candidates.len(),
                principals.join(", ")
            ),
        ));
    }
    Ok(candidates.into_iter().next())
}

/// `?wait=SECONDS` of the calls that start a step.
pub(super) type WaitParam =
    Result<axum::extract::Query<WaitQuery>, axum::extract::rejection::QueryRejection>;

pub(super) fn wait_duration(query: WaitParam) -> Result<Option<std::time::Duration>, ApiError> {
    let axum::extract::Query(query) = query.map_err(|e| bad_request(e.body_text()))?;
    query.duration()
}

/// Waits (when asked) for `goal`, and answers the record with `done` as its status once the
/// goal is reached, else 202 Accepted and who the order still waits for.
pub(super) async fn answer_after(
    state: &ApiState,
    events: tokio::sync::broadcast::Receiver<dta_actors::custody::CustodyEvent>,
    record: OrderRecord,
    wait: Option<std::time::Duration>,
    goal: impl Fn(&OrderRecord) -> bool,
    done: StatusCode,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Some(wait) = wait else {
        return Ok((done, Json(record_json(state, &record))));
    };
    let (record, waited) = super::wait::until(state, events, record, wait, goal).await?;
    let mut json = record_json(state, &record);
    json["waited"] = json!({
        "seconds": wait.as_secs(),
        "reached": waited == Waited::Reached,
    });
    let status = match waited {
        Waited::Reached => done,
        Waited::TimedOut => StatusCode::ACCEPTED,
    };
    Ok((status, Json(json)))
}

pub async fn create(
    State(state): State<ApiState>,
    query: WaitParam,
    body: Result<Json<CreateBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let wait = wait_duration(query)?;
    let Json(body) = body.map_err(|e| bad_request(e.body_text()))?;
    let order = body.check(SAFEGUARD_SECRET)?;
    let principal = role_actor(&state, Role::Principal)?;
    let events = state.custody_events.subscribe();
    let record = ractor::call_t!(
        principal,
        |reply| RoleMsg::CreateOrder {
            order: Box::new(order),
            reply
        }
        .traced(),
        CALL_TIMEOUT_MS
    )
    .map_err(|e| ApiError(StatusCode::GATEWAY_TIMEOUT, e.to_string()))??;
    answer_after(
        &state,
        events,
        record,
        wait,
        wait::certified,
        StatusCode::CREATED,
    )
    .await
}

pub async fn show(
    State(state): State<ApiState>,
    Path(reference): Path<String>,
    query: Result<axum::extract::Query<PrincipalQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let axum::extract::Query(query) = query.map_err(|e| bad_request(e.body_text()))?;
    let mut shown = Vec::new();
    for record in records_of(&state, &reference, query.principal()?.as_ref())? {
        let mut json = record_json(&state, &record);
        // What the order is for: the plugin, the key's public half and its outputs.
        if let Some(cid) = record.commitment {
            let commitment = super::stored_commitment(&state, &cid)?;
            json["plugin"] = json!(commitment.plugin);
            json["public_key"] = json!(hex::encode(&commitment.public_key));
            json["output"] = json!(commitment.output);
        }
        shown.push(json);
    }
    Ok(Json(Value::Array(shown)))
}

pub async fn release(
    State(state): State<ApiState>,
    Path(reference): Path<String>,
    query: WaitParam,
    body: Option<Json<ReleaseBody>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let wait = wait_duration(query)?;
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let beneficiary = body.check()?;
    let principal = role_actor(&state, Role::Principal)?;
    let events = state.custody_events.subscribe();
    let record = ractor::call_t!(
        principal,
        |reply| RoleMsg::Release {
            reference,
            beneficiary,
            reply
        }
        .traced(),
        CALL_TIMEOUT_MS
    )
    .map_err(|e| ApiError(StatusCode::GATEWAY_TIMEOUT, e.to_string()))??;
    // The release just made is the latest one.
    let sequence = record
        .releases
        .keys()
        .next_back()
        .copied()
        .unwrap_or_default();
    answer_after(
        &state,
        events,
        record,
        wait,
        wait::receipt_of(sequence),
        StatusCode::OK,
    )
    .await
}

/// `POST /v2/orders/{ref}/refresh[?wait=SECONDS]`: the committee deals the order's shares
/// anew (same key); answered once the request is out, or once the order is certified again.
pub async fn refresh(
    State(state): State<ApiState>,
    Path(reference): Path<String>,
    query: WaitParam,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    reshare_to(state, reference, query, None).await
}

/// `POST /v2/orders/{ref}/cancel[?wait=SECONDS]`: the order ends; its holders delete their
/// shares (under a policy with conditions, once it allows). Answered once the cancel is out,
/// or once every holder said it deleted its share.
pub async fn cancel(
    State(state): State<ApiState>,
    Path(reference): Path<String>,
    query: WaitParam,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let wait = wait_duration(query)?;
    let principal = role_actor(&state, Role::Principal)?;
    let events = state.custody_events.subscribe();
    let record = ractor::call_t!(
        principal,
        |reply| RoleMsg::Cancel { reference, reply }.traced(),
        CALL_TIMEOUT_MS
    )
    .map_err(|e| ApiError(StatusCode::GATEWAY_TIMEOUT, e.to_string()))??;
    answer_after(
        &state,
        events,
        record,
        wait,
        wait::cancelled,
        StatusCode::OK,
    )
    .await
}

/// `POST /v2/orders/{ref}/abandon`: gives up a generated key whose fiduciaries did not all
/// answer; the record, and the fiduciaries named as missing.
pub async fn abandon(
    State(state): State<ApiState>,
    Path(reference): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let principal = role_actor(&state, Role::Principal)?;
    let (record, missing) = ractor::call_t!(
        principal,
        |reply| RoleMsg::Abandon { reference, reply }.traced(),
        CALL_TIMEOUT_MS
    )
    .map_err(|e| ApiError(StatusCode::GATEWAY_TIMEOUT, e.to_string()))??;
    let mut answer = record_json(&state, &record);
    answer["missing"] = missing.iter().map(ToString::to_string).collect();
    Ok(Json(answer))
}

/// `POST /v2/orders/{ref}/reshare[?wait=SECONDS]`: custody of the order moves to another
/// committee and threshold (any overlap), same key.
pub async fn reshare(
    State(state): State<ApiState>,
    Path(reference): Path<String>,
    query: WaitParam,
    body: Result<Json<ReshareBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = body.map_err(|e| bad_request(e.body_text()))?;
    reshare_to(state, reference, query, Some(body.check()?)).await
}

async fn reshare_to(
    state: ApiState,
    reference: String,
    query: WaitParam,
    next: Option<(Vec<dta_protocol::Cid>, u32)>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let wait = wait_duration(query)?;
    let principal = role_actor(&state, Role::Principal)?;
    let events = state.custody_events.subscribe();
    let record = ractor::call_t!(
        principal,
        |reply| RoleMsg::Reshare {
            reference,
            next,
            reply
        }
        .traced(),
        CALL_TIMEOUT_MS
    )
    .map_err(|e| ApiError(StatusCode::GATEWAY_TIMEOUT, e.to_string()))??;
    let epoch = record.epoch + 1;
    answer_after(
        &state,
        events,
        record,
        wait,
        move |r| r.epoch >= epoch && wait::certified(r),
        StatusCode::OK,
    )
    .await
}

/// The answer of `GET /v2/orders/{ref}/secret`, borrowed from copies that are wiped once it
/// is serialized.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = SecretAnswer)]
pub(super) struct ReceivedSecret<'a> {
    reference: &'a str,
    /// The secret as text, when it is UTF-8 (else null).
    secret: Option<&'a str>,
    secret_hex: &'a str,
    secret_base64: &'a str,
}

pub async fn secret(
    State(state): State<ApiState>,
    Path(reference): Path<String>,
    query: Result<axum::extract::Query<PrincipalQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let axum::extract::Query(query) = query.map_err(|e| bad_request(e.body_text()))?;
    let received = records_of(&state, &reference, query.principal()?.as_ref())?
        .into_iter()
        .filter(|r| r.role == Role::Beneficiary && !r.receipts.is_empty())
        .collect();
    let record = only_one(&reference, received)?.ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("no secret of {reference} received here"),
        )
    })?;
    let secret = super::received_secret(&state, &record.principal, &record.reference)
        .await?
        .ok_or_else(|| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "secret missing".into()))?;
    // Text secrets read as text; keys (and any other bytes) as hex and base64, which give
    // back the exact bytes.
    let bytes = secret.expose();
    let hex_digits = Zeroizing::new(hex::encode(bytes));
    let base64_text = Zeroizing::new(BASE64.encode(bytes));
    // The answer's own buffer goes to the socket and cannot be wiped; these copies are.
    Ok(Json(ReceivedSecret {
        reference: &reference,
        secret: std::str::from_utf8(bytes).ok(),
        secret_hex: &hex_digits,
        secret_base64: &base64_text,
    })
    .into_response())
}

/// Query of `GET /v2/orders/{ref}/audit` (and `/car`, `/log`).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Where to start; by default the head this node recorded for the order.
    pub(super) head: Option<String>,
    /// Whose order, where two principals used one reference.
    pub(super) principal: Option<String>,
}

/// Where an order's log ends: the `head` asked for; else this node's own principal record;
/// else the head the order's principal announced (it owns the log, so its word beats the
/// partial view of a fiduciary or beneficiary record) unless that record's log already runs
/// through it; else this node's beneficiary or fiduciary record; else any head announced for
/// that reference.
fn order_head(
    state: &ApiState,
    reference: &str,
    principal: Option<&Cid>,
    head: Option<String>,
) -> Result<Cid, ApiError> {
    if let Some(head) = head {
        return cid(&head);
    }
    let records: Vec<OrderRecord> = records(state)?
        .into_iter()
        .filter(|r| r.reference == reference && principal.is_none_or(|p| r.principal == *p))
        .collect();
    let record_as = |role: Role| {
        only_one(
            reference,
            records.iter().filter(|r| r.role == role).cloned().collect(),
        )
    };
    if let Some(own) = record_as(Role::Principal)? {
        return Ok(own.head);
    }
    let involved = match record_as(Role::Beneficiary)? {
        Some(record) => Some(record),
        None => record_as(Role::Fiduciary)?,
    };
    let whose = principal
        .copied()
        .or(involved.as_ref().map(|r| r.principal));
    let announced: Vec<(Cid, Cid)> = state
        .directory
        .borrow()
        .heads
        .iter()
        .filter(|((r, announcer), _)| r == reference && whose.is_none_or(|p| *announcer == p))
        .map(|((_, announcer), head)| (*head, *announcer))
        .collect();
    if announced.len() > 1 {
        let announcers: Vec<String> = announced.iter().map(|(_, a)| a.to_string()).collect();
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "{} principals announced reference {reference}: name one with ?principal= ({})",
                announced.len(),
                announcers.join(", ")
            ),
        ));
    }
    match (involved, announced.first().copied()) {
        (Some(record), Some((head, _))) if !extends(state, record.head, head) => Ok(head),
        (Some(record), _) => Ok(record.head),
        (None, Some((head, _))) => Ok(head),
        (None, None) => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no order {reference} known here"),
        )),
    }
}

/// How long an audit waits for the principal's node to say where an order's log ends.
const PRINCIPAL_HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Where `principal`'s node says its order `reference` ends now, if it is connected and
/// answers in time. Announced heads are gossip: a node whose mesh was still forming (it had
/// just restarted) can miss one and would otherwise audit an older head for good.
async fn principal_head(state: &ApiState, reference: &str, principal: &Cid) -> Option<Cid> {
    let peer = state
        .directory
        .borrow()
        .identities
        .get(&principal.to_string())?
        .peer_id;
    if !state.network.snapshot().connected.contains(&peer) {
        return None;
    }
    let answer = tokio::time::timeout(
        PRINCIPAL_HEAD_TIMEOUT,
        state.network.request(
            peer,
            dta_protocol::network::Request::Head {
                principal: *principal,
                reference: reference.to_owned(),
            },
        ),
    )
    .await
    .ok()?
    .ok()?;
    match answer {
        dta_protocol::network::Response::Heads { heads } => heads
            .into_iter()
            .find(|h| h.reference == reference)
            .map(|h| h.head),
        _ => None,
    }
}

/// Whether the log ending at `newer` passes through `older` (in the blocks kept here): then
/// this node's own record is ahead of an announcement that has not caught up yet.
fn extends(state: &ApiState, newer: Cid, older: Cid) -> bool {
    let mut found = false;
    let walked = walk_log(state, newer, |cid, _| {
        found = cid == older;
        !found
    });
    walked.is_ok() && found
}

/// Hands `visit` each block of a log kept here, from `head` back along the `prev` links,
/// until it answers false or the log ends. A missing or undecodable block, or a log longer
/// than an audit allows, is an error.
fn walk_log(
    state: &ApiState,
    head: Cid,
    mut visit: impl FnMut(Cid, Vec<u8>) -> bool,
) -> Result<(), ApiError> {
    let internal = |e: String| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e);
    let mut next = Some(head);
    for _ in 0..dta_protocol::audit::MAX_CHAIN {
        let Some(cid) = next else {
            return Ok(());
        };
        let bytes = state
            .store
            .get(Column::Blocks, &cid.to_bytes())
            .map_err(|e| internal(e.to_string()))?
            .ok_or_else(|| internal(format!("block {cid} missing")))?;
        next = dta_protocol::envelope::SignedEnvelope::decode(&bytes)
            .map_err(|e| bad_request(format!("block {cid}: {e}")))?
            .envelope
            .prev;
        if !visit(cid, bytes) {
            return Ok(());
        }
    }
    match next {
        None => Ok(()),
        Some(_) => Err(bad_request("chain too long")),
    }
}

/// The audited envelopes, each marked when its sender was revoked at or before its time, and
/// the revoked senders.
fn marked(
    store: &dta_actors::store::Store,
    directory: &dta_actors::identities::Directory,
    envelopes: &[(Cid, dta_protocol::envelope::Kind)],
) -> (Vec<AuditedEnvelope>, Vec<RevokedAnswer>) {
    let mut revoked = Vec::new();
    let audited = envelopes
        .iter()
        .map(|(cid, kind)| {
            let signed = store
                .block(cid)
                .ok()
                .flatten()
                .and_then(|bytes| dta_protocol::envelope::SignedEnvelope::decode(&bytes).ok());
            let revocation = signed.as_ref().and_then(|signed| {
                directory
                    .revoked(&signed.envelope.sender)
                    .map(|r| (r, signed.envelope.timestamp))
            });
            let mut after_revocation_of = None;
            if let Some((revocation, timestamp)) = revocation {
                if !revoked
                    .iter()
                    .any(|r: &RevokedAnswer| r.identity == revocation.identity.to_string())
                {
                    revoked.push(RevokedAnswer::of(revocation));
                }
                if timestamp >= revocation.at {
                    after_revocation_of = Some(revocation.identity.to_string());
                }
            }
            AuditedEnvelope {
                cid: cid.to_string(),
                kind: kind.name().to_owned(),
                after_revocation_of,
            }
        })
        .collect();
    (audited, revoked)
}

pub async fn audit(
    State(state): State<ApiState>,
    Path(reference): Path<String>,
    query: Result<axum::extract::Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditAnswer>, ApiError> {
    let axum::extract::Query(query) = query.map_err(|e| bad_request(e.body_text()))?;
    let principal = query.principal.as_deref().map(cid).transpose()?;
    let fresh = match (&query.head, &principal) {
        (None, Some(principal)) if principal.to_string() != state.identity => {
            principal_head(&state, &reference, principal).await
        }
        _ => None,
    };
    let known = order_head(&state, &reference, principal.as_ref(), query.head);
    // The principal's word wins where its log passes through what is known here (this node
    // may know a newer end, a receipt the principal has not taken yet).
    let head = match (fresh, known) {
        (Some(fresh), Ok(known)) if fresh != known => {
            dta_actors::custody::fetch_chain(&state.store, &state.network, fresh).await?;
            if extends(&state, fresh, known) {
                fresh
            } else {
                known
            }
        }
        (Some(fresh), Err(_)) => fresh,
        (_, known) => known?,
    };
    let fetched = dta_actors::custody::fetch_chain(&state.store, &state.network, head).await?;
    let directory = state.directory.borrow().clone();
    let report = dta_actors::custody::audit(&state.store, &directory, &reference, head);
    match report {
        Ok(report) => {
            let (envelopes, revoked) = marked(&state.store, &directory, &report.envelopes);
            Ok(Json(AuditAnswer {
                reference,
                head: head.to_string(),
                passed: true,
                fetched,
                certified: report.certified,
                receipts: report.receipts,
                policies: report.policies,
                threshold_signatures: report.threshold_signatures,
                misconduct: report
                    .misconduct
                    .iter()
                    .map(|m| MisconductAnswer {
                        culprit: m.culprit.to_string(),
                        offence: m.offence.name().to_owned(),
                        evidence: m.evidence.to_string(),
                    })
                    .collect(),
                envelopes,
                revoked,
            }))
        }
        Err(err) => Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("audit of {reference} failed: {err}"),
        )),
    }
}

/// The head of `reference`'s log (as `?head=` and `?principal=` say, else as known here) and
/// every block of the log kept here, missing envelopes of the main chain fetched from peers
/// first, as for an audit.
pub(super) async fn collected_log(
    state: &ApiState,
    reference: &str,
    query: Result<axum::extract::Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<(Cid, Vec<(Cid, Vec<u8>)>), ApiError> {
    let axum::extract::Query(query) = query.map_err(|e| bad_request(e.body_text()))?;
    let principal = query.principal.as_deref().map(cid).transpose()?;
    let head = order_head(state, reference, principal.as_ref(), query.head)?;
    dta_actors::custody::fetch_chain(&state.store, &state.network, head).await?;
    let internal = |e: String| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e);
    // Finding the envelopes that hang off the chain reads every stored block.
    let store = state.store.clone();
    let blocks = tokio::task::spawn_blocking(move || dta_actors::log::collect(&store, head))
        .await
        .map_err(|e| internal(e.to_string()))?
        .map_err(|e| internal(format!("the log of {reference} cannot be collected: {e}")))?;
    Ok((head, blocks))
}

/// `GET /v2/orders/{ref}/car[?head=CID]`: the order's log as a CAR v1 archive, root = head:
/// the main chain (missing envelopes fetched from peers first, as for an audit), the identity
/// documents its envelopes link to, and the envelopes kept here that hang off it, so that
/// `dta audit --car` can check the whole order with nothing else.
pub async fn car(
    State(state): State<ApiState>,
    Path(reference): Path<String>,
    query: Result<axum::extract::Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let (head, blocks) = collected_log(&state, &reference, query).await?;
    let internal = |e: String| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e);
    let archive =
        dta_protocol::car::write(&[head], &blocks).map_err(|e| internal(e.to_string()))?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/vnd.ipld.car")],
        archive,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use dta_actors::identities::{Directory, RevokedIdentity};
    use dta_protocol::envelope::{Draft, Kind, VerifiedEnvelope};
    use dta_protocol::identity::LocalIdentity;
    use dta_protocol::revocation::Revoker;

    use super::marked;

    #[test]
    fn an_envelope_signed_at_or_after_its_signers_revocation_is_marked() {
        let dir = tempfile::tempdir().unwrap();
        let store = dta_actors::store::Store::open(dir.path()).unwrap();
        let signer = LocalIdentity::create(
            &dta_crypto::Secret::new([7; 32]),
            "signer",
            &libp2p::PeerId::random().to_bytes(),
            1,
        )
        .unwrap();
        let mut envelopes = Vec::new();
        for timestamp in [100, 200, 300] {
            let draft = Draft {
                kind: Kind::Approval,
                order: "marked",
                prev: None,
                timestamp,
                public: None,
                secret: None,
                recipients: &[],
            };
            let block = VerifiedEnvelope::create(&signer, draft)
                .unwrap()
                .signed()
                .to_block()
                .unwrap();
            store
                .put_durable(
                    dta_actors::store::Column::Blocks,
                    &block.cid().to_bytes(),
                    block.bytes(),
                )
                .unwrap();
            envelopes.push((block.cid(), Kind::Approval));
        }
        let (unmarked, revoked) = marked(&store, &Directory::default(), &envelopes);
        assert!(revoked.is_empty());
        assert!(unmarked.iter().all(|e| e.after_revocation_of.is_none()));

        let mut directory = Directory::default();
        directory.revoked.insert(
            signer.cid().to_string(),
            RevokedIdentity {
                identity: signer.cid(),
                at: 200,
                reason: String::new(),
                revoker: Revoker::Operator,
                revocation: signer.cid(),
            },
        );
        let (audited, revoked) = marked(&store, &directory, &envelopes);
        let marks: Vec<bool> = audited
            .iter()
            .map(|e| e.after_revocation_of == Some(signer.cid().to_string()))
            .collect();
        assert_eq!(marks, [false, true, true]);
        assert_eq!(revoked.len(), 1);
        assert_eq!(revoked[0].revoker, "operator");
    }
}
