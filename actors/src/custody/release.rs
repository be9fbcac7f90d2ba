//! The principal's release: the signed release request and its deliveries (after checking
//! the beneficiary can receive and enough fiduciaries hold shares), and the beneficiary's
//! receipt that ends it. The fiduciaries' side is in `fiduciary`, the beneficiary's in
//! `beneficiary`.

use dta_protocol::Cid;
use dta_protocol::envelope::{Kind, SignedEnvelope, VerifiedEnvelope};
use dta_protocol::order::{Commitment, OrderRequest, Receipt, ReleaseRequest};

use crate::role::Role;
use crate::states::OrderState;

use super::record::OrderRecord;
use crate::context::{CustodyError, Delivery, RoleContext, internal};

/// A release ready to deliver.
#[derive(Debug)]
pub struct ReleasePlan {
    /// The stored record.
    pub record: OrderRecord,
    /// The beneficiary's peer and the chain it needs, delivered first.
    pub beneficiary: Delivery,
    /// Each fiduciary's peer and the release request.
    pub fiduciaries: Vec<Delivery>,
}

/// Principal: prepares the next release of an order. A release that got no receipt yet (for
/// example because too few fiduciaries were reachable, or the beneficiary lost what it had
/// received) is sent again as it was, so retrying never uses up the policy.
///
/// An order that names its beneficiary is released to it alone; one that names none (as in
/// the original D-TA's flow) to whichever identity the release names. Either way the
/// beneficiary's node must play the beneficiary role, where that is known, before anything
/// is published: a release to a node that cannot receive would be spent for nothing.
pub async fn create_release(
    ctx: &RoleContext,
    reference: &str,
    beneficiary: Option<Cid>,
) -> Result<ReleasePlan, CustodyError> {
    let mut record = ctx.principal_record(reference)?;
    let order: OrderRequest = ctx.stored_payload(&record.order)?;
    super::principal::order_plugin(&order)?
        .check_release()
        .map_err(CustodyError::from)?;
    let certificate = record
        .certificate
        .ok_or_else(|| CustodyError::Conflict(format!("order {reference} is not certified yet")))?;
    match record.state {
        OrderState::Certified | OrderState::Releasing | OrderState::Released => {}
        // Shares of two epochs do not combine: a release waits for the new ones.
        OrderState::Refreshing | OrderState::Committed => {
            return Err(CustodyError::Conflict(format!(
                "order {reference} is being refreshed (to epoch {}); release it once the new \
                 shares are certified",
                record.epoch + 1
            )));
        }
        OrderState::Ordered
        | OrderState::Generating
        | OrderState::Dealt
        | OrderState::Generated
        | OrderState::Holding
        | OrderState::Collecting
        | OrderState::Received
        | OrderState::Aborted
        | OrderState::Retired
        | OrderState::Expired
        | OrderState::Cancelling
        | OrderState::Cancelled => {
            return Err(CustodyError::Conflict(format!(
                "order {reference} is {}: it cannot be released",
                record.state
            )));
        }
    }
    if let Some(expired) = order.policy.expired(crate::context::now_millis()) {
        return Err(CustodyError::Conflict(format!(
            "order {reference} cannot be released: {expired}"
        )));
    }
    let (cid, bytes, beneficiary) = match open_release(ctx, &record)? {
        Some((cid, bytes, request)) => {
            if beneficiary.is_some_and(|b| b != request.beneficiary) {
                return Err(CustodyError::Conflict(format!(
                    "release {} of {reference} to {} is still open",
                    request.sequence, request.beneficiary
                )));
            }
            (cid, bytes, request.beneficiary)
        }
        None => {
            let sequence = record.releases.len() as u32 + 1;
            if sequence > record.max_releases {
                return Err(CustodyError::Conflict(format!(
                    "order {reference} allows {} release(s), all used",
                    record.max_releases
                )));
            }
            let beneficiary = match (order.beneficiary, beneficiary) {
                (Some(named), Some(asked)) if named != asked => {
                    return Err(CustodyError::Invalid(format!(
                        "order {reference} is for beneficiary {named}; it cannot be released \
                         to {asked}"
                    )));
                }
                (Some(beneficiary), _) | (None, Some(beneficiary)) => beneficiary,
                (None, None) => {
                    return Err(CustodyError::Invalid("no beneficiary named".into()));
                }
            };
            ctx.ensure_known(&[beneficiary]).await?;
            ctx.refuse_revoked([&order.principal, &beneficiary])?;
            ctx.identity(&beneficiary)
                .ok_or_else(|| CustodyError::UnknownIdentity(beneficiary.to_string()))?;
            check_can_receive(ctx, &beneficiary)?;
            let commitment = record
                .commitment
                .ok_or_else(|| internal("certified order without commitment"))?;
            check_beneficiary(ctx, &commitment, &beneficiary)?;
            let release = ReleaseRequest {
                order: record.order,
                certificate,
                beneficiary,
                sequence,
            };
            let (cid, bytes) = ctx
                .publish(Kind::ReleaseRequest, reference, Some(record.head), &release)
                .await?;
            record.releases.insert(sequence, cid);
            record.head = cid;
            record.state = OrderState::Releasing;
            ctx.save(Role::Principal, &record).await?;
            (cid, bytes, beneficiary)
        }
    };
    let (beneficiary, fiduciaries) =
        release_deliveries(ctx, &record, certificate, cid, bytes, &beneficiary)?;
    Ok(ReleasePlan {
        record,
        beneficiary,
        fiduciaries,
    })
}

