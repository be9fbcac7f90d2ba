//! Audit of a whole order from a CAR archive alone: no node, no store, no network, no
//! identity directory. Everything the audit trusts comes from the archive's own blocks.
//!
//! [`car::read`](crate::car::read) has already checked every block against its CID. This
//! sorts the blocks into identity documents and envelopes (anything else is refused),
//! verifies every identity document (proof of possession and self-signature), runs the
//! chain audit of [`crate::audit`] from the head with those identities (links, signatures,
//! certificate, releases, receipts), and then verifies every envelope that hangs off the
//! chain (deals, commitment signatures, key shares, share releases): same order, a sender
//! whose identity is in the archive, a good signature, and a `prev` that leads into the log.
//!
//! It opens nothing sealed: an auditor holds no keys.

use std::collections::{BTreeMap, BTreeSet};

use cid::Cid;

use crate::audit::{self, AuditError, AuditReport};
use crate::block::{Block, DAG_CBOR};
use crate::car::Car;
use crate::envelope::{Kind, SignedEnvelope};
use crate::identity::{IdentityDocument, VerifiedIdentity};

/// Why an archive does not hold a valid order.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum ArchiveError {
    /// No head was given and the archive does not name exactly one root.
    #[error("the archive names {0} roots: give the head")]
    NoHead(usize),
    /// The head is not an envelope in the archive.
    #[error("head {0} is not an envelope in the archive")]
    HeadMissing(String),
    /// The head belongs to another order than the one asked for.
    #[error("head {head} belongs to order {found}, not {expected}")]
    OtherOrder {
        /// The head.
        head: String,
        /// Its order.
        found: String,
        /// The order asked for.
        expected: String,
    },
    /// An identity document in the archive does not verify.
    #[error("identity {cid} does not verify: {reason}")]
    Identity {
        /// The document's block.
        cid: String,
        /// Why.
        reason: String,
    },
    /// A block that is neither an identity document nor an envelope of the order's log.
    #[error("block {cid} is not part of the order's log: {reason}")]
    Stray {
        /// The block.
        cid: String,
        /// Why.
        reason: String,
    },
    /// The chain from the head, or an envelope hanging off it, does not hold.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// What an archive audit checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveReport {
    /// The order.
    pub reference: String,
    /// Where the chain audit started.
    pub head: Cid,
    /// Blocks in the archive.
    pub blocks: usize,
    /// Identity documents verified (proof of possession and self-signature each).
    pub identities: usize,
    /// The chain audit from the head.
    pub chain: AuditReport,
    /// Envelopes hanging off the chain, verified one by one.
    pub attached: Vec<(Cid, Kind)>,
}

impl ArchiveReport {
    /// Envelope signatures verified: the chain's and the attached envelopes'.
    pub fn signatures(&self) -> usize {
        self.chain.envelopes.len() + self.attached.len()
    }
}

/// A block sorted by what it decodes as.
enum Sorted {
    Identity(Box<VerifiedIdentity>),
    /// A rotated document, checked once the document it replaces is.
    Rotation(Box<IdentityDocument>),
    Envelope(Box<SignedEnvelope>),
}

fn sort(cid: &Cid, bytes: &[u8]) -> Result<Sorted, ArchiveError> {
    let stray = |reason: &str| ArchiveError::Stray {
        cid: cid.to_string(),
        reason: reason.to_owned(),
    };
    if cid.codec() != DAG_CBOR {
        return Err(stray("not a DAG-CBOR block"));
    }
    if let Ok(envelope) = SignedEnvelope::decode(bytes) {
        return Ok(Sorted::Envelope(Box::new(envelope)));
    }
    let bad_identity = |reason: String| ArchiveError::Identity {
        cid: cid.to_string(),
        reason,
    };
    let limits = crate::dagcbor::Limits {
        max_size: crate::identity::MAX_IDENTITY_SIZE,
        ..Default::default()
    };
    let document: IdentityDocument = crate::dagcbor::decode(bytes, limits)
        .map_err(|_| stray("neither an envelope nor an identity document"))?;
    if document.claims.succeeds.is_some() {
        if Block::encode(&document).map(|b| b.cid()).ok() != Some(*cid) {
            return Err(bad_identity(
                "the document is stored under another CID".into(),
            ));
        }
        return Ok(Sorted::Rotation(Box::new(document)));
    }
    let identity = document.verify().map_err(|e| bad_identity(e.to_string()))?;
    if identity.cid() != *cid {
        return Err(bad_identity(
            "the document is stored under another CID".into(),
        ));
    }
    Ok(Sorted::Identity(Box::new(identity)))
}

