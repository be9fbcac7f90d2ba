//! The original D-TA's read-only `/v1` endpoints, with their field names.

use dta_testnet::harness::Testnet;
use serde_json::Value;

async fn get(url: String) -> (u16, Value) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_identities_answer_in_the_original_shape() {
    let net = Testnet::builder().nodes(2).build().await.expect("testnet");
    let api = net.node(0).info().api.clone();
    let (status, body) = get(format!("{api}/v1/status")).await;
    assert_eq!(status, 200);
    assert_eq!(body["application"], "Milagro Distributed Trust");
    assert_eq!(body["apiVersion"], "v1");
    assert_eq!(body["nodeCID"], net.node(0).info().identity.as_str());
    assert_eq!(body["nodeType"], "multi");
    assert!(body["timeStamp"].as_str().unwrap().ends_with('Z'));

    let (status, body) = get(format!(
        "{api}/v1/identity?page=0&perPage=10&sortBy=dateCreatedAsc"
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    let list = body["idDocumentList"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let (_, one) = get(format!("{api}/v1/identity?page=0&perPage=1")).await;
    assert_eq!(one["idDocumentList"].as_array().unwrap().len(), 1);

    let other = &net.node(1).info().identity;
    let (status, body) = get(format!("{api}/v1/identity/{other}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["idDocumentCID"], other.as_str());
    assert_eq!(body["authenticationReference"], "node-1");
    assert_eq!(body["blsPublicKey"].as_str().unwrap().len(), 96);
    assert_eq!(body["beneficiaryECPublicKey"].as_str().unwrap().len(), 66);

    let (status, body) = get(format!("{api}/v1/identity/not-a-cid")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].is_string());
    let unknown = "bafyreihpwa7h6picxhmvb6j6zcgxliqlbiukouvflfueh3lkj3tdfa3sp4";
    let (status, _) = get(format!("{api}/v1/identity/{unknown}")).await;
    assert_eq!(status, 404);
    let (status, _) = get(format!("{api}/v1/identity?page=0&perPage=0")).await;
    assert_eq!(status, 400);
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_multi_mode_node_runs_the_original_safeguardsecret_round_trip() {
    let net = Testnet::builder().nodes(1).build().await.expect("testnet");
    let api = net.node(0).info().api.clone();
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        let request = client.post(format!("{api}{path}")).json(&body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, order) = post(
        "/v1/order",
        serde_json::json!({ "extension": { "plainText": "let me in" } }),
    )
    .await;
    assert_eq!(status, 200, "{order}");
    let reference = order["orderReference"].as_str().unwrap().to_owned();
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

    let (status, listed) = get(format!(
        "{api}/v1/order?page=0&perPage=10&sortBy=dateCreatedAsc"
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(listed["orderReference"], serde_json::json!([reference]));
    let (status, shown) = get(format!("{api}/v1/order/{reference}")).await;
    assert_eq!(status, 200);
    assert!(
        shown["order"].as_str().unwrap().contains("certified"),
        "{shown}"
    );

    // A tampered extension is refused and releases nothing.
    let mut tampered = extension.clone();
    tampered["t"] =
        serde_json::json!("bafyreihpwa7h6picxhmvb6j6zcgxliqlbiukouvflfueh3lkj3tdfa3sp4");
    let (status, body) = post(
        "/v1/order/secret",
        serde_json::json!({ "orderReference": reference, "extension": tampered }),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    let (status, secret) = post(
        "/v1/order/secret",
        serde_json::json!({ "orderReference": reference, "extension": extension }),
    )
    .await;
    assert_eq!(status, 200, "{secret}");
    assert_eq!(secret["extension"]["plainText"], "let me in");
    assert_eq!(secret["commitment"], order["commitment"]);
    // Asking again returns the same secret (already received), without a second release.
    let (status, again) = post(
        "/v1/order/secret",
        serde_json::json!({ "orderReference": reference, "extension": extension }),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["extension"]["plainText"], "let me in");
    let (status, _) = post("/v1/order", serde_json::json!({ "extension": {} })).await;
    assert_eq!(status, 400);
    net.stop().await;
}
