//! Starting and stopping a node: `Node::start`, `Node::stop` and `run(options, shutdown)`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dta_actors::identities::Directory;
use dta_actors::metrics::Metrics;
use dta_actors::network::{NetworkArgs, NetworkChannels, NetworkHandle};
use dta_actors::roles::Role;
use dta_actors::store::Store;
use dta_actors::supervisor::{NodeArgs, NodeSupervisor, SupervisorMsg};
use dta_protocol::block::CidError;
use dta_protocol::network::SwarmConfig;
use libp2p::Multiaddr;
use ractor::{Actor, ActorRef};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{self, Config, ConfigError};
use crate::home::{self, HomeError};
use crate::http::{self, ApiState, OrderDefaults};
use dta_actors::byzantine::Misbehaviour;

/// How long the node waits for its listeners before it gives up starting.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// How to run a node: its home and the command-line overrides of its config.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The home directory.
    pub home: PathBuf,
    /// Replaces the configured listen addresses.
    pub listen: Option<Vec<String>>,
    /// Replaces the configured API address.
    pub api: Option<String>,
    /// Replaces the configured bootstrap addresses.
    pub bootstrap: Option<Vec<String>>,
    /// Turns mDNS off.
    pub no_mdns: bool,
    /// The plugin `/v1` orders use (`milagro`, the original's default, when absent).
    pub plugin: Option<String>,
    /// Fiduciaries of `/v1` orders; none means this node alone.
    pub fiduciaries: Vec<String>,
    /// Threshold of `/v1` orders.
    pub threshold: Option<u32>,
    /// A role to play dishonestly (`dta run --misbehave`): test builds only (the `byzantine`
    /// feature); any other build refuses to start with one.
    pub misbehave: Option<String>,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The home.
    #[error(transparent)]
    Home(#[from] HomeError),
    /// The configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listen address another process holds.
    #[error(transparent)]
    Listen(#[from] crate::ports::PortInUse),
    /// A misbehaviour this build cannot play, or one that does not exist.
    #[error("--misbehave: {0}")]
    Misbehave(String),
    /// The API port.
    #[error("cannot listen for the API on {address}: {source}")]
    Api {
        /// The address.
        address: String,
        /// Why (for example the port is in use).
        source: std::io::Error,
    },
    /// `--plugin` names no plugin this node has.
    #[error("plugin {name:?} is not available; this node supports {available}")]
    Plugin {
        /// The name given.
        name: String,
        /// The plugins there are.
        available: String,
    },
    /// A `--fiduciary` is not an identity CID.
    #[error("--fiduciary {value}: {source}")]
    Fiduciary {
        /// The text given.
        value: String,
        /// Why it is not a CID.
        source: CidError,
    },
    /// `--threshold` is not between 1 and the number of `/v1` fiduciaries.
    #[error("--threshold {threshold} must be between 1 and the {fiduciaries} fiduciaries")]
    Threshold {
        /// The threshold given.
        threshold: u32,
        /// The fiduciaries of `/v1` orders (this node alone when none is named).
        fiduciaries: usize,
    },
    /// The actors.
    #[error("cannot start the node: {0}")]
    Actors(String),
    /// An API on a network address without TLS would send tokens in clear text.
    #[error(
        "the API would listen on {0} without TLS: tokens would cross the network in clear text; keep it on 127.0.0.1, or give it a certificate (`dta init --api-tls`, or [api] tls_cert and tls_key in config.toml)"
    )]
    PlainApi(String),
    /// One of `tls_cert` and `tls_key` without the other.
    #[error("[api] needs both tls_cert and tls_key, or neither")]
    HalfTls,
    /// The API's certificate or key.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The API tokens cannot be read or the first one made.
    #[error("API tokens: {0}")]
    Tokens(String),
    /// The listeners never came up.
    #[error("the node did not start listening within {READY_TIMEOUT:?}")]
    NotReady,
    /// node.json.
    #[error("cannot write {path}: {source}")]
    NodeFile {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// What `HOME/node.json` says about a running node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFile {
    /// Identity CID.
    pub identity: String,
    /// libp2p peer id.
    pub peer_id: String,
    /// The HTTP API's base URL.
    pub api: String,
    /// Actual listen multiaddrs.
    pub listen_addrs: Vec<String>,
    /// Process id.
    pub pid: u32,
    /// Node name.
    pub name: String,
    /// Roles.
    pub roles: Vec<String>,
    /// The named network namespace the node runs in (`ip netns`), if any: its API is reached
    /// from inside it only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The SHA-256 fingerprint of the API's TLS certificate, when it speaks HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_fingerprint: Option<String>,
}

