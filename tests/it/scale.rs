//! Networks without a full mesh: nodes keep connections with a target number of peers and
//! look up the identities they need in the DHT.

use std::time::Duration;

use dta_actors::roles::Role;
use dta_testnet::harness::Testnet;
use serde_json::json;

use crate::custody::{Api, identity};

const NODES: usize = 8;
const PRINCIPAL: usize = 0;
const FIDUCIARIES: [usize; 3] = [4, 5, 6];
const BENEFICIARY: usize = 7;

/// Whether node `node` knows the identity of node `other`.
fn knows(net: &Testnet, node: usize, other: usize) -> bool {
    net.node(node)
        .directory()
        .borrow()
        .identities
        .contains_key(&identity(net, other))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_between_nodes_that_never_met_finds_their_identities_in_the_dht() {
    // A chain of nodes that each keep one peer: node i bootstraps from node i - 1, and learns
    // only the identities of the peers it keeps.
    let net = Testnet::builder()
        .nodes(NODES)
        .target_peers(1)
        .chain()
        .one_role_each(|i| match i {
            PRINCIPAL => Role::Principal,
            BENEFICIARY => Role::Beneficiary,
            _ => Role::Fiduciary,
        })
        .build()
        .await
        .expect("testnet");
    // Every node in the DHT with its identity provided (the first announcement goes out once a
    // node knows a peer, at most a second after it starts).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let strangers: Vec<usize> = FIDUCIARIES
        .into_iter()
        .chain([BENEFICIARY])
        .filter(|other| !knows(&net, PRINCIPAL, *other))
        .collect();
    assert_eq!(
        strangers.len(),
        FIDUCIARIES.len() + 1,
        "the principal should know none of the order's parties before the order"
    );

    let api = Api::new();
    let body = json!({
        "reference": "strangers",
        "plugin": "safeguardsecret",
        "fiduciaries": FIDUCIARIES.iter().map(|i| identity(&net, *i)).collect::<Vec<_>>(),
        "threshold": 2,
        "beneficiary": identity(&net, BENEFICIARY),
        "secret": "met in the DHT",
    });
    let (status, created) = api.post(&net, PRINCIPAL, "/v2/orders", body).await;
    assert_eq!(status, 201, "{created}");
    api.wait_state(&net, PRINCIPAL, "strangers", "principal", "certified")
        .await;
    for party in FIDUCIARIES.into_iter().chain([BENEFICIARY]) {
        assert!(knows(&net, PRINCIPAL, party), "node {party} was looked up");
    }
    let (status, body) = api
        .post(&net, PRINCIPAL, "/v2/orders/strangers/release", json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    api.wait_state(&net, BENEFICIARY, "strangers", "beneficiary", "received")
        .await;
    let (status, body) = api
        .get(&net, BENEFICIARY, "/v2/orders/strangers/secret")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["secret"], "met in the DHT");

    // The lookups show in the principal's metrics.
    let metrics = net.node(PRINCIPAL).client().get_bytes("/metrics").await;
    let metrics = String::from_utf8(metrics.unwrap()).unwrap();
    let lookups: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("dta_dht_lookups_total{kind=\"identity\"} "))
        .and_then(|n| n.parse().ok())
        .expect("the identity lookup counter");
    assert!(lookups >= 1, "{lookups} identity lookups");

    // An identity nobody provides is refused cleanly, once the DHT and the peers said so.
    let unknown = "bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
    let body = json!({
        "reference": "nobody",
        "plugin": "safeguardsecret",
        "fiduciaries": [unknown],
        "threshold": 1,
        "secret": "for nobody",
    });
    let (status, answer) = api.post(&net, PRINCIPAL, "/v2/orders", body).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains(unknown),
        "{answer}"
    );
    net.stop().await;
}
