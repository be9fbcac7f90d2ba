//! Orders that end: cancelled by their principal, or expired under their release policy
//! (`expires_at_ms`). Either way each fiduciary deletes its share and says so to the
//! principal in a signed `ShareDeleted`, and the principal counts the deletions until every
//! holder has said it: the order is then `cancelled` or `expired` there too.
//!
//! - A cancellation is an `OrderCancel` envelope from the principal on the order's chain,
//!   sent to every holder, and authorized like a release: under a policy with conditions a
//!   fiduciary holds it for the same approvals, delay and veto (a vote names the cancel
//!   envelope as its request). A holder's deletion names the cancel as its `prev`.
//! - An expiry needs no envelope: every fiduciary deletes its share once the time has come
//!   (its periodic sweep), and its deletion names the commitment in force as its `prev`.
//!
//! A share is deleted before the record says so, so a node that stops in between deletes
//! (idempotently) and says it again. A holder keeps its deletion's CID in its record and
//! sends it again when the principal sends the cancel again.
//!
//! What it does not do: refuse releases, signatures and refreshes after the end (those steps
//! check the record's state and the policy, see `ReleasePolicy::expired`).

use dta_protocol::Cid;
use dta_protocol::envelope::{Kind, VerifiedEnvelope};
use dta_protocol::order::{OrderCancel, OrderRequest};
use dta_protocol::reshare::ShareDeleted;

use super::fiduciary::policy_gate;
use super::record::{Gated, OrderRecord, held_share_name};
use crate::context::{CustodyError, Delivery, RoleContext, internal, now_millis};
use crate::role::Role;
use crate::states::OrderState;
use crate::store::Column;

/// Whether a fiduciary's record in `state` still holds a share.
pub(super) fn holds_a_share(state: OrderState) -> bool {
    matches!(
        state,
        OrderState::Generated | OrderState::Holding | OrderState::Certified | OrderState::Released
    )
}

/// Fiduciary: deletes its share of `record`'s order, says so to the principal in an envelope
/// whose `prev` is `prev`, and leaves the record in `state` with that envelope's CID kept.
async fn delete_and_say(
    ctx: &RoleContext,
    record: &mut OrderRecord,
    prev: Cid,
    state: OrderState,
) -> Result<Option<Delivery>, CustodyError> {
    let deleted = ShareDeleted {
        order: record.order,
        epoch: record.epoch,
        index: record.own_index()?,
    };
    ctx.store
        .delete_durable(
            Column::Keystore,
            held_share_name(&record.principal, &record.reference, record.epoch).as_bytes(),
        )
        .map_err(internal)?;
    let (said_cid, said) = ctx
        .publish(Kind::ShareDeleted, &record.reference, Some(prev), &deleted)
        .await?;
    record.state = state;
    record.held.clear();
    record.deletions = vec![said_cid];
    ctx.save(Role::Fiduciary, record).await?;
    tracing::info!(order = %record.reference, %state, "share deleted");
    Ok(ctx
        .peer_of(&record.principal)
        .map(|peer| (peer, vec![said])))
}

/// Fiduciary: deletes the share of every order of its whose policy expired, and says so to
/// each principal. An order that cannot be read or deleted now is named in the log and tried
/// again at the next sweep; it holds back none of the others.
pub async fn sweep(ctx: &RoleContext) -> Result<Vec<Delivery>, CustodyError> {
    let now = now_millis();
    let mut deliveries = Vec::new();
    for mut record in ctx.records_needing(crate::attention::Need::Expiry)? {
        if record.role != Role::Fiduciary || !holds_a_share(record.state) {
            continue;
        }
        let expired = ctx
            .stored_payload::<OrderRequest>(&record.order)
            .map(|order| order.policy.expired(now).is_some());
        let deleted = match expired {
            Ok(false) => continue,
            Ok(true) => {
                let prev = record.commitment.unwrap_or(record.order);
                delete_and_say(ctx, &mut record, prev, OrderState::Expired).await
            }
            Err(err) => Err(err),
        };
        match deleted {
            Ok(delivery) => deliveries.extend(delivery),
            Err(err) => {
                tracing::warn!(order = %record.reference, %err, "an expired order's share is not deleted yet");
            }
        }
    }
    Ok(deliveries)
}

/// Principal: cancels `reference`. The cancel goes on the order's chain and to every holder;
/// asked again while holders have not all answered, the same cancel goes out again.
pub async fn create_cancel(
    ctx: &RoleContext,
    reference: &str,
) -> Result<(OrderRecord, Vec<Delivery>), CustodyError> {
    let mut record = ctx.principal_record(reference)?;
    let cancel = match record.state {
        OrderState::Cancelling => record.head,
        OrderState::Certified | OrderState::Released => {
            if super::release::open_release(ctx, &record)?.is_some() {
                return Err(CustodyError::Conflict(format!(
                    "order {reference} has a release under way; cancel it once that is done"
                )));
            }
            let (cid, _) = ctx
                .publish(
                    Kind::OrderCancel,
                    reference,
                    Some(record.head),
                    &OrderCancel {
                        order: record.order,
                    },
                )
                .await?;
            record.head = cid;
            record.state = OrderState::Cancelling;
            ctx.save(Role::Principal, &record).await?;
            tracing::info!(order = %reference, "order cancelled; holders asked to delete their shares");
            cid
        }
        other => {
            return Err(CustodyError::Conflict(format!(
                "order {reference} is {other}: only a certified order with no release or \
                 refresh under way can be cancelled"
            )));
        }
    };
    let deliveries = super::refresh::to_every_fiduciary(ctx, &record, cancel)?;
    Ok((record, deliveries))
}

