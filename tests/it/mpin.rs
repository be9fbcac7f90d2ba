//! M-Pin share issuance across nodes: three trust authorities issue client- and
//! server-secret shares; a client and an authentication server combine them; the right PIN
//! authenticates, a wrong one is refused; no single authority's share is enough; the
//! authorities' policy and the requester's checks refuse what they must.

use dta_crypto::mpin::{self, G1Point, MpinScalar};
use dta_protocol::envelope::Kind;
use dta_protocol::mpin::{MpinAnswer, MpinSecret, MpinSharePoint};
use dta_testnet::bench;
use dta_testnet::harness::Testnet;
use serde_json::{Value, json};

use crate::custody::{Api, deliver_and_settle, envelope, stranger};

pub(crate) const CLIENT: usize = 0;
pub(crate) const AUTHORITIES: [usize; 3] = [1, 2, 3];
pub(crate) const SERVER: usize = 4;
pub(crate) const PIN: u32 = 4321;

pub(crate) fn identity(net: &Testnet, node: usize) -> String {
    net.node(node).info().identity.clone()
}

pub(crate) fn authorities(net: &Testnet, nodes: &[usize]) -> Vec<String> {
    nodes.iter().map(|n| identity(net, *n)).collect()
}

/// A client, three authorities and an authentication server the authorities serve.
pub(crate) async fn mpin_network() -> (Testnet, Api) {
    let net = Testnet::builder()
        .nodes(5)
        .mpin_servers(&[SERVER])
        .build()
        .await
        .expect("testnet");
    (net, Api::new())
}

/// `node` asks the three authorities for its server secret.
async fn server_secret(api: &Api, net: &Testnet, node: usize) -> (u16, Value) {
    api.post(
        net,
        node,
        "/v2/mpin/server-secret",
        json!({ "from": authorities(net, &AUTHORITIES) }),
    )
    .await
}

