//! The HTTP API (axum). `/v2` is native; errors are JSON `{"error": "...", "code": "..."}`
//! with a fitting status code (see `errors`). `GET /` lists the endpoints, `GET /v2/health`
//! says whether the node is ready. Every other endpoint needs a bearer token with the scope
//! `access.rs` names for it (`/v1` and `/metrics` may be left open). Request bodies are at most [`MAX_BODY_SIZE`] bytes ([`MAX_CAR_SIZE`] for a CAR
//! import); a larger one is answered 413 on every route.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use dta_actors::identities::{Directory, KnownIdentity};
use dta_actors::metrics::Metrics;
use dta_actors::network::NetworkHandle;
use dta_actors::store::Store;
use dta_protocol::block::parse_cid;
use serde_json::Value;
use tokio::sync::watch;

/// What the handlers read.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// Actor-name prefix of this node (its peer id), to reach the role actors.
    pub prefix: String,
    /// This node's identity CID.
    pub identity: String,
    /// Node name.
    pub name: String,
    /// Roles played.
    pub roles: Vec<String>,
    /// The network.
    pub network: NetworkHandle,
    /// Known identities.
    pub directory: watch::Receiver<Directory>,
    /// The database (for sizes).
    pub store: Store,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Custody record changes, for calls that wait for a step (the `/v1` order calls).
    pub custody_events: tokio::sync::broadcast::Sender<dta_actors::custody::CustodyEvent>,
    /// Identities this node hosts.
    pub hosted: dta_actors::hosted::Hosted,
    /// Fiduciaries and threshold for `/v1` orders, which do not name them.
    pub order_defaults: OrderDefaults,
    /// M-Pin authentications between the challenge and the answer (shared with the node's
    /// answers to peers).
    pub mpin_sessions: dta_actors::mpin::AuthSessions,
    /// API tokens, checked on every call that is not open.
    pub tokens: crate::tokens::Tokens,
    /// What this node serves without a token.
    pub openness: Openness,
    /// The node's home (where a backup's checkpoints are made).
    pub home: std::path::PathBuf,
    /// How far this node lets clocks disagree in a release policy's time gates (ms), as its
    /// fiduciary does: the progress the API shows is judged the same way.
    pub clock_tolerance_ms: u64,
}

/// Fiduciaries and threshold that `/v1` orders use (the original configured one master
/// fiduciary per node; `dta run --fiduciary CID --threshold T` sets these).
#[derive(Debug, Clone)]
pub struct OrderDefaults {
    /// Fiduciary identity CIDs; empty means this node alone, as the original's multi mode.
    pub fiduciaries: Vec<dta_protocol::Cid>,
    /// Threshold; by default every fiduciary.
    pub threshold: Option<u32>,
    /// The plugin of `/v1` orders.
    pub plugin: String,
}

mod access;
mod answers;
mod backup;
mod chain;
mod errors;
mod events;
mod index;
mod metrics;
mod mpin;
mod mpin_answers;
mod network;
mod observe;
mod openapi;
mod order_list;
mod orders;
mod peers;
mod policy;
mod revocation;
mod signing;
mod tokens;
pub mod ui;
mod v1;
mod wait;

pub use access::{Access, ENDPOINTS, Endpoint, Openness, required};
pub use errors::{ApiError, ErrorCode};

/// The payload of a stored commitment block (stored blocks were verified on arrival).
fn stored_commitment(
    state: &ApiState,
    cid: &dta_protocol::Cid,
) -> Result<dta_protocol::order::Commitment, ApiError> {
    let internal = |e: String| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e);
    let bytes = state
        .store
        .get(dta_actors::store::Column::Blocks, &cid.to_bytes())
        .map_err(|e| internal(e.to_string()))?
        .ok_or_else(|| internal(format!("commitment block {cid} missing")))?;
    let public = dta_protocol::envelope::SignedEnvelope::decode(&bytes)
        .map_err(|e| internal(e.to_string()))?
        .envelope
        .public
        .ok_or_else(|| internal("commitment has no payload".into()))?;
    dta_protocol::dagcbor::decode(&public, Default::default()).map_err(|e| internal(e.to_string()))
}

