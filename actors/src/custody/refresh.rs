//! Dealing an order's shares anew, same key: to the same committee and threshold (a refresh,
//! so that shares an attacker collected before no longer combine with those after), or to
//! another committee and threshold, any overlap allowed (custody moves; a reshare).
//!
//! 1. The principal signs a request (the certificate in force, the next committee and
//!    threshold, the next epoch, the releases so far) and sends it to the committee in force.
//! 2. Each fiduciary of that committee deals its share to every fiduciary of the next one: a
//!    fresh polynomial of the next threshold's degree whose constant term is its share,
//!    Feldman commitments in public and one sub-share sealed to each recipient, all to the
//!    principal.
//! 3. Once t dealers' deals are complete (t the threshold in force) and their commitments start
//!    from their old public shares, the principal combines their commitments (Lagrange
//!    weights) into the new commitment, which names the old one, the request and every deal it
//!    counts. It sends each fiduciary of the next committee the order request, the old
//!    commitment, its deals, the request and the new commitment; each fiduciary that leaves
//!    gets the request and the new commitment.
//! 4. Each fiduciary of the next committee checks its sub-shares against their dealers'
//!    commitments, combines them into its new share, checks that the commitment is what the
//!    deals give, keeps the new share under the next epoch's name, deletes its old share (the
//!    principal has moved on to the new commitment, so the old share can serve no release) and
//!    signs the commitment; one that joins starts its record there, counting the releases
//!    before. Each that leaves deletes its share and retires. The signatures aggregate into the
//!    new certificate as for any commitment.
//!
//! A sub-share that fails draws its recipient's complaint instead, and the principal commits
//! again without the dealer it convicts (`super::exclusion`). Moving custody to another
//! committee or threshold is authorized like a release: under a release policy with
//! conditions, each dealer holds the request until the policy lets it go (approvals naming the
//! request, its delay, no veto), and the commitment names the votes. A refresh changes no
//! hands and is not held.
//!
//! A dealt secret's shares are BLS12-381 scalars (`dta_crypto::threshold::reshare`), a key
//! generated without a dealer's secp256k1 scalars (`dta_crypto::dkg::reshare`). What it does
//! not do yet: deal anew an n-of-n key added up from its shares. Until the new certificate is
//! in, the order has none: releases wait,
//! and a fiduciary of the next committee that stays down keeps them waiting (the new
//! certificate, like any, needs every fiduciary's signature).

use dta_crypto::threshold::{self, Commitments, Share};
use dta_crypto::{Secret, dkg};
use dta_protocol::Cid;
use dta_protocol::envelope::{Kind, SignedEnvelope, VerifiedEnvelope};
use dta_protocol::order::{Commitment, OrderRequest, Reshared, SecretBytes};
use dta_protocol::reshare::{
    OldShares, ReshareCheckError, ReshareCommitments, ReshareRequest, ReshareSubShare, ShareDeleted,
};
use serde_bytes::ByteBuf;

use crate::role::Role;
use crate::states::OrderState;
use crate::store::Column;

use super::fiduciary::{policy_gate, sign_commitment};
use super::principal::to_each;
use super::record::{DealerDeals, Gated, OrderRecord, Refresh, held_share_name};
use super::release::open_release;
use crate::context::{CustodyError, Delivery, RoleContext, encode, internal};

/// The shares `commitment` commits to, to deal anew; an n-of-n key added up has none.
pub(super) fn old_shares(commitment: &Commitment) -> Result<OldShares, CustodyError> {
    OldShares::of(commitment).map_err(refused)
}

/// A reshare check's error as this step's: an order that cannot be dealt anew is a conflict,
/// anything else bad input.
pub(super) fn refused(error: ReshareCheckError) -> CustodyError {
    match error {
        ReshareCheckError::AddedUp => CustodyError::Conflict(error.to_string()),
        _ => CustodyError::Invalid(error.to_string()),
    }
}

fn byte_bufs(items: Vec<Vec<u8>>) -> Vec<ByteBuf> {
    items.into_iter().map(ByteBuf::from).collect()
}

fn vecs(items: &[ByteBuf]) -> Vec<Vec<u8>> {
    items.iter().map(|b| b.to_vec()).collect()
}

/// 32 secret bytes, copied into zeroizing memory with no copy left on the stack.
fn secret_32(bytes: &[u8]) -> Option<Secret<32>> {
    if bytes.len() != 32 {
        return None;
    }
    let mut secret = Secret::<32>::zero();
    secret.expose_mut().copy_from_slice(bytes);
    Some(secret)
}

fn u16_of(value: u32) -> Result<u16, CustodyError> {
    u16::try_from(value).map_err(|_| CustodyError::Invalid(format!("{value} is too large")))
}

/// Principal: the orders whose proactive refresh is due (`refresh_every_ms` in their record):
/// certified, no release or refresh under way, and their certificate at least that old by its
/// envelope's timestamp.
pub fn due(ctx: &RoleContext) -> Result<Vec<String>, CustodyError> {
    let now = crate::context::now_millis();
    let mut due = Vec::new();
    for record in ctx.records_needing(crate::attention::Need::Refresh)? {
        let (Role::Principal, Some(every), Some(certificate)) =
            (record.role, record.refresh_every_ms, record.certificate)
        else {
            continue;
        };
        if !matches!(record.state, OrderState::Certified | OrderState::Released)
            || open_release(ctx, &record)?.is_some()
        {
            continue;
        }
        let certified_at = ctx.verified_block(&certificate)?.envelope().timestamp;
        if now >= certified_at.saturating_add(every) {
            due.push(record.reference);
        }
    }
    Ok(due)
}

