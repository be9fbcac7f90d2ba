//! Custody batches: many orders certified by one signature of each fiduciary.
//!
//! A principal with several orders on their way to the same fiduciaries lists their
//! commitments in a [`CustodyBatch`]. Each fiduciary that holds every listed share signs once,
//! over the Merkle root of the commitments ([`batch_message`]), instead of once per order; the
//! principal aggregates the signatures once per batch. Each order's certificate is then that
//! aggregate plus the order's [`Inclusion`] proof, which any verifier turns back into the root
//! from the order's own commitment. A batch of one is no batch: its fiduciaries sign the
//! commitment itself ([`crate::order::custody_message`]), as certificates always did.
//!
//! The tree is RFC 9162's (Certificate Transparency 2.0): SHA-256, leaves and inner nodes
//! hashed under different prefixes, the left subtree the largest power of two below the
//! size. This module builds and checks trees and proofs; it decides nothing about which
//! orders go together (the principal does) or whether a fiduciary may sign (the fiduciary
//! does).

use cid::Cid;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};

/// What fiduciaries sign to certify every commitment of a batch: this prefix, then the root.
pub const BATCH_CONTEXT: &[u8] = b"dta/custody-batch/v1\0";
/// Most orders in one batch. Past a few dozen a batch saves almost nothing more, while a
/// refusal by one fiduciary sends every order of it the long way (one signature each).
pub const MAX_BATCH: usize = 256;
/// Length of a tree hash.
pub const HASH_LEN: usize = 32;

/// A tree hash.
pub type Hash = [u8; HASH_LEN];

/// One order of a batch: its reference and its commitment, the leaf.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct BatchLeaf {
    /// The order's reference.
    pub order: String,
    /// The order's commitment block.
    pub commitment: Cid,
}

/// A principal's list of the orders a batch certifies, in leaf order (the public payload of
/// a [`crate::envelope::Kind::CustodyBatch`] envelope).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct CustodyBatch {
    /// The orders, at least two and at most [`MAX_BATCH`].
    pub leaves: Vec<BatchLeaf>,
}

/// The root a fiduciary's [`crate::envelope::Kind::BatchSignature`] signs.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct BatchRoot {
    /// The tree's root, [`HASH_LEN`] bytes.
    pub root: ByteBuf,
}

impl BatchRoot {
    /// The payload naming `root`.
    pub fn new(root: &Hash) -> Self {
        Self {
            root: ByteBuf::from(root.to_vec()),
        }
    }

    /// The root, if it has the right length.
    pub fn hash(&self) -> Option<Hash> {
        self.root.as_slice().try_into().ok()
    }
}

/// Where one commitment sits in a batch: enough to rebuild the root from the commitment.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Inclusion {
    /// The leaf's position, from 0.
    pub index: u32,
    /// How many leaves the batch has.
    pub leaves: u32,
    /// The sibling hashes from the leaf up to the root.
    pub path: Vec<ByteBuf>,
}

/// Why a batch or a proof does not hold.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum BatchError {
    /// Fewer than two leaves or more than [`MAX_BATCH`].
    #[error("a batch has from 2 to {MAX_BATCH} orders, not {0}")]
    Size(usize),
    /// The same commitment twice.
    #[error("commitment {0} is listed twice")]
    Repeated(String),
    /// The proof's shape does not fit its batch size.
    #[error("inclusion proof of leaf {index} of {leaves} is malformed")]
    Proof {
        /// The leaf it claims.
        index: u32,
        /// The batch size it claims.
        leaves: u32,
    },
}

impl CustodyBatch {
    /// Checks the size and that no commitment is listed twice.
    pub fn check(&self) -> Result<(), BatchError> {
        check_size(self.leaves.len())?;
        let mut seen = std::collections::BTreeSet::new();
        for leaf in &self.leaves {
            if !seen.insert(leaf.commitment) {
                return Err(BatchError::Repeated(leaf.commitment.to_string()));
            }
        }
        Ok(())
    }

    /// The commitments, in leaf order.
    pub fn commitments(&self) -> Vec<Cid> {
        self.leaves.iter().map(|l| l.commitment).collect()
    }
}

