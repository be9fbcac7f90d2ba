//! Threshold signatures checked by independent implementations: libsecp256k1 (Bitcoin Core's
//! library, through PyPI's `coincurve`) verifies the BIP-340 signatures dta's fiduciaries make
//! with a key nobody holds; the Ethereum Foundation's pure-Python `py_ecc` (its IETF
//! `G2ProofOfPossession` ciphersuite) and blst verify their threshold BLS signatures, of a
//! dealt secret and of a key generated without a dealer. Each refuses every signature with one
//! bit flipped.
//!
//! `#[ignore]`d in a plain `cargo test`: `scripts/test` installs `coincurve` and `py_ecc` into
//! the interop virtual environment and runs these with the other `interop::` tests. By hand:
//! `pip install coincurve==21.0.0 py_ecc==8.0.0` into a virtual environment, then
//! `DTA_KUBO_PYTHON=VENV/bin/python cargo test -p dta-tests --test it -- --ignored
//! signing_interop::`.

use serde_json::{Value, json};

use crate::custody::{Api, FIDUCIARIES, PRINCIPAL, identity, one_role_each, order_body};

/// Checks each `(key, message, signature)` (hex) with coincurve: true where it verifies.
fn coincurve_verifies(python: &std::ffi::OsStr, checks: &[(String, String, String)]) -> Vec<bool> {
    let script = verifier_script(
        "from coincurve import PublicKeyXOnly",
        "PublicKeyXOnly(key).verify(signature, message)",
    );
    python_verifies(python, &script, checks)
}

/// Checks each `(key, message, signature)` (hex) with py_ecc's IETF BLS ciphersuite (minimal
/// public keys, proof of possession): true where it verifies.
fn py_ecc_verifies(python: &std::ffi::OsStr, checks: &[(String, String, String)]) -> Vec<bool> {
    let script = verifier_script(
        "from py_ecc.bls import G2ProofOfPossession as bls",
        "bls.Verify(key, message, signature)",
    );
    python_verifies(python, &script, checks)
}

/// A Python program that reads `[[key, message, signature], ...]` (hex) as JSON and prints,
/// for each, whether `verify` (an expression over the decoded `key`, `message` and
/// `signature`) holds; an exception counts as no.
fn verifier_script(import: &str, verify: &str) -> String {
    format!(
        r#"
import json, sys
{import}
results = []
for key, message, signature in json.load(sys.stdin):
    key, message, signature = (bytes.fromhex(x) for x in (key, message, signature))
    try:
        ok = {verify}
    except Exception:
        ok = False
    results.append(bool(ok))
print(json.dumps(results))
"#
    )
}

/// Runs `script` with `checks` as JSON on its input; the list of booleans it prints.
fn python_verifies(
    python: &std::ffi::OsStr,
    script: &str,
    checks: &[(String, String, String)],
) -> Vec<bool> {
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
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
    assert!(
        output.status.success(),
        "the verifier failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
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
    let checks = signed_and_flipped(&api, &net, "checked", &messages).await;
    let results = coincurve_verifies(&python, &checks);
    let expected: Vec<bool> = (0..checks.len()).map(|i| i % 2 == 0).collect();
    assert_eq!(results, expected, "signed ones verify, flipped ones do not");
    net.stop().await;
}

/// Signs each message with `reference`'s key; each `(key, message, signature)` (hex), then the
/// same with one bit of the signature flipped.
async fn signed_and_flipped(
    api: &Api,
    net: &dta_testnet::harness::Testnet,
    reference: &str,
    messages: &[Vec<u8>],
) -> Vec<(String, String, String)> {
    let mut checks = Vec::new();
    for message in messages {
        let (status, signed) = api
            .post(
                net,
                PRINCIPAL,
                &format!("/v2/orders/{reference}/sign?wait=30"),
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
        flipped[40] ^= 0x04;
        checks.push((key, hex::encode(message), hex::encode(flipped)));
    }
    checks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs py_ecc: scripts/test runs it"]
async fn py_ecc_and_blst_verify_the_threshold_bls_signatures_of_a_key_nobody_holds() {
    let python = std::env::var_os(dta_testnet::interop::kubo::PYTHON_ENV).expect("DTA_KUBO_PYTHON");
    let net = one_role_each(5).await;
    let api = Api::new();
    // A dealt secret and a BLS12-381 key the fiduciaries generate, both 2-of-3.
    let (status, created) = api
        .post(
            &net,
            PRINCIPAL,
            "/v2/orders",
            order_body(&net, "dealt", "a secret"),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let fiduciaries: Vec<String> = FIDUCIARIES.iter().map(|i| identity(&net, *i)).collect();
    let generated = json!({
        "reference": "generated",
        "plugin": "mpin-master",
        "fiduciaries": fiduciaries,
        "threshold": 2,
    });
    let (status, created) = api.post(&net, PRINCIPAL, "/v2/orders", generated).await;
    assert_eq!(status, 201, "{created}");
    let messages: Vec<Vec<u8>> = vec![b"drand round 1".to_vec(), vec![0x00], vec![0xee; 600]];
    let mut checks = Vec::new();
    for reference in ["dealt", "generated"] {
        api.wait_state(&net, PRINCIPAL, reference, "principal", "certified")
            .await;
        checks.extend(signed_and_flipped(&api, &net, reference, &messages).await);
    }
    let expected: Vec<bool> = (0..checks.len()).map(|i| i % 2 == 0).collect();
    let blst: Vec<bool> = checks
        .iter()
        .map(|(key, message, signature)| {
            let key = dta_crypto::bls::PublicKey::from_bytes(&hex::decode(key).unwrap());
            let signature =
                dta_crypto::bls::Signature::from_bytes(&hex::decode(signature).unwrap());
            matches!((key, signature), (Ok(key), Ok(signature))
                if key.verify(&hex::decode(message).unwrap(), &signature).is_ok())
        })
        .collect();
    assert_eq!(
        blst, expected,
        "blst: signed ones verify, flipped ones do not"
    );
    let results = py_ecc_verifies(&python, &checks);
    assert_eq!(
        results, expected,
        "py_ecc: signed ones verify, flipped ones do not"
    );
    net.stop().await;
}
