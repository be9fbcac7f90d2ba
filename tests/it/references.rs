//! Order references belong to their principal: two principals may use one reference with the
//! same fiduciaries and beneficiary, and neither squats the other's; records stored before
//! they were keyed by principal move under it when the node starts; and any node finds where
//! a principal's log of an order ends by asking it, however old the order.

use dta_actors::roles::Role;
use dta_actors::store::Column;
use dta_testnet::harness::Testnet;
use serde_json::{Value, json};

use crate::custody::{Api, identity, record};

const PRINCIPALS: [usize; 2] = [0, 1];
const FIDUCIARIES: [usize; 3] = [2, 3, 4];
const BENEFICIARY: usize = 5;

async fn testnet() -> Testnet {
    Testnet::builder()
        .nodes(6)
        .one_role_each(|i| match i {
            0 | 1 => Role::Principal,
            BENEFICIARY => Role::Beneficiary,
            _ => Role::Fiduciary,
        })
        .build()
        .await
        .expect("testnet")
}

async fn order(api: &Api, net: &Testnet, principal: usize, reference: &str, secret: &str) {
    let body = json!({
        "reference": reference,
        "plugin": "safeguardsecret",
        "fiduciaries": FIDUCIARIES.iter().map(|i| identity(net, *i)).collect::<Vec<_>>(),
        "threshold": 2,
        "beneficiary": identity(net, BENEFICIARY),
        "secret": secret,
    });
    let (status, created) = api.post(net, principal, "/v2/orders", body).await;
    assert_eq!(status, 201, "{created}");
    api.wait_state(net, principal, reference, "principal", "certified")
        .await;
}