/// A running node.
#[derive(Debug)]
pub struct Node {
    home: PathBuf,
    info: NodeFile,
    supervisor: ActorRef<SupervisorMsg>,
    supervisor_task: tokio::task::JoinHandle<()>,
    network: NetworkHandle,
    directory: watch::Receiver<Directory>,
    store: Store,
    http_stop: CancellationToken,
    http_task: tokio::task::JoinHandle<()>,
    custody_events: tokio::sync::broadcast::Sender<dta_actors::custody::CustodyEvent>,
    metrics: Arc<Metrics>,
}

impl Node {
    /// Checks its options, opens the home, starts the actors and the API, waits until
    /// listening, and writes `node.json`. A bad option leaves the home untouched.
    pub async fn start(options: RunOptions) -> Result<Self, RunError> {
        let started = Instant::now();
        let checking = options.clone();
        let (checked, opened) = tokio::task::spawn_blocking(move || {
            let checked = check(&checking)?;
            warn_about_loose_modes(&checking.home);
            let opened = home::open_with(&checking.home, checked.config.clone())?;
            Ok::<_, RunError>((checked, opened))
        })
        .await
        .map_err(|e| RunError::Actors(e.to_string()))??;
        let Checked {
            config,
            listen,
            bootstrap,
            api_address,
            api_tls,
            roles,
            order_defaults,
            misbehaviour,
        } = checked;

        // Bind the API first: a port in use should fail before anything else starts.
        let listener = tokio::net::TcpListener::bind(api_address)
            .await
            .map_err(|source| RunError::Api {
                address: config.api.listen.clone(),
                source,
            })?;
        let api = listener.local_addr().map_err(|source| RunError::Api {
            address: config.api.listen.clone(),
            source,
        })?;

        let tokens = crate::tokens::Tokens::open(opened.store.clone())
            .map_err(|e| RunError::Tokens(e.to_string()))?;
        // A home made before tokens existed gets its operator's token now.
        if let Some(made) = crate::tokens::ensure_home_token(&options.home, &tokens)
            .map_err(|e| RunError::Tokens(e.to_string()))?
        {
            info!(id = %made.id, file = %options.home.join(crate::tokens::HOME_TOKEN_FILE).display(), "API token made");
        }
        let openness = http::Openness {
            original: api.ip().is_loopback() && !config.api.v1_token,
            metrics: config.api.metrics_open,
        };
        let peer_id = opened.keypair.public().to_peer_id();
        let clock_tolerance_ms = config
            .clock_tolerance_ms
            .unwrap_or(dta_protocol::policy::DEFAULT_CLOCK_TOLERANCE_MS);
        let metrics = Arc::new(Metrics::default());
        let (channels, network) = NetworkChannels::new();
        let (directory_tx, directory) = watch::channel(Directory::default());
        let (custody_events, _) =
            tokio::sync::broadcast::channel(dta_actors::custody::EVENT_CAPACITY);
        // Ends with the node: the task holds no sender, so it stops once the senders go.
        tokio::spawn(dta_actors::record_states::count(
            custody_events.subscribe(),
            metrics.clone(),
        ));
        let identity_document =
            dta_protocol::dagcbor::encode(opened.identity.identity().document())
                .map_err(|e| RunError::Actors(e.to_string()))?;
        // The documents a rotation replaced, the first one first: peers check the current
        // document against them.
        let mut predecessors = Vec::new();
        for state in opened.identity.identity().key_states().skip(1) {
            predecessors.push(
                dta_protocol::dagcbor::encode(state.document())
                    .map_err(|e| RunError::Actors(e.to_string()))?,
            );
        }
        predecessors.reverse();
        let keystore: Arc<dyn dta_hsm::Keystore> = opened.keystore;
        let hosted = dta_actors::hosted::Hosted::new(opened.hosted);
        let mpin_sessions = dta_actors::mpin::AuthSessions::default();
        let args = NodeArgs {
            prefix: format!("{peer_id}"),
            store: opened.store.clone(),
            keystore: keystore.clone(),
            local: opened.identity.clone(),
            network: NetworkArgs {
                hosted: hosted.clone(),
                keypair: opened.keypair,
                swarm: SwarmConfig {
                    mdns: config.mdns,
                    allow_list: config.allow_list()?,
                    target_peers: config.target_peers()?,
                },
                listen: listen.clone(),
                bootstrap,
                identity_document,
                predecessors,
                subscribers: Vec::new(),
                channels,
                metrics: metrics.clone(),
                blocks: Arc::new(opened.store.clone()),
                roles: roles.clone(),
                peer_book: opened.store.clone(),
            },
            network_handle: network.clone(),
            roles: roles.clone(),
            directory: Arc::new(directory_tx),
            metrics: metrics.clone(),
            custody_events: custody_events.clone(),
            mpin_servers: Arc::new(config.mpin_servers()?),
            mpin_sessions: mpin_sessions.clone(),
            clock_tolerance_ms,
            misbehaviour,
        };
        let (supervisor, supervisor_task) =
            Actor::spawn(Some(format!("{peer_id}/supervisor")), NodeSupervisor, args)
                .await
                .map_err(|e| RunError::Actors(e.to_string()))?;

        // Ready once every listener reported an address.
        let mut snapshot = network.watch();
        // The guard `wait_for` returns holds the channel's read lock: drop it at once, or the
        // swarm loop's next snapshot write waits on it while this task reads again.
        let ready = tokio::time::timeout(
            READY_TIMEOUT,
            snapshot.wait_for(|s| s.listen_addrs.len() >= listen.len()),
        )
        .await
        .map(|waited| waited.is_ok())
        .unwrap_or(false);
        if !ready {
            supervisor.stop(None);
            return Err(RunError::NotReady);
        }

        let http_stop = CancellationToken::new();
        let state = ApiState {
            prefix: format!("{peer_id}"),
            identity: opened.identity.cid().to_string(),
            name: config.name.clone(),
            roles: roles.iter().map(|r| r.name().to_owned()).collect(),
            network: network.clone(),
            directory: directory.clone(),
            store: opened.store.clone(),
            metrics: metrics.clone(),
            custody_events: custody_events.clone(),
            hosted,
            order_defaults,
            mpin_sessions,
            tokens,
            openness,
            home: options.home.clone(),
            clock_tolerance_ms,
        };
        let stop = http_stop.clone();
        let api_fingerprint = api_tls.as_ref().map(|tls| tls.fingerprint.clone());
        let served = match &api_tls {
            None => tokio::spawn(async move {
                axum::serve(listener, http::router(state))
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await
            }),
            Some(tls) => {
                let listener = crate::tls::TlsListener::new(listener, tls).map_err(|source| {
                    RunError::Api {
                        address: config.api.listen.clone(),
                        source,
                    }
                })?;
                tokio::spawn(async move {
                    axum::serve(listener, http::router(state))
                        .with_graceful_shutdown(async move { stop.cancelled().await })
                        .await
                })
            }
        };
        let http_task = tokio::spawn(async move {
            match served.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::error!(%err, "HTTP API stopped"),
                Err(err) => tracing::error!(%err, "HTTP API task failed"),
            }
        });

