//! Carrying on after a restart or a stall: records of older versions re-keyed, heads
//! remembered, orders not yet certified, releases not yet received and signatures not yet
//! made sent again (not too often), a beneficiary asking again for the shares it lacks, a
//! receipt sent again, and who an order still waits for ([`awaited`]). It starts no new step.

use dta_protocol::Cid;
use dta_protocol::dagcbor::{self, Limits};
use dta_protocol::envelope::{SignedEnvelope, VerifiedEnvelope};
use dta_protocol::order::{Commitment, ReleaseRequest};
use dta_protocol::reshare::ReshareRequest;

use crate::attention::Need;
use crate::role::Role;
use crate::states::OrderState;
use crate::store::{Column, Store};

use super::record::{OrderRecord, received_name, record_key, secret_name, share_name};
use super::release::{ReleasePlan, open_release, release_deliveries};
use crate::context::{CustodyError, Delivery, RoleContext, internal, now_millis};

/// Moves what a fiduciary or beneficiary stored before its records were keyed by the order's
/// principal (`fiduciary/REF`, `share/REF`, `received/REF/I`, `secret/REF`) to its keys under
/// the principal, once, at the role's start. Secrets are unwrapped and wrapped again under
/// their new names (a wrapped secret is bound to its name). The new record is written before
/// the old keys are deleted, so a crash half-way only means moving it again. Returns how many
/// records moved.
pub async fn migrate_unkeyed_records(ctx: &RoleContext, role: Role) -> Result<usize, CustodyError> {
    if role == Role::Principal {
        return Ok(0);
    }
    let prefix = format!("{}/", role.name());
    let mut moved = 0;
    for (key, bytes) in ctx.store.scan(Column::Orders).map_err(internal)? {
        let Some(rest) = key.strip_prefix(prefix.as_bytes()) else {
            continue;
        };
        // References have no '/': a key with one more part is keyed already.
        if rest.contains(&b'/') {
            continue;
        }
        // One record that cannot move does not keep the others where they were.
        match migrate_record(ctx, role, key, bytes).await {
            Ok(()) => moved += 1,
            Err(err) => tracing::warn!(role = role.name(), %err, "an old record did not move"),
        }
    }
    Ok(moved)
}

/// Moves one record stored under `key` (see [`migrate_unkeyed_records`]).
pub(crate) async fn migrate_record(
    ctx: &RoleContext,
    role: Role,
    key: Vec<u8>,
    bytes: Vec<u8>,
) -> Result<(), CustodyError> {
    let record: OrderRecord =
        dagcbor::decode_lenient(&bytes, Limits::default()).map_err(internal)?;
    let (principal, reference) = (record.principal, record.reference.as_str());
    let mut names = Vec::new();
    if role == Role::Fiduciary {
        names.push((
            format!("share/{reference}"),
            share_name(&principal, reference),
        ));
    } else {
        for index in record.shares.keys() {
            names.push((
                format!("received/{reference}/{index}"),
                received_name(&principal, reference, *index),
            ));
        }
        names.push((
            format!("secret/{reference}"),
            secret_name(&principal, reference),
        ));
    }
    let mut old_keys = Vec::new();
    for (old, new) in names {
        let stored = ctx
            .store
            .get(Column::Keystore, old.as_bytes())
            .map_err(internal)?;
        if stored.is_none() {
            continue;
        }
        let value = ctx.load_secret(&old).await?;
        ctx.keep_secret(new, value.expose().to_vec()).await?;
        old_keys.push((Column::Keystore, old.into_bytes()));
    }
    ctx.stage(
        Column::Orders,
        record_key(role, &principal, reference),
        bytes,
    );
    ctx.commit().await?;
    ctx.note_attention(role, &record);
    // The old record last: while it is there, the move runs again at the next start.
    old_keys.push((Column::Orders, key));
    for (column, key) in old_keys {
        ctx.store.delete_durable(column, &key).map_err(internal)?;
    }
    tracing::info!(order = %reference, %principal, role = role.name(),
            "record moved under its principal");
    Ok(())
}

/// Whether a principal's record in `state` has its head announced: the states that settle a
/// step.
pub fn settles_a_step(state: OrderState) -> bool {
    match state {
        OrderState::Certified
        | OrderState::Released
        | OrderState::Aborted
        | OrderState::Retired
        | OrderState::Expired
        | OrderState::Cancelled => true,
        OrderState::Cancelling
        | OrderState::Ordered
        | OrderState::Generating
        | OrderState::Refreshing
        | OrderState::Dealt
        | OrderState::Committed
        | OrderState::Releasing
        | OrderState::Generated
        | OrderState::Holding
        | OrderState::Collecting
        | OrderState::Received => false,
    }
}

