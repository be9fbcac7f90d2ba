//! In-process testnets: n full nodes in one process, on 127.0.0.1 with ports no other node
//! of the process had, temporary homes, mDNS off and explicit bootstrap dials.
//!
//! ```no_run
//! # async fn example() -> Result<(), dta_testnet::harness::HarnessError> {
//! let net = dta_testnet::harness::Testnet::builder().nodes(5).build().await?;
//! assert_eq!(net.node(0).directory().borrow().identities.len(), 5);
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dta_actors::roles::Role;
use dta_hsm::KdfParams;
use dta_node::config::Config;
use dta_node::{Node, RunError, RunOptions, home};
use libp2p::PeerId;

/// How long `build` waits for every node to know every identity.
pub const DEFAULT_KNOWLEDGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Test homes use cheap Argon2id settings: the harness tests networking, not the KDF.
fn test_kdf() -> KdfParams {
    KdfParams {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
        salt: [0x5a; 16],
    }
}

/// Why a testnet could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A file problem.
    #[error("testnet files: {0}")]
    Io(#[from] std::io::Error),
    /// A home could not be created.
    #[error("node {index}: {source}")]
    Home {
        /// Which node.
        index: usize,
        /// Why.
        source: home::HomeError,
    },
    /// A node could not start.
    #[error("node {index}: {source}")]
    Start {
        /// Which node.
        index: usize,
        /// Why.
        source: RunError,
    },
    /// The nodes did not all learn each other's identities in time.
    #[error("after {0:?} not every node knows every identity")]
    Knowledge(Duration),
}

/// Builds a [`Testnet`].
#[derive(Debug, Clone)]
pub struct TestnetBuilder {
    nodes: usize,
    allow_lists: Vec<(usize, Vec<usize>)>,
    wait_for_knowledge: bool,
    plugin: Option<String>,
    pkcs11: Option<(PathBuf, Vec<usize>)>,
    mpin_servers: Vec<usize>,
    roles: Vec<(usize, Role)>,
    target_peers: Option<usize>,
    chain: bool,
}

/// How long a restarted node waits for its port to be free again.
pub const RESTART_PATIENCE: Duration = Duration::from_secs(10);

/// A listen address on 127.0.0.1 that no other node of this process ever had, on a port below
/// the kernel's ephemeral range. With port 0 the kernel could give a new node (of another
/// test running beside) the port of a node that stopped, or make it the source port of an
/// outgoing connection; the stopped node's peers would then keep dialling a stranger there,
/// and the node could not restart on its own port.
fn listen_address() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    const FIRST: u32 = 10_000;
    const LAST: u32 = 32_000;
    // Processes that run at the same time start far apart.
    let start = (std::process::id() % 1_000) * 11;
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = FIRST + (start + n) % (LAST - FIRST);
        if let Ok(probe) = std::net::TcpListener::bind(("127.0.0.1", port as u16)) {
            drop(probe);
            return format!("/ip4/127.0.0.1/tcp/{port}");
        }
    }
}

/// The user PIN of the tokens the harness creates (test tokens only).
pub const TEST_PIN: &str = "testnet-pin-2468";
const TEST_SO_PIN: &str = "testnet-so-pin-1357";

/// One node of a testnet: its home and, while running, the node.
#[derive(Debug)]
pub struct TestNode {
    home: PathBuf,
    options: RunOptions,
    node: Option<Node>,
}

impl TestNode {
    /// The running node.
    ///
    /// # Panics
    /// If the node is stopped.
    pub fn node(&self) -> &Node {
        self.node.as_ref().expect("node to be running")
    }

    /// The home directory.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Stops the node (its home stays). A later [`TestNode::start`] listens on the same
    /// addresses, as a real node with configured ports would, so peers find it again.
    pub async fn stop(&mut self) {
        if let Some(node) = self.node.take() {
            self.options.listen = Some(node.info().listen_addrs.clone());
            node.stop().await;
        }
    }

    /// Makes the next [`TestNode::start`] listen on new ports, as a node whose ports were
    /// not configured would: peers cannot find it where it was.
    pub fn move_to_new_ports(&mut self) {
        self.options.listen = Some(vec![listen_address()]);
    }