/// Principal: asks the order's committee to deal its shares anew, to itself under its own
/// threshold (a refresh, `next` none) or to the committee and threshold `next` names; the
/// record and the request's deliveries to the dealers.
pub async fn create_reshare(
    ctx: &RoleContext,
    reference: &str,
    next: Option<(Vec<Cid>, u32)>,
) -> Result<(OrderRecord, Vec<Delivery>), CustodyError> {
    let mut record = ctx.principal_record(reference)?;
    if record.state == OrderState::Refreshing
        && let Some(refresh) = &record.refresh
    {
        // Asked again before enough holders dealt: the same request goes out again.
        let deliveries = to_every_fiduciary(ctx, &record, refresh.request)?;
        return Ok((record, deliveries));
    }
    let certificate = match (record.state, record.certificate) {
        (OrderState::Certified | OrderState::Released, Some(certificate)) => certificate,
        _ => {
            return Err(CustodyError::Conflict(format!(
                "order {reference} is {}: only a certified order with no release under way \
                 can be refreshed",
                record.state
            )));
        }
    };
    if open_release(ctx, &record)?.is_some() {
        return Err(CustodyError::Conflict(format!(
            "order {reference} has a release under way"
        )));
    }
    let order: OrderRequest = ctx.stored_payload(&record.order)?;
    super::principal::order_plugin(&order)?
        .check_release()
        .map_err(CustodyError::from)?;
    if let Some(expired) = order.policy.expired(crate::context::now_millis()) {
        return Err(CustodyError::Conflict(format!(
            "order {reference} cannot be dealt anew: {expired}"
        )));
    }
    let commitment = ctx.committed(&record)?;
    old_shares(&commitment)?;
    let (fiduciaries, threshold) =
        next.unwrap_or_else(|| (record.fiduciaries.clone(), record.threshold));
    check_committee(ctx, &order, &fiduciaries, threshold)?;
    let request = ReshareRequest {
        order: record.order,
        certificate,
        fiduciaries,
        threshold,
        epoch: record.epoch + 1,
        releases: record.releases_served(),
    };
    let (cid, _) = ctx
        .publish(Kind::ReshareRequest, reference, Some(record.head), &request)
        .await?;
    record.refresh = Some(Refresh {
        request: cid,
        deals: Vec::new(),
        excluded: Vec::new(),
    });
    record.head = cid;
    record.state = OrderState::Refreshing;
    ctx.save(Role::Principal, &record).await?;
    tracing::info!(order = %reference, epoch = request.epoch, "refresh requested");
    let deliveries = to_every_fiduciary(ctx, &record, cid)?;
    Ok((record, deliveries))
}

/// Refuses a next committee that could not hold the order: empty, a fiduciary twice, an
/// identity not known here or whose node holds no shares, a threshold out of range, or a
/// threshold of 1 among several for a generated key.
fn check_committee(
    ctx: &RoleContext,
    order: &OrderRequest,
    fiduciaries: &[Cid],
    threshold: u32,
) -> Result<(), CustodyError> {
    let n = fiduciaries.len();
    if n == 0 || threshold == 0 || threshold as usize > n {
        return Err(CustodyError::Invalid(format!(
            "threshold must be between 1 and the number of fiduciaries ({n})"
        )));
    }
    let mut distinct = fiduciaries.to_vec();
    distinct.sort();
    distinct.dedup();
    if distinct.len() != n {
        return Err(CustodyError::Invalid("a fiduciary is listed twice".into()));
    }
    let generated =
        super::principal::order_plugin(order)?.key_source() == crate::plugin::KeySource::Generated;
    if generated && threshold == 1 && n > 1 {
        return Err(CustodyError::Invalid(format!(
            "a generated key needs a threshold of at least 2, not 1 of {n}"
        )));
    }
    ctx.known_identities(fiduciaries)?;
    for fiduciary in fiduciaries {
        super::release::check_holds_shares(ctx, fiduciary)?;
    }
    Ok(())
}

