//! The LAN mode of `dta testnet up`: every node in a network namespace of its own on a
//! simulated LAN, finding the others by mDNS only (no bootstrap address), and nothing left in
//! or added to the root namespace.
//!
//! `#[ignore]`d in a plain `cargo test`: it needs root. `scripts/test` runs it (as root in CI)
//! with `--ignored lan::`, and fails if it cannot.

use std::process::Command;

use serde_json::Value;

use crate::process::{dta_client, run_to_end, succeed, succeed_blocking};

/// Takes a testnet down when dropped, so that a failing assertion leaves no processes or
/// namespaces behind (the directory goes with the test's temporary directory).
pub(crate) struct Down(pub(crate) String);

impl Drop for Down {
    fn drop(&mut self) {
        if std::path::Path::new(&self.0).join("testnet.json").exists() {
            let _ = dta_client(&["testnet", "down", "--purge", "--dir", &self.0]).output();
        }
    }
}

/// The links of the root namespace, by name.
pub(crate) fn root_links() -> String {
    let output = Command::new("ip").args(["-o", "link"]).output().unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| l.split(':').nth(1).unwrap_or_default().trim().to_owned())
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root for network namespaces: scripts/test runs it"]
async fn nodes_on_a_simulated_lan_find_each_other_by_mdns_alone() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("lan");
    let dir_arg = dir.to_str().unwrap().to_owned();
    let cli = dta_client;
    let links_before = root_links();
    let _down = Down(dir_arg.clone());
    let up = succeed_blocking(cli(&[
        "testnet", "up", "--dir", &dir_arg, "--nodes", "4", "--lan", "--json",
    ]))
    .await;
    let testnet: Value = serde_json::from_slice(&up).unwrap();
    let namespaces: Vec<String> = testnet["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        namespaces.len(),
        5,
        "a bridge and four nodes: {namespaces:?}"
    );
    for namespace in &namespaces {
        assert!(std::path::Path::new("/run/netns").join(namespace).exists());
    }
    // The nodes had no bootstrap address: each knows the others through mDNS on the LAN.
    for node in testnet["nodes"].as_array().unwrap() {
        let home = std::path::Path::new(node["home"].as_str().unwrap());
        let config = std::fs::read_to_string(home.join("config.toml")).unwrap();
        assert!(config.contains("mdns = true"), "{config}");
        assert!(node["namespace"].is_string());
    }
    let status: Value = serde_json::from_slice(&succeed(&mut cli(&[
        "testnet", "status", "--dir", &dir_arg, "--json",
    ])))
    .unwrap();
    for node in status.as_array().unwrap() {
        assert_eq!(node["alive"], true, "{node}");
        assert_eq!(node["identities"], 4, "{node}");
        assert_eq!(node["peers"], 3, "{node}");
    }
    assert_eq!(
        root_links(),
        links_before,
        "nothing added to the root namespace"
    );

    // A node records the namespace it runs in: a client out here says how to reach it
    // instead of asking whatever listens on the same address in the root namespace.
    let node = &testnet["nodes"][1];
    let home = node["home"].as_str().unwrap();
    let namespace = node["namespace"].as_str().unwrap();
    let (ok, stderr) = run_to_end(&mut cli(&["status", "--home", home]));
    assert!(!ok);
    assert!(
        stderr.contains(&format!("network namespace {namespace}"))
            && stderr.contains(&format!(
                "dta testnet api --dir {dir_arg} node-1 GET /v2/node"
            )),
        "{stderr}"
    );
    let answer: Value = serde_json::from_slice(&succeed(&mut cli(&[
        "testnet", "api", "--dir", &dir_arg, "node-1", "GET", "/v2/node",
    ])))
    .unwrap();
    assert_eq!(answer["identity"], node["identity"], "{answer}");
    // Inside its namespace, `--home` reaches it directly.
    let inside = succeed(
        Command::new("ip")
            .args(["netns", "exec", namespace])
            .arg(crate::process::dta_bin())
            .args(["status", "--home", home])
            .env_remove("DTA_API")
            .env_remove("DTA_HOME"),
    );
    assert!(
        String::from_utf8_lossy(&inside).contains(node["identity"].as_str().unwrap()),
        "{}",
        String::from_utf8_lossy(&inside)
    );

    succeed(&mut cli(&["testnet", "down", "--dir", &dir_arg]));
    for namespace in &namespaces {
        assert!(
            !std::path::Path::new("/run/netns").join(namespace).exists(),
            "{namespace} removed"
        );
    }
    assert_eq!(root_links(), links_before);
    let (ok, stderr) = run_to_end(&mut cli(&["testnet", "status", "--dir", &dir_arg]));
    assert!(!ok && stderr.contains("holds no testnet"), "{stderr}");
}

