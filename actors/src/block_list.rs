//! The operator's block list, kept in the store (metadata column, `blocked/PEER_ID`), so that
//! a peer blocked stays blocked when the node starts again: the network actor blocks every
//! peer listed here before it listens.
//!
//! What it does not do: block anything by itself (the swarm's block-list behaviour does, on
//! `NetworkCommand::Block`) or judge peers.

use std::collections::BTreeSet;

use libp2p::PeerId;

use crate::store::{Column, Store, StoreError};

/// Key prefix of the entries in the metadata column.
const PREFIX: &[u8] = b"blocked/";

/// Lists `peer` as blocked, synced: the operator is told it is blocked only once a restart
/// cannot forget it.
pub fn add(store: &Store, peer: PeerId) -> Result<(), StoreError> {
    store.put_durable(Column::Metadata, &key(&peer), &[])
}

/// Takes `peer` off the list, synced.
pub fn remove(store: &Store, peer: PeerId) -> Result<(), StoreError> {
    store.delete_durable(Column::Metadata, &key(&peer))
}

/// Every peer listed. A key that is no peer id is skipped.
pub fn peers(store: &Store) -> Result<BTreeSet<PeerId>, StoreError> {
    Ok(store
        .scan(Column::Metadata)?
        .into_iter()
        .filter_map(|(key, _)| PeerId::from_bytes(key.strip_prefix(PREFIX)?).ok())
        .collect())
}

fn key(peer: &PeerId) -> Vec<u8> {
    [PREFIX, &peer.to_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_outlives_the_store_being_opened_again() {
        let dir = tempfile::tempdir().unwrap();
        let (kept, dropped) = (PeerId::random(), PeerId::random());
        {
            let store = Store::open(dir.path()).unwrap();
            add(&store, kept).unwrap();
            add(&store, dropped).unwrap();
            add(&store, kept).unwrap();
            remove(&store, dropped).unwrap();
            // The peer book's entries share the column and are no blocked peers.
            crate::peer_book::remember(&store, PeerId::random(), &[]).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(peers(&store).unwrap(), BTreeSet::from([kept]));
    }
}
