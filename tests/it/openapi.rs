//! The API's OpenAPI document (`docs/openapi.json`, the one every node serves) against real
//! answers: on a testnet that certified and released an order, every route is called, with
//! real arguments and with wrong ones, and each answer (status, media type, body) is checked
//! by openapi-core (PyPI), an independent validator, against the document.
//!
//! `#[ignore]`d in a plain `cargo test`: it needs openapi-core, which `scripts/test` installs
//! in its Python environment (`DTA_OPENAPI_PYTHON`) before it runs this with
//! `--ignored openapi::`.

use std::io::Write as _;
use std::path::Path;

use dta_node::client::Method;
use serde_json::{Value, json};

use dta_actors::roles::Role;
use dta_crypto::mpin::{self, G1Point, MpinScalar};
use dta_testnet::harness::Testnet;

use crate::custody::{Api, BENEFICIARY, PRINCIPAL, identity, order};

const SCRIPT: &str = include_str!("../interop/openapi_answers.py");

/// One call and its answer, as the checker reads it.
async fn exchange(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let mut request = http.request(method.clone(), format!("{base}{path}"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    let content_type = answer
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = answer.bytes().await.unwrap();
    let mut exchange = json!({
        "method": method.as_str(),
        "path": path,
        "status": status,
        "content_type": content_type,
    });
    // Binary answers (blocks, CAR archives) travel to the checker in base64.
    match String::from_utf8(bytes.to_vec()) {
        Ok(text) => exchange["body"] = json!(text),
        Err(_) => {
            use base64::Engine as _;
            exchange["body_base64"] =
                json!(base64::engine::general_purpose::STANDARD.encode(&bytes));
        }
    }
    exchange
}

/// Whether `path` (as called, maybe with a query) is an instance of the route `template`.
fn matches(template: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or_default();
    let (wanted, given): (Vec<&str>, Vec<&str>) =
        (template.split('/').collect(), path.split('/').collect());
    wanted.len() == given.len()
        && wanted
            .iter()
            .zip(&given)
            .all(|(w, g)| w == g || (w.starts_with('{') && !g.is_empty()))
}

/// The JSON body of `exchange`'s answer, which must have succeeded.
fn succeeded(exchange: &Value) -> Value {
    let status = exchange["status"].as_u64().unwrap();
    assert!((200..300).contains(&status), "{exchange}");
    serde_json::from_str(exchange["body"].as_str().unwrap()).unwrap()
}

/// Every M-Pin call answering as it does when all goes well: a server secret, a client
/// secret, a time permit and a token for `name`, and an authentication with the token.
async fn mpin_answers(
    http: &reqwest::Client,
    base: &str,
    authorities: &[String],
    name: &str,
) -> Vec<Value> {
    const PIN: u32 = 1234;
    let call =
        |path: &'static str, body: Value| exchange(http, base, Method::POST, path, Some(body));
    let today = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400;
    let mut exchanges = vec![
        call("/v2/mpin/server-secret", json!({ "from": authorities })).await,
        call(
            "/v2/mpin/permit",
            json!({ "identity": name, "date": today, "from": authorities }),
        )
        .await,
    ];
    let issued = call(
        "/v2/mpin/client-secret",
        json!({ "identity": name, "from": authorities }),
    )
    .await;
    let reference = succeeded(&issued)["reference"].clone();
    exchanges.push(issued);
    let made = call(
        "/v2/mpin/token",
        json!({ "identity": name, "pin": PIN, "reference": reference }),
    )
    .await;
    let token = succeeded(&made)["token"].as_str().unwrap().to_owned();
    exchanges.push(made);
    let token = G1Point::from_bytes(&hex::decode(token).unwrap()).unwrap();
    let first = mpin::client_first(&token, name.as_bytes(), PIN, None, None).unwrap();
    let challenged = call(
        "/v2/mpin/auth/challenge",
        json!({ "identity": name, "u": hex::encode(first.u.to_bytes()) }),
    )
    .await;
    let challenge = succeeded(&challenged);
    exchanges.push(challenged);
    let y =
        MpinScalar::from_bytes(&hex::decode(challenge["y"].as_str().unwrap()).unwrap()).unwrap();
    let v = mpin::client_second(first.state, &y).unwrap();
    let verified = call(
        "/v2/mpin/auth/verify",
        json!({ "session": challenge["session"], "v": hex::encode(v.to_bytes()) }),
    )
    .await;
    assert_eq!(succeeded(&verified)["authenticated"], true, "{verified}");
    exchanges.push(verified);
    for answer in &exchanges {
        succeeded(answer);
    }
    exchanges
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs openapi-core (PyPI): scripts/test installs it and runs it"]
async fn every_routes_real_answers_match_the_openapi_document() {
    let python = std::env::var("DTA_OPENAPI_PYTHON")
        .expect("DTA_OPENAPI_PYTHON must name a Python with openapi-core");
    // The fiduciaries are M-Pin authorities too, and serve the principal a server secret.
    let net = Testnet::builder()
        .nodes(5)
        .one_role_each(|i| match i {
            PRINCIPAL => Role::Principal,
            BENEFICIARY => Role::Beneficiary,
            _ => Role::Fiduciary,
        })
        .mpin_servers(&[PRINCIPAL])
        .build()
        .await
        .expect("testnet");
    let api = Api::new();
    order(&api, &net, "answers-1", "the launch codes").await;
    let (status, released) = api
        .post(
            &net,
            PRINCIPAL,
            "/v2/orders/answers-1/release?wait=30",
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{released}");
    let token = dta_node::tokens::read_token_file(&net.node(PRINCIPAL).token_file())
        .unwrap()
        .unwrap();
    let http = crate::process::raw_http_with(token.as_str());
    let base = net.node(PRINCIPAL).info().api.clone();
    let (_, shown) = api.get(&net, PRINCIPAL, "/v2/orders/answers-1").await;
    let head = shown[0]["head"].as_str().unwrap().to_owned();
    let principal = identity(&net, PRINCIPAL);
    let peer = net.node(1).info().peer_id.to_string();
    let (_, tokens) = api.get(&net, PRINCIPAL, "/v2/tokens").await;
    let token_id = tokens[0]["id"].as_str().unwrap().to_owned();

    let index: Value = http
        .get(format!("{base}/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fiduciaries: Vec<String> = (1..4).map(|i| identity(&net, i)).collect();
    // M-Pin first, so that `GET /v2/mpin` lists its issuances.
    let name = net.node(PRINCIPAL).info().name.clone();
    let mut exchanges = mpin_answers(&http, &base, &fiduciaries, &name).await;
    // Every GET route with real arguments.
    for endpoint in index["endpoints"].as_array().unwrap() {
        let template = endpoint["path"].as_str().unwrap();
        if !endpoint["method"].as_str().unwrap().split('|').any(|m| m == "GET")
            // A live stream never ends; its status and media type are checked in `live`.
            || template == "/v2/events"
        {
            continue;
        }
        let path = template
            .replace("{reference}", "answers-1")
            .replace("{peer}", &peer)
            .replace("{asset}", "node.js")
            .replace(
                "{cid}",
                if template.starts_with("/v2/blocks") || template.starts_with("/v2/network/heads") {
                    &head
                } else {
                    &principal
                },
            );
        exchanges.push(exchange(&http, &base, Method::GET, &path, None).await);
    }
    // Changes, each with a body the node takes, and failures of every kind.
    let beneficiary = identity(&net, BENEFICIARY);
    let calls: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::POST,
            "/v2/orders?wait=30".into(),
            Some(json!({
                "reference": "answers-2",
                "fiduciaries": fiduciaries,
                "threshold": 2,
                "beneficiary": beneficiary,
                "secret_hex": "00ff10",
            })),
        ),
        (
            Method::POST,
            "/v2/orders".into(),
            Some(json!({"threshold": 2})),
        ),
        (
            Method::POST,
            "/v2/orders".into(),
            Some(json!({"fiduciaries": ["not-a-cid"], "threshold": 1, "secret": "x"})),
        ),
        (Method::GET, "/v2/orders/no-such-order".into(), None),
        (
            Method::GET,
            "/v2/orders/answers-1?principal=not-a-cid".into(),
            None,
        ),
        (
            Method::POST,
            "/v2/orders/answers-2/release?wait=30".into(),
            Some(json!({})),
        ),
        (Method::POST, "/v2/orders/answers-1/refresh".into(), None),
        (
            Method::POST,
            "/v2/orders/answers-1/approvals".into(),
            Some(json!({"request": "not-a-cid"})),
        ),
        (
            Method::POST,
            "/v2/orders/answers-1/sign".into(),
            Some(json!({"message_hex": "00"})),
        ),
        (
            Method::POST,
            "/v2/identities".into(),
            Some(json!({"name": "hosted-answers"})),
        ),
        (
            Method::POST,
            "/v2/tokens".into(),
            Some(json!({"scopes": ["read"], "label": "answers"})),
        ),
        (
            Method::POST,
            "/v2/tokens".into(),
            Some(json!({"scopes": []})),
        ),
        (Method::DELETE, format!("/v2/tokens/{token_id}x"), None),
        (Method::PUT, format!("/v2/peers/blocked/{peer}"), None),
        (Method::DELETE, format!("/v2/peers/blocked/{peer}"), None),
        (Method::DELETE, format!("/v2/peers/blocked/{peer}"), None),
        (
            Method::POST,
            "/v2/mpin/auth/verify".into(),
            Some(json!({"session": "none", "v": "00"})),
        ),
        (Method::POST, "/v2/orders/answers-1/abandon".into(), None),
        (
            Method::POST,
            "/v2/orders/answers-1/reshare".into(),
            Some(json!({"fiduciaries": ["not-a-cid"], "threshold": 1})),
        ),
        (
            Method::PUT,
            "/v2/blocks".into(),
            Some(json!({"any": "bytes"})),
        ),
        (Method::POST, "/v2/blocks/import".into(), Some(json!({}))),
        (
            Method::POST,
            "/v2/mpin/client-secret".into(),
            Some(json!({"identity": "alice@example.org"})),
        ),
        (
            Method::POST,
            "/v2/mpin/server-secret".into(),
            Some(json!({})),
        ),
        (
            Method::POST,
            "/v2/mpin/permit".into(),
            Some(json!({"identity": "alice@example.org", "date": 20000})),
        ),
        (
            Method::POST,
            "/v2/mpin/token".into(),
            Some(json!({"identity": "alice@example.org", "pin": 1234})),
        ),
        (
            Method::POST,
            "/v2/mpin/auth/challenge".into(),
            Some(json!({"identity": "alice@example.org", "u": "00"})),
        ),
        (
            Method::POST,
            "/v1/identity".into(),
            Some(json!({"name": "v1-answers"})),
        ),
        (
            Method::POST,
            "/v1/order".into(),
            Some(json!({"beneficiaryIDDocumentCID": identity(&net, BENEFICIARY)})),
        ),
        (
            Method::POST,
            "/v1/order/secret".into(),
            Some(json!({"orderReference": "no-such-order"})),
        ),
        (Method::POST, "/v2/backup/checkpoint".into(), None),
        (
            Method::POST,
            "/v2/orders/answers-2/cancel?wait=30".into(),
            None,
        ),
        (Method::POST, "/v2/orders/no-such-order/cancel".into(), None),
        (
            Method::GET,
            "/v2/orders?limit=1&role=principal".into(),
            None,
        ),
        (
            Method::GET,
            "/v2/orders?state=stalled&stalled_after=0".into(),
            None,
        ),
        (Method::GET, "/v2/orders?limit=0".into(), None),
        (Method::GET, "/v1/order?page=0&perPage=5".into(), None),
        (Method::GET, "/v1/identity?page=0&perPage=5".into(), None),
        (Method::POST, "/v2/network/probe".into(), None),
        (Method::GET, "/v2/network/heads/not-a-cid".into(), None),
        (Method::GET, format!("/v2/network/heads/{principal}"), None),
    ];
    for (method, path, body) in calls {
        exchanges.push(exchange(&http, &base, method, &path, body).await);
    }
    // The hosted identity made above, revoked (then shown, and refused a second time).
    let (_, known) = api.get(&net, PRINCIPAL, "/v2/identities").await;
    let hosted = known
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "hosted-answers")
        .map(|i| i["cid"].as_str().unwrap().to_owned())
        .expect("the hosted identity is listed");
    let revoke = format!("/v2/identities/{hosted}/revoke");
    for (method, path, body) in [
        (
            Method::POST,
            format!("/v2/identities/{hosted}/rotate"),
            None,
        ),
        (
            Method::POST,
            format!("/v2/identities/{principal}/rotate"),
            None,
        ),
        (
            Method::POST,
            revoke.clone(),
            Some(json!({"reason": "answers"})),
        ),
        (Method::POST, revoke, Some(json!({}))),
        (
            Method::POST,
            "/v2/identities/not-a-cid/revoke".into(),
            Some(json!({})),
        ),
        (Method::GET, format!("/v2/identities/{hosted}"), None),
        (Method::GET, "/v2/identities".into(), None),
    ] {
        exchanges.push(exchange(&http, &base, method, &path, body).await);
    }
    // A received secret, where it was received.
    let beneficiary_token = dta_node::tokens::read_token_file(&net.node(BENEFICIARY).token_file())
        .unwrap()
        .unwrap();
    let received = exchange(
        &crate::process::raw_http_with(beneficiary_token.as_str()),
        &net.node(BENEFICIARY).info().api,
        Method::GET,
        "/v2/orders/answers-1/secret",
        None,
    )
    .await;
    assert_eq!(received["status"], 200, "{received}");
    exchanges.push(received);
    // Without a token: 401 on every closed route.
    let anonymous = reqwest::Client::new();
    exchanges.push(exchange(&anonymous, &base, Method::GET, "/v2/orders", None).await);
    net.stop().await;
    // Every method of every route was called (the event stream aside).
    for endpoint in index["endpoints"].as_array().unwrap() {
        let template = endpoint["path"].as_str().unwrap();
        for method in endpoint["method"].as_str().unwrap().split('|') {
            let called = exchanges
                .iter()
                .any(|e| e["method"] == method && matches(template, e["path"].as_str().unwrap()));
            assert!(
                called || template == "/v2/events",
                "{method} {template} was not called"
            );
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let exchanges_file = dir.path().join("exchanges.jsonl");
    let mut file = std::fs::File::create(&exchanges_file).unwrap();
    for exchange in &exchanges {
        writeln!(file, "{exchange}").unwrap();
    }
    let script = dir.path().join("openapi_answers.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let document = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    let output = std::process::Command::new(python)
        .arg(&script)
        .arg(&document)
        .arg(&exchanges_file)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    println!("{said}");
    assert!(
        output.status.success(),
        "answers that do not match docs/openapi.json:\n{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        said.contains(&format!("{} checked, 0 failed", exchanges.len())),
        "{said}"
    );
}
