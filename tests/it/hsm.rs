//! Secrets behind PKCS#11: custody with every fiduciary's shares wrapped by a SoftHSM2 token,
//! and the `dta` commands that set up, inspect and migrate keystores.
//!
//! `#[ignore]`d in a plain `cargo test`: `scripts/test` installs SoftHSM2, points
//! `SOFTHSM2_CONF` at a token directory of its own and runs them with `--ignored hsm::`,
//! `DTA_PKCS11_MODULE` naming the module. Each test creates the tokens it uses.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use dta_actors::store::{Column, Store};
use dta_node::client::Method;
use dta_node::config::Config;
use dta_node::home;
use dta_testnet::harness::Testnet;
use serde_json::{Value, json};

use crate::custody::Api;
use crate::process::{Running, dta, run_to_end, succeed, wait_for_node_file};

fn module() -> PathBuf {
    std::env::var_os("DTA_PKCS11_MODULE")
        .expect("DTA_PKCS11_MODULE names the PKCS#11 module (scripts/test sets it)")
        .into()
}

/// A token label no earlier run used in the same token directory.
fn unique_label(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}-{:x}", nanos & 0xffff_ffff_ffff)
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The files under `dir` holding `needle` anywhere.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|path| {
            std::fs::read(path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SoftHSM2: scripts/test runs it"]
async fn custody_with_every_fiduciary_on_pkcs11_leaves_no_share_in_plaintext() {
    const FIDUCIARIES: [usize; 3] = [1, 2, 3];
    let mut net = Testnet::builder()
        .nodes(5)
        .pkcs11(module(), &FIDUCIARIES)
        .build()
        .await
        .expect("testnet");
    let api = Api::new();
    for fiduciary in FIDUCIARIES {
        let (status, keystore) = api.get(&net, fiduciary, "/v2/keystore").await;
        assert_eq!(status, 200);
        assert_eq!(keystore["backend"], "pkcs11", "{keystore}");
        assert!(keystore["token"].is_string(), "{keystore}");
    }
    let (_, principal_keystore) = api.get(&net, 0, "/v2/keystore").await;
    assert_eq!(principal_keystore["backend"], "soft");

    let identity = |node: usize| net.node(node).info().identity.clone();
    let order = json!({
        "reference": "hsm-order",
        "plugin": "safeguardsecret",
        "fiduciaries": FIDUCIARIES.iter().map(|i| identity(*i)).collect::<Vec<_>>(),
        "threshold": 2,
        "beneficiary": identity(4),
        "secret": "kept behind three tokens",
    });
    let (status, body) = api.post(&net, 0, "/v2/orders", order).await;
    assert_eq!(status, 201, "{body}");
    api.wait_state(&net, 0, "hsm-order", "principal", "certified")
        .await;
    for fiduciary in FIDUCIARIES {
        api.wait_state(&net, fiduciary, "hsm-order", "fiduciary", "holding")
            .await;
    }
    let (status, body) = api
        .post(&net, 0, "/v2/orders/hsm-order/release", json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    api.wait_state(&net, 4, "hsm-order", "beneficiary", "received")
        .await;
    let (status, body) = api.get(&net, 4, "/v2/orders/hsm-order/secret").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["secret"], "kept behind three tokens");

    let share_name = dta_actors::custody::share_name(&identity(0).parse().unwrap(), "hsm-order");
    // Each fiduciary, stopped: its share is a token-wrapped blob, and neither the share nor
    // its hex appears in any file of its home (database, logs, configuration).
    for fiduciary in FIDUCIARIES {
        let test_node = net.test_node(fiduciary);
        test_node.stop().await;
        let home_dir = test_node.home().to_owned();
        let config = Config::load(&home_dir).unwrap();
        let keystore = home::open_keystore(&home_dir, &config).expect("the token opens");
        let (blob, share) = {
            let store = Store::open(&home_dir.join("db")).unwrap();
            let blob = store
                .get(Column::Keystore, share_name.as_bytes())
                .unwrap()
                .expect("the share is kept");
            assert_eq!(blob[0], 2, "a PKCS#11 blob");
            let share = keystore.unwrap(&share_name, &blob).unwrap();
            (blob, share)
        };
        assert_eq!(share.len(), 32);
        // The scan does see what the database holds: the wrapped blob is there.
        assert!(!files_containing(&home_dir.join("db"), &blob).is_empty());
        assert_eq!(
            files_containing(&home_dir, &share),
            Vec::<PathBuf>::new(),
            "node {fiduciary}: the share in plaintext"
        );
        assert_eq!(
            files_containing(&home_dir, hex::encode(&*share).as_bytes()),
            Vec::<PathBuf>::new(),
            "node {fiduciary}: the share in hex"
        );
    }
    net.stop().await;
}

/// A SoftHSM2 token directory of one test's own, for the `dta` processes that test starts.
///
/// SoftHSM2 keeps processes that share a token directory apart only while none of them makes
/// tokens: one that lists the slots while another process creates a token can fail with a
/// general error, or hang at start. An operator's HSM does not gain tokens under its running
/// nodes, but tests running side by side do; so the tokens of a test's processes live in a
/// directory of its own, made with `softhsm2-util` as an operator makes them, and only the
/// tests that stay in this process share the directory `scripts/test` set up.
struct TokenDir {
    dir: tempfile::TempDir,
}

impl TokenDir {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        std::fs::write(
            dir.path().join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.path().join("tokens").display()
            ),
        )
        .unwrap();
        Self { dir }
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    /// `dta` for `home`, on this directory's tokens.
    fn dta(&self, home: &Path) -> std::process::Command {
        let mut command = dta(home);
        command.env("SOFTHSM2_CONF", self.conf());
        command
    }

    /// The `dta` client, on this directory's tokens.
    fn client(&self, args: &[&str]) -> std::process::Command {
        let mut command = crate::process::dta_client(args);
        command.env("SOFTHSM2_CONF", self.conf());
        command
    }

    /// A token on the first free slot, as `softhsm2-util --init-token --free` makes it.
    fn init_token(&self, label: &str, so_pin: &str, pin: &str) {
        let output = std::process::Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", self.conf())
            .args(["--init-token", "--free", "--label", label])
            .args(["--so-pin", so_pin, "--pin", pin])
            .output()
            .expect("softhsm2-util (scripts/test installs SoftHSM2)");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// `dta run` on 127.0.0.1 with the PIN given, until node.json appears; the process and its
/// API. `passphrase` false runs it without `DTA_PASSPHRASE`.
async fn run_node(
    tokens: &TokenDir,
    home: &Path,
    pin: &str,
    passphrase: bool,
) -> (Running, String) {
    let mut command = tokens.dta(home);
    if !passphrase {
        command.env_remove("DTA_PASSPHRASE");
    }
    let child = command
        .env("DTA_PKCS11_PIN", pin)
        .args(crate::process::RUN_ON_LOOPBACK)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let running = Running(child);
    let node = wait_for_node_file(home).await;
    (running, node.api)
}

/// Stops a node with SIGTERM and waits for it to exit.
async fn stop_node(running: Running) {
    let pid = running.0.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    tokio::task::spawn_blocking(move || {
        let mut running = running;
        let status = running.0.wait().unwrap();
        assert!(status.success(), "{status:?}");
    })
    .await
    .unwrap();
}

/// Every file of a home and its bytes, to show that a failed command changed nothing.
fn snapshot(home: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = files_under(home)
        .into_iter()
        // rocksdb rewrites its info log on every open, even a failed one.
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with("LOG"))
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SoftHSM2: scripts/test runs it"]
async fn a_node_on_a_token_runs_reports_its_keystore_and_refuses_a_wrong_pin() {
    let module = module();
    let token = unique_label("cli");
    let tokens = TokenDir::new();
    tokens.init_token(&token, "so-pin-0000", "right-pin-1234");
    let root = tempfile::tempdir().unwrap();
    let home_dir = root.path().join("node");
    let module_arg = module.to_str().unwrap();
    let (ok, stderr) = run_to_end(
        tokens
            .dta(&home_dir)
            .env("DTA_PKCS11_PIN", "right-pin-1234")
            .args([
                "init",
                "--name",
                "token-node",
                "--keystore",
                "pkcs11",
                "--pkcs11-module",
                module_arg,
                "--pkcs11-token",
                &token,
            ]),
    );
    assert!(ok, "{stderr}");
    let keystore_toml = std::fs::read_to_string(home_dir.join("keystore.toml")).unwrap();
    assert!(
        keystore_toml.contains("backend = \"pkcs11\""),
        "{keystore_toml}"
    );
    assert!(!keystore_toml.contains("right-pin"), "no PIN in the home");

    let (running, api) = run_node(&tokens, &home_dir, "right-pin-1234", true).await;
    let stdout = succeed(
        tokens
            .dta(&home_dir)
            .args(["keystore", "status", "--json", "--api", &api]),
    );
    let status: Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(status["backend"], "pkcs11");
    assert_eq!(status["token"], token.as_str());
    assert_eq!(status["secrets"], 1, "the identity seed");
    stop_node(running).await;

    // A wrong PIN, a missing token, a missing module: clear errors, nothing changed.
    let before = snapshot(&home_dir);
    let (ok, stderr) = run_to_end(
        tokens
            .dta(&home_dir)
            .env("DTA_PKCS11_PIN", "wrong-pin")
            .args(["run", "--api", "127.0.0.1:0", "--no-mdns"]),
    );
    assert!(!ok);
    assert!(stderr.contains("wrong PIN for token"), "{stderr}");
    assert!(
        !stderr.contains("wrong-pin"),
        "the PIN is never printed: {stderr}"
    );
    let (ok, stderr) = run_to_end(tokens.dta(&home_dir).env_remove("DTA_PKCS11_PIN").args([
        "run",
        "--api",
        "127.0.0.1:0",
        "--no-mdns",
    ]));
    assert!(!ok);
    assert!(stderr.contains("DTA_PKCS11_PIN"), "{stderr}");
    let (ok, stderr) = run_to_end(
        tokens
            .dta(&root.path().join("other"))
            .env("DTA_PKCS11_PIN", "x")
            .args([
                "init",
                "--keystore",
                "pkcs11",
                "--pkcs11-module",
                "/nonexistent/module.so",
                "--pkcs11-token",
                &token,
            ]),
    );
    assert!(!ok);
    assert!(stderr.contains("cannot be loaded"), "{stderr}");
    assert!(!root.path().join("other").join("config.toml").exists());
    assert_eq!(snapshot(&home_dir), before, "the failures changed nothing");

    // And the right PIN still runs it.
    let (running, _) = run_node(&tokens, &home_dir, "right-pin-1234", true).await;
    stop_node(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SoftHSM2: scripts/test runs it"]
async fn a_soft_keystore_migrates_to_a_token_and_its_old_blobs_are_gone() {
    let module = module();
    let token = unique_label("migrate");
    let tokens = TokenDir::new();
    tokens.init_token(&token, "so-pin-0000", "migrate-pin-99");
    let root = tempfile::tempdir().unwrap();
    let home_dir = root.path().join("node");
    let (ok, stderr) =
        run_to_end(
            tokens
                .dta(&home_dir)
                .args(["init", "--name", "migrating", "--json"]),
        );
    assert!(ok, "{stderr}");
    // A hosted identity: a second secret.
    let (running, api) = run_node(&tokens, &home_dir, "unused", true).await;
    let carol = succeed(
        tokens
            .dta(&home_dir)
            .args(["identity", "create", "carol", "--api", &api]),
    );
    assert!(String::from_utf8_lossy(&carol).trim().starts_with("bafy"));
    let identity_before = wait_for_node_file(&home_dir).await.identity;
    stop_node(running).await;
    let old_blobs: Vec<Vec<u8>> = {
        let store = Store::open(&home_dir.join("db")).unwrap();
        store
            .scan(Column::Keystore)
            .unwrap()
            .into_iter()
            .map(|(_, blob)| blob)
            .collect()
    };
    assert_eq!(old_blobs.len(), 2);
    for blob in &old_blobs {
        assert!(
            !files_containing(&home_dir, blob).is_empty(),
            "the scan sees them"
        );
    }

    let stdout = succeed(
        tokens
            .dta(&home_dir)
            .env("DTA_PKCS11_PIN", "migrate-pin-99")
            .args([
                "keystore",
                "migrate",
                "--to",
                "pkcs11",
                "--pkcs11-module",
                module.to_str().unwrap(),
                "--pkcs11-token",
                &token,
                "--json",
            ]),
    );
    let report: Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(
        report,
        json!({ "from": "soft", "to": "pkcs11", "secrets": 2 })
    );
    // The old wrapped copies are gone from every file of the home.
    for blob in &old_blobs {
        assert_eq!(files_containing(&home_dir, blob), Vec::<PathBuf>::new());
    }
    // The node runs on the token, same identity, without its old passphrase.
    let (running, api) = run_node(&tokens, &home_dir, "migrate-pin-99", false).await;
    assert_eq!(
        wait_for_node_file(&home_dir).await.identity,
        identity_before
    );
    let status: Value = crate::process::home_client(&home_dir, &api)
        .call(Method::GET, "/v2/keystore", None)
        .await
        .unwrap()
        .body;
    assert_eq!(status["backend"], "pkcs11");
    assert_eq!(status["secrets"], 2);
    stop_node(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SoftHSM2: scripts/test runs it"]
async fn a_process_testnet_runs_every_node_on_a_token_of_its_own() {
    let tokens = TokenDir::new();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("net");
    let dir_arg = dir.to_str().unwrap().to_owned();
    let _down = crate::lan::Down(dir_arg.clone());
    let module = module();
    let module_arg = module.to_str().unwrap().to_owned();
    let mut up_command = tokens.client(&[
        "testnet",
        "up",
        "--dir",
        &dir_arg,
        "--nodes",
        "3",
        "--keystore",
        "pkcs11",
        "--pkcs11-module",
        &module_arg,
        "--json",
    ]);
    // An operator's own PIN in the environment is not the tokens': they take the one the
    // testnet writes for them.
    up_command.env("DTA_PKCS11_PIN", "an operator's own PIN");
    let up = crate::process::succeed_blocking(up_command).await;
    let testnet: Value = serde_json::from_slice(&up).unwrap();
    let mut labels = std::collections::BTreeSet::new();
    for node in testnet["nodes"].as_array().unwrap() {
        let home = PathBuf::from(node["home"].as_str().unwrap());
        let keystore = crate::process::home_client(&home, node["api"].as_str().unwrap());
        let keystore = keystore.get("/v2/keystore").await.unwrap();
        assert_eq!(keystore["backend"], "pkcs11", "{keystore}");
        labels.insert(keystore["token"].as_str().unwrap().to_owned());
    }
    assert_eq!(labels.len(), 3, "a token per node: {labels:?}");
    // No PIN in any home: it is in the testnet's own pin file.
    for node in testnet["nodes"].as_array().unwrap() {
        let home_dir = Path::new(node["home"].as_str().unwrap());
        let pin = std::fs::read_to_string(dir.join("pkcs11-pin")).unwrap();
        assert!(files_containing(home_dir, pin.as_bytes()).is_empty());
    }
    let down: Value = serde_json::from_slice(&succeed(
        &mut tokens.client(&["testnet", "down", "--dir", &dir_arg, "--json"]),
    ))
    .unwrap();
    assert_eq!(down["stopped"], 3, "{down}");
    assert!(!dir.join("pkcs11-pin").exists());
}
