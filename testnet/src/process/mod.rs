//! Process testnets: `dta testnet up|status|down|logs`.
//!
//! `up` creates one home per node under a directory, starts a `dta run` process for each on
//! 127.0.0.1 (free ports, mDNS off, every node bootstrapping from the first), waits until
//! every node is ready (connected to its target of peers; in a testnet no larger than that, to
//! every other node and knowing every identity), and writes `DIR/testnet.json`. The processes outlive the
//! command (each in a process group of its own); `down` stops exactly the pids `up` started,
//! after checking each is still a `dta run` of that directory, and removes what `up` made but
//! the nodes' logs, which it keeps in `DIR/logs/` unless asked to purge them. An `up` that
//! fails removes what it made the same way; one given arguments it cannot launch makes
//! nothing.
//!
//! Roles: the first P nodes are principals, the next F fiduciaries, the next B beneficiaries;
//! any further nodes are fiduciaries too. Principals' `/v1` orders default to all
//! fiduciaries with threshold T.
//!
//! With a PKCS#11 module, each node gets a token of its own (random user PIN in
//! `DIR/pkcs11-pin`, which the nodes' configs name; `down` leaves the tokens in place). The
//! nodes' passphrase (`DIR/passphrase`) and PIN files are mode 0600, as are the homes' files.
//!
//! With `lan`, every node runs in a network namespace of its own on a simulated LAN
//! ([`lan`]) and finds the others by mDNS only; its API is reached from inside its
//! namespace (`testnet.json` and the node's `node.json` name it; [`node`] says how to reach
//! a node). `down` removes the namespaces too.
//!
//! With sites, the nodes are spread over several such LANs joined by a simulated WAN
//! ([`sites`]), whose router process ([`router`]) `down` stops too.
//!
//! This module holds what the commands share: `testnet.json`, the errors, `status` and where
//! the logs are. Bringing a testnet up, undoing a failed launch and starting a stopped node
//! again are in `launch`; taking it down and stopping one node are in `stop`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dta_node::client::{ApiClient, Reach};
use dta_node::home;
use serde::{Deserialize, Serialize};

pub mod lan;
mod launch;
pub mod logs;
pub mod router;
pub mod sites;
mod stop;

pub use launch::{
    ALLOCATOR_OPTIONS_VARIABLE, BOOTSTRAP_PEERS, NODE_ALLOCATOR_OPTIONS, READY_TIMEOUT, UpConfig,
    restart_node, up,
};
pub use router::RouterProcess;

/// Where a testnet's nodes run.
#[derive(Debug, Clone, PartialEq)]
pub enum Placement {
    /// On 127.0.0.1, free ports, mDNS off, each node bootstrapping from others.
    Loopback,
    /// Each node in a network namespace of its own on one simulated LAN, finding the others by
    /// mDNS only ([`lan`]). Needs root.
    Lan,
    /// Sites, each a LAN like [`Placement::Lan`]'s, joined by a simulated WAN with these
    /// figures ([`sites`]); nodes find their site by mDNS and the others through node-0 and
    /// Kademlia. Needs root and `/dev/net/tun`.
    Sites {
        /// How many sites (node `i` is in site `i mod sites`).
        sites: usize,
        /// The link between any two sites.
        link: crate::wan::link::Link,
    },
}
pub use stop::{DownReport, Logs, down, reap, stop_node};

/// The file `up` writes.
pub const TESTNET_FILE: &str = "testnet.json";

/// One node of a running testnet, as `testnet.json` records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TestnetNode {
    /// Its name.
    pub name: String,
    /// Its roles.
    pub roles: Vec<String>,
    /// Identity CID.
    pub identity: String,
    /// libp2p peer id.
    pub peer_id: String,
    /// HTTP API URL.
    pub api: String,
    /// Process id.
    pub pid: u32,
    /// Home directory.
    pub home: PathBuf,
    /// Its network namespace, on a LAN testnet (its API is reached from inside it).
    #[serde(default)]
    pub namespace: Option<String>,
    /// The command line it runs (to start it again).
    #[serde(default)]
    pub command: Vec<String>,
}

