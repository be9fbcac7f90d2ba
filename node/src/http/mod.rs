//! The HTTP API (axum). `/v2` is native; errors are JSON `{"error": "..."}` with a fitting
//! status code.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use dta_actors::identities::{Directory, KnownIdentity};
use dta_actors::metrics::Metrics;
use dta_actors::network::NetworkHandle;
use dta_actors::store::{COLUMN_FAMILIES, Store};
use dta_protocol::block::parse_cid;
use serde_json::{Value, json};
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
    /// Fiduciaries and threshold for `/v1` orders, which do not name them.
    pub order_defaults: OrderDefaults,
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

/// An API error: status and message.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

mod orders;
mod v1;

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
        .route("/v2/node", get(node))
        .route("/v2/peers", get(peers))
        .route("/v2/identities", get(identities))
        .route("/v2/identities/{cid}", get(identity))
        .route("/v2/orders", get(orders::list).post(orders::create))
        .route("/v2/orders/{reference}", get(orders::show))
        .route("/v2/orders/{reference}/release", post(orders::release))
        .route("/v2/orders/{reference}/secret", get(orders::secret))
        .route("/v2/orders/{reference}/audit", get(orders::audit))
        .route("/v2/blocks/{cid}", get(block))
        .route("/v1/status", get(v1::status))
        .route("/v1/order", get(v1::orders).post(v1::order))
        .route("/v1/order/secret", post(v1::order_secret))
        .route("/v1/order/{reference}", get(v1::get_order))
        .route("/v1/identity", get(v1::identities))
        .route("/v1/identity/{cid}", get(v1::identity))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .with_state(state)
}

fn identity_json(identity: &KnownIdentity) -> Value {
    json!({
        "cid": identity.cid.to_string(),
        "name": identity.name,
        "peer_id": identity.peer_id.to_string(),
        "created_at": identity.created_at,
    })
}

async fn node(State(state): State<ApiState>) -> Json<Value> {
    let snapshot = state.network.snapshot();
    Json(json!({
        "identity": state.identity,
        "name": state.name,
        "peer_id": snapshot.peer_id.map(|p| p.to_string()),
        "listen_addrs": snapshot.listen_addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "roles": state.roles,
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

async fn peers(State(state): State<ApiState>) -> Json<Value> {
    let snapshot = state.network.snapshot();
    let directory = state.directory.borrow().clone();
    let peers: Vec<Value> = snapshot
        .connected
        .iter()
        .map(|peer| {
            let known = directory.identities.values().find(|i| i.peer_id == *peer);
            json!({
                "peer_id": peer.to_string(),
                "identity": known.map(|i| i.cid.to_string()),
                "name": known.map(|i| i.name.clone()),
            })
        })
        .collect();
    Json(Value::Array(peers))
}

async fn identities(State(state): State<ApiState>) -> Json<Value> {
    let directory = state.directory.borrow().clone();
    Json(Value::Array(
        directory.identities.values().map(identity_json).collect(),
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

async fn identity(
    State(state): State<ApiState>,
    Path(cid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let known = known_identity(&state, &cid)?;
    let mut body = identity_json(&known);
    body["document_hex"] = Value::String(hex::encode(&known.document));
    Ok(Json(body))
}

async fn block(
    State(state): State<ApiState>,
    Path(cid): Path<String>,
) -> Result<Response, ApiError> {
    let parsed = parse_cid(&cid).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let bytes = state
        .store
        .get(dta_actors::store::Column::Blocks, &parsed.to_bytes())
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no block {cid} here")))?;
    let content_type = if parsed.codec() == dta_protocol::block::DAG_CBOR {
        "application/vnd.ipld.dag-cbor"
    } else {
        "application/vnd.ipld.raw"
    };
    Ok(([(header::CONTENT_TYPE, content_type)], bytes).into_response())
}

async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    let m = &state.metrics;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let mut out = String::new();
    let snapshot = state.network.snapshot();
    let _ = writeln!(
        out,
        "# HELP dta_peers Connected peers.\n# TYPE dta_peers gauge"
    );
    let _ = writeln!(out, "dta_peers {}", snapshot.connected.len());
    let _ = writeln!(
        out,
        "# HELP dta_identities Known identities.\n# TYPE dta_identities gauge"
    );
    let _ = writeln!(
        out,
        "dta_identities {}",
        state.directory.borrow().identities.len()
    );
    let _ = writeln!(
        out,
        "# HELP dta_messages_total Messages by protocol and direction.\n# TYPE dta_messages_total counter"
    );
    for (protocol, direction, value) in [
        ("rpc", "sent", load(&m.rpc_requests_sent)),
        ("rpc", "received", load(&m.rpc_requests_received)),
        ("gossipsub", "sent", load(&m.gossip_published)),
        ("gossipsub", "received", load(&m.gossip_received)),
        ("identify", "received", load(&m.identify_received)),
    ] {
        let _ = writeln!(
            out,
            "dta_messages_total{{protocol=\"{protocol}\",direction=\"{direction}\"}} {value}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP dta_rpc_failures_total Failed requests.\n# TYPE dta_rpc_failures_total counter"
    );
    let _ = writeln!(
        out,
        "dta_rpc_failures_total{{direction=\"inbound\"}} {}",
        load(&m.rpc_inbound_failures)
    );
    let _ = writeln!(
        out,
        "dta_rpc_failures_total{{direction=\"outbound\"}} {}",
        load(&m.rpc_outbound_failures)
    );
    let _ = writeln!(
        out,
        "# HELP dta_identity_documents_total Received identity documents by outcome.\n# TYPE dta_identity_documents_total counter"
    );
    let _ = writeln!(
        out,
        "dta_identity_documents_total{{outcome=\"accepted\"}} {}",
        load(&m.identities_accepted)
    );
    let _ = writeln!(
        out,
        "dta_identity_documents_total{{outcome=\"rejected\"}} {}",
        load(&m.identities_rejected)
    );
    let (buckets, count, sum) = m.latency();
    let _ = writeln!(
        out,
        "# HELP dta_request_latency_seconds Round trip of requests.\n# TYPE dta_request_latency_seconds histogram"
    );
    for (bound, value) in buckets {
        let _ = writeln!(
            out,
            "dta_request_latency_seconds_bucket{{le=\"{bound}\"}} {value}"
        );
    }
    let _ = writeln!(
        out,
        "dta_request_latency_seconds_bucket{{le=\"+Inf\"}} {count}"
    );
    let _ = writeln!(out, "dta_request_latency_seconds_sum {sum}");
    let _ = writeln!(out, "dta_request_latency_seconds_count {count}");
    let _ = writeln!(
        out,
        "# HELP dta_store_keys Estimated keys per column family.\n# TYPE dta_store_keys gauge"
    );
    for column in COLUMN_FAMILIES {
        let _ = writeln!(
            out,
            "dta_store_keys{{column=\"{}\"}} {}",
            column.name(),
            state.store.estimated_keys(column)
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
