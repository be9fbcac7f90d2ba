//! The M-Pin part of a chaos run: each principal obtains its authentication-server secret
//! from the three fiduciaries (the trust authorities); then, for as long as orders are
//! placed, the principals take turns as clients: one obtains a client secret for its own
//! name from them (a node asks for its own name or an identity it hosts), and authenticates
//! at the other with the right PIN (which must pass) and at itself with a wrong one (which
//! must fail), trying again while nodes are down or cut off.
//!
//! What it does not do: check the issuances' records, or use a master secret generated
//! t-of-n (every authority answers from a share of its own, so every one must be up).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dta_node::client::Method;
use serde_json::json;

use super::{ChaosError, Net, PRINCIPALS, SETTLE};

/// The client's PIN.
const PIN: u32 = 4321;
/// Wait between tries while a node is down.
const RETRY: Duration = Duration::from_millis(300);

/// What the M-Pin workload did, and what went against the protocol.
#[derive(Debug, Default)]
pub(super) struct MpinTally {
    /// Client secrets issued.
    pub issued: usize,
    /// Authentications with the right PIN that passed.
    pub authenticated: usize,
    /// Authentications with a wrong PIN that failed.
    pub wrong_refused: usize,
    /// A right PIN refused, a wrong one let in.
    pub violations: Vec<String>,
}

/// Runs the M-Pin workload until `done` (the orders are all placed).
pub(super) async fn workload(
    net: &Net,
    fiduciaries: &[String],
    done: &AtomicBool,
) -> Result<MpinTally, ChaosError> {
    let from = json!({ "from": fiduciaries });
    for principal in PRINCIPALS {
        retry(&format!("{principal}'s server secret"), || async {
            match net
                .call(
                    principal,
                    Method::POST,
                    "/v2/mpin/server-secret",
                    Some(from.clone()),
                )
                .await
            {
                Some((200, _)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await?;
    }
    let mut tally = MpinTally::default();
    while !done.load(Ordering::Relaxed) {
        let (client, other) = (
            PRINCIPALS[tally.issued % 2],
            PRINCIPALS[(tally.issued + 1) % 2],
        );
        let request = json!({ "identity": client, "from": fiduciaries });
        let secret = retry(&format!("a client secret for {client}"), || async {
            match net
                .call(
                    client,
                    Method::POST,
                    "/v2/mpin/client-secret",
                    Some(request.clone()),
                )
                .await
            {
                Some((200, answer)) if answer["client_secret"].is_string() => {
                    Ok(answer["client_secret"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned())
                }
                other => Err(format!("{other:?}")),
            }
        })
        .await?;
        tally.issued += 1;
        let (right, wrong) = (other, client);
        match verdict(net, right, client, &secret, PIN).await? {
            200 => tally.authenticated += 1,
            status => tally.violations.push(format!(
                "M-Pin: the right PIN was refused by {right} ({status})"
            )),
        }
        match verdict(net, wrong, client, &secret, PIN + 1).await? {
            200 => tally
                .violations
                .push(format!("M-Pin: a wrong PIN was let in by {wrong}")),
            _ => tally.wrong_refused += 1,
        }
    }
    Ok(tally)
}

/// The status of `client`'s authentication at `server` entering `entered`, once the server
/// gave one (a server down, restarting or cut off is asked again).
async fn verdict(
    net: &Net,
    server: &str,
    client: &str,
    secret: &str,
    entered: u32,
) -> Result<u16, ChaosError> {
    retry(&format!("a verdict of {server}"), || async {
        let node = net.0.node(server)?;
        match crate::mpin_client::authenticate(&net.0, &node, client, secret, PIN, entered).await {
            Ok((status, _)) if status != 0 && status < 500 => Ok(status),
            Ok((status, answer)) => Err(format!("{status}: {answer}")),
            Err(e) => Err(e),
        }
    })
    .await
}

/// `attempt` until it gives something, or [`SETTLE`] passed (an error naming `what` and the
/// last failure).
async fn retry<T, F: std::future::Future<Output = Result<T, String>>>(
    what: &str,
    mut attempt: impl FnMut() -> F,
) -> Result<T, ChaosError> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let failed = match attempt().await {
            Ok(done) => return Ok(done),
            Err(failed) => failed,
        };
        if Instant::now() > deadline {
            return Err(ChaosError::Workload(format!(
                "M-Pin: never got {what}; last: {failed}"
            )));
        }
        tokio::time::sleep(RETRY).await;
    }
}