/// Fiduciary: the principal cancels an order this node holds a share of. Under a policy with
/// conditions the cancel waits for them like a release (`None` while held); then the share
/// is deleted and the deletion said to the principal.
pub async fn on_cancel(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    cid: Cid,
) -> Result<Option<Delivery>, CustodyError> {
    let reference = envelope.envelope().order.clone();
    // Records are kept by principal: only the order's principal finds one here.
    let mut record = ctx.fiduciary_record(&envelope.envelope().sender, &reference)?;
    let cancel: OrderCancel = RoleContext::payload(envelope)?;
    if cancel.order != record.order {
        return Err(CustodyError::Invalid(
            "a cancel that names another order".into(),
        ));
    }
    if record.state == OrderState::Cancelled {
        // Said before: the principal did not get it, so it goes again.
        let said = record
            .deletions
            .iter()
            .filter_map(|c| ctx.block(c))
            .collect();
        return Ok(ctx.peer_of(&record.principal).map(|peer| (peer, said)));
    }
    if !holds_a_share(record.state) {
        return Err(CustodyError::Conflict(format!(
            "order {reference} is {} here: no share to delete",
            record.state
        )));
    }
    let order: OrderRequest = ctx.stored_payload(&record.order)?;
    if order.policy.has_conditions()
        && policy_gate(ctx, &mut record, &order, cid, Gated::Cancel)
            .await?
            .is_some()
    {
        return Ok(None);
    }
    delete_and_say(ctx, &mut record, cid, OrderState::Cancelled).await
}

/// Principal: the holders that said they deleted their shares after the cancel at the head
/// of `record` (`block` reads a stored block).
pub(crate) fn deleted_after_cancel(
    record: &OrderRecord,
    block: impl Fn(&Cid) -> Option<Vec<u8>>,
) -> Vec<Cid> {
    record
        .deletions
        .iter()
        .filter_map(&block)
        .filter_map(|bytes| dta_protocol::envelope::SignedEnvelope::decode(&bytes).ok())
        .filter(|signed| signed.envelope.prev == Some(record.head))
        .map(|signed| signed.envelope.sender)
        .collect()
}

/// Refuses a deletion whose sender is not holder `deleted.index` of `committee`.
pub(super) fn holder_of(
    committee: &[Cid],
    deleted: &ShareDeleted,
    sender: &Cid,
) -> Result<(), CustodyError> {
    if committee.get((deleted.index as usize).wrapping_sub(1)) == Some(sender) {
        return Ok(());
    }
    Err(CustodyError::Invalid(format!(
        "{sender} is not holder {} of the shares it says it deleted",
        deleted.index
    )))
}

/// Principal: whether a holder's deletion ends the order (a cancel's, or an expiry's of the
/// epoch and commitment in force) rather than follows a refresh.
pub(super) fn ends_the_order(record: &OrderRecord, deleted: &ShareDeleted, prev: Cid) -> bool {
    match record.state {
        OrderState::Cancelling | OrderState::Cancelled => prev == record.head,
        OrderState::Refreshing | OrderState::Committed => false,
        _ => deleted.epoch == record.epoch && record.commitment.unwrap_or(record.order) == prev,
    }
}

/// Principal: a holder says it deleted its share of an order that ends. Kept once per
/// holder, when the sender is the holder of that index and the order was cancelled, or has
/// expired by this node's clock (give or take the clocks' disagreement); once every holder
/// said it, the order is `cancelled` or `expired`.
pub(super) async fn on_deleted(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    cid: Cid,
    mut record: OrderRecord,
    deleted: &ShareDeleted,
) -> Result<(), CustodyError> {
    let sender = envelope.envelope().sender;
    let cancelled = matches!(record.state, OrderState::Cancelling | OrderState::Cancelled);
    if !cancelled {
        let order: OrderRequest = ctx.stored_payload(&record.order)?;
        let now = now_millis().saturating_add(ctx.clock_tolerance_ms);
        if order.policy.expired(now).is_none() {
            return Err(CustodyError::Invalid(format!(
                "{sender} says it deleted its share of {}, which has not ended",
                record.reference
            )));
        }
    }
    if deleted.order != record.order || deleted.epoch != record.epoch {
        return Err(CustodyError::Invalid(format!(
            "{sender} names another order or epoch than the one it says it deleted a share of"
        )));
    }
    holder_of(&record.fiduciaries, deleted, &sender)?;
    let of_this_end = |said: &Cid| {
        ctx.block(said)
            .and_then(|bytes| dta_protocol::envelope::SignedEnvelope::decode(&bytes).ok())
            .is_some_and(|signed| signed.envelope.prev == envelope.envelope().prev)
    };
    let said_before = record.deletions.iter().any(|said| {
        of_this_end(said)
            && ctx
                .stored_payload::<ShareDeleted>(said)
                .is_ok_and(|d| d.index == deleted.index)
    });
    if said_before {
        return Ok(());
    }
    let before = record
        .deletions
        .iter()
        .filter(|said| of_this_end(said))
        .count();
    record.deletions.push(cid);
    if before + 1 == record.fiduciaries.len() {
        record.state = if cancelled {
            OrderState::Cancelled
        } else {
            OrderState::Expired
        };
        tracing::info!(order = %record.reference, state = %record.state, "every holder deleted its share");
    }
    ctx.save(Role::Principal, &record).await
}