/// Runs the `dta` binary: its stdout, or its stderr if it failed.
fn dta_cli(args: &[&str]) -> Result<String, String> {
    let output = std::process::Command::new(crate::process::dta_bin())
        .env_remove("DTA_API")
        .env_remove("DTA_HOME")
        .args(args)
        .output()
        .unwrap();
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// The client's secret from `from` for `name`, and its token for [`PIN`] (made from the
/// secret the node kept); the issuance's answer and the token.
async fn token_from(api: &Api, net: &Testnet, from: &[usize], name: &str) -> (Value, String) {
    let (status, issued) = api
        .post(
            net,
            CLIENT,
            "/v2/mpin/client-secret",
            json!({ "identity": name, "from": authorities(net, from) }),
        )
        .await;
    assert_eq!(status, 200, "{issued}");
    let (status, token) = api
        .post(
            net,
            CLIENT,
            "/v2/mpin/token",
            json!({ "identity": name, "pin": PIN, "reference": issued["reference"] }),
        )
        .await;
    assert_eq!(status, 200, "{token}");
    let token = token["token"].as_str().unwrap().to_owned();
    (issued, token)
}

/// The client side of an authentication against `server`'s API, with `token` and `pin`.
pub(crate) async fn authenticate(
    api: &Api,
    net: &Testnet,
    server: usize,
    name: &str,
    token: &str,
    pin: u32,
) -> (u16, Value) {
    let token = G1Point::from_bytes(&hex::decode(token).unwrap()).unwrap();
    let first = mpin::client_first(&token, name.as_bytes(), pin, None, None).unwrap();
    let (status, challenge) = api
        .post(
            net,
            server,
            "/v2/mpin/auth/challenge",
            json!({ "identity": name, "u": hex::encode(first.u.to_bytes()) }),
        )
        .await;
    assert_eq!(status, 200, "{challenge}");
    let y =
        MpinScalar::from_bytes(&hex::decode(challenge["y"].as_str().unwrap()).unwrap()).unwrap();
    let v = mpin::client_second(first.state, &y).unwrap();
    api.post(
        net,
        server,
        "/v2/mpin/auth/verify",
        json!({ "session": challenge["session"], "v": hex::encode(v.to_bytes()) }),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_authorities_issue_and_the_right_pin_alone_authenticates() {
    let (net, api) = mpin_network().await;
    let name = net.node(CLIENT).info().name.clone();

    // The server gets its secret from the three authorities; it is kept, not shown.
    let (status, body) = server_secret(&api, &net, SERVER).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["kept"], true);
    assert!(body.get("server_secret").is_none());

    // The client gets its secret for its own name, and makes a token with its PIN.
    let (issued, token) = token_from(&api, &net, &AUTHORITIES, &name).await;

    let (status, body) = authenticate(&api, &net, SERVER, &name, &token, PIN).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["authenticated"], true);
    let (status, body) = authenticate(&api, &net, SERVER, &name, &token, PIN + 1).await;
    assert_eq!(status, 401, "a wrong PIN: {body}");

    // The same through the CLI: the token from the client's node, the check on the server's
    // (by its URL, or by its identity CID through the client's node, which relays the steps
    // over libp2p); a wrong PIN exits non-zero either way.
    let client_api = net.node(CLIENT).info().api.clone();
    let client_token = net.node(CLIENT).token_file().display().to_string();
    let server_api = net.node(SERVER).info().api.clone();
    let server_cid = identity(&net, SERVER);
    let reference = issued["reference"].as_str().unwrap();
    let pin = PIN.to_string();
    let cli_token = dta_cli(&[
        "mpin",
        "token",
        "--id",
        &name,
        "--pin",
        &pin,
        "--reference",
        reference,
        "--api",
        &client_api,
        "--token-file",
        &client_token,
    ])
    .expect("dta mpin token");
    assert_eq!(cli_token.trim(), token);
    let authenticate_cli = |pin: &str, server: &str, token_file: &str| {
        dta_cli(&[
            "mpin",
            "authenticate",
            "--id",
            &name,
            "--pin",
            pin,
            "--token",
            cli_token.trim(),
            "--server",
            server,
            "--api",
            &client_api,
            "--token-file",
            token_file,
            "--json",
        ])
    };
    // Straight to the server (with a token of the server's), or relayed by the client's node.
    let server_token = net.node(SERVER).token_file().display().to_string();
    for (server, token_file) in [(&server_api, &server_token), (&server_cid, &client_token)] {
        let verdict: Value =
            serde_json::from_str(&authenticate_cli(&pin, server, token_file).unwrap()).unwrap();
        assert_eq!(verdict["authenticated"], true, "{server}");
        let refused = authenticate_cli("1", server, token_file).unwrap_err();
        assert!(
            refused.contains("authentication failed"),
            "{server}: {refused}"
        );
    }

    // One authority's share alone makes a token that does not authenticate.
    let (_, partial_token) = token_from(&api, &net, &[1], &name).await;
    let (status, _) = authenticate(&api, &net, SERVER, &name, &partial_token, PIN).await;
    assert_eq!(status, 401);

    // Each authority logged what it issued; the client logged its requests.
    for authority in AUTHORITIES {
        let (_, log) = api.get(&net, authority, "/v2/mpin").await;
        let issued: Vec<&Value> = log
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["side"] == "authority" && r["state"] == "issued")
            .collect();
        assert!(issued.len() >= 2, "authority {authority}: {log}");
    }
    let (_, log) = api.get(&net, CLIENT, "/v2/mpin").await;
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|r| r["side"] == "requester" && r["secret"] == "client" && r["state"] == "issued")
    );
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorities_refuse_what_policy_forbids_and_bad_input_gets_clear_errors() {
    let (net, api) = mpin_network().await;
    let from = authorities(&net, &AUTHORITIES);
    // Someone else's identity.
    let other = net.node(2).info().name.clone();
    let (status, body) = api
        .post(
            &net,
            CLIENT,
            "/v2/mpin/client-secret",
            json!({ "identity": other, "from": from }),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    // Every authority's reason, not only the first to arrive.
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("its own identity"), "{body}");
    for authority in &from {
        assert!(
            error.contains(authority.as_str()),
            "{authority} missing: {body}"
        );
    }
    // A server secret for a node that is not on the authorities' list.
    let (status, body) = server_secret(&api, &net, CLIENT).await;
    assert_eq!(status, 403, "{body}");
    // Bad input: an unknown authority, a malformed CID, a bad point, a PIN too large, a
    // verification with no server secret.
    let unknown = "bafyreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
    let name = net.node(CLIENT).info().name.clone();
    for (body, expected) in [
        (json!({ "identity": name, "from": [unknown] }), 400),
        (json!({ "identity": name, "from": ["not-a-cid"] }), 400),
        (json!({ "from": from }), 400),
        (json!({ "identity": name, "from": from, "extra": 1 }), 400),
    ] {
        let (status, answer) = api
            .post(&net, CLIENT, "/v2/mpin/client-secret", body.clone())
            .await;
        assert_eq!(status, expected, "{body}: {answer}");
        assert!(answer["error"].is_string());
    }
    for body in [
        json!({ "identity": name, "pin": 1, "client_secret": "04abcd" }),
        json!({ "identity": name, "pin": 1, "client_secret": "zz" }),
        json!({ "identity": name, "pin": 10_000, "client_secret": hex::encode(mpin::identity_point(b"x").to_bytes()) }),
        json!({ "identity": name, "pin": 1 }),
    ] {
        let (status, answer) = api.post(&net, CLIENT, "/v2/mpin/token", body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
    }
    let (status, _) = api
        .post(
            &net,
            CLIENT,
            "/v2/mpin/auth/challenge",
            json!({ "identity": name, "u": "04" }),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = api
        .post(
            &net,
            CLIENT,
            "/v2/mpin/auth/verify",
            json!({ "session": "nope", "v": hex::encode(mpin::identity_point(b"x").to_bytes()) }),
        )
        .await;
    assert_eq!(status, 404);
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_from_an_authority_that_was_not_asked_is_refused() {
    let mut net = Testnet::builder().nodes(5).build().await.expect("testnet");
    let api = Api::new();
    let name = net.node(CLIENT).info().name.clone();
    let from = authorities(&net, &[1, 2, 3, 4]);
    // Authorities 3 and 4 are down: the request waits with two answers of four (a forged
    // third answer, if taken, would show, without completing the set).
    net.test_node(3).stop().await;
    net.test_node(4).stop().await;
    let (status, body) = api
        .post(
            &net,
            CLIENT,
            "/v2/mpin/client-secret",
            json!({ "identity": name, "from": from, "wait_ms": 1500 }),
        )
        .await;
    assert_eq!(status, 504, "{body}");
    let (_, log) = api.get(&net, CLIENT, "/v2/mpin").await;
    let pending = log
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["side"] == "requester" && r["state"] == "requested")
        .expect("the pending request")
        .clone();
    assert_eq!(pending["answered"], 2, "{pending}");
    let reference = pending["reference"].as_str().unwrap().to_owned();

    // A stranger known to the client answers in the missing authority's place.
    let intruder = stranger(&net, 61, &[CLIENT]).await;
    let directory = net.node(CLIENT).directory();
    let client_identity = directory.borrow().identities[&identity(&net, CLIENT)]
        .verified
        .clone();
    let request_cid = {
        let blocks = net
            .node(CLIENT)
            .store()
            .scan(dta_actors::store::Column::Mpin)
            .unwrap();
        let record: dta_actors::mpin::MpinRecord =
            dta_protocol::dagcbor::decode(&blocks[0].1, Default::default()).unwrap();
        record.request
    };
    let answer = MpinAnswer {
        request: request_cid,
        secret: MpinSecret::Client,
        refused: None,
        index: None,
    };
    let share = MpinSharePoint {
        point: mpin::client_secret(&MpinScalar::random(), name.as_bytes())
            .to_bytes()
            .to_vec(),
    };
    let forged = envelope(
        &intruder,
        Kind::MpinShare,
        &reference,
        request_cid,
        Some(dta_protocol::dagcbor::encode(&answer).unwrap()),
        Some(&dta_protocol::dagcbor::encode(&share).unwrap()),
        &[&client_identity],
    );
    deliver_and_settle(&net, 1, CLIENT, "beneficiary", forged).await;
    let (_, log) = api.get(&net, CLIENT, "/v2/mpin").await;
    let after = log
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reference"] == reference.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        after["answered"], 2,
        "the stranger's share was not taken: {after}"
    );
    assert_eq!(after["state"], "requested");

    // The real authorities come back; a new request completes.
    net.test_node(3).start().await.expect("restart");
    net.test_node(4).start().await.expect("restart");
    net.wait_for_full_knowledge(std::time::Duration::from_secs(20))
        .await
        .unwrap();
    let (status, body) = api
        .post(
            &net,
            CLIENT,
            "/v2/mpin/client-secret",
            json!({ "identity": name, "from": from }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mpin_benchmark_runs_every_phase() {
    let report = bench::mpin::run(bench::mpin::MpinBench {
        issuances: 5,
        checks: 4,
    })
    .await
    .expect("benchmark runs");
    assert!(report.shares_per_second_one_authority > 0.0);
    assert!(report.secrets_per_second_three_authorities > 0.0);
    assert!(report.checks_per_second > 0.0);
}

/// Waits until `node` knows identity `cid`.
async fn wait_known(api: &Api, net: &Testnet, node: usize, cid: &str) {
    let known = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while api.get(net, node, &format!("/v2/identities/{cid}")).await.0 != 200 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(known.is_ok(), "node {node} never learned {cid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_serves_many_users_with_e_mail_ids_and_time_permits() {
    let (net, api) = mpin_network().await;
    let from = authorities(&net, &AUTHORITIES);
    let (status, body) = server_secret(&api, &net, SERVER).await;
    assert_eq!(status, 200, "{body}");

    // The client's node hosts two end users, named by e-mail-like ids.
    let users = ["alice@example.org", "bob+mfa@example.org"];
    for user in users {
        let (status, hosted) = api
            .post(&net, CLIENT, "/v2/identities", json!({ "name": user }))
            .await;
        assert_eq!(status, 201, "{hosted}");
        assert_eq!(hosted["name"], user);
        for authority in AUTHORITIES {
            wait_known(&api, &net, authority, hosted["cid"].as_str().unwrap()).await;
        }
    }
    // The name rules: which characters, and one identity per name on a node.
    let (status, body) = api
        .post(
            &net,
            CLIENT,
            "/v2/identities",
            json!({ "name": "alice smith" }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("A-Z a-z 0-9 - _ . @ +"),
        "{body}"
    );
    let (status, body) = api
        .post(&net, CLIENT, "/v2/identities", json!({ "name": users[0] }))
        .await;
    assert_eq!(status, 409, "{body}");

    // Each gets a client secret (asked for by its own hosted identity) and authenticates.
    let mut tokens = Vec::new();
    for user in users {
        let (_, token) = token_from(&api, &net, &AUTHORITIES, user).await;
        let (status, body) = authenticate(&api, &net, SERVER, user, &token, PIN).await;
        assert_eq!(status, 200, "{user}: {body}");
        tokens.push(token);
    }
    // A user the node does not host is still refused, by every authority.
    let (status, body) = api
        .post(
            &net,
            CLIENT,
            "/v2/mpin/client-secret",
            json!({ "identity": "carol@example.org", "from": from }),
        )
        .await;
    assert_eq!(status, 403, "{body}");

    // Time permits: today's authenticates through the CLI; another day's is refused with
    // the server's date; a permit of another user does not authenticate.
    let today = dta_actors::mpin::today();
    let permit = |user: &'static str, date: u32| {
        let api = &api;
        let from = from.clone();
        let net = &net;
        async move {
            let (status, body) = api
                .post(
                    net,
                    CLIENT,
                    "/v2/mpin/permit",
                    json!({ "identity": user, "date": date, "from": from }),
                )
                .await;
            assert_eq!(status, 200, "{body}");
            body["permit"].as_str().unwrap().to_owned()
        }
    };
    let alice_today = permit(users[0], today).await;
    let alice_yesterday = permit(users[0], today - 1).await;
    let bob_today = permit(users[1], today).await;
    let server_api = net.node(SERVER).info().api.clone();
    let server_token = net.node(SERVER).token_file().display().to_string();
    let pin = PIN.to_string();
    // Alice's authentication through the CLI, with `extra` arguments.
    let alice = |extra: &[&str]| {
        let mut args = vec![
            "mpin",
            "authenticate",
            "--id",
            users[0],
            "--pin",
            &pin,
            "--token",
            &tokens[0],
            "--server",
            &server_api,
            "--token-file",
            &server_token,
        ];
        args.extend_from_slice(extra);
        dta_cli(&args)
    };
    let (today_text, yesterday_text) = (today.to_string(), (today - 1).to_string());
    let verdict: Value = serde_json::from_str(
        &alice(&["--permit", &alice_today, "--date", &today_text, "--json"]).unwrap(),
    )
    .unwrap();
    assert_eq!(verdict["authenticated"], true);
    assert_eq!(verdict["identity"], users[0]);
    let refused = alice(&["--permit", &alice_yesterday, "--date", &yesterday_text]).unwrap_err();
    assert!(
        refused.contains(&format!("this server's date is day {today}")),
        "{refused}"
    );
    let refused = alice(&["--permit", &bob_today, "--date", &today_text]).unwrap_err();
    assert!(refused.contains("authentication failed"), "{refused}");
    let refused = alice(&["--permit", &alice_today]).unwrap_err();
    assert!(
        refused.contains("--date"),
        "a permit needs its date: {refused}"
    );
    net.stop().await;
}
