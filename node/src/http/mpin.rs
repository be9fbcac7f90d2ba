//! `/v2/mpin`: M-Pin secrets issued by trust authorities on the network, and this node as an
//! authentication server.
//!
//! - `POST /v2/mpin/client-secret` `{identity, from: [CID…]}`: asks those authorities for
//!   client-secret shares and answers the sum (hex), which this node also keeps. `identity`
//!   is this node's name or the name of an identity it hosts (`POST /v2/identities`), which
//!   then signs the request.
//! - `POST /v2/mpin/server-secret` `{from: [CID…]}`: the same for a server secret, which this
//!   node keeps as its authentication-server secret and does not answer.
//! - `POST /v2/mpin/permit` `{identity, date, from}`: a time permit.
//! - Each of the three takes `master: {reference, principal?, threshold?}`: shares of a
//!   master secret generated t-of-n (an `mpin-master` order), combined from the first t
//!   authorities that answer. `from` may then be left out when this node knows the order
//!   (as its principal or a fiduciary): every fiduciary is asked. Without `master`, each
//!   authority answers from a share of its own and every one must answer.
//! - `POST /v2/mpin/token` `{identity, pin, client_secret | reference}`: the token (the client
//!   secret with the PIN taken out). Nothing is stored.
//! - `POST /v2/mpin/auth/challenge` `{identity, u, date?}` → `{session, y}` and
//!   `POST /v2/mpin/auth/verify` `{session, v}` → 200 `{authenticated: true}` or 401: this
//!   node checks a client's proof with its server secret. With `server` naming another
//!   node's identity, both steps are relayed to that node over libp2p instead.
//! - `GET /v2/mpin`: the issuances this node recorded, as requester or authority.
//!
//! Each issuance call waits for every authority (`wait_ms`, default 30 s); a refused one
//! answers 403 with every authority's reason; one that does not finish in time answers 504
//! naming its reference, and its record shows how far it got.
//!
//! A dated challenge (a client with a time permit) is taken only for today's date by this
//! server's clock.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use dta_actors::custody::CustodyEvent;
use dta_actors::mpin::{AuthError, MpinRecord, NewMpinRequest, SERVER_SECRET, combined_name};
use dta_actors::roles::{Role, RoleMsg};
use dta_actors::states::{MpinSide, MpinState};
use dta_api::mpin::IssueBody;
use dta_crypto::mpin::{self, G1Point};
use dta_protocol::block::parse_cid;
use dta_protocol::mpin::MpinSecret;
use dta_protocol::network::{Request, Response};
use libp2p::PeerId;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::mpin_answers::{
    ChallengeAnswer, ClientSecretAnswer, MpinRecordAnswer, MpinTokenAnswer, PermitAnswer,
    ServerSecretAnswer, VerdictAnswer, authorities_of,
};
use super::orders::role_actor;
use super::{ApiError, ApiState, kept_secret};

/// Default and longest wait for the authorities' answers.
const DEFAULT_WAIT: Duration = Duration::from_secs(30);
const MAX_WAIT: Duration = Duration::from_secs(120);
fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(body)| body)
        .map_err(|e| bad_request(e.body_text()))
}

fn wait_of(wait_ms: Option<u64>) -> Duration {
    wait_ms
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_WAIT)
        .min(MAX_WAIT)
}

/// Asks the authorities and waits until every one answered (or one refused).
async fn issue(
    state: &ApiState,
    request: NewMpinRequest,
    wait: Duration,
) -> Result<MpinRecord, ApiError> {
    let mut events = state.custody_events.subscribe();
    let record = ractor::call_t!(
        role_actor(state, Role::Principal)?,
        |reply| RoleMsg::MpinRequest { request, reply }.traced(),
        dta_actors::roles::CALL_TIMEOUT_MS
    )
    .map_err(|e| ApiError(StatusCode::GATEWAY_TIMEOUT, e.to_string()))?
    .map_err(ApiError::from)?;
    let reference = record.reference.clone();
    let finished = tokio::time::timeout(wait, async {
        loop {
            match events.recv().await {
                Ok(CustodyEvent {
                    reference: r,
                    role: Role::Principal,
                    state: s,
                }) if r == reference
                    && (s == MpinState::Issued.into() || s == MpinState::Refused.into()) =>
                {
                    return true;
                }
                // Events were missed under load: the stored record says whether this was one.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_))
                    if stored_record(state, &reference)
                        .is_ok_and(|r| r.state != MpinState::Requested) =>
                {
                    return true;
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return false,
            }
        }
    })
    .await;
    let record = stored_record(state, &reference)?;
    let refusals = || {
        record
            .refusals
            .iter()
            .map(|(authority, reason)| format!("{authority} ({reason})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (finished, record.state) {
        (_, MpinState::Issued) => Ok(record),
        (_, MpinState::Refused) => Err(ApiError(
            StatusCode::FORBIDDEN,
            format!("{reference}: refused by {}", refusals()),
        )),
        (_, MpinState::Requested) => Err(ApiError(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "{reference}: {} of {} authorities answered within {wait:?}{}; GET /v2/mpin shows its progress",
                record.answers.len(),
                record.authorities.len(),
                if record.refusals.is_empty() {
                    String::new()
                } else {
                    format!(", and refused by {}", refusals())
                }
            ),
        )),
    }
}

fn stored_record(state: &ApiState, reference: &str) -> Result<MpinRecord, ApiError> {
    dta_actors::mpin::record(&state.store, MpinSide::Requester, reference)?.ok_or_else(|| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{reference} has no record"),
        )
    })
}

