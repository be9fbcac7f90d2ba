//! Identities over a node's life. A revocation, made with the `dta` binary by the identity
//! itself or by the operator of its node, reaches every peer; from then on the principal makes
//! no order and no release to it, the beneficiary takes no share from a revoked fiduciary (the
//! release waits for another), the node refuses what it cannot sign, and a node started
//! again still knows. Audits of older orders still pass and name the revoked signers.

use std::time::Duration;

use serde_json::{Value, json};

use dta_testnet::harness::Testnet;

use crate::custody::{
    Api, BENEFICIARY, FIDUCIARIES, PRINCIPAL, hosted_identity, identity, one_role_each, order_body,
};
use crate::process::dta_output;

const TIMEOUT: Duration = Duration::from_secs(30);

/// `dta identity revoke CID ARGS --json` against `node`: its JSON, or its error.
async fn revoke(net: &mut Testnet, node: usize, cid: &str, args: &[&str]) -> Result<Value, String> {
    let home = net.test_node(node).home().to_str().unwrap().to_owned();
    let mut all = vec!["identity", "revoke", cid, "--home", &home, "--json"];
    all.extend_from_slice(args);
    let output = dta_output(all.into_iter().map(str::to_owned).collect()).await;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&output.stdout).unwrap())
}

/// A testnet with one order of two releases, released once.
async fn released_once(reference: &str, secret: &str) -> (Testnet, Api) {
    let net = one_role_each(5).await;
    let api = Api::new();
    let mut body = order_body(&net, reference, secret);
    body["max_releases"] = json!(2);
    let (status, created) = api.post(&net, PRINCIPAL, "/v2/orders?wait=30", body).await;
    assert_eq!(status, 201, "{created}");
    let release = format!("/v2/orders/{reference}/release?wait=30");
    let (status, released) = api.post(&net, PRINCIPAL, &release, json!({})).await;
    assert_eq!(status, 200, "{released}");
    (net, api)
}