/// Checks each rotated document against the key state it replaces, which the archive must
/// hold, and keeps the identity in its newest state.
fn link_rotations(
    identities: &mut BTreeMap<Cid, VerifiedIdentity>,
    mut rotations: Vec<(Cid, IdentityDocument)>,
) -> Result<(), ArchiveError> {
    rotations.sort_by_key(|(cid, document)| {
        (document.claims.succeeds.as_ref().map(|s| s.sequence), *cid)
    });
    for (cid, document) in rotations {
        let bad = |reason: String| ArchiveError::Identity {
            cid: cid.to_string(),
            reason,
        };
        let Some(succession) = document.claims.succeeds.clone() else {
            continue;
        };
        let previous = identities
            .get(&succession.identity)
            .ok_or_else(|| bad("the identity it rotates is not in the archive".into()))?;
        let rotated = document
            .verify_successor(previous)
            .map_err(|e| bad(e.to_string()))?;
        identities.insert(succession.identity, rotated);
    }
    Ok(())
}

/// Audits the order whose head is `head` (by default the archive's only root), with nothing
/// but the archive's blocks. With `reference`, the head must belong to that order.
pub fn audit(
    archive: &Car,
    head: Option<Cid>,
    reference: Option<&str>,
) -> Result<ArchiveReport, ArchiveError> {
    let head = match (head, archive.roots.as_slice()) {
        (Some(head), _) => head,
        (None, [root]) => *root,
        (None, roots) => return Err(ArchiveError::NoHead(roots.len())),
    };
    let mut identities: BTreeMap<Cid, VerifiedIdentity> = BTreeMap::new();
    let mut envelopes: BTreeMap<Cid, SignedEnvelope> = BTreeMap::new();
    let mut bytes: BTreeMap<Cid, &[u8]> = BTreeMap::new();
    let mut rotations: Vec<(Cid, IdentityDocument)> = Vec::new();
    for (cid, data) in &archive.blocks {
        match sort(cid, data)? {
            Sorted::Identity(identity) => {
                identities.insert(*cid, *identity);
            }
            Sorted::Rotation(document) => rotations.push((*cid, *document)),
            Sorted::Envelope(envelope) => {
                envelopes.insert(*cid, *envelope);
            }
        }
        bytes.insert(*cid, data);
    }
    link_rotations(&mut identities, rotations)?;
    let order = envelopes
        .get(&head)
        .ok_or_else(|| ArchiveError::HeadMissing(head.to_string()))?
        .envelope
        .order
        .clone();
    if let Some(expected) = reference
        && expected != order
    {
        return Err(ArchiveError::OtherOrder {
            head: head.to_string(),
            found: order,
            expected: expected.to_owned(),
        });
    }
    // Every approval and veto of the order in the archive; the audit takes those of its
    // releases.
    let votes: Vec<Cid> = envelopes
        .iter()
        .filter(|(_, e)| {
            e.envelope.order == order && matches!(e.envelope.kind, Kind::Approval | Kind::Veto)
        })
        .map(|(cid, _)| *cid)
        .collect();
    let chain = audit::audit(
        &order,
        head,
        &votes,
        |cid| bytes.get(cid).map(|b| b.to_vec()),
        |cid| identities.get(cid).cloned(),
    )?;
    let attached = check_attached(&order, &chain, envelopes, &identities)?;
    Ok(ArchiveReport {
        reference: order,
        head,
        blocks: archive.blocks.len(),
        identities: identities.len(),
        chain,
        attached,
    })
}

/// Verifies every envelope not on the chain: each must hang, through `prev`, off an envelope
/// already accepted. Returns them in the order they were accepted.
fn check_attached(
    order: &str,
    chain: &AuditReport,
    envelopes: BTreeMap<Cid, SignedEnvelope>,
    identities: &BTreeMap<Cid, VerifiedIdentity>,
) -> Result<Vec<(Cid, Kind)>, ArchiveError> {
    let mut accepted: BTreeSet<Cid> = chain.envelopes.iter().map(|(cid, _)| *cid).collect();
    let mut waiting: BTreeMap<Cid, SignedEnvelope> = envelopes
        .into_iter()
        .filter(|(cid, _)| !accepted.contains(cid))
        .collect();
    let mut attached = Vec::new();
    loop {
        let ready: Vec<Cid> = waiting
            .iter()
            .filter(|(_, e)| e.envelope.prev.is_some_and(|p| accepted.contains(&p)))
            .map(|(cid, _)| *cid)
            .collect();
        if ready.is_empty() {
            break;
        }
        for cid in ready {
            let Some(signed) = waiting.remove(&cid) else {
                continue;
            };
            if signed.envelope.order != order {
                return Err(AuditError::WrongOrder(cid.to_string()).into());
            }
            let sender = identities.get(&signed.envelope.sender).ok_or_else(|| {
                AuditError::UnknownSender {
                    envelope: cid.to_string(),
                    sender: signed.envelope.sender.to_string(),
                }
            })?;
            let kind = signed.envelope.kind;
            signed.verify(sender).map_err(|e| AuditError::BadEnvelope {
                envelope: cid.to_string(),
                reason: e.to_string(),
            })?;
            accepted.insert(cid);
            attached.push((cid, kind));
        }
    }
    match waiting.into_iter().next() {
        Some((cid, _)) => Err(ArchiveError::Stray {
            cid: cid.to_string(),
            reason: "an envelope that does not lead back to the order's log".into(),
        }),
        None => Ok(attached),
    }
}

#[cfg(test)]
#[path = "archive_tests.rs"]
mod tests;
