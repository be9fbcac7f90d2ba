//! `GET /`, a short index of the API for a person or script that found the port, and
//! `GET /v2/health`, whether the node is ready (for load balancers and start-up scripts).
//! What each endpoint does is documented in the README; this lists where they are and what
//! calling each needs (the table in `access.rs`).

use super::access::ENDPOINTS;
use super::answers::{EndpointAnswer, IndexAnswer};
use super::{ApiError, ApiState};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

/// `GET /`.
pub(super) async fn index(State(state): State<ApiState>) -> Json<IndexAnswer> {
    let endpoints = ENDPOINTS
        .iter()
        .map(|endpoint| {
            let methods: Vec<&str> = endpoint.methods.iter().map(|(m, _)| *m).collect();
            EndpointAnswer {
                method: methods.join("|"),
                path: endpoint.path.to_owned(),
                what: endpoint.about.to_owned(),
                access: endpoint
                    .methods
                    .iter()
                    .map(|(m, access)| ((*m).to_owned(), access.describe()))
                    .collect(),
            }
        })
        .collect();
    Json(IndexAnswer {
        service: "dta".into(),
        version: crate::version::VERSION.into(),
        identity: state.identity.clone(),
        name: state.name.clone(),
        endpoints,
    })
}

/// `GET /v2/health`: 200 `{"status": "ready", ...}` while the node listens and its network
/// runs; 503 otherwise (for example while the network actor restarts).
pub(super) async fn health(
    State(state): State<ApiState>,
) -> Result<Json<super::answers::HealthAnswer>, ApiError> {
    let snapshot = state.network.snapshot();
    if snapshot.peer_id.is_none() || snapshot.listen_addrs.is_empty() {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the node is not listening".into(),
        ));
    }
    let identities = state.directory.borrow().identities.len();
    Ok(Json(super::answers::HealthAnswer {
        status: "ready".into(),
        listening: snapshot.listen_addrs.len(),
        peers: snapshot.connected.len(),
        identities,
        announced: snapshot.announced,
    }))
}