/// Keeps the heads of this node's settled orders for peers that connect later (at start:
/// announcements made before a restart are in no peer's memory of gossip).
pub fn remember_settled_heads(ctx: &RoleContext) -> Result<(), CustodyError> {
    for record in ctx.records()? {
        if record.role == Role::Principal && settles_a_step(record.state) {
            ctx.network
                .remember_head(dta_protocol::network::HeadAnnouncement {
                    reference: record.reference,
                    head: record.head,
                });
        }
    }
    Ok(())
}

/// Whether a principal's order in `state` waits for fiduciaries, and may need resuming.
pub(crate) fn waits_for_fiduciaries(state: OrderState) -> bool {
    match state {
        OrderState::Ordered
        | OrderState::Generating
        | OrderState::Refreshing
        | OrderState::Dealt
        | OrderState::Committed
        | OrderState::Cancelling => true,
        OrderState::Certified
        | OrderState::Aborted
        | OrderState::Retired
        | OrderState::Expired
        | OrderState::Cancelled
        | OrderState::Releasing
        | OrderState::Released
        | OrderState::Generated
        | OrderState::Holding
        | OrderState::Collecting
        | OrderState::Received => false,
    }
}

/// Principal: whether a signature of the order was asked for and not made (a made one
/// leaves the record, see `RoleContext::keep_made`).
pub(crate) fn signing_open(record: &OrderRecord) -> bool {
    !record.signing.is_empty()
}

/// Principal: what to send again so that stalled orders (no progress for `quiet_for`) move
/// on: the order request to every fiduciary that has not sent its key share, the deal or
/// commitment to every fiduciary that has not signed yet, and each signature request not
/// yet answered by a signature to every fiduciary (open releases are sent again by
/// [`resume_releases`]). Deliveries are idempotent on the receiving side, so sending too
/// often costs only bandwidth.
pub fn resume(
    ctx: &RoleContext,
    quiet_for: std::time::Duration,
) -> Result<Vec<Delivery>, CustodyError> {
    let mut deliveries = Vec::new();
    for record in ctx.records_needing(Need::Resume)? {
        if record.role != Role::Principal
            || !(waits_for_fiduciaries(record.state) || signing_open(&record))
        {
            continue;
        }
        let recent = ctx
            .progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&record.reference)
            .is_some_and(|at| at.elapsed() < quiet_for);
        if recent {
            continue;
        }
        let waiting = |have: &dyn Fn(u32, &Cid) -> bool| {
            record
                .fiduciaries
                .iter()
                .enumerate()
                .filter(move |(position, fiduciary)| !have(*position as u32 + 1, fiduciary))
                .map(|(position, fiduciary)| (position as u32 + 1, *fiduciary))
                .collect::<Vec<_>>()
        };
        let mut send = |fiduciary: &Cid, cids: &[Option<Cid>]| {
            let blocks: Option<Vec<Vec<u8>>> = cids
                .iter()
                .map(|cid| cid.and_then(|c| ctx.block(&c)))
                .collect();
            if let (Some(peer), Some(blocks)) = (ctx.peer_of(fiduciary), blocks) {
                deliveries.push((peer, blocks));
            }
        };
        // A signature asked for and not made: the request again, with the certificate. Each
        // fiduciary answers with what it sent for it (FROST: fresh commitments if it lost its
        // nonces), so a principal that restarted, or fiduciaries that were down, carry on.
        for run in &record.signing {
            for fiduciary in &record.fiduciaries {
                send(fiduciary, &[record.certificate, Some(run.request)]);
            }
        }
        let signed = |_: u32, f: &Cid| record.signatures.contains_key(&f.to_string());
        match record.state {
            OrderState::Ordered => {
                for (_, fiduciary) in waiting(&|index, _| record.shares.contains_key(&index)) {
                    send(&fiduciary, &[Some(record.order)]);
                }
            }
            OrderState::Generating => {
                // Every fiduciary gets the round again while one key share is missing: a
                // fiduciary that lacks a share cannot ask its dealer, but the dealer sends
                // its shares again when it sees the round again.
                let generation = record.key_generation.clone().unwrap_or_default();
                let missing = waiting(&|index, _| generation.sent.contains_key(&index));
                if !missing.is_empty() {
                    for fiduciary in &record.fiduciaries {
                        send(fiduciary, &[generation.round]);
                    }
                }
            }
            OrderState::Dealt => {
                for (index, fiduciary) in waiting(&signed) {
                    let deal = record.shares.get(&index).copied();
                    send(&fiduciary, &[Some(record.order), record.commitment, deal]);
                }
            }
            OrderState::Refreshing => {
                // Holders whose deals are not all in get the request again (they send the
                // same deals again).
                let refresh = record.refresh.clone();
                let dealt = |index: u32, _: &Cid| {
                    refresh.as_ref().is_some_and(|r| {
                        r.deals
                            .iter()
                            .any(|d| d.dealer == index && d.to.iter().all(Option::is_some))
                    })
                };
                for (_, fiduciary) in waiting(&dealt) {
                    send(
                        &fiduciary,
                        &[record.certificate, refresh.as_ref().map(|r| r.request)],
                    );
                }
            }
            OrderState::Committed => {
                // A refreshed commitment goes with the deals it counts and its request, and the
                // certificate that request names: a holder that was down when the request went
                // out learns of the certificate from it, and deals before it signs (once it
                // signs, its old share is gone, and a dealer excluded since could not be
                // replaced by it).
                let reshared = record
                    .commitment
                    .and_then(|cid| ctx.stored_payload::<Commitment>(&cid).ok())
                    .and_then(|c| c.reshared);
                for (index, fiduciary) in waiting(&signed) {
                    let mut cids: Vec<Option<Cid>> = reshared
                        .iter()
                        .flat_map(|r| {
                            // A fiduciary that joins needs the order and the commitment before.
                            [Some(record.order), Some(r.previous)]
                                .into_iter()
                                .chain(
                                    super::refresh::deals_for(&r.deals, index)
                                        .into_iter()
                                        .map(Some),
                                )
                                .chain(
                                    ctx.stored_payload::<ReshareRequest>(&r.request)
                                        .ok()
                                        .map(|request| Some(request.certificate)),
                                )
                                .chain([Some(r.request)])
                        })
                        .collect();
                    cids.push(record.commitment);
                    send(&fiduciary, &cids);
                }
            }
            OrderState::Cancelling => {
                // Holders that have not said they deleted their shares get the cancel again
                // (one that did already sends its word again).
                let deleted = super::ending::deleted_after_cancel(&record, |c| ctx.block(c));
                for (_, fiduciary) in waiting(&|_, f| deleted.contains(f)) {
                    send(&fiduciary, &[record.certificate, Some(record.head)]);
                }
            }
            OrderState::Certified
            | OrderState::Releasing
            | OrderState::Released
            | OrderState::Generated
            | OrderState::Holding
            | OrderState::Collecting
            | OrderState::Received
            | OrderState::Aborted
            | OrderState::Retired
            | OrderState::Expired
            | OrderState::Cancelled => {}
        }
    }
    Ok(deliveries)
}

