//! Keys the fiduciaries generate without a dealer, t-of-n, across separate nodes: made, held,
//! released from any t fiduciaries and audited, and made while a fiduciary is down.

use dta_testnet::harness::Testnet;
use serde_json::json;

use crate::custody::{
    Api, BENEFICIARY, FIDUCIARIES, PRINCIPAL, identity, one_role_each, public_of, record,
};

/// The principal orders a 2-of-3 `milagro` key from `fiduciaries`.
pub(crate) async fn order_two_of_three(
    api: &Api,
    net: &Testnet,
    reference: &str,
    fiduciaries: &[String],
) {
    let (status, created) = api
        .post(
            net,
            PRINCIPAL,
            "/v2/orders",
            json!({
                "reference": reference,
                "plugin": "milagro",
                "fiduciaries": fiduciaries,
                "threshold": 2,
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_of_three_wallet_key_is_made_without_a_dealer_and_released_with_a_fiduciary_down() {
    let mut net = one_role_each(5).await;
    let api = Api::new();
    let fiduciaries: Vec<String> = FIDUCIARIES.iter().map(|i| identity(&net, *i)).collect();
    let wallet = |threshold: u32| {
        json!({
            "reference": "wallet-2of3",
            "plugin": "bitcoinwallet",
            "fiduciaries": fiduciaries,
            "threshold": threshold,
            "beneficiary": identity(&net, BENEFICIARY),
            "input": { "coin": "1" },
        })
    };
    let (status, body) = api.post(&net, PRINCIPAL, "/v2/orders", wallet(1)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("at least 2"),
        "{body}"
    );
    let (status, created) = api.post(&net, PRINCIPAL, "/v2/orders", wallet(2)).await;
    assert_eq!(status, 201, "{created}");
    api.wait_state(&net, PRINCIPAL, "wallet-2of3", "principal", "certified")
        .await;
    let (_, shown) = api.get(&net, PRINCIPAL, "/v2/orders/wallet-2of3").await;
    let public_key = record(&shown, "principal")["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    for fiduciary in FIDUCIARIES {
        api.wait_state(&net, fiduciary, "wallet-2of3", "fiduciary", "holding")
            .await;
    }
    // The principal's log holds the key generation, and its audit checks it.
    let (status, report) = api
        .get(&net, PRINCIPAL, "/v2/orders/wallet-2of3/audit")
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["passed"], true, "{report}");
    assert!(report.to_string().contains("dkg-round"), "{report}");

    // 2-of-3: one fiduciary down, the release still goes through.
    net.test_node(FIDUCIARIES[1]).stop().await;
    let (status, body) = api
        .post(&net, PRINCIPAL, "/v2/orders/wallet-2of3/release", json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    api.wait_state(&net, BENEFICIARY, "wallet-2of3", "beneficiary", "received")
        .await;
    let (status, secret) = api
        .get(&net, BENEFICIARY, "/v2/orders/wallet-2of3/secret")
        .await;
    assert_eq!(status, 200, "{secret}");
    assert_eq!(
        public_of(&secret["secret_hex"]),
        public_key,
        "key·G is the commitment"
    );
    let (status, report) = api
        .get(&net, BENEFICIARY, "/v2/orders/wallet-2of3/audit")
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["passed"], true, "{report}");

    // A key generation waits for a fiduciary that is down, and finishes when it returns.
    order_two_of_three(&api, &net, "milagro-2of3", &fiduciaries).await;
    api.wait_state(
        &net,
        FIDUCIARIES[0],
        "milagro-2of3",
        "fiduciary",
        "generated",
    )
    .await;
    let (_, shown) = api.get(&net, PRINCIPAL, "/v2/orders/milagro-2of3").await;
    assert_eq!(record(&shown, "principal")["state"], "ordered", "{shown}");
    net.test_node(FIDUCIARIES[1])
        .start()
        .await
        .expect("fiduciary restarts");
    api.wait_state(&net, PRINCIPAL, "milagro-2of3", "principal", "certified")
        .await;
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fiduciary_restarted_in_the_middle_of_a_key_generation_finishes_it() {
    let mut net = one_role_each(5).await;
    let api = Api::new();
    let [first, second, third] = FIDUCIARIES;
    let fiduciaries: Vec<String> = FIDUCIARIES.iter().map(|i| identity(&net, *i)).collect();
    let beneficiary = identity(&net, BENEFICIARY);
    // The third is down when the order is made: the others deal and wait for it.
    net.test_node(third).stop().await;
    order_two_of_three(&api, &net, "restarted", &fiduciaries).await;
    for fiduciary in [first, second] {
        api.wait_state(&net, fiduciary, "restarted", "fiduciary", "generated")
            .await;
    }
    // The first goes down having dealt (what it keeps for the next part is on its disk);
    // the third comes back, so the round goes out while the first is down.
    net.test_node(first).stop().await;
    net.test_node(third).start().await.expect("third restarts");
    api.wait_state(&net, PRINCIPAL, "restarted", "principal", "generating")
        .await;
    net.test_node(first).start().await.expect("first restarts");
    api.wait_state(&net, PRINCIPAL, "restarted", "principal", "certified")
        .await;
    for fiduciary in FIDUCIARIES {
        api.wait_state(&net, fiduciary, "restarted", "fiduciary", "holding")
            .await;
    }
    let (_, shown) = api.get(&net, PRINCIPAL, "/v2/orders/restarted").await;
    let public_key = record(&shown, "principal")["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    // Any two release it: the one that restarted among them.
    net.test_node(second).stop().await;
    let (status, body) = api
        .post(
            &net,
            PRINCIPAL,
            "/v2/orders/restarted/release",
            json!({ "beneficiary": beneficiary }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    api.wait_state(&net, BENEFICIARY, "restarted", "beneficiary", "received")
        .await;
    let (_, secret) = api
        .get(&net, BENEFICIARY, "/v2/orders/restarted/secret")
        .await;
    assert_eq!(public_of(&secret["secret_hex"]), public_key);
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_generation_benchmark_runs_every_phase() {
    use dta_testnet::bench::dkg::{DkgBench, FlowBench, run, threshold_of};
    assert_eq!(
        [3, 16, 64].map(threshold_of),
        [2, 11, 43],
        "t = 2n/3 + 1, below n"
    );
    let report = run(DkgBench {
        sizes: vec![3, 4],
        runs: 1,
        plugin: "milagro".into(),
        reshare: true,
        flow: Some(FlowBench {
            refreshed: 2,
            refresh_every_ms: 1_000,
            cycles: 20,
        }),
    })
    .await
    .expect("benchmark runs");
    assert_eq!(report.sizes.len(), 2);
    assert!(report.sizes.iter().all(|s| s.certified_p50_ms > 0.0));
    let moved = report.reshare.expect("the reshare phase ran");
    assert!(moved.reshare_p50_ms > 0.0 && moved.refresh_p50_ms > 0.0);
    let flow = report.flow.expect("the flow phase ran");
    assert_eq!((flow.cycles, flow.failed_orders), (20, 0));
    assert!(
        flow.refreshes >= 2,
        "each refreshed order refreshed: {flow:?}"
    );
    // An M-Pin master is generated the same way, and never moved.
    let report = run(DkgBench {
        sizes: vec![3],
        runs: 1,
        plugin: "mpin-master".into(),
        reshare: true,
        flow: None,
    })
    .await
    .expect("benchmark runs");
    assert_eq!(report.sizes[0].threshold, 2);
    assert!(report.reshare.is_none());
    // A plugin whose key is dealt has no key generation to measure.
    assert!(
        run(DkgBench {
            sizes: vec![3],
            runs: 1,
            plugin: "safeguardsecret".into(),
            reshare: false,
            flow: None,
        })
        .await
        .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_generation_that_waits_for_a_fiduciary_down_for_good_is_abandoned_naming_it() {
    let mut net = one_role_each(5).await;
    let api = Api::new();
    let fiduciaries: Vec<String> = FIDUCIARIES.iter().map(|i| identity(&net, *i)).collect();
    let principal: dta_protocol::Cid = identity(&net, PRINCIPAL).parse().unwrap();
    net.test_node(FIDUCIARIES[2]).stop().await;
    order_two_of_three(&api, &net, "stalled", &fiduciaries).await;
    for node in &FIDUCIARIES[..2] {
        api.wait_state(&net, *node, "stalled", "fiduciary", "generated")
            .await;
    }
    // A fiduciary says `generated` once its key share is out; the principal has it a moment
    // later. Only the third is missing once the principal holds two.
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let (_, shown) = api.get(&net, PRINCIPAL, "/v2/orders/stalled").await;
            if shown[0]["shares"].as_object().is_some_and(|s| s.len() == 2) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the principal gets both key shares");
    let (status, body) = api
        .post(&net, PRINCIPAL, "/v2/orders/stalled/abandon", json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["missing"], json!([fiduciaries[2]]), "{body}");
    assert_eq!(body["state"], "aborted", "{body}");
    // The two that answered drop what they kept for the run (just after their record says
    // so).
    let round = dta_actors::custody::round_name(&principal, "stalled");
    for node in &FIDUCIARIES[..2] {
        api.wait_state(&net, *node, "stalled", "fiduciary", "aborted")
            .await;
        let store = net.node(*node).store();
        let dropped = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while store
                .get(dta_actors::store::Column::Keystore, round.as_bytes())
                .unwrap()
                .is_some()
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            dropped.is_ok(),
            "node {node} still keeps the round's secret"
        );
    }
    // Once abandoned, or once every fiduciary answered, there is nothing to abandon.
    let (status, body) = api
        .post(&net, PRINCIPAL, "/v2/orders/stalled/abandon", json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
    order_two_of_three(&api, &net, "whole", &fiduciaries[..2]).await;
    api.wait_state(&net, PRINCIPAL, "whole", "principal", "certified")
        .await;
    let (status, body) = api
        .post(&net, PRINCIPAL, "/v2/orders/whole/abandon", json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
    net.stop().await;
}