        let info = NodeFile {
            identity: opened.identity.cid().to_string(),
            peer_id: peer_id.to_string(),
            api: format!(
                "{}://{api}",
                if api_tls.is_some() { "https" } else { "http" }
            ),
            listen_addrs: network
                .snapshot()
                .listen_addrs
                .iter()
                .map(ToString::to_string)
                .collect(),
            pid: std::process::id(),
            name: config.name.clone(),
            roles: roles.iter().map(|r| r.name().to_owned()).collect(),
            namespace: crate::netns::current_name(),
            api_fingerprint,
        };
        let node_file = options.home.join("node.json");
        let text = serde_json::to_string_pretty(&info).map_err(|e| RunError::NodeFile {
            path: node_file.display().to_string(),
            source: e.into(),
        })?;
        crate::private::write_private_file(&node_file, text.as_bytes()).map_err(|source| {
            RunError::NodeFile {
                path: node_file.display().to_string(),
                source,
            }
        })?;
        info!(
            identity = %info.identity,
            peer_id = %info.peer_id,
            api = %info.api,
            ready_in_ms = started.elapsed().as_millis() as u64,
            "node ready"
        );
        Ok(Self {
            home: options.home,
            info,
            supervisor,
            supervisor_task,
            network,
            directory,
            store: opened.store,
            http_stop,
            http_task,
            custody_events,
            metrics,
        })
    }

    /// What `node.json` says.
    pub fn info(&self) -> &NodeFile {
        &self.info
    }

    /// A client of its HTTP API, with the home's token (`HOME/api-token`) if it has one.
    pub fn client(&self) -> crate::client::ApiClient {
        let mut client = crate::client::ApiClient::new(&self.info.api);
        if let Some(pinned) = &self.info.api_fingerprint {
            // The node's own certificate: its fingerprint parses.
            client = client
                .clone()
                .with_pinned_certificate(pinned)
                .unwrap_or(client);
        }
        match self.token() {
            Some(token) => client.with_token(token),
            None => client,
        }
    }

    /// The home's API token (`HOME/api-token`), if it has one.
    pub fn token(&self) -> Option<zeroize::Zeroizing<String>> {
        crate::tokens::read_token_file(&self.token_file())
            .ok()
            .flatten()
    }

    /// The file of the home's API token, for `dta ... --token-file`.
    pub fn token_file(&self) -> PathBuf {
        self.home.join(crate::tokens::HOME_TOKEN_FILE)
    }

    /// The network handle.
    pub fn network(&self) -> &NetworkHandle {
        &self.network
    }

    /// The identity directory.
    pub fn directory(&self) -> watch::Receiver<Directory> {
        self.directory.clone()
    }

    /// Record changes of the custody flow on this node, from now on.
    pub fn custody_events(
        &self,
    ) -> tokio::sync::broadcast::Receiver<dta_actors::custody::CustodyEvent> {
        self.custody_events.subscribe()
    }

    /// The node's counters, as `/metrics` shows them.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The database, for tools and tests that inspect what a node stored.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The supervisor, for tests that check restarts.
    pub fn supervisor(&self) -> &ActorRef<SupervisorMsg> {
        &self.supervisor
    }

    /// Stops the API and the actors, flushes the database and removes `node.json`.
    pub async fn stop(self) {
        self.http_stop.cancel();
        let _ = self.http_task.await;
        let _ = self.supervisor.stop_and_wait(None, None).await;
        if let Err(err) = self.store.flush() {
            tracing::error!(%err, "flushing the database failed");
        }
        let _ = std::fs::remove_file(self.home.join("node.json"));
        info!("node stopped");
    }
}