/// How [`RoleContext::releases_open`] names a record's open release: by principal and
/// reference, as two principals may use one reference.
pub(crate) fn open_release_key(record: &OrderRecord) -> String {
    format!("{}/{}", record.principal, record.reference)
}

/// Whether `record`'s open release moved on (or was sent again) within `quiet_for`; if not,
/// it counts as sent again now.
pub(crate) fn release_is_recent(
    ctx: &RoleContext,
    record: &OrderRecord,
    quiet_for: std::time::Duration,
) -> bool {
    let mut open = ctx
        .releases_open
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let key = open_release_key(record);
    if open.get(&key).is_some_and(|at| at.elapsed() < quiet_for) {
        return true;
    }
    open.insert(key, std::time::Instant::now());
    false
}

/// Principal: the releases that no receipt answered within `quiet_for`, to send again as
/// they were: the chain to the beneficiary, then the request to every fiduciary. A fiduciary
/// that served it answers with the same sealed share, so a beneficiary that lost what it had
/// received (it crashed before its record was durable) gets it again, and nothing is
/// released twice.
pub fn resume_releases(
    ctx: &RoleContext,
    quiet_for: std::time::Duration,
) -> Result<Vec<ReleasePlan>, CustodyError> {
    let mut plans = Vec::new();
    for record in ctx.records_needing(Need::Releasing)? {
        if record.role != Role::Principal || record.state != OrderState::Releasing {
            continue;
        }
        let (Some(certificate), Some((cid, bytes, request))) =
            (record.certificate, open_release(ctx, &record)?)
        else {
            continue;
        };
        if release_is_recent(ctx, &record, quiet_for) {
            continue;
        }
        if let Some(refusal) = refused_by_policy(ctx, &record, cid)? {
            tracing::debug!(order = %record.reference, sequence = request.sequence, %refusal,
                "release refused by its policy: not sent again");
            continue;
        }
        match release_deliveries(ctx, &record, certificate, cid, bytes, &request.beneficiary) {
            Ok((beneficiary, fiduciaries)) => {
                tracing::info!(order = %record.reference, sequence = request.sequence,
                    "no receipt yet: release sent again");
                plans.push(ReleasePlan {
                    record,
                    beneficiary,
                    fiduciaries,
                });
            }
            Err(err) => {
                tracing::debug!(order = %record.reference, %err, "open release not sent again");
            }
        }
    }
    Ok(plans)
}