/// Waits until what `node` shows of identity `cid` passes `holds`; what it shows.
async fn shown_once(
    api: &Api,
    net: &Testnet,
    node: usize,
    cid: &str,
    what: &str,
    holds: impl Fn(&Value) -> bool,
) -> Value {
    tokio::time::timeout(TIMEOUT, async {
        loop {
            let (status, body) = api.get(net, node, &format!("/v2/identities/{cid}")).await;
            if status == 200 && holds(&body) {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("node {node} never showed {what} of {cid}"))
}

/// Waits until `node` holds the revocation of `cid`; what it shows of it.
async fn revoked_at(api: &Api, net: &Testnet, node: usize, cid: &str) -> Value {
    let shown = shown_once(api, net, node, cid, "the revocation", |b| {
        b.get("revoked").is_some()
    })
    .await;
    shown["revoked"].clone()
}

async fn metrics(net: &Testnet, node: usize) -> String {
    let bytes = net.node(node).client().get_bytes("/metrics").await.unwrap();
    String::from_utf8(bytes).unwrap()
}

fn error(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_identity_gets_no_order_release_or_share_and_audits_still_pass() {
    let (mut net, api) = released_once("before", "made before any revocation").await;

    let carol = hosted_identity(&api, &net, "carol").await;
    let mut body = order_body(&net, "for-carol", "carol's secret");
    body["beneficiary"] = json!(carol);
    let (status, created) = api.post(&net, PRINCIPAL, "/v2/orders?wait=30", body).await;
    assert_eq!(status, 201, "{created}");

    // Carol revokes herself, through the node that holds her keys.
    let made = revoke(&mut net, BENEFICIARY, &carol, &["--reason", "device lost"])
        .await
        .unwrap();
    assert_eq!(made["identity"], carol.as_str(), "{made}");
    assert_eq!(made["revoker"], "identity", "{made}");
    for node in FIDUCIARIES.into_iter().chain([PRINCIPAL]) {
        let shown = revoked_at(&api, &net, node, &carol).await;
        assert_eq!(shown["reason"], "device lost", "node {node}: {shown}");
        assert_eq!(
            shown["revocation"], made["revocation"],
            "node {node}: {shown}"
        );
    }
    // No new order, no release to her; the principal says why.
    let mut body = order_body(&net, "after", "never made");
    body["beneficiary"] = json!(carol);
    let (status, refused) = api.post(&net, PRINCIPAL, "/v2/orders", body).await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        error(&refused).contains(&carol) && error(&refused).contains("revoked"),
        "{refused}"
    );
    let (status, refused) = api
        .post(&net, PRINCIPAL, "/v2/orders/for-carol/release", json!({}))
        .await;
    assert_eq!(status, 409, "{refused}");
    assert!(error(&refused).contains("device lost"), "{refused}");

    // What a node cannot do is refused with a reason, and changes nothing.
    let again = revoke(&mut net, BENEFICIARY, &carol, &[])
        .await
        .unwrap_err();
    assert!(again.contains("revoked"), "{again}");
    let beneficiary = identity(&net, BENEFICIARY);
    let not_ours = revoke(&mut net, FIDUCIARIES[0], &beneficiary, &[])
        .await
        .unwrap_err();
    assert!(not_ours.contains("cannot sign"), "{not_ours}");
    let unknown = "bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
    let refused = revoke(&mut net, BENEFICIARY, unknown, &[])
        .await
        .unwrap_err();
    assert!(refused.contains("unknown identity"), "{refused}");
    let refused = revoke(&mut net, BENEFICIARY, "not-a-cid", &[])
        .await
        .unwrap_err();
    assert!(refused.contains("not-a-cid"), "{refused}");
    let (status, refused) = api
        .post(
            &net,
            BENEFICIARY,
            &format!("/v2/identities/{beneficiary}/revoke"),
            json!({ "reason": "a\u{7}b" }),
        )
        .await;
    assert_eq!(status, 422, "{refused}");
    let (status, shown) = api
        .get(&net, BENEFICIARY, &format!("/v2/identities/{beneficiary}"))
        .await;
    assert_eq!(status, 200);
    assert!(shown.get("revoked").is_none(), "{shown}");

    // The operator of a node revokes an identity its node hosts with the node's own key.
    let dave = hosted_identity(&api, &net, "dave").await;
    let made = revoke(&mut net, BENEFICIARY, &dave, &["--as-operator"])
        .await
        .unwrap();
    assert_eq!(made["revoker"], "operator", "{made}");
    assert_eq!(
        revoked_at(&api, &net, PRINCIPAL, &dave).await["revoker"],
        "operator"
    );

    // A fiduciary revoked: with another fiduciary down, its share alone with the third's
    // would make two; the beneficiary refuses it and the release waits for the one down.
    let revoked_fiduciary = FIDUCIARIES[2];
    let cid = identity(&net, revoked_fiduciary);
    revoke(&mut net, revoked_fiduciary, &cid, &["--reason", "retired"])
        .await
        .unwrap();
    revoked_at(&api, &net, BENEFICIARY, &cid).await;
    revoked_at(&api, &net, PRINCIPAL, &cid).await;
    net.test_node(FIDUCIARIES[1]).stop().await;
    let (status, released) = api
        .post(&net, PRINCIPAL, "/v2/orders/before/release", json!({}))
        .await;
    assert!(status == 200 || status == 202, "{status} {released}");
    tokio::time::timeout(TIMEOUT, async {
        while !metrics(&net, BENEFICIARY)
            .await
            .lines()
            .any(|l| l.starts_with("dta_custody_rejected_total{reason=\"revoked\"}"))
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the beneficiary refuses the revoked fiduciary's share");
    let (_, audit) = api.get(&net, PRINCIPAL, "/v2/orders/before/audit").await;
    assert_eq!(
        audit["receipts"], 1,
        "not released with a revoked share: {audit}"
    );
    net.test_node(FIDUCIARIES[1]).start().await.unwrap();
    tokio::time::timeout(TIMEOUT, async {
        while api.get(&net, PRINCIPAL, "/v2/orders/before/audit").await.1["receipts"] != 2 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the release completes with the fiduciary back");

    // The log made before still audits, and the audit names the revoked signer.
    let (status, audit) = api.get(&net, PRINCIPAL, "/v2/orders/before/audit").await;
    assert_eq!(status, 200, "{audit}");
    let revoked: Vec<&str> = audit["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["identity"].as_str().unwrap())
        .collect();
    assert!(
        revoked.is_empty(),
        "no signer of the chain is revoked: {audit}"
    );
    let (status, audit) = api
        .get(&net, BENEFICIARY, "/v2/orders/for-carol/audit")
        .await;
    assert_eq!(status, 200, "{audit}");

    // Started again, the principal still knows and still refuses.
    net.test_node(PRINCIPAL).stop().await;
    net.test_node(PRINCIPAL).start().await.unwrap();
    let shown = revoked_at(&api, &net, PRINCIPAL, &carol).await;
    assert_eq!(shown["reason"], "device lost");
    let mut body = order_body(&net, "after-restart", "never made");
    body["beneficiary"] = json!(carol);
    let (status, refused) = api.post(&net, PRINCIPAL, "/v2/orders", body).await;
    assert_eq!(status, 409, "{refused}");
    let metrics = metrics(&net, PRINCIPAL).await;
    assert!(
        metrics.lines().any(|l| l == "dta_revoked_identities 3"),
        "three identities revoked: {metrics}"
    );
    net.stop().await;
}

/// `dta ARGS` (with `--json`): its JSON, or its error.
async fn dta_json(args: &[&str]) -> Result<Value, String> {
    let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    all.push("--json".into());
    let output = dta_output(all).await;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&output.stdout).unwrap())
}

/// Waits until `node` knows `cid` in its `rotations`-th key state; what it shows of it.
async fn rotated_at(api: &Api, net: &Testnet, node: usize, cid: &str, rotations: u64) -> Value {
    shown_once(api, net, node, cid, "the rotation", |b| {
        b["rotations"] == rotations
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fiduciary_with_rotated_keys_keeps_its_shares_and_old_logs_still_verify() {
    let (mut net, api) = released_once("kept", "certified before the rotation").await;

    // A running node's keys are not rotated under it.
    let rotating = FIDUCIARIES[0];
    let cid = identity(&net, rotating);
    let home = net.test_node(rotating).home().to_str().unwrap().to_owned();
    let running = dta_json(&["identity", "rotate", "--home", &home])
        .await
        .unwrap_err();
    assert!(running.contains("running"), "{running}");
    let (_, before) = api
        .get(&net, PRINCIPAL, &format!("/v2/identities/{cid}"))
        .await;
    assert_eq!(before["rotations"], 0, "{before}");
    assert_eq!(before["document"], cid.as_str(), "{before}");

    // Stopped, rotated, started: the identity is the same, its document and keys new.
    net.test_node(rotating).stop().await;
    let rotated = dta_json(&["identity", "rotate", "--home", &home])
        .await
        .unwrap();
    assert_eq!(rotated["identity"], cid.as_str(), "{rotated}");
    assert_eq!(rotated["rotation"], 1, "{rotated}");
    assert_eq!(rotated["previous"], cid.as_str(), "{rotated}");
    let document = rotated["document"].as_str().unwrap().to_owned();
    assert_ne!(document, cid);
    net.test_node(rotating).start().await.unwrap();
    assert_eq!(identity(&net, rotating), cid, "the node keeps its identity");
    for node in [
        PRINCIPAL,
        BENEFICIARY,
        FIDUCIARIES[1],
        FIDUCIARIES[2],
        rotating,
    ] {
        let shown = rotated_at(&api, &net, node, &cid, 1).await;
        assert_eq!(shown["document"], document.as_str(), "node {node}: {shown}");
    }

    // The order certified with its old keys releases with its share, signed with the new
    // keys: with the third fiduciary down, the release needs it.
    let mut after = order_body(&net, "after", "certified after the rotation");
    after["fiduciaries"] = json!([cid, identity(&net, FIDUCIARIES[1])]);
    net.test_node(FIDUCIARIES[2]).stop().await;
    let (status, released) = api
        .post(
            &net,
            PRINCIPAL,
            "/v2/orders/kept/release?wait=30",
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{released}");
    let (status, secret) = api.get(&net, BENEFICIARY, "/v2/orders/kept/secret").await;
    assert_eq!(status, 200, "{secret}");
    // A new order takes its new keys; it certifies with them.
    let (status, created) = api.post(&net, PRINCIPAL, "/v2/orders?wait=30", after).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["state"], "certified", "{created}");

    // Both logs audit: the certificate made with the old keys, the share released with the
    // new ones.
    for reference in ["kept", "after"] {
        let (status, audit) = api
            .get(&net, PRINCIPAL, &format!("/v2/orders/{reference}/audit"))
            .await;
        assert_eq!(status, 200, "{reference}: {audit}");
        assert_eq!(audit["certified"], true, "{reference}: {audit}");
    }
    // Exported with its identities' documents, the log audits with nothing else.
    let files = tempfile::tempdir().unwrap();
    let car = files.path().join("kept.car");
    let car = car.to_str().unwrap();
    let principal_home = net.test_node(PRINCIPAL).home().to_str().unwrap().to_owned();
    let principal_node = principal_home.as_str();
    dta_json(&[
        "log",
        "export",
        "kept",
        "--car",
        car,
        "--home",
        principal_node,
    ])
    .await
    .unwrap();
    let report = dta_json(&["audit", "--car", car]).await.unwrap();
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["receipts"], 2, "{report}");

    // An identity a running node hosts rotates at once; a release to it after the rotation is
    // sealed to its new keys and its receipt signed with them.
    net.test_node(FIDUCIARIES[2]).start().await.unwrap();
    let carol = hosted_identity(&api, &net, "carol").await;
    let mut body = order_body(&net, "for-carol", "carol's secret");
    body["beneficiary"] = json!(carol);
    let (status, created) = api.post(&net, PRINCIPAL, "/v2/orders?wait=30", body).await;
    assert_eq!(status, 201, "{created}");
    let beneficiary_home = net
        .test_node(BENEFICIARY)
        .home()
        .to_str()
        .unwrap()
        .to_owned();
    let rotated = dta_json(&["identity", "rotate", &carol, "--home", &beneficiary_home])
        .await
        .unwrap();
    assert_eq!(rotated["cid"], carol.as_str(), "{rotated}");
    assert_eq!(rotated["rotations"], 1, "{rotated}");
    rotated_at(&api, &net, PRINCIPAL, &carol, 1).await;
    let (status, released) = api
        .post(
            &net,
            PRINCIPAL,
            "/v2/orders/for-carol/release?wait=30",
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{released}");
    // Not the node's own identity, which is rotated with the node stopped.
    let own = identity(&net, BENEFICIARY);
    let refused = dta_json(&["identity", "rotate", &own, "--home", &beneficiary_home])
        .await
        .unwrap_err();
    assert!(
        refused.contains("not an identity this node hosts"),
        "{refused}"
    );
    // Started again, the node reopens the hosted identity with its rotated keys.
    net.test_node(BENEFICIARY).stop().await;
    net.test_node(BENEFICIARY).start().await.unwrap();
    let (_, shown) = api
        .get(&net, BENEFICIARY, &format!("/v2/identities/{carol}"))
        .await;
    assert_eq!(shown["rotations"], 1, "{shown}");
    let (status, audit) = api.get(&net, PRINCIPAL, "/v2/orders/for-carol/audit").await;
    assert_eq!(status, 200, "{audit}");
    assert_eq!(audit["receipts"], 1, "{audit}");

    // The principal started again knows the new keys from its store at once.
    net.test_node(PRINCIPAL).stop().await;
    net.test_node(PRINCIPAL).start().await.unwrap();
    let (_, shown) = api
        .get(&net, PRINCIPAL, &format!("/v2/identities/{cid}"))
        .await;
    assert_eq!(shown["rotations"], 1, "{shown}");
    assert_eq!(shown["document"], document.as_str(), "{shown}");
    net.stop().await;
}
