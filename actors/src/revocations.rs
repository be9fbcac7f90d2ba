//! Revocations this node holds, kept in the store (metadata column, `revocation/CID`, one per
//! revoked identity), so that a node started again still refuses what it refused before and
//! serves them to the peers that connect.
//!
//! What it does not do: check a revocation (the identity directory does, before it keeps
//! one) or act on it (the role steps read the directory).

use dta_protocol::Cid;

use crate::store::{Column, Store, StoreError};

/// Key prefix of the entries in the metadata column.
const PREFIX: &[u8] = b"revocation/";

/// Most revocations a node serves to a peer that connects; older ones still count here.
pub const MAX_SERVED: usize = 1024;

/// Where the revocation of `identity` is kept.
pub fn key(identity: &Cid) -> Vec<u8> {
    [PREFIX, &identity.to_bytes()].concat()
}

/// Every revocation kept, as its bytes (verified when it was kept; the directory verifies
/// them again when it starts).
pub fn stored(store: &Store) -> Result<Vec<Vec<u8>>, StoreError> {
    Ok(store
        .scan(Column::Metadata)?
        .into_iter()
        .filter(|(key, _)| key.starts_with(PREFIX))
        .map(|(_, value)| value)
        .collect())
}
