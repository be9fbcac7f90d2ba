//! Approvals and vetoes of release requests, under an order's release policy, of requests
//! that move custody to another committee or threshold and of signature requests (each is
//! authorized like a release; see `super::refresh` and `super::signing`).
//!
//! An approver's node makes one ([`create_vote`]): it finds the request (stored, or
//! fetched over Bitswap) and its order request, checks the approver is in a group the policy
//! names, signs an `approval` (or `veto`) envelope as that identity with the request as its
//! `prev`, and delivers it with the request to every fiduciary and to the principal. A
//! fiduciary or principal takes one in ([`on_vote`]): it must be for an order it holds, from a
//! member, for a request of that order, not a second one by the same identity; it is kept,
//! and a request the fiduciary holds for its policy is looked at again. The decision itself
//! is [`dta_protocol::policy::ReleasePolicy::evaluate`], made in the fiduciary's release step
//! with [`votes_of`].

use dta_protocol::Cid;
use dta_protocol::dagcbor::{self, Limits};
use dta_protocol::envelope::{Kind, SignedEnvelope, VerifiedEnvelope};
use dta_protocol::order::{OrderRequest, ReleaseRequest};
use dta_protocol::policy::{Approval, ReleasePolicy, Signed, Situation};
use dta_protocol::reshare::ReshareRequest;
use dta_protocol::signing::SignRequest;

use crate::role::Role;
use crate::store::Store;

use super::record::OrderRecord;
use crate::context::{CustodyError, Delivery, RoleContext, internal, now_millis};

/// An approval or veto to make.
#[derive(Debug, Clone)]
pub struct NewVote {
    /// The order's reference.
    pub reference: String,
    /// The release or reshare request it is about.
    pub request: Cid,
    /// A veto rather than an approval.
    pub veto: bool,
    /// The approver: an identity this node hosts, or (when absent) the node's own.
    pub approver: Option<Cid>,
}

/// A block this node has, or one fetched from its peers, verified as an envelope.
async fn envelope_of(
    ctx: &RoleContext,
    cid: &Cid,
) -> Result<(VerifiedEnvelope, Vec<u8>), CustodyError> {
    let bytes = match ctx.block(cid) {
        Some(bytes) => bytes,
        None => ctx
            .network
            .fetch_block(*cid)
            .await
            .map_err(|e| CustodyError::NotFound(format!("{cid}: {e}")))?,
    };
    Ok((ctx.verify(&bytes)?, bytes))
}

/// Makes, keeps and addresses an approval or veto; its CID and the deliveries to the
/// order's fiduciaries and principal.
pub async fn create_vote(
    ctx: &RoleContext,
    vote: &NewVote,
) -> Result<(Cid, Vec<Delivery>), CustodyError> {
    let approver_cid = vote.approver.unwrap_or_else(|| ctx.local.cid());
    ctx.refuse_revoked([&approver_cid])?;
    let approver = ctx.own(&approver_cid).ok_or_else(|| {
        CustodyError::Invalid(format!(
            "{approver_cid} is not an identity of this node: it cannot sign as it"
        ))
    })?;
    let (request_envelope, request_bytes) = envelope_of(ctx, &vote.request).await?;
    let order_cid = order_of_request(&request_envelope)
        .filter(|_| request_envelope.envelope().order == vote.reference)
        .ok_or_else(|| {
            CustodyError::Invalid(format!(
                "{} is not a release, reshare, signature or cancel request of order {}",
                vote.request, vote.reference
            ))
        })?;
    let (order_envelope, order_bytes) = envelope_of(ctx, &order_cid).await?;
    let order: OrderRequest = RoleContext::payload(&order_envelope)?;
    if order_envelope.envelope().sender != request_envelope.envelope().sender {
        return Err(CustodyError::Invalid(
            "the request is not by the order's principal".into(),
        ));
    }
    let policy = &order.policy;
    let member = if vote.veto {
        policy
            .veto
            .as_ref()
            .is_some_and(|g| g.members.contains(&approver_cid))
    } else {
        policy
            .groups
            .iter()
            .any(|g| g.members.contains(&approver_cid))
    };
    if !member {
        return Err(CustodyError::Invalid(format!(
            "{approver_cid} is not in {} of order {}'s release policy",
            if vote.veto {
                "the veto group"
            } else {
                "any approver group"
            },
            vote.reference
        )));
    }
    let payload = Approval {
        order: order_cid,
        request: vote.request,
    };
    let kind = if vote.veto {
        Kind::Veto
    } else {
        Kind::Approval
    };
    let (cid, bytes) = ctx
        .publish_as(
            &approver,
            kind,
            &vote.reference,
            Some(vote.request),
            &payload,
        )
        .await?;
    ctx.commit().await?;
    // The order and the request go along: a fiduciary may see the vote before the request.
    let bundle = vec![order_bytes, request_bytes, bytes];
    let mut deliveries = Vec::new();
    for party in order
        .fiduciaries
        .iter()
        .chain(std::iter::once(&order.principal))
    {
        match ctx.peer_of(party) {
            Some(peer) if !deliveries.iter().any(|(p, _): &Delivery| *p == peer) => {
                deliveries.push((peer, bundle.clone()));
            }
            Some(_) => {}
            None => {
                tracing::warn!(%party, "an order's party is not known here; the vote is not sent to it")
            }
        }
    }
    tracing::info!(order = %vote.reference, request = %vote.request, veto = vote.veto, "vote made");
    Ok((cid, deliveries))
}

