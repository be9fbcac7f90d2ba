//! The identities this node hosts beside its own (the original D-TA's `POST /v1/identity`):
//! a list shared by the network loop, which serves and announces their documents, and the
//! role actors, which act as them. Creating one (keys, storage) is the node's business; this
//! only holds them.

use std::sync::Arc;

use dta_protocol::Cid;
use dta_protocol::identity::LocalIdentity;

/// Identities this node hosts: their keys are in its keystore and their documents name its
/// peer id, so they receive through it (the original D-TA's `POST /v1/identity`). Shared by
/// the network loop (which serves and announces them) and the role actors (which act as them).
#[derive(Debug, Clone, Default)]
pub struct Hosted(Arc<std::sync::RwLock<Vec<LocalIdentity>>>);

impl Hosted {
    /// Starts with the given identities.
    pub fn new(identities: Vec<LocalIdentity>) -> Self {
        Self(Arc::new(std::sync::RwLock::new(identities)))
    }

    /// Adds one.
    pub fn add(&self, identity: LocalIdentity) {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(identity);
    }

    /// Puts `identity` in place of the hosted identity of the same CID (its keys rotated).
    pub fn replace(&self, identity: LocalIdentity) {
        let mut hosted = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        hosted.retain(|i| i.cid() != identity.cid());
        hosted.push(identity);
    }

    /// The hosted identity `cid`, if it is one.
    pub fn get(&self, cid: &Cid) -> Option<LocalIdentity> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|i| i.cid() == *cid)
            .cloned()
    }

    /// The hosted identity called `name`, if there is one (names are unique among them).
    pub fn named(&self, name: &str) -> Option<LocalIdentity> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|i| i.identity().name() == name)
            .cloned()
    }

    /// Their identity CIDs.
    pub fn cids(&self) -> Vec<Cid> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(LocalIdentity::cid)
            .collect()
    }

    /// Their documents, encoded; for one whose keys were rotated, every document from its
    /// first, in order, so that a peer checks each against the one before.
    pub fn documents(&self) -> Vec<Vec<u8>> {
        let hosted = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut documents = Vec::new();
        for identity in hosted.iter() {
            let mut chain: Vec<Vec<u8>> = identity
                .identity()
                .key_states()
                .filter_map(|state| dta_protocol::dagcbor::encode(state.document()).ok())
                .collect();
            chain.reverse();
            documents.extend(chain);
        }
        documents
    }
}