/// Principal: why the order's release policy refuses release request `request` for good, as
/// the votes this node has and its clock see it (vetoed, too early, none left); `None` if it
/// does not (or the order has no conditions). Fiduciaries decide for themselves; this only
/// spares them a request they would refuse again.
fn refused_by_policy(
    ctx: &RoleContext,
    record: &OrderRecord,
    request: Cid,
) -> Result<Option<dta_protocol::policy::PolicyRefusal>, CustodyError> {
    let Some(policy) = super::approval::policy_of(&ctx.store, record)
        .filter(dta_protocol::policy::ReleasePolicy::has_conditions)
    else {
        return Ok(None);
    };
    let (approvals, vetoes) = super::approval::votes_of(&ctx.store, record)?;
    let asked = ctx.verified_block(&request)?.envelope().timestamp;
    let situation = dta_protocol::policy::Situation {
        order: record.order,
        request,
        request_seen_ms: asked,
        now_ms: now_millis(),
        tolerance_ms: ctx.clock_tolerance_ms,
        released: u32::try_from(record.receipts.len()).unwrap_or(u32::MAX),
        approvals: &approvals,
        vetoes: &vetoes,
    };
    Ok(match policy.evaluate(&situation) {
        dta_protocol::policy::Verdict::Refused(refusal) => Some(refusal),
        _ => None,
    })
}

/// Beneficiary: asks again for the shares an open release still lacks, once nothing arrived
/// for `quiet_for`: it sends the principal's own release request (and the certificate it
/// relies on) to each fiduciary whose share is missing. Fiduciaries that served it answer
/// with the same sealed share, so a beneficiary restarted in the middle of a release
/// completes it without the principal.
pub fn resume_receiving(
    ctx: &RoleContext,
    quiet_for: std::time::Duration,
) -> Result<Vec<Delivery>, CustodyError> {
    let mut deliveries = Vec::new();
    for record in ctx.records_needing(Need::Collecting)? {
        if record.role != Role::Beneficiary || record.state != OrderState::Collecting {
            continue;
        }
        let (Some(certificate), Some((_, request))) = (
            record.certificate,
            record
                .releases
                .iter()
                .next_back()
                .filter(|(sequence, _)| !record.receipts.contains_key(sequence)),
        ) else {
            continue;
        };
        if release_is_recent(ctx, &record, quiet_for) {
            continue;
        }
        let (Some(certificate_bytes), Some(request_bytes)) =
            (ctx.block(&certificate), ctx.block(request))
        else {
            continue;
        };
        let before = deliveries.len();
        for (position, fiduciary) in record.fiduciaries.iter().enumerate() {
            if record.shares.contains_key(&(position as u32 + 1)) {
                continue;
            }
            if let Some(peer) = ctx.peer_of(fiduciary) {
                deliveries.push((peer, vec![certificate_bytes.clone(), request_bytes.clone()]));
            }
        }
        if deliveries.len() > before {
            tracing::info!(order = %record.reference, asked = deliveries.len() - before,
                "shares still missing: fiduciaries asked again");
        }
    }
    Ok(deliveries)
}

/// Beneficiary: a release request it already answered with a receipt came again (the
/// principal never got the receipt): the receipt goes to the principal again.
pub fn receipt_again(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    request_cid: Cid,
) -> Result<Option<Delivery>, CustodyError> {
    let principal = envelope.envelope().sender;
    let Some(record) = ctx.record(Role::Beneficiary, &principal, &envelope.envelope().order)?
    else {
        return Ok(None);
    };
    let Some(receipt) = record
        .releases
        .iter()
        .find(|(_, cid)| **cid == request_cid)
        .and_then(|(sequence, _)| record.receipts.get(sequence))
    else {
        return Ok(None);
    };
    let (Some(bytes), Some(peer)) = (ctx.block(receipt), ctx.peer_of(&record.principal)) else {
        return Ok(None);
    };
    Ok(Some((peer, vec![bytes])))
}