async fn release(api: &Api, net: &Testnet, principal: usize, reference: &str) {
    let path = format!("/v2/orders/{reference}/release");
    let (status, body) = api.post(net, principal, &path, json!({})).await;
    assert_eq!(status, 200, "{body}");
    api.wait_state(net, principal, reference, "principal", "released")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_principals_use_one_reference_and_neither_squats_the_other() {
    let net = testnet().await;
    let api = Api::new();
    order(&api, &net, PRINCIPALS[0], "shared", "the first principal's").await;
    order(
        &api,
        &net,
        PRINCIPALS[1],
        "shared",
        "the second principal's",
    )
    .await;
    for principal in PRINCIPALS {
        release(&api, &net, principal, "shared").await;
    }

    // The beneficiary holds both; asked without a principal it says which to choose.
    let (status, body) = api.get(&net, BENEFICIARY, "/v2/orders/shared/secret").await;
    assert_eq!(status, 409, "{body}");
    for (principal, secret) in [
        (PRINCIPALS[0], "the first principal's"),
        (PRINCIPALS[1], "the second principal's"),
    ] {
        let whose = identity(&net, principal);
        let path = format!("/v2/orders/shared/secret?principal={whose}");
        let (status, body) = api.get(&net, BENEFICIARY, &path).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["secret"], secret);
        // Each fiduciary holds both orders, one record each, and each log audits on its own.
        for fiduciary in FIDUCIARIES {
            let path = format!("/v2/orders/shared?principal={whose}");
            let (_, shown) = api.get(&net, fiduciary, &path).await;
            assert_eq!(shown.as_array().unwrap().len(), 1, "{shown}");
            assert_eq!(record(&shown, "fiduciary")["state"], "released");
            // Its own record ends at the release; the principal's announcement of the head
            // with the receipt follows within a gossip batch.
            let path = format!("/v2/orders/shared/audit?principal={whose}");
            let audited = tokio::time::timeout(std::time::Duration::from_secs(30), async {
                loop {
                    let (status, report) = api.get(&net, fiduciary, &path).await;
                    assert_eq!(status, 200, "{report}");
                    if report["receipts"] == 1 {
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            })
            .await;
            assert!(
                audited.is_ok(),
                "the receipt never reached fiduciary {fiduciary}'s audit"
            );
        }
    }
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_stored_under_the_reference_alone_move_under_their_principal_at_start() {
    let mut net = testnet().await;
    let api = Api::new();
    order(&api, &net, PRINCIPALS[0], "older", "kept before the move").await;
    let principal = identity(&net, PRINCIPALS[0]);
    for fiduciary in FIDUCIARIES {
        api.wait_state(&net, fiduciary, "older", "fiduciary", "holding")
            .await;
    }

    // Fiduciaries 2 and 3 are put back as a node stored them before: the record under
    // `fiduciary/older`, the share wrapped under `share/older`.
    for fiduciary in [2, 3] {
        net.test_node(fiduciary).stop().await;
        let home = dta_node::home::open(net.test_node(fiduciary).home()).expect("home");
        let (store, keystore) = (home.store, home.keystore);
        let new_record = format!("fiduciary/{principal}/older");
        let new_share = dta_actors::custody::share_name(&principal.parse().unwrap(), "older");
        let bytes = store
            .get(Column::Orders, new_record.as_bytes())
            .unwrap()
            .expect("the record");
        let blob = store
            .get(Column::Keystore, new_share.as_bytes())
            .unwrap()
            .expect("the share");
        let share = keystore.unwrap(&new_share, &blob).unwrap();
        let old_blob = keystore.wrap("share/older", &share).unwrap();
        store
            .write_durable(vec![
                (Column::Orders, b"fiduciary/older".to_vec(), bytes),
                (Column::Keystore, b"share/older".to_vec(), old_blob),
            ])
            .unwrap();
        store
            .delete_durable(Column::Orders, new_record.as_bytes())
            .unwrap();
        store
            .delete_durable(Column::Keystore, new_share.as_bytes())
            .unwrap();
        drop(store);
        net.test_node(fiduciary).start().await.expect("restart");
    }
    // With fiduciary 4 down the release needs both moved records.
    net.test_node(4).stop().await;
    release(&api, &net, PRINCIPALS[0], "older").await;
    let (_, body) = api.get(&net, BENEFICIARY, "/v2/orders/older/secret").await;
    assert_eq!(body["secret"], "kept before the move");
    for fiduciary in [2, 3] {
        let (_, shown) = api.get(&net, fiduciary, "/v2/orders/older").await;
        let held: &Value = &shown.as_array().unwrap()[0];
        assert_eq!(held["state"], "released", "{shown}");
    }
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_restarted_audits_an_order_older_than_the_heads_it_was_told() {
    let mut net = testnet().await;
    let api = Api::new();
    let fiduciaries: Vec<String> = FIDUCIARIES.iter().map(|i| identity(&net, *i)).collect();
    // More orders than the newest heads an identity response carries.
    let count = dta_protocol::network::MAX_HEADS_IN_IDENTITY + 4;
    for i in 0..count {
        let body = json!({
            "reference": format!("old-{i}"),
            "plugin": "safeguardsecret",
            "fiduciaries": fiduciaries,
            "threshold": 2,
            "beneficiary": identity(&net, BENEFICIARY),
            "secret": format!("secret {i}"),
        });
        let (status, created) = api.post(&net, PRINCIPALS[0], "/v2/orders", body).await;
        assert_eq!(status, 201, "{created}");
    }
    api.wait_state(&net, PRINCIPALS[0], "old-0", "principal", "certified")
        .await;
    let last = format!("old-{}", count - 1);
    api.wait_state(&net, PRINCIPALS[0], &last, "principal", "certified")
        .await;
    // The other principal, party to none of them, forgets what gossip told it.
    let auditor = PRINCIPALS[1];
    net.test_node(auditor).stop().await;
    net.test_node(auditor).start().await.expect("restart");
    let principal: libp2p::PeerId = net.node(PRINCIPALS[0]).info().peer_id.parse().unwrap();
    let mut snapshot = net.node(auditor).network().watch();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        snapshot.wait_for(|s| s.connected.contains(&principal)),
    )
    .await
    .expect("connected again")
    .unwrap();
    let whose = identity(&net, PRINCIPALS[0]);
    let (_, own) = api.get(&net, PRINCIPALS[0], "/v2/orders/old-0").await;
    let head = record(&own, "principal")["head"].clone();
    let path = format!("/v2/orders/old-0/audit?principal={whose}");
    let (status, report) = api.get(&net, auditor, &path).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["head"], head, "{report}");
    net.stop().await;
}
