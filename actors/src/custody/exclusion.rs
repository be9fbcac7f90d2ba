//! A bad sub-share in a refresh or a move of custody, or a dealer that committed to other
//! polynomials in one holder's deal than in the deal the principal combined (two dealings).
//! The holder of the next epoch that got it complains to the principal ([`complain`]),
//! revealing that one deal's content key (and the other deal), and neither keeps nor signs
//! anything. The principal judges the complaint from its evidence
//! ([`on_complaint`]):
//!
//! - the dealer cheated: it is excluded from the refresh, and the commitment of the next epoch
//!   is made again from t other dealers' deals, naming the complaint (at once if their deals
//!   are in, or when they arrive). Holders that signed the commitment replaced combine their
//!   new share again from the deals the new one counts; the old shares are not needed for it.
//! - the sub-share is good: the complaint is refused, naming its maker; nothing changes, and
//!   the commitment waits for that holder's signature as for one that is down.
//!
//! What it does not do: ask an old holder that never dealt to deal again while the next
//! epoch's commitment waits (holders get the request before any commitment, so every holder
//! that was up dealt).

use dta_protocol::Cid;
use dta_protocol::dkg::Verdict;
use dta_protocol::envelope::{Kind, VerifiedEnvelope};
use dta_protocol::reshare::{ReshareComplaint, ReshareRequest};
use serde_bytes::ByteBuf;

use crate::role::Role;
use dta_protocol::misconduct::Offence;

use super::record::Exclusion;
use super::refresh::{Stage, commit_anew, counts_excluded, old_shares, refused, under_way};
use crate::context::{CustodyError, Delivery, RoleContext, internal};

/// Fiduciary: the sub-share in `deal` (dealt by old holder `dealer` for `request`) fails, or
/// its commitments are not those of the `counted` deal the principal combined, so this holder
/// complains about it to the principal, under the commitment that counted it; the complaint's
/// delivery.
pub(super) async fn complain(
    ctx: &RoleContext,
    reference: &str,
    commitment: Cid,
    (request, dealer, deal): (Cid, u32, Cid),
    counted: Option<Cid>,
    principal: &Cid,
) -> Result<Delivery, CustodyError> {
    let culprit = ctx.verified_block(&deal)?.envelope().sender;
    let deal_cid = deal;
    let (deal, content_key) = ctx.reveal(&deal)?;
    let counted = counted
        .map(|cid| {
            ctx.block(&cid)
                .map(ByteBuf::from)
                .ok_or_else(|| internal(format!("deal {cid} missing")))
        })
        .transpose()?;
    let complaint = ReshareComplaint {
        request,
        dealer,
        deal,
        content_key,
        counted,
    };
    let (_, bytes) = ctx
        .publish(
            Kind::ReshareComplaint,
            reference,
            Some(commitment),
            &complaint,
        )
        .await?;
    // Counted here as well as where the principal convicts: the holder saw it first.
    let _ = ctx.misconduct(
        culprit,
        Offence::BadSubShare,
        &format!(
            "holder {dealer}'s deal {deal_cid} of {reference} fails its commitments: complaint made"
        ),
    );
    let peer = ctx.known_peer(principal)?;
    Ok((peer, vec![bytes]))
}

/// Principal: a holder of the next epoch complains about a sub-share. Judged from its
/// evidence: a dealer that cheated is excluded and, where the commitment under way counts it
/// and t other dealers' deals are in, the commitment is made again without it (its
/// deliveries); a complaint about a good sub-share is refused, naming its maker.
pub async fn on_complaint(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    cid: Cid,
) -> Result<Vec<Delivery>, CustodyError> {
    let reference = envelope.envelope().order.clone();
    let mut record = ctx.principal_record(&reference)?;
    let complaint: ReshareComplaint = RoleContext::payload(envelope)?;
    let Some(mut refresh) = record.refresh.clone() else {
        return Err(CustodyError::Invalid(format!(
            "order {reference} is not refreshing"
        )));
    };
    if complaint.request != refresh.request {
        return Err(CustodyError::Invalid(
            "a complaint about another refresh".into(),
        ));
    }
    let Some((Stage::Committed(current), old_cid, old)) = under_way(ctx, &record, &refresh)? else {
        return Err(CustodyError::Invalid(format!(
            "order {reference} has no commitment under way to complain about"
        )));
    };
    if refresh
        .excluded
        .iter()
        .any(|e| e.dealer == complaint.dealer)
    {
        // Made again, or by another holder: the dealer is out already.
        return Ok(Vec::new());
    }
    let request: ReshareRequest = ctx.stored_payload(&refresh.request)?;
    let complainer = envelope.envelope().sender;
    let recipient = request
        .fiduciaries
        .iter()
        .position(|f| *f == complainer)
        .map(|p| p as u32 + 1)
        .ok_or_else(|| {
            CustodyError::Invalid(format!("{complainer} is not a holder of the next epoch"))
        })?;
    let accused = old
        .fiduciaries
        .get((complaint.dealer as usize).wrapping_sub(1))
        .ok_or_else(|| CustodyError::Invalid("a complaint against no old holder".into()))?;
    let dealer = ctx
        .identity(accused)
        .ok_or_else(|| CustodyError::UnknownIdentity(accused.to_string()))?;
    let verdict = complaint
        .judge(
            refresh.request,
            recipient,
            &complainer,
            &dealer,
            &old_shares(&old)?,
        )
        .map_err(refused)?;
    if verdict == Verdict::FalseComplaint {
        return Err(ctx.misconduct(
            complainer,
            Offence::FalseComplaint,
            &format!(
                "its complaint {cid} of {reference} is about a good sub-share of holder {}",
                complaint.dealer
            ),
        ));
    }
    refresh.excluded.push(Exclusion {
        dealer: complaint.dealer,
        complaint: cid,
    });
    // Convicted, not refused: the step goes on without the dealer.
    let _ = ctx.misconduct(
        *accused,
        Offence::BadSubShare,
        &format!(
            "holder {} of {reference} dealt a sub-share that fails its commitments (complaint {cid}); excluded",
            complaint.dealer
        ),
    );
    record.refresh = Some(refresh.clone());
    let counted = super::refresh::countable(&refresh, old.threshold);
    if !counts_excluded(&current, &refresh) || counted.len() < old.threshold as usize {
        // Kept durably: the exclusion must outlive a restart, or the dealer would be counted
        // again.
        ctx.save(Role::Principal, &record).await?;
        return Ok(Vec::new());
    }
    let replaces = record.commitment;
    commit_anew(ctx, record, &request, (old_cid, &old), &counted, replaces).await
}