/// The newest release of a principal's record if no receipt answered it yet: its CID, its
/// bytes and the request.
pub(crate) fn open_release(
    ctx: &RoleContext,
    record: &OrderRecord,
) -> Result<Option<(Cid, Vec<u8>, ReleaseRequest)>, CustodyError> {
    let Some(cid) = record
        .releases
        .iter()
        .next_back()
        .filter(|(sequence, _)| !record.receipts.contains_key(sequence))
        .map(|(_, cid)| *cid)
    else {
        return Ok(None);
    };
    let request: ReleaseRequest = RoleContext::payload(&ctx.verified_block(&cid)?)?;
    let bytes = ctx
        .block(&cid)
        .ok_or_else(|| internal("release block missing"))?;
    Ok(Some((cid, bytes, request)))
}

/// What a release sends: the chain the beneficiary needs to check shares and open the
/// secret, and the certificate with the request for each fiduciary (fiduciaries learn of the
/// certificate with the first release that relies on it; the request links to it).
pub(crate) fn release_deliveries(
    ctx: &RoleContext,
    record: &OrderRecord,
    certificate: Cid,
    request: Cid,
    request_bytes: Vec<u8>,
    beneficiary: &Cid,
) -> Result<(Delivery, Vec<Delivery>), CustodyError> {
    let beneficiary_peer = ctx
        .peer_of(beneficiary)
        .ok_or_else(|| CustodyError::UnknownIdentity(beneficiary.to_string()))?;
    let certificate_bytes = ctx
        .block(&certificate)
        .ok_or_else(|| internal("certificate block missing"))?;
    // The approvals and vetoes the principal has for this request go along: a fiduciary that
    // was down when they were made gets them with the request sent again.
    let votes = record
        .votes
        .iter()
        .filter_map(|cid| ctx.block(cid))
        .filter(|bytes| {
            SignedEnvelope::decode(bytes).is_ok_and(|signed| signed.envelope.prev == Some(request))
        });
    let bundle: Vec<Vec<u8>> = [certificate_bytes, request_bytes]
        .into_iter()
        .chain(votes)
        .collect();
    let fiduciaries = record
        .fiduciaries
        .iter()
        .filter_map(|c| ctx.peer_of(c))
        .map(|peer| (peer, bundle.clone()))
        .collect();
    // A key generated without a dealer has its round between order and commitment.
    let round = record.key_generation.as_ref().and_then(|g| g.round);
    let chain = [
        Some(record.order),
        round,
        record.commitment,
        Some(certificate),
        Some(request),
    ];
    let blocks: Vec<Vec<u8>> = chain
        .iter()
        .flatten()
        .filter_map(|c| ctx.block(c))
        .collect();
    Ok(((beneficiary_peer, blocks), fiduciaries))
}

