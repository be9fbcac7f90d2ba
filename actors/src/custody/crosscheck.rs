//! Fiduciary: a commitment that stays uncertified is shown to the order's other fiduciaries,
//! so that a principal that gave them different commitments for one order is caught.
//!
//! Such a principal never gets a certificate (each fiduciary signs the commitment it holds,
//! and the aggregate must verify over one), and in the normal flow no fiduciary sees
//! another's commitment. So a fiduciary whose signed commitment is still uncertified
//! [`STALLED_AFTER_MS`] after the principal made it sends that commitment, once, to the
//! order's other fiduciaries. One that signed a different first commitment over the same
//! order request then holds two commitments the principal signed for one order: its
//! conviction for equivocation ([`judge`], called by the fiduciary's commitment step).
//! Honest orders pay nothing: their certificate comes long before.
//!
//! What it does not do: put the proof in the order's log (the principal keeps that log). The
//! fiduciary keeps both envelopes, and its log and metrics name the principal.

use std::collections::HashSet;

use dta_protocol::Cid;
use dta_protocol::envelope::SignedEnvelope;
use dta_protocol::misconduct::Offence;
use dta_protocol::order::Commitment;

use super::record::OrderRecord;
use crate::context::{CustodyError, Delivery, RoleContext, now_millis};
use crate::role::Role;

/// How long after the principal made it a fiduciary's commitment may stay uncertified before
/// the fiduciary shows it to the order's other fiduciaries.
pub const STALLED_AFTER_MS: u64 = 20_000;

/// The deliveries that show each stalled first commitment this fiduciary signed, and has not
/// shown since it started (`shown`), to the order's other fiduciaries.
pub fn show_stalled(
    ctx: &RoleContext,
    shown: &mut HashSet<Cid>,
) -> Result<Vec<Delivery>, CustodyError> {
    show_stalled_at(ctx, shown, now_millis())
}

/// [`show_stalled`] at `now` (ms since the Unix epoch).
pub(crate) fn show_stalled_at(
    ctx: &RoleContext,
    shown: &mut HashSet<Cid>,
    now: u64,
) -> Result<Vec<Delivery>, CustodyError> {
    let mut deliveries = Vec::new();
    let uncertified = crate::attention::Need::Uncertified;
    for record in ctx.records_needing(uncertified)? {
        let Some(commitment) = uncertified_commitment(ctx, &record) else {
            ctx.done_with(&record, uncertified);
            continue;
        };
        let Some(bytes) = ctx.block(&commitment) else {
            continue;
        };
        let made_ms = match SignedEnvelope::decode(&bytes) {
            Ok(signed) => signed.envelope.timestamp,
            Err(_) => continue,
        };
        if now.saturating_sub(made_ms) < STALLED_AFTER_MS {
            continue;
        }
        // Shown once: the record is looked at again only if it changes.
        ctx.done_with(&record, uncertified);
        if !shown.insert(commitment) {
            continue;
        }
        let mut peers: Vec<_> = record
            .fiduciaries
            .iter()
            .filter(|fiduciary| ctx.own(fiduciary).is_none())
            .filter_map(|fiduciary| ctx.peer_of(fiduciary))
            .collect();
        peers.sort();
        peers.dedup();
        tracing::info!(
            order = %record.reference,
            %commitment,
            fiduciaries = peers.len(),
            "commitment still uncertified: shown to the order's other fiduciaries"
        );
        deliveries.extend(peers.into_iter().map(|peer| (peer, vec![bytes.clone()])));
    }
    Ok(deliveries)
}

/// The first commitment of a fiduciary record that has no certificate yet.
fn uncertified_commitment(ctx: &RoleContext, record: &OrderRecord) -> Option<Cid> {
    if record.role != Role::Fiduciary || record.certificate.is_some() {
        return None;
    }
    let commitment = record.commitment?;
    let payload: Commitment = ctx.stored_payload(&commitment).ok()?;
    payload.reshared.is_none().then_some(commitment)
}

/// Fiduciary: `commitment` (`commitment_cid`), signed by `record`'s principal, arrived for an
/// order whose record holds another first commitment over the same order request: the
/// principal's equivocation, counted and refused. `Ok` for anything else.
pub fn judge(
    ctx: &RoleContext,
    record: &OrderRecord,
    commitment: &Commitment,
    commitment_cid: Cid,
) -> Result<(), CustodyError> {
    let Some(held) = record.commitment else {
        return Ok(());
    };
    if held == commitment_cid || commitment.reshared.is_some() || commitment.order != record.order {
        return Ok(());
    }
    let held_payload: Commitment = ctx.stored_payload(&held)?;
    if held_payload.reshared.is_some() || held_payload.order != commitment.order {
        return Ok(());
    }
    Err(ctx.misconduct(
        record.principal,
        Offence::Equivocation,
        &format!(
            "two commitments for order {}: {held}, which this fiduciary signed, and \
             {commitment_cid}",
            record.reference
        ),
    ))
}
