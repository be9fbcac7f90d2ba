//! Making a new identity for this node to host (the original D-TA's `POST /v1/identity`): the
//! name rules, a fresh seed wrapped by the keystore, the seed and document stored in one
//! synced batch under [`HOSTED_PREFIX`], then the identity added to the hosted list, put into
//! the directory the way peers' documents come in, and announced. Rotating a hosted
//! identity's keys goes the same way: a fresh seed whose document succeeds the current one
//! (endorsed by its keys), the old seed wrapped again under [`retired_seed_name`] to open what
//! was sealed to it, all in one synced batch. The API asks for both; the list itself is
//! [`crate::hosted`].

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
/// Keystore name prefix of a retired seed (of the node's own identity or one it hosts),
/// followed by the CID of the document whose keys it derives.
pub const RETIRED_SEED_PREFIX: &str = "retired-identity-seed/";

/// The keystore name of the seed of the document `document`, once a rotation retired it.
pub fn retired_seed_name(document: &dta_protocol::Cid) -> String {
    format!("{RETIRED_SEED_PREFIX}{document}")
}

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
    /// The identity to rotate is not one this node hosts.
    #[error(
        "{0} is not an identity this node hosts (the node's own keys are rotated with the node stopped: dta identity rotate --home HOME)"
    )]
    NotHosted(String),
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
        self.hosted.add(identity.clone());
        self.publish(peer, &identity, document).await
    }

    /// Rotates the keys of the hosted identity `cid`: stored, put in the directory and
    /// announced like a new one; it once the directory has the new keys.
    pub async fn rotate(&self, cid: dta_protocol::Cid) -> Result<KnownIdentity, HostError> {
        let current = self
            .hosted
            .get(&cid)
            .ok_or_else(|| HostError::NotHosted(cid.to_string()))?;
        let peer: PeerId = self
            .prefix
            .parse()
            .map_err(|_| HostError::Identity("bad own peer id".into()))?;
        let key = format!("{HOSTED_PREFIX}{cid}");
        let keystore =
            crate::registry::keystore(&self.prefix).ok_or(HostError::Unavailable("keystore"))?;
        let wrapped = self
            .store
            .get(Column::Keystore, key.as_bytes())
            .map_err(|e| HostError::Store(e.to_string()))?
            .ok_or_else(|| HostError::Store(format!("the seed of {cid} is missing")))?;
        let unwrap_name = key.clone();
        let old_seed = ractor::call_t!(
            keystore,
            |reply| KeystoreMsg::Unwrap {
                name: unwrap_name,
                blob: wrapped,
                reply
            },
            KEYSTORE_TIMEOUT_MS
        )
        .map_err(|e| HostError::KeystoreTimeout(e.to_string()))??;
        let seed = dta_crypto::Secret::<32>::random();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let rotated = current
            .rotate(&seed, now)
            .map_err(|e| HostError::Identity(e.to_string()))?;
        let retired = retired_seed_name(&current.identity().document_cid());
        let mut wrapped = Vec::new();
        for (name, secret) in [
            (key.clone(), SecretBytes::new(seed.expose().to_vec())),
            (retired.clone(), old_seed),
        ] {
            let blob = ractor::call_t!(
                keystore,
                |reply| KeystoreMsg::Wrap {
                    name: name.clone(),
                    secret,
                    reply
                },
                KEYSTORE_TIMEOUT_MS
            )
            .map_err(|e| HostError::KeystoreTimeout(e.to_string()))??;
            wrapped.push((Column::Keystore, name.into_bytes(), blob));
        }
        let document = dta_protocol::dagcbor::encode(rotated.identity().document())
            .map_err(|e| HostError::Identity(e.to_string()))?;
        let mut entries = wrapped;
        entries.push((Column::Metadata, key.into_bytes(), document.clone()));
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.write_durable(entries))
            .await
            .map_err(|e| HostError::Store(e.to_string()))?
            .map_err(|e| HostError::Store(e.to_string()))?;
        self.hosted.replace(rotated.clone());
        self.publish(peer, &rotated, document).await
    }

    /// Hands `identity`'s newest document to the directory the way peers' documents come in,
    /// announces it, and waits until the directory has that key state.
    async fn publish(
        &self,
        peer: PeerId,
        identity: &LocalIdentity,
        document: Vec<u8>,
    ) -> Result<KnownIdentity, HostError> {
        let cid = identity.cid();
        let sequence = identity.identity().sequence();
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
        let known = |d: &Directory| {
            d.identities
                .get(&cid.to_string())
                .filter(|known| known.verified.sequence() == sequence)
                .cloned()
        };
        let waited = tokio::time::timeout(
            DIRECTORY_TIMEOUT,
            directory.wait_for(|d| known(d).is_some()),
        )
        .await;
        match waited {
            Ok(Ok(directory)) => {
                known(&directory).ok_or_else(|| HostError::NotInDirectory(cid.to_string()))
            }
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