/// Refuses a beneficiary whose node is known not to receive: a node (this one included)
/// without the beneficiary role keeps no share that reaches it.
pub(crate) fn check_can_receive(ctx: &RoleContext, beneficiary: &Cid) -> Result<(), CustodyError> {
    let snapshot = ctx.network.snapshot();
    let plays = match ctx.own(beneficiary) {
        Some(_) => Some(snapshot.roles.is_empty() || snapshot.roles.contains(&Role::Beneficiary)),
        None => ctx
            .peer_of(beneficiary)
            .and_then(|peer| snapshot.plays(&peer, beneficiary, Role::Beneficiary)),
    };
    if plays == Some(false) {
        return Err(CustodyError::Invalid(format!(
            "identity {beneficiary} cannot receive: its node does not play the beneficiary role"
        )));
    }
    Ok(())
}

/// Refuses a fiduciary whose node is known not to hold shares: it would never answer, and
/// the order would wait forever. Only a node's own identity (not one it hosts) and only a
/// node that plays the fiduciary role holds shares.
pub(crate) fn check_holds_shares(ctx: &RoleContext, fiduciary: &Cid) -> Result<(), CustodyError> {
    let snapshot = ctx.network.snapshot();
    let plays = if *fiduciary == ctx.local.cid() {
        Some(snapshot.roles.is_empty() || snapshot.roles.contains(&Role::Fiduciary))
    } else if ctx.own(fiduciary).is_some() {
        Some(false)
    } else {
        ctx.peer_of(fiduciary)
            .and_then(|peer| snapshot.plays(&peer, fiduciary, Role::Fiduciary))
    };
    if plays == Some(false) {
        return Err(CustodyError::Invalid(format!(
            "identity {fiduciary} cannot hold a share: its node does not play the fiduciary role"
        )));
    }
    Ok(())
}

/// A key that includes a beneficiary's own share is useless to anyone else: refuses to
/// release it elsewhere.
pub(crate) fn check_beneficiary(
    ctx: &RoleContext,
    commitment: &Cid,
    beneficiary: &Cid,
) -> Result<(), CustodyError> {
    let commitment: Commitment = ctx.stored_payload(commitment)?;
    match commitment.beneficiary_share {
        Some(holder) if holder != *beneficiary => Err(CustodyError::Invalid(format!(
            "the key includes the share of beneficiary {holder}; only it can receive the key"
        ))),
        _ => Ok(()),
    }
}

/// Principal: the beneficiary's receipt arrived.
pub async fn on_receipt(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    cid: Cid,
) -> Result<(), CustodyError> {
    let reference = envelope.envelope().order.clone();
    let mut record = ctx.principal_record(&reference)?;
    let receipt: Receipt = RoleContext::payload(envelope)?;
    let Some((sequence, _)) = record.releases.iter().find(|(_, c)| **c == receipt.release) else {
        return Err(CustodyError::Invalid(
            "receipt for an unknown release".into(),
        ));
    };
    let release: ReleaseRequest = RoleContext::payload(&ctx.verified_block(&receipt.release)?)?;
    if release.beneficiary != envelope.envelope().sender {
        return Err(CustodyError::Invalid(
            "receipt not from the beneficiary".into(),
        ));
    }
    let sequence = *sequence;
    // A receipt sent again (the beneficiary answered a resent release) changes nothing: the
    // log may have moved on to a later release since.
    if record.receipts.contains_key(&sequence) {
        return Ok(());
    }
    record.receipts.insert(sequence, cid);
    record.head = cid;
    record.state = OrderState::Released;
    ctx.save(Role::Principal, &record).await
}