/// The router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/", get(index::index))
        .route("/v2/health", get(index::health))
        .route("/v2/events", get(events::events))
        .route("/v2/openapi.json", get(openapi::served))
        .route("/ui", get(ui::page))
        .route("/ui/{asset}", get(ui::asset))
        .route("/v2/node", get(node))
        .route("/v2/peers", get(peers))
        .route("/v2/peers/blocked", get(peers::blocked))
        .route("/v2/network/probe", post(network::probe))
        .route("/v2/network/heads/{cid}", get(network::head_seen))
        .route(
            "/v2/peers/blocked/{peer}",
            axum::routing::put(peers::block).delete(peers::unblock),
        )
        .route("/v2/keystore", get(keystore_status))
        .route("/v2/tokens", get(tokens::list).post(tokens::create))
        .route("/v2/tokens/{id}", axum::routing::delete(tokens::revoke))
        .route("/v2/backup/checkpoint", post(backup::checkpoint))
        .route("/v2/mpin", get(mpin::list))
        .route("/v2/mpin/client-secret", post(mpin::client_secret))
        .route("/v2/mpin/server-secret", post(mpin::server_secret))
        .route("/v2/mpin/permit", post(mpin::permit))
        .route("/v2/mpin/token", post(mpin::token))
        .route("/v2/mpin/auth/challenge", post(mpin::challenge))
        .route("/v2/mpin/auth/verify", post(mpin::verify))
        .route("/v2/identities", get(identities).post(create_identity))
        .route("/v2/identities/{cid}", get(identity))
        .route("/v2/identities/{cid}/revoke", post(revocation::revoke))
        .route("/v2/identities/{cid}/rotate", post(rotate_identity))
        .route("/v2/orders", get(order_list::list).post(orders::create))
        .route("/v2/orders/{reference}", get(orders::show))
        .route("/v2/orders/{reference}/release", post(orders::release))
        .route("/v2/orders/{reference}/refresh", post(orders::refresh))
        .route("/v2/orders/{reference}/reshare", post(orders::reshare))
        .route("/v2/orders/{reference}/sign", post(signing::sign))
        .route("/v2/orders/{reference}/abandon", post(orders::abandon))
        .route("/v2/orders/{reference}/cancel", post(orders::cancel))
        .route("/v2/orders/{reference}/approvals", post(policy::vote))
        .route("/v2/orders/{reference}/secret", get(orders::secret))
        .route("/v2/orders/{reference}/audit", get(orders::audit))
        .route("/v2/orders/{reference}/log", get(chain::log))
        .route("/v2/blocks", axum::routing::put(put_block))
        .route(IMPORT_PATH, post(import_car))
        .route("/v2/blocks/{cid}", get(block))
        .route("/v2/orders/{reference}/car", get(orders::car))
        .route("/v1/status", get(v1::status))
        .route("/v1/order", get(v1::orders).post(v1::order))
        .route("/v1/order/secret", post(v1::order_secret))
        .route("/v1/order/{reference}", get(v1::get_order))
        .route(
            "/v1/identity",
            get(v1::identities).post(v1::create_identity),
        )
        .route("/v1/identity/{cid}", get(v1::identity))
        .route("/metrics", get(metrics::metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::require_access,
        ))
        // Outside the access check, so that refusals are counted and carry an id too.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        .fallback(|| async {
            ApiError(
                StatusCode::NOT_FOUND,
                "no such endpoint; GET / lists them".into(),
            )
        })
        .layer(axum::middleware::from_fn(limit_body))
        .layer(axum::middleware::from_fn(errors::json_errors))
        .with_state(state)
}

/// The route that takes CAR archives, the one whose bodies may be larger than
/// [`MAX_BODY_SIZE`].
const IMPORT_PATH: &str = "/v2/blocks/import";

/// The body limit of a request to `path`.
fn body_limit(path: &str) -> usize {
    if path == IMPORT_PATH {
        MAX_CAR_SIZE
    } else {
        MAX_BODY_SIZE
    }
}

