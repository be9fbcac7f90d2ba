//! Release policies end to end: fiduciaries hold a release until its approvals are in and its
//! delay has passed, release with one of them down, and refuse one its veto group stopped;
//! a threshold signature waits for its approvals like a release, and the audit checks them;
//! policies that can never be met, and votes that do not count, are refused.

use std::time::Duration;

use serde_json::{Value, json};

use crate::custody::{
    Api, BENEFICIARY, FIDUCIARIES, PRINCIPAL, counter, hosted_identity, identity, one_role_each,
    order_body,
};
use dta_testnet::harness::Testnet;

/// The node whose hosted identities approve (any node may vote).
const APPROVERS: usize = BENEFICIARY;

struct Approvers {
    legal: Vec<String>,
    ops: Vec<String>,
    board: Vec<String>,
}

/// 1 of legal AND 2 of ops, a 3 s delay, and 2 of the board may veto within it.
fn policy(approvers: &Approvers) -> Value {
    json!({
        "groups": [
            { "name": "legal", "members": approvers.legal, "count": 1 },
            { "name": "ops", "members": approvers.ops, "count": 2 },
        ],
        "delay_ms": 3000,
        "veto": { "name": "board", "members": approvers.board, "count": 2 },
    })
}

async fn order(api: &Api, net: &Testnet, reference: &str, policy: Value) {
    let mut body = order_body(net, reference, &format!("the secret of {reference}"));
    body["policy"] = policy;
    let (status, created) = api.post(net, PRINCIPAL, "/v2/orders", body).await;
    assert_eq!(status, 201, "{created}");
    api.wait_state(net, PRINCIPAL, reference, "principal", "certified")
        .await;
}

