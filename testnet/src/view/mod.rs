//! The testnet view: `dta testnet ui --dir DIR` (and `dta testnet up --ui`) serves one web
//! page that shows a whole running testnet live: every node by role, whether it answers, the
//! connections between them, every order's state on each node that has a record of it, and a
//! feed of what happened. A node that is killed turns grey as soon as its event stream ends.
//!
//! - [`state`]: what the view knows, built from events.
//! - [`watcher`]: one task per node following its `GET /v2/events` (inside its namespace on a
//!   LAN testnet) with the node's own API token, as any client of it.
//! - [`server`]: the page and its single event stream.
//!
//! The page talks only to the view (one stream, however many nodes), which listens on
//! loopback unless told otherwise and wants its own token, made at start and handed over in
//! the URL's fragment. No secret reaches the page: nodes' events carry states, names and
//! CIDs. What it does not do: change anything on a node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use crate::process::{self, TestnetError};

pub mod server;
pub mod state;
pub mod watcher;

/// What to serve and where.
#[derive(Debug, Clone)]
pub struct ViewConfig {
    /// The testnet's directory.
    pub dir: PathBuf,
    /// Where the page listens.
    pub listen: SocketAddr,
}

/// A view being served.
#[derive(Debug)]
pub struct RunningView {
    /// Where it listens.
    pub address: SocketAddr,
    /// The page's URL, with its token in the fragment.
    pub url: Zeroizing<String>,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

impl RunningView {
    /// Stops the watchers and the server.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.server.await;
    }
}

fn random_token() -> Result<Zeroizing<String>, TestnetError> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    getrandom::fill(bytes.as_mut()).map_err(|e| TestnetError::Invalid(e.to_string()))?;
    Ok(Zeroizing::new(hex::encode(bytes.as_ref())))
}

/// Starts watching the testnet in `config.dir` and serving its page.
pub async fn start(config: ViewConfig) -> Result<RunningView, TestnetError> {
    let testnet = process::load(&config.dir)?;
    let view = state::TestnetView::new(&testnet.nodes, watcher::now_ms());
    let (changed, _) = watch::channel(0);
    let shared = watcher::Shared {
        view: Arc::new(Mutex::new(view)),
        changed,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| TestnetError::Io {
            path: config.listen.to_string(),
            source,
        })?;
    let address = listener.local_addr().map_err(|source| TestnetError::Io {
        path: config.listen.to_string(),
        source,
    })?;
    let token = Arc::new(random_token()?);
    let stop = CancellationToken::new();
    for (index, node) in testnet.nodes.iter().enumerate() {
        tokio::spawn(watcher::watch_node(
            index,
            node.client(&testnet.binary),
            shared.clone(),
            stop.clone(),
        ));
    }
    let app = server::router(shared, token.clone());
    let stopping = stop.clone();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stopping.cancelled().await })
            .await;
    });
    let url = Zeroizing::new(format!("http://{address}/#token={}", token.as_str()));
    Ok(RunningView {
        address,
        url,
        stop,
        server,
    })
}
