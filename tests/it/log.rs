//! An order's log standing on its own: exported as a CAR archive on one network, audited
//! from the file alone by a `dta` process with no node, no home and no network, and by a node
//! of another network that imported it; a damaged archive fails, naming the block.

use std::path::Path;

use dta_node::client::{ApiClient, Method};
use dta_testnet::harness::Testnet;
use serde_json::{Value, json};

use crate::process::dta_output;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn json_out(output: &std::process::Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Places a safeguarded secret through `client`, releases it and waits for the receipt; returns the
/// reference and the principal's head.
pub(crate) async fn released_order(client: &ApiClient) -> (String, String) {
    let order = json!({ "extension": { "plainText": "standing alone" } });
    let order = client.post("/v1/order", &order).await.unwrap();
    let reference = order["orderReference"].as_str().unwrap().to_owned();
    let secret = json!({ "orderReference": reference, "extension": order["extension"] });
    client.post("/v1/order/secret", &secret).await.unwrap();
    let head = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let shown: Value = client
                .call(Method::GET, &format!("/v2/orders/{reference}"), None)
                .await
                .unwrap()
                .body;
            if let Some(principal) = shown
                .as_array()
                .and_then(|a| a.iter().find(|r| r["role"] == "principal"))
                && principal["state"] == "released"
            {
                return principal["head"].as_str().unwrap().to_owned();
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("released");
    (reference, head)
}

/// Flips one byte inside the block `bytes` in the archive at `path`.
fn damage(path: &Path, bytes: &[u8]) {
    let mut archive = std::fs::read(path).unwrap();
    let at = archive
        .windows(bytes.len())
        .position(|w| w == bytes)
        .expect("the block is in the archive");
    archive[at + bytes.len() / 2] ^= 0x01;
    std::fs::write(path, archive).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_log_audits_from_the_file_alone_and_on_a_node_of_another_network() {
    let net = Testnet::builder()
        .nodes(3)
        .plugin("safeguardsecret")
        .build()
        .await
        .expect("testnet");
    let origin = net.node(0).info().api.clone();
    let origin_token = net.node(0).token_file().display().to_string();
    let (reference, head) = released_order(&net.node(0).client()).await;
    let files = tempfile::tempdir().unwrap();
    let car = files.path().join("log.car");
    let car_path = car.to_str().unwrap().to_owned();

    // Identity documents are blocks like any other: a node serves the ones it knows.
    let identities: Value = net
        .node(0)
        .client()
        .call(Method::GET, "/v2/identities", None)
        .await
        .unwrap()
        .body;
    for identity in identities.as_array().unwrap() {
        let cid = identity["cid"].as_str().unwrap();
        let path = format!("/v2/blocks/{cid}");
        let client = net.node(0).client();
        let (status, bytes) = client.call_raw(Method::GET, &path, None).await.unwrap();
        assert_eq!(status, 200, "identity {cid} as a block");
        assert_eq!(
            dta_protocol::block::cid_of(dta_protocol::block::DAG_CBOR, &bytes).to_string(),
            cid
        );
    }

    let exported = json_out(
        &dta_output(args(&[
            "log",
            "export",
            &reference,
            "--car",
            &car_path,
            "--api",
            &origin,
            "--json",
            "--token-file",
            &origin_token,
        ]))
        .await,
    );
    assert!(exported["bytes"].as_u64().unwrap() > 0, "{exported}");
    net.stop().await;

    // No node runs now, and the auditor names none: the file is all it has.
    let report = json_out(&dta_output(args(&["audit", "--car", &car_path, "--json"])).await);
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["reference"], reference.as_str(), "{report}");
    assert_eq!(report["head"], head.as_str(), "{report}");
    assert_eq!(report["certified"], true, "{report}");
    assert_eq!(report["receipts"], 1, "{report}");
    assert_eq!(report["envelopes"].as_array().unwrap().len(), 5, "{report}");
    // A /v1 order of one node: it plays every role, so one identity signs everything.
    assert_eq!(report["identities"], 1, "{report}");
    let attached: Vec<&str> = report["attached"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(attached.contains(&"share-deal"), "{report}");
    let text = dta_output(args(&["audit", "--car", &car_path])).await;
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.contains("passed") && text.contains("identity documents"),
        "{text}"
    );
    // Asked for another order, the same archive fails.
    let other = dta_output(args(&["audit", "other-order", "--car", &car_path])).await;
    assert!(!other.status.success());

    // A node of another network, which never met these identities, imports the archive and
    // audits the order too.
    let elsewhere = Testnet::builder().nodes(1).build().await.expect("testnet");
    let api = elsewhere.node(0).info().api.clone();
    let token = elsewhere.node(0).token_file().display().to_string();
    json_out(
        &dta_output(args(&[
            "block",
            "import",
            &car_path,
            "--api",
            &api,
            "--json",
            "--token-file",
            &token,
        ]))
        .await,
    );
    let audited = json_out(
        &dta_output(args(&[
            "audit",
            &reference,
            "--head",
            &head,
            "--api",
            &api,
            "--json",
            "--token-file",
            &token,
        ]))
        .await,
    );
    assert_eq!(audited["passed"], true, "{audited}");
    assert_eq!(audited["receipts"], 1, "{audited}");
    elsewhere.stop().await;

    // One byte flipped inside the certificate: the audit fails and names that block.
    let archive = dta_protocol::car::read(&std::fs::read(&car).unwrap()).unwrap();
    let certificate = crate::custody::certificate_in(&report).to_string();
    let (_, bytes) = archive
        .blocks
        .iter()
        .find(|(cid, _)| cid.to_string() == certificate)
        .unwrap();
    damage(&car, bytes);
    let failed = dta_output(args(&["audit", "--car", &car_path])).await;
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "{stderr}");
    assert!(stderr.contains(&certificate), "{stderr}");
}
