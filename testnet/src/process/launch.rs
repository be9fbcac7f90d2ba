//! Starting processes: `up` (and undoing a launch that failed) and `restart_node`.
//!
//! Every node is a `dta run` in a process group of its own, its output appended to its home's
//! `log`; its whole command line goes into `testnet.json`, so that it starts again the same
//! way. Stopping them is `stop`'s.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dta_node::NodeFile;
use dta_node::config::Config;
use dta_node::home;
use futures::StreamExt;

use super::stop::{STOP_TIMEOUT, has_exited, keep_log, signal};
use super::{
    Placement, RouterProcess, TESTNET_FILE, TestnetError, TestnetFile, TestnetNode, find, io,
    is_our_node, kept_log, lan, load, logs_dir, router, save, sites,
};

/// How long `up` waits for every node to be ready (see `wait_until_ready`), at least; a
/// testnet of more than 400 nodes gets [`READY_TIME_PER_NODE`] for each.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// How long `up` waits for every node of a large testnet to be ready, per node: on 2 cores, a
/// thousand nodes took 0.6 to 1 s of CPU each until ready.
pub const READY_TIME_PER_NODE: Duration = Duration::from_millis(300);

/// Nodes asked at once whether they are ready. Asked all at once (two calls each), a thousand
/// busy nodes answered none of the calls for two minutes; 64 at a time, and only those not yet
/// found ready, they were all found ready 29 s after the last one started.
pub const READINESS_CALLS_IN_FLIGHT: usize = 64;