impl TestnetNode {
    /// A client of its API, with its home's token: directly, or for a node in a namespace
    /// through `binary` run inside it.
    pub fn client(&self, binary: &Path) -> ApiClient {
        let mut client = ApiClient::new(&self.api);
        let file = self.home.join(dta_node::tokens::HOME_TOKEN_FILE);
        if let Ok(Some(token)) = dta_node::tokens::read_token_file(&file) {
            client = client.with_token(token);
        }
        match &self.namespace {
            None => client,
            Some(name) => client.with_reach(Reach::Namespace {
                name: name.clone(),
                binary: binary.to_owned(),
            }),
        }
    }
}

/// `testnet.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TestnetFile {
    /// The nodes.
    pub nodes: Vec<TestnetNode>,
    /// The binary they run.
    pub binary: PathBuf,
    /// The network namespaces `up` made (a LAN testnet), removed by `down`.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// The WAN router, in a testnet with sites.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<RouterProcess>,
}

/// One node's state for `status`.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// Its name.
    pub name: String,
    /// Its roles.
    pub roles: Vec<String>,
    /// Whether its process runs and answers.
    pub alive: bool,
    /// Connected peers.
    pub peers: Option<usize>,
    /// Known identities.
    pub identities: Option<usize>,
    /// Order records.
    pub orders: Option<usize>,
}

/// Why a testnet command failed.
#[derive(Debug, thiserror::Error)]
pub enum TestnetError {
    /// Bad arguments.
    #[error("{0}")]
    Invalid(String),
    /// A file or process problem.
    #[error("{path}: {source}")]
    Io {
        /// What was touched.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A home could not be made.
    #[error("node {index}: {source}")]
    Home {
        /// Which node.
        index: usize,
        /// Why.
        source: home::HomeError,
    },
    /// A node did not come up.
    #[error("node {name} did not start (after {seconds} s); see {log}; {ending}")]
    NotStarted {
        /// The node.
        name: String,
        /// How long we waited (less when its process ended first).
        seconds: u64,
        /// Its log.
        log: String,
        /// Its log's last lines, or that it wrote none.
        ending: String,
    },
    /// Not every node was ready in time.
    #[error(
        "after {waited:?} not every node has {wanted}: {lagging}; the testnet was taken \
         down, its logs are in {logs}"
    )]
    NotReady {
        /// How long `up` waited.
        waited: Duration,
        /// What a ready node has.
        wanted: String,
        /// The nodes that were not ready, with what each had.
        lagging: String,
        /// Where the logs were kept.
        logs: String,
    },
    /// No testnet there.
    #[error("{0} holds no testnet (no testnet.json)")]
    NoTestnet(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TestnetError + '_ {
    move |source| TestnetError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `DIR/testnet.json`.
fn save(dir: &Path, testnet: &TestnetFile) -> Result<(), TestnetError> {
    let path = dir.join(TESTNET_FILE);
    let text = serde_json::to_string_pretty(testnet).map_err(|e| TestnetError::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e),
    })?;
    // Written aside and renamed over the old one: a reader (`status`, a scenario, a test)
    // sees the old file or the new one, never half of one.
    let partial = dir.join(format!("{TESTNET_FILE}.partial"));
    std::fs::write(&partial, text).map_err(io(&partial))?;
    std::fs::rename(&partial, &path).map_err(io(&path))
}

/// Reads `DIR/testnet.json`.
pub fn load(dir: &Path) -> Result<TestnetFile, TestnetError> {
    let path = dir.join(TESTNET_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|_| TestnetError::NoTestnet(dir.display().to_string()))?;
    serde_json::from_str(&text).map_err(|e| TestnetError::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e),
    })
}

