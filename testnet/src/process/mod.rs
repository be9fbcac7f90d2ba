//! Process testnets: `dta testnet up|status|down|logs`.
//!
//! `up` creates one home per node under a directory, starts a `dta run` process for each on
//! 127.0.0.1 (free ports, mDNS off, every node bootstrapping from the first), waits until
//! every node knows every identity, and writes `DIR/testnet.json`. The processes outlive the
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

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dta_node::NodeFile;
use dta_node::config::Config;
use dta_node::home;
use serde::{Deserialize, Serialize};

pub mod lan;

/// The file `up` writes.
pub const TESTNET_FILE: &str = "testnet.json";
/// How long `up` waits for every node to know every identity.
pub const KNOWLEDGE_TIMEOUT: Duration = Duration::from_secs(120);

/// What to launch.
#[derive(Debug, Clone)]
pub struct UpConfig {
    /// Where the homes and `testnet.json` go.
    pub dir: PathBuf,
    /// Nodes.
    pub nodes: usize,
    /// Principals among them.
    pub principals: usize,
    /// Fiduciaries (at least; nodes beyond P + F + B are fiduciaries too).
    pub fiduciaries: usize,
    /// Beneficiaries.
    pub beneficiaries: usize,
    /// Threshold of the principals' `/v1` orders.
    pub threshold: Option<u32>,
    /// The `dta` binary to run.
    pub binary: PathBuf,
    /// A PKCS#11 module: every node keeps its secrets in a token of its own on it (created on
    /// the module's free slot; with SoftHSM2, `SOFTHSM2_CONF` must name its configuration).
    pub pkcs11_module: Option<PathBuf>,
    /// Each node in a network namespace of its own on a simulated LAN, finding the others by
    /// mDNS only (see [`lan`]). Needs root.
    pub lan: bool,
}

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
    #[error("node {name} did not start within {seconds} s; see {log}")]
    NotStarted {
        /// The node.
        name: String,
        /// How long we waited.
        seconds: u64,
        /// Its log.
        log: String,
    },
    /// Not every node learned every identity in time.
    #[error(
        "after {waited:?} not every node knows every identity: {lagging}; the testnet was \
         taken down, its logs are in {logs}"
    )]
    Knowledge {
        /// How long `up` waited.
        waited: Duration,
        /// The nodes that did not, with how many identities each knew.
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

/// Launches a testnet; `progress` hears about each stage. Arguments are checked before
/// anything is made; if the launch fails, what it made is removed again (processes stopped,
/// namespaces, homes and files removed), except the nodes' logs, kept in `DIR/logs/`.
pub async fn up(
    config: UpConfig,
    mut progress: impl FnMut(&str),
) -> Result<TestnetFile, TestnetError> {
    check(&config)?;
    let mut made = Made {
        dir_created: !config.dir.exists(),
        ..Made::default()
    };
    match launch(&config, &mut made, &mut progress).await {
        Ok(testnet) => Ok(testnet),
        Err(err) => {
            made.undo(&config.dir).await;
            Err(err)
        }
    }
}

/// What a launch made so far, to remove if it fails.
#[derive(Debug, Default)]
struct Made {
    /// Whether the testnet directory was made by it.
    dir_created: bool,
    /// Files in the testnet directory.
    files: Vec<PathBuf>,
    /// Node homes (only those it created: a directory that was there is never removed).
    homes: Vec<PathBuf>,
    /// Processes started, with their homes.
    processes: Vec<(u32, PathBuf)>,
    /// Network namespaces.
    namespaces: Vec<String>,
}

impl Made {
    async fn undo(self, dir: &Path) {
        for (pid, home_dir) in &self.processes {
            if is_our_node(*pid, home_dir) {
                signal("-TERM", *pid);
            }
        }
        let started = Instant::now();
        while started.elapsed() < STOP_TIMEOUT
            && self
                .processes
                .iter()
                .any(|(pid, home_dir)| is_our_node(*pid, home_dir) || !has_exited(*pid))
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for (pid, home_dir) in &self.processes {
            if is_our_node(*pid, home_dir) {
                signal("-KILL", *pid);
            }
        }
        lan::remove(&self.namespaces);
        for home_dir in &self.homes {
            keep_log(dir, home_dir);
            let _ = std::fs::remove_dir_all(home_dir);
        }
        for file in &self.files {
            let _ = std::fs::remove_file(file);
        }
        if self.dir_created {
            // Only when empty: kept logs stay.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Refuses what cannot launch, before anything is made.
fn check(config: &UpConfig) -> Result<(), TestnetError> {
    let named = config.principals + config.fiduciaries + config.beneficiaries;
    if config.nodes == 0 || named > config.nodes {
        return Err(TestnetError::Invalid(format!(
            "{} nodes cannot hold {} principals, {} fiduciaries and {} beneficiaries",
            config.nodes, config.principals, config.fiduciaries, config.beneficiaries
        )));
    }
    let fiduciary_count = config.nodes - config.principals - config.beneficiaries;
    if fiduciary_count == 0 {
        return Err(TestnetError::Invalid(
            "a testnet needs at least one fiduciary".into(),
        ));
    }
    if let Some(t) = config.threshold
        && (t == 0 || t as usize > fiduciary_count)
    {
        return Err(TestnetError::Invalid(format!(
            "threshold {t} must be between 1 and the {fiduciary_count} fiduciaries"
        )));
    }
    if config.dir.join(TESTNET_FILE).exists() {
        return Err(TestnetError::Invalid(format!(
            "{} already holds a testnet: `dta testnet down --dir {}` first",
            config.dir.display(),
            config.dir.display()
        )));
    }
    if config.lan {
        lan::check(config.nodes)?;
    }
    Ok(())
}

async fn launch(
    config: &UpConfig,
    made: &mut Made,
    progress: &mut impl FnMut(&str),
) -> Result<TestnetFile, TestnetError> {
    let dir = &config.dir;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    // The passphrase and PIN files are the owner's alone, whatever the umask.
    let passphrase = dir.join("passphrase");
    made.files.push(passphrase.clone());
    home::write_private_file(
        &passphrase,
        hex::encode(dta_crypto::Secret::<24>::random().expose()).as_bytes(),
    )
    .map_err(io(&passphrase))?;
    // Tokens get a random user PIN, in a file the nodes' configs name, and labels no other
    // testnet uses.
    let pin = dir.join("pkcs11-pin");
    let run_tag = hex::encode(dta_crypto::Secret::<4>::random().expose());
    if config.pkcs11_module.is_some() {
        made.files.push(pin.clone());
        let user_pin = hex::encode(dta_crypto::Secret::<12>::random().expose());
        home::write_private_file(&pin, user_pin.as_bytes()).map_err(io(&pin))?;
    }
    let role_of = |i: usize| {
        if i < config.principals {
            "principal"
        } else if i >= config.principals + config.fiduciaries
            && i < config.principals + config.fiduciaries + config.beneficiaries
        {
            "beneficiary"
        } else {
            "fiduciary"
        }
    };
    // Homes first: the principals' defaults name the fiduciaries' identities.
    let mut homes = Vec::with_capacity(config.nodes);
    let mut identities = Vec::with_capacity(config.nodes);
    for index in 0..config.nodes {
        let home_dir = dir.join(format!("node-{index}"));
        if !home_dir.exists() {
            made.homes.push(home_dir.clone());
        }
        let keystore = match &config.pkcs11_module {
            Some(module) => {
                let label = format!("dta-tn-{run_tag}-{index}");
                let user_pin = std::fs::read_to_string(&pin).map_err(io(&pin))?;
                let so_pin = hex::encode(dta_crypto::Secret::<12>::random().expose());
                dta_hsm::pkcs11::init_token(module, &label, &so_pin, &user_pin).map_err(|e| {
                    TestnetError::Home {
                        index,
                        source: home::HomeError::Keystore(e),
                    }
                })?;
                home::KeystoreChoice::pkcs11(module.clone(), label)
            }
            // The passphrase is 24 random bytes: no stretching adds to 192 bits of entropy,
            // and Argon2id's recommended 19 MiB and two passes only slowed each node's start
            // (about 1 s of CPU for a 50-node network).
            None => home::KeystoreChoice::Soft {
                kdf: dta_hsm::KdfParams {
                    memory_kib: 256,
                    iterations: 1,
                    ..dta_hsm::KdfParams::recommended()
                },
                insecure_passphrase: false,
            },
        };
        let report = home::init(
            &home_dir,
            &format!("node-{index}"),
            false,
            home::SecretFiles {
                passphrase_file: Some(passphrase.clone()),
                pin_file: config.pkcs11_module.as_ref().map(|_| pin.clone()),
            },
            keystore,
        )
        .map_err(|source| match source {
            home::HomeError::Exists(path) => TestnetError::Invalid(format!(
                "{path} already holds a dta node that is not part of a testnet: remove it, \
                 or give `dta testnet up` another --dir"
            )),
            source => TestnetError::Home { index, source },
        })?;
        let mut node_config = Config::load(&home_dir).map_err(|e| TestnetError::Home {
            index,
            source: e.into(),
        })?;
        node_config.roles = vec![role_of(index).to_owned()];
        // mDNS only inside a LAN testnet's namespaces, never on the machine's own link.
        node_config.mdns = config.lan;
        node_config.save(&home_dir).map_err(io(&home_dir))?;
        homes.push(home_dir);
        identities.push(report.identity);
        progress(&format!("home {}/{} created", index + 1, config.nodes));
    }
    // The principals are the testnet's M-Pin authentication servers: every fiduciary, as a
    // trust authority, issues server-secret shares to them.
    let principals: Vec<String> = identities[..config.principals].to_vec();
    for (index, home_dir) in homes.iter().enumerate() {
        if role_of(index) == "fiduciary" {
            let mut node_config = Config::load(home_dir).map_err(|e| TestnetError::Home {
                index,
                source: e.into(),
            })?;
            node_config.mpin_servers = principals.clone();
            node_config.save(home_dir).map_err(io(home_dir))?;
        }
    }
    let lan = if config.lan {
        let tag = hex::encode(dta_crypto::Secret::<3>::random().expose());
        progress("making the LAN: a bridge namespace and one namespace per node");
        let lan = lan::create(&tag, config.nodes)?;
        made.namespaces = lan.namespaces();
        Some(lan)
    } else {
        None
    };
    let namespace_of = |index: usize| lan.as_ref().map(|l| l.nodes[index].clone());
    let fiduciaries: Vec<&String> = (0..config.nodes)
        .filter(|i| role_of(*i) == "fiduciary")
        .map(|i| &identities[i])
        .collect();
    // Each node's whole command line, kept in testnet.json so that a node can be started
    // again the same way.
    let command_of = |index: usize, bootstrap: Option<&str>| -> Vec<String> {
        let home_dir = homes[index].display().to_string();
        let binary = config.binary.display().to_string();
        let mut command: Vec<String> = match namespace_of(index) {
            // On the LAN: its own address, fixed ports (each namespace has its own), mDNS on,
            // no bootstrap address.
            Some(namespace) => vec![
                "ip".into(),
                "netns".into(),
                "exec".into(),
                namespace,
                binary,
                "run".into(),
                "--home".into(),
                home_dir,
                "--listen".into(),
                format!("/ip4/{}/tcp/7071", lan::address(index)),
                "--api".into(),
                "127.0.0.1:7070".into(),
            ],
            None => vec![
                binary,
                "run".into(),
                "--home".into(),
                home_dir,
                "--listen".into(),
                "/ip4/127.0.0.1/tcp/0".into(),
                "--api".into(),
                "127.0.0.1:0".into(),
                "--no-mdns".into(),
            ],
        };
        command.extend(["--log-format".into(), "json".into()]);
        if let Some(address) = bootstrap.filter(|_| lan.is_none()) {
            command.extend(["--bootstrap".into(), address.to_owned()]);
        }
        if role_of(index) == "principal" {
            command.extend(["--plugin".into(), "safeguardsecret".into()]);
            for fiduciary in &fiduciaries {
                command.extend(["--fiduciary".into(), (*fiduciary).clone()]);
            }
            if let Some(t) = config.threshold {
                command.extend(["--threshold".into(), t.to_string()]);
            }
        }
        command
    };
    let mut commands: Vec<Vec<String>> = Vec::with_capacity(config.nodes);
    let mut start = |index: usize, bootstrap: Option<&str>| -> Result<u32, TestnetError> {
        let command = command_of(index, bootstrap);
        let pid = spawn_node(&command, &homes[index])?;
        made.processes.push((pid, homes[index].clone()));
        commands.push(command);
        Ok(pid)
    };
    let mut pids = vec![start(0, None)?];
    let first = wait_for_node_file(&homes[0], "node-0").await?;
    let bootstrap = format!("{}/p2p/{}", first.listen_addrs[0], first.peer_id);
    progress("node-0 is up; starting the others");
    for index in 1..config.nodes {
        pids.push(start(index, Some(&bootstrap))?);
    }
    let mut files = Vec::with_capacity(config.nodes);
    for (index, home_dir) in homes.iter().enumerate() {
        files.push(wait_for_node_file(home_dir, &format!("node-{index}")).await?);
    }
    // A node started again must be found where it was, and must find others even when the
    // one it bootstrapped from is down: on loopback its recorded command line keeps the ports
    // it got and bootstraps from several others.
    if lan.is_none() {
        let dial: Vec<String> = files
            .iter()
            .map(|f| format!("{}/p2p/{}", f.listen_addrs[0], f.peer_id))
            .collect();
        for (index, file) in files.iter().enumerate() {
            let others: Vec<String> = (0..dial.len())
                .filter(|other| *other != index)
                .take(BOOTSTRAP_PEERS)
                .map(|other| dial[other].clone())
                .collect();
            commands[index] = pinned_command(&commands[index], file, &others);
        }
    }
    let mut nodes = Vec::with_capacity(config.nodes);
    for (index, (home_dir, file)) in homes.iter().zip(files).enumerate() {
        let name = format!("node-{index}");
        nodes.push(TestnetNode {
            name,
            roles: vec![role_of(index).to_owned()],
            identity: file.identity,
            peer_id: file.peer_id,
            api: file.api,
            pid: pids[index],
            home: home_dir.clone(),
            namespace: namespace_of(index),
            command: commands[index].clone(),
        });
    }
    let testnet = TestnetFile {
        nodes,
        binary: config.binary.clone(),
        namespaces: lan.as_ref().map(lan::Lan::namespaces).unwrap_or_default(),
    };
    made.files.push(dir.join(TESTNET_FILE));
    save(dir, &testnet)?;
    progress(&format!(
        "{} nodes running; waiting for full identity knowledge",
        config.nodes
    ));
    wait_for_knowledge(dir, &testnet, progress).await?;
    Ok(testnet)
}

/// How many other nodes a loopback node's recorded command line bootstraps from.
pub const BOOTSTRAP_PEERS: usize = 3;

/// A command line that starts a node again as it runs now: on the listen addresses and API
/// port it got (it was started on port 0), bootstrapping from `bootstrap`.
fn pinned_command(command: &[String], running: &NodeFile, bootstrap: &[String]) -> Vec<String> {
    let api = running
        .api
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut pinned = Vec::with_capacity(command.len() + 2 * bootstrap.len());
    let mut args = command.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" | "--bootstrap" => {
                args.next();
            }
            "--api" => {
                args.next();
                pinned.extend(["--api".to_owned(), api.clone()]);
            }
            _ => pinned.push(arg.clone()),
        }
    }
    for address in &running.listen_addrs {
        pinned.extend(["--listen".to_owned(), address.clone()]);
    }
    for address in bootstrap {
        pinned.extend(["--bootstrap".to_owned(), address.clone()]);
    }
    pinned
}

/// Starts a node's command line, its output appended to `HOME/log` (mode 0600 like every file
/// of a home), in a process group of its own (so it outlives this command and its terminal);
/// its pid.
fn spawn_node(command: &[String], home_dir: &Path) -> Result<u32, TestnetError> {
    use std::os::unix::fs::OpenOptionsExt;
    let log_path = home_dir.join("log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(home::FILE_MODE)
        .open(&log_path)
        .map_err(io(&log_path))?;
    let err = log.try_clone().map_err(io(&log_path))?;
    let (program, args) = command
        .split_first()
        .ok_or_else(|| TestnetError::Invalid("an empty command line".into()))?;
    let mut process = Command::new(program);
    process
        .args(args)
        .env_remove("DTA_API")
        .env_remove("DTA_HOME")
        .env_remove("DTA_PASSPHRASE")
        .env_remove("DTA_PKCS11_PIN")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err);
    std::os::unix::process::CommandExt::process_group(&mut process, 0);
    let child = process.spawn().map_err(io(Path::new(program)))?;
    Ok(child.id())
}

/// Stops one node of a testnet (SIGTERM, or SIGKILL for a crash) and waits until it is gone.
pub async fn stop_node(dir: &Path, name: &str, crash: bool) -> Result<(), TestnetError> {
    let testnet = load(dir)?;
    let node = find(&testnet, name)?;
    if !is_our_node(node.pid, &node.home) {
        return Err(TestnetError::Invalid(format!("{name} is not running")));
    }
    let signal = if crash { "-KILL" } else { "-TERM" };
    let _ = Command::new("kill")
        .args([signal, &node.pid.to_string()])
        .status();
    let started = Instant::now();
    // Its command line empties when its memory goes, before its files (the database's lock
    // among them) are closed: it is gone only once it has exited.
    while is_our_node(node.pid, &node.home) || !has_exited(node.pid) {
        if started.elapsed() > Duration::from_secs(15) {
            return Err(TestnetError::Invalid(format!("{name} did not stop")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Whether process `pid` is gone or a zombie with every thread exited: only then are its
/// files closed (the leader thread turns zombie while other threads may still hold them).
fn has_exited(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return true;
    };
    tasks.flatten().all(|task| {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            return true;
        };
        // `tid (comm) state ...`: the state follows the last ')', as comm may hold one.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_none_or(|state| matches!(state, 'Z' | 'X' | 'x'))
    })
}

/// Starts a stopped node again with its recorded command line; testnet.json gets its new pid
/// and API.
pub async fn restart_node(dir: &Path, name: &str) -> Result<TestnetNode, TestnetError> {
    let mut testnet = load(dir)?;
    let node = find(&testnet, name)?.clone();
    if is_our_node(node.pid, &node.home) {
        return Err(TestnetError::Invalid(format!("{name} is running")));
    }
    // A node killed outright leaves its node.json behind.
    let node_file = node.home.join("node.json");
    if node_file.exists() {
        std::fs::remove_file(&node_file).map_err(io(&node_file))?;
    }
    let pid = spawn_node(&node.command, &node.home)?;
    let file = wait_for_node_file(&node.home, name).await?;
    let entry = testnet
        .nodes
        .iter_mut()
        .find(|n| n.name == name)
        .ok_or_else(|| TestnetError::Invalid(format!("no node {name:?}")))?;
    entry.pid = pid;
    entry.api = file.api;
    let updated = entry.clone();
    save(dir, &testnet)?;
    Ok(updated)
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

async fn wait_for_node_file(home_dir: &Path, name: &str) -> Result<NodeFile, TestnetError> {
    let path = home_dir.join("node.json");
    let started = Instant::now();
    let limit = Duration::from_secs(60);
    while started.elapsed() < limit {
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(file) = serde_json::from_str::<NodeFile>(&text)
        {
            return Ok(file);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A failed `up` keeps the log in DIR/logs; a failed restart leaves it in the home.
    let log = match home_dir.parent() {
        Some(dir) if !dir.join(TESTNET_FILE).exists() => kept_log(dir, name),
        _ => home_dir.join("log"),
    };
    Err(TestnetError::NotStarted {
        name: name.to_owned(),
        seconds: limit.as_secs(),
        log: log.display().to_string(),
    })
}

/// How many entries a node's `/v2/{what}` lists (`identities`, `peers`, `orders`). A node in
/// a namespace is asked from inside it, by the `dta` client run there.
async fn count(
    client: &reqwest::Client,
    binary: &Path,
    node: &TestnetNode,
    what: &str,
) -> Option<usize> {
    let body: serde_json::Value = match &node.namespace {
        None => {
            let url = format!("{}/v2/{what}", node.api);
            client.get(url).send().await.ok()?.json().await.ok()?
        }
        Some(namespace) => {
            let command: &[&str] = match what {
                "orders" => &["order", "list"],
                other => &[other][..],
            };
            let output = tokio::process::Command::new("ip")
                .args(["netns", "exec", namespace])
                .arg(binary)
                .args(command)
                .args(["--api", &node.api, "--json"])
                .env_remove("DTA_API")
                .env_remove("DTA_HOME")
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .await
                .ok()?;
            serde_json::from_slice(&output.stdout).ok()?
        }
    };
    body.as_array().map(Vec::len)
}

async fn wait_for_knowledge(
    dir: &Path,
    testnet: &TestnetFile,
    progress: &mut impl FnMut(&str),
) -> Result<(), TestnetError> {
    let client = reqwest::Client::new();
    let expected = testnet.nodes.len();
    let started = Instant::now();
    let mut last = usize::MAX;
    let mut last_counts = Vec::new();
    while started.elapsed() < KNOWLEDGE_TIMEOUT {
        // All nodes at once: asked one after the other, a round over 50 busy nodes took
        // seconds, and full knowledge was seen that much later than it happened.
        let counts = futures::future::join_all(
            testnet
                .nodes
                .iter()
                .map(|node| count(&client, &testnet.binary, node, "identities")),
        )
        .await;
        let complete = counts.iter().filter(|c| **c >= Some(expected)).count();
        last_counts = counts.clone();
        if complete != last {
            progress(&format!(
                "{complete}/{expected} nodes know every identity ({:.1} s)",
                started.elapsed().as_secs_f64()
            ));
            last = complete;
        }
        if complete == expected {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let lagging: Vec<String> = testnet
        .nodes
        .iter()
        .zip(&last_counts)
        .filter(|(_, known)| **known < Some(expected))
        .map(|(node, known)| match known {
            Some(known) => format!("{} knows {known} of {expected}", node.name),
            None => format!("{} does not answer", node.name),
        })
        .collect();
    Err(TestnetError::Knowledge {
        waited: KNOWLEDGE_TIMEOUT,
        lagging: lagging.join(", "),
        logs: logs_dir(dir).display().to_string(),
    })
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
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| TestnetError::Invalid(e.to_string()))?;
    let mut out = Vec::with_capacity(testnet.nodes.len());
    for node in &testnet.nodes {
        let running = is_our_node(node.pid, &node.home);
        let peers = if running {
            count(&client, &testnet.binary, node, "peers").await
        } else {
            None
        };
        out.push(NodeStatus {
            name: node.name.clone(),
            roles: node.roles.clone(),
            alive: running && peers.is_some(),
            peers,
            identities: if running {
                count(&client, &testnet.binary, node, "identities").await
            } else {
                None
            },
            orders: if running {
                count(&client, &testnet.binary, node, "orders").await
            } else {
                None
            },
        });
    }
    Ok(out)
}

/// What `down` did.
#[derive(Debug, Clone, Serialize)]
pub struct DownReport {
    /// Nodes stopped by SIGTERM.
    pub stopped: usize,
    /// Nodes that had to be killed.
    pub killed: usize,
    /// Nodes that were not running any more.
    pub gone: usize,
    /// Where the nodes' logs were kept (none with [`Logs::Purge`]).
    pub logs: Option<PathBuf>,
}

/// What `down` does with the nodes' logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logs {
    /// Keep each node's log as `DIR/logs/NODE.log`.
    Keep,
    /// Remove them with the homes (and any kept before).
    Purge,
}

/// How long stopping processes may take before they are killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

fn signal(name: &str, pid: u32) {
    let _ = Command::new("kill")
        .args([name, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Where the logs of nodes that were taken down are kept.
pub fn logs_dir(dir: &Path) -> PathBuf {
    dir.join("logs")
}

fn kept_log(dir: &Path, name: &str) -> PathBuf {
    logs_dir(dir).join(format!("{name}.log"))
}

/// Moves a home's log to `DIR/logs/NAME.log` (NAME: the home's directory name), if it has one.
fn keep_log(dir: &Path, home_dir: &Path) {
    let log = home_dir.join("log");
    let Some(name) = home_dir.file_name() else {
        return;
    };
    if log.exists() && std::fs::create_dir_all(logs_dir(dir)).is_ok() {
        let _ = std::fs::rename(&log, kept_log(dir, &name.to_string_lossy()));
    }
}

/// Stops the testnet's processes (only those `up` started) and removes what `up` made; the
/// nodes' logs are kept in `DIR/logs/` unless `logs` says purge.
pub async fn down(dir: &Path, logs: Logs) -> Result<DownReport, TestnetError> {
    let testnet = load(dir)?;
    let mut report = DownReport {
        stopped: 0,
        killed: 0,
        gone: 0,
        logs: None,
    };
    let running: Vec<&TestnetNode> = testnet
        .nodes
        .iter()
        .filter(|n| is_our_node(n.pid, &n.home))
        .collect();
    report.gone = testnet.nodes.len() - running.len();
    for node in &running {
        signal("-TERM", node.pid);
    }
    let started = Instant::now();
    while started.elapsed() < STOP_TIMEOUT && running.iter().any(|n| is_our_node(n.pid, &n.home)) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for node in &running {
        if is_our_node(node.pid, &node.home) {
            signal("-KILL", node.pid);
            report.killed += 1;
        } else {
            report.stopped += 1;
        }
    }
    lan::remove(&testnet.namespaces);
    for node in &testnet.nodes {
        if node.home.starts_with(dir) {
            if logs == Logs::Keep {
                keep_log(dir, &node.home);
            }
            std::fs::remove_dir_all(&node.home).map_err(io(&node.home))?;
        }
    }
    for file in [TESTNET_FILE, "passphrase", "pkcs11-pin"] {
        let path = dir.join(file);
        if path.exists() {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    let kept = logs_dir(dir);
    match logs {
        Logs::Keep if kept.exists() => report.logs = Some(kept),
        Logs::Keep => {}
        Logs::Purge if kept.exists() => {
            std::fs::remove_dir_all(&kept).map_err(io(&kept))?;
        }
        Logs::Purge => {}
    }
    Ok(report)
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

/// One node of the testnet in `dir`, by name (`node-3`) or index (`3`): how to reach it.
pub fn node(dir: &Path, name: &str) -> Result<TestnetNode, TestnetError> {
    find(&load(dir)?, name).cloned()
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

    #[test]
    fn a_restart_command_keeps_the_ports_and_bootstraps_from_the_others() {
        let started: Vec<String> = [
            "dta",
            "run",
            "--home",
            "/h",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            "127.0.0.1:0",
            "--no-mdns",
            "--bootstrap",
            "/ip4/127.0.0.1/tcp/1/p2p/A",
            "--plugin",
            "safeguardsecret",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        let running = NodeFile {
            identity: "I".into(),
            peer_id: "P".into(),
            api: "http://127.0.0.1:4242".into(),
            listen_addrs: vec!["/ip4/127.0.0.1/tcp/5151".into()],
            pid: 1,
            name: "node-1".into(),
            roles: vec!["fiduciary".into()],
            namespace: None,
        };
        let others = [
            "/ip4/127.0.0.1/tcp/1/p2p/A".into(),
            "/ip4/127.0.0.1/tcp/2/p2p/B".into(),
        ];
        assert_eq!(
            pinned_command(&started, &running, &others),
            [
                "dta",
                "run",
                "--home",
                "/h",
                "--api",
                "127.0.0.1:4242",
                "--no-mdns",
                "--plugin",
                "safeguardsecret",
                "--listen",
                "/ip4/127.0.0.1/tcp/5151",
                "--bootstrap",
                "/ip4/127.0.0.1/tcp/1/p2p/A",
                "--bootstrap",
                "/ip4/127.0.0.1/tcp/2/p2p/B",
            ]
        );
    }
}
