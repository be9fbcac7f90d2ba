//! An order's log as a chain: the audit of a chain ending at a head (through
//! `crate::log`), fetching a chain's blocks from peers, and keeping a verified block for
//! audits. It changes no record.

use dta_protocol::Cid;
use dta_protocol::envelope::{Kind, SignedEnvelope};
use dta_protocol::identity::IdentityDocument;
use dta_protocol::network::{HeadAnnouncement, Response};

use crate::network::NetworkHandle;
use crate::role::Role;
use crate::store::{Column, Store};

use crate::context::{CustodyError, RoleContext, internal};

/// Audits an order's log ending at `head` with the blocks in `store` and the identities in
/// `directory` (fetch missing blocks first with [`fetch_chain`]). A sender the directory does
/// not know may still be an identity document kept as a block (one imported with the log's
/// archive): it is verified (PoP and self-signature) before the audit relies on it.
pub fn audit(
    store: &Store,
    directory: &crate::identities::Directory,
    reference: &str,
    head: Cid,
) -> Result<dta_protocol::audit::AuditReport, dta_protocol::audit::AuditError> {
    // The votes this node's records of the order keep (a fiduciary's or the principal's).
    let votes: Vec<Cid> = super::record::stored_records(store)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.reference == reference)
        .flat_map(|r| r.votes)
        .collect();
    dta_protocol::audit::audit(
        reference,
        head,
        &votes,
        |cid| store.block(cid).ok().flatten(),
        |cid| match directory.identities.get(&cid.to_string()) {
            Some(known) => Some(known.verified.clone()),
            None => store
                .block(cid)
                .ok()
                .flatten()
                .and_then(|bytes| IdentityDocument::decode_verified(&bytes).ok())
                .filter(|identity| identity.cid() == *cid),
        },
    )
}

/// Fetches the blocks of a chain that are not here, walking `prev` links back from `head` and
/// asking connected peers over Bitswap, and the votes (and refused shares) its receipts and
/// its commitments of moves of custody name (an order with a release policy). Every fetched block is checked against its CID before it is stored.
/// Returns how many blocks were fetched.
pub async fn fetch_chain(
    store: &Store,
    network: &NetworkHandle,
    head: Cid,
) -> Result<usize, CustodyError> {
    let mut fetched = 0;
    let mut next = Some(head);
    let mut steps = 0;
    while let Some(cid) = next {
        steps += 1;
        if steps > dta_protocol::audit::MAX_CHAIN {
            return Err(CustodyError::Invalid("chain too long".into()));
        }
        let bytes = match store
            .get(Column::Blocks, &cid.to_bytes())
            .map_err(internal)?
        {
            Some(bytes) => bytes,
            None => {
                let bytes = network
                    .fetch_block(cid)
                    .await
                    .map_err(|e| CustodyError::NotFound(e.to_string()))?;
                keep_fetched(store, cid, bytes.clone()).await?;
                fetched += 1;
                bytes
            }
        };
        let signed = SignedEnvelope::decode(&bytes)
            .map_err(|e| CustodyError::Invalid(format!("block {cid}: {e}")))?;
        fetched += fetch_named_votes(store, network, &signed).await?;
        next = signed.envelope.prev;
    }
    Ok(fetched)
}

/// Stages an envelope that passed verification, for audits and later steps; it is written
/// with the step's record, or by the next [`RoleContext::commit`].
pub async fn keep_block(ctx: &RoleContext, bytes: &[u8]) -> Result<Cid, CustodyError> {
    let cid = dta_protocol::block::cid_of(dta_protocol::block::DAG_CBOR, bytes);
    ctx.stage(Column::Blocks, cid.to_bytes(), bytes.to_vec());
    Ok(cid)
}

/// The votes a receipt (and the shares it refused and the answers of fiduciaries that
/// equivocated, its evidence), the commitment of a move of
/// custody, or the abort of a key generation (its complaint) names that are not here, fetched
/// and kept (unchecked: the audit checks them). Any other envelope, or one that does not
/// decode, names nothing to fetch.
async fn fetch_named_votes(
    store: &Store,
    network: &NetworkHandle,
    signed: &SignedEnvelope,
) -> Result<usize, CustodyError> {
    let limits = dta_protocol::dagcbor::Limits::default;
    let public: &[u8] = signed.envelope.public.as_ref().map_or(&[][..], |p| &p[..]);
    let named: Vec<Cid> = match signed.envelope.kind {
        Kind::Receipt => {
            dta_protocol::dagcbor::decode::<dta_protocol::order::Receipt>(public, limits())
                .map(|receipt| {
                    let refused = receipt.refused.iter().map(|refused| refused.share);
                    let equivocated = receipt
                        .equivocations
                        .iter()
                        .flat_map(|pair| [pair.first, pair.second]);
                    receipt
                        .votes
                        .iter()
                        .copied()
                        .chain(refused)
                        .chain(equivocated)
                        .collect()
                })
                .unwrap_or_default()
        }
        Kind::Commitment => {
            dta_protocol::dagcbor::decode::<dta_protocol::order::Commitment>(public, limits())
                .ok()
                .and_then(|commitment| commitment.reshared)
                .map(|reshared| reshared.votes)
                .unwrap_or_default()
        }
        Kind::DkgAbort => {
            dta_protocol::dagcbor::decode::<dta_protocol::dkg::DkgAbort>(public, limits())
                .map(|abort| vec![abort.complaint])
                .unwrap_or_default()
        }
        _ => Vec::new(),
    };
    let mut fetched = 0;
    for cid in named.into_iter().take(dta_protocol::audit::MAX_CHAIN) {
        if store.block(&cid).map_err(internal)?.is_some() {
            continue;
        }
        let bytes = network
            .fetch_block(cid)
            .await
            .map_err(|e| CustodyError::NotFound(format!("vote {cid}: {e}")))?;
        keep_fetched(store, cid, bytes).await?;
        fetched += 1;
    }
    Ok(fetched)
}

/// Stores a fetched block (Bitswap checked it against its CID), off the async workers.
async fn keep_fetched(store: &Store, cid: Cid, bytes: Vec<u8>) -> Result<(), CustodyError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.put_durable(Column::Blocks, &cid.to_bytes(), &bytes))
        .await
        .map_err(internal)?
        .map_err(internal)
}

/// Principal: the answer to a peer's [`Request::Head`]: where the log of `principal`'s order
/// `reference` ends on this node (nothing when this node has no such order as its principal).
///
/// [`Request::Head`]: dta_protocol::network::Request::Head
pub fn head_answer(ctx: &RoleContext, principal: &Cid, reference: &str) -> Response {
    let heads = ctx
        .record(Role::Principal, principal, reference)
        .ok()
        .flatten()
        .map(|record| HeadAnnouncement {
            reference: reference.to_owned(),
            head: record.head,
        })
        .into_iter()
        .collect();
    Response::Heads { heads }
}