/// The hex of the combined secret of `reference`, in a buffer wiped when dropped.
async fn combined(state: &ApiState, reference: &str) -> Result<Zeroizing<String>, ApiError> {
    kept_secret(state, combined_name(reference))
        .await?
        .map(|secret| Zeroizing::new(hex::encode(secret.expose())))
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("{reference} has no combined secret here"),
            )
        })
}

/// `GET /v2/mpin`.
pub async fn list(State(state): State<ApiState>) -> Result<Json<Vec<MpinRecordAnswer>>, ApiError> {
    let records = dta_actors::mpin::records(&state.store)?;
    Ok(Json(records.iter().map(MpinRecordAnswer::of).collect()))
}

/// `POST /v2/mpin/client-secret`.
pub async fn client_secret(
    State(state): State<ApiState>,
    body: Result<Json<IssueBody>, JsonRejection>,
) -> Result<axum::response::Response, ApiError> {
    let body = json_body(body)?;
    let request = body.request(MpinSecret::Client)?;
    let record = issue(&state, request, wait_of(body.wait_ms)).await?;
    let client_secret = combined(&state, &record.reference).await?;
    // The answer's own buffer goes to the socket and cannot be wiped; this copy is.
    Ok(Json(ClientSecretAnswer {
        reference: &record.reference,
        identity: record.identity.as_deref(),
        authorities: authorities_of(&record),
        client_secret: &client_secret,
    })
    .into_response())
}

/// `POST /v2/mpin/permit`.
pub async fn permit(
    State(state): State<ApiState>,
    body: Result<Json<IssueBody>, JsonRejection>,
) -> Result<axum::response::Response, ApiError> {
    let body = json_body(body)?;
    let request = body.request(MpinSecret::Permit)?;
    let record = issue(&state, request, wait_of(body.wait_ms)).await?;
    let permit = combined(&state, &record.reference).await?;
    Ok(Json(PermitAnswer {
        reference: &record.reference,
        identity: record.identity.as_deref(),
        date: record.date,
        permit: &permit,
    })
    .into_response())
}