/// The order request envelope a release, reshare, signature or cancel request names; `None` for any
/// other envelope.
fn order_of_request(envelope: &VerifiedEnvelope) -> Option<Cid> {
    match envelope.envelope().kind {
        Kind::ReleaseRequest => RoleContext::payload::<ReleaseRequest>(envelope)
            .ok()
            .map(|r| r.order),
        Kind::ReshareRequest => RoleContext::payload::<ReshareRequest>(envelope)
            .ok()
            .map(|r| r.order),
        Kind::SignRequest => RoleContext::payload::<SignRequest>(envelope)
            .ok()
            .map(|r| r.order),
        Kind::OrderCancel => RoleContext::payload::<dta_protocol::order::OrderCancel>(envelope)
            .ok()
            .map(|r| r.order),
        _ => None,
    }
}

/// The votes a record keeps on `request` (each links to the request it is about): what a
/// move's commitment or a signature names for auditors.
pub(crate) fn votes_on(ctx: &RoleContext, record: &OrderRecord, request: Cid) -> Vec<Cid> {
    record
        .votes
        .iter()
        .filter(|vote| {
            ctx.block(vote)
                .and_then(|bytes| SignedEnvelope::decode(&bytes).ok())
                .is_some_and(|signed| signed.envelope.prev == Some(request))
        })
        .copied()
        .collect()
}

/// The approvals and vetoes a record keeps, as the policy reads them. Their blocks were
/// verified before they were stored, so they are only decoded here.
pub fn votes_of(
    store: &Store,
    record: &OrderRecord,
) -> Result<(Vec<Signed>, Vec<Signed>), CustodyError> {
    let mut approvals = Vec::new();
    let mut vetoes = Vec::new();
    for cid in &record.votes {
        let bytes = store
            .block(cid)
            .map_err(internal)?
            .ok_or_else(|| internal(format!("vote block {cid} missing")))?;
        let envelope = SignedEnvelope::decode(&bytes).map_err(internal)?.envelope;
        let public = envelope
            .public
            .ok_or_else(|| internal(format!("vote {cid} has no payload")))?;
        let approval: Approval = dagcbor::decode(&public, Limits::default()).map_err(internal)?;
        let signed = Signed {
            signer: envelope.sender,
            approval,
            prev: envelope.prev,
            signed_ms: envelope.timestamp,
        };
        match envelope.kind {
            Kind::Veto => vetoes.push(signed),
            _ => approvals.push(signed),
        }
    }
    Ok((approvals, vetoes))
}

/// The release policy of a record's order, if its order request is stored.
pub fn policy_of(store: &Store, record: &OrderRecord) -> Option<ReleasePolicy> {
    let bytes = store.block(&record.order).ok()??;
    let public = SignedEnvelope::decode(&bytes).ok()?.envelope.public?;
    dagcbor::decode::<OrderRequest>(&public, Limits::default())
        .ok()
        .map(|order| order.policy)
}