/// What [`Node::start`] takes from its options and the home's config, all of it checked before
/// anything in the home is opened.
#[derive(Debug)]
struct Checked {
    /// The home's config with the command line's overrides.
    config: Config,
    /// Listen addresses.
    listen: Vec<Multiaddr>,
    /// Peers to dial at start.
    bootstrap: Vec<Multiaddr>,
    /// Where the API listens.
    api_address: SocketAddr,
    /// The API's TLS, if it speaks HTTPS.
    api_tls: Option<crate::tls::ServerTls>,
    /// Roles played.
    roles: Vec<Role>,
    /// Plugin, fiduciaries and threshold of `/v1` orders.
    order_defaults: OrderDefaults,
    /// The role played dishonestly (test builds only).
    misbehaviour: Option<Misbehaviour>,
}

/// Reads the home's config (never writing it) and checks it together with every option that
/// overrides it or stands on its own. Opening the database rewrites some of the home's files,
/// so a usage error has to be found before: it leaves the home as it was.
fn check(options: &RunOptions) -> Result<Checked, RunError> {
    let mut config = Config::load(&options.home)?;
    if let Some(listen) = &options.listen {
        config.listen = listen.clone();
    }
    if let Some(api) = &options.api {
        config.api.listen = api.clone();
    }
    if let Some(bootstrap) = &options.bootstrap {
        config.bootstrap = bootstrap.clone();
    }
    if options.no_mdns {
        config.mdns = false;
    }
    config.validate()?;
    // Read again once the node starts; checked here so that it cannot fail there.
    config.mpin_servers()?;
    let listen = config::parse_multiaddrs(&config.listen)?;
    crate::ports::check_free(&listen)?;
    let bootstrap = config::parse_multiaddrs(&config.bootstrap)?;
    let api_address = config::parse_api(&config.api.listen)?;
    let api_tls = match (&config.api.tls_cert, &config.api.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::ServerTls::load(
            &crate::tls::in_home(&options.home, cert),
            &crate::tls::in_home(&options.home, key),
        )?),
        (None, None) => None,
        _ => return Err(RunError::HalfTls),
    };
    // Bearer tokens in clear text are for loopback only.
    if api_tls.is_none() && !api_address.ip().is_loopback() {
        return Err(RunError::PlainApi(config.api.listen.clone()));
    }
    let roles = config.roles()?;
    let misbehaviour = options
        .misbehave
        .as_deref()
        .map(|name| {
            if !dta_actors::byzantine::COMPILED {
                return Err(RunError::Misbehave(
                    "this dta cannot misbehave: only test builds can (the byzantine feature)"
                        .into(),
                ));
            }
            Misbehaviour::parse(name).map_err(RunError::Misbehave)
        })
        .transpose()?;
    let plugin = options
        .plugin
        .clone()
        .unwrap_or_else(|| dta_actors::plugin::MILAGRO.to_owned());
    if dta_actors::plugin::find(&plugin).is_none() {
        return Err(RunError::Plugin {
            name: plugin,
            available: dta_actors::plugin::names(),
        });
    }
    let fiduciaries = options
        .fiduciaries
        .iter()
        .map(|value| {
            dta_protocol::block::parse_cid(value).map_err(|source| RunError::Fiduciary {
                value: value.clone(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Without named fiduciaries, `/v1` orders go to this node alone.
    let fiduciary_count = fiduciaries.len().max(1);
    if let Some(threshold) = options.threshold
        && (threshold == 0 || threshold as usize > fiduciary_count)
    {
        return Err(RunError::Threshold {
            threshold,
            fiduciaries: fiduciary_count,
        });
    }
    Ok(Checked {
        config,
        listen,
        bootstrap,
        api_address,
        api_tls,
        roles,
        order_defaults: OrderDefaults {
            fiduciaries,
            threshold: options.threshold,
            plugin,
        },
        misbehaviour,
    })
}

/// Loose paths a start names one by one; the rest are counted.
const LOOSE_NAMED: usize = 10;

/// Warns about every file and directory of the home that others than its owner may use (the
/// paths and modes, never what the files hold). A home made before homes were private, or
/// loosened since, still runs: the warning says how to close it.
fn warn_about_loose_modes(home_dir: &std::path::Path) {
    let loose = match home::loose_modes(home_dir) {
        Ok(loose) => loose,
        Err(err) => {
            warn!(%err, "cannot check who may read the home's files");
            return;
        }
    };
    let fix = format!("chmod -R go-rwx {}", home_dir.display());
    for entry in loose.iter().take(LOOSE_NAMED) {
        warn!(
            path = %entry.path.display(),
            mode = %format!("{:04o}", entry.mode),
            fix = %fix,
            "a file of the node's home is open to other users"
        );
    }
    if loose.len() > LOOSE_NAMED {
        warn!(
            more = loose.len() - LOOSE_NAMED,
            fix = %fix,
            "more files of the node's home are open to other users"
        );
    }
}

/// Runs a node until `shutdown` is cancelled.
pub async fn run(options: RunOptions, shutdown: CancellationToken) -> Result<(), RunError> {
    let mut node = start_on_a_thread_of_its_own(options).await?;
    // The process is this node's alone: what it frees goes back to the kernel.
    let give_back = tokio::spawn(crate::memory::give_back_every_interval());
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => {}
        _ = &mut node.supervisor_task => {
            tracing::error!("the node's supervisor stopped; shutting down");
        }
    }
    give_back.abort();
    node.stop().await;
    Ok(())
}

/// Starts a node on a thread that ends once it has started.
///
/// A start builds every actor's future where it is polled before moving it into its task:
/// about 450 KiB of stack at its deepest. A thread's stack keeps every page it ever touched
/// until the thread ends, and the thread that calls `run` (the process's main thread, for
/// `dta run`) goes on for as long as the node runs; a thread that ends gives them back (glibc
/// releases the stack of a thread that ends). Tasks the start spawns run on the runtime as
/// usual.
async fn start_on_a_thread_of_its_own(options: RunOptions) -> Result<Node, RunError> {
    let runtime = tokio::runtime::Handle::current();
    let (started, node) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("dta-start".into())
        .spawn(move || {
            let _ = started.send(runtime.block_on(Node::start(options)));
        })
        .map_err(|err| RunError::Actors(format!("cannot start a thread: {err}")))?;
    node.await
        .map_err(|_| RunError::Actors("the start ended without an answer".into()))?
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
