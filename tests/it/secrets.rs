//! Secrets of any bytes: ordered as `secret_base64` or `secret_hex` through `POST /v2/orders`,
//! received as exactly those bytes; malformed, doubled and oversized secrets refused with 400
//! before anything is published, in messages that never quote the secret.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use dta_actors::plugin::MAX_SECRET_LEN;
use dta_testnet::harness::Testnet;
use serde_json::{Value, json};

use crate::custody::{Api, identity, one_role_each};

const PRINCIPAL: usize = 0;
const FIDUCIARIES: [usize; 2] = [1, 2];
const BENEFICIARY: usize = 3;

async fn get(net: &Testnet, node: usize, path: &str) -> (u16, Value) {
    Api::new().get(net, node, path).await
}

async fn post(net: &Testnet, node: usize, path: &str, body: Value) -> (u16, Value) {
    Api::new().post(net, node, path, body).await
}

async fn wait_state(net: &Testnet, node: usize, reference: &str, role: &str, state: &str) {
    Api::new()
        .wait_state(net, node, reference, role, state)
        .await;
}

fn order_body(net: &Testnet, reference: &str, secret: Value) -> Value {
    let mut body = json!({
        "reference": reference,
        "plugin": "safeguardsecret",
        "fiduciaries": FIDUCIARIES.iter().map(|i| identity(net, *i)).collect::<Vec<_>>(),
        "threshold": 2,
        "beneficiary": identity(net, BENEFICIARY),
    });
    for (field, value) in secret.as_object().unwrap() {
        body[field] = value.clone();
    }
    body
}

/// Orders `secret`, releases it, and answers what the beneficiary's node gives back.
async fn round_trip(net: &Testnet, reference: &str, secret: Value) -> Value {
    let body = order_body(net, reference, secret);
    let (status, created) = post(net, PRINCIPAL, "/v2/orders", body).await;
    assert_eq!(status, 201, "{created}");
    wait_state(net, PRINCIPAL, reference, "principal", "certified").await;
    let path = format!("/v2/orders/{reference}/release");
    let (status, released) = post(net, PRINCIPAL, &path, json!({})).await;
    assert_eq!(status, 200, "{released}");
    wait_state(net, BENEFICIARY, reference, "beneficiary", "received").await;
    let path = format!("/v2/orders/{reference}/secret");
    let (status, received) = get(net, BENEFICIARY, &path).await;
    assert_eq!(status, 200, "{received}");
    received
}

/// The bytes a secret answer gives back, checking that its hex and base64 agree.
fn received_bytes(received: &Value) -> Vec<u8> {
    let from_hex = hex::decode(received["secret_hex"].as_str().unwrap()).unwrap();
    let from_base64 = BASE64
        .decode(received["secret_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(from_hex, from_base64, "{received}");
    from_hex
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_secrets_come_back_byte_for_byte_and_bad_ones_are_refused() {
    let net = one_role_each(4).await;

    // Refused before anything is published: two secret fields, bad hex or base64, too many
    // bytes. No message quotes what it was given.
    let secret_looking = "73656372657420776f726473zz";
    let refused = [
        (
            "two fields",
            json!({ "secret": "hunter2", "secret_hex": "00ff" }),
            "give the secret once",
        ),
        (
            "bad hex",
            json!({ "secret_hex": secret_looking }),
            "secret_hex is not hex",
        ),
        (
            "odd hex",
            json!({ "secret_hex": "abc" }),
            "secret_hex is not hex",
        ),
        (
            "bad base64",
            json!({ "secret_base64": "c2VjcmV0!!" }),
            "secret_base64 is not base64",
        ),
        (
            "a number",
            json!({ "secret": 73_656_372 }),
            "expected a string",
        ),
        (
            "too big",
            json!({ "secret_hex": "ab".repeat(MAX_SECRET_LEN + 1) }),
            "at most 65536 bytes",
        ),
    ];
    for (case, secret, expected) in refused {
        let body = order_body(&net, "refused", secret);
        let (status, answer) = post(&net, PRINCIPAL, "/v2/orders", body).await;
        assert_eq!(status, 400, "{case}: {answer}");
        let message = answer["error"].as_str().unwrap();
        assert!(message.contains(expected), "{case}: {message}");
        for quoted in [secret_looking, "hunter2", "73656372", "c2VjcmV0"] {
            assert!(
                !message.contains(quoted),
                "{case} quotes the secret: {message}"
            );
        }
    }
    let (status, _) = get(&net, PRINCIPAL, "/v2/orders/refused").await;
    assert_eq!(status, 404, "a refused order leaves nothing behind");

    // Every byte value, none of it UTF-8 text as a whole, through base64.
    let every_byte: Vec<u8> = (0..=255).collect();
    let received = round_trip(
        &net,
        "every-byte",
        json!({ "secret_base64": BASE64.encode(&every_byte) }),
    )
    .await;
    assert_eq!(received_bytes(&received), every_byte);
    assert_eq!(received["secret"], Value::Null, "not text: {received}");

    // A short key-like secret through hex.
    let received = round_trip(&net, "three-bytes", json!({ "secret_hex": "FF00fe" })).await;
    assert_eq!(received_bytes(&received), [0xff_u8, 0x00, 0xfe]);

    // The largest secret the error names goes through whole.
    let largest: Vec<u8> = (0..MAX_SECRET_LEN).map(|i| (i % 251) as u8).collect();
    let received = round_trip(
        &net,
        "largest",
        json!({ "secret_base64": BASE64.encode(&largest) }),
    )
    .await;
    assert!(
        received_bytes(&received) == largest,
        "the largest secret changed"
    );

    // Text still reads as text, and its bytes agree.
    let received = round_trip(&net, "text", json!({ "secret": "naïve ✓" })).await;
    assert_eq!(received["secret"], "naïve ✓");
    assert_eq!(received_bytes(&received), "naïve ✓".as_bytes());
    net.stop().await;
}
