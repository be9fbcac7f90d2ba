//! What a newcomer meets in the first hour, on real `dta` processes: start-up errors that name
//! what is wrong, an API whose every error is JSON with a stable code and whose index lists
//! what answers, output that survives `| head`, and a keystore that refuses weak passphrases.

use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::process::{RUN_ON_LOOPBACK, Running, dta, run_to_end, succeed, wait_for_node_file};

/// Starts a node of a new home under `root` and returns it with its node.json.
async fn start_node(root: &Path, name: &str) -> (Running, dta_node::NodeFile) {
    let home = root.join(name);
    succeed(dta(&home).args(["init", "--name", name]));
    crate::process::run_home(&home).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_port_another_node_holds_fails_the_start_and_names_it() {
    let root = tempfile::tempdir().unwrap();
    let (_first, file) = start_node(root.path(), "first").await;
    let tcp = file
        .listen_addrs
        .iter()
        .find(|a| a.contains("/tcp/"))
        .unwrap()
        .clone();
    let second = root.path().join("second");
    succeed(dta(&second).args(["init", "--name", "second"]));
    let mut child = dta(&second)
        .args(["run", "--api", "127.0.0.1:0", "--no-mdns", "--listen"])
        .arg(&tcp)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr_pipe = child.stderr.take().unwrap();
    let mut second_node = Running(child);
    // A start that fails ends at once; one that does not would run until killed.
    let mut exit = None;
    for _ in 0..300 {
        if let Some(status) = second_node.0.try_wait().unwrap() {
            exit = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = second_node.0.kill();
    let _ = second_node.0.wait();
    let mut stderr = String::new();
    stderr_pipe.read_to_string(&mut stderr).unwrap();
    let ok = exit.is_none_or(|status| status.success());
    assert!(!ok, "a second node on the same port started: {stderr}");
    assert!(
        stderr.contains("cannot listen on") && stderr.contains(&file.listen_addrs[0]),
        "{stderr}"
    );
    assert!(!root.path().join("second/node.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_bootstrap_address_is_warned_about_once_by_address() {
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("lone");
    succeed(dta(&home).args(["init", "--name", "lone"]));
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = format!("/ip4/127.0.0.1/tcp/{port}");
    let mut child = dta(&home)
        .args(RUN_ON_LOOPBACK)
        .args(["--bootstrap", &unreachable])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut running = Running(child);
    wait_for_node_file(&home).await;
    // Kademlia's first bootstrap attempt comes half a second after start.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = running.0.kill();
    let _ = running.0.wait();
    let mut log = String::new();
    stderr.read_to_string(&mut log).unwrap();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("cannot reach bootstrap address"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains(&unreachable), "{log}");
    assert!(!log.contains("Failed to trigger bootstrap"), "{log}");
}

/// Replaces `{…}` placeholders of an index path with values that parse or at least reach the
/// handler.
fn concrete(path: &str) -> String {
    path.replace("{peer}", "not-a-peer")
        .replace("{cid}", "not-a-cid")
        .replace("{reference}", "no-such-order")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_error_is_json_with_a_code_and_the_index_lists_what_answers() {
    let root = tempfile::tempdir().unwrap();
    let (_node, file) = start_node(root.path(), "api").await;
    // The home's token (every scope) on every call: this is about answers past the access check.
    let token = std::fs::read_to_string(root.path().join("api").join("api-token")).unwrap();
    let client = crate::process::raw_http_with(&token);
    let api = file.api.clone();

    let health: Value = client
        .get(format!("{api}/v2/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ready", "{health}");

    let index: Value = client
        .get(format!("{api}/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(index["identity"], file.identity.as_str());
    let endpoints = index["endpoints"].as_array().unwrap();
    assert!(endpoints.len() >= 30, "{index}");
    for endpoint in endpoints {
        let path = concrete(endpoint["path"].as_str().unwrap());
        for method in endpoint["method"].as_str().unwrap().split('|') {
            let method: reqwest::Method = method.parse().unwrap();
            let response = client
                .request(method.clone(), format!("{api}{path}"))
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = response.status();
            // A live stream does not end: that it opened is the answer.
            if response
                .headers()
                .get("content-type")
                .is_some_and(|t| t == "text/event-stream")
            {
                assert_eq!(status, 200, "{method} {path}");
                continue;
            }
            let text = response.text().await.unwrap();
            assert_ne!(
                status, 405,
                "{method} {path} is listed but not routed: {text}"
            );
            if status.is_client_error() || status.is_server_error() {
                let body: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|_| panic!("{method} {path}: {status} not JSON: {text}"));
                assert!(body["error"].is_string(), "{method} {path}: {body}");
                assert!(body["code"].is_string(), "{method} {path}: {body}");
                assert!(
                    !text.contains("no such endpoint"),
                    "{method} {path} is listed but not routed"
                );
            }
        }
    }

    // What axum answers by itself is in the same shape: 405, 404, and rejected bodies.
    let cases: [(reqwest::Method, &str, Option<&str>, u16, &str); 5] = [
        (
            reqwest::Method::DELETE,
            "/v2/node",
            None,
            405,
            "method_not_allowed",
        ),
        (reqwest::Method::GET, "/v9/nothing", None, 404, "not_found"),
        (
            reqwest::Method::POST,
            "/v2/orders",
            Some("{not json"),
            400,
            "bad_request",
        ),
        (
            reqwest::Method::POST,
            "/v2/orders",
            Some("[1, 2]"),
            400,
            "bad_request",
        ),
        (
            reqwest::Method::PUT,
            "/v2/peers/blocked/x",
            None,
            400,
            "bad_request",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let mut request = client.request(method.clone(), format!("{api}{path}"));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{method} {path}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["code"], code, "{method} {path}: {answer}");
        assert!(
            !answer["error"].as_str().unwrap().is_empty(),
            "{method} {path}"
        );
    }
    // A path segment that is not UTF-8: axum's own rejection, rewritten.
    let response = client
        .get(format!("{api}/v2/orders/%FF"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["code"], "bad_request", "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_into_a_closed_pipe_ends_quietly() {
    let root = tempfile::tempdir().unwrap();
    let (_node, file) = start_node(root.path(), "pipe").await;
    let token = root.path().join("pipe").join("api-token");
    let token = token.to_str().unwrap();
    for args in [
        vec!["identities", "--api", &file.api, "--token-file", token],
        vec!["status", "--api", &file.api, "--token-file", token],
        vec!["--help"],
    ] {
        let mut child = dta(root.path())
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes before the first line, as `| head -0` would.
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
        assert!(output.status.success(), "{args:?}: {stderr}");
    }
}

#[test]
fn init_refuses_a_short_passphrase_and_prints_the_peer_id() {
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("short");
    let (ok, stderr) = run_to_end(
        dta(&home)
            .env("DTA_PASSPHRASE", "elevenchars")
            .args(["init", "--name", "short"]),
    );
    assert!(!ok);
    assert!(
        stderr.contains("11 characters") && stderr.contains("at least 12"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("elevenchars"),
        "the passphrase leaked: {stderr}"
    );
    assert!(!home.join("config.toml").exists());

    // A cheaper key derivation than the default is refused before anything is made.
    let (ok, stderr) = run_to_end(dta(&home).args(["init", "--argon2-memory", "8"]));
    assert!(!ok);
    assert!(stderr.contains("--argon2-memory"), "{stderr}");
    assert!(!home.join("config.toml").exists());

    let stdout = succeed(
        dta(&home)
            .env("DTA_PASSPHRASE", "elevenchars")
            .args(["init", "--name", "short", "--insecure-passphrase"])
            .args(["--argon2-memory", "32", "--argon2-time", "3"]),
    );
    let text = String::from_utf8(stdout).unwrap();
    assert!(text.contains("identity  bafy"), "{text}");
    assert!(text.contains("peer id   12D3Koo"), "{text}");
    let keystore = std::fs::read_to_string(home.join("keystore.toml")).unwrap();
    assert!(keystore.contains("memory_kib = 32768"), "{keystore}");
    assert!(keystore.contains("iterations = 3"), "{keystore}");
}

#[test]
fn the_version_names_the_release_and_the_commit() {
    let printed = succeed(&mut crate::process::dta_client(&["--version"]));
    let printed = String::from_utf8(printed).unwrap();
    assert_eq!(printed, format!("dta {}\n", dta_node::version::LONG));
    assert_ne!(dta_node::version::VERSION, "0.0.0");
    // Built from a git checkout, the commit is HEAD's.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if root.join(".git").exists() {
        let head = std::process::Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .current_dir(&root)
            .output()
            .unwrap();
        let head = String::from_utf8(head.stdout).unwrap();
        assert_eq!(dta_node::version::COMMIT, head.trim(), "{printed}");
    }
}
