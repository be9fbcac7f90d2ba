//! `/v2/peers/blocked`: the operator's block list. A blocked peer's connections are closed
//! and new ones refused in both directions; unblocking dials it again. The list is kept in the
//! store (see `dta_actors::block_list`) before the call answers, so a restart keeps it.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use dta_actors::network::{NetworkCommand, NetworkSnapshot};
use libp2p::PeerId;
use serde_json::Value;

use super::{ApiError, ApiState};

/// How long a call waits for the network task to apply it.
const APPLY_TIMEOUT: Duration = Duration::from_secs(5);

fn peer_id(state: &ApiState, text: &str) -> Result<PeerId, ApiError> {
    let peer: PeerId = text.parse().map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{text:?} is not a libp2p peer id"),
        )
    })?;
    if state.network.snapshot().peer_id == Some(peer) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "a node cannot block itself".into(),
        ));
    }
    Ok(peer)
}

/// Sends `command` and waits until the snapshot shows it applied.
async fn apply(
    state: &ApiState,
    command: NetworkCommand,
    applied: impl Fn(&NetworkSnapshot) -> bool,
) -> Result<(), ApiError> {
    let unavailable = |message: &str| ApiError(StatusCode::SERVICE_UNAVAILABLE, message.into());
    let mut watch = state.network.watch();
    state
        .network
        .send(command)
        .await
        .map_err(|e| unavailable(&e.to_string()))?;
    tokio::time::timeout(APPLY_TIMEOUT, watch.wait_for(|s| applied(s)))
        .await
        .map_err(|_| unavailable("the network task did not apply it in time"))?
        .map_err(|_| unavailable("the network task stopped"))?;
    Ok(())
}

pub(super) fn listed(
    state: &ApiState,
    peers: impl Iterator<Item = PeerId>,
) -> Vec<super::answers::PeerAnswer> {
    let directory = state.directory.borrow().clone();
    peers
        .map(|peer| {
            let known = directory.identities.values().find(|i| i.peer_id == peer);
            super::answers::PeerAnswer {
                peer_id: peer.to_string(),
                identity: known.map(|i| i.cid.to_string()),
                name: known.map(|i| i.name.clone()),
            }
        })
        .collect()
}

/// `GET /v2/peers/blocked`.
pub async fn blocked(State(state): State<ApiState>) -> Json<Value> {
    let blocked = state.network.snapshot().blocked;
    Json(serde_json::to_value(listed(&state, blocked.into_iter())).unwrap_or(Value::Null))
}

/// Writes a change of the block list to the store (a synced write, off the async threads).
async fn keep(
    state: &ApiState,
    peer: PeerId,
    change: fn(&dta_actors::store::Store, PeerId) -> Result<(), dta_actors::store::StoreError>,
) -> Result<(), ApiError> {
    let store = state.store.clone();
    let internal = |message: String| ApiError(StatusCode::INTERNAL_SERVER_ERROR, message);
    tokio::task::spawn_blocking(move || change(&store, peer))
        .await
        .map_err(|e| internal(e.to_string()))?
        .map_err(|e| internal(format!("cannot keep the block list: {e}")))
}

/// `PUT /v2/peers/blocked/{peer}`: idempotent.
pub async fn block(
    State(state): State<ApiState>,
    Path(peer): Path<String>,
) -> Result<Json<super::answers::BlockedAnswer>, ApiError> {
    let peer = peer_id(&state, &peer)?;
    keep(&state, peer, dta_actors::block_list::add).await?;
    apply(&state, NetworkCommand::Block(peer), |s| {
        s.blocked.contains(&peer) && !s.connected.contains(&peer)
    })
    .await?;
    Ok(Json(super::answers::BlockedAnswer {
        blocked: peer.to_string(),
    }))
}

/// `DELETE /v2/peers/blocked/{peer}`: 404 when the peer is not blocked.
pub async fn unblock(
    State(state): State<ApiState>,
    Path(peer): Path<String>,
) -> Result<Json<super::answers::UnblockedAnswer>, ApiError> {
    let peer = peer_id(&state, &peer)?;
    if !state.network.snapshot().blocked.contains(&peer) {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("{peer} is not blocked"),
        ));
    }
    keep(&state, peer, dta_actors::block_list::remove).await?;
    apply(&state, NetworkCommand::Unblock(peer), |s| {
        !s.blocked.contains(&peer)
    })
    .await?;
    Ok(Json(super::answers::UnblockedAnswer {
        unblocked: peer.to_string(),
    }))
}
