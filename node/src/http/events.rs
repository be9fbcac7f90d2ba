//! `GET /v2/events`: this node as a live stream of server-sent events, for the web UI and the
//! testnet view.
//!
//! The first event, `snapshot`, says who the node is, its peers and the state of each of its
//! order and M-Pin records. After it come `peers` (the whole list) when the connected peers or
//! the names known for them change, `record` when a record changes state, and `heartbeat`
//! every second, so that a watcher knows within two seconds that a node stopped answering. A
//! watcher that falls behind the node's record changes gets a fresh `snapshot` instead of the
//! changes it missed.
//!
//! What it does not carry: secrets, shares or payloads; states, CIDs and names only. What it
//! does not do: replay history (a watcher that reconnects starts from a new snapshot).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, Sse};
use dta_actors::custody::CustodyEvent;
use dta_actors::states::RecordState;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::ApiState;

/// How often a `heartbeat` goes out.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// Events queued for one watcher before the node stops waiting for it.
const QUEUE: usize = 64;

/// `GET /v2/events`.
pub async fn events(
    State(state): State<ApiState>,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let (sender, receiver) = mpsc::channel(QUEUE);
    tokio::spawn(watch(state, sender));
    Sse::new(futures::stream::unfold(receiver, |mut receiver| async {
        receiver.recv().await.map(|event| (Ok(event), receiver))
    }))
}

fn event(name: &str, data: &Value) -> Event {
    Event::default().event(name).data(data.to_string())
}

/// Feeds one watcher until it goes away or the node stops.
async fn watch(state: ApiState, sender: mpsc::Sender<Event>) {
    let mut records = state.custody_events.subscribe();
    let mut network = state.network.watch();
    let mut directory = state.directory.clone();
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shown_peers = super::peers_json(&state);
    if sender
        .send(event("snapshot", &snapshot(&state, &shown_peers)))
        .await
        .is_err()
    {
        return;
    }
    loop {
        let next = tokio::select! {
            _ = sender.closed() => return,
            _ = heartbeat.tick() => event("heartbeat", &json!({})),
            change = records.recv() => match change {
                Ok(change) => event("record", &record_change(&change)),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    shown_peers = super::peers_json(&state);
                    event("snapshot", &snapshot(&state, &shown_peers))
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            changed = network.changed() => {
                if changed.is_err() {
                    return;
                }
                match changed_peers(&state, &mut shown_peers) {
                    Some(event) => event,
                    None => continue,
                }
            }
            changed = directory.changed() => {
                if changed.is_err() {
                    return;
                }
                match changed_peers(&state, &mut shown_peers) {
                    Some(event) => event,
                    None => continue,
                }
            }
        };
        if sender.send(next).await.is_err() {
            return;
        }
    }
}

/// A `peers` event if the list differs from what the watcher was last shown.
fn changed_peers(state: &ApiState, shown: &mut Value) -> Option<Event> {
    let now = super::peers_json(state);
    if now == *shown {
        return None;
    }
    *shown = now;
    Some(event("peers", &json!({ "peers": shown })))
}

fn record_change(change: &CustodyEvent) -> Value {
    let kind = match change.state {
        RecordState::Order(_) => "order",
        RecordState::Mpin(_) => "mpin",
    };
    json!({
        "kind": kind,
        "reference": change.reference,
        "role": change.role,
        "state": change.state.to_string(),
    })
}

fn snapshot(state: &ApiState, peers: &Value) -> Value {
    let network = state.network.snapshot();
    // A snapshot goes out whatever the store says; a failed read is shown, not hidden.
    let (stored, error) = match dta_actors::custody::stored_records(&state.store) {
        Ok(stored) => (stored, None),
        Err(err) => (Vec::new(), Some(err.to_string())),
    };
    let orders: Vec<Value> = stored
        .iter()
        .map(|record| {
            json!({
                "kind": "order",
                "reference": record.reference,
                "role": record.role,
                "state": record.state,
                "principal": record.principal.to_string(),
                "threshold": record.threshold,
                "fiduciaries": record.fiduciaries.len(),
                "certified": record.certificate.is_some(),
            })
        })
        .collect();
    json!({
        "identity": state.identity,
        "name": state.name,
        "peer_id": network.peer_id.map(|p| p.to_string()),
        "roles": state.roles,
        "peers": peers,
        "records": orders,
        "records_error": error,
        "heartbeat_ms": HEARTBEAT.as_millis() as u64,
    })
}