/// `POST /v2/mpin/server-secret`.
pub async fn server_secret(
    State(state): State<ApiState>,
    body: Result<Json<IssueBody>, JsonRejection>,
) -> Result<Json<ServerSecretAnswer>, ApiError> {
    let body = json_body(body)?;
    let request = body.request(MpinSecret::Server)?;
    let record = issue(&state, request, wait_of(body.wait_ms)).await?;
    Ok(Json(ServerSecretAnswer {
        authorities: authorities_of(&record),
        reference: record.reference,
        kept: true,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = MpinTokenBody)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    identity: String,
    pin: u32,
    client_secret: Option<String>,
    reference: Option<String>,
}

/// `POST /v2/mpin/token`.
pub async fn token(
    State(state): State<ApiState>,
    body: Result<Json<TokenBody>, JsonRejection>,
) -> Result<axum::response::Response, ApiError> {
    let body = json_body(body)?;
    let secret_hex = match (&body.client_secret, &body.reference) {
        (Some(hex), None) => Zeroizing::new(hex.clone()),
        (None, Some(reference)) => combined(&state, reference).await?,
        _ => {
            return Err(bad_request(
                "give either client_secret (hex) or the reference of an issued client secret",
            ));
        }
    };
    let secret_bytes = Zeroizing::new(
        hex::decode(secret_hex.as_str()).map_err(|_| bad_request("client_secret is not hex"))?,
    );
    let client_secret =
        G1Point::from_bytes(&secret_bytes).map_err(|e| bad_request(e.to_string()))?;
    let token = mpin::extract_pin(&client_secret, body.identity.as_bytes(), body.pin)
        .map_err(|e| bad_request(e.to_string()))?;
    let token = Zeroizing::new(hex::encode(token.to_bytes()));
    Ok(Json(MpinTokenAnswer {
        identity: &body.identity,
        token: &token,
    })
    .into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChallengeBody {
    identity: String,
    u: String,
    date: Option<u32>,
    /// Another node's identity CID: relay the step to it over the network.
    server: Option<String>,
}

fn auth_error(error: AuthError) -> ApiError {
    let status = match error {
        AuthError::Invalid(_) => StatusCode::BAD_REQUEST,
        AuthError::NoSession => StatusCode::NOT_FOUND,
        AuthError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        AuthError::NoServerSecret => StatusCode::CONFLICT,
        AuthError::Failed => StatusCode::UNAUTHORIZED,
    };
    ApiError(status, error.to_string())
}

/// The peer of `server` if it names another node; `None` for this node (or no server).
fn relay_target(state: &ApiState, server: Option<&str>) -> Result<Option<PeerId>, ApiError> {
    let Some(server) = server.filter(|s| *s != state.identity) else {
        return Ok(None);
    };
    let cid = parse_cid(server).map_err(|e| bad_request(format!("{server:?}: {e}")))?;
    let directory = state.directory.borrow();
    let known = directory
        .identities
        .get(&cid.to_string())
        .ok_or_else(|| bad_request(format!("unknown server identity {server}")))?;
    if known.peer_id.to_string() == state.prefix {
        return Ok(None);
    }
    Ok(Some(known.peer_id))
}

/// Sends an authentication step to another node and reads its answer.
async fn relay(state: &ApiState, peer: PeerId, request: Request) -> Result<Response, ApiError> {
    match state.network.request(peer, request).await {
        Ok(Response::Rejected { reason }) => Err(ApiError(StatusCode::BAD_GATEWAY, reason)),
        Ok(response) => Ok(response),
        Err(e) => Err(ApiError(StatusCode::BAD_GATEWAY, e.to_string())),
    }
}

/// `POST /v2/mpin/auth/challenge`: takes U, answers a random y (here, or from `server`).
pub async fn challenge(
    State(state): State<ApiState>,
    body: Result<Json<ChallengeBody>, JsonRejection>,
) -> Result<Json<ChallengeAnswer>, ApiError> {
    let body = json_body(body)?;
    let u = hex::decode(&body.u).map_err(|_| bad_request("u is not hex"))?;
    if let Some(peer) = relay_target(&state, body.server.as_deref())? {
        let request = Request::MpinChallenge {
            identity: body.identity,
            u,
            date: body.date,
        };
        return match relay(&state, peer, request).await? {
            Response::MpinChallenge { session, y } => Ok(Json(ChallengeAnswer {
                session,
                y: hex::encode(y),
            })),
            other => Err(ApiError(
                StatusCode::BAD_GATEWAY,
                format!("unexpected answer {other:?}"),
            )),
        };
    }
    let (session, y) = state
        .mpin_sessions
        .challenge(body.identity, &u, body.date)
        .map_err(auth_error)?;
    Ok(Json(ChallengeAnswer {
        session,
        y: hex::encode(y),
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyBody {
    session: String,
    v: String,
    /// Another node's identity CID: relay the step to it over the network.
    server: Option<String>,
}

/// `POST /v2/mpin/auth/verify`: checks V with this node's server secret (or `server`'s); the
/// session ends either way.
pub async fn verify(
    State(state): State<ApiState>,
    body: Result<Json<VerifyBody>, JsonRejection>,
) -> Result<Json<VerdictAnswer>, ApiError> {
    let body = json_body(body)?;
    let v = hex::decode(&body.v).map_err(|_| bad_request("v is not hex"))?;
    if let Some(peer) = relay_target(&state, body.server.as_deref())? {
        let request = Request::MpinVerify {
            session: body.session,
            v,
        };
        return match relay(&state, peer, request).await? {
            Response::MpinVerdict {
                authenticated: true,
                ..
            } => Ok(Json(VerdictAnswer {
                authenticated: true,
                identity: None,
            })),
            Response::MpinVerdict { reason, .. } => Err(ApiError(
                StatusCode::UNAUTHORIZED,
                reason.unwrap_or_else(|| AuthError::Failed.to_string()),
            )),
            other => Err(ApiError(
                StatusCode::BAD_GATEWAY,
                format!("unexpected answer {other:?}"),
            )),
        };
    }
    let session = state
        .mpin_sessions
        .take(&body.session)
        .map_err(auth_error)?;
    let server_secret = kept_secret(&state, SERVER_SECRET.to_owned())
        .await?
        .ok_or_else(|| auth_error(AuthError::NoServerSecret))?;
    let identity = tokio::task::spawn_blocking(move || {
        dta_actors::mpin::check(&session, server_secret.expose(), &v)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(auth_error)?;
    Ok(Json(VerdictAnswer {
        authenticated: true,
        identity: Some(identity),
    }))
}
