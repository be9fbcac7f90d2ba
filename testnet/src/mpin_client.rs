//! The client's side of M-Pin against a testnet node: the token from a client secret and a
//! PIN, then the two passes at an authentication server's API. Scenarios and chaos runs
//! authenticate through here; the server's side is the node's.
//!
//! What it does not do: obtain the client secret (a node's `/v2/mpin/client-secret` does) or
//! judge the verdict.

use dta_crypto::mpin::{self, G1Point, MpinScalar};
use dta_node::client::Method;
use serde_json::{Value, json};

use crate::live::LiveNet;
use crate::process::TestnetNode;

/// `identity` (with the client secret `client_secret`, hex, and `pin`) authenticates at
/// `server` entering `entered`: the verify step's status and answer. An error when the
/// client's side fails or the server does not open a session (its status in the message).
pub(crate) async fn authenticate(
    net: &LiveNet,
    server: &TestnetNode,
    identity: &str,
    client_secret: &str,
    pin: u32,
    entered: u32,
) -> Result<(u16, Value), String> {
    let secret = hex::decode(client_secret).map_err(|e| e.to_string())?;
    let secret = G1Point::from_bytes(&secret).map_err(|e| e.to_string())?;
    let token = mpin::extract_pin(&secret, identity.as_bytes(), pin).map_err(|e| e.to_string())?;
    let first = mpin::client_first(&token, identity.as_bytes(), entered, None, None)
        .map_err(|e| e.to_string())?;
    let (status, challenge) = net
        .call(
            server,
            Method::POST,
            "/v2/mpin/auth/challenge",
            Some(json!({ "identity": identity, "u": hex::encode(first.u.to_bytes()) })),
        )
        .await;
    if status != 200 {
        return Err(format!("challenge: {status}: {}", challenge["error"]));
    }
    let y = hex::decode(challenge["y"].as_str().unwrap_or_default()).map_err(|e| e.to_string())?;
    let y = MpinScalar::from_bytes(&y).map_err(|e| e.to_string())?;
    let v = mpin::client_second(first.state, &y).map_err(|e| e.to_string())?;
    Ok(net
        .call(
            server,
            Method::POST,
            "/v2/mpin/auth/verify",
            Some(json!({ "session": challenge["session"], "v": hex::encode(v.to_bytes()) })),
        )
        .await)
}
