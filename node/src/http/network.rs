//! `/v2/network/...`: what the node can tell of the network's health. A probe of the DHT (a
//! lookup of a random key: how long it took and how many requests it sent, answered or not)
//! and when the node first saw a head announcement (published here, or heard in gossip), which
//! a benchmark compares across nodes to time the spread of gossip.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use dta_actors::network::{HeadSource, ProbeError};
use dta_protocol::block::parse_cid;

use super::answers::{HeadSeenAnswer, ProbeAnswer};
use super::{ApiError, ApiState};

/// `POST /v2/network/probe`.
pub async fn probe(State(state): State<ApiState>) -> Result<Json<ProbeAnswer>, ApiError> {
    let report = state.network.probe().await.map_err(|err| {
        let status = match err {
            ProbeError::Busy => StatusCode::TOO_MANY_REQUESTS,
            ProbeError::Closed => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError(status, err.to_string())
    })?;
    Ok(Json(ProbeAnswer {
        millis: report.millis,
        requests: report.requests,
        successes: report.successes,
        failures: report.failures,
        closest: report.closest,
    }))
}

/// `GET /v2/network/heads/{cid}`.
pub async fn head_seen(
    State(state): State<ApiState>,
    Path(cid): Path<String>,
) -> Result<Json<HeadSeenAnswer>, ApiError> {
    let head = parse_cid(&cid).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let seen = state.network.head_seen(&head).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("head {head} not seen here (or not among the last ones kept)"),
        )
    })?;
    Ok(Json(HeadSeenAnswer {
        head: head.to_string(),
        seen_unix_ms: seen.unix_ms,
        source: match seen.source {
            HeadSource::Published => "published",
            HeadSource::Gossip => "gossip",
        }
        .to_owned(),
    }))
}
