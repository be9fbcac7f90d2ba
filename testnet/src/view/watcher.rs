//! One task per node that follows its event stream (`GET /v2/events`, through the node's
//! namespace on a LAN testnet) into the shared view, and marks the node down the moment the
//! stream ends or fails, or after [`SILENCE`] without a word (a node sends a heartbeat every
//! second). A node that is down is asked again every [`RETRY`].
//!
//! What it does not do: start or stop nodes, or decide anything from what it sees.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dta_node::client::ApiClient;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::state::TestnetView;

/// How long a node may say nothing before it counts as down.
pub const SILENCE: Duration = Duration::from_secs(3);

/// How often a node that is down is asked again.
pub const RETRY: Duration = Duration::from_secs(1);

/// What the watchers share: the view, and its version for whoever shows it.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The view.
    pub view: Arc<Mutex<TestnetView>>,
    /// Bumped after each change.
    pub changed: watch::Sender<u64>,
}

impl Shared {
    fn update(&self, change: impl FnOnce(&mut TestnetView, u64) -> bool) {
        let version = {
            let mut view = self.view.lock().unwrap_or_else(|e| e.into_inner());
            if !change(&mut view, now_ms()) {
                return;
            }
            view.version
        };
        self.changed.send_replace(version);
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Follows node `index` through `client` until `stop` fires.
pub async fn watch_node(index: usize, client: ApiClient, shared: Shared, stop: CancellationToken) {
    // Opening the stream must not hang on a node that accepts and never answers.
    let client = client.with_timeout(SILENCE);
    loop {
        let reason = tokio::select! {
            _ = stop.cancelled() => return,
            reason = follow(index, &client, &shared) => reason,
        };
        shared.update(|view, now| view.down(index, &reason, now));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// Reads one stream until it ends; why it ended.
async fn follow(index: usize, client: &ApiClient, shared: &Shared) -> String {
    let mut stream = match client.events().await {
        Ok(stream) => stream,
        Err(err) => return err.to_string(),
    };
    loop {
        match tokio::time::timeout(SILENCE, stream.next()).await {
            Err(_) => return format!("silent for {} s", SILENCE.as_secs()),
            Ok(None) => return "its event stream ended".into(),
            Ok(Some(Err(err))) => return err.to_string(),
            Ok(Some(Ok(event))) => {
                shared.update(|view, now| view.apply(index, &event.name, &event.data, now));
            }
        }
    }
}