/// Reads a request's whole body, up to its route's limit, before the handler runs, so that a
/// larger body gets 413 and the API's JSON error on every route: axum's own answer is plain
/// text, and a handler that answers any bad JSON body with 400 would hide it.
async fn limit_body(request: Request, next: Next) -> Response {
    let limit = body_limit(request.uri().path());
    let (parts, body) = request.into_parts();
    let mut reading = Request::new(body);
    DefaultBodyLimit::max(limit).apply(&mut reading);
    let bytes = match axum::body::Bytes::from_request(reading, &()).await {
        Ok(bytes) => bytes,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {limit} bytes, this route's limit"),
            )
            .into_response();
        }
        Err(rejection) => {
            return ApiError(rejection.status(), rejection.body_text()).into_response();
        }
    };
    let mut request = Request::from_parts(parts, axum::body::Body::from(bytes));
    // The handler's extractors read the body again, under the same limit.
    DefaultBodyLimit::max(limit).apply(&mut request);
    next.run(request).await
}

fn identity_json(identity: &KnownIdentity, directory: &Directory) -> Value {
    serde_json::to_value(answers::IdentityAnswer::of(identity, directory)).unwrap_or(Value::Null)
}

async fn node(State(state): State<ApiState>) -> Json<answers::NodeAnswer> {
    let snapshot = state.network.snapshot();
    Json(answers::NodeAnswer {
        identity: state.identity.clone(),
        name: state.name.clone(),
        peer_id: snapshot.peer_id.map(|p| p.to_string()),
        listen_addrs: snapshot
            .listen_addrs
            .iter()
            .map(ToString::to_string)
            .collect(),
        roles: state.roles.clone(),
        version: crate::version::VERSION.to_owned(),
        commit: crate::version::COMMIT.to_owned(),
        protocol: crate::version::PROTOCOL.to_owned(),
        schema: dta_actors::schema::CURRENT,
    })
}

/// The keystore's backend, token and number of secrets; never a secret.
async fn keystore_status(
    State(state): State<ApiState>,
) -> Result<Json<answers::KeystoreAnswer>, ApiError> {
    let status = ractor::call!(
        keystore_actor(&state)?,
        dta_actors::keystore::KeystoreMsg::Status
    )
    .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(answers::KeystoreAnswer {
        backend: status.backend.to_owned(),
        token: status.token,
        secrets: status.secrets,
    }))
}

async fn peers(State(state): State<ApiState>) -> Json<Value> {
    Json(peers_json(&state))
}

/// The connected peers, with the identity and name known for each.
fn peers_json(state: &ApiState) -> Value {
    let snapshot = state.network.snapshot();
    serde_json::to_value(peers::listed(state, snapshot.connected.into_iter()))
        .unwrap_or(Value::Null)
}

async fn identities(State(state): State<ApiState>) -> Json<Value> {
    let directory = state.directory.borrow().clone();
    Json(Value::Array(
        directory
            .identities
            .values()
            .map(|identity| identity_json(identity, &directory))
            .collect(),
    ))
}

/// A known identity by CID text: 400 if it is not a CID, 404 if it is not known here.
fn known_identity(state: &ApiState, cid: &str) -> Result<KnownIdentity, ApiError> {
    let parsed = parse_cid(cid).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    state
        .directory
        .borrow()
        .identities
        .get(&parsed.to_string())
        .cloned()
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("unknown identity {cid}")))
}

/// An identity by CID; one this node does not know is looked up in the network first (see
/// `dta_actors::identity_lookup`), so that 404 means nobody reachable knows it.
async fn identity(
    State(state): State<ApiState>,
    Path(cid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if let Ok(parsed) = parse_cid(&cid) {
        use dta_actors::identity_lookup::{LOOKUP_TIMEOUT, find};
        // Not found is answered below, as for any unknown identity.
        let _ = find(&state.network, &state.directory, &[parsed], LOOKUP_TIMEOUT).await;
    }
    let known = known_identity(&state, &cid)?;
    let mut body = identity_json(&known, &state.directory.borrow());
    body["document_hex"] = Value::String(hex::encode(&known.document));
    Ok(Json(body))
}

fn keystore_actor(
    state: &ApiState,
) -> Result<ractor::ActorRef<dta_actors::keystore::KeystoreMsg>, ApiError> {
    dta_actors::registry::keystore(&state.prefix).ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "keystore not running".into(),
        )
    })
}