fn check_size(leaves: usize) -> Result<(), BatchError> {
    if (2..=MAX_BATCH).contains(&leaves) {
        Ok(())
    } else {
        Err(BatchError::Size(leaves))
    }
}

/// A batch's tree over its commitments.
#[derive(Clone, Debug)]
pub struct BatchTree {
    leaves: Vec<Hash>,
    root: Hash,
}

impl BatchTree {
    /// The tree over `commitments`, in this order.
    pub fn new(commitments: &[Cid]) -> Result<Self, BatchError> {
        check_size(commitments.len())?;
        let leaves: Vec<Hash> = commitments.iter().map(leaf_hash).collect();
        let root = subtree_root(&leaves);
        Ok(Self { leaves, root })
    }

    /// The root.
    pub fn root(&self) -> Hash {
        self.root
    }

    /// What fiduciaries sign for this batch.
    pub fn message(&self) -> Vec<u8> {
        batch_message(&self.root)
    }

    /// How many leaves.
    pub fn len(&self) -> usize {
        self.leaves.len()
    }

    /// Never: a batch has at least two leaves.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// The inclusion proof of leaf `index`, if there is such a leaf.
    pub fn inclusion(&self, index: usize) -> Option<Inclusion> {
        if index >= self.leaves.len() {
            return None;
        }
        let mut path = Vec::new();
        audit_path(index, &self.leaves, &mut path);
        Some(Inclusion {
            index: u32::try_from(index).ok()?,
            leaves: u32::try_from(self.leaves.len()).ok()?,
            path: path
                .into_iter()
                .map(|h| ByteBuf::from(h.to_vec()))
                .collect(),
        })
    }
}

impl Inclusion {
    /// The root this proof leads to from `commitment` (RFC 9162, section 2.1.3.2).
    pub fn root(&self, commitment: &Cid) -> Result<Hash, BatchError> {
        let malformed = || BatchError::Proof {
            index: self.index,
            leaves: self.leaves,
        };
        check_size(self.leaves as usize).map_err(|_| malformed())?;
        if self.index >= self.leaves {
            return Err(malformed());
        }
        let mut node = self.index;
        let mut last = self.leaves - 1;
        let mut hash = leaf_hash(commitment);
        for sibling in &self.path {
            let sibling: &Hash = sibling.as_slice().try_into().map_err(|_| malformed())?;
            if last == 0 {
                return Err(malformed());
            }
            if node & 1 == 1 || node == last {
                hash = node_hash(sibling, &hash);
                while node & 1 == 0 && node != 0 {
                    node >>= 1;
                    last >>= 1;
                }
            } else {
                hash = node_hash(&hash, sibling);
            }
            node >>= 1;
            last >>= 1;
        }
        if last != 0 {
            return Err(malformed());
        }
        Ok(hash)
    }
}

/// The bytes fiduciaries sign to certify every commitment under `root`.
pub fn batch_message(root: &Hash) -> Vec<u8> {
    let mut message = BATCH_CONTEXT.to_vec();
    message.extend_from_slice(root);
    message
}

fn leaf_hash(commitment: &Cid) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(commitment.to_bytes());
    hasher.finalize().into()
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The largest power of two below `n` (n ≥ 2): where the tree splits.
fn split(n: usize) -> usize {
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

fn subtree_root(leaves: &[Hash]) -> Hash {
    match leaves {
        [leaf] => *leaf,
        _ => {
            let k = split(leaves.len());
            node_hash(&subtree_root(&leaves[..k]), &subtree_root(&leaves[k..]))
        }
    }
}

fn audit_path(index: usize, leaves: &[Hash], path: &mut Vec<Hash>) {
    if leaves.len() <= 1 {
        return;
    }
    let k = split(leaves.len());
    if index < k {
        audit_path(index, &leaves[..k], path);
        path.push(subtree_root(&leaves[k..]));
    } else {
        audit_path(index - k, &leaves[k..], path);
        path.push(subtree_root(&leaves[..k]));
    }
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
