//! Making a new identity for this node to host (the original D-TA's `POST /v1/identity`): the
//! name rules, a fresh seed wrapped by the keystore, the seed and document stored in one
//! synced batch under [`HOSTED_PREFIX`], then the identity added to the hosted list, put into
//! the directory the way peers' documents come in, and announced. The API asks for it; the
//! list itself is [`crate::hosted`].

use std::time::Duration;

use dta_protocol::identity::LocalIdentity;
use dta_protocol::order::SecretBytes;
use libp2p::PeerId;
use tokio::sync::watch;

use crate::context::KEYSTORE_TIMEOUT_MS;
use crate::hosted::Hosted;
use crate::identities::{Directory, IdentitiesMsg, KnownIdentity};
use crate::keystore::KeystoreMsg;
use crate::network::{NetworkCommand, NetworkEvent, NetworkHandle};
use crate::store::{Column, Store};

/// Where a hosted identity's wrapped seed (keystore column) and document (metadata column)
/// are stored, followed by its CID.
pub const HOSTED_PREFIX: &str = "hosted/";
/// Longest hosted identity name.
pub const MAX_NAME_LEN: usize = 64;
/// The characters of a hosted identity's name, as errors and the README name them: enough
/// for e-mail-like M-Pin ids (`alice@example.org`, `bob+mfa@example.org`).
pub const NAME_CHARS: &str = "A-Z a-z 0-9 - _ . @ +";
/// How long a new identity may take to reach the directory.
const DIRECTORY_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `name` may name a hosted identity: 1 to [`MAX_NAME_LEN`] characters of
/// [`NAME_CHARS`].
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@+".contains(c))
}

/// Why a hosted identity was not made.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The name breaks the rules.
    #[error("name must be 1 to {MAX_NAME_LEN} characters of {NAME_CHARS}")]
    InvalidName,
    /// This node already has an identity of that name.
    #[error("this node already has an identity named {0:?}")]
    Taken(String),
    /// An actor it needs is not running.
    #[error("the {0} actor is not running")]
    Unavailable(&'static str),
    /// The keystore did not answer in time.
    #[error("the keystore did not answer: {0}")]
    KeystoreTimeout(String),
    /// The keystore refused to wrap the seed.
    #[error(transparent)]
    Keystore(#[from] dta_hsm::KeystoreError),
    /// Storing failed.
    #[error("cannot store the identity: {0}")]
    Store(String),
    /// Making the document failed.
    #[error("cannot make the identity: {0}")]
    Identity(String),
    /// The identity did not reach the directory in time.
    #[error("identity {0} did not reach the directory")]
    NotInDirectory(String),
}

/// What hosting needs of the node.
#[derive(Debug, Clone)]
pub struct Host {
    /// Actor-name prefix (this node's peer id).
    pub prefix: String,
    /// This node's own identity name (a hosted one may not take it).
    pub own_name: String,
    /// The identities hosted already.
    pub hosted: Hosted,
    /// The database.
    pub store: Store,
    /// The network, to announce the new document.
    pub network: NetworkHandle,
    /// The directory, to wait for the new identity.
    pub directory: watch::Receiver<Directory>,
}

impl Host {
    /// Makes, stores, adds and announces a hosted identity called `name`; it once the
    /// directory has it.
    pub async fn identity(&self, name: &str) -> Result<KnownIdentity, HostError> {
        if !valid_name(name) {
            return Err(HostError::InvalidName);
        }
        if self.own_name == name || self.hosted.named(name).is_some() {
            return Err(HostError::Taken(name.to_owned()));
        }
        let peer: PeerId = self
            .prefix
            .parse()
            .map_err(|_| HostError::Identity("bad own peer id".into()))?;
        let seed = dta_crypto::Secret::<32>::random();
        let created_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let identity = LocalIdentity::create(&seed, name, &peer.to_bytes(), created_at)
            .map_err(|e| HostError::Identity(e.to_string()))?;
        let key = format!("{HOSTED_PREFIX}{}", identity.cid());
        let document = dta_protocol::dagcbor::encode(identity.identity().document())
            .map_err(|e| HostError::Identity(e.to_string()))?;
        let keystore =
            crate::registry::keystore(&self.prefix).ok_or(HostError::Unavailable("keystore"))?;
        let wrap_name = key.clone();
        let blob = ractor::call_t!(
            keystore,
            |reply| KeystoreMsg::Wrap {
                name: wrap_name,
                secret: SecretBytes::new(seed.expose().to_vec()),
                reply
            },
            KEYSTORE_TIMEOUT_MS
        )
        .map_err(|e| HostError::KeystoreTimeout(e.to_string()))??;
        let store = self.store.clone();
        let entries = vec![
            (Column::Keystore, key.clone().into_bytes(), blob),
            (Column::Metadata, key.into_bytes(), document.clone()),
        ];
        tokio::task::spawn_blocking(move || store.write_durable(entries))
            .await
            .map_err(|e| HostError::Store(e.to_string()))?
            .map_err(|e| HostError::Store(e.to_string()))?;
        let cid = identity.cid();
        self.hosted.add(identity);
        // Into the directory the way peers' documents come in, and out to the peers.
        let identities = crate::registry::identities(&self.prefix)
            .ok_or(HostError::Unavailable("identities"))?;
        identities
            .send_message(IdentitiesMsg::Network(NetworkEvent::IdentityReceived {
                peer,
                document,
            }))
            .map_err(|_| HostError::Unavailable("identities"))?;
        let _ = self.network.send(NetworkCommand::AnnounceIdentities).await;
        let mut directory = self.directory.clone();
        let waited = tokio::time::timeout(
            DIRECTORY_TIMEOUT,
            directory.wait_for(|d| d.identities.contains_key(&cid.to_string())),
        )
        .await;
        match waited {
            Ok(Ok(directory)) => directory
                .identities
                .get(&cid.to_string())
                .cloned()
                .ok_or_else(|| HostError::NotInDirectory(cid.to_string())),
            Ok(Err(_)) | Err(_) => Err(HostError::NotInDirectory(cid.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_may_be_e_mail_like_and_nothing_else() {
        for name in [
            "alice",
            "alice@example.org",
            "bob+mfa@example.org",
            "a-b_c.d",
        ] {
            assert!(valid_name(name), "{name}");
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        for name in ["", "alice smith", "alice/", "ä", long.as_str()] {
            assert!(!valid_name(name), "{name:?}");
        }
    }
}