/// The certificate in force and the request, for every fiduciary (a fiduciary learns of a
/// certificate with the first release, or here).
pub(crate) fn to_every_fiduciary(
    ctx: &RoleContext,
    record: &OrderRecord,
    request: Cid,
) -> Result<Vec<Delivery>, CustodyError> {
    let blocks = [record.certificate, Some(request)]
        .iter()
        .flatten()
        .map(|cid| {
            ctx.block(cid)
                .ok_or_else(|| internal(format!("block {cid} missing")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(to_each(ctx, &record.fiduciaries, &blocks))
}

/// Fiduciary: the principal asks for a refresh. Deals this node's share to every holder
/// (itself included) and returns the deals' delivery to the principal; a request it dealt
/// for already gets the same deals again.
pub async fn on_request(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    cid: Cid,
) -> Result<Option<Delivery>, CustodyError> {
    let reference = envelope.envelope().order.clone();
    let principal = envelope.envelope().sender;
    let mut record = ctx.fiduciary_record(&principal, &reference)?;
    let request: ReshareRequest = RoleContext::payload(envelope)?;
    let order: OrderRequest = ctx.stored_payload(&record.order)?;
    if let Some(expired) = order.policy.expired(crate::context::now_millis()) {
        return Err(CustodyError::Conflict(format!(
            "order {reference} is dealt anew no more: {expired}"
        )));
    }
    let peer = ctx.known_peer(&principal)?;
    if let Some(refresh) = &record.refresh
        && refresh.request == cid
    {
        let blocks = refresh
            .deals
            .iter()
            .flat_map(|d| d.to.iter().flatten())
            .filter_map(|c| ctx.block(c))
            .collect();
        return Ok(Some((peer, blocks)));
    }
    let moved_on_with_it = || {
        record
            .commitment
            .and_then(|c| ctx.stored_payload::<Commitment>(&c).ok())
            .and_then(|c| c.reshared)
            .is_some_and(|r| r.request == cid)
    };
    if request.epoch == record.epoch && moved_on_with_it() {
        // This holder dealt for it and moved on with a commitment of it: the request comes
        // again with a commitment that replaces that one.
        return Ok(None);
    }
    if request.epoch <= record.epoch {
        return Err(CustodyError::Conflict(format!(
            "refresh to epoch {} of {reference} is stale (this holder is at epoch {})",
            request.epoch, record.epoch
        )));
    }
    // A fiduciary learns of a certificate with the first release, or with this request.
    let certified = record.certificate == Some(request.certificate)
        || (record.certificate.is_none()
            && ctx
                .stored_payload::<dta_protocol::order::Certificate>(&request.certificate)
                .is_ok_and(|c| Some(c.commitment) == record.commitment));
    if request.order != record.order || !certified || request.epoch != record.epoch + 1 {
        return Err(CustodyError::Invalid(
            "refresh of another order, certificate or epoch".into(),
        ));
    }
    if request.fiduciaries.is_empty()
        || request.threshold == 0
        || request.threshold as usize > request.fiduciaries.len()
    {
        return Err(CustodyError::Invalid(
            "a refresh to an impossible committee or threshold".into(),
        ));
    }
    let order: OrderRequest = ctx.stored_payload(&record.order)?;
    super::principal::order_plugin(&order)?
        .check_release()
        .map_err(CustodyError::from)?;
    // Moving custody puts the key in other hands: under a release policy with conditions it
    // waits for the approvals (and delay) a release would. A refresh, same committee and
    // threshold, changes no hands and is not held.
    let moves = request.fiduciaries != record.fiduciaries || request.threshold != record.threshold;
    if moves
        && order.policy.has_conditions()
        && let Some(waiting) = policy_gate(ctx, &mut record, &order, cid, Gated::Move).await?
    {
        tracing::info!(order = %reference, %waiting, "move of custody held by the release policy");
        return Ok(None);
    }
    let commitment = ctx.committed(&record)?;
    let shares = old_shares(&commitment)?;
    let index = *record
        .shares
        .keys()
        .next()
        .ok_or_else(|| internal("no share index recorded"))?;
    let held = ctx
        .load_secret(&held_share_name(&principal, &reference, record.epoch))
        .await?;
    let value = secret_32(held.expose()).ok_or_else(|| internal("a held share is not 32 bytes"))?;
    let holders = u16_of(request.fiduciaries.len() as u32)?;
    let threshold = u16_of(request.threshold)?;
    let (sub_shares, commitments): (Vec<Secret<32>>, Vec<ByteBuf>) = match shares {
        OldShares::Dealt(_) => {
            let share = Share::from_parts(index, value.expose()).map_err(internal)?;
            let (subs, commitments) =
                threshold::reshare::deal(&share, usize::from(threshold), usize::from(holders))
                    .map_err(internal)?;
            (
                subs.iter().map(Share::value_bytes).collect(),
                super::principal::feldman_bytes(&commitments),
            )
        }
        OldShares::Generated(_) => {
            let (subs, commitments) =
                dkg::reshare::deal(value.expose(), threshold, holders).map_err(internal)?;
            (subs, byte_bufs(commitments))
        }
    };
    let fiduciaries = ctx.known_identities(&request.fiduciaries)?;
    let mut to = Vec::with_capacity(sub_shares.len());
    let mut blocks = Vec::with_capacity(sub_shares.len());
    for ((recipient, sub_share), fiduciary) in (1u32..).zip(&sub_shares).zip(&fiduciaries) {
        let public = ReshareCommitments {
            request: cid,
            dealer: index,
            recipient,
            commitments: commitments.clone(),
        };
        let dealt = SecretBytes::new(sub_share.expose().to_vec());
        #[cfg(feature = "byzantine")]
        let dealt = match recipient {
            1 => crate::byzantine::tampered(
                ctx.misbehaviour,
                crate::byzantine::Misbehaviour::BadSubShare,
                dealt,
            ),
            _ => dealt,
        };
        let sealed = ReshareSubShare {
            request: cid,
            dealer: index,
            recipient,
            share: dealt,
        };
        let plain = zeroize::Zeroizing::new(encode(&sealed)?);
        let deal = ctx.envelope(
            Kind::ReshareDeal,
            &reference,
            Some(cid),
            Some(encode(&public)?),
            Some(&plain),
            &[fiduciary],
        )?;
        let (deal_cid, bytes) = ctx.save_block(&deal).await?;
        to.push(Some(deal_cid));
        blocks.push(bytes);
    }
    record.refresh = Some(Refresh {
        request: cid,
        deals: vec![DealerDeals { dealer: index, to }],
        excluded: Vec::new(),
    });
    ctx.save(Role::Fiduciary, &record).await?;
    tracing::info!(order = %reference, epoch = request.epoch, "share dealt anew");
    Ok(Some((peer, blocks)))
}

/// Where a refresh under way stands at the principal.
pub(super) enum Stage {
    /// Waiting for t dealers' deals; the commitment in force is the one dealt from.
    Dealing,
    /// Committed to the next epoch: the commitment in force, not certified yet.
    Committed(Box<Commitment>),
}

/// Principal: the stage of `refresh` if it is under way, with the commitment its deals start
/// from (CID and payload); `None` once it is certified or another request replaced it.
pub(super) fn under_way(
    ctx: &RoleContext,
    record: &OrderRecord,
    refresh: &Refresh,
) -> Result<Option<(Stage, Cid, Commitment)>, CustodyError> {
    let Some(current_cid) = record.commitment else {
        return Ok(None);
    };
    match record.state {
        OrderState::Refreshing => {
            let current: Commitment = ctx.stored_payload(&current_cid)?;
            Ok(Some((Stage::Dealing, current_cid, current)))
        }
        OrderState::Committed => {
            let current: Commitment = ctx.stored_payload(&current_cid)?;
            let Some(reshared) = current.reshared.clone() else {
                return Ok(None);
            };
            if reshared.request != refresh.request {
                return Ok(None);
            }
            let old = ctx.stored_payload(&reshared.previous)?;
            Ok(Some((
                Stage::Committed(Box::new(current)),
                reshared.previous,
                old,
            )))
        }
        _ => Ok(None),
    }
}

/// The dealers whose deals to every holder are in and who are not excluded, lowest index
/// first, at most `threshold` of them.
pub(super) fn countable(refresh: &Refresh, threshold: u32) -> Vec<DealerDeals> {
    let mut complete: Vec<&DealerDeals> = refresh
        .deals
        .iter()
        .filter(|d| d.to.iter().all(Option::is_some))
        .filter(|d| !refresh.excluded.iter().any(|e| e.dealer == d.dealer))
        .collect();
    complete.sort_by_key(|d| d.dealer);
    complete
        .into_iter()
        .take(threshold as usize)
        .cloned()
        .collect()
}

/// Whether `commitment` counts a dealer that `refresh` has excluded since.
pub(super) fn counts_excluded(commitment: &Commitment, refresh: &Refresh) -> bool {
    commitment.reshared.as_ref().is_some_and(|r| {
        r.dealers
            .iter()
            .any(|d| refresh.excluded.iter().any(|e| e.dealer == *d))
    })
}

/// Principal: a holder's deal to one holder arrived. Once t dealers' deals are complete,
/// publishes the new commitment and returns each fiduciary's deals and the commitment. Deals
/// that come later are kept while the new commitment is not certified: a complaint may
/// exclude a counted dealer, and the commitment is then made again from them.
pub async fn on_deal(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    cid: Cid,
) -> Result<Vec<Delivery>, CustodyError> {
    let reference = envelope.envelope().order.clone();
    let mut record = ctx.principal_record(&reference)?;
    let Some(mut refresh) = record.refresh.clone() else {
        return Err(CustodyError::Invalid(format!(
            "order {reference} is not refreshing"
        )));
    };
    let deal: ReshareCommitments = RoleContext::payload(envelope)?;
    if envelope.envelope().prev != Some(refresh.request) || deal.request != refresh.request {
        return Err(CustodyError::Invalid("a deal of another refresh".into()));
    }
    let request: ReshareRequest = ctx.stored_payload(&refresh.request)?;
    let holders = request.fiduciaries.len();
    if deal.recipient == 0 || deal.recipient as usize > holders {
        return Err(CustodyError::Invalid(format!(
            "a deal to holder {}, of {holders}",
            deal.recipient
        )));
    }
    let Some((stage, old_cid, old)) = under_way(ctx, &record, &refresh)? else {
        return Ok(Vec::new());
    };
    let sender = envelope.envelope().sender;
    if old.fiduciaries.get((deal.dealer as usize).wrapping_sub(1)) != Some(&sender) {
        return Err(CustodyError::Invalid(format!(
            "{sender} is not holder {} of {reference}",
            deal.dealer
        )));
    }
    old_shares(&old)?
        .check_dealer(deal.dealer, &deal.commitments)
        .map_err(refused)?;
    if deal.commitments.len() != request.threshold as usize {
        return Err(CustodyError::Invalid(format!(
            "the deal of holder {} commits to another threshold",
            deal.dealer
        )));
    }
    let position = match refresh.deals.iter().position(|d| d.dealer == deal.dealer) {
        Some(position) => position,
        None => {
            refresh.deals.push(DealerDeals {
                dealer: deal.dealer,
                to: vec![None; holders],
            });
            refresh.deals.len() - 1
        }
    };
    let slot = &mut refresh.deals[position].to[deal.recipient as usize - 1];
    if slot.is_some() {
        return Ok(Vec::new());
    }
    *slot = Some(cid);
    let counted = countable(&refresh, old.threshold);
    let replaces = match stage {
        Stage::Dealing => None,
        Stage::Committed(current) if counts_excluded(&current, &refresh) => record.commitment,
        // Committed from dealers nobody complained about: kept in case one is excluded.
        Stage::Committed(_) => {
            record.refresh = Some(refresh);
            ctx.save_buffered(Role::Principal, &record).await?;
            return Ok(Vec::new());
        }
    };
    if counted.len() < old.threshold as usize {
        record.refresh = Some(refresh);
        ctx.save_buffered(Role::Principal, &record).await?;
        return Ok(Vec::new());
    }
    record.refresh = Some(refresh);
    commit_anew(ctx, record, &request, (old_cid, &old), &counted, replaces).await
}

/// Principal: publishes the commitment of the next epoch that the `counted` dealers' deals
/// give (replacing `replaces`, a commitment of the same request that counted a dealer
/// excluded since) and returns its deliveries: to each holder of the next epoch its deals, the
/// request and the commitment; to each old holder that leaves, the request and the commitment.
pub(super) async fn commit_anew(
    ctx: &RoleContext,
    mut record: OrderRecord,
    request: &ReshareRequest,
    (old_cid, old): (Cid, &Commitment),
    counted: &[DealerDeals],
    replaces: Option<Cid>,
) -> Result<Vec<Delivery>, CustodyError> {
    let reference = record.reference.clone();
    let refresh = record
        .refresh
        .clone()
        .ok_or_else(|| internal("committing without a refresh"))?;
    let holders = request.fiduciaries.len();
    let deals: Vec<Vec<Cid>> = counted
        .iter()
        .map(|d| d.to.iter().flatten().copied().collect())
        .collect();
    // Each counted dealer's commitments, from its first deal (all carry the same; each
    // recipient checks its own).
    let parts: Vec<(u32, Vec<ByteBuf>)> = counted
        .iter()
        .zip(&deals)
        .map(|(dealer, cids)| {
            let first: ReshareCommitments = ctx.stored_payload(&cids[0])?;
            Ok((dealer.dealer, first.commitments))
        })
        .collect::<Result<_, CustodyError>>()?;
    let mut commitment = old.clone();
    commitment.fiduciaries = request.fiduciaries.clone();
    commitment.threshold = request.threshold;
    match old_shares(old)? {
        OldShares::Dealt(_) => {
            commitment.feldman = combined_feldman(&parts, old.threshold)?;
            if commitment.feldman.first() != old.feldman.first() {
                return Err(internal("the dealers' commitments give another key"));
            }
        }
        OldShares::Generated(_) => {
            let combined = combined_secp256k1(&parts)?;
            if combined.first().map(Vec::as_slice)
                != old.generated.as_ref().map(|g| g.group_key.as_slice())
            {
                return Err(internal("the dealers' commitments give another key"));
            }
            commitment.key_shares = byte_bufs(
                dkg::reshare::public_shares_from(&combined, u16_of(holders as u32)?)
                    .map_err(internal)?,
            );
        }
    }
    let excluded = refresh
        .excluded
        .iter()
        .map(|e| {
            ctx.block(&e.complaint)
                .map(ByteBuf::from)
                .ok_or_else(|| internal("complaint block missing"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // The votes a move was authorized by, named for auditors (a refresh needs none).
    let votes = super::approval::votes_on(ctx, &record, refresh.request);
    commitment.reshared = Some(Reshared {
        previous: old_cid,
        request: refresh.request,
        dealers: counted.iter().map(|d| d.dealer).collect(),
        deals: deals.clone(),
        excluded,
        votes,
    });
    let (commitment_cid, bytes) = ctx
        .publish(
            Kind::Commitment,
            &reference,
            Some(refresh.request),
            &commitment,
        )
        .await?;
    // Fiduciaries that leave learn that custody moved, and delete their shares; they learnt
    // it already from a commitment this one replaces.
    let leaving: Vec<Cid> = match replaces {
        Some(_) => Vec::new(),
        None => old
            .fiduciaries
            .iter()
            .filter(|f| !request.fiduciaries.contains(f))
            .copied()
            .collect(),
    };
    if replaces.is_none() {
        record.epoch += 1;
    }
    record.fiduciaries = request.fiduciaries.clone();
    record.threshold = request.threshold;
    record.commitment = Some(commitment_cid);
    record.certificate = None;
    record.signatures.clear();
    record.head = commitment_cid;
    record.state = OrderState::Committed;
    ctx.save(Role::Principal, &record).await?;
    match replaces {
        Some(replaced) => tracing::warn!(
            order = %reference, commitment = %commitment_cid, %replaced,
            "shares dealt anew without an excluded dealer"
        ),
        None => {
            tracing::info!(order = %reference, commitment = %commitment_cid, "shares dealt anew")
        }
    }
    let mut deliveries = deliveries_of(ctx, &record, &deals, refresh.request, bytes.clone())?;
    let request_bytes = ctx
        .block(&refresh.request)
        .ok_or_else(|| internal("refresh request missing"))?;
    deliveries.extend(to_each(ctx, &leaving, &[request_bytes, bytes]));
    Ok(deliveries)
}

/// Each fiduciary's counted deals, then the request and the commitment (a fiduciary that was
/// down when the request went out gets it here), after the order request and the commitment
/// before (which a fiduciary that joins has not seen).
pub(crate) fn deliveries_of(
    ctx: &RoleContext,
    record: &OrderRecord,
    deals: &[Vec<Cid>],
    request: Cid,
    commitment: Vec<u8>,
) -> Result<Vec<Delivery>, CustodyError> {
    let previous = SignedEnvelope::decode(&commitment)
        .ok()
        .and_then(|signed| signed.envelope.public)
        .and_then(|public| {
            dta_protocol::dagcbor::decode::<Commitment>(
                &public,
                dta_protocol::dagcbor::Limits::default(),
            )
            .ok()
        })
        .and_then(|c| c.reshared)
        .map(|r| r.previous);
    let context: Vec<Vec<u8>> = [Some(record.order), previous]
        .iter()
        .flatten()
        .filter_map(|cid| ctx.block(cid))
        .collect();
    let request = ctx
        .block(&request)
        .ok_or_else(|| internal("refresh request missing"))?;
    let mut deliveries = Vec::with_capacity(record.fiduciaries.len());
    for (position, fiduciary) in record.fiduciaries.iter().enumerate() {
        let Some(peer) = ctx.peer_of(fiduciary) else {
            continue;
        };
        let mut blocks = context.clone();
        for cid in deals_for(deals, position as u32 + 1) {
            blocks.push(
                ctx.block(&cid)
                    .ok_or_else(|| internal("deal block missing"))?,
            );
        }
        blocks.push(request.clone());
        blocks.push(commitment.clone());
        deliveries.push((peer, blocks));
    }
    Ok(deliveries)
}

/// The deals holder `index` of the next epoch checks its new share with: each counted
/// dealer's deal to it, and the dealer's deal to the first holder, whose commitments the
/// principal combined (a dealer that committed to others in this holder's deal is caught).
pub(crate) fn deals_for(deals: &[Vec<Cid>], index: u32) -> Vec<Cid> {
    let mut cids = Vec::with_capacity(deals.len() * 2);
    for to in deals {
        cids.extend(to.first().filter(|_| index != 1));
        cids.extend(to.get((index as usize).wrapping_sub(1)));
    }
    cids
}

fn combined_feldman(
    parts: &[(u32, Vec<ByteBuf>)],
    threshold: u32,
) -> Result<Vec<ByteBuf>, CustodyError> {
    let parts = parts
        .iter()
        .map(|(dealer, commitments)| {
            Commitments::from_bytes(commitments)
                .map(|c| (*dealer, c))
                .map_err(|e| CustodyError::Invalid(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let combined = threshold::reshare::combine_commitments(&parts, threshold as usize)
        .map_err(|e| CustodyError::Invalid(e.to_string()))?;
    Ok(super::principal::feldman_bytes(&combined))
}

fn combined_secp256k1(parts: &[(u32, Vec<ByteBuf>)]) -> Result<Vec<Vec<u8>>, CustodyError> {
    let parts = parts
        .iter()
        .map(|(dealer, commitments)| Ok((u16_of(*dealer)?, vecs(commitments))))
        .collect::<Result<Vec<_>, CustodyError>>()?;
    dkg::reshare::combine_commitments(&parts).map_err(|e| CustodyError::Invalid(e.to_string()))
}

/// Fiduciary: deletes its share of `deleted.epoch`, which the commitment `superseded_by`
/// made useless, and says so in a signed statement for the principal (its block).
async fn delete_and_say(
    ctx: &RoleContext,
    principal: &Cid,
    reference: &str,
    superseded_by: Cid,
    deleted: &ShareDeleted,
) -> Result<Vec<u8>, CustodyError> {
    ctx.store
        .delete_durable(
            Column::Keystore,
            held_share_name(principal, reference, deleted.epoch).as_bytes(),
        )
        .map_err(internal)?;
    let (_, said) = ctx
        .publish(Kind::ShareDeleted, reference, Some(superseded_by), deleted)
        .await?;
    Ok(said)
}

/// Principal: an old holder says it deleted its share. Kept in the record (its CID), once per
/// holder and epoch, when the sender is the holder of that index in the committee the
/// commitment it names came from.
pub async fn on_share_deleted(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    cid: Cid,
) -> Result<(), CustodyError> {
    let reference = envelope.envelope().order.clone();
    let mut record = ctx.principal_record(&reference)?;
    let deleted: ShareDeleted = RoleContext::payload(envelope)?;
    let sender = envelope.envelope().sender;
    let commitment_cid = envelope
        .envelope()
        .prev
        .ok_or_else(|| CustodyError::Invalid("a deletion that names no commitment".into()))?;
    if super::ending::ends_the_order(&record, &deleted, commitment_cid) {
        return super::ending::on_deleted(ctx, envelope, cid, record, &deleted).await;
    }
    let commitment: Commitment = ctx.stored_payload(&commitment_cid)?;
    let previous: Commitment = match &commitment.reshared {
        Some(reshared) => ctx.stored_payload(&reshared.previous)?,
        None => {
            return Err(CustodyError::Invalid(
                "a deletion after a commitment that replaced none".into(),
            ));
        }
    };
    if deleted.order != record.order || commitment.order != record.order {
        return Err(CustodyError::Invalid(format!(
            "{sender} names another order than the one it says it deleted a share of"
        )));
    }
    super::ending::holder_of(&previous.fiduciaries, &deleted, &sender)?;
    let already = record.deletions.iter().any(|said| {
        ctx.stored_payload::<ShareDeleted>(said)
            .is_ok_and(|d| d.epoch == deleted.epoch && d.index == deleted.index)
    });
    if already {
        return Ok(());
    }
    record.deletions.push(cid);
    tracing::info!(order = %reference, holder = %sender, epoch = deleted.epoch, "old share deleted");
    ctx.save_buffered(Role::Principal, &record).await
}

/// Fiduciary: the commitment of a refresh arrived (after this node's deals). Checks each
/// counted sub-share against its dealer's commitments (one that fails draws a complaint, and
/// nothing is kept), combines them into the new share, checks the commitment is what the deals
/// give, keeps the new share under the next epoch's name, deletes the old one and signs the
/// commitment. A commitment that replaces one this node signed (a dealer was excluded since)
/// gives it its new share again, from the deals it counts.
pub async fn on_commitment(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    commitment_cid: Cid,
    commitment: &Commitment,
) -> Result<Option<Delivery>, CustodyError> {
    let reference = envelope.envelope().order.clone();
    let principal = envelope.envelope().sender;
    let existing = ctx.record(Role::Fiduciary, &principal, &reference)?;
    let reshared = commitment
        .reshared
        .as_ref()
        .ok_or_else(|| internal("not a refreshed commitment"))?;
    if existing
        .as_ref()
        .is_some_and(|r| r.commitment == Some(commitment_cid))
    {
        // Sent again (the principal did not get our signature): sign again.
        return sign_commitment(ctx, &reference, commitment_cid, principal)
            .await
            .map(Some);
    }
    let me = ctx.local.cid();
    let joins = commitment.fiduciaries.iter().position(|f| *f == me);
    if existing.is_none() && joins.is_none() {
        return Ok(None);
    }
    let request_envelope = ctx.verified_block(&reshared.request)?;
    let request: ReshareRequest = RoleContext::payload(&request_envelope)?;
    let previous_envelope = ctx.verified_block(&reshared.previous)?;
    let old: Commitment = RoleContext::payload(&previous_envelope)?;
    // This node moved on with a commitment of the same request that is not certified: this
    // one replaces it.
    let replacing = existing.as_ref().is_some_and(|record| {
        record.certificate.is_none()
            && record.epoch == request.epoch
            && record
                .commitment
                .and_then(|c| ctx.stored_payload::<Commitment>(&c).ok())
                .and_then(|c| c.reshared)
                .is_some_and(|r| r.request == reshared.request && r.previous == reshared.previous)
    });
    let fits_this_node = match &existing {
        Some(record) => {
            request.order == record.order
                && ((request.epoch == record.epoch + 1
                    && record.commitment == Some(reshared.previous))
                    || replacing)
        }
        None => request.epoch > 0,
    };
    if request_envelope.envelope().sender != principal
        || previous_envelope.envelope().sender != principal
        || request_envelope.envelope().kind != Kind::ReshareRequest
        || request.order != old.order
        || envelope.envelope().prev != Some(reshared.request)
        || !fits_this_node
    {
        return Err(CustodyError::Invalid(
            "a refreshed commitment of another refresh".into(),
        ));
    }
    let same_order = commitment.keeps_the_key_of(&old)
        && commitment.fiduciaries == request.fiduciaries
        && commitment.threshold == request.threshold
        && reshared.dealers.len() == old.threshold as usize
        && reshared.deals.len() == reshared.dealers.len();
    if !same_order {
        return Err(CustodyError::Invalid(
            "a refreshed commitment that changes the order or is not the committee asked for"
                .into(),
        ));
    }
    let Some(position) = joins else {
        if replacing {
            // Retired with the commitment this one replaces: nothing left to do.
            return Ok(None);
        }
        // Custody moved to a committee without this node: its share goes. The share is
        // deleted and the deletion said before the record is retired: a node that stops in
        // between still holds the old record, and deletes and says it again when it hears of
        // the move again (deleting is idempotent, the principal counts one deletion per
        // holder), where a record retired first would have kept its share forever.
        let mut record = existing.ok_or_else(|| internal("no record to retire"))?;
        let deleted = ShareDeleted {
            order: record.order,
            epoch: record.epoch,
            index: record.own_index()?,
        };
        let said = delete_and_say(ctx, &principal, &reference, commitment_cid, &deleted).await?;
        record.epoch = request.epoch;
        record.commitment = Some(commitment_cid);
        record.certificate = None;
        record.head = commitment_cid;
        record.state = OrderState::Retired;
        record.refresh = None;
        ctx.save(Role::Fiduciary, &record).await?;
        tracing::info!(order = %reference, "custody moved on; share deleted");
        return Ok(ctx.peer_of(&principal).map(|peer| (peer, vec![said])));
    };
    let index = position as u32 + 1;
    let shares = old_shares(&old)?;
    let mut sub_shares = Vec::with_capacity(reshared.dealers.len());
    let mut parts = Vec::with_capacity(reshared.dealers.len());
    for (dealer, deals) in reshared.dealers.iter().zip(&reshared.deals) {
        let deal_cid = deals
            .get(index as usize - 1)
            .ok_or_else(|| CustodyError::Invalid("no deal to this holder".into()))?;
        let deal_envelope = ctx.verified_block(deal_cid)?;
        let header = deal_envelope.envelope();
        if header.kind != Kind::ReshareDeal
            || header.prev != Some(reshared.request)
            || old.fiduciaries.get(*dealer as usize - 1) != Some(&header.sender)
        {
            return Err(CustodyError::Invalid(format!(
                "deal {deal_cid} is not holder {dealer}'s"
            )));
        }
        let public: ReshareCommitments = RoleContext::payload(&deal_envelope)?;
        if public.dealer != *dealer || public.recipient != index {
            return Err(CustodyError::Invalid(format!(
                "deal {deal_cid} is not holder {dealer}'s to this one"
            )));
        }
        // The principal combined the commitments of the dealer's deal to the first holder:
        // a dealer that committed to others here signed two dealings.
        let counted_cid = deals
            .first()
            .ok_or_else(|| CustodyError::Invalid("a dealer with no deals".into()))?;
        let counted: ReshareCommitments = ctx.stored_payload(counted_cid)?;
        let counted_header = ctx.verified_block(counted_cid)?;
        if counted_header.envelope().sender != header.sender
            || counted_header.envelope().kind != Kind::ReshareDeal
            || counted.dealer != *dealer
            || counted.request != reshared.request
        {
            return Err(CustodyError::Invalid(format!(
                "deal {counted_cid} is not holder {dealer}'s"
            )));
        }
        if counted.commitments != public.commitments {
            let complaint = super::exclusion::complain(
                ctx,
                &reference,
                commitment_cid,
                (reshared.request, *dealer, *deal_cid),
                Some(*counted_cid),
                &principal,
            )
            .await?;
            return Ok(Some(complaint));
        }
        // What the dealer sealed must be its sub-share to this holder, fitting its
        // commitments; anything else convicts the dealer.
        let sealed: Option<ReshareSubShare> = ctx.sealed(&deal_envelope).ok();
        let value = sealed
            .filter(|s| {
                s.request == reshared.request
                    && s.dealer == *dealer
                    && s.recipient == index
                    && shares.sub_share_fits(*dealer, &public.commitments, index, s.share.expose())
            })
            .and_then(|s| secret_32(s.share.expose()));
        let Some(value) = value else {
            let complaint = super::exclusion::complain(
                ctx,
                &reference,
                commitment_cid,
                (reshared.request, *dealer, *deal_cid),
                None,
                &principal,
            )
            .await?;
            return Ok(Some(complaint));
        };
        sub_shares.push((*dealer, value));
        parts.push((*dealer, public.commitments));
    }
    let named = |e: String| CustodyError::Invalid(format!("refresh: {e}"));
    let new_value: Secret<32> = match &shares {
        OldShares::Dealt(_) => {
            let subs = sub_shares
                .iter()
                .map(|(dealer, value)| {
                    Share::from_parts(index, value.expose())
                        .map(|sub| (*dealer, sub))
                        .map_err(|e| named(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if combined_feldman(&parts, old.threshold)? != commitment.feldman {
                return Err(named("the commitment is not what the deals give".into()));
            }
            threshold::reshare::combine(&subs, old.threshold as usize)
                .map_err(|e| named(e.to_string()))?
                .value_bytes()
        }
        OldShares::Generated(_) => {
            let subs = sub_shares
                .into_iter()
                .map(|(dealer, value)| Ok((u16_of(dealer)?, value)))
                .collect::<Result<Vec<_>, CustodyError>>()?;
            let holders = u16_of(commitment.fiduciaries.len() as u32)?;
            let expected = dkg::reshare::public_shares_from(&combined_secp256k1(&parts)?, holders)
                .map_err(|e| named(e.to_string()))?;
            if byte_bufs(expected) != commitment.key_shares {
                return Err(named("the commitment is not what the deals give".into()));
            }
            dkg::reshare::combine(&subs).map_err(|e| named(e.to_string()))?
        }
    };
    let epoch = request.epoch;
    ctx.keep_secret(
        held_share_name(&principal, &reference, epoch),
        new_value.expose().to_vec(),
    )
    .await?;
    // A replacement: the old share went with the commitment replaced.
    let deleted = match &existing {
        Some(record) if !replacing => Some(ShareDeleted {
            order: record.order,
            epoch: record.epoch,
            index: record.own_index()?,
        }),
        _ => None,
    };
    let mut record = match existing {
        Some(record) => record,
        // A fiduciary that joins: its record starts here, counting the releases before.
        None => {
            let order: OrderRequest = ctx.stored_payload(&old.order)?;
            OrderRecord {
                max_releases: order.policy.max_releases,
                releases_before: request.releases,
                ..OrderRecord::fresh(
                    reference.clone(),
                    Role::Fiduciary,
                    OrderState::Holding,
                    old.order,
                    principal,
                    commitment_cid,
                )
            }
        }
    };
    record.epoch = epoch;
    record.fiduciaries = commitment.fiduciaries.clone();
    record.threshold = commitment.threshold;
    record.shares = [(index, commitment_cid)].into();
    record.commitment = Some(commitment_cid);
    record.certificate = None;
    record.head = commitment_cid;
    record.state = OrderState::Holding;
    record.refresh = None;
    let mut delivery = ctx
        .save_while(
            Role::Fiduciary,
            &record,
            sign_commitment(ctx, &reference, commitment_cid, principal),
        )
        .await?;
    // The principal has moved on to the new commitment: the old share can serve no release.
    if let Some(deleted) = deleted {
        let said = delete_and_say(ctx, &principal, &reference, commitment_cid, &deleted).await?;
        delivery.1.push(said);
    }
    tracing::info!(order = %reference, epoch, "new share kept, old one deleted; commitment signed");
    Ok(Some(delivery))
}