/// Someone an order waits for, and for what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Awaited {
    /// The identity that has not answered.
    pub identity: Cid,
    /// What it has not sent.
    pub what: AwaitedStep,
    /// Since when, in milliseconds since the Unix epoch: the time of the envelope that asked
    /// for it (the order, the commitment or the release request).
    pub since: u64,
}

/// What a stalled order waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwaitedStep {
    /// A fiduciary's share of a generated key.
    KeyShare,
    /// A fiduciary's deals of a refresh.
    Deal,
    /// A fiduciary's signature of the commitment.
    CustodySignature,
    /// The beneficiary's receipt of an open release.
    Receipt,
    /// A holder's word that it deleted its share of a cancelled order.
    Deletion,
}

impl AwaitedStep {
    /// How the API names it.
    pub fn name(self) -> &'static str {
        match self {
            Self::KeyShare => "key share",
            Self::Deal => "deal",
            Self::CustodySignature => "custody signature",
            Self::Receipt => "receipt",
            Self::Deletion => "share deletion",
        }
    }
}

/// Principal: who has not answered yet an order that is still being made or released (for
/// `dta order show`); empty for other roles' records and settled orders.
pub fn awaited(store: &Store, record: &OrderRecord) -> Vec<Awaited> {
    if record.role != Role::Principal {
        return Vec::new();
    }
    let envelope = |cid: &Cid| {
        store
            .get(Column::Blocks, &cid.to_bytes())
            .ok()
            .flatten()
            .and_then(|bytes| SignedEnvelope::decode(&bytes).ok())
            .map(|signed| signed.envelope)
    };
    let fiduciaries = |missing: &dyn Fn(u32, &Cid) -> bool, what, since: Option<u64>| {
        let since = since.unwrap_or_default();
        record
            .fiduciaries
            .iter()
            .enumerate()
            .filter(|(position, fiduciary)| missing(*position as u32 + 1, fiduciary))
            .map(|(_, fiduciary)| Awaited {
                identity: *fiduciary,
                what,
                since,
            })
            .collect()
    };
    let unsigned = |_: u32, f: &Cid| !record.signatures.contains_key(&f.to_string());
    match record.state {
        OrderState::Ordered => fiduciaries(
            &|index, _| !record.shares.contains_key(&index),
            AwaitedStep::KeyShare,
            envelope(&record.order).map(|e| e.timestamp),
        ),
        OrderState::Generating => {
            let generation = record.key_generation.clone().unwrap_or_default();
            let round = generation.round.unwrap_or(record.order);
            fiduciaries(
                &|index, _| !generation.sent.contains_key(&index),
                AwaitedStep::KeyShare,
                envelope(&round).map(|e| e.timestamp),
            )
        }
        OrderState::Refreshing => {
            let refresh = record.refresh.clone();
            let request = refresh.as_ref().map_or(record.head, |r| r.request);
            fiduciaries(
                &|index, _| {
                    !refresh.as_ref().is_some_and(|r| {
                        r.deals
                            .iter()
                            .any(|d| d.dealer == index && d.to.iter().all(Option::is_some))
                    })
                },
                AwaitedStep::Deal,
                envelope(&request).map(|e| e.timestamp),
            )
        }
        OrderState::Dealt | OrderState::Committed => fiduciaries(
            &unsigned,
            AwaitedStep::CustodySignature,
            envelope(record.commitment.as_ref().unwrap_or(&record.order)).map(|e| e.timestamp),
        ),
        OrderState::Cancelling => {
            let deleted = super::ending::deleted_after_cancel(record, |c| {
                store.get(Column::Blocks, &c.to_bytes()).ok().flatten()
            });
            fiduciaries(
                &|_, f| !deleted.contains(f),
                AwaitedStep::Deletion,
                envelope(&record.head).map(|e| e.timestamp),
            )
        }
        OrderState::Releasing => record
            .releases
            .iter()
            .next_back()
            .filter(|(sequence, _)| !record.receipts.contains_key(sequence))
            .and_then(|(_, cid)| envelope(cid))
            .and_then(|envelope| {
                let request: ReleaseRequest =
                    dagcbor::decode(envelope.public.as_ref()?, Limits::default()).ok()?;
                Some(Awaited {
                    identity: request.beneficiary,
                    what: AwaitedStep::Receipt,
                    since: envelope.timestamp,
                })
            })
            .into_iter()
            .collect(),
        OrderState::Certified
        | OrderState::Released
        | OrderState::Generated
        | OrderState::Holding
        | OrderState::Collecting
        | OrderState::Received
        | OrderState::Aborted
        | OrderState::Retired
        | OrderState::Expired
        | OrderState::Cancelled => Vec::new(),
    }
}