/// Asks the principal to release `reference`; the first release request's CID.
async fn release(api: &Api, net: &Testnet, reference: &str) -> String {
    let (status, released) = api
        .post(
            net,
            PRINCIPAL,
            &format!("/v2/orders/{reference}/release"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{released}");
    released["releases"]["1"].as_str().unwrap().to_owned()
}

/// Releases `reference` and waits until `fiduciaries` hold the request; the request's CID.
async fn release_and_hold(
    api: &Api,
    net: &Testnet,
    reference: &str,
    fiduciaries: &[usize],
) -> String {
    let request = release(api, net, reference).await;
    wait_held(api, net, reference, fiduciaries).await;
    request
}

/// Waits until each of `fiduciaries` holds a request of `reference` for its policy.
async fn wait_held(api: &Api, net: &Testnet, reference: &str, fiduciaries: &[usize]) {
    for fiduciary in fiduciaries {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let (_, records) = api
                    .get(net, *fiduciary, &format!("/v2/orders/{reference}"))
                    .await;
                let held = records.as_array().into_iter().flatten().any(|r| {
                    r["role"] == "fiduciary" && r["held"].as_array().is_some_and(|h| !h.is_empty())
                });
                if held {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("fiduciary {fiduciary} never held {reference}"));
    }
}

async fn vote(
    api: &Api,
    net: &Testnet,
    reference: &str,
    request: &str,
    who: &str,
    veto: bool,
) -> (u16, Value) {
    api.post(
        net,
        APPROVERS,
        &format!("/v2/orders/{reference}/approvals"),
        json!({ "request": request, "identity": who, "veto": veto }),
    )
    .await
}

fn record<'a>(records: &'a Value, role: &str) -> &'a Value {
    records
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["role"] == role)
        .unwrap_or_else(|| panic!("no {role} record: {records}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_and_the_delay_release_with_a_fiduciary_down_and_a_veto_stops_a_release() {
    let mut net = one_role_each(5).await;
    let api = Api::new();
    let mut names = Vec::new();
    for name in ["lena", "luis", "olga", "omar", "otto", "bea", "bob"] {
        names.push(hosted_identity(&api, &net, name).await);
    }
    let approvers = Approvers {
        legal: names[0..2].to_vec(),
        ops: names[2..5].to_vec(),
        board: names[5..7].to_vec(),
    };

    // A policy that can never be met is refused before anything is made.
    let mut unmeetable = policy(&approvers);
    unmeetable["groups"][1]["count"] = json!(4);
    let mut body = order_body(&net, "never", "x");
    body["policy"] = unmeetable;
    let (status, refused) = api.post(&net, PRINCIPAL, "/v2/orders", body).await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("group ops needs 4 of 3"),
        "{refused}"
    );
    assert_eq!(api.get(&net, PRINCIPAL, "/v2/orders/never").await.0, 404);

    // Both orders are certified while every fiduciary is up.
    order(&api, &net, "guarded", policy(&approvers)).await;
    order(&api, &net, "vetoed", policy(&approvers)).await;
    let request = release_and_hold(&api, &net, "guarded", &FIDUCIARIES).await;
    // The principal's request alone releases nothing; the principal's node shows what is
    // missing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, shown) = api.get(&net, PRINCIPAL, "/v2/orders/guarded").await;
    let progress = &record(&shown, "principal")["policy"]["requests"][0]["policy"];
    assert_eq!(progress["now"], "wait", "{shown}");
    assert_eq!(
        progress["missing"].as_array().unwrap().len(),
        2,
        "{progress}"
    );
    assert_eq!(
        api.get(&net, BENEFICIARY, "/v2/orders/guarded/secret")
            .await
            .0,
        404
    );
    for fiduciary in FIDUCIARIES {
        assert_eq!(counter(&net, fiduciary, "dta_releases_held_total").await, 1);
    }

    // Votes that do not count: by a non-member (refused where it is made), for a request
    // of another order.
    let outsider = identity(&net, APPROVERS);
    let (status, answer) = vote(&api, &net, "guarded", &request, &outsider, false).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("not in any approver group"),
        "{answer}"
    );

    // One fiduciary goes down; the other two release once 1 of legal and 2 of ops approved
    // (one of them twice: it counts once) and the delay passed.
    net.test_node(3).stop().await;
    let rejected_before = counter(&net, 1, "dta_custody_rejected_total").await;
    for who in [
        &approvers.legal[0],
        &approvers.ops[0],
        &approvers.ops[0],
        &approvers.ops[1],
    ] {
        let (status, answer) = vote(&api, &net, "guarded", &request, who, false).await;
        assert_eq!(status, 201, "{answer}");
    }
    api.wait_state(&net, BENEFICIARY, "guarded", "beneficiary", "received")
        .await;
    let (status, body) = api
        .get(&net, BENEFICIARY, "/v2/orders/guarded/secret")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["secret"], "the secret of guarded");
    // The principal's log audits, the release checked against the policy with the votes it
    // keeps.
    api.wait_state(&net, PRINCIPAL, "guarded", "principal", "released")
        .await;
    let (status, audit) = api.get(&net, PRINCIPAL, "/v2/orders/guarded/audit").await;
    assert_eq!(status, 200, "{audit}");
    assert_eq!(audit["policies"], 1, "{audit}");
    // So does the beneficiary's, whose records keep no votes: its receipt names those the
    // fiduciaries relied on.
    let (status, audit) = api.get(&net, BENEFICIARY, "/v2/orders/guarded/audit").await;
    assert_eq!(status, 200, "{audit}");
    assert_eq!(audit["policies"], 1, "{audit}");
    // The repeated approval was refused by the fiduciaries that got it.
    assert!(counter(&net, 1, "dta_custody_rejected_total").await > rejected_before);
    // Each look at the held request (one per vote and the delay's end) checked the policy,
    // but only the look that let it go checked the certificate's signature (a pairing).
    for fiduciary in [1, 2] {
        let checks = counter(&net, fiduciary, "dta_certificate_checks_total").await;
        assert!(
            (1..=2).contains(&checks),
            "node {fiduciary}: {checks} checks"
        );
    }
    let (_, held) = api.get(&net, 1, "/v2/orders/guarded").await;
    let fiduciary = record(&held, "fiduciary");
    assert_eq!(fiduciary["held"], json!([]), "{fiduciary}");
    assert_eq!(
        fiduciary["votes"].as_array().unwrap().len(),
        3,
        "{fiduciary}"
    );

    // A second order: everyone approves, two of the board veto within the delay. Nothing
    // is released, and the fiduciaries say why.
    let request = release_and_hold(&api, &net, "vetoed", &[1, 2]).await;
    for who in [&approvers.legal[1], &approvers.ops[1], &approvers.ops[2]] {
        assert_eq!(
            vote(&api, &net, "vetoed", &request, who, false).await.0,
            201
        );
    }
    for who in &approvers.board {
        assert_eq!(vote(&api, &net, "vetoed", &request, who, true).await.0, 201);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        api.get(&net, BENEFICIARY, "/v2/orders/vetoed/secret")
            .await
            .0,
        404
    );
    for fiduciary in [1, 2] {
        let (_, records) = api.get(&net, fiduciary, "/v2/orders/vetoed").await;
        let held = record(&records, "fiduciary");
        assert_eq!(held["releases"], json!({}), "{held}");
        assert!(counter(&net, fiduciary, "dta_releases_refused_total").await >= 1);
    }
    // The principal sees the veto too and stops sending the release again: the fiduciaries'
    // refusals stop.
    let refused = counter(&net, 1, "dta_releases_refused_total").await;
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(
        counter(&net, 1, "dta_releases_refused_total").await,
        refused
    );
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fiduciary_down_while_approvals_were_made_gets_them_with_the_request_again() {
    let mut net = one_role_each(5).await;
    let api = Api::new();
    let olga = hosted_identity(&api, &net, "olga").await;
    let policy = json!({ "groups": [{ "name": "ops", "members": [olga], "count": 1 }] });
    order(&api, &net, "late", policy).await;
    // Fiduciaries 1 and 2 hold the request; 2 goes down before the approval is made, and 1
    // cannot release alone (2 of 3 needed).
    net.test_node(3).stop().await;
    let request = release_and_hold(&api, &net, "late", &[1, 2]).await;
    net.test_node(2).stop().await;
    let (status, answer) = vote(&api, &net, "late", &request, &olga, false).await;
    assert_eq!(status, 201, "{answer}");
    // The approver's node gives up on fiduciary 2 after its retries.
    tokio::time::timeout(Duration::from_secs(30), async {
        while counter(&net, APPROVERS, "dta_deliveries_abandoned_total").await == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the vote's delivery to the stopped fiduciary is given up");
    // Fiduciary 2 comes back having missed the approval; the principal's next sending of the
    // open release carries it, and the release completes.
    net.test_node(2).start().await.unwrap();
    api.wait_state(&net, BENEFICIARY, "late", "beneficiary", "received")
        .await;
    let (_, records) = api.get(&net, 2, "/v2/orders/late").await;
    let fiduciary = record(&records, "fiduciary");
    assert_eq!(
        fiduciary["votes"].as_array().unwrap().len(),
        1,
        "{fiduciary}"
    );
    net.stop().await;
}

/// The time an envelope in `node`'s store says it was made (its signer's clock, ms).
fn made_ms(net: &Testnet, node: usize, cid: &str) -> u64 {
    let cid = dta_protocol::block::parse_cid(cid).unwrap();
    let bytes = net.node(node).store().block(&cid).unwrap().expect("block");
    dta_protocol::envelope::SignedEnvelope::decode(&bytes)
        .unwrap()
        .envelope
        .timestamp
}

/// A release held only by its time lock goes when the lock ends, not at the fiduciary's next
/// periodic look at held releases (every 5 s): each share release is made within a second of
/// the delay's end, in each of three releases (at the periodic look alone, about one in a
/// hundred runs would pass).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_held_by_its_delay_goes_when_the_delay_ends() {
    const DELAY_MS: u64 = 400;
    let net = one_role_each(5).await;
    let api = Api::new();
    for round in 0..3 {
        let reference = format!("timed-{round}");
        order(&api, &net, &reference, json!({ "delay_ms": DELAY_MS })).await;
        let request = release(&api, &net, &reference).await;
        api.wait_state(&net, BENEFICIARY, &reference, "beneficiary", "received")
            .await;
        let (_, records) = api
            .get(&net, BENEFICIARY, &format!("/v2/orders/{reference}"))
            .await;
        let requested_ms = made_ms(&net, BENEFICIARY, &request);
        let shares = record(&records, "beneficiary")["shares"]
            .as_object()
            .unwrap()
            .clone();
        assert!(shares.len() >= 2, "{records}");
        for share in shares.values() {
            let released_ms = made_ms(&net, BENEFICIARY, share.as_str().unwrap());
            let after_request = released_ms.saturating_sub(requested_ms);
            assert!(
                after_request >= DELAY_MS,
                "{reference}: a share went {after_request} ms after the request, before the delay"
            );
            assert!(
                after_request < DELAY_MS + 1000,
                "{reference}: a share went {} ms after the delay ended",
                after_request - DELAY_MS
            );
        }
    }
    net.stop().await;
}

/// `dta bench custody --policy` with the example policy file: five approvals a release, and
/// each fiduciary's policy work measured; a policy it cannot run is refused up front.
#[test]
fn the_custody_benchmark_measures_what_the_example_policy_adds() {
    use crate::process::{dta_client, run_to_end, succeed};
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testnet/policies/five-approvals.toml");
    let example = example.to_str().unwrap();
    let stdout = succeed(
        dta_client(&[
            "bench", "custody", "--orders", "2", "--policy", example, "--json",
        ])
        .env("RUST_LOG", "warn"),
    );
    let report: Value = serde_json::from_slice(&stdout).unwrap();
    let policy = &report["policy"];
    assert_eq!(policy["releases"], 2, "{report}");
    assert_eq!(policy["approvals_per_release"], 5, "{report}");
    for figure in [
        "release_p50_ms",
        "policy_release_p50_ms",
        "fiduciary_policy_ms_per_release",
        "fiduciary_vote_us",
        "fiduciary_check_us",
    ] {
        assert!(
            policy[figure].as_f64().is_some_and(|v| v > 0.0),
            "{figure}: {report}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    for (policy, error) in [
        (
            r#"groups = [{ name = "ops", members = ["alice"], count = 1 }]"#,
            "member \"alice\" is not a node of the benchmark",
        ),
        (
            r#"groups = [{ name = "ops", members = ["node-1"], count = 2 }]"#,
            "group ops needs 2 of 1",
        ),
        (r#"delay_ms = 100"#, "no approver group"),
        (
            r#"groups = [{ name = "ops", members = ["node-99"], count = 1 }]"#,
            "approver nodes; at most",
        ),
    ] {
        let file = dir.path().join("policy.toml");
        std::fs::write(&file, policy).unwrap();
        let (ok, stderr) = run_to_end(&mut dta_client(&[
            "bench",
            "custody",
            "--orders",
            "1",
            "--policy",
            file.to_str().unwrap(),
        ]));
        assert!(!ok && stderr.contains(error), "{policy}: {stderr}");
    }
}

/// A node's API judges a policy's time gates with the node's own clock tolerance, as its
/// roles do: a principal that allows clocks no disagreement shows a release asked for 20 s
/// before `not_before` as too early, though fiduciaries with the default 30 s let it go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_judges_time_gates_with_the_nodes_own_clock_tolerance() {
    let mut net = one_role_each(5).await;
    let principal = net.test_node(PRINCIPAL);
    principal.stop().await;
    let config = principal.home().join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("clock_tolerance_ms = 0\n{text}")).unwrap();
    principal.start().await.unwrap();
    let api = Api::new();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let not_before_ms = now_ms + 20_000;
    order(
        &api,
        &net,
        "early",
        json!({ "not_before_ms": not_before_ms }),
    )
    .await;
    release(&api, &net, "early").await;
    api.wait_state(&net, BENEFICIARY, "early", "beneficiary", "received")
        .await;
    let (_, shown) = api.get(&net, PRINCIPAL, "/v2/orders/early").await;
    let progress = &record(&shown, "principal")["policy"]["requests"][0]["policy"];
    assert_eq!(progress["now"], "refused", "{shown}");
    assert!(
        progress["why"].as_str().unwrap().contains("before"),
        "{progress}"
    );
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custody_moves_only_with_the_approvals_a_release_needs_and_a_refresh_needs_none() {
    let net = one_role_each(5).await;
    let api = Api::new();
    let olga = hosted_identity(&api, &net, "olga").await;
    let policy = json!({ "groups": [{ "name": "ops", "members": [olga], "count": 1 }] });
    order(&api, &net, "guarded-move", policy).await;
    // A refresh changes no hands: it needs no approval.
    let (status, refreshed) = api
        .post(
            &net,
            PRINCIPAL,
            "/v2/orders/guarded-move/refresh?wait=30",
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{refreshed}");
    assert_eq!(refreshed["state"], "certified", "{refreshed}");
    // A move to fiduciaries 2 and 3 alone is held by every fiduciary until olga approves it.
    let next: Vec<String> = [2, 3].iter().map(|i| identity(&net, *i)).collect();
    let (status, moving) = api
        .post(
            &net,
            PRINCIPAL,
            "/v2/orders/guarded-move/reshare",
            json!({ "fiduciaries": next, "threshold": 2 }),
        )
        .await;
    assert_eq!(status, 200, "{moving}");
    let request = moving["head"].as_str().unwrap().to_owned();
    for fiduciary in FIDUCIARIES {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let (_, records) = api.get(&net, fiduciary, "/v2/orders/guarded-move").await;
                if record(&records, "fiduciary")["held"][0]["request"] == request.as_str() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("fiduciary {fiduciary} never held the move"));
    }
    let (_, records) = api.get(&net, PRINCIPAL, "/v2/orders/guarded-move").await;
    assert_eq!(record(&records, "principal")["state"], "refreshing");
    let (status, answer) = vote(&api, &net, "guarded-move", &request, &olga, false).await;
    assert_eq!(status, 201, "{answer}");
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let (_, records) = api.get(&net, PRINCIPAL, "/v2/orders/guarded-move").await;
            let principal = record(&records, "principal");
            if principal["state"] == "certified" && principal["epoch"] == 2 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the approved move is certified");
    // The audit checks the move against the policy.
    let (status, audit) = api
        .get(&net, PRINCIPAL, "/v2/orders/guarded-move/audit")
        .await;
    assert_eq!(status, 200, "{audit}");
    assert_eq!(audit["policies"], 1, "{audit}");
    // Releases still need their own approval, from the new committee.
    let release_request = release_and_hold(&api, &net, "guarded-move", &[2, 3]).await;
    let (status, answer) = vote(&api, &net, "guarded-move", &release_request, &olga, false).await;
    assert_eq!(status, 201, "{answer}");
    api.wait_state(&net, BENEFICIARY, "guarded-move", "beneficiary", "received")
        .await;
    // The move and the release, on the beneficiary's node too (whose records keep no votes:
    // the commitment and the receipt name them). The principal's announcement of the head
    // with the receipt follows within a gossip batch.
    for node in [PRINCIPAL, BENEFICIARY] {
        let audited = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let (status, audit) = api.get(&net, node, "/v2/orders/guarded-move/audit").await;
                assert_eq!(status, 200, "{audit}");
                if audit["receipts"] == 1 {
                    return audit;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("node {node} never audited the receipt"));
        assert_eq!(audited["policies"], 2, "node {node}: {audited}");
    }
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_waits_for_its_approvals_like_a_release_and_the_audit_checks_them() {
    let net = one_role_each(5).await;
    let api = Api::new();
    let lena = hosted_identity(&api, &net, "lena").await;
    order(
        &api,
        &net,
        "gated",
        json!({ "groups": [{ "name": "legal", "members": [lena], "count": 1 }] }),
    )
    .await;
    let (status, asked) = api
        .post(
            &net,
            PRINCIPAL,
            "/v2/orders/gated/sign",
            json!({ "message_hex": hex::encode(b"pay the auditors") }),
        )
        .await;
    assert_eq!(status, 200, "{asked}");
    let request = asked["signature"]["request"].as_str().unwrap().to_owned();
    wait_held(&api, &net, "gated", &FIDUCIARIES).await;
    let (_, shown) = api.get(&net, FIDUCIARIES[0], "/v2/orders/gated").await;
    let held = &record(&shown, "fiduciary")["held"][0];
    assert_eq!(held["what"], "signature", "{shown}");
    assert_eq!(held["request"], request.as_str(), "{shown}");
    let (_, shown) = api.get(&net, PRINCIPAL, "/v2/orders/gated").await;
    assert!(
        record(&shown, "principal")["signing"][0]["signature"].is_null(),
        "no signature before the approval: {shown}"
    );

    let (status, voted) = vote(&api, &net, "gated", &request, &lena, false).await;
    assert_eq!(status, 201, "{voted}");
    let signature = crate::signing::signature_made_later(&api, &net, "gated", 1).await;
    assert_eq!(signature["scheme"], "bls12-381", "{signature}");
    let (status, audit) = api.get(&net, PRINCIPAL, "/v2/orders/gated/audit").await;
    assert_eq!(status, 200, "{audit}");
    assert_eq!(audit["threshold_signatures"], 1, "{audit}");
    assert_eq!(
        audit["policies"], 1,
        "the signature's approval checked: {audit}"
    );
    net.stop().await;
}