    /// Starts the node again from its home, on the port it had. No other node of this
    /// process is given that port (see [`listen_address`]); should the old listener still be
    /// closing, it tries again for up to [`RESTART_PATIENCE`].
    pub async fn start(&mut self) -> Result<(), RunError> {
        let started = Instant::now();
        while self.node.is_none() {
            // Boxed: a node's start is a large future, too large for a test thread's stack
            // in a debug build when polled in place.
            match Box::pin(Node::start(self.options.clone())).await {
                Ok(node) => self.node = Some(node),
                Err(RunError::Listen(_)) if started.elapsed() < RESTART_PATIENCE => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// The address others dial: first listen address plus `/p2p/PEER`.
    pub fn dial_address(&self) -> String {
        let info = self.node().info();
        format!("{}/p2p/{}", info.listen_addrs[0], info.peer_id)
    }
}

/// A running in-process testnet. Dropping it deletes the homes; call [`Testnet::stop`] first
/// for a clean shutdown.
#[derive(Debug)]
pub struct Testnet {
    nodes: Vec<TestNode>,
    _root: tempfile::TempDir,
    /// Time from the first node's start until every node knew every identity.
    pub knowledge_time: Option<Duration>,
}

impl Testnet {
    /// A builder with 3 nodes.
    pub fn builder() -> TestnetBuilder {
        TestnetBuilder {
            nodes: 3,
            allow_lists: Vec::new(),
            wait_for_knowledge: true,
            pkcs11: None,
            mpin_servers: Vec::new(),
            roles: Vec::new(),
            plugin: None,
            target_peers: None,
            chain: false,
        }
    }

    /// Node `i`'s running node.
    pub fn node(&self, i: usize) -> &Node {
        self.nodes[i].node()
    }

    /// Node `i`.
    pub fn test_node(&mut self, i: usize) -> &mut TestNode {
        &mut self.nodes[i]
    }

    /// Node `i`'s first listen address with its `/p2p/` suffix.
    ///
    /// # Panics
    /// If the address does not parse (it was printed by the node itself).
    pub fn test_node_address(&self, i: usize) -> libp2p::Multiaddr {
        self.nodes[i]
            .dial_address()
            .parse()
            .expect("a node's own address to parse")
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the testnet has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Waits until every running node knows every identity of the testnet.
    pub async fn wait_for_full_knowledge(&self, timeout: Duration) -> Result<(), HarnessError> {
        let expected = self.nodes.len();
        let all = async {
            for node in self.nodes.iter().filter_map(|n| n.node.as_ref()) {
                let mut directory = node.directory();
                let _ = directory.wait_for(|d| d.identities.len() >= expected).await;
            }
        };
        tokio::time::timeout(timeout, all)
            .await
            .map_err(|_| HarnessError::Knowledge(timeout))
    }

    /// Stops every node cleanly.
    pub async fn stop(mut self) {
        for node in &mut self.nodes {
            node.stop().await;
        }
    }
}

impl TestnetBuilder {
    /// How many nodes.
    pub fn nodes(mut self, nodes: usize) -> Self {
        self.nodes = nodes;
        self
    }

    /// Node `index` only accepts connections from the nodes in `allowed`.
    pub fn allow_list(mut self, index: usize, allowed: &[usize]) -> Self {
        self.allow_lists.push((index, allowed.to_vec()));
        self
    }

    /// Nodes `indices` keep their secrets in PKCS#11 tokens of `module`: each gets a token of
    /// its own, created on the module's free slot (SoftHSM2 makes a new free slot each time).
    pub fn pkcs11(mut self, module: impl Into<PathBuf>, indices: &[usize]) -> Self {
        self.pkcs11 = Some((module.into(), indices.to_vec()));
        self
    }

    /// Every node, as an M-Pin trust authority, issues server-secret shares to nodes
    /// `indices` (their identities go in each `mpin_servers`).
    pub fn mpin_servers(mut self, indices: &[usize]) -> Self {
        self.mpin_servers = indices.to_vec();
        self
    }

    /// The plugin of every node's `/v1` orders (`dta run --plugin`).
    pub fn plugin(mut self, plugin: &str) -> Self {
        self.plugin = Some(plugin.to_owned());
        self
    }

    /// Every node plays the single role `role_of(index)` (after [`TestnetBuilder::nodes`]);
    /// without this, every node plays every role.
    pub fn one_role_each(mut self, role_of: impl Fn(usize) -> Role) -> Self {
        for index in 0..self.nodes {
            self.roles.push((index, role_of(index)));
        }
        self
    }

    /// Every node keeps connections with `target` peers (its `target_peers`).
    pub fn target_peers(mut self, target: usize) -> Self {
        self.target_peers = Some(target);
        self
    }

    /// Node i bootstraps from node i - 1 rather than every node from node 0, so that, with a
    /// small target of peers, the ends of the chain never meet unless one needs the other.
    /// Does not wait for full identity knowledge (the nodes look identities up on demand).
    pub fn chain(mut self) -> Self {
        self.chain = true;
        self.wait_for_knowledge = false;
        self
    }

    /// Return as soon as the nodes run, without waiting for full identity knowledge.
    pub fn no_wait(mut self) -> Self {
        self.wait_for_knowledge = false;
        self
    }

    /// Creates the homes, starts node 0, then the others bootstrapping from it, and waits
    /// until every node knows every identity.
    pub async fn build(self) -> Result<Testnet, HarnessError> {
        let root = tempfile::Builder::new().prefix("dta-testnet-").tempdir()?;
        let passphrase = root.path().join("passphrase");
        std::fs::write(&passphrase, "testnet passphrase")?;
        let pin = root.path().join("pkcs11-pin");
        std::fs::write(&pin, TEST_PIN)?;
        let mut peers: Vec<PeerId> = Vec::new();
        let mut identities: Vec<String> = Vec::new();
        let mut homes = Vec::new();
        for index in 0..self.nodes {
            let home = root.path().join(format!("node-{index}"));
            let keystore = match &self.pkcs11 {
                Some((module, indices)) if indices.contains(&index) => {
                    // Token labels are at most 32 bytes and must not repeat in a token
                    // directory shared by several runs.
                    let label = format!(
                        "tn{:x}-{index}",
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap_or_default()
                            .as_nanos()
                            & 0xffff_ffff_ffff
                    );
                    dta_hsm::pkcs11::init_token(module, &label, TEST_SO_PIN, TEST_PIN).map_err(
                        |e| HarnessError::Home {
                            index,
                            source: home::HomeError::Keystore(e),
                        },
                    )?;
                    home::KeystoreChoice::pkcs11(module.clone(), label)
                }
                _ => home::KeystoreChoice::Soft {
                    kdf: test_kdf(),
                    insecure_passphrase: false,
                },
            };
            let report = home::init(
                &home,
                &format!("node-{index}"),
                false,
                home::SecretFiles {
                    passphrase_file: Some(passphrase.clone()),
                    pin_file: Some(pin.clone()),
                },
                keystore,
            )
            .map_err(|source| HarnessError::Home { index, source })?;
            peers.push(report.peer_id.parse().map_err(|_| HarnessError::Home {
                index,
                source: home::HomeError::Damaged {
                    path: home.display().to_string(),
                    message: "bad peer id".into(),
                },
            })?);
            homes.push(home);
            identities.push(report.identity);
        }
        let edit_config = |index: usize, edit: &dyn Fn(&mut Config)| {
            let mut config = Config::load(&homes[index]).map_err(|e| HarnessError::Home {
                index,
                source: e.into(),
            })?;
            edit(&mut config);
            config.save(&homes[index])?;
            Ok::<_, HarnessError>(())
        };
        if !self.mpin_servers.is_empty() {
            let servers: Vec<String> = self
                .mpin_servers
                .iter()
                .map(|i| identities[*i].clone())
                .collect();
            for index in 0..homes.len() {
                edit_config(index, &|config| config.mpin_servers = servers.clone())?;
            }
        }
        for (index, role) in &self.roles {
            edit_config(*index, &|config| {
                config.roles = vec![role.name().to_owned()]
            })?;
        }
        if let Some(target) = self.target_peers {
            for index in 0..homes.len() {
                edit_config(index, &|config| config.target_peers = Some(target))?;
            }
        }
        for (index, allowed) in &self.allow_lists {
            let allowed: Vec<String> = allowed.iter().map(|i| peers[*i].to_string()).collect();
            edit_config(*index, &|config| config.allow_list = Some(allowed.clone()))?;
        }
        let started = Instant::now();
        let mut nodes: Vec<TestNode> = Vec::new();
        for (index, home) in homes.into_iter().enumerate() {
            let from = if self.chain {
                nodes.last()
            } else {
                nodes.first()
            };
            let bootstrap = from.map(|node| vec![node.dial_address()]);
            let options = RunOptions {
                home: home.clone(),
                listen: Some(vec![listen_address()]),
                api: Some("127.0.0.1:0".into()),
                bootstrap: Some(bootstrap.unwrap_or_default()),
                no_mdns: true,
                plugin: self.plugin.clone(),
                ..RunOptions::default()
            };
            // Boxed, as in `TestNode::start`: polled in place, a node's start is too large for
            // a test thread's stack in a debug build.
            let node = Box::pin(Node::start(options.clone()))
                .await
                .map_err(|source| HarnessError::Start { index, source })?;
            nodes.push(TestNode {
                home,
                options,
                node: Some(node),
            });
        }
        let mut testnet = Testnet {
            nodes,
            _root: root,
            knowledge_time: None,
        };
        if self.wait_for_knowledge {
            testnet
                .wait_for_full_knowledge(DEFAULT_KNOWLEDGE_TIMEOUT)
                .await?;
            testnet.knowledge_time = Some(started.elapsed());
        }
        Ok(testnet)
    }
}
