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
//! A dealt secret's shares are BLS12-381 scalars (`dta_crypto::threshold::reshare`), a key
//! generated without a dealer's secp256k1 scalars (`dta_crypto::dkg::reshare`). What it does
//! not do yet: deal anew an n-of-n key added up from its shares, or go on under a release
//! policy with conditions. Until the new certificate is in, the order has none: releases wait,
//! and a fiduciary of the next committee that stays down keeps them waiting (the new
//! certificate, like any, needs every fiduciary's signature).

use dta_crypto::threshold::{self, Commitments, Share};
use dta_crypto::{Secret, dkg};
use dta_protocol::Cid;
use dta_protocol::envelope::{Kind, SignedEnvelope, VerifiedEnvelope};
use dta_protocol::order::{Commitment, OrderRequest, Reshared, SecretBytes};
use dta_protocol::reshare::{ReshareCommitments, ReshareRequest, ReshareSubShare, ShareDeleted};
use serde_bytes::ByteBuf;

use crate::role::Role;
use crate::states::OrderState;
use crate::store::Column;

use super::fiduciary::sign_commitment;
use super::principal::to_each;
use super::record::{DealerDeals, OrderRecord, Refresh, held_share_name};
use super::release::open_release;
use crate::context::{CustodyError, Delivery, RoleContext, encode, internal};

/// The two kinds of shares a refresh deals anew.
enum Shares {
    /// A dealt secret: Feldman commitments over BLS12-381.
    Dealt(Commitments),
    /// A key generated without a dealer: every holder's public share (secp256k1).
    Generated(Vec<ByteBuf>),
}

impl Shares {
    fn of(commitment: &Commitment) -> Result<Self, CustodyError> {
        if !commitment.feldman.is_empty() {
            return Commitments::from_bytes(&commitment.feldman)
                .map(Self::Dealt)
                .map_err(|e| CustodyError::Invalid(e.to_string()));
        }
        if commitment.generated.is_some() {
            return Ok(Self::Generated(commitment.key_shares.clone()));
        }
        Err(CustodyError::Conflict(
            "an n-of-n key added up from its shares cannot be refreshed yet".into(),
        ))
    }