fn ready_timeout(nodes: usize) -> Duration {
    let per_node = READY_TIME_PER_NODE.saturating_mul(u32::try_from(nodes).unwrap_or(u32::MAX));
    READY_TIMEOUT.max(per_node)
}

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
    /// Where the nodes run.
    pub placement: Placement,
    /// Nodes (by index) that play a role dishonestly, and how (`dta run --misbehave`): the
    /// binary must be a test build that can (`dta-byzantine`).
    pub misbehave: std::collections::BTreeMap<usize, String>,
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
    /// The WAN router.
    router: Option<RouterProcess>,
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
        if let Some(router) = &self.router {
            router.stop().await;
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
    match config.placement {
        Placement::Loopback => {}
        Placement::Lan => lan::check(config.nodes)?,
        Placement::Sites { sites, .. } => sites::check(sites, config.nodes)?,
    }
    if let Some(index) = config.misbehave.keys().find(|i| **i >= config.nodes) {
        return Err(TestnetError::Invalid(format!(
            "node-{index} cannot misbehave: there are {} nodes",
            config.nodes
        )));
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
    dta_node::private::write_private_file(
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
        dta_node::private::write_private_file(&pin, user_pin.as_bytes()).map_err(io(&pin))?;
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
        node_config.mdns = config.placement != Placement::Loopback;
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
    let tag = hex::encode(dta_crypto::Secret::<3>::random().expose());
    // Each node's namespace and address, when the nodes run in namespaces.
    let spread: Option<(Vec<String>, Vec<String>)> = match &config.placement {
        Placement::Loopback => None,
        Placement::Lan => {
            progress("making the LAN: a bridge namespace and one namespace per node");
            let lan = lan::create(&tag, config.nodes)?;
            made.namespaces = lan.namespaces();
            let addresses = (0..config.nodes).map(lan::address).collect();
            Some((lan.nodes, addresses))
        }
        Placement::Sites { sites: count, link } => {
            progress(&format!(
                "making {count} sites and a WAN router ({link}) between them"
            ));
            let made_sites = sites::create(&tag, *count, config.nodes)?;
            made.namespaces = made_sites.namespaces();
            let settings = crate::wan::link::WanSettings {
                sites: *count,
                link: *link,
                ..Default::default()
            };
            made.files.push(dir.join(router::SETTINGS_FILE));
            made.router =
                Some(router::start(dir, &config.binary, &made_sites.router, &settings).await?);
            let addresses = (0..config.nodes)
                .map(|index| sites::address(index, *count))
                .collect();
            Some((made_sites.nodes, addresses))
        }
    };
    let in_namespaces = spread.is_some();
    // Only nodes of one LAN find each other by mDNS alone: nodes on loopback or in other sites
    // need an address to start from.
    let bootstraps = !matches!(config.placement, Placement::Lan);
    let namespace_of = |index: usize| spread.as_ref().map(|(n, _)| n[index].clone());
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
            // In a namespace: its own address, fixed ports (each namespace has its own), mDNS
            // on.
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
                format!(
                    "/ip4/{}/tcp/7071",
                    spread
                        .as_ref()
                        .map(|(_, a)| a[index].as_str())
                        .unwrap_or_default()
                ),
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
        if let Some(address) = bootstrap.filter(|_| bootstraps) {
            command.extend(["--bootstrap".into(), address.to_owned()]);
        }
        if let Some(misbehaviour) = config.misbehave.get(&index) {
            command.extend(["--misbehave".into(), misbehaviour.clone()]);
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
    let first = wait_for_node_file(&homes[0], "node-0", Some(pids[0])).await?;
    let bootstrap = format!("{}/p2p/{}", first.listen_addrs[0], first.peer_id);
    // A node takes at most `max_connections` at once: in a large testnet the first nodes
    // bootstrap from node-0 and the others from one of them each, so that no node is dialed
    // by every other at once.
    let seeds = (config.nodes - 1).min(SEED_NODES);
    progress("node-0 is up; starting the others");
    for index in 1..=seeds {
        pids.push(start(index, Some(&bootstrap))?);
    }
    let mut seed_addresses = Vec::with_capacity(seeds);
    if config.nodes > seeds + 1 {
        for (index, home) in homes.iter().enumerate().take(seeds + 1).skip(1) {
            let seed =
                wait_for_node_file(home, &format!("node-{index}"), Some(pids[index])).await?;
            seed_addresses.push(format!("{}/p2p/{}", seed.listen_addrs[0], seed.peer_id));
        }
    }
    // At most `STARTING_AT_ONCE` nodes start at a time: a node is started once the one that
    // many places before it is up.
    let mut files = Vec::with_capacity(config.nodes);
    for index in seeds + 1..config.nodes {
        while index - files.len() > STARTING_AT_ONCE {
            let up = files.len();
            files
                .push(wait_for_node_file(&homes[up], &format!("node-{up}"), Some(pids[up])).await?);
        }
        let seed = &seed_addresses[index % seeds];
        pids.push(start(index, Some(seed))?);
    }
    while files.len() < config.nodes {
        let up = files.len();
        files.push(wait_for_node_file(&homes[up], &format!("node-{up}"), Some(pids[up])).await?);
    }
    // A node started again must be found where it was, and must find others even when the
    // one it bootstrapped from is down: on loopback its recorded command line keeps the ports
    // it got and bootstraps from several others.
    if !in_namespaces {
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
        namespaces: made.namespaces.clone(),
        router: made.router.clone(),
    };
    made.files.push(dir.join(TESTNET_FILE));
    save(dir, &testnet)?;
    progress(&format!(
        "{} nodes running; waiting until each is ready",
        config.nodes
    ));
    wait_until_ready(dir, &testnet, progress).await?;
    Ok(testnet)
}

/// How many nodes bootstrap from node-0; the others bootstrap from one of them each.
pub const SEED_NODES: usize = 16;

/// How many nodes start at once. Started all at once, a thousand nodes drove the load
/// average to 2,800 and a node's start past a minute; each node's start is mostly its own
/// CPU work (keystore, database, first connections), which waiting nodes only delay.
pub const STARTING_AT_ONCE: usize = 32;

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

/// Starts a node's command line, its output appended to `HOME/log`, with one runtime worker
/// thread and an allocator set for many small nodes on one machine; its pid.
///
/// The nodes of a testnet share one machine's cores, so a worker per core in each (tokio's
/// default) only adds threads to switch between and their stacks and allocator caches. With
/// one, `dta bench testnet` (three alternating pairs, at 100 and 250 nodes) used 2 to 10 %
/// less CPU to get ready, and its nodes settled with 0.3 to 0.5 MiB less anonymous memory.
/// See [`NODE_ALLOCATOR_OPTIONS`] for the allocator.
fn spawn_node(command: &[String], home_dir: &Path) -> Result<u32, TestnetError> {
    spawn_detached(
        command,
        &home_dir.join("log"),
        &[
            ("TOKIO_WORKER_THREADS", NODE_WORKER_THREADS),
            (ALLOCATOR_OPTIONS_VARIABLE, NODE_ALLOCATOR_OPTIONS),
        ],
    )
}

/// Runtime worker threads of each node of a testnet (see [`spawn_node`]).
const NODE_WORKER_THREADS: &str = "1";

/// The variable the `dta` command's allocator (jemalloc) reads its options from, on top of
/// those the binary embeds. A command without jemalloc (`dta-byzantine`) ignores it.
pub const ALLOCATOR_OPTIONS_VARIABLE: &str = "_RJEM_MALLOC_CONF";

/// jemalloc's options for each node of a testnet: slabs of one page for blocks of at most
/// 4 KiB (`slab_sizes`), and thread caches of a quarter the slots (`lg_tcache_nslots_mul`).
///
/// A node keeps a partly used slab for every size of block it allocates, and jemalloc's slabs
/// of small blocks take up to seven pages whether few of their blocks are in use or many; an
/// idle node of a testnet holds a few of each. `dta testnet up --nodes 100`, anonymous memory
/// per node 40 s later, alternating: 8.14 and 7.99 MiB without, 7.58, 7.62 and 7.70 with,
/// for 3 % more page faults and the same CPU. Taking larger blocks into one-page slabs too
/// (up to 16 KiB) or out of the thread caches (`tcache_max:4096`) saved another 0.5 to
/// 0.7 MiB, but each slab of a large block then held one block: freed, its pages went back
/// and the next such block faulted them in again (24 to 45 % more page faults, and a
/// 1,000-node testnet took 16 % more CPU to get ready). A node run on its own keeps
/// jemalloc's defaults: the custody benchmark of one process ran 5 to 10 % fewer order
/// cycles a second with one-page slabs.
pub const NODE_ALLOCATOR_OPTIONS: &str = "slab_sizes:1-4096:1,lg_tcache_nslots_mul:-2";

/// Starts a command line with `env` added to its environment, its output appended to
/// `log_path` (mode 0600 like every file of a home), in a process group of its own (so it
/// outlives this command and its terminal); its pid.
pub(super) fn spawn_detached(
    command: &[String],
    log_path: &Path,
    env: &[(&str, &str)],
) -> Result<u32, TestnetError> {
    use std::os::unix::fs::OpenOptionsExt;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(dta_node::private::FILE_MODE)
        .open(log_path)
        .map_err(io(log_path))?;
    let err = log.try_clone().map_err(io(log_path))?;
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
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err);
    std::os::unix::process::CommandExt::process_group(&mut process, 0);
    let mut child = process.spawn().map_err(io(Path::new(program)))?;
    let pid = child.id();
    // Reaped when it ends, so that a long run that kills and restarts nodes (a chaos run)
    // leaves no zombies behind; a command that only starts nodes exits before they do.
    std::thread::spawn(move || drop(child.wait()));
    Ok(pid)
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
    let file = wait_for_node_file(&node.home, name, Some(pid)).await?;
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

/// How many of its last log lines an error shows for a node that did not start.
const LOG_ENDING_LINES: usize = 8;

/// Waits for the node of `home_dir` to write its `node.json`; with the `pid` it runs as, stops
/// waiting as soon as that process is gone (it failed to start: its log says why).
async fn wait_for_node_file(
    home_dir: &Path,
    name: &str,
    pid: Option<u32>,
) -> Result<NodeFile, TestnetError> {
    let path = home_dir.join("node.json");
    let started = Instant::now();
    let limit = Duration::from_secs(60);
    while started.elapsed() < limit {
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(file) = serde_json::from_str::<NodeFile>(&text)
        {
            return Ok(file);
        }
        if pid.is_some_and(has_exited) {
            break;
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
        seconds: started.elapsed().as_secs(),
        log: log.display().to_string(),
        ending: super::logs::ending(name, &home_dir.join("log"), LOG_ENDING_LINES),
    })
}

/// Waits until every node is ready: connected to its target number of peers, or in a testnet
/// no larger than that to every other node and knowing every identity. Nodes do not learn
/// every identity of a larger network; they look them up when they need them, so there a node
/// is ready once it has announced its own identity in the DHT as well: until then an order
/// naming it is refused as unknown (the last nodes of a 250-node testnet were, in two of
/// eleven benchmark runs, for as long as their first announcement took under load).
async fn wait_until_ready(
    dir: &Path,
    testnet: &TestnetFile,
    progress: &mut impl FnMut(&str),
) -> Result<(), TestnetError> {
    let wanted = Wanted::of(testnet.nodes.len());
    let started = Instant::now();
    let timeout = ready_timeout(testnet.nodes.len());
    let mut last = usize::MAX;
    // What each node said last; a node found ready is not asked again.
    let mut said: Vec<Said> = testnet
        .nodes
        .iter()
        .map(|_| Err("not asked yet".to_owned()))
        .collect();
    while started.elapsed() < timeout {
        // A bounded number of nodes at once: one after the other, a round over 50 busy nodes
        // took seconds, and readiness was seen that much later than it happened.
        let waiting: Vec<usize> = (0..said.len())
            .filter(|i| !wanted.met_by(&said[*i]))
            .collect();
        let answers: Vec<(usize, Said)> =
            futures::stream::iter(waiting)
                .map(|index| async move {
                    (index, health(&testnet.binary, &testnet.nodes[index]).await)
                })
                .buffer_unordered(READINESS_CALLS_IN_FLIGHT)
                .collect()
                .await;
        for (index, answer) in answers {
            said[index] = answer;
        }
        let ready = said.iter().filter(|s| wanted.met_by(s)).count();
        if ready != last {
            progress(&format!(
                "{ready}/{} nodes ready ({:.1} s)",
                testnet.nodes.len(),
                started.elapsed().as_secs_f64()
            ));
            last = ready;
        }
        if ready == testnet.nodes.len() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let lagging: Vec<String> = testnet
        .nodes
        .iter()
        .zip(&said)
        .filter(|(_, said)| !wanted.met_by(said))
        .map(|(node, said)| match said {
            Ok(health) => format!(
                "{} knows {} identities and has {} peers{}",
                node.name,
                health.identities,
                health.peers,
                if wanted.announced && !health.announced {
                    ", its identity not announced in the DHT yet"
                } else {
                    ""
                }
            ),
            Err(why) => format!("{} does not answer ({why})", node.name),
        })
        .collect();
    Err(TestnetError::NotReady {
        waited: timeout,
        wanted: wanted.to_string(),
        lagging: lagging.join(", "),
        logs: logs_dir(dir).display().to_string(),
    })
}

/// What readiness asks of a node's `/v2/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Health {
    identities: usize,
    peers: usize,
    announced: bool,
}

/// What a node said of itself, or why it did not say.
type Said = Result<Health, String>;

/// A node's `/v2/health`, asked with a 5 s limit.
async fn health(binary: &Path, node: &TestnetNode) -> Said {
    let client = node.client(binary).with_timeout(Duration::from_secs(5));
    let body = client
        .get("/v2/health")
        .await
        .map_err(|err| super::error_chain(&err))?;
    let count = |field: &str| {
        body[field]
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| format!("/v2/health has no {field} count"))
    };
    Ok(Health {
        identities: count("identities")?,
        peers: count("peers")?,
        announced: body["announced"]
            .as_bool()
            .ok_or_else(|| "/v2/health does not say whether it announced".to_owned())?,
    })
}

/// What makes a node of a testnet ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Wanted {
    identities: usize,
    peers: usize,
    /// Its identity announced in the DHT.
    announced: bool,
}

impl Wanted {
    /// For a testnet of `nodes`.
    fn of(nodes: usize) -> Self {
        let others = nodes.saturating_sub(1);
        let target = dta_protocol::network::DEFAULT_TARGET_PEERS;
        // A small testnet is a full mesh where every node knows every identity, as before; in
        // a larger one a node knows those of the peers it kept, and others find it in the DHT.
        let mesh = others <= target;
        Self {
            identities: if mesh { others + 1 } else { 1 },
            peers: others.min(target),
            announced: !mesh,
        }
    }

    fn met_by(&self, said: &Said) -> bool {
        said.as_ref().is_ok_and(|health| {
            health.identities >= self.identities
                && health.peers >= self.peers
                && (health.announced || !self.announced)
        })
    }
}

impl std::fmt::Display for Wanted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} peers and {} identities", self.peers, self.identities)?;
        if self.announced {
            write!(f, ", its identity announced in the DHT")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_of_a_larger_testnet_is_ready_once_others_can_find_it_in_the_dht() {
        let health = |peers: usize, announced: bool| -> Said {
            Ok(Health {
                identities: 1,
                peers,
                announced,
            })
        };
        let target = dta_protocol::network::DEFAULT_TARGET_PEERS;
        // A full mesh: every identity known, and nothing to look up.
        let small = Wanted::of(3);
        assert!(small.met_by(&Ok(Health {
            identities: 3,
            peers: 2,
            announced: false,
        })));
        assert!(
            !small.met_by(&health(2, true)),
            "knows one identity of three"
        );
        // A larger one: its target number of peers, and its identity in the DHT.
        let large = Wanted::of(target + 2);
        assert!(large.met_by(&health(target, true)));
        assert!(!large.met_by(&health(target, false)));
        assert!(!large.met_by(&health(target - 1, true)));
        assert!(!large.met_by(&Err("refused".into())));
        assert!(large.to_string().contains("announced"), "{large}");
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
            api_fingerprint: None,
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
