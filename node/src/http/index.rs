//! `GET /`, a short index of the API for a person or script that found the port, and
//! `GET /v2/health`, whether the node is ready (for load balancers and start-up scripts).
//! What each endpoint does is documented in the README; this lists where they are.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{ApiError, ApiState};

/// Every endpoint: method, path, what it is for.
const ENDPOINTS: &[(&str, &str, &str)] = &[
    ("GET", "/v2/health", "readiness"),
    (
        "GET",
        "/v2/node",
        "this node: identity, peer id, addresses, roles",
    ),
    ("GET", "/v2/peers", "connected peers"),
    ("GET", "/v2/peers/blocked", "blocked peers"),
    (
        "PUT|DELETE",
        "/v2/peers/blocked/{peer}",
        "block or unblock a peer",
    ),
    (
        "GET",
        "/v2/keystore",
        "keystore backend and number of secrets",
    ),
    (
        "GET|POST",
        "/v2/identities",
        "known identities; host a new one",
    ),
    ("GET", "/v2/identities/{cid}", "one identity"),
    (
        "GET|POST",
        "/v2/orders",
        "custody orders; create one (?wait=SECONDS: until certified)",
    ),
    ("GET", "/v2/orders/{reference}", "one order"),
    (
        "POST",
        "/v2/orders/{reference}/release",
        "release to the beneficiary (?wait=SECONDS: until received)",
    ),
    (
        "GET",
        "/v2/orders/{reference}/secret",
        "the secret this node received",
    ),
    (
        "GET",
        "/v2/orders/{reference}/audit",
        "re-verify the order's log",
    ),
    (
        "GET",
        "/v2/orders/{reference}/car",
        "the order's log as a CAR archive",
    ),
    ("PUT", "/v2/blocks", "store a block"),
    ("POST", "/v2/blocks/import", "import a CAR archive"),
    ("GET", "/v2/blocks/{cid}", "one block"),
    ("GET", "/v2/mpin", "M-Pin issuances"),
    (
        "POST",
        "/v2/mpin/client-secret",
        "a share of a client secret",
    ),
    (
        "POST",
        "/v2/mpin/server-secret",
        "a share of the server secret",
    ),
    ("POST", "/v2/mpin/permit", "a share of a time permit"),
    (
        "POST",
        "/v2/mpin/token",
        "a token from client secret and PIN",
    ),
    (
        "POST",
        "/v2/mpin/auth/challenge",
        "start an M-Pin authentication",
    ),
    (
        "POST",
        "/v2/mpin/auth/verify",
        "finish an M-Pin authentication",
    ),
    ("GET", "/v1/status", "the original D-TA's API"),
    ("GET|POST", "/v1/order", "original: orders"),
    (
        "POST",
        "/v1/order/secret",
        "original: release and read a secret",
    ),
    ("GET", "/v1/order/{reference}", "original: one order"),
    ("GET|POST", "/v1/identity", "original: identities"),
    ("GET", "/v1/identity/{cid}", "original: one identity"),
    ("GET", "/metrics", "Prometheus metrics"),
];

/// `GET /`.
pub(super) async fn index(State(state): State<ApiState>) -> Json<Value> {
    let endpoints: Vec<Value> = ENDPOINTS
        .iter()
        .map(|(method, path, what)| json!({ "method": method, "path": path, "what": what }))
        .collect();
    Json(json!({
        "service": "dta",
        "version": env!("CARGO_PKG_VERSION"),
        "identity": state.identity,
        "name": state.name,
        "endpoints": endpoints,
    }))
}

/// `GET /v2/health`: 200 `{"status": "ready", ...}` while the node listens and its network
/// runs; 503 otherwise (for example while the network actor restarts).
pub(super) async fn health(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let snapshot = state.network.snapshot();
    if snapshot.peer_id.is_none() || snapshot.listen_addrs.is_empty() {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the node is not listening".into(),
        ));
    }
    let identities = state.directory.borrow().identities.len();
    Ok(Json(json!({
        "status": "ready",
        "listening": snapshot.listen_addrs.len(),
        "peers": snapshot.connected.len(),
        "identities": identities,
    })))
}