/// Fiduciary: the requests it holds for their policies, to look at again (a delay may have
/// ended).
pub fn held_requests(ctx: &RoleContext) -> Result<Vec<Vec<u8>>, CustodyError> {
    Ok(ctx
        .records_needing(crate::attention::Need::Held)?
        .into_iter()
        .filter(|r| r.role == Role::Fiduciary)
        .flat_map(|r| r.held.into_iter().map(|h| h.request))
        .filter_map(|request| ctx.block(&request))
        .collect())
}

/// What a vote means for a fiduciary's held release.
#[derive(Debug)]
pub enum VoteOutcome {
    /// Kept; nothing waits on it here.
    Kept,
    /// Kept; the fiduciary holds the request it is about, which should be looked at again.
    Recheck(Vec<u8>),
    /// Kept by the principal, and to be sent on with the order and the request to the
    /// fiduciaries custody moved to (the approver's node sends to the order's first ones).
    Forward(Vec<Delivery>),
}

/// Fiduciary or principal: an approval or veto arrived. Refuses one that is not for an order
/// this role holds, not by a member, not for a request of that order, or a second by the same
/// identity for the same request.
pub async fn on_vote(
    ctx: &RoleContext,
    role: Role,
    envelope: &VerifiedEnvelope,
    cid: Cid,
) -> Result<VoteOutcome, CustodyError> {
    let reference = envelope.envelope().order.clone();
    let veto = envelope.envelope().kind == Kind::Veto;
    let approval: Approval = RoleContext::payload(envelope)?;
    let order: OrderRequest = ctx.stored_payload(&approval.order)?;
    let mut record = ctx
        .record(role, &order.principal, &reference)?
        .filter(|r| r.order == approval.order)
        .ok_or_else(|| CustodyError::NotFound(reference.clone()))?;
    if !order.policy.has_conditions() {
        return Err(CustodyError::Invalid(format!(
            "order {reference} has no release conditions to approve"
        )));
    }
    if record.votes.contains(&cid) {
        return Ok(VoteOutcome::Kept);
    }
    ctx.refuse_revoked([&envelope.envelope().sender])?;
    let request_envelope = ctx.verified_block(&approval.request).map_err(|_| {
        CustodyError::Invalid(format!(
            "vote for request {}, which is not here",
            approval.request
        ))
    })?;
    if order_of_request(&request_envelope) != Some(approval.order)
        || request_envelope.envelope().order != reference
    {
        return Err(CustodyError::Invalid(
            "the vote's request is not a release, reshare, signature or cancel request of this order"
                .into(),
        ));
    }
    let signed = Signed {
        signer: envelope.envelope().sender,
        approval,
        prev: envelope.envelope().prev,
        signed_ms: envelope.envelope().timestamp,
    };
    let situation = Situation {
        order: record.order,
        request: approval.request,
        request_seen_ms: now_millis(),
        now_ms: now_millis(),
        tolerance_ms: ctx.clock_tolerance_ms,
        released: 0,
        approvals: &[],
        vetoes: &[],
    };
    order
        .policy
        .check_approval(&signed, &situation, veto)
        .map_err(|refusal| {
            CustodyError::Invalid(format!(
                "{} by {} refused: {refusal}",
                if veto { "veto" } else { "approval" },
                signed.signer
            ))
        })?;
    let (approvals, vetoes) = votes_of(&ctx.store, &record)?;
    let same = if veto { &vetoes } else { &approvals };
    if same
        .iter()
        .any(|s| s.signer == signed.signer && s.approval.request == approval.request)
    {
        return Err(CustodyError::Conflict(format!(
            "{} already {} request {}",
            signed.signer,
            if veto { "vetoed" } else { "approved" },
            approval.request
        )));
    }
    record.votes.push(cid);
    ctx.save(role, &record).await?;
    if role == Role::Principal {
        let moved_to: Vec<Cid> = record
            .fiduciaries
            .iter()
            .filter(|f| !order.fiduciaries.contains(f))
            .copied()
            .collect();
        let bundle: Vec<Vec<u8>> = [approval.order, approval.request, cid]
            .iter()
            .filter_map(|c| ctx.block(c))
            .collect();
        return Ok(VoteOutcome::Forward(super::principal::to_each(
            ctx, &moved_to, &bundle,
        )));
    }
    let held = record.held.iter().any(|h| h.request == approval.request);
    Ok(match (held, ctx.block(&approval.request)) {
        (true, Some(bytes)) => VoteOutcome::Recheck(bytes),
        _ => VoteOutcome::Kept,
    })
}
