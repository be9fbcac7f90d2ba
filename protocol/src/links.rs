//! Links between blocks: the CIDs a DAG-CBOR block links to (tag 42), and every block
//! reachable from a root by following them, as a recursive IPFS pin or `ipfs dag export`
//! follows them.
//!
//! An envelope links to its `prev` envelope, its sender's identity document and its
//! recipients' identity documents, so the blocks reachable from an order's head are its main
//! chain and the identities that signed it or can open it. Envelopes that hang off the chain
//! (deals, commitment signatures, key shares, share releases) link back to it, never the
//! other way, so no walk from the head finds them: whoever holds them has to add them.
//!
//! It fetches and stores nothing: the caller hands in a lookup.

use std::collections::{BTreeSet, VecDeque};

use cid::Cid;
use ipld_core::ipld::Ipld;

use crate::block::{Block, DAG_CBOR};
use crate::dagcbor::{self, DecodeError, Limits};

/// Most blocks one walk collects (as many as one CAR archive may hold).
pub const MAX_REACHABLE: usize = crate::car::MAX_BLOCKS;

/// Why the blocks reachable from a root could not all be collected.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum WalkError {
    /// A linked block is not available.
    #[error("block {0} is missing")]
    Missing(String),
    /// A block does not match its CID or is not canonical DAG-CBOR.
    #[error("block {cid} is invalid: {reason}")]
    Invalid {
        /// The block.
        cid: String,
        /// Why.
        reason: String,
    },
    /// More than [`MAX_REACHABLE`] blocks.
    #[error("more than {MAX_REACHABLE} blocks are reachable")]
    TooMany,
}

/// The CIDs a block links to, in the order they appear. Only DAG-CBOR blocks have links here;
/// raw and DAG-PB blocks are leaves.
pub fn links(cid: &Cid, bytes: &[u8]) -> Result<Vec<Cid>, DecodeError> {
    if cid.codec() != DAG_CBOR {
        return Ok(Vec::new());
    }
    let document: Ipld = dagcbor::decode(bytes, Limits::default())?;
    let mut found = Vec::new();
    let mut pending = vec![&document];
    while let Some(node) = pending.pop() {
        match node {
            Ipld::Link(link) => found.push(*link),
            Ipld::List(items) => pending.extend(items.iter().rev()),
            Ipld::Map(entries) => pending.extend(entries.values().rev()),
            _ => {}
        }
    }
    Ok(found)
}

/// Every block reachable from `root`, root first, then breadth-first; each checked against
/// its CID.
pub fn reachable(
    root: Cid,
    mut block: impl FnMut(&Cid) -> Option<Vec<u8>>,
) -> Result<Vec<(Cid, Vec<u8>)>, WalkError> {
    let mut seen = BTreeSet::from([root]);
    let mut queue = VecDeque::from([root]);
    let mut out = Vec::new();
    while let Some(cid) = queue.pop_front() {
        if out.len() == MAX_REACHABLE {
            return Err(WalkError::TooMany);
        }
        let invalid = |reason: String| WalkError::Invalid {
            cid: cid.to_string(),
            reason,
        };
        let bytes = block(&cid).ok_or_else(|| WalkError::Missing(cid.to_string()))?;
        let checked =
            Block::verified(cid, bytes, Limits::default()).map_err(|e| invalid(e.to_string()))?;
        for link in links(&cid, checked.bytes()).map_err(|e| invalid(e.to_string()))? {
            if seen.insert(link) {
                queue.push_back(link);
            }
        }
        out.push((cid, checked.into_bytes()));
    }
    Ok(out)
}

#[cfg(test)]
#[path = "links_tests.rs"]
mod tests;