/// The secret this node received as beneficiary of `reference` (for its own identity or one
/// it hosts), if any, unwrapped by the keystore.
async fn received_secret(
    state: &ApiState,
    principal: &dta_protocol::Cid,
    reference: &str,
) -> Result<Option<dta_protocol::order::SecretBytes>, ApiError> {
    kept_secret(
        state,
        dta_actors::custody::secret_name(principal, reference),
    )
    .await
}

/// A secret this node keeps under `name`, if any, unwrapped by the keystore.
async fn kept_secret(
    state: &ApiState,
    name: String,
) -> Result<Option<dta_protocol::order::SecretBytes>, ApiError> {
    let Some(blob) = state
        .store
        .get(dta_actors::store::Column::Keystore, name.as_bytes())
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    else {
        return Ok(None);
    };
    ractor::call_t!(
        keystore_actor(state)?,
        |reply| dta_actors::keystore::KeystoreMsg::Unwrap { name, blob, reply },
        dta_actors::context::KEYSTORE_TIMEOUT_MS
    )
    .map_err(|e| ApiError(StatusCode::GATEWAY_TIMEOUT, e.to_string()))?
    .map(Some)
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Largest CAR archive `POST /v2/blocks/import` takes.
pub const MAX_CAR_SIZE: usize = 64 * 1024 * 1024;

/// Largest request body of every other route: a block (`PUT /v2/blocks`) is at most 2 MiB,
/// and no JSON body comes near that.
pub const MAX_BODY_SIZE: usize = dta_protocol::bitswap::MAX_BLOCK_SIZE;

/// Creates an identity this node hosts (see `dta_actors::hosting`) and answers it once the
/// directory has it.
pub(crate) async fn host_identity(state: &ApiState, name: &str) -> Result<KnownIdentity, ApiError> {
    host(state).identity(name).await.map_err(host_error)
}

/// What hosting needs of the node.
fn host(state: &ApiState) -> dta_actors::hosting::Host {
    dta_actors::hosting::Host {
        prefix: state.prefix.clone(),
        own_name: state.name.clone(),
        hosted: state.hosted.clone(),
        store: state.store.clone(),
        network: state.network.clone(),
        directory: state.directory.clone(),
    }
}

fn host_error(e: dta_actors::hosting::HostError) -> ApiError {
    use dta_actors::hosting::HostError;
    let status = match &e {
        HostError::InvalidName => StatusCode::BAD_REQUEST,
        HostError::Taken(_) | HostError::NotHosted(_) => StatusCode::CONFLICT,
        HostError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        HostError::KeystoreTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        HostError::Keystore(_)
        | HostError::Store(_)
        | HostError::Identity(_)
        | HostError::NotInDirectory(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError(status, e.to_string())
}

/// `POST /v2/identities/{cid}/rotate`: new keys for an identity this node hosts (404 if it
/// is not known, 409 if it is not hosted here).
async fn rotate_identity(
    State(state): State<ApiState>,
    Path(cid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let known = known_identity(&state, &cid)?;
    let rotated = host(&state).rotate(known.cid).await.map_err(host_error)?;
    Ok(Json(identity_json(&rotated, &state.directory.borrow())))
}

/// The body of `POST /v2/identities`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct HostBody {
    name: String,
}

async fn create_identity(
    State(state): State<ApiState>,
    body: Result<Json<HostBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = body.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let known = host_identity(&state, &body.name).await?;
    let body = identity_json(&known, &state.directory.borrow());
    Ok((StatusCode::CREATED, Json(body)))
}

/// Query of `PUT /v2/blocks`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct PutQuery {
    /// `raw` (default) or `dag-cbor`.
    codec: Option<String>,
}

/// `PUT /v2/blocks[?codec=raw|dag-cbor]`: stores the body as a block and answers its CIDv1.
/// A `dag-cbor` block must be canonical DAG-CBOR.
async fn put_block(
    State(state): State<ApiState>,
    query: Result<axum::extract::Query<PutQuery>, axum::extract::rejection::QueryRejection>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<answers::StoredBlockAnswer>), ApiError> {
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
    let axum::extract::Query(query) = query.map_err(|e| bad(e.body_text()))?;
    let codec = match query.codec.as_deref().unwrap_or("raw") {
        "raw" => dta_protocol::block::RAW,
        "dag-cbor" => dta_protocol::block::DAG_CBOR,
        other => return Err(bad(format!("codec {other:?}: use raw or dag-cbor"))),
    };
    if body.is_empty() || body.len() > dta_protocol::bitswap::MAX_BLOCK_SIZE {
        return Err(bad(format!(
            "a block is 1 to {} bytes",
            dta_protocol::bitswap::MAX_BLOCK_SIZE
        )));
    }
    let cid = dta_protocol::block::cid_of(codec, &body);
    let block = dta_protocol::block::Block::verified(cid, body.to_vec(), Default::default())
        .map_err(|e| bad(e.to_string()))?;
    store_blocks(&state, vec![(block.cid(), block.into_bytes())]).await?;
    Ok((
        StatusCode::CREATED,
        Json(answers::StoredBlockAnswer {
            cid: cid.to_string(),
            size: body.len(),
        }),
    ))
}

/// `POST /v2/blocks/import`: stores every block of a CAR v1 archive, all checked against
/// their CIDs first (a damaged archive stores nothing).
async fn import_car(
    State(state): State<ApiState>,
    body: axum::body::Bytes,
) -> Result<Json<answers::ImportAnswer>, ApiError> {
    let car = dta_protocol::car::read(&body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let count = car.blocks.len();
    store_blocks(&state, car.blocks).await?;
    Ok(Json(answers::ImportAnswer {
        roots: car.roots.iter().map(ToString::to_string).collect(),
        blocks: count,
    }))
}

/// Writes checked blocks in one synced batch.
async fn store_blocks(
    state: &ApiState,
    blocks: Vec<(dta_protocol::Cid, Vec<u8>)>,
) -> Result<(), ApiError> {
    let entries = blocks
        .into_iter()
        .map(|(cid, bytes)| (dta_actors::store::Column::Blocks, cid.to_bytes(), bytes))
        .collect();
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || store.write_durable(entries))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn block(
    State(state): State<ApiState>,
    Path(cid): Path<String>,
) -> Result<Response, ApiError> {
    let parsed = parse_cid(&cid).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    // Identity documents are blocks too: envelopes link to them.
    let stored = state
        .store
        .block(&parsed)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    // A block this node lacks is fetched from its peers over Bitswap (checked against the
    // CID) and kept.
    let bytes = match stored {
        Some(bytes) => bytes,
        None => {
            let bytes = state
                .network
                .fetch_block(parsed)
                .await
                .map_err(|e| match e {
                    dta_actors::network::bitswap::FetchError::NotFound(_) => {
                        ApiError(StatusCode::NOT_FOUND, e.to_string())
                    }
                    dta_actors::network::bitswap::FetchError::Rejected { .. } => {
                        ApiError(StatusCode::BAD_GATEWAY, e.to_string())
                    }
                    _ => ApiError(StatusCode::GATEWAY_TIMEOUT, e.to_string()),
                })?;
            store_blocks(&state, vec![(parsed, bytes.clone())]).await?;
            bytes
        }
    };
    let content_type = if parsed.codec() == dta_protocol::block::DAG_CBOR {
        "application/vnd.ipld.dag-cbor"
    } else {
        "application/vnd.ipld.raw"
    };
    Ok(([(header::CONTENT_TYPE, content_type)], bytes).into_response())
}
