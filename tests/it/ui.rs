//! The web UI in a real browser: headless Chromium (Debian's `chromium`) driven by
//! playwright-core (npm) through `tests/browser/driver.mjs`. It loads the live view of a
//! running 50-node testnet (`dta testnet ui`) and checks the DOM for every node and a
//! certified order, saves a screenshot under `target/ui/`, kills a node and checks that the
//! page shows it down within 2 s; it loads a node's own page (`/ui`) and draws an order's log;
//! and it follows a LAN testnet whose nodes live in network namespaces.
//!
//! `#[ignore]`d in a plain `cargo test`: it needs Chromium, the npm package (in the
//! directory `DTA_BROWSER_DIR` names) and root for the LAN. `scripts/test` installs them and
//! runs it with `--ignored ui::`, and fails if it cannot.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{Value, json};

use crate::lan::Down;
use crate::process::{dta_bin, dta_client, succeed};

const DRIVER: &str = include_str!("../browser/driver.mjs");
const SECRET: &str = "the vault opens at dawn";

/// Headless Chromium behind the driver script. Dropping it closes both.
struct Browser {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    _script_dir: tempfile::TempDir,
}

impl Browser {
    fn start() -> Self {
        let dir = std::env::var_os("DTA_BROWSER_DIR").expect(
            "DTA_BROWSER_DIR must name the directory where scripts/test installed playwright-core",
        );
        // Inside that directory, so that Node finds its packages.
        let script_dir = tempfile::tempdir_in(&dir).unwrap();
        let script = script_dir.path().join("driver.mjs");
        std::fs::write(&script, DRIVER).unwrap();
        let mut child = Command::new("node")
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node runs the driver");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
            _script_dir: script_dir,
        }
    }

    /// One command; its answer, or the driver's error.
    fn try_call(&mut self, command: Value) -> Result<Value, String> {
        writeln!(self.stdin, "{command}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let answer: Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("the driver said {line:?} to {command}"));
        if answer["ok"] == true {
            Ok(answer)
        } else {
            Err(answer["error"].as_str().unwrap_or_default().to_owned())
        }
    }

    fn call(&mut self, command: Value) -> Value {
        let shown = command.to_string();
        self.try_call(command)
            .unwrap_or_else(|e| panic!("{shown}: {e}"))
    }

    fn open(&mut self, url: &str) {
        self.call(json!({"op": "open", "url": url}));
    }

    /// Waits for `selector`; how long it took (ms).
    fn wait(&mut self, selector: &str, timeout_ms: u64) -> f64 {
        self.call(json!({"op": "wait", "selector": selector, "timeout_ms": timeout_ms}))["ms"]
            .as_f64()
            .unwrap()
    }

    fn texts(&mut self, selector: &str) -> Vec<String> {
        serde_json::from_value(
            self.call(json!({"op": "texts", "selector": selector}))["texts"].clone(),
        )
        .unwrap()
    }

    fn count(&mut self, selector: &str) -> u64 {
        self.call(json!({"op": "count", "selector": selector}))["count"]
            .as_u64()
            .unwrap()
    }

    fn screenshot(&mut self, path: &Path) {
        self.call(json!({"op": "screenshot", "path": path}));
    }

    /// Errors the page threw or logged: there must be none.
    fn assert_no_page_errors(&mut self) {
        let errors = self.call(json!({"op": "errors"}))["errors"].clone();
        assert_eq!(errors, json!([]), "the page reported errors");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.try_call(json!({"op": "close"}));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `dta testnet ui` while it runs; stopped (SIGTERM) when dropped.
struct View {
    child: Child,
    url: String,
}

impl View {
    fn start(dir: &str) -> Self {
        let mut child = dta_client(&["testnet", "ui", "--dir", dir, "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let printed: Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("dta testnet ui printed {line:?}"));
        let url = printed["url"].as_str().unwrap().to_owned();
        assert!(
            url.starts_with("http://127.0.0.1:") && url.contains("/#token="),
            "{url}"
        );
        Self { child, url }
    }
}

impl Drop for View {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Where the screenshots go: `target/ui/`, beside the binary's profile directory.
fn screenshots() -> PathBuf {
    let dir = dta_bin()
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .join("ui");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn up(dir: &str, extra: &[&str]) -> Value {
    let mut args = vec!["testnet", "up", "--dir", dir, "--json"];
    args.extend(extra);
    serde_json::from_slice(&succeed(&mut dta_client(&args))).unwrap()
}

fn node<'a>(testnet: &'a Value, name: &str) -> &'a Value {
    testnet["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap()
}

/// A 2-of-3 order by node-0 over three fiduciaries, for `beneficiary`, made through
/// `dta testnet api` (inside node-0's namespace on a LAN) and waited for until certified.
fn certified_order(
    dir: &str,
    testnet: &Value,
    reference: &str,
    fiduciaries: [&str; 3],
    beneficiary: &str,
) {
    let identity = |name: &str| node(testnet, name)["identity"].clone();
    let body = json!({
        "reference": reference,
        "fiduciaries": fiduciaries.map(identity),
        "threshold": 2,
        "beneficiary": identity(beneficiary),
        "secret": SECRET,
    });
    let answer: Value = serde_json::from_slice(&succeed(&mut dta_client(&[
        "testnet",
        "api",
        "--dir",
        dir,
        "node-0",
        "POST",
        "/v2/orders?wait=60",
        "--data",
        &body.to_string(),
        "--json",
    ])))
    .unwrap();
    assert_eq!(answer["status"], 201, "{answer}");
}

fn kill(testnet: &Value, name: &str) {
    let pid = node(testnet, name)["pid"].as_u64().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap()
            .success()
    );
}

const NODES: usize = 50;

#[test]
#[ignore = "needs Chromium and playwright-core: scripts/test installs them and runs it"]
fn the_testnet_view_shows_fifty_nodes_and_an_order_live_and_a_killed_node_within_two_seconds() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("view");
    let dir_arg = dir.to_str().unwrap().to_owned();
    let _down = Down(dir_arg.clone());
    let testnet = up(&dir_arg, &["--nodes", &NODES.to_string()]);
    let view = View::start(&dir_arg);
    let mut browser = Browser::start();
    browser.open(&view.url);
    // The token left the address bar; every node is drawn, and answers.
    for index in 0..NODES {
        browser.wait(
            &format!("#nodes tr[data-node=\"node-{index}\"][data-liveness=\"up\"]"),
            30_000,
        );
    }
    assert_eq!(browser.count("#graph g.vertex.up"), NODES as u64);
    assert!(browser.count("#graph line.edge") >= (NODES - 1) as u64);
    // An order made while the page is open shows up, certified, with its fiduciaries.
    certified_order(
        &dir_arg,
        &testnet,
        "view-1",
        ["node-1", "node-2", "node-3"],
        "node-49",
    );
    browser.wait(
        "#orders tr[data-order=\"view-1\"][data-state=\"certified\"]",
        5_000,
    );
    let holders = browser.texts("#orders tr[data-order=\"view-1\"] .progress span");
    assert_eq!(
        holders.len(),
        4,
        "principal and three fiduciaries: {holders:?}"
    );
    let body = browser.texts("body").join(" ");
    assert!(!body.contains(SECRET), "a secret reached the page");
    browser.screenshot(&screenshots().join("testnet.png"));

    // A killed node turns grey within two seconds.
    kill(&testnet, "node-2");
    let waited = browser.wait(
        "#nodes tr[data-node=\"node-2\"][data-liveness=\"down\"]",
        2_000,
    );
    assert_eq!(
        browser.count("#graph g.vertex.down[data-node=\"node-2\"]"),
        1
    );
    let frames = browser.call(json!({"op": "frames"}));
    println!(
        "node-2 shown down {waited:.0} ms after the kill; long main-thread tasks: {} (longest {} ms)",
        frames["long_tasks"], frames["longest_ms"]
    );
    browser.screenshot(&screenshots().join("testnet-node-down.png"));
    browser.assert_no_page_errors();
}

#[test]
#[ignore = "needs Chromium and playwright-core: scripts/test installs them and runs it"]
fn a_nodes_own_page_shows_its_orders_and_draws_an_orders_log() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("page");
    let dir_arg = dir.to_str().unwrap().to_owned();
    let _down = Down(dir_arg.clone());
    let testnet = up(&dir_arg, &["--nodes", "5"]);
    certified_order(
        &dir_arg,
        &testnet,
        "page-1",
        ["node-1", "node-2", "node-3"],
        "node-4",
    );
    let principal = node(&testnet, "node-0");
    let api = principal["api"].as_str().unwrap();
    let home = Path::new(principal["home"].as_str().unwrap());
    let token = dta_node::tokens::read_token_file(&home.join(dta_node::tokens::HOME_TOKEN_FILE))
        .unwrap()
        .unwrap();

    let mut browser = Browser::start();
    // A wrong token: the page says so and shows nothing of the node.
    browser.open(&format!("{api}/ui#token=dta_wrong"));
    browser.wait("#login:not([hidden])", 10_000);
    let said = browser.texts("#login-error").join(" ");
    assert!(said.contains("refused"), "{said}");
    assert_eq!(browser.count("#orders tbody tr"), 0);
    drop(browser);

    let mut browser = Browser::start();
    browser.open(&format!("{api}/ui#token={}", token.as_str()));
    browser.wait("body[data-status=\"up\"]", 10_000);
    assert_eq!(browser.texts("#name"), ["node-0"]);
    assert_eq!(browser.count("#peers li"), 4);
    browser.wait(
        "#orders tr[data-order=\"page-1\"][data-state=\"certified\"]",
        10_000,
    );
    browser.call(json!({"op": "click", "selector": "#orders tr[data-order=\"page-1\"]"}));
    browser.wait(".envelope[data-kind=\"certificate\"]", 10_000);
    let chain = browser.texts(".chain > .step > .envelope:not(.hanging) strong");
    assert_eq!(
        chain.first().map(String::as_str),
        Some("order-request"),
        "{chain:?}"
    );
    assert!(chain.contains(&"certificate".to_owned()), "{chain:?}");
    assert_eq!(
        browser.count(".envelope.hanging[data-kind=\"commitment-signature\"]"),
        3
    );
    // A release, made while the page is open, lands on the chain by itself.
    succeed(&mut dta_client(&[
        "order",
        "release",
        "page-1",
        "--home",
        home.to_str().unwrap(),
        "--wait",
    ]));
    browser.wait(".envelope[data-kind=\"receipt\"]", 10_000);
    browser.wait(
        "#orders tr[data-order=\"page-1\"][data-state=\"released\"]",
        10_000,
    );
    let body = browser.texts("body").join(" ");
    assert!(!body.contains(SECRET), "a secret reached the page");
    browser.screenshot(&screenshots().join("node.png"));
    browser.assert_no_page_errors();
}

#[test]
#[ignore = "needs root, Chromium and playwright-core: scripts/test installs them and runs it"]
fn the_testnet_view_follows_a_lan_testnet_inside_its_namespaces() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("lan-view");
    let dir_arg = dir.to_str().unwrap().to_owned();
    let _down = Down(dir_arg.clone());
    let testnet = up(&dir_arg, &["--nodes", "5", "--lan"]);
    let view = View::start(&dir_arg);
    let mut browser = Browser::start();
    browser.open(&view.url);
    for index in 0..5 {
        browser.wait(
            &format!("#nodes tr[data-node=\"node-{index}\"][data-liveness=\"up\"]"),
            30_000,
        );
    }
    // Peers as each node sees them inside its namespace: everyone, by mDNS.
    let peers = browser.texts("#nodes tbody tr td:nth-child(4)");
    assert_eq!(peers, ["4", "4", "4", "4", "4"], "{peers:?}");
    certified_order(
        &dir_arg,
        &testnet,
        "lan-1",
        ["node-1", "node-2", "node-3"],
        "node-4",
    );
    browser.wait(
        "#orders tr[data-order=\"lan-1\"][data-state=\"certified\"]",
        10_000,
    );
    kill(&testnet, "node-1");
    browser.wait(
        "#nodes tr[data-node=\"node-1\"][data-liveness=\"down\"]",
        2_000,
    );
    browser.screenshot(&screenshots().join("testnet-lan.png"));
    browser.assert_no_page_errors();
}
