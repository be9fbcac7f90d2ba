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
