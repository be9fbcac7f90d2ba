//! The addresses of the dta peers this node has met, kept in the store (metadata column,
//! `peer/PEER_ID`) so that a node started again dials them by itself: without them a node
//! whose bootstrap peers are down, or that had none, stays alone until someone dials it.
//!
//! It keeps what identify said (a peer's listen addresses) and when; it does not judge
//! addresses, and a stale one only costs a failed dial.

use std::time::{SystemTime, UNIX_EPOCH};

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use crate::store::{Column, Store, StoreError};

/// Key prefix of the entries in the metadata column.
const PREFIX: &[u8] = b"peer/";
/// Most addresses kept for one peer.
pub const MAX_ADDRESSES: usize = 8;
/// Most peers dialled at start: the most recently met.
pub const MAX_REDIALS: usize = 32;

/// One stored entry.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    /// When the peer was last met, in seconds since the epoch.
    seen: u64,
    /// Its listen addresses, as text.
    addresses: Vec<String>,
}

/// Remembers a peer's listen addresses (at most [`MAX_ADDRESSES`]), without waiting for the
/// disk: they are a hint, and the next synced write makes them durable.
pub fn remember(store: &Store, peer: PeerId, addresses: &[Multiaddr]) -> Result<(), StoreError> {
    let entry = Entry {
        seen: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        addresses: addresses
            .iter()
            .take(MAX_ADDRESSES)
            .map(ToString::to_string)
            .collect(),
    };
    let Ok(value) = dta_protocol::dagcbor::encode(&entry) else {
        return Ok(());
    };
    store.write_buffered(vec![(Column::Metadata, key(&peer), value)])
}

/// The `limit` peers met most recently, newest first, with their addresses. Entries that no
/// longer decode are skipped.
pub fn recent(store: &Store, limit: usize) -> Result<Vec<(PeerId, Vec<Multiaddr>)>, StoreError> {
    let mut known: Vec<(u64, PeerId, Vec<Multiaddr>)> = store
        .scan(Column::Metadata)?
        .into_iter()
        .filter_map(|(key, value)| {
            let peer = PeerId::from_bytes(key.strip_prefix(PREFIX)?).ok()?;
            let entry: Entry = dta_protocol::dagcbor::decode_lenient(
                &value,
                dta_protocol::dagcbor::Limits::default(),
            )
            .ok()?;
            let addresses = entry
                .addresses
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect();
            Some((entry.seen, peer, addresses))
        })
        .collect();
    known.sort_by_key(|(seen, _, _)| std::cmp::Reverse(*seen));
    Ok(known
        .into_iter()
        .take(limit)
        .map(|(_, peer, addresses)| (peer, addresses))
        .collect())
}

fn key(peer: &PeerId) -> Vec<u8> {
    [PREFIX, &peer.to_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_come_back_newest_first_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        for (i, peer) in peers.iter().enumerate() {
            let address: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", 7000 + i).parse().unwrap();
            remember(&store, *peer, &vec![address; MAX_ADDRESSES + 2]).unwrap();
        }
        // Entries of the same second keep some order; only the bound and contents matter.
        let recent = recent(&store, 2).unwrap();
        assert_eq!(recent.len(), 2);
        for (peer, addresses) in &recent {
            assert!(peers.contains(peer));
            assert_eq!(addresses.len(), MAX_ADDRESSES);
        }
        // Another metadata entry is no peer.
        store
            .write_buffered(vec![(Column::Metadata, b"format".to_vec(), b"1".to_vec())])
            .unwrap();
        assert_eq!(super::recent(&store, 10).unwrap().len(), 3);
    }
}
