//! The original D-TA's `/v1` API, field by field, for each plugin.

use dta_actors::roles::Role;
use dta_node::client::{ApiClient, Method};
use dta_testnet::harness::Testnet;
use serde_json::Value;

async fn get(api: &ApiClient, path: &str) -> (u16, Value) {
    let answer = api.call(Method::GET, path, None).await;
    let answer = answer.unwrap();
    (answer.status, answer.body)
}

async fn post(api: &ApiClient, path: &str, body: Value) -> (u16, Value) {
    let answer = api.call(Method::POST, path, Some(&body)).await;
    let answer = answer.unwrap();
    (answer.status, answer.body)
}

/// Posts `body` as it is, with the given content type.
async fn post_raw(api: &ApiClient, path: &str, content_type: &str, body: String) -> (u16, Value) {
    let api = api.base();
    let response = reqwest::Client::new()
        .post(format!("{api}{path}"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Checks the fields of a `POST /v1/order` answer and returns its reference.
fn check_order_answer(order: &Value) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let created = order["createdAt"]
        .as_u64()
        .expect("createdAt is an integer");
    assert!(created <= now && created + 120 > now, "{order}");
    assert!(order["commitment"].as_str().is_some_and(|c| !c.is_empty()));
    let extension = order["extension"].as_object().expect("extension is a map");
    assert!(extension.values().all(Value::is_string), "{order}");
    order["orderReference"].as_str().unwrap().to_owned()
}

/// Checks the fields of a `POST /v1/order/secret` answer.
fn check_secret_answer(secret: &Value, reference: &str, order: &Value) {
    assert_eq!(secret["orderReference"], reference, "{secret}");
    assert_eq!(secret["commitment"], order["commitment"], "{secret}");
    assert!(secret["secret"].as_str().is_some_and(|s| !s.is_empty()));
    let extension = secret["extension"].as_object().expect("extension is a map");
    assert!(extension.values().all(Value::is_string), "{secret}");
}

/// What `GET /v1/order/{ref}` is expected to show of an order.
#[derive(Clone, Copy)]
struct Expected<'a> {
    plugin: &'a str,
    principal: &'a str,
    beneficiary: &'a str,
    coin: i64,
    commitment: &'a Value,
    /// `None` before the release; then the secret's hex where it was received, else "".
    secret: Option<&'a str>,
}

/// `GET /v1/order/{ref}`: checks every field of the answer and of the original's `OrderDoc`
/// in its `order` string, and returns that document.
async fn check_shown_order(api: &ApiClient, reference: &str, expected: Expected<'_>) -> Value {
    let (status, shown) = get(api, &format!("/v1/order/{reference}")).await;
    assert_eq!(status, 200, "{shown}");
    let order_cid = shown["orderCID"].as_str().expect("orderCID");
    assert!(
        shown["timestamp"].as_u64().is_some_and(|t| t > 0),
        "{shown}"
    );
    let extension = shown["extension"].as_object().expect("extension is a map");
    assert!(extension.values().all(Value::is_string), "{shown}");
    let doc: Value = serde_json::from_str(shown["order"].as_str().expect("order is a string"))
        .expect("order is a JSON string");

    // The Header of the newest step.
    assert_eq!(doc["IPFSID"], order_cid, "{doc}");
    assert_eq!(doc["Version"], 1, "{doc}");
    assert_eq!(doc["DateTime"], shown["timestamp"], "{doc}");
    assert!(doc["PreviousCID"].as_str().is_some_and(|c| !c.is_empty()));
    for code in [
        "BodyTypeCode",
        "BodyVersion",
        "EncryptedBodyTypeCode",
        "EncryptedBodyVersion",
    ] {
        assert!(doc[code].is_u64(), "{code}: {doc}");
    }
    assert!(doc["EncryptedBodyIV"].is_string(), "{doc}");
    assert!(doc["Recipients"].is_array(), "{doc}");

    // The OrderDocument.
    assert_eq!(doc["Type"], expected.plugin, "{doc}");
    assert_eq!(doc["Coin"], expected.coin, "{doc}");
    assert_eq!(doc["PrincipalCID"], expected.principal, "{doc}");
    assert_eq!(doc["BeneficiaryCID"], expected.beneficiary, "{doc}");
    assert_eq!(doc["Reference"], reference, "{doc}");
    let ordered_at = doc["Timestamp"].as_u64().expect("Timestamp");
    let part2 = &doc["OrderPart2"];
    assert_eq!(part2["CommitmentPublicKey"], *expected.commitment, "{doc}");
    assert!(
        part2["PreviousOrderCID"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
    );
    assert!(part2["Timestamp"].as_u64().is_some_and(|t| t >= ordered_at));
    match expected.secret {
        None => {
            assert!(doc["OrderPart3"].is_null(), "not released yet: {doc}");
            assert!(doc["OrderPart4"].is_null(), "not released yet: {doc}");
        }
        Some(secret) => {
            let part3 = &doc["OrderPart3"];
            let redemption = part3["Redemption"].as_str().expect("Redemption");
            assert!(!redemption.is_empty(), "{doc}");
            assert!(
                part3["PreviousOrderCID"]
                    .as_str()
                    .is_some_and(|c| !c.is_empty())
            );
            assert_eq!(part3["BeneficiaryEncryptedData"], "", "{doc}");
            assert!(part3["Timestamp"].as_u64().is_some_and(|t| t >= ordered_at));
            let part4 = &doc["OrderPart4"];
            assert_eq!(part4["Secret"], secret, "{doc}");
            assert_eq!(part4["PreviousOrderCID"], redemption, "{doc}");
            assert!(part4["Timestamp"].as_u64().is_some_and(|t| t >= ordered_at));
        }
    }
    doc
}

/// `GET /v1/order` with `page`, `perPage` and `sortBy`, against `created`: this node's orders,
/// oldest first.
async fn check_order_list(api: &ApiClient, created: &[String]) {
    let list = |query: String| async move { get(api, &format!("/v1/order?{query}")).await };
    let references = |body: &Value| -> Vec<String> {
        body["orderReference"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|r| r.as_str().unwrap().to_owned())
            .collect()
    };
    let newest: Vec<String> = created.iter().rev().cloned().collect();
    let (status, body) = list("page=0&perPage=10&sortBy=dateCreatedAsc".into()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(references(&body), created, "oldest first");
    let (_, body) = list("page=0&perPage=10&sortBy=dateCreatedDsc".into()).await;
    assert_eq!(references(&body), newest, "newest first");
    let (_, body) = list(String::new()).await;
    assert_eq!(references(&body), newest, "newest first by default");
    for (page, expected) in newest.chunks(2).enumerate() {
        let (_, body) = list(format!("page={page}&perPage=2&sortBy=dateCreatedDsc")).await;
        assert_eq!(references(&body), expected, "page {page}");
    }
    for page in [newest.len().div_ceil(2), usize::MAX] {
        let (status, body) = list(format!("page={page}&perPage=2")).await;
        assert_eq!(status, 200, "page {page}: {body}");
        assert!(references(&body).is_empty(), "page {page}: {body}");
    }
    for query in ["perPage=0", "perPage=1001", "page=x", "perPage=-1"] {
        let (status, body) = list(query.into()).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["error"].is_string(), "{query}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_identities_answer_in_the_original_shape() {
    let net = Testnet::builder().nodes(2).build().await.expect("testnet");
    let api = net.node(0).client();
    let (status, body) = get(&api, "/v1/status").await;
    assert_eq!(status, 200);
    assert_eq!(body["application"], "Milagro Distributed Trust");
    assert_eq!(body["apiVersion"], "v1");
    assert_eq!(body["nodeCID"], net.node(0).info().identity.as_str());
    assert_eq!(body["nodeType"], "multi");
    assert!(body["timeStamp"].as_str().unwrap().ends_with('Z'));

    let (status, body) = get(&api, "/v1/identity?page=0&perPage=10&sortBy=dateCreatedAsc").await;
    assert_eq!(status, 200, "{body}");
    let list = body["idDocumentList"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let (_, one) = get(&api, "/v1/identity?page=0&perPage=1").await;
    assert_eq!(one["idDocumentList"].as_array().unwrap().len(), 1);

    let other = &net.node(1).info().identity;
    let (status, body) = get(&api, &format!("/v1/identity/{other}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["idDocumentCID"], other.as_str());
    assert_eq!(body["authenticationReference"], "node-1");
    assert_eq!(body["blsPublicKey"].as_str().unwrap().len(), 96);
    assert_eq!(body["beneficiaryECPublicKey"].as_str().unwrap().len(), 66);

    let (status, body) = get(&api, "/v1/identity/not-a-cid").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].is_string());
    let unknown = "bafyreihpwa7h6picxhmvb6j6zcgxliqlbiukouvflfueh3lkj3tdfa3sp4";
    let (status, _) = get(&api, &format!("/v1/identity/{unknown}")).await;
    assert_eq!(status, 404);
    let (status, _) = get(&api, "/v1/identity?page=0&perPage=0").await;
    assert_eq!(status, 400);
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_multi_mode_node_runs_the_original_safeguardsecret_round_trip() {
    let net = Testnet::builder()
        .nodes(1)
        .plugin("safeguardsecret")
        .build()
        .await
        .expect("testnet");
    let api = net.node(0).client();
    let me = net.node(0).info().identity.clone();
    let (status, order) = post(
        &api,
        "/v1/order",
        serde_json::json!({ "extension": { "plainText": "let me in" } }),
    )
    .await;
    assert_eq!(status, 200, "{order}");
    let reference = check_order_answer(&order);
    assert_eq!(order["commitment"].as_str().unwrap().len(), 96);
    let extension = order["extension"].clone();
    for field in ["cypherText", "v", "t"] {
        assert!(
            extension[field].as_str().is_some_and(|v| !v.is_empty()),
            "{order}"
        );
    }
    // The ciphertext is not the plaintext.
    assert!(
        !extension["cypherText"]
            .as_str()
            .unwrap()
            .contains(&hex::encode("let me in"))
    );
    let shown = Expected {
        plugin: "safeguardsecret",
        principal: &me,
        beneficiary: "",
        coin: 0,
        commitment: &order["commitment"],
        secret: None,
    };
    let doc = check_shown_order(&api, &reference, shown).await;
    // Part 2 answers the order request, which `t` names.
    assert_eq!(
        doc["OrderPart2"]["PreviousOrderCID"], extension["t"],
        "{doc}"
    );

    // A tampered extension is refused and releases nothing.
    let mut tampered = extension.clone();
    tampered["t"] =
        serde_json::json!("bafyreihpwa7h6picxhmvb6j6zcgxliqlbiukouvflfueh3lkj3tdfa3sp4");
    let (status, body) = post(
        &api,
        "/v1/order/secret",
        serde_json::json!({ "orderReference": reference, "extension": tampered }),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    let (status, secret) = post(
        &api,
        "/v1/order/secret",
        serde_json::json!({ "orderReference": reference, "extension": extension }),
    )
    .await;
    assert_eq!(status, 200, "{secret}");
    check_secret_answer(&secret, &reference, &order);
    assert_eq!(secret["extension"]["plainText"], "let me in");
    assert_eq!(secret["secret"], hex::encode("let me in"));
    let released = Expected {
        beneficiary: &me,
        secret: Some(secret["secret"].as_str().unwrap()),
        ..shown
    };
    check_shown_order(&api, &reference, released).await;
    // Asking again returns the same secret (already received), without a second release.
    let (status, again) = post(
        &api,
        "/v1/order/secret",
        serde_json::json!({ "orderReference": reference, "extension": extension }),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["extension"]["plainText"], "let me in");

    // Text of several blocks, not ASCII, comes back as it went in.
    let text = "ünïcødé ✓ 鍵 ".repeat(20);
    let (status, order) = post(
        &api,
        "/v1/order",
        serde_json::json!({ "beneficiaryIDDocumentCID": me, "extension": { "plainText": text } }),
    )
    .await;
    assert_eq!(status, 200, "{order}");
    let second = check_order_answer(&order);
    let (status, secret) = post(
        &api,
        "/v1/order/secret",
        serde_json::json!({ "orderReference": second, "extension": order["extension"] }),
    )
    .await;
    assert_eq!(status, 200, "{secret}");
    assert_eq!(secret["extension"]["plainText"], text.as_str());

    check_order_list(&api, &[reference, second]).await;
    let (status, _) = post(&api, "/v1/order", serde_json::json!({ "extension": {} })).await;
    assert_eq!(status, 400);
    // A body of the wrong shape is refused without quoting it: it may hold the secret.
    for body in [
        r#"{"extension": "my secret words"}"#,
        r#"{"extension": {"plainText": ["my secret words"]}}"#,
        r#"["my secret words"]"#,
    ] {
        let (status, answer) = post_raw(&api, "/v1/order", "application/json", body.into()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let message = answer["error"].as_str().unwrap();
        assert!(!message.contains("secret words"), "{body}: {message}");
    }
    let (status, listed) = get(&api, "/v1/order").await;
    assert_eq!(status, 200);
    assert_eq!(
        listed["orderReference"].as_array().unwrap().len(),
        2,
        "{listed}"
    );
    net.stop().await;
}

/// The public key of a hex secp256k1 private key, in the SEC1 form of `like`.
fn public_of(secret_hex: &Value, like: &Value) -> String {
    let bytes: [u8; 32] = hex::decode(secret_hex.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let key = dta_crypto::secp256k1::SecretKey::from_bytes(&bytes)
        .unwrap()
        .public_key();
    match like.as_str().unwrap().len() {
        66 => hex::encode(key.to_compressed()),
        _ => hex::encode(key.to_uncompressed()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_mode_node_runs_the_original_bitcoinwallet_scenarios() {
    let net = Testnet::builder()
        .nodes(2)
        .plugin("bitcoinwallet")
        .build()
        .await
        .expect("testnet");
    let api = net.node(0).client();
    let me = net.node(0).info().identity.clone();
    let other = net.node(1).info().identity.clone();
    let (_, status) = get(&api, "/v1/status").await;
    assert_eq!(status["plugin"], "bitcoinwallet");

    // A: the beneficiary is named at secret time.
    let (status, order) = post(
        &api,
        "/v1/order",
        serde_json::json!({ "beneficiaryIDDocumentCID": "", "extension": { "coin": "0" } }),
    )
    .await;
    assert_eq!(status, 200, "{order}");
    let first = check_order_answer(&order);
    assert_eq!(order["commitment"].as_str().unwrap().len(), 66, "{order}");
    let address = order["extension"]["address"].as_str().unwrap().to_owned();
    assert!(address.starts_with('1'), "mainnet address: {address}");
    let shown = Expected {
        plugin: "bitcoinwallet",
        principal: &me,
        beneficiary: "",
        coin: 0,
        commitment: &order["commitment"],
        secret: None,
    };
    check_shown_order(&api, &first, shown).await;
    let (status, body) = post(
        &api,
        "/v1/order/secret",
        serde_json::json!({ "orderReference": first }),
    )
    .await;
    assert_eq!(status, 400, "no beneficiary anywhere: {body}");
    let (status, secret) = post(
        &api,
        "/v1/order/secret",
        serde_json::json!({ "orderReference": first, "beneficiaryIDDocumentCID": me }),
    )
    .await;
    assert_eq!(status, 200, "{secret}");
    check_secret_answer(&secret, &first, &order);
    assert_eq!(secret["extension"]["address"], address.as_str());
    assert_eq!(
        public_of(&secret["secret"], &secret["commitment"]),
        secret["commitment"].as_str().unwrap(),
        "secret·G is the commitment"
    );
    // The beneficiary named at secret time is the order's beneficiary from then on.
    let released = Expected {
        beneficiary: &me,
        secret: Some(secret["secret"].as_str().unwrap()),
        ..shown
    };
    check_shown_order(&api, &first, released).await;

    // B: the beneficiary is named at order time, on testnet; its own key is a share.
    let (status, order) = post(
        &api,
        "/v1/order",
        serde_json::json!({ "beneficiaryIDDocumentCID": me, "extension": { "coin": "1" } }),
    )
    .await;
    assert_eq!(status, 200, "{order}");
    let second = check_order_answer(&order);
    let address = order["extension"]["address"].as_str().unwrap();
    assert!(
        address.starts_with('m') || address.starts_with('n'),
        "{address}"
    );
    let shown = Expected {
        plugin: "bitcoinwallet",
        principal: &me,
        beneficiary: &me,
        coin: 1,
        commitment: &order["commitment"],
        secret: None,
    };
    check_shown_order(&api, &second, shown).await;
    let (status, body) = post(
        &api,
        "/v1/order/secret",
        serde_json::json!({ "orderReference": second, "beneficiaryIDDocumentCID": other }),
    )
    .await;
    assert_eq!(status, 400, "mismatched beneficiaries: {body}");
    let (status, secret) = post(
        &api,
        "/v1/order/secret",
        serde_json::json!({ "orderReference": second }),
    )
    .await;
    assert_eq!(status, 200, "{secret}");
    check_secret_answer(&secret, &second, &order);
    assert_eq!(secret["extension"]["address"], address);
    assert_eq!(
        public_of(&secret["secret"], &secret["commitment"]),
        secret["commitment"].as_str().unwrap()
    );
    let released = Expected {
        secret: Some(secret["secret"].as_str().unwrap()),
        ..shown
    };
    check_shown_order(&api, &second, released).await;

    // Bad coins change nothing.
    for coin in ["x", "2", ""] {
        let (status, body) = post(
            &api,
            "/v1/order",
            serde_json::json!({ "extension": { "coin": coin } }),
        )
        .await;
        assert_eq!(status, 400, "coin {coin:?}: {body}");
        assert!(body["error"].as_str().unwrap().contains("coin"), "{body}");
    }
    check_order_list(&api, &[first, second]).await;
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_mode_node_runs_the_original_milagro_scenario_by_default() {
    let net = Testnet::builder().nodes(1).build().await.expect("testnet");
    let api = net.node(0).client();
    let me = net.node(0).info().identity.clone();
    let (_, status) = get(&api, "/v1/status").await;
    assert_eq!(status["plugin"], "milagro");
    let (status, order) = post(
        &api,
        "/v1/order",
        serde_json::json!({ "beneficiaryIDDocumentCID": me, "extension": {} }),
    )
    .await;
    assert_eq!(status, 200, "{order}");
    let reference = check_order_answer(&order);
    let commitment = order["commitment"].as_str().unwrap().to_owned();
    assert!(
        commitment.len() == 130 && commitment.starts_with("04"),
        "{order}"
    );
    let shown = Expected {
        plugin: "milagro",
        principal: &me,
        beneficiary: &me,
        coin: 0,
        commitment: &order["commitment"],
        secret: None,
    };
    check_shown_order(&api, &reference, shown).await;
    let (status, secret) = post(
        &api,
        "/v1/order/secret",
        serde_json::json!({ "orderReference": reference, "beneficiaryIDDocumentCID": me }),
    )
    .await;
    assert_eq!(status, 200, "{secret}");
    check_secret_answer(&secret, &reference, &order);
    assert_eq!(secret["secret"].as_str().unwrap().len(), 64);
    assert_eq!(
        public_of(&secret["secret"], &secret["commitment"]),
        commitment
    );
    let released = Expected {
        secret: Some(secret["secret"].as_str().unwrap()),
        ..shown
    };
    check_shown_order(&api, &reference, released).await;
    let (_, shown) = get(&api, &format!("/v1/order/{reference}")).await;
    // The receipt may still be on its way to the principal.
    let state = shown["extension"]["state"].as_str().unwrap();
    assert!(state.starts_with("releas"), "{shown}");

    // As the original's Go decoder: any content type, top-level keys in any case.
    let body = format!(r#"{{"BENEFICIARYIDDOCUMENTCID": "{me}", "Extension": {{}}}}"#);
    let (status, order) = post_raw(&api, "/v1/order", "text/plain", body).await;
    assert_eq!(status, 200, "{order}");
    let other = check_order_answer(&order);
    let body = format!(r#"{{"orderreference": "{other}"}}"#);
    let (status, secret) = post_raw(&api, "/v1/order/secret", "", body).await;
    assert_eq!(status, 200, "{secret}");
    check_secret_answer(&secret, &other, &order);
    let (status, body) = post_raw(&api, "/v1/order/secret", "", "{".into()).await;
    assert_eq!(status, 400, "{body}");

    // Two more orders, for the list; neither is released.
    let mut created = vec![reference, other];
    for _ in 0..2 {
        let (status, order) = post(&api, "/v1/order", serde_json::json!({})).await;
        assert_eq!(status, 200, "{order}");
        created.push(check_order_answer(&order));
    }
    check_order_list(&api, &created).await;
    let (status, body) = post(
        &api,
        "/v1/order",
        serde_json::json!({ "extension": { "plainText": "no" } }),
    )
    .await;
    assert_eq!(status, 400, "milagro takes no input: {body}");
    let unknown = "no-such-order";
    let (status, body) = get(&api, &format!("/v1/order/{unknown}")).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].is_string(), "{body}");
    net.stop().await;
}

/// Polls `url` until it answers 200.
async fn until_ok(api: &ApiClient, path: &str) -> Value {
    let waited = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let (status, body) = get(api, path).await;
            if status == 200 {
                return body;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    waited.unwrap_or_else(|_| panic!("{}{path} never answered 200", api.base()))
}

/// A `/v1` safeguardsecret order for `beneficiary`, released through `/v1/order/secret` on the
/// principal's node, which does not hold the secret and answers without it.
async fn order_and_release(principal: &ApiClient, beneficiary: &str, text: &str) -> String {
    let (status, order) = post(
        principal,
        "/v1/order",
        serde_json::json!({
            "beneficiaryIDDocumentCID": beneficiary,
            "extension": { "plainText": text },
        }),
    )
    .await;
    assert_eq!(status, 200, "{order}");
    let reference = order["orderReference"].as_str().unwrap().to_owned();
    let (status, answer) = post(
        principal,
        "/v1/order/secret",
        serde_json::json!({ "orderReference": reference, "extension": order["extension"] }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.get("secret").is_none(), "{answer}");
    // The order shows the release, and its secret only where it was received.
    let (status, shown) = get(principal, &format!("/v1/order/{reference}")).await;
    assert_eq!(status, 200, "{shown}");
    let doc: Value = serde_json::from_str(shown["order"].as_str().unwrap()).unwrap();
    assert_eq!(doc["BeneficiaryCID"], beneficiary, "{doc}");
    assert_eq!(doc["OrderPart4"]["Secret"], "", "not received here: {doc}");
    reference
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosted_identities_are_created_listed_and_receive_released_secrets() {
    let mut net = Testnet::builder()
        .nodes(2)
        .plugin("safeguardsecret")
        .build()
        .await
        .expect("testnet");
    let principal = net.node(0).client();
    let host = net.node(1).client();

    // Bad names change nothing.
    for body in [
        serde_json::json!({}),
        serde_json::json!({ "name": "" }),
        serde_json::json!({ "name": "a b" }),
    ] {
        let (status, answer) = post(&host, "/v1/identity", body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
    }
    // Identities are listed newest first by their creation second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, created) = post(&host, "/v1/identity", serde_json::json!({ "Name": "AA" })).await;
    assert_eq!(status, 200, "{created}");
    let cid = created["idDocumentCID"].as_str().unwrap().to_owned();
    let (status, shown) = get(&host, &format!("/v1/identity/{cid}")).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["authenticationReference"], "AA");
    assert_eq!(shown["beneficiaryECPublicKey"].as_str().unwrap().len(), 66);
    assert_eq!(shown["blsPublicKey"].as_str().unwrap().len(), 96);
    let (_, newest) = get(&host, "/v1/identity?page=0&perPage=1&sortBy=dateCreatedDsc").await;
    assert_eq!(newest["idDocumentList"][0]["idDocumentCID"], cid.as_str());

    // The principal's node learns it from the host, and a secret released to it is received
    // by the host, not by the principal's node.
    until_ok(&principal, &format!("/v1/identity/{cid}")).await;
    let reference = order_and_release(&principal, &cid, "for AA").await;
    let received = until_ok(&host, &format!("/v2/orders/{reference}/secret")).await;
    assert_eq!(received["secret"], "for AA");

    // After a restart the host still holds the identity and still receives for it.
    net.test_node(1).stop().await;
    net.test_node(1).start().await.expect("host restarts");
    let host = net.node(1).client();
    let (status, _) = get(&host, &format!("/v1/identity/{cid}")).await;
    assert_eq!(status, 200);
    let reference = order_and_release(&principal, &cid, "again").await;
    let received = until_ok(&host, &format!("/v2/orders/{reference}/secret")).await;
    assert_eq!(received["secret"], "again");
    net.stop().await;
}

/// The principal's record of `reference` on the node at `api`, once it reached `state`.
async fn principal_record_in(api: &ApiClient, reference: &str, state: &str) -> Value {
    let path = format!("/v2/orders/{reference}");
    let waited = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let (status, body) = get(api, &path).await;
            let record = body
                .as_array()
                .and_then(|r| r.iter().find(|r| r["role"] == "principal"))
                .filter(|r| status == 200 && r["state"] == state);
            if let Some(record) = record {
                return record.clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    waited.unwrap_or_else(|_| panic!("{reference} never reached {state} on {}", api.base()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_beneficiary_role_refuses_a_v1_secret_call_it_cannot_receive() {
    let net = Testnet::builder()
        .nodes(3)
        .one_role_each(|i| match i {
            0 => Role::Principal,
            _ => Role::Fiduciary,
        })
        .build()
        .await
        .expect("testnet");
    let api = net.node(0).client();
    let me = net.node(0).info().identity.clone();
    let fiduciaries: Vec<String> = (1..3)
        .map(|i| net.node(i).info().identity.clone())
        .collect();
    let (status, created) = post(
        &api,
        "/v2/orders",
        serde_json::json!({
            "reference": "for-nobody",
            "plugin": "safeguardsecret",
            "fiduciaries": fiduciaries,
            "threshold": 2,
            "secret": "no one here can take this",
        }),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let record = principal_record_in(&api, "for-nobody", "certified").await;
    // The check fields are public: GET /v2/orders/{ref} gives all three to anyone.
    let extension = serde_json::json!({
        "cypherText": record["output"]["sealed_secret"],
        "v": record["commitment"],
        "t": record["order"],
    });
    let (status, hosted) = post(&api, "/v2/identities", serde_json::json!({ "name": "h1" })).await;
    assert_eq!(status, 201, "{hosted}");
    let hosted = hosted["cid"].as_str().unwrap().to_owned();

    // No beneficiary anywhere, this node itself, an identity it hosts: each would be received
    // here, where no beneficiary role takes shares, so each is refused at once.
    let no_role = "does not play the beneficiary role";
    let cases = [
        (None, ["names no beneficiary", "beneficiaryIDDocumentCID"]),
        (Some(me.as_str()), [no_role, me.as_str()]),
        (Some(hosted.as_str()), [no_role, hosted.as_str()]),
    ];
    for (beneficiary, expected) in cases {
        let mut body = serde_json::json!({
            "orderReference": "for-nobody",
            "extension": extension,
        });
        if let Some(beneficiary) = beneficiary {
            body["beneficiaryIDDocumentCID"] = beneficiary.into();
        }
        let (status, answer) = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            post(&api, "/v1/order/secret", body),
        )
        .await
        .expect("an answer at once, not after a release timed out");
        assert_eq!(status, 400, "{beneficiary:?}: {answer}");
        let message = answer["error"].as_str().unwrap();
        for part in expected {
            assert!(message.contains(part), "{beneficiary:?}: {message}");
        }
    }

    // Nothing was released: the one release the order allows is still there.
    let record = principal_record_in(&api, "for-nobody", "certified").await;
    assert_eq!(record["releases"], serde_json::json!({}), "{record}");
    net.stop().await;
}