    /// Refuses commitments that do not start from `dealer`'s old share.
    fn check_dealer(&self, dealer: u32, commitments: &[ByteBuf]) -> Result<(), CustodyError> {
        let refused = |what: String| {
            CustodyError::Invalid(format!("the deal of holder {dealer} is refused: {what}"))
        };
        match self {
            Self::Dealt(old) => Commitments::from_bytes(commitments)
                .map_err(|e| refused(e.to_string()))?
                .check_reshared_from(old, dealer)
                .map_err(|e| refused(e.to_string())),
            Self::Generated(public_shares) => {
                let old = public_shares
                    .get((dealer as usize).wrapping_sub(1))
                    .ok_or_else(|| refused("no such holder".into()))?;
                if commitments.first() == Some(old) {
                    Ok(())
                } else {
                    Err(refused(
                        "its commitments do not start from its share".into(),
                    ))
                }
            }
        }
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
    for record in ctx.records()? {
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
    if order.policy.has_conditions() {
        return Err(CustodyError::Conflict(format!(
            "order {reference} has a release policy with conditions; refreshing it is not \
             supported yet"
        )));
    }
    let commitment: Commitment = ctx.stored_payload(
        &record
            .commitment
            .ok_or_else(|| internal("certified order without commitment"))?,
    )?;
    Shares::of(&commitment)?;
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
    let mut record = ctx
        .record(Role::Fiduciary, &principal, &reference)?
        .ok_or_else(|| CustodyError::NotFound(reference.clone()))?;
    let request: ReshareRequest = RoleContext::payload(envelope)?;
    let peer = ctx
        .peer_of(&principal)
        .ok_or_else(|| CustodyError::UnknownIdentity(principal.to_string()))?;
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
    let commitment: Commitment = ctx.stored_payload(
        &record
            .commitment
            .ok_or_else(|| internal("held order without commitment"))?,
    )?;
    let shares = Shares::of(&commitment)?;
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
        Shares::Dealt(_) => {
            let share = Share::from_parts(index, value.expose()).map_err(internal)?;
            let (subs, commitments) =
                threshold::reshare::deal(&share, usize::from(threshold), usize::from(holders))
                    .map_err(internal)?;
            (
                subs.iter().map(Share::value_bytes).collect(),
                commitments
                    .to_bytes()
                    .iter()
                    .map(|c| ByteBuf::from(c.to_vec()))
                    .collect(),
            )
        }
        Shares::Generated(_) => {
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
        let sealed = ReshareSubShare {
            request: cid,
            dealer: index,
            recipient,
            share: SecretBytes::new(sub_share.expose().to_vec()),
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
    });
    ctx.save(Role::Fiduciary, &record).await?;
    tracing::info!(order = %reference, epoch = request.epoch, "share dealt anew");
    Ok(Some((peer, blocks)))
}

/// Principal: a holder's deal to one holder arrived. Once t dealers' deals are complete,
/// publishes the new commitment and returns each fiduciary's deals and the commitment.
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
    super::principal::check_fiduciary(&record, deal.dealer, envelope)?;
    let request: ReshareRequest = ctx.stored_payload(&refresh.request)?;
    let holders = request.fiduciaries.len();
    if deal.recipient == 0 || deal.recipient as usize > holders {
        return Err(CustodyError::Invalid(format!(
            "a deal to holder {}, of {holders}",
            deal.recipient
        )));
    }
    if record.state != OrderState::Refreshing {
        return Ok(Vec::new());
    }
    let old_cid = record
        .commitment
        .ok_or_else(|| internal("refreshing without a commitment"))?;
    let old: Commitment = ctx.stored_payload(&old_cid)?;
    let shares = Shares::of(&old)?;
    shares.check_dealer(deal.dealer, &deal.commitments)?;
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
    let mut complete: Vec<&DealerDeals> = refresh
        .deals
        .iter()
        .filter(|d| d.to.iter().all(Option::is_some))
        .collect();
    complete.sort_by_key(|d| d.dealer);
    if complete.len() < record.threshold as usize {
        record.refresh = Some(refresh);
        ctx.save_buffered(Role::Principal, &record).await?;
        return Ok(Vec::new());
    }
    let counted: Vec<DealerDeals> = complete
        .into_iter()
        .take(record.threshold as usize)
        .cloned()
        .collect();
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
    match &shares {
        Shares::Dealt(_) => {
            commitment.feldman = combined_feldman(&parts, record.threshold)?;
            if commitment.feldman.first() != old.feldman.first() {
                return Err(internal("the dealers' commitments give another key"));
            }
        }
        Shares::Generated(_) => {
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
    commitment.reshared = Some(Reshared {
        previous: old_cid,
        request: refresh.request,
        dealers: counted.iter().map(|d| d.dealer).collect(),
        deals: deals.clone(),
    });
    let (commitment_cid, bytes) = ctx
        .publish(
            Kind::Commitment,
            &reference,
            Some(refresh.request),
            &commitment,
        )
        .await?;
    let request_cid = refresh.request;
    let leaving: Vec<Cid> = record
        .fiduciaries
        .iter()
        .filter(|f| !request.fiduciaries.contains(f))
        .copied()
        .collect();
    record.refresh = Some(refresh);
    record.fiduciaries = request.fiduciaries.clone();
    record.threshold = request.threshold;
    record.commitment = Some(commitment_cid);
    record.certificate = None;
    record.signatures.clear();
    record.head = commitment_cid;
    record.epoch += 1;
    record.state = OrderState::Committed;
    ctx.save(Role::Principal, &record).await?;
    tracing::info!(order = %reference, commitment = %commitment_cid, "shares dealt anew");
    let mut deliveries = deliveries_of(ctx, &record, &deals, request_cid, bytes.clone())?;
    // Fiduciaries that leave learn that custody moved, and delete their shares.
    let request_bytes = ctx
        .block(&request_cid)
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
        for to in deals {
            blocks.push(
                ctx.block(&to[position])
                    .ok_or_else(|| internal("deal block missing"))?,
            );
        }
        blocks.push(request.clone());
        blocks.push(commitment.clone());
        deliveries.push((peer, blocks));
    }
    Ok(deliveries)
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
    Ok(combined
        .to_bytes()
        .iter()
        .map(|c| ByteBuf::from(c.to_vec()))
        .collect())
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
    let commitment: Commitment = ctx.stored_payload(&commitment_cid)?;
    let previous: Commitment = match &commitment.reshared {
        Some(reshared) => ctx.stored_payload(&reshared.previous)?,
        None => {
            return Err(CustodyError::Invalid(
                "a deletion after a commitment that replaced none".into(),
            ));
        }
    };
    if deleted.order != record.order
        || commitment.order != record.order
        || previous
            .fiduciaries
            .get((deleted.index as usize).wrapping_sub(1))
            != Some(&sender)
    {
        return Err(CustodyError::Invalid(format!(
            "{sender} is not holder {} of the shares it says it deleted",
            deleted.index
        )));
    }
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
/// counted sub-share against its dealer's commitments, combines them into the new share,
/// checks the commitment is what the deals give, keeps the new share under the next epoch's
/// name, deletes the old one and signs the commitment.
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
    let fits_this_node = match &existing {
        Some(record) => {
            request.order == record.order
                && request.epoch == record.epoch + 1
                && record.commitment == Some(reshared.previous)
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
        // Custody moved to a committee without this node: its share goes.
        let mut record = existing.ok_or_else(|| internal("no record to retire"))?;
        let deleted = ShareDeleted {
            order: record.order,
            epoch: record.epoch,
            index: record.own_index()?,
        };
        record.epoch = request.epoch;
        record.commitment = Some(commitment_cid);
        record.certificate = None;
        record.head = commitment_cid;
        record.state = OrderState::Retired;
        record.refresh = None;
        ctx.save(Role::Fiduciary, &record).await?;
        let said = delete_and_say(ctx, &principal, &reference, commitment_cid, &deleted).await?;
        tracing::info!(order = %reference, "custody moved on; share deleted");
        return Ok(ctx.peer_of(&principal).map(|peer| (peer, vec![said])));
    };
    let index = position as u32 + 1;
    let shares = Shares::of(&old)?;
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
        let sealed: ReshareSubShare = ctx.sealed(&deal_envelope)?;
        if public.dealer != *dealer
            || sealed.dealer != *dealer
            || public.recipient != index
            || sealed.recipient != index
        {
            return Err(CustodyError::Invalid(format!(
                "deal {deal_cid} is not holder {dealer}'s to this one"
            )));
        }
        shares.check_dealer(*dealer, &public.commitments)?;
        let value = secret_32(sealed.share.expose())
            .ok_or_else(|| CustodyError::Invalid("a sub-share is not 32 bytes".into()))?;
        sub_shares.push((*dealer, value));
        parts.push((*dealer, public.commitments));
    }
    let named = |e: String| CustodyError::Invalid(format!("refresh: {e}"));
    let new_value: Secret<32> = match &shares {
        Shares::Dealt(_) => {
            let mut subs = Vec::with_capacity(sub_shares.len());
            for ((dealer, value), (_, commitments)) in sub_shares.iter().zip(&parts) {
                let sub =
                    Share::from_parts(index, value.expose()).map_err(|e| named(e.to_string()))?;
                Commitments::from_bytes(commitments)
                    .map_err(|e| named(e.to_string()))?
                    .verify_share(&sub)
                    .map_err(|_| named(format!("the sub-share of holder {dealer} fails")))?;
                subs.push((*dealer, sub));
            }
            if combined_feldman(&parts, old.threshold)? != commitment.feldman {
                return Err(named("the commitment is not what the deals give".into()));
            }
            threshold::reshare::combine(&subs, old.threshold as usize)
                .map_err(|e| named(e.to_string()))?
                .value_bytes()
        }
        Shares::Generated(public_shares) => {
            let me = u16_of(index)?;
            let mut subs = Vec::with_capacity(sub_shares.len());
            for ((dealer, value), (_, commitments)) in sub_shares.iter().zip(&parts) {
                let dealer = u16_of(*dealer)?;
                dkg::reshare::check_sub_share(
                    dealer,
                    &vecs(commitments),
                    &public_shares[usize::from(dealer) - 1],
                    me,
                    value.expose(),
                )
                .map_err(|e| named(e.to_string()))?;
                subs.push((dealer, value.clone()));
            }
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
    let deleted = match &existing {
        Some(record) => Some(ShareDeleted {
            order: record.order,
            epoch: record.epoch,
            index: record.own_index()?,
        }),
        None => None,
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