#[test]
#[ignore = "needs root to drop to another user: scripts/test runs it"]
fn a_lan_testnet_without_root_is_refused_before_anything_is_made() {
    // A directory anybody may write in, so that only the missing privilege can stop `up`.
    let root = tempfile::tempdir().unwrap();
    let mut permissions = std::fs::metadata(root.path()).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o1777);
    std::fs::set_permissions(root.path(), permissions).unwrap();
    let dir = root.path().join("lan");
    // A copy the other user may run wherever the checkout is.
    let binary = root.path().join("dta");
    std::fs::copy(crate::process::dta_bin(), &binary).unwrap();
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&binary)
        .args(["testnet", "up", "--lan", "--nodes", "3", "--dir"])
        .arg(&dir)
        .env_remove("DTA_API")
        .env_remove("DTA_HOME")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("--lan needs root"), "{stderr}");
    assert!(!dir.exists(), "up made {} before refusing", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root for network namespaces: scripts/test runs it"]
async fn the_partition_and_restart_scenarios_pass_on_a_lan() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testnet/scenarios");
    let links_before = root_links();
    for name in ["partition-heals.toml", "fiduciary-restart.toml"] {
        let file = examples.join(name);
        let output = succeed_blocking(dta_client(&[
            "scenario",
            "run",
            file.to_str().unwrap(),
            "--lan",
            "--json",
        ]))
        .await;
        let report: Value = serde_json::from_slice(&output).unwrap();
        assert_eq!(report["failed"], 0, "{name} on a LAN: {report}");
        assert!(report["passed"].as_u64().unwrap() >= 5, "{report}");
    }
    assert_eq!(
        root_links(),
        links_before,
        "the scenarios' namespaces are gone"
    );
}

/// Removes a network namespace when dropped.
struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root for network namespaces: scripts/test runs it"]
async fn an_api_on_a_network_address_speaks_tls_and_the_client_pins_its_certificate() {
    use crate::process::{Running, dta, dta_bin, wait_for_node_file};

    // A namespace of this test's own with one non-loopback address, 10.214.0.1.
    let name = format!("dta-tls-{}", std::process::id());
    let _namespace = Namespace(name.clone());
    let ip = |args: &[&str]| {
        let (ok, stderr) = run_to_end(Command::new("ip").args(args));
        assert!(ok, "ip {args:?}: {stderr}");
    };
    ip(&["netns", "add", &name]);
    let inside = ["netns", "exec", name.as_str(), "ip"];
    for args in [
        &["link", "set", "lo", "up"][..],
        // Both ends inside (this kernel has no dummy links): the root namespace gets nothing.
        &[
            "link", "add", "api0", "type", "veth", "peer", "name", "api1",
        ],
        &["addr", "add", "10.214.0.1/24", "dev", "api0"],
        &["link", "set", "api0", "up"],
        &["link", "set", "api1", "up"],
    ] {
        ip(&[&inside[..], args].concat());
    }

    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("node");
    let init = succeed(dta(&home).args([
        "init",
        "--name",
        "tls",
        "--api-tls",
        "--api-host",
        "10.214.0.1",
        "--json",
    ]));
    let init: Value = serde_json::from_slice(&init).unwrap();
    let fingerprint = init["api_fingerprint"].as_str().unwrap().to_owned();
    let home_arg = home.to_str().unwrap().to_owned();
    let _node = Running(
        Command::new("ip")
            .args(["netns", "exec", &name])
            .arg(dta_bin())
            .args([
                "run",
                "--home",
                &home_arg,
                "--api",
                "10.214.0.1:7443",
                "--no-mdns",
            ])
            .args(["--listen", "/ip4/10.214.0.1/tcp/0"])
            .env("DTA_PASSPHRASE", "process test passphrase")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let file = wait_for_node_file(&home).await;
    assert_eq!(file.api, "https://10.214.0.1:7443");
    assert_eq!(file.namespace.as_deref(), Some(name.as_str()));

    // A client inside the namespace, with the token and the pinned certificate.
    let token_file = home.join("api-token").to_str().unwrap().to_owned();
    let client = |pin: &str| {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &name])
            .arg(dta_bin())
            .args(["status", "--api", &file.api, "--json"])
            .args(["--token-file", &token_file, "--api-fingerprint", pin])
            .env_remove("DTA_HOME")
            .env_remove("DTA_API");
        command
    };
    let mut pinned = client(&fingerprint);
    let status = tokio::task::spawn_blocking(move || succeed(&mut pinned))
        .await
        .unwrap();
    let status: Value = serde_json::from_slice(&status).unwrap();
    assert_eq!(status["identity"], file.identity.as_str(), "{status}");
    let mut wrong = client(&"00".repeat(32));
    let (ok, stderr) = tokio::task::spawn_blocking(move || run_to_end(&mut wrong))
        .await
        .unwrap();
    assert!(!ok, "a wrong pin is refused");
    assert!(stderr.contains("cannot reach"), "{stderr}");
}
