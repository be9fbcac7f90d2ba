//! Rotating a stopped node's identity keys.
//!
//! A rotation makes a fresh seed and a document of its keys that succeeds the current one
//! (`LocalIdentity::rotate`: the old keys endorse it). The identity keeps its CID, so every
//! order, record and keystore name stays valid: shares are wrapped by the keystore under
//! names of the order (principal and reference), not under the holder's keys, so none needs
//! wrapping again. The one secret that does is the old seed: it is wrapped again under
//! `retired-identity-seed/DOCUMENT_CID`, and the node opens with it envelopes that peers
//! sealed to the old keys before they heard of the new ones; it signs nothing. One synced
//! batch writes the new seed, the new document and the retired seed, so a crash leaves
//! either the old identity or the new one.
//!
//! What it does not do: reopen a rotated identity (`home::open` does, with every document and
//! retired seed), rotate a running node (the database lock refuses it; stop it first) or an
//! identity the node hosts (the running node does that, `dta_actors::hosting`), or tell peers (the node does when it starts: it serves its
//! documents, oldest first, to every peer that connects).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use dta_actors::store::Column;
use dta_crypto::Secret;
use dta_protocol::identity::IdentityDocument;
use serde::Serialize;

use dta_actors::hosting::retired_seed_name;

use crate::home::{HomeError, IDENTITY_SEED, OWN_IDENTITY};

/// What a rotation did.
#[derive(Debug, Clone, Serialize)]
pub struct Rotated {
    /// The identity (unchanged).
    pub identity: String,
    /// The new document's CID.
    pub document: String,
    /// The replaced document's CID.
    pub previous: String,
    /// The rotation's number (1 for the first).
    pub rotation: u64,
}

/// Rotates the identity keys of the stopped node at `home`.
pub fn rotate(home: &Path) -> Result<Rotated, HomeError> {
    let opened = crate::home::open(home)?;
    let (store, keystore) = (&opened.store, &opened.keystore);
    let current = &opened.identity;
    let damaged = |message: &str| HomeError::Damaged {
        path: home.join("db").display().to_string(),
        message: message.to_owned(),
    };
    let blob = store
        .get(Column::Keystore, IDENTITY_SEED.as_bytes())?
        .ok_or_else(|| damaged("the identity seed is missing"))?;
    let old_seed = keystore.unwrap(IDENTITY_SEED, &blob)?;
    let seed = Secret::<32>::random();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let rotated = current.rotate(&seed, now)?;
    let encode = |document: &IdentityDocument| {
        dta_protocol::dagcbor::encode(document).map_err(|e| HomeError::Identity(e.into()))
    };
    let previous = current.identity().document_cid();
    let document = rotated.identity().document_cid();
    let new_document = encode(rotated.identity().document())?;
    let retired = retired_seed_name(&previous);
    store.write_durable(vec![
        (
            Column::Identities,
            previous.to_bytes(),
            encode(current.identity().document())?,
        ),
        (
            Column::Identities,
            document.to_bytes(),
            new_document.clone(),
        ),
        (
            Column::Keystore,
            retired.as_bytes().to_vec(),
            keystore.wrap(&retired, &old_seed)?,
        ),
        (
            Column::Keystore,
            IDENTITY_SEED.as_bytes().to_vec(),
            keystore.wrap(IDENTITY_SEED, seed.expose())?,
        ),
        (Column::Metadata, OWN_IDENTITY.to_vec(), new_document),
    ])?;
    store.flush()?;
    Ok(Rotated {
        identity: rotated.cid().to_string(),
        document: document.to_string(),
        previous: previous.to_string(),
        rotation: rotated.identity().sequence(),
    })
}
