//! End-to-end delivery of releases, and the beneficiary an order names: a share the
//! beneficiary never got (or lost) reaches it later without a second release, and a release
//! goes only to the order's beneficiary, on a node that can receive.

use std::time::Duration;

use dta_node::client::Method;
use dta_testnet::harness::Testnet;
use serde_json::{Value, json};

use crate::custody::{
    Api, counter, custody_rejections, deliver_and_settle, identity, record, release_request,
};

const TIMEOUT: Duration = Duration::from_secs(40);
const PRINCIPAL: usize = 0;
const FIDUCIARIES: [usize; 3] = [1, 2, 3];
const BENEFICIARY: usize = 4;

async fn testnet() -> Testnet {
    crate::custody::one_role_each(5).await
}

/// An order for the beneficiary, certified and held by every fiduciary.
async fn order(api: &Api, net: &Testnet, reference: &str, secret: &str) {
    crate::custody::order(api, net, reference, secret).await;
    for fiduciary in FIDUCIARIES {
        api.wait_state(net, fiduciary, reference, "fiduciary", "holding")
            .await;
    }
}

/// `PUT` (block) or `DELETE` (unblock) `other`'s peer at `node`, and waits until they are
/// disconnected (block) or connected again (unblock).
async fn set_blocked(net: &Testnet, node: usize, other: usize, blocked: bool) {
    let peer = net.node(other).info().peer_id.clone();
    let path = format!("/v2/peers/blocked/{peer}");
    let client = net.node(node).client();
    let method = if blocked { Method::PUT } else { Method::DELETE };
    let answer = client.call(method, &path, None).await.unwrap();
    assert!(answer.is_success(), "{answer:?}");
    let peer: libp2p::PeerId = peer.parse().unwrap();
    let mut snapshot = net.node(node).network().watch();
    tokio::time::timeout(
        TIMEOUT,
        snapshot.wait_for(|s| s.connected.contains(&peer) != blocked),
    )
    .await
    .expect("the connection follows the block list")
    .expect("network snapshot");
}

/// `dta_deliveries_abandoned_total` of a node: deliveries it gave up after every attempt.
async fn abandoned(net: &Testnet, node: usize) -> u64 {
    counter(net, node, "dta_deliveries_abandoned_total").await
}

/// Waits until each of `nodes` gave up a delivery (so that nothing it sent before is still
/// being retried).
async fn wait_abandoned(net: &Testnet, nodes: &[usize]) {
    let waited = tokio::time::timeout(TIMEOUT, async {
        for node in nodes {
            while abandoned(net, *node).await == 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    })
    .await;
    assert!(waited.is_ok(), "the deliveries were never given up");
}

/// Who a principal's record waits for, and for what (each entry also says since when, a
/// time every entry must have).
fn awaited(record: &Value) -> Value {
    record["waiting_for"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            assert!(entry["since_ms"].as_u64().is_some_and(|t| t > 0), "{entry}");
            json!({ "identity": entry["identity"], "for": entry["for"] })
        })
        .collect()
}

