//! Blocks over HTTP: put and get, CAR export of an order's log and import on another node.

use dta_node::client::{ApiClient, Method};
use dta_testnet::bench;
use dta_testnet::harness::Testnet;
use serde_json::Value;

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Sends raw bytes; the status and the JSON answer.
async fn send_raw(client: &ApiClient, method: Method, path: &str, body: Vec<u8>) -> (u16, Value) {
    let (status, answer) = client.call_raw(method, path, Some(body)).await.unwrap();
    (
        status,
        serde_json::from_slice(&answer).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_are_put_and_got_and_bad_ones_refused() {
    let net = Testnet::builder().nodes(1).build().await.expect("testnet");
    let client = net.node(0).client();
    let put = async |codec: &str, body: Vec<u8>| {
        send_raw(
            &client,
            Method::PUT,
            &format!("/v2/blocks?codec={codec}"),
            body,
        )
        .await
    };
    let (status, raw) = put("raw", b"hello blocks".to_vec()).await;
    assert_eq!(status, 201, "{raw}");
    assert_eq!(
        raw["cid"],
        dta_protocol::block::cid_of(dta_protocol::block::RAW, b"hello blocks").to_string()
    );
    let got = format!("/v2/blocks/{}", raw["cid"].as_str().unwrap());
    assert_eq!(client.get_bytes(&got).await.unwrap(), b"hello blocks");

    let (status, cbor) = put("dag-cbor", vec![0xa1, 0x61, 0x61, 0x01]).await;
    assert_eq!(status, 201, "{cbor}");
    assert!(
        cbor["cid"].as_str().unwrap().starts_with("bafyrei"),
        "{cbor}"
    );
    // Not canonical (keys out of order), an unknown codec, nothing at all: refused.
    let unsorted = vec![0xa2, 0x61, 0x62, 0x01, 0x61, 0x61, 0x02];
    for (codec, body) in [
        ("dag-cbor", unsorted),
        ("json", b"{}".to_vec()),
        ("raw", Vec::new()),
    ] {
        let (status, answer) = put(codec, body).await;
        assert_eq!(status, 400, "{codec}: {answer}");
    }
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_log_exported_as_car_audits_on_a_node_that_imported_it() {
    let net = Testnet::builder()
        .nodes(2)
        .plugin("safeguardsecret")
        .build()
        .await
        .expect("testnet");
    let other = net.node(1).client();
    // Released, with the receipt as the principal's head; then exported.
    let (reference, head) = crate::log::released_order(&net.node(0).client()).await;
    let archive = net.node(0).client();
    let archive = archive
        .get_bytes(&format!("/v2/orders/{reference}/car"))
        .await;
    let archive = archive.unwrap();
    let car = dta_protocol::car::read(&archive).expect("a valid archive");
    assert_eq!(car.roots[0].to_string(), head);
    // The chain (receipt, release request, certificate, commitment, order request), the
    // identity documents its envelopes link to, and the envelopes attached to it: enough to
    // audit the whole order with nothing else.
    let checked =
        dta_protocol::archive::audit(&car, None, Some(reference.as_str())).expect("audits");
    assert_eq!(checked.chain.envelopes.len(), 5);
    assert!(checked.identities > 0);
    assert!(
        checked
            .attached
            .iter()
            .any(|(_, kind)| *kind == dta_protocol::envelope::Kind::ShareDeal),
        "the principal's deals hang off the commitment"
    );

    // A damaged copy is refused whole (the archive is read and checked before anything is
    // stored).
    let mut damaged = archive.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 0x01;
    let import =
        async |archive: Vec<u8>| send_raw(&other, Method::POST, "/v2/blocks/import", archive).await;
    let (status, answer) = import(damaged).await;
    assert_eq!(status, 400, "{answer}");
    // The real one imports, and the log audits there from the archive alone.
    let (status, imported) = import(archive).await;
    assert_eq!(status, 200, "{imported}");
    assert_eq!(imported["blocks"], car.blocks.len());
    let audit = format!("/v2/orders/{reference}/audit?head={head}");
    let report = other.get(&audit).await.unwrap();
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["fetched"], 0, "{report}");
    assert_eq!(report["receipts"], 1, "{report}");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_fetches_blocks_it_lacks_from_its_peers_over_bitswap() {
    let net = Testnet::builder().nodes(3).build().await.expect("testnet");
    let holder = net.node(0).client();
    let mut stored = Vec::new();
    for (codec, body) in [
        ("raw", b"fetched over bitswap".to_vec()),
        ("dag-cbor", vec![0xa1, 0x61, 0x62, 0x02]),
        ("raw", vec![0x5a; 512 * 1024]),
    ] {
        let path = format!("/v2/blocks?codec={codec}");
        let (status, put) = send_raw(&holder, Method::PUT, &path, body.clone()).await;
        assert_eq!(status, 201, "{put}");
        stored.push((put["cid"].as_str().unwrap().to_owned(), body));
    }
    for node in [1, 2] {
        let client = net.node(node).client();
        for (cid, body) in &stored {
            let got = client.get_bytes(&format!("/v2/blocks/{cid}")).await;
            let got = got.unwrap_or_else(|e| panic!("node {node}, {cid}: {e}"));
            assert_eq!(got, body.as_slice());
        }
    }
    // Nobody has it: every peer says so, and the answer is a prompt 404.
    let nowhere = dta_protocol::block::cid_of(dta_protocol::block::RAW, b"nowhere");
    let started = std::time::Instant::now();
    let answer = net.node(1).client();
    let path = format!("/v2/blocks/{nowhere}");
    let answer = answer.call(Method::GET, &path, None).await.unwrap();
    let (status, answer) = (answer.status, answer.body);
    assert_eq!(status, 404, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("no connected peer has block")
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bitswap_benchmark_fetches_every_block() {
    let report = bench::bitswap::run(bench::bitswap::BitswapBench {
        blocks: 20,
        size: 4096,
        kubo_python: None,
    })
    .await
    .expect("benchmark runs");
    assert_eq!(report.blocks, 20);
    assert!(report.mib_per_second > 0.0 && report.blocks_per_second > 0.0);
    let refused = bench::bitswap::run(bench::bitswap::BitswapBench {
        blocks: 1,
        size: dta_protocol::bitswap::MAX_BLOCK_SIZE + 1,
        kubo_python: None,
    })
    .await;
    assert!(refused.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_gets_413_and_a_json_error_on_every_route() {
    let net = Testnet::builder().nodes(1).build().await.expect("testnet");
    let api = net.node(0).info().api.clone();
    let client = crate::process::raw_http_with(&net.node(0).token().unwrap());
    let limit = dta_node::http::MAX_BODY_SIZE;

    // The largest block is taken.
    let (status, put) = json_of(
        client
            .put(format!("{api}/v2/blocks"))
            .body(vec![0x5a; limit])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{put}");

    // One byte more is refused with 413 and the API's JSON error, on the block route as on the
    // JSON ones (which answered 400, and the block route plain text).
    let oversized = vec![b' '; limit + 1];
    for (method, path) in [
        (reqwest::Method::PUT, "/v2/blocks"),
        (reqwest::Method::POST, "/v2/orders"),
        (reqwest::Method::POST, "/v2/identities"),
        (reqwest::Method::POST, "/v1/order"),
    ] {
        let response = client
            .request(method.clone(), format!("{api}{path}"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(oversized.clone())
            .send()
            .await
            .unwrap();
        let json = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
        let (status, answer) = json_of(response).await;
        assert_eq!(status, 413, "{method} {path}: {answer}");
        assert!(json, "{method} {path}: not JSON");
        assert!(
            answer["error"]
                .as_str()
                .is_some_and(|e| e.contains(&limit.to_string())),
            "{method} {path}: {answer}"
        );
    }

    // A CAR import has a limit of its own: an archive larger than other bodies' is taken.
    let blocks: Vec<(dta_protocol::Cid, Vec<u8>)> = [0x01u8, 0x02]
        .iter()
        .map(|fill| {
            let bytes = vec![*fill; limit * 3 / 4];
            (
                dta_protocol::block::cid_of(dta_protocol::block::RAW, &bytes),
                bytes,
            )
        })
        .collect();
    let archive = dta_protocol::car::write(&[blocks[0].0], &blocks).unwrap();
    assert!(archive.len() > limit);
    let (status, imported) = json_of(
        client
            .post(format!("{api}/v2/blocks/import"))
            .body(archive)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{imported}");
    assert_eq!(imported["blocks"], 2, "{imported}");
    net.stop().await;
}