fn find<'a>(testnet: &'a TestnetFile, name: &str) -> Result<&'a TestnetNode, TestnetError> {
    testnet
        .nodes
        .iter()
        .find(|n| n.name == name || n.name == format!("node-{name}"))
        .ok_or_else(|| {
            TestnetError::Invalid(format!(
                "no node {name:?} in this testnet (nodes: node-0 … node-{})",
                testnet.nodes.len().saturating_sub(1)
            ))
        })
}

/// One node of the testnet in `dir`, by name (`node-3`) or index (`3`): how to reach it.
pub fn node(dir: &Path, name: &str) -> Result<TestnetNode, TestnetError> {
    find(&load(dir)?, name).cloned()
}

/// Whether `pid` is a `dta run` of `home` (not a reused pid of something else).
pub(crate) fn is_our_node(pid: u32, home_dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let home_arg = home_dir.as_os_str().as_encoded_bytes();
    args.contains(&&b"run"[..]) && args.contains(&home_arg)
}

/// Every node's state.
pub async fn status(dir: &Path) -> Result<Vec<NodeStatus>, TestnetError> {
    let testnet = load(dir)?;
    let mut out = Vec::with_capacity(testnet.nodes.len());
    for node in &testnet.nodes {
        let running = is_our_node(node.pid, &node.home);
        let binary = &testnet.binary;
        let count = |what| async move {
            if running {
                count(binary, node, what).await.ok()
            } else {
                None
            }
        };
        let peers = count("peers").await;
        out.push(NodeStatus {
            name: node.name.clone(),
            roles: node.roles.clone(),
            alive: running && peers.is_some(),
            peers,
            identities: count("identities").await,
            orders: count("orders").await,
        });
    }
    Ok(out)
}

/// How many entries a node's `/v2/{what}` lists (`identities`, `peers`, `orders`), asked with
/// a 5 s limit; or why the node did not say (the error and its causes, which tell a timeout
/// from a refused connection).
async fn count(binary: &Path, node: &TestnetNode, what: &str) -> Result<usize, String> {
    let client = node.client(binary).with_timeout(Duration::from_secs(5));
    let body = client
        .get(&format!("/v2/{what}"))
        .await
        .map_err(|err| error_chain(&err))?;
    body.as_array()
        .map(Vec::len)
        .ok_or_else(|| format!("/v2/{what} is not a list"))
}

/// An error and its causes, on one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Where the logs of nodes that were taken down are kept.
pub fn logs_dir(dir: &Path) -> PathBuf {
    dir.join("logs")
}

fn kept_log(dir: &Path, name: &str) -> PathBuf {
    logs_dir(dir).join(format!("{name}.log"))
}

/// The log file of a node, by name (`node-3`) or index (`3`): in its home while the testnet
/// is up, else where `down` kept it.
pub fn log_path(dir: &Path, node: &str) -> Result<PathBuf, TestnetError> {
    match load(dir) {
        Ok(testnet) => Ok(find(&testnet, node)?.home.join("log")),
        Err(TestnetError::NoTestnet(_)) => {
            let name = if node.starts_with("node-") {
                node.to_owned()
            } else {
                format!("node-{node}")
            };
            let kept = kept_log(dir, &name);
            if kept.exists() {
                Ok(kept)
            } else {
                Err(TestnetError::NoTestnet(dir.display().to_string()))
            }
        }
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_never_sees_half_a_testnet_file() {
        let dir = tempfile::tempdir().unwrap();
        let testnet = TestnetFile {
            nodes: Vec::new(),
            binary: PathBuf::from("dta"),
            namespaces: (0..200).map(|i| format!("namespace-{i}")).collect(),
            router: None,
        };
        save(dir.path(), &testnet).unwrap();
        let writing = {
            let (dir, testnet) = (dir.path().to_owned(), testnet.clone());
            std::thread::spawn(move || {
                for _ in 0..300 {
                    save(&dir, &testnet).unwrap();
                }
            })
        };
        while !writing.is_finished() {
            assert_eq!(load(dir.path()).unwrap(), testnet);
        }
        writing.join().unwrap();
    }
}
