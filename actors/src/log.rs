//! An order's log as this node keeps it, collected for export: every block reachable from
//! the head (the main chain and the identity documents its envelopes link to), then every
//! envelope kept here that hangs off that chain (deals, commitment signatures, key shares,
//! share releases link back to it, not the other way) with the identities they link to, and
//! last the documents of those identities' key rotations kept here (an envelope signed after a
//! rotation is checked with the rotated keys).
//!
//! It reads the store only: fetching missing blocks from peers is
//! [`crate::custody::fetch_chain`]'s job, and checking what was collected is the audit's
//! ([`dta_protocol::archive`]).

use std::collections::BTreeSet;

use dta_protocol::Cid;
use dta_protocol::block::DAG_CBOR;
use dta_protocol::envelope::{MAX_ENVELOPE_SIZE, SignedEnvelope};
use dta_protocol::links::{self, WalkError};

use crate::store::{Column, Store, StoreError};

/// Why an order's log could not be collected.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A block of the log is missing here, or damaged.
    #[error(transparent)]
    Walk(#[from] WalkError),
}

/// The blocks of the log ending at `head`, head first: what a recursive pin of the head
/// fetches, then the envelopes of the same order attached to it, each followed by the
/// identity documents it links to that were not collected yet.
pub fn collect(store: &Store, head: Cid) -> Result<Vec<(Cid, Vec<u8>)>, CollectError> {
    let mut read_error = None;
    let reachable = links::reachable(head, |cid| match store.block(cid) {
        Ok(found) => found,
        Err(err) => {
            read_error.get_or_insert(err);
            None
        }
    });
    if let Some(err) = read_error {
        return Err(err.into());
    }
    let mut collected = reachable?;
    let mut have: BTreeSet<Cid> = collected.iter().map(|(cid, _)| *cid).collect();
    let Some(order) = collected
        .first()
        .and_then(|(_, bytes)| SignedEnvelope::decode(bytes).ok())
        .map(|head| head.envelope.order)
    else {
        return Ok(collected);
    };
    for (cid, bytes) in attached(store, &order, &have)? {
        have.insert(cid);
        let linked = links::links(&cid, &bytes).map_err(|e| WalkError::Invalid {
            cid: cid.to_string(),
            reason: e.to_string(),
        })?;
        collected.push((cid, bytes));
        for link in linked {
            if have.insert(link) {
                let bytes = store
                    .block(&link)?
                    .ok_or_else(|| WalkError::Missing(link.to_string()))?;
                collected.push((link, bytes));
            }
        }
    }
    collected.extend(rotations(store, &have)?);
    Ok(collected)
}

/// The rotated documents kept here of the identities among `collected`, each after the one
/// it replaces.
fn rotations(store: &Store, collected: &BTreeSet<Cid>) -> Result<Vec<(Cid, Vec<u8>)>, StoreError> {
    let limits = dta_protocol::dagcbor::Limits {
        max_size: dta_protocol::identity::MAX_IDENTITY_SIZE,
        ..Default::default()
    };
    let mut rotated = Vec::new();
    store.visit(Column::Identities, |key, bytes| {
        let Ok(cid) = Cid::try_from(key) else {
            return;
        };
        let succession = dta_protocol::dagcbor::decode::<dta_protocol::identity::IdentityDocument>(
            bytes, limits,
        )
        .ok()
        .and_then(|document| document.claims.succeeds);
        if let Some(succession) = succession.filter(|s| collected.contains(&s.identity)) {
            rotated.push((succession.sequence, cid, bytes.to_vec()));
        }
    })?;
    rotated.sort_by_key(|(sequence, cid, _)| (*sequence, *cid));
    Ok(rotated
        .into_iter()
        .map(|(_, cid, bytes)| (cid, bytes))
        .collect())
}

/// The envelopes of `order` kept here whose `prev` leads, directly or through one another,
/// into `chain`; in the order they attach.
fn attached(
    store: &Store,
    order: &str,
    chain: &BTreeSet<Cid>,
) -> Result<Vec<(Cid, Vec<u8>)>, StoreError> {
    let mut candidates: Vec<(Cid, Cid, Vec<u8>)> = Vec::new();
    store.visit(Column::Blocks, |key, bytes| {
        let Ok(cid) = Cid::try_from(key) else {
            return;
        };
        if cid.codec() != DAG_CBOR || bytes.len() > MAX_ENVELOPE_SIZE || chain.contains(&cid) {
            return;
        }
        let Ok(envelope) = SignedEnvelope::decode(bytes) else {
            return;
        };
        if let (true, Some(prev)) = (envelope.envelope.order == order, envelope.envelope.prev) {
            candidates.push((cid, prev, bytes.to_vec()));
        }
    })?;
    let mut joined = chain.clone();
    let mut attached = Vec::new();
    loop {
        let (ready, waiting): (Vec<_>, Vec<_>) = candidates
            .into_iter()
            .partition(|(_, prev, _)| joined.contains(prev));
        if ready.is_empty() {
            return Ok(attached);
        }
        candidates = waiting;
        for (cid, _, bytes) in ready {
            joined.insert(cid);
            attached.push((cid, bytes));
        }
    }
}