async fn fiduciary_record(api: &Api, net: &Testnet, node: usize, reference: &str) -> Value {
    let (_, body) = api.get(net, node, &format!("/v2/orders/{reference}")).await;
    record(&body, "fiduciary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_the_beneficiary_never_got_reach_it_later_and_nothing_is_released_twice() {
    let mut net = testnet().await;
    let api = Api::new();
    order(&api, &net, "lost", "the vault combination").await;

    // Fiduciaries 1 and 2 serve the release but cannot reach the beneficiary; fiduciary 3
    // is down, so the beneficiary holds one share of the two it needs.
    for fiduciary in [1, 2] {
        set_blocked(&net, fiduciary, BENEFICIARY, true).await;
    }
    net.test_node(3).stop().await;
    let (status, body) = api
        .post(&net, PRINCIPAL, "/v2/orders/lost/release", json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    for fiduciary in [1, 2] {
        api.wait_state(&net, fiduciary, "lost", "fiduciary", "released")
            .await;
    }
    wait_abandoned(&net, &[1, 2]).await;
    let (status, _) = api.get(&net, BENEFICIARY, "/v2/orders/lost/secret").await;
    assert_eq!(status, 404, "no share got through");
    let (_, shown) = api.get(&net, PRINCIPAL, "/v2/orders/lost").await;
    let shown = record(&shown, "principal");
    assert_eq!(
        shown["state"], "releasing",
        "no receipt, so the release is not done"
    );
    assert_eq!(
        awaited(&shown),
        json!([{ "identity": identity(&net, BENEFICIARY), "for": "receipt" }]),
        "{shown}"
    );

    // The way to the beneficiary opens again: the open release is sent again by itself, and
    // the fiduciaries answer it with the shares they already sealed.
    for fiduciary in [1, 2] {
        set_blocked(&net, fiduciary, BENEFICIARY, false).await;
    }
    let waited = tokio::time::timeout(TIMEOUT, async {
        loop {
            let (_, shown) = api.get(&net, PRINCIPAL, "/v2/orders/lost").await;
            if record(&shown, "principal")["state"] == "released" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "the release never completed");
    let (_, secret) = api.get(&net, BENEFICIARY, "/v2/orders/lost/secret").await;
    assert_eq!(secret["secret"], "the vault combination");
    for fiduciary in [1, 2] {
        let held = fiduciary_record(&api, &net, fiduciary, "lost").await;
        assert_eq!(held["releases"].as_object().unwrap().len(), 1, "{held}");
    }

    // Asking for the same release again changes nothing anywhere.
    let (status, body) = api
        .post(&net, PRINCIPAL, "/v2/orders/lost/release", json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_beneficiary_asks_again_for_missing_shares_while_the_principal_is_down() {
    let mut net = testnet().await;
    let api = Api::new();
    order(&api, &net, "halfway", "seed words").await;

    // Only fiduciary 1's share gets through; 2 and 3 serve theirs into the void.
    for fiduciary in [2, 3] {
        set_blocked(&net, fiduciary, BENEFICIARY, true).await;
    }
    let (status, body) = api
        .post(&net, PRINCIPAL, "/v2/orders/halfway/release", json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    api.wait_state(&net, BENEFICIARY, "halfway", "beneficiary", "collecting")
        .await;
    for fiduciary in [2, 3] {
        api.wait_state(&net, fiduciary, "halfway", "fiduciary", "released")
            .await;
    }

    wait_abandoned(&net, &[2, 3]).await;

    // The principal goes away; the beneficiary asks the fiduciaries itself.
    net.test_node(PRINCIPAL).stop().await;
    for fiduciary in [2, 3] {
        set_blocked(&net, fiduciary, BENEFICIARY, false).await;
    }
    api.wait_state(&net, BENEFICIARY, "halfway", "beneficiary", "received")
        .await;
    let (_, secret) = api
        .get(&net, BENEFICIARY, "/v2/orders/halfway/secret")
        .await;
    assert_eq!(secret["secret"], "seed words");

    // The principal, back, gets the receipt it missed when it sends the release again.
    net.test_node(PRINCIPAL).start().await.expect("restart");
    let principal = net.test_node_address(PRINCIPAL);
    net.node(BENEFICIARY)
        .network()
        .send(dta_actors::network::NetworkCommand::Dial(principal))
        .await
        .expect("dial");
    api.wait_state(&net, PRINCIPAL, "halfway", "principal", "released")
        .await;
    for fiduciary in FIDUCIARIES {
        let held = fiduciary_record(&api, &net, fiduciary, "halfway").await;
        assert_eq!(held["releases"].as_object().unwrap().len(), 1, "{held}");
    }
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_allowing_two_releases_reaches_its_beneficiary_twice() {
    let net = testnet().await;
    let api = Api::new();
    let body = json!({
        "reference": "twice",
        "plugin": "safeguardsecret",
        "fiduciaries": FIDUCIARIES.iter().map(|i| identity(&net, *i)).collect::<Vec<_>>(),
        // Every share is needed, so the second release brings no index the first lacked.
        "threshold": 3,
        "beneficiary": identity(&net, BENEFICIARY),
        "max_releases": 2,
        "secret": "needed twice",
    });
    let (status, created) = api.post(&net, PRINCIPAL, "/v2/orders", body).await;
    assert_eq!(status, 201, "{created}");
    api.wait_state(&net, PRINCIPAL, "twice", "principal", "certified")
        .await;
    for _ in 0..2 {
        let (status, body) = api
            .post(&net, PRINCIPAL, "/v2/orders/twice/release", json!({}))
            .await;
        assert_eq!(status, 200, "{body}");
        api.wait_state(&net, PRINCIPAL, "twice", "principal", "released")
            .await;
    }
    let (_, shown) = api.get(&net, PRINCIPAL, "/v2/orders/twice").await;
    let receipts = record(&shown, "principal")["receipts"].clone();
    assert_eq!(receipts.as_object().unwrap().len(), 2, "{shown}");
    let (_, received) = api.get(&net, BENEFICIARY, "/v2/orders/twice").await;
    let received = record(&received, "beneficiary");
    assert_eq!(
        received["receipts"].as_object().unwrap().len(),
        2,
        "{received}"
    );
    let (_, secret) = api.get(&net, BENEFICIARY, "/v2/orders/twice/secret").await;
    assert_eq!(secret["secret"], "needed twice");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_is_acknowledged_only_once_the_beneficiary_kept_it() {
    let net = testnet().await;
    let api = Api::new();
    order(&api, &net, "acked", "kept before the answer").await;
    // The fiduciaries serve the release but cannot reach the beneficiary.
    for fiduciary in FIDUCIARIES {
        set_blocked(&net, fiduciary, BENEFICIARY, true).await;
    }
    let (status, body) = api
        .post(&net, PRINCIPAL, "/v2/orders/acked/release", json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    api.wait_state(&net, 1, "acked", "fiduciary", "released")
        .await;
    let served = fiduciary_record(&api, &net, 1, "acked").await["served"]["1"]
        .as_str()
        .unwrap()
        .to_owned();
    let client = net.node(1).client();
    let share = client.get_bytes(&format!("/v2/blocks/{served}")).await;
    let share = share.unwrap();
    // Fiduciary 1's sealed share, carried by the principal's node: the moment the answer is
    // in, the beneficiary's record holds it.
    let beneficiary: libp2p::PeerId = net.node(BENEFICIARY).info().peer_id.parse().unwrap();
    let answer = net
        .node(PRINCIPAL)
        .network()
        .request(
            beneficiary,
            dta_protocol::network::Request::Deliver {
                blocks: vec![share.to_vec().into()],
            },
        )
        .await
        .expect("delivered");
    assert_eq!(answer, dta_protocol::network::Response::Accepted);
    let (_, shown) = api.get(&net, BENEFICIARY, "/v2/orders/acked").await;
    let kept = record(&shown, "beneficiary");
    assert_eq!(
        kept["shares"].as_object().map(|s| s.len()),
        Some(1),
        "{shown}"
    );
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_goes_only_to_the_beneficiary_the_order_names() {
    let mut net = testnet().await;
    let api = Api::new();
    order(&api, &net, "bound", "for the named one only").await;

    // An identity the principal's node hosts: not the order's beneficiary, and its node
    // cannot receive anyway.
    let (status, hosted) = api
        .post(
            &net,
            PRINCIPAL,
            "/v2/identities",
            json!({ "name": "squatter" }),
        )
        .await;
    assert_eq!(status, 201, "{hosted}");
    let squatter = hosted["cid"].as_str().unwrap().to_owned();
    for other in [squatter.clone(), identity(&net, 1)] {
        let (status, body) = api
            .post(
                &net,
                PRINCIPAL,
                "/v2/orders/bound/release",
                json!({ "beneficiary": other }),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains(&format!(
                "is for beneficiary {}",
                identity(&net, BENEFICIARY)
            )),
            "{body}"
        );
    }
    let (_, shown) = api.get(&net, PRINCIPAL, "/v2/orders/bound").await;
    let shown = record(&shown, "principal");
    assert_eq!(shown["state"], "certified", "nothing was published");
    assert_eq!(shown["releases"], json!({}));

    // A release request signed by the principal itself but naming another beneficiary is
    // refused by every fiduciary (the principal is stopped so that its keys can be read).
    let order_cid: dta_protocol::Cid = shown["order"].as_str().unwrap().parse().unwrap();
    let certificate: dta_protocol::Cid = shown["certificate"].as_str().unwrap().parse().unwrap();
    let client = net.node(PRINCIPAL).client();
    let certificate_block = client.get_bytes(&format!("/v2/blocks/{certificate}")).await;
    let certificate_block = certificate_block.unwrap();
    net.test_node(PRINCIPAL).stop().await;
    let principal = dta_node::home::open(net.test_node(PRINCIPAL).home())
        .expect("the principal's home")
        .identity;
    let another = identity(&net, 1).parse().unwrap();
    let block = release_request(&principal, "bound", order_cid, certificate, another);
    for fiduciary in FIDUCIARIES {
        // The certificate first, as a release brings it; then the request.
        let certificate = certificate_block.clone();
        deliver_and_settle(&net, BENEFICIARY, fiduciary, "fiduciary", certificate).await;
        let rejected = custody_rejections(&net, fiduciary).await;
        deliver_and_settle(&net, BENEFICIARY, fiduciary, "fiduciary", block.clone()).await;
        assert_eq!(
            custody_rejections(&net, fiduciary).await,
            rejected + 1,
            "fiduciary {fiduciary} refuses the request"
        );
        let held = fiduciary_record(&api, &net, fiduciary, "bound").await;
        assert_eq!(held["releases"], json!({}), "nothing released: {held}");
        assert_eq!(
            held["state"], "certified",
            "it took the certificate, nothing more"
        );
    }
    // And a log that holds such a release does not audit.
    let forged_cid = dta_protocol::block::cid_of(dta_protocol::block::DAG_CBOR, &block);
    // (A fiduciary learns the certificate with the first release; there was none.)
    for bytes in [certificate_block, block] {
        let client = net.node(1).client();
        let stored = client.call_raw(Method::PUT, "/v2/blocks?codec=dag-cbor", Some(bytes));
        assert_eq!(stored.await.unwrap().0, 201);
    }
    let (status, report) = api
        .get(
            &net,
            1,
            &format!("/v2/orders/bound/audit?head={forged_cid}"),
        )
        .await;
    assert_ne!(status, 200, "{report}");
    assert!(
        report
            .to_string()
            .contains("but the order is for beneficiary"),
        "{report}"
    );
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_naming_nodes_that_cannot_serve_them_are_refused_up_front() {
    let mut net = testnet().await;
    let api = Api::new();
    let (first, second, third) = (identity(&net, 1), identity(&net, 2), identity(&net, 3));
    let fiduciaries = |last: String| vec![first.clone(), second.clone(), last];
    let attempt = |fiduciaries: Vec<String>, beneficiary: String| {
        json!({
            "reference": "refused",
            "plugin": "safeguardsecret",
            "fiduciaries": fiduciaries,
            "threshold": 2,
            "beneficiary": beneficiary,
            "secret": "nothing",
        })
    };
    // The beneficiary's node holds no shares.
    let (status, body) = api
        .post(
            &net,
            PRINCIPAL,
            "/v2/orders",
            attempt(
                fiduciaries(identity(&net, BENEFICIARY)),
                identity(&net, BENEFICIARY),
            ),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains(&identity(&net, BENEFICIARY)), "{body}");
    assert!(error.contains("fiduciary role"), "{body}");
    // A fiduciary's node receives nothing.
    let (status, body) = api
        .post(
            &net,
            PRINCIPAL,
            "/v2/orders",
            attempt(fiduciaries(third.clone()), identity(&net, 1)),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("beneficiary role"),
        "{body}"
    );
    let (status, _) = api.get(&net, PRINCIPAL, "/v2/orders/refused").await;
    assert_eq!(status, 404, "nothing was made");

    // An order that stalls says who has not answered.
    net.test_node(3).stop().await;
    let (status, body) = api
        .post(
            &net,
            PRINCIPAL,
            "/v2/orders",
            attempt(fiduciaries(third.clone()), identity(&net, BENEFICIARY)),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let expected = json!([{ "identity": third, "for": "custody signature" }]);
    let waited = tokio::time::timeout(TIMEOUT, async {
        loop {
            let (_, shown) = api.get(&net, PRINCIPAL, "/v2/orders/refused").await;
            if awaited(&record(&shown, "principal")) == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "the stalled order never named fiduciary 3");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_peer_stays_blocked_when_the_node_starts_again() {
    let mut net = Testnet::builder().nodes(3).build().await.expect("testnet");
    set_blocked(&net, 0, 1, true).await;
    net.test_node(0).stop().await;
    net.test_node(0).start().await.expect("restart");
    let api = Api::new();
    let (status, listed) = api.get(&net, 0, "/v2/peers/blocked").await;
    assert_eq!(status, 200, "{listed}");
    let blocked = net.node(1).info().peer_id.clone();
    assert_eq!(listed[0]["peer_id"], blocked, "{listed}");
    // Node 0 meets node 2 again, and both know node 1, yet it stays cut off from node 1.
    let (other, blocked): (libp2p::PeerId, libp2p::PeerId) = (
        net.node(2).info().peer_id.parse().unwrap(),
        blocked.parse().unwrap(),
    );
    let mut snapshot = net.node(0).network().watch();
    tokio::time::timeout(TIMEOUT, snapshot.wait_for(|s| s.connected.contains(&other)))
        .await
        .expect("node 0 meets node 2 again")
        .expect("network snapshot");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !net.node(0)
            .network()
            .snapshot()
            .connected
            .contains(&blocked),
        "a blocked peer connected after a restart"
    );
    // Unblocking still works, and is kept too.
    set_blocked(&net, 0, 1, false).await;
    net.test_node(0).stop().await;
    net.test_node(0).start().await.expect("restart");
    let (_, listed) = api.get(&net, 0, "/v2/peers/blocked").await;
    assert_eq!(listed, json!([]));
    net.stop().await;
}
