//! An M-Pin master secret generated t-of-n: three trust authorities generate it without a
//! dealer in an `mpin-master` order; a client and an authentication server each combine the
//! shares of any two; what they combine authenticates the right PIN alone; one authority down
//! changes nothing; the master secret is never released, and requests that name it wrongly
//! are refused.

use serde_json::{Value, json};

use crate::custody::Api;
use crate::mpin::{
    AUTHORITIES, CLIENT, PIN, SERVER, authenticate, authorities, identity, mpin_network,
};

const MASTER: &str = "mpin-master-2of3";

/// `node` asks for a client secret of `name` from the master secret, with `extra` in the body.
async fn client_secret(
    api: &Api,
    net: &dta_testnet::harness::Testnet,
    name: &str,
    extra: Value,
) -> (u16, Value) {
    let mut body = json!({ "identity": name, "master": { "reference": MASTER } });
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    api.post(net, CLIENT, "/v2/mpin/client-secret", body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_secret_generated_two_of_three_issues_secrets_from_any_two_authorities() {
    let (mut net, api) = mpin_network().await;
    let name = net.node(CLIENT).info().name.clone();
    let (status, body) = api
        .post(
            &net,
            CLIENT,
            "/v2/orders",
            json!({
                "reference": MASTER,
                "plugin": "mpin-master",
                "fiduciaries": authorities(&net, &AUTHORITIES),
                "threshold": 2,
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    api.wait_state(&net, CLIENT, MASTER, "principal", "certified")
        .await;
    for authority in AUTHORITIES {
        api.wait_state(&net, authority, MASTER, "fiduciary", "holding")
            .await;
    }
    // The key generation is in the log, over BLS12-381, and the audit checks it.
    let (status, report) = api
        .get(&net, CLIENT, &format!("/v2/orders/{MASTER}/audit"))
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["passed"], true, "{report}");
    assert!(report.to_string().contains("dkg-round"), "{report}");

    // Every fiduciary asked (the client knows the order), or any two: the same client secret.
    let (status, all) = client_secret(&api, &net, &name, json!({})).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["authorities"].as_array().unwrap().len(), 3, "{all}");
    for pair in [[1usize, 2], [2, 3], [3, 1]] {
        let (status, two) = client_secret(
            &api,
            &net,
            &name,
            json!({ "from": authorities(&net, &pair) }),
        )
        .await;
        assert_eq!(status, 200, "{two}");
        assert_eq!(two["client_secret"], all["client_secret"], "{pair:?}");
    }

    // The server does not know the order: it names its principal and threshold, and asks
    // two authorities other than... any two.
    let (status, body) = api
        .post(
            &net,
            SERVER,
            "/v2/mpin/server-secret",
            json!({
                "from": authorities(&net, &[1, 3]),
                "master": { "reference": MASTER, "principal": identity(&net, CLIENT), "threshold": 2 },
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, token) = api
        .post(
            &net,
            CLIENT,
            "/v2/mpin/token",
            json!({ "identity": name, "pin": PIN, "reference": all["reference"] }),
        )
        .await;
    assert_eq!(status, 200, "{token}");
    let token = token["token"].as_str().unwrap().to_owned();
    let (status, body) = authenticate(&api, &net, SERVER, &name, &token, PIN).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["authenticated"], true);
    let (status, body) = authenticate(&api, &net, SERVER, &name, &token, PIN + 1).await;
    assert_eq!(status, 401, "a wrong PIN: {body}");

    // Requests that name the master secret wrongly are refused before anything is sent.
    let (status, body) = client_secret(
        &api,
        &net,
        &name,
        json!({ "from": authorities(&net, &[1, SERVER]) }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("holds no share"), "{body}");
    let (status, body) = client_secret(
        &api,
        &net,
        &name,
        json!({ "master": { "reference": MASTER, "threshold": 3 } }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("2-of-3"), "{body}");
    let (status, body) = client_secret(
        &api,
        &net,
        &name,
        json!({ "from": authorities(&net, &[2]) }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // An authority asked for shares of a master secret it holds none of refuses, and says why.
    let (status, body) = api
        .post(
            &net,
            SERVER,
            "/v2/mpin/server-secret",
            json!({
                "from": authorities(&net, &[1, 2]),
                "master": { "reference": "no-such-master", "principal": identity(&net, CLIENT), "threshold": 2 },
                "wait_ms": 20_000,
            }),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.to_string().contains("no usable share"), "{body}");

    // The master secret never leaves its committee: no release, no refresh.
    for (call, body) in [
        ("release", json!({ "beneficiary": identity(&net, CLIENT) })),
        ("refresh", json!({})),
    ] {
        let path = format!("/v2/orders/{MASTER}/{call}");
        let (status, body) = api.post(&net, CLIENT, &path, body).await;
        assert!((400..500).contains(&status), "{call}: {status} {body}");
        assert!(
            body.to_string().contains("never released"),
            "{call}: {body}"
        );
    }

    // One authority down: the other two still issue the same client secret.
    net.test_node(AUTHORITIES[2]).stop().await;
    let (status, again) = client_secret(&api, &net, &name, json!({ "wait_ms": 60_000 })).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["client_secret"], all["client_secret"]);
}
