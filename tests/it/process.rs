//! Real `dta` processes on 127.0.0.1, driven through the CLI and the HTTP API.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use dta_node::NodeFile;
use dta_node::client::{ApiClient, Method};

const TIMEOUT: Duration = Duration::from_secs(60);

/// `dta run` arguments for a node on 127.0.0.1 with free ports and no mDNS.
pub(crate) const RUN_ON_LOOPBACK: [&str; 6] = [
    "run",
    "--listen",
    "/ip4/127.0.0.1/tcp/0",
    "--api",
    "127.0.0.1:0",
    "--no-mdns",
];

/// The `dta` binary: `DTA_BIN`, or the one cargo built next to this test.
pub(crate) fn dta_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("DTA_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/it-HASH -> target/<profile>/dta
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .join("dta");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build -p dta-cli`) or set DTA_BIN",
        bin.display()
    );
    bin
}

pub(crate) fn dta(home: &Path) -> Command {
    let mut command = Command::new(dta_bin());
    command
        .env("DTA_PASSPHRASE", "process test passphrase")
        .env("RUST_LOG", "warn")
        .env_remove("DTA_API")
        .arg("--log-format")
        .arg("json");
    command.env("DTA_HOME", home);
    command
}

/// A client of the node of `home`, at `api`, with the home's token.
pub(crate) fn home_client(home: &Path, api: &str) -> ApiClient {
    let token = dta_node::tokens::read_token_file(&home.join(dta_node::tokens::HOME_TOKEN_FILE));
    ApiClient::new(api).with_token(token.unwrap().expect("the home's api-token"))
}

/// A raw HTTP client that sends `token` on every request, for tests of the HTTP layer itself
/// (content types, body limits, axum's own answers) past the access check.
pub(crate) fn raw_http_with(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let bearer = format!("Bearer {}", token.trim());
    headers.insert(reqwest::header::AUTHORIZATION, bearer.parse().unwrap());
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// Runs the node of an initialised `home` on loopback until the returned guard drops.
pub(crate) async fn run_home(home: &Path) -> (Running, NodeFile) {
    let running = Running(
        dta(home)
            .args(RUN_ON_LOOPBACK)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    (running, wait_for_node_file(home).await)
}

/// Kills the process group member on drop, so a failing test leaves nothing running.
pub(crate) struct Running(pub(crate) Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) async fn wait_for_node_file(home: &Path) -> NodeFile {
    let path = home.join("node.json");
    tokio::time::timeout(TIMEOUT, async {
        loop {
            if let Ok(text) = std::fs::read_to_string(&path)
                && let Ok(node) = serde_json::from_str::<NodeFile>(&text)
            {
                return node;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("node.json appears")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_find_each_other_through_bootstrap() {
    let root = tempfile::tempdir().unwrap();
    let homes: Vec<PathBuf> = (0..3).map(|i| root.path().join(format!("p{i}"))).collect();
    let mut identities = Vec::new();
    for (i, home) in homes.iter().enumerate() {
        let stdout = succeed(dta(home).args(["init", "--name", &format!("proc-{i}"), "--json"]));
        let report: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
        identities.push(report["identity"].as_str().unwrap().to_owned());
    }
    // A second init on the same home is refused and changes nothing.
    let again = dta(&homes[0])
        .args(["init", "--name", "x"])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));

    let run = |home: &Path, bootstrap: Option<&str>| {
        let mut command = dta(home);
        command.args(RUN_ON_LOOPBACK);
        if let Some(address) = bootstrap {
            command.args(["--bootstrap", address]);
        }
        Running(
            command
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let mut processes = vec![run(&homes[0], None)];
    let first = wait_for_node_file(&homes[0]).await;
    assert_eq!(first.identity, identities[0]);
    let bootstrap = format!("{}/p2p/{}", first.listen_addrs[0], first.peer_id);
    processes.push(run(&homes[1], Some(&bootstrap)));
    processes.push(run(&homes[2], Some(&bootstrap)));
    let mut peer_ids = vec![first.peer_id.clone()];
    let mut apis = vec![first.api];
    for home in &homes[1..] {
        let file = wait_for_node_file(home).await;
        peer_ids.push(file.peer_id);
        apis.push(file.api);
    }

    for (i, api) in apis.iter().enumerate() {
        let client = home_client(&homes[i], api);
        let listed = tokio::time::timeout(TIMEOUT, async {
            loop {
                let body: serde_json::Value = client
                    .call(Method::GET, "/v2/identities", None)
                    .await
                    .unwrap()
                    .body;
                let cids: Vec<String> = body
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i["cid"].as_str().unwrap().to_owned())
                    .collect();
                if cids.len() == 3 {
                    return cids;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("node {i} never listed all three identities"));
        for identity in &identities {
            assert!(listed.contains(identity), "node {i} lacks {identity}");
        }
    }

    // The CLI reads the same API through node.json.
    let output = dta(&homes[1])
        .args(["identities", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let listed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3);
    let missing = dta(&homes[1])
        .args(["identity", "show", "bafyreiaaaa", "--json"])
        .output()
        .unwrap();
    assert!(!missing.status.success());

    // A custody order through the CLI: p0 is principal and beneficiary, p1 and p2 hold
    // shares 2-of-2.
    let cli = |home: &Path, args: &[&str]| {
        let output = dta(home).args(args).output().unwrap();
        assert!(
            output.status.success(),
            "dta {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap_or_default()
    };
    let created = cli(
        &homes[0],
        &[
            "order",
            "create",
            "--reference",
            "proc",
            "--fiduciary",
            &identities[1],
            "--fiduciary",
            &identities[2],
            "--threshold",
            "2",
            "--beneficiary",
            &identities[0],
            "--secret",
            "over the wire",
            "--json",
        ],
    );
    assert_eq!(created["reference"], "proc");
    let wait_for = |args: Vec<String>, check: fn(&serde_json::Value) -> bool| {
        let home = homes[0].clone();
        async move {
            tokio::time::timeout(TIMEOUT, async {
                loop {
                    let output = dta(&home).args(&args).output().unwrap();
                    if output.status.success()
                        && let Ok(value) = serde_json::from_slice(&output.stdout)
                        && check(&value)
                    {
                        return value;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("dta {args:?} never showed the expected state"))
        }
    };
    let args = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    wait_for(args(&["order", "show", "proc", "--json"]), |v| {
        v.as_array().is_some_and(|a| {
            a.iter()
                .any(|r| r["role"] == "principal" && r["state"] == "certified")
        })
    })
    .await;
    cli(&homes[0], &["order", "release", "proc", "--json"]);
    let secret = wait_for(args(&["order", "secret", "proc", "--json"]), |v| {
        v["secret"].is_string()
    })
    .await;
    assert_eq!(secret["secret"], "over the wire");
    let audit = wait_for(args(&["audit", "proc", "--json"]), |v| v["receipts"] == 1).await;
    assert_eq!(audit["passed"], true);

    // A key the three nodes generate 2-of-3 signs from the CLI, as the README shows, and
    // `order show` lists the signature.
    cli(
        &homes[0],
        &[
            "order",
            "create",
            "--reference",
            "proc-key",
            "--plugin",
            "milagro",
            "--fiduciary",
            &identities[0],
            "--fiduciary",
            &identities[1],
            "--fiduciary",
            &identities[2],
            "--threshold",
            "2",
            "--wait",
            "--json",
        ],
    );
    let signed = cli(
        &homes[0],
        &[
            "order",
            "sign",
            "proc-key",
            "--message",
            "68656c6c6f",
            "--wait",
            "--json",
        ],
    );
    let hex_of = |field: &str| hex::decode(signed["signature"][field].as_str().unwrap()).unwrap();
    assert!(
        dta_crypto::secp256k1::verify_bip340(&hex_of("key"), b"hello", &hex_of("signature")),
        "{signed}"
    );
    let shown = dta(&homes[0])
        .args(["order", "show", "proc-key"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains(&format!(
            "signature 1: {}",
            signed["signature"]["signature"].as_str().unwrap()
        )),
        "{shown}"
    );

    // The log as a CAR archive, imported on another node; a file as a block and back.
    let files = tempfile::tempdir().unwrap();
    let car = files.path().join("proc.car");
    let exported = cli(
        &homes[0],
        &[
            "log",
            "export",
            "proc",
            "--car",
            car.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(exported["bytes"].as_u64().unwrap() > 0, "{exported}");
    let imported = cli(
        &homes[1],
        &["block", "import", car.to_str().unwrap(), "--json"],
    );
    assert_eq!(imported["roots"][0], audit["head"], "{imported}");
    let original = files.path().join("original");
    std::fs::write(&original, b"a file as a block").unwrap();
    let stored = cli(
        &homes[1],
        &["block", "put", original.to_str().unwrap(), "--json"],
    );
    let copy = files.path().join("copy");
    cli(
        &homes[1],
        &[
            "block",
            "get",
            stored["cid"].as_str().unwrap(),
            "--out",
            copy.to_str().unwrap(),
        ],
    );
    assert_eq!(std::fs::read(&copy).unwrap(), b"a file as a block");

    // The block list: bad input is refused and changes nothing; a blocked peer is cut off
    // both ways, and comes back once unblocked.
    for (args, error) in [
        (
            vec!["peers", "block", "not-a-peer"],
            "is not a libp2p peer id",
        ),
        (vec!["peers", "block", &peer_ids[0]], "cannot block itself"),
        (vec!["peers", "unblock", &peer_ids[2]], "is not blocked"),
    ] {
        let (ok, stderr) = run_to_end(dta(&homes[0]).args(&args));
        assert!(!ok && stderr.contains(error), "{args:?}: {stderr}");
    }
    let connected = |home: &Path| -> Vec<String> {
        let listed = cli(home, &["peers", "--json"]);
        listed
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["peer_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(cli(&homes[0], &["peers", "blocked", "--json"]) == serde_json::json!([]));
    cli(&homes[0], &["peers", "block", &peer_ids[1], "--json"]);
    let blocked = cli(&homes[0], &["peers", "blocked", "--json"]);
    assert_eq!(blocked[0]["peer_id"], peer_ids[1].as_str(), "{blocked}");
    assert_eq!(blocked[0]["identity"], identities[1].as_str(), "{blocked}");
    assert!(!connected(&homes[0]).contains(&peer_ids[1]));
    assert!(connected(&homes[0]).contains(&peer_ids[2]));
    // p1 keeps trying (Kademlia, gossip) and is refused: it stays apart from p0.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!connected(&homes[1]).contains(&peer_ids[0]));
    cli(&homes[0], &["peers", "unblock", &peer_ids[1], "--json"]);
    tokio::time::timeout(TIMEOUT, async {
        while !connected(&homes[0]).contains(&peer_ids[1]) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("p0 and p1 connect again once unblocked");

    // SIGTERM shuts a node down cleanly: node.json goes away and the process exits 0.
    for (mut running, home) in processes.drain(..).zip(&homes) {
        let pid = running.0.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = tokio::task::spawn_blocking(move || {
            let status = running.0.wait();
            std::mem::forget(running);
            status
        })
        .await
        .unwrap()
        .unwrap();
        assert!(status.success(), "{status:?}");
        assert!(!home.join("node.json").exists());
    }
}

/// The `dta` binary as a client of nothing in particular: no `DTA_API` or `DTA_HOME` from the
/// test's environment.
pub(crate) fn dta_client(args: &[&str]) -> Command {
    let mut command = Command::new(dta_bin());
    command
        .env_remove("DTA_API")
        .env_remove("DTA_HOME")
        .args(args);
    command
}

/// Runs the `dta` client to completion off the async workers; its output, whatever the exit.
pub(crate) async fn dta_output(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        dta_client(&args).output().unwrap()
    })
    .await
    .unwrap()
}

/// [`succeed`] off the async workers (for commands that wait on nodes of this process).
pub(crate) async fn succeed_blocking(mut command: Command) -> Vec<u8> {
    tokio::task::spawn_blocking(move || succeed(&mut command))
        .await
        .unwrap()
}

/// Runs `dta` to completion, fails the test (showing stderr) unless it succeeded, and
/// returns its stdout.
pub(crate) fn succeed(command: &mut Command) -> Vec<u8> {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Runs `dta` to completion and returns (success, stderr).
pub(crate) fn run_to_end(command: &mut Command) -> (bool, String) {
    let output = command.output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("home");
    let (ok, stderr) = run_to_end(dta(&home).args(["init", "--name", "bad-input"]));
    assert!(ok, "{stderr}");
    let config_before = std::fs::read_to_string(home.join("config.toml")).unwrap();
    let run_args = ["run", "--api", "127.0.0.1:0", "--no-mdns"];

    // A malformed multiaddr.
    let (ok, stderr) = run_to_end(
        dta(&home)
            .args(run_args)
            .args(["--listen", "/ip4/1.2.3/tcp"]),
    );
    assert!(!ok);
    assert!(
        stderr.contains("invalid multiaddr \"/ip4/1.2.3/tcp\""),
        "{stderr}"
    );

    // A wrong passphrase.
    let (ok, stderr) = run_to_end(
        dta(&home)
            .env("DTA_PASSPHRASE", "not the passphrase")
            .args(run_args)
            .args(["--listen", "/ip4/127.0.0.1/tcp/0"]),
    );
    assert!(!ok);
    assert!(stderr.contains("wrong passphrase"), "{stderr}");

    // The API port is in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let (ok, stderr) = run_to_end(dta(&home).args([
        "run",
        "--no-mdns",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--api",
        &address,
    ]));
    assert!(!ok);
    assert!(
        stderr.contains(&format!("cannot listen for the API on {address}")),
        "{stderr}"
    );
    assert!(!home.join("node.json").exists());

    // Nothing above changed the home.
    assert_eq!(
        std::fs::read_to_string(home.join("config.toml")).unwrap(),
        config_before
    );

    // A home of another version, and an unreadable config.
    std::fs::write(
        home.join("config.toml"),
        config_before.replace("version = 1", "version = 7"),
    )
    .unwrap();
    let (ok, stderr) = run_to_end(dta(&home).args(run_args));
    assert!(!ok);
    assert!(stderr.contains("is a version 7 home"), "{stderr}");
    std::fs::write(home.join("config.toml"), "version = 1\nname = [").unwrap();
    let (ok, stderr) = run_to_end(dta(&home).args(run_args));
    assert!(!ok);
    assert!(
        stderr.contains("invalid") && stderr.contains("config.toml"),
        "{stderr}"
    );

    // A directory that is not a home.
    let (ok, stderr) = run_to_end(dta(&root.path().join("nowhere")).args(run_args));
    assert!(!ok);
    assert!(stderr.contains("is not a dta home"), "{stderr}");
}

/// Every file and directory under `root` (itself included) with its size, modification time
/// and permission bits. What disappears during the walk (a running node's database deletes
/// files) is left out.
fn listing(root: &Path) -> BTreeMap<PathBuf, (u64, SystemTime, u32)> {
    let mut found = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let Ok(metadata) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if metadata.is_dir()
            && let Ok(entries) = std::fs::read_dir(&path)
        {
            pending.extend(entries.flatten().map(|entry| entry.path()));
        }
        let modified = metadata.modified().unwrap();
        let mode = metadata.permissions().mode() & 0o7777;
        found.insert(path, (metadata.len(), modified, mode));
    }
    found
}

#[test]
fn a_usage_error_of_dta_run_leaves_the_home_untouched() {
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("home");
    let (ok, stderr) = run_to_end(dta(&home).args(["init", "--name", "usage"]));
    assert!(ok, "{stderr}");
    let before = listing(&home);
    assert!(
        before
            .keys()
            .any(|path| path.starts_with(home.join("db")) && path.is_file()),
        "{before:?}"
    );
    let listen = "/ip4/127.0.0.1/tcp/0";
    let api = "127.0.0.1:0";
    for (args, error) in [
        (
            vec!["--listen", "not-a-multiaddr", "--api", api],
            "invalid multiaddr \"not-a-multiaddr\"",
        ),
        (
            vec!["--listen", listen, "--api", "nowhere"],
            "invalid API address \"nowhere\"",
        ),
        (
            vec![
                "--listen",
                listen,
                "--api",
                api,
                "--bootstrap",
                "/ip4/127.0.0.1/tcp",
            ],
            "invalid multiaddr \"/ip4/127.0.0.1/tcp\"",
        ),
        (
            vec![
                "--listen",
                listen,
                "--api",
                api,
                "--plugin",
                "no-such-plugin",
            ],
            "plugin \"no-such-plugin\" is not available",
        ),
        (
            vec!["--listen", listen, "--api", api, "--fiduciary", "not-a-cid"],
            "--fiduciary not-a-cid",
        ),
        // Misbehaviour is compiled into the test build `dta-byzantine` only.
        (
            vec![
                "--listen",
                listen,
                "--api",
                api,
                "--misbehave",
                "wrong-share",
            ],
            "this dta cannot misbehave",
        ),
    ] {
        let (ok, stderr) = run_to_end(dta(&home).args(["run", "--no-mdns"]).args(&args));
        assert!(!ok, "{args:?} started a node");
        assert!(stderr.contains(error), "{args:?}: {stderr}");
        // Not a file added, removed, written or made more open: the database was not opened.
        assert_eq!(listing(&home), before, "{args:?} changed the home");
    }
}

/// The resident size of the main thread's stack of process `pid`, in KiB.
fn main_stack_kib(pid: u32) -> u64 {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let mut lines = smaps.lines().skip_while(|line| !line.ends_with("[stack]"));
    lines
        .find_map(|line| line.strip_prefix("Rss:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a [stack] mapping with its Rss")
}

/// The value of `name` in the environment process `pid` started with.
fn environment_value(pid: u32, name: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    environ.split(|byte| *byte == 0).find_map(|entry| {
        let entry = String::from_utf8_lossy(entry);
        entry
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
            .map(str::to_owned)
    })
}

#[test]
fn the_dta_command_allocates_with_jemalloc_in_one_arena() {
    // jemalloc prints its options when asked to print its statistics at exit; the ones the
    // binary embeds must be there, read as one string (a pointer of the wrong shape would
    // leave jemalloc's defaults: four arenas per core, ten seconds before pages go back).
    let output = Command::new(dta_bin())
        .arg("--version")
        .env("_RJEM_MALLOC_CONF", "stats_print:true")
        .output()
        .unwrap();
    assert!(output.status.success());
    let stats = String::from_utf8_lossy(&output.stderr);
    for option in [
        "opt.narenas: 1\n",
        "opt.dirty_decay_ms: 0 ",
        "opt.muzzy_decay_ms: 0 ",
    ] {
        assert!(stats.contains(option), "{option:?} not in:\n{stats}");
    }
}

#[test]
fn testnet_nodes_allocator_options_are_all_taken_by_jemalloc() {
    // jemalloc skips an option it does not know with a warning on stderr and goes on with
    // its default: a misspelt one would silently undo the saving.
    let options = dta_testnet::process::NODE_ALLOCATOR_OPTIONS;
    let output = Command::new(dta_bin())
        .arg("--version")
        .env(
            dta_testnet::process::ALLOCATOR_OPTIONS_VARIABLE,
            format!("{options},stats_print:true"),
        )
        .output()
        .unwrap();
    assert!(output.status.success());
    let stats = String::from_utf8_lossy(&output.stderr);
    assert!(!stats.contains("Invalid conf"), "{stats}");
    assert!(
        stats.contains(&format!("MALLOC_CONF: \"{options},")),
        "{stats}"
    );
    for option in ["opt.narenas: 1\n", "opt.lg_tcache_nslots_mul: -2\n"] {
        assert!(stats.contains(option), "{option:?} not in:\n{stats}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_testnet_of_processes_comes_up_reports_its_status_and_goes_down() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("net");
    let dir_arg = dir.to_str().unwrap();
    let _down = crate::lan::Down(dir_arg.to_owned());
    let cli = dta_client;
    let up = succeed_blocking(cli(&[
        "testnet", "up", "--dir", dir_arg, "--nodes", "4", "--json",
    ]))
    .await;
    let testnet: serde_json::Value = serde_json::from_slice(&up).unwrap();
    let nodes = testnet["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 4);
    let roles: Vec<&str> = nodes
        .iter()
        .map(|n| n["roles"][0].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["principal", "fiduciary", "fiduciary", "beneficiary"]
    );
    let pids: Vec<u32> = nodes
        .iter()
        .map(|n| n["pid"].as_u64().unwrap() as u32)
        .collect();

    // A second testnet in the same directory is refused; the first is untouched.
    let (ok, stderr) = run_to_end(&mut cli(&["testnet", "up", "--dir", dir_arg]));
    assert!(!ok);
    assert!(stderr.contains("already holds a testnet"), "{stderr}");

    let status: serde_json::Value = serde_json::from_slice(&succeed(&mut cli(&[
        "testnet", "status", "--dir", dir_arg, "--json",
    ])))
    .unwrap();
    for node in status.as_array().unwrap() {
        assert_eq!(node["alive"], true, "{node}");
        assert_eq!(node["identities"], 4, "{node}");
        assert_eq!(node["peers"], 3, "{node}");
    }
    // A node starts on a thread that ends: its main thread's stack keeps only what parsing
    // the command line touched. In this unoptimized build the start alone takes over 2 MiB of
    // stack, which the main thread would keep for good; the command line about 1 MiB.
    for pid in &pids {
        let kib = main_stack_kib(*pid);
        assert!(
            kib < 1536,
            "node {pid}: its main thread's stack holds {kib} KiB"
        );
        // Nodes that share a machine run one runtime worker each, not one per core (tokio
        // reads the number from its environment; its blocking threads bear the same name, so
        // the threads are not counted).
        assert_eq!(
            environment_value(*pid, "TOKIO_WORKER_THREADS").as_deref(),
            Some("1"),
            "node {pid}: runtime worker threads"
        );
        // And their allocator keeps small slabs and thread caches (what jemalloc makes of
        // the options: `testnet_nodes_allocator_options_are_all_taken_by_jemalloc`).
        assert_eq!(
            environment_value(*pid, dta_testnet::process::ALLOCATOR_OPTIONS_VARIABLE).as_deref(),
            Some(dta_testnet::process::NODE_ALLOCATOR_OPTIONS),
            "node {pid}: allocator options"
        );
    }
    let log = succeed(&mut cli(&["testnet", "logs", "--dir", dir_arg, "node-1"]));
    assert!(String::from_utf8_lossy(&log).contains("identity verified"));
    let (ok, stderr) = run_to_end(&mut cli(&["testnet", "logs", "--dir", dir_arg, "node-9"]));
    assert!(!ok && stderr.contains("no node"), "{stderr}");

    // An order and its release, to follow across the nodes' logs once the testnet is down.
    let identity = |i: usize| nodes[i]["identity"].as_str().unwrap().to_owned();
    let order = serde_json::json!({
        "reference": "followed",
        "fiduciaries": [identity(1), identity(2)],
        "threshold": 2,
        "beneficiary": identity(3),
        "secret": "the launch codes",
    })
    .to_string();
    let principal = |path: &str, body: &[&str]| {
        let mut args = vec!["testnet", "api", "--dir", dir_arg, "node-0", "POST", path];
        args.extend(body);
        succeed(&mut cli(&args))
    };
    let made = principal("/v2/orders?wait=30", &["--data", &order]);
    assert!(String::from_utf8_lossy(&made).contains("certified"));
    principal("/v2/orders/followed/release?wait=30", &[]);

    // Secrets are the owner's alone, whatever the umask: the passphrase file, each home and
    // everything in it, the database files the running nodes keep creating included.
    let passphrase = dir.join("passphrase");
    assert_eq!(listing(&passphrase)[&passphrase].2, 0o600);
    for node in nodes {
        let home = PathBuf::from(node["home"].as_str().unwrap());
        let files = listing(&home);
        assert!(files.len() > 5, "{files:?}");
        for (path, (_, _, mode)) in files {
            assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", path.display());
        }
    }

    let down: serde_json::Value = serde_json::from_slice(&succeed(&mut cli(&[
        "testnet", "down", "--dir", dir_arg, "--json",
    ])))
    .unwrap();
    assert_eq!(down["stopped"], 4, "{down}");
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}/cmdline")).exists()
                || !std::fs::read(format!("/proc/{pid}/cmdline"))
                    .unwrap_or_default()
                    .windows(dir_arg.len())
                    .any(|w| w == dir_arg.as_bytes()),
            "node {pid} still runs"
        );
    }
    assert!(!dir.join("testnet.json").exists());
    assert!(!dir.join("node-0").exists());
    let (ok, stderr) = run_to_end(&mut cli(&["testnet", "status", "--dir", dir_arg]));
    assert!(!ok && stderr.contains("holds no testnet"), "{stderr}");

    // Each node's log outlives the testnet, in DIR/logs, until a purge.
    assert_eq!(down["logs"], dir.join("logs").to_str().unwrap(), "{down}");
    for index in 0..4 {
        assert!(dir.join(format!("logs/node-{index}.log")).is_file());
    }
    let log = succeed(&mut cli(&["testnet", "logs", "--dir", dir_arg, "1"]));
    assert!(String::from_utf8_lossy(&log).contains("identity verified"));
    // The order's lines from every node, merged in time order.
    let followed = succeed(&mut cli(&[
        "testnet", "logs", "--dir", dir_arg, "--order", "followed", "--json",
    ]));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&followed)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let writers: std::collections::BTreeSet<&str> =
        lines.iter().map(|l| l["node"].as_str().unwrap()).collect();
    assert_eq!(
        writers,
        ["node-0", "node-1", "node-2", "node-3"].into(),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l["line"]["fields"]["order"] == "followed")
    );
    let times: Vec<&str> = lines
        .iter()
        .map(|l| l["line"]["timestamp"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|pair| pair[0] <= pair[1]), "{times:?}");
    // An operator's own passphrase and PIN in the environment are not the testnet's: its
    // homes take the secrets it writes for them.
    let mut up_again = cli(&["testnet", "up", "--dir", dir_arg, "--nodes", "3"]);
    up_again
        .env("DTA_PASSPHRASE", "an operator's own passphrase")
        .env("DTA_PKCS11_PIN", "an operator's own PIN");
    succeed_blocking(up_again).await;
    succeed(&mut cli(&["testnet", "down", "--dir", dir_arg, "--purge"]));
    assert!(!dir.join("logs").exists());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_testnet_up_removes_what_it_made_and_nothing_else() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("net");
    let dir_arg = dir.to_str().unwrap();
    // node-2's home is already somebody's node: the launch fails there.
    let theirs = dir.join("node-2");
    succeed(dta(&theirs).args(["init", "--name", "theirs"]));
    let before = listing(&theirs);
    let (ok, stderr) = tokio::task::spawn_blocking({
        let dir_arg = dir_arg.to_owned();
        move || {
            run_to_end(&mut dta_client(&[
                "testnet", "up", "--dir", &dir_arg, "--nodes", "4",
            ]))
        }
    })
    .await
    .unwrap();
    assert!(!ok);
    assert!(
        stderr.contains(theirs.to_str().unwrap()) && stderr.contains("already holds a dta node"),
        "{stderr}"
    );
    assert!(!stderr.contains("--force"), "{stderr}");
    let left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["node-2"], "what the failed launch left");
    assert_eq!(listing(&theirs), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_fails_to_start_is_named_at_once_with_how_its_log_ends() {
    let root = tempfile::tempdir().unwrap();
    // A `dta` whose node-1 cannot start: it says why and exits, as a node does that cannot
    // open its keystore.
    let binary = root.path().join("dta-but-node-1");
    std::fs::write(
        &binary,
        format!(
            "#!/bin/sh\ncase \" $* \" in *\"/node-1 \"*) \
             echo 'error: this node cannot start' >&2; exit 1;; esac\nexec {} \"$@\"\n",
            dta_bin().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = root.path().join("net");
    let config = dta_testnet::process::UpConfig {
        dir: dir.clone(),
        nodes: 3,
        principals: 1,
        fiduciaries: 1,
        beneficiaries: 1,
        threshold: None,
        binary,
        pkcs11_module: None,
        placement: dta_testnet::process::Placement::Loopback,
        misbehave: Default::default(),
    };
    let err = dta_testnet::process::up(config, |_| {}).await.unwrap_err();
    let dta_testnet::process::TestnetError::NotStarted {
        name,
        seconds,
        ending,
        ..
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(name, "node-1");
    // Its process ended at once: waiting out the whole start time would say nothing more.
    assert!(*seconds < 30, "{err}");
    assert!(ending.contains("this node cannot start"), "{err}");
    assert!(!dir.join("testnet.json").exists());
}

#[test]
fn the_testnet_benchmark_launches_measures_and_cleans_up() {
    let root = tempfile::tempdir().unwrap();
    let output = succeed(
        Command::new(dta_bin())
            .env_remove("DTA_API")
            .env_remove("DTA_HOME")
            .args(["bench", "testnet", "--nodes", "3", "--json", "--dir"])
            .arg(root.path()),
    );
    let figures: serde_json::Value = serde_json::from_slice(&output).unwrap();
    let figures = &figures.as_array().unwrap()[0];
    assert_eq!(figures["nodes"], 3);
    assert!(figures["ready_seconds"].as_f64().unwrap() > 0.0);
    // Three nodes are a full mesh: the principal knows every fiduciary, so there is no order
    // between strangers to make, and none failed.
    assert!(figures["stranger_order_ms"].is_null(), "{figures}");
    assert_eq!(figures["stranger_orders_failed"], 0, "{figures}");
    assert!(figures["rss_mean_mib"].as_f64().unwrap() > 1.0);
    // Anonymous memory is a node's own, part of what is resident.
    let anonymous = figures["anon_mean_mib"].as_f64().unwrap();
    assert!(anonymous > 0.5, "{figures}");
    assert!(
        anonymous < figures["rss_max_mib"].as_f64().unwrap(),
        "{figures}"
    );
    // Measured again once settled: the nodes still run then.
    let settled = figures["settled_anon_mean_mib"].as_f64().unwrap();
    assert!(settled > 0.5, "{figures}");
    assert!(figures["settled_anon_max_mib"].as_f64().unwrap() >= settled);
    // The DHT probed from every node (fewer than 50), each lookup answered.
    assert_eq!(figures["dht"]["probes"], 3, "{figures}");
    assert_eq!(figures["dht"]["probes_failed"], 0, "{figures}");
    assert!(
        figures["dht"]["lookup_ms_median"].as_f64().is_some(),
        "{figures}"
    );
    assert!(
        figures["dht"]["closest_median"].as_f64().unwrap() >= 1.0,
        "{figures}"
    );
    // The gossip order's head reached both other nodes.
    assert_eq!(figures["gossip"]["nodes"], 2, "{figures}");
    assert_eq!(figures["gossip"]["reached"], 2, "{figures}");
    let spread = figures["gossip"]["ms_to_99_percent"].as_f64().unwrap();
    assert!(
        spread >= figures["gossip"]["ms_to_half"].as_f64().unwrap(),
        "{figures}"
    );
    // CPU time: some to get ready, more by the end.
    let to_ready = figures["cpu_seconds_to_ready"].as_f64().unwrap();
    assert!(to_ready > 0.0, "{figures}");
    assert!(
        figures["cpu_seconds_total"].as_f64().unwrap() >= to_ready,
        "{figures}"
    );
    // Nothing left behind: no testnet, no homes.
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
}

/// The pids of `dta run` processes whose home is under `dir`.
pub(crate) fn nodes_under(dir: &Path) -> Vec<u32> {
    let dir = dir.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.contains(&&b"run"[..])
                && args
                    .windows(2)
                    .any(|pair| pair[0] == b"--home" && pair[1].starts_with(dir))
        })
        .collect()
}

#[test]
fn a_scenario_run_interrupted_takes_its_testnet_down() {
    let root = tempfile::tempdir().unwrap();
    let scenario = root.path().join("long.toml");
    std::fs::write(
        &scenario,
        "[network]\nnodes = 3\n\n[[steps]]\ndo = \"wait-until\"\nseconds = 600\n",
    )
    .unwrap();
    // Once while it runs its steps (SIGINT), once while it comes up (SIGTERM, as soon as a
    // node's process exists and before the testnet file names them all).
    for (signal, running) in [("-INT", true), ("-TERM", false)] {
        let net = root.path().join(format!("net{signal}"));
        let mut child = dta_client(&[
            "scenario",
            "run",
            scenario.to_str().unwrap(),
            "--dir",
            net.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let started = std::time::Instant::now();
        let ready = || {
            if running {
                net.join("testnet.json").exists()
            } else {
                !nodes_under(&net).is_empty()
            }
        };
        while !ready() {
            assert!(
                started.elapsed() < TIMEOUT,
                "{signal}: the testnet never came up"
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "{signal}: the run ended"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!nodes_under(&net).is_empty());
        Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{signal}: {stderr}");
        assert!(stderr.contains("interrupted"), "{signal}: {stderr}");
        assert_eq!(nodes_under(&net), Vec::<u32>::new(), "{signal}: {stderr}");
        assert!(!net.join("testnet.json").exists(), "{signal}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_scenarios_pass_and_a_failing_step_fails_the_run() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testnet/scenarios");
    let mut ran = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let file = entry.unwrap().path();
        // Scenarios with dishonest nodes (`byzantine/`) need the test build.
        if file.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let output = succeed_blocking(dta_client(&[
            "scenario",
            "run",
            file.to_str().unwrap(),
            "--json",
        ]))
        .await;
        let report: serde_json::Value = serde_json::from_slice(&output).unwrap();
        assert_eq!(report["failed"], 0, "{}: {report}", file.display());
        assert!(report["passed"].as_u64().unwrap() >= 5, "{report}");
        ran += 1;
    }
    assert!(ran >= 5, "the examples: {ran}");

    // A wrong expectation fails its step and the run, and still takes the network down.
    let root = tempfile::tempdir().unwrap();
    let scenario = root.path().join("wrong.toml");
    std::fs::write(
        &scenario,
        "[network]\nnodes = 3\n\n[[steps]]\ndo = \"order\"\nreference = \"w\"\nsecret = \"right\"\n\n\
         [[steps]]\ndo = \"wait\"\nnode = \"node-0\"\nreference = \"w\"\nrole = \"principal\"\nstate = \"certified\"\n\n\
         [[steps]]\ndo = \"release\"\nreference = \"w\"\n\n\
         [[steps]]\ndo = \"wait\"\nnode = \"node-2\"\nreference = \"w\"\nrole = \"beneficiary\"\nstate = \"received\"\n\n\
         [[steps]]\ndo = \"assert-secret\"\nnode = \"node-2\"\nreference = \"w\"\nequals = \"wrong\"\n",
    )
    .unwrap();
    let net = root.path().join("net");
    let mut command = dta_client(&[
        "scenario",
        "run",
        scenario.to_str().unwrap(),
        "--dir",
        net.to_str().unwrap(),
    ]);
    let (ok, stderr) = tokio::task::spawn_blocking(move || run_to_end(&mut command))
        .await
        .unwrap();
    assert!(!ok);
    assert!(stderr.contains("1 of 5 steps failed"), "{stderr}");
    assert!(
        !net.join("testnet.json").exists(),
        "the network was taken down"
    );
    // A malformed file is refused before anything starts.
    std::fs::write(
        &scenario,
        "[network]\nnodes = 3\n[[steps]]\ndo = \"dance\"\n",
    )
    .unwrap();
    let (ok, stderr) = run_to_end(&mut dta_client(&[
        "scenario",
        "run",
        scenario.to_str().unwrap(),
    ]));
    assert!(!ok && stderr.contains("wrong.toml"), "{stderr}");
    // So is a partition that leaves a node out.
    std::fs::write(
        &scenario,
        "[network]\nnodes = 3\n[[steps]]\ndo = \"partition\"\ngroups = [[\"node-0\"], [\"node-1\"]]\n",
    )
    .unwrap();
    let (ok, stderr) = run_to_end(&mut dta_client(&[
        "scenario",
        "run",
        scenario.to_str().unwrap(),
    ]));
    assert!(!ok && stderr.contains("node-2 in no group"), "{stderr}");
}
