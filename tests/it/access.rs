//! Who may call what: every route refuses a call without a token (401) and one whose token
//! lacks the route's scope (403); tokens are made, listed and revoked, and a revoked or
//! expired one stops working at once; `/v1` is open on loopback unless configured otherwise.

use dta_node::client::{ApiClient, Method};
use dta_testnet::harness::Testnet;
use serde_json::{Value, json};
use zeroize::Zeroizing;

/// A concrete path for a routed one (`{reference}` and the like filled in).
fn concrete(path: &str) -> String {
    path.replace("{reference}", "no-such-order")
        .replace("{cid}", "bafkqaaa")
        .replace(
            "{peer}",
            "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN",
        )
        .replace("{id}", "000000000000")
}

/// Makes a token with `scopes` through `admin`; the token.
async fn token(admin: &ApiClient, scopes: &[&str], expires: Option<&str>) -> (String, String) {
    let made = admin
        .post(
            "/v2/tokens",
            &json!({ "scopes": scopes, "expires": expires, "label": "test" }),
        )
        .await
        .unwrap();
    (
        made["token"].as_str().unwrap().to_owned(),
        made["id"].as_str().unwrap().to_owned(),
    )
}

fn with(api: &str, token: &str) -> ApiClient {
    ApiClient::new(api).with_token(Zeroizing::new(token.to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_a_call_without_a_token_or_without_its_scope() {
    let net = Testnet::builder().nodes(1).build().await.expect("testnet");
    let api = net.node(0).info().api.clone();
    let admin = net.node(0).client();
    let index = ApiClient::new(&api).get("/").await.unwrap();
    let (read_only, _) = token(&admin, &["read"], None).await;
    let (order_only, _) = token(&admin, &["order"], None).await;
    let mut closed = 0;
    for endpoint in index["endpoints"].as_array().unwrap() {
        let path = concrete(endpoint["path"].as_str().unwrap());
        for (method, access) in endpoint["access"].as_object().unwrap() {
            let access = access.as_str().unwrap();
            let method: Method = method.parse().unwrap();
            let body = Some(json!({}));
            let anonymous = ApiClient::new(&api)
                .call(method.clone(), &path, body.as_ref())
                .await
                .unwrap();
            match access {
                // Open, and /v1 on loopback: never asks for a token.
                "open" => {
                    assert_ne!(anonymous.status, 401, "{method} {path}: {anonymous:?}");
                    continue;
                }
                v1 if v1.starts_with("v1:") => {
                    assert_ne!(anonymous.status, 401, "{method} {path}: {anonymous:?}");
                    continue;
                }
                _ => {}
            }
            closed += 1;
            assert_eq!(anonymous.status, 401, "{method} {path}: {anonymous:?}");
            assert_eq!(anonymous.body["code"], "unauthorized", "{method} {path}");
            // A token of another scope: 403, naming the scope it lacks.
            let needs = if access == "metrics" { "read" } else { access };
            let (other, lacking) = if needs.split('+').any(|s| s == "read") {
                (&order_only, "read")
            } else {
                (&read_only, needs.split('+').next().unwrap())
            };
            let refused = with(&api, other)
                .call(method.clone(), &path, body.as_ref())
                .await
                .unwrap();
            assert_eq!(refused.status, 403, "{method} {path}: {refused:?}");
            assert!(
                refused.body["error"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("lacks the {lacking} scope")),
                "{method} {path}: {refused:?}"
            );
            // The home's token (every scope) gets past the check, whatever the handler says.
            if path == dta_node::client::EVENTS_PATH {
                // A live stream never ends: that it opened is the answer.
                admin.events().await.unwrap();
                continue;
            }
            let allowed = admin
                .call(method.clone(), &path, body.as_ref())
                .await
                .unwrap();
            assert!(
                allowed.status != 401 && allowed.status != 403,
                "{method} {path}: {allowed:?}"
            );
        }
    }
    assert!(closed >= 30, "only {closed} closed routes");
    // A made-up token, or none in the right scheme: 401 as well.
    let forged = with(&api, "dta_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .call(Method::GET, "/v2/orders", None)
        .await
        .unwrap();
    assert_eq!(forged.status, 401, "{forged:?}");
    let metrics = admin.get_bytes("/metrics").await.unwrap();
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("dta_api_denied_total{reason=\"scope\"}") && !l.ends_with(" 0")),
        "{metrics}"
    );
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_or_expired_token_stops_working_at_once() {
    let net = Testnet::builder().nodes(1).build().await.expect("testnet");
    let api = net.node(0).info().api.clone();
    let admin = net.node(0).client();
    let (reader, id) = token(&admin, &["read"], None).await;
    let client = with(&api, &reader);
    assert!(client.get("/v2/orders").await.is_ok());
    let listed = admin.get("/v2/tokens").await.unwrap();
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(entry["scopes"], json!(["read"]));
    assert_eq!(entry["live"], true);
    assert!(
        !listed.to_string().contains(&reader),
        "a list never shows a token"
    );

    let revoked = admin.delete(&format!("/v2/tokens/{id}")).await.unwrap();
    assert_eq!(revoked["live"], false);
    let refused = client.call(Method::GET, "/v2/orders", None).await.unwrap();
    assert_eq!(refused.status, 401);
    assert!(
        refused.body["error"]
            .as_str()
            .unwrap()
            .contains(&format!("token {id} was revoked")),
        "{refused:?}"
    );

    let (brief, brief_id) = token(&admin, &["read"], Some("1s")).await;
    let brief = with(&api, &brief);
    assert!(brief.get("/v2/orders").await.is_ok());
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    let expired = brief.call(Method::GET, "/v2/orders", None).await.unwrap();
    assert_eq!(expired.status, 401);
    assert!(
        expired.body["error"]
            .as_str()
            .unwrap()
            .contains(&format!("token {brief_id} has expired")),
        "{expired:?}"
    );

    // Bad requests change nothing.
    let before = admin.get("/v2/tokens").await.unwrap();
    for body in [
        json!({ "scopes": [] }),
        json!({ "scopes": ["root"] }),
        json!({ "scopes": ["read"], "expires": "forever" }),
        json!({ "scopes": ["read"], "label": "a\u{7}b" }),
        json!({ "scopes": ["read"], "extra": 1 }),
    ] {
        let answer = admin
            .call(Method::POST, "/v2/tokens", Some(&body))
            .await
            .unwrap();
        assert!(
            answer.status == 422 || answer.status == 400,
            "{body}: {answer:?}"
        );
    }
    let unknown = admin
        .call(Method::DELETE, "/v2/tokens/000000000000", None)
        .await
        .unwrap();
    assert_eq!(unknown.status, 404);
    assert_eq!(admin.get("/v2/tokens").await.unwrap(), before);
    net.stop().await;
}

/// The answer's `error`, for messages.
fn error_of(answer: &Value) -> &str {
    answer["error"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_api_is_open_on_loopback_and_the_home_token_is_private() {
    let mut net = Testnet::builder().nodes(1).build().await.expect("testnet");
    let api = net.node(0).info().api.clone();
    let anonymous = ApiClient::new(&api);
    let status = anonymous.get("/v1/status").await.unwrap();
    assert!(status.is_object());
    let identities = anonymous
        .call(Method::GET, "/v1/identity", None)
        .await
        .unwrap();
    assert_eq!(identities.status, 200, "{}", error_of(&identities.body));
    // The native API is not.
    let native = anonymous
        .call(Method::GET, "/v2/identities", None)
        .await
        .unwrap();
    assert_eq!(native.status, 401);
    // The home's token is for its owner alone.
    let file = net
        .test_node(0)
        .home()
        .join(dta_node::tokens::HOME_TOKEN_FILE);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o077, 0, "{mode:o}");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dta_command_makes_uses_and_revokes_tokens_and_v1_can_ask_for_one() {
    use crate::process::{dta, dta_output, run_home, succeed};

    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("node");
    let init = succeed(dta(&home).args(["init", "--name", "tokens", "--json"]));
    let init: Value = serde_json::from_slice(&init).unwrap();
    assert_eq!(
        init["token_file"].as_str().unwrap(),
        home.join("api-token").to_str().unwrap()
    );
    // `/v1` asks for a token too.
    let config = std::fs::read_to_string(home.join("config.toml")).unwrap();
    assert!(config.contains("[api]"), "{config}");
    let config = config.replace("[api]\n", "[api]\nv1_token = true\n");
    std::fs::write(home.join("config.toml"), config).unwrap();
    let (_node, file) = run_home(&home).await;
    let v1 = ApiClient::new(&file.api)
        .call(Method::GET, "/v1/identity", None)
        .await
        .unwrap();
    assert_eq!(v1.status, 401, "{v1:?}");

    // With --home, the home's token: a reader made and printed once.
    let home_arg = home.to_str().unwrap().to_owned();
    let args = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let made = dta_output(args(&[
        "token",
        "create",
        "--scopes",
        "read",
        "--label",
        "auditor",
        "--expires",
        "30d",
        "--home",
        &home_arg,
    ]))
    .await;
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let reader = String::from_utf8(made.stdout).unwrap().trim().to_owned();
    assert!(reader.starts_with("dta_"), "{reader}");
    let listed = dta_output(args(&["token", "list", "--home", &home_arg])).await;
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(
        listed.contains("auditor") && listed.contains("live"),
        "{listed}"
    );
    assert!(!listed.contains(&reader));

    // With the token in DTA_TOKEN: it reads, and cannot order (403, naming the scope).
    let as_reader = |list: &[&str]| {
        let mut command = crate::process::dta_client(list);
        command.env("DTA_TOKEN", &reader).args(["--api", &file.api]);
        command
    };
    let mut list = as_reader(&["order", "list"]);
    let out = tokio::task::spawn_blocking(move || list.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut create = as_reader(&["identity", "create", "someone"]);
    let out = tokio::task::spawn_blocking(move || create.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("403") && stderr.contains("lacks the admin scope"),
        "{stderr}"
    );
    // No token at all: 401, and the message says how to give one.
    let out = dta_output(args(&["order", "list", "--api", &file.api])).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("401") && stderr.contains("--token-file"),
        "{stderr}"
    );

    // Revoked: refused from then on.
    let id = listed
        .lines()
        .find(|l| l.contains("auditor"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    let revoked = dta_output(args(&["token", "revoke", &id, "--home", &home_arg])).await;
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    let mut list = as_reader(&["order", "list"]);
    let out = tokio::task::spawn_blocking(move || list.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("revoked"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_api_is_reached_only_with_its_certificate_pinned_and_a_plain_one_stays_on_loopback()
 {
    use crate::process::{dta, dta_output, run_home, run_to_end, succeed};

    let root = tempfile::tempdir().unwrap();
    // Without TLS, an API on a network address is refused before anything is opened.
    let plain = root.path().join("plain");
    succeed(dta(&plain).args(["init", "--name", "plain"]));
    let config_before = std::fs::read_to_string(plain.join("config.toml")).unwrap();
    let (ok, stderr) = run_to_end(dta(&plain).args(["run", "--api", "0.0.0.0:0", "--no-mdns"]));
    assert!(!ok);
    assert!(
        stderr.contains("without TLS") && stderr.contains("--api-tls"),
        "{stderr}"
    );
    assert!(!plain.join("node.json").exists());
    assert_eq!(
        std::fs::read_to_string(plain.join("config.toml")).unwrap(),
        config_before
    );

    let home = root.path().join("tls");
    let init = succeed(dta(&home).args(["init", "--name", "tls", "--api-tls", "--json"]));
    let init: Value = serde_json::from_slice(&init).unwrap();
    let fingerprint = init["api_fingerprint"].as_str().unwrap().to_owned();
    assert_eq!(fingerprint.len(), 64, "{init}");
    let (_node, file) = run_home(&home).await;
    assert!(file.api.starts_with("https://127.0.0.1:"), "{}", file.api);
    assert_eq!(file.api_fingerprint.as_deref(), Some(fingerprint.as_str()));

    let home_arg = home.to_str().unwrap().to_owned();
    let token_file = home.join("api-token").to_str().unwrap().to_owned();
    let args = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    // With --home, node.json gives the URL and the fingerprint.
    let status = dta_output(args(&["status", "--home", &home_arg, "--json"])).await;
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    // With --api, the fingerprint is needed, and only the right one works.
    let with = |pin: Option<&str>| {
        let mut list = args(&["status", "--api", &file.api, "--token-file", &token_file]);
        if let Some(pin) = pin {
            list.extend(args(&["--api-fingerprint", pin]));
        }
        list
    };
    let pinned = dta_output(with(Some(&fingerprint))).await;
    assert!(
        pinned.status.success(),
        "{}",
        String::from_utf8_lossy(&pinned.stderr)
    );
    let unpinned = dta_output(with(None)).await;
    let stderr = String::from_utf8_lossy(&unpinned.stderr);
    assert!(!unpinned.status.success());
    assert!(stderr.contains("--api-fingerprint"), "{stderr}");
    let other = "ab".repeat(32);
    let wrong = dta_output(with(Some(&other))).await;
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success());
    assert!(stderr.contains("cannot reach"), "{stderr}");
    // Plain HTTP to the HTTPS port gets nothing.
    let plain_url = file.api.replace("https://", "http://");
    let answer = ApiClient::new(&plain_url)
        .call(Method::GET, "/v2/health", None)
        .await;
    assert!(answer.is_err(), "{answer:?}");
}
