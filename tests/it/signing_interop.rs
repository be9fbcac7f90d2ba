//! Threshold signatures checked by an independent implementation: libsecp256k1 (Bitcoin
//! Core's library, through PyPI's `coincurve`) verifies the BIP-340 signatures dta's
//! fiduciaries make with a key nobody holds, and refuses each with one bit flipped.
//!
//! `#[ignore]`d in a plain `cargo test`: `scripts/test` installs `coincurve` into the interop
//! virtual environment and runs it with the other `interop::` tests. By hand:
//! `pip install coincurve==21.0.0` into a virtual environment, then
//! `DTA_KUBO_PYTHON=VENV/bin/python cargo test -p dta-tests --test it -- --ignored
//! signing_interop::`.

use serde_json::{Value, json};

use crate::custody::{Api, FIDUCIARIES, PRINCIPAL, identity, one_role_each};

/// Checks each `(key, message, signature)` (hex) with coincurve: true where it verifies.
fn coincurve_verifies(python: &std::ffi::OsStr, checks: &[(String, String, String)]) -> Vec<bool> {
    const SCRIPT: &str = r#"
import json, sys
from coincurve import PublicKeyXOnly
results = []
for key, message, signature in json.load(sys.stdin):
    try:
        ok = PublicKeyXOnly(bytes.fromhex(key)).verify(bytes.fromhex(signature), bytes.fromhex(message))
    except Exception:
        ok = False
    results.append(bool(ok))
print(json.dumps(results))
"#;
    let mut child = std::process::Command::new(python)
        .args(["-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the interop Python runs");
    {
        use std::io::Write;
        let input = serde_json::to_vec(checks).unwrap();
        child.stdin.take().unwrap().write_all(&input).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "coincurve failed");
    serde_json::from_slice(&output.stdout).expect("a JSON list of results")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs coincurve: scripts/test runs it"]
async fn libsecp256k1_verifies_the_signatures_of_a_key_nobody_holds() {
    let python = std::env::var_os(dta_testnet::interop::kubo::PYTHON_ENV).expect("DTA_KUBO_PYTHON");
    let net = one_role_each(5).await;
    let api = Api::new();
    let fiduciaries: Vec<String> = FIDUCIARIES.iter().map(|i| identity(&net, *i)).collect();
    crate::keygen::order_two_of_three(&api, &net, "checked", &fiduciaries).await;
    api.wait_state(&net, PRINCIPAL, "checked", "principal", "certified")
        .await;
    let messages: Vec<Vec<u8>> = vec![
        b"a message of any length".to_vec(),
        vec![0xab; 32],
        vec![0x00],
        vec![0x5c; 1000],
    ];
    let mut checks = Vec::new();
    for message in &messages {
        let (status, signed) = api
            .post(
                &net,
                PRINCIPAL,
                "/v2/orders/checked/sign?wait=30",
                json!({ "message_hex": hex::encode(message) }),
            )
            .await;
        assert_eq!(status, 200, "{signed}");
        let entry: &Value = &signed["signature"];
        let (key, signature) = (
            entry["key"].as_str().unwrap().to_owned(),
            entry["signature"].as_str().unwrap().to_owned(),
        );
        checks.push((key.clone(), hex::encode(message), signature.clone()));
        let mut flipped = hex::decode(&signature).unwrap();
        flipped[7] ^= 0x10;
        checks.push((key, hex::encode(message), hex::encode(flipped)));
    }
    let results = coincurve_verifies(&python, &checks);
    let expected: Vec<bool> = (0..checks.len()).map(|i| i % 2 == 0).collect();
    assert_eq!(results, expected, "signed ones verify, flipped ones do not");
    net.stop().await;
}
