//! Finding an identity this node does not know, when it needs one: nodes do not learn every
//! identity of a network, only those of the peers they keep (see `network::lookup`). A
//! lookup asks two ways at once: the DHT for the identity's providers, which are sent the
//! identity request, and the connected peers, over Bitswap, for the identity's first document
//! by its CID (any node that met the identity keeps it, so a node that cannot reach the
//! identity's own node still finds it through a peer they share). What comes back goes to the
//! directory, which verifies it like any document; this only waits for the directory.

use std::time::Duration;

use dta_protocol::Cid;
use tokio::sync::{oneshot, watch};

use crate::identities::Directory;
use crate::network::{NetworkCommand, NetworkHandle};

/// How long a lookup waits for the directory to know every identity asked for.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a lookup ended without every identity.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LookupError {
    /// Neither the DHT nor a connected peer gave a valid document in time.
    #[error("identity {0} not found: no provider in the DHT or connected peer gave it in time")]
    NotFound(Cid),
    /// The network is not running.
    #[error("the network is not running")]
    Closed,
}

/// Makes sure the directory knows every identity of `cids`: looks up those it does not and
/// waits until it verified and kept them, for at most `timeout`.
pub async fn find(
    network: &NetworkHandle,
    directory: &watch::Receiver<Directory>,
    cids: &[Cid],
    timeout: Duration,
) -> Result<(), LookupError> {
    let unknown = |d: &Directory| -> Vec<Cid> {
        cids.iter()
            .filter(|cid| !d.identities.contains_key(&cid.to_string()))
            .copied()
            .collect()
    };
    let missing = unknown(&directory.borrow());
    if missing.is_empty() {
        return Ok(());
    }
    // Each attempt ends with whether the identity may still come: a document was fetched,
    // or providers were asked (their answers go to the directory).
    let mut attempts = tokio::task::JoinSet::new();
    for cid in missing.iter().copied() {
        let (reply, asked) = oneshot::channel();
        network
            .send(NetworkCommand::FindIdentity {
                identity: cid,
                reply,
            })
            .await
            .map_err(|_| LookupError::Closed)?;
        let network = network.clone();
        attempts.spawn(async move {
            if let Ok(document) = network.fetch_block(cid).await {
                let sent = network.send(NetworkCommand::IdentityFetched(document));
                return (cid, sent.await.is_ok());
            }
            (cid, asked.await.unwrap_or(0) > 0)
        });
    }
    let mut watching = directory.clone();
    let all_known = |d: &Directory| unknown(d).is_empty();
    let hopeless = async {
        while let Some(attempt) = attempts.join_next().await {
            if let Ok((cid, false)) = attempt {
                return cid;
            }
        }
        std::future::pending().await
    };
    let outcome = tokio::select! {
        known = watching.wait_for(all_known) => match known {
            Ok(_) => Outcome::Known,
            Err(_) => Outcome::Closed,
        },
        cid = hopeless => Outcome::Hopeless(cid),
        () = tokio::time::sleep(timeout) => Outcome::TimedOut,
    };
    match outcome {
        Outcome::Known => Ok(()),
        Outcome::Closed => Err(LookupError::Closed),
        Outcome::Hopeless(cid) => {
            // It may have come another way meanwhile.
            let came = directory.borrow().identities.contains_key(&cid.to_string());
            if came {
                return Box::pin(find(network, directory, cids, timeout)).await;
            }
            Err(LookupError::NotFound(cid))
        }
        Outcome::TimedOut => {
            let still = unknown(&directory.borrow());
            Err(LookupError::NotFound(
                still.first().copied().unwrap_or(missing[0]),
            ))
        }
    }
}

/// How the wait of a lookup ended.
enum Outcome {
    Known,
    Closed,
    Hopeless(Cid),
    TimedOut,
}
