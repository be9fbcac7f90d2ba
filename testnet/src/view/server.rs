//! The testnet view's HTTP side: the page, its scripts and style, and `GET /events`, which
//! sends the whole view as a `state` event when a watcher connects and again after changes
//! (at most every [`COALESCE`], so a burst of record changes across fifty nodes is one
//! redraw), with a `heartbeat` every second between.
//!
//! `/events` needs the view's own bearer token, made at start and shown only in the URL's
//! fragment. What it does not do: reach nodes (the watchers do) or serve anything but the
//! view.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dta_node::http::ui;
use subtle::ConstantTimeEq as _;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use super::watcher::Shared;

/// The shortest time between two `state` events to one page.
pub const COALESCE: Duration = Duration::from_millis(200);

const PAGE: &str = include_str!("../../ui/testnet.html");
const SCRIPT: &str = include_str!("../../ui/testnet.js");

#[derive(Clone)]
struct Served {
    shared: Shared,
    token: Arc<Zeroizing<String>>,
}

/// The view's routes.
pub fn router(shared: Shared, token: Arc<Zeroizing<String>>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { ui::static_answer("text/html; charset=utf-8", PAGE) }),
        )
        .route(
            "/testnet.js",
            get(|| async { ui::static_answer("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/ui/ui.css",
            get(|| async { ui::static_answer("text/css; charset=utf-8", ui::STYLE) }),
        )
        .route(
            "/ui/live.js",
            get(|| async { ui::static_answer("text/javascript; charset=utf-8", ui::LIVE_SCRIPT) }),
        )
        .route("/events", get(events))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such page; the view is at /") })
        .with_state(Served { shared, token })
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

fn authorized(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.as_bytes())))
}

async fn events(State(served): State<Served>, headers: HeaderMap) -> Response {
    if !authorized(&headers, &served.token) {
        return error(
            StatusCode::UNAUTHORIZED,
            "this view needs its token: open the URL that `dta testnet ui` printed",
        );
    }
    let (sender, receiver) = mpsc::channel(8);
    tokio::spawn(feed(served.shared, sender));
    Sse::new(futures::stream::unfold(receiver, |mut receiver| async {
        receiver
            .recv()
            .await
            .map(|event| (Ok::<_, Infallible>(event), receiver))
    }))
    .into_response()
}

fn state_event(shared: &Shared) -> Event {
    let view = shared.view.lock().unwrap_or_else(|e| e.into_inner());
    let data = serde_json::to_string(&*view).unwrap_or_else(|_| "{}".into());
    Event::default().event("state").data(data)
}

/// Feeds one page until it goes away.
async fn feed(shared: Shared, sender: mpsc::Sender<Event>) {
    let mut changes = shared.changed.subscribe();
    let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    changes.mark_unchanged();
    if sender.send(state_event(&shared)).await.is_err() {
        return;
    }
    loop {
        let next = tokio::select! {
            _ = sender.closed() => return,
            _ = heartbeat.tick() => Event::default().event("heartbeat").data("{}"),
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                // Let the rest of a burst land first.
                tokio::time::sleep(COALESCE).await;
                changes.mark_unchanged();
                state_event(&shared)
            }
        };
        if sender.send(next).await.is_err() {
            return;
        }
    }
}
