//! A t-of-n key the fiduciaries generate without a dealer (FROST's DKG, through
//! `dta_crypto::dkg`, over the group the order's plugin names: secp256k1 with Taproot, or
//! BLS12-381 for an M-Pin master secret), as the principal coordinates it in the order's log:
//!
//! 1. On the order request each fiduciary deals its polynomial, keeps what it needs for the
//!    next part wrapped in its keystore, and sends its commitment to the principal.
//! 2. With all n, the principal publishes the round (every commitment, each still signed by
//!    its fiduciary) to every fiduciary, so that all see the same ones.
//! 3. Each fiduciary checks the round, deals a share to each other fiduciary, sealed to it
//!    and signed, and sends it straight to that fiduciary.
//! 4. With the n-1 shares dealt to it, a fiduciary checks each against its dealer's
//!    commitment and sums them into its share of the key, which it keeps wrapped; it sends
//!    the principal the group key and every public share as it derived them. The principal
//!    commits when all n agree (`super::principal`), and the flow goes on as for any
//!    generated key: commitment signatures, certificate, releases of any t shares.
//! 5. A share that fails its commitment makes its recipient complain, revealing that one
//!    share's content key as evidence; the principal judges the complaint (the dealer, or a
//!    false complainer, is at fault) and ends the run in a signed abort that names the
//!    culprit. The key of an aborted run is never used.
//!
//! What a fiduciary keeps between the parts survives a restart; the principal sends the round
//! again while a fiduciary's key share is missing, and a fiduciary that gets it again sends
//! again what it sent. FROST's DKG completes only with every fiduciary: a fiduciary that
//! stays down keeps the order waiting, as it does for an n-of-n key. What it does not do: run
//! again without a culprit (a new order does), or reshare.

use std::collections::BTreeMap;

use dta_crypto::dkg::{DkgError, Scheme, Shares};
use dta_protocol::Cid;
use dta_protocol::dkg::{
    DkgAbandon, DkgAbort, DkgCommitment, DkgComplaint, DkgRound, DkgShare, Verdict,
};
use dta_protocol::envelope::{Kind, VerifiedEnvelope};
use dta_protocol::misconduct::Offence;
use dta_protocol::order::{GeneratedKey, GeneratedShares, KeyShare, OrderRequest, SecretBytes};
use serde_bytes::ByteBuf;
use zeroize::Zeroizing;

use crate::role::Role;
use crate::states::OrderState;
use crate::store::Column;

use super::principal::{all_answered, check_fiduciary, to_each};
use super::record::{KeyGeneration, OrderRecord, round_name, share_name};
use crate::context::{CustodyError, Delivery, RoleContext, encode, internal};

pub(crate) use crate::plugin::without_dealer;

/// The group an order's key is generated over.
fn scheme_of(order: &OrderRequest) -> Result<Scheme, CustodyError> {
    Ok(super::principal::order_plugin(order)?.key_scheme())
}

fn dkg_failed(err: DkgError) -> CustodyError {
    CustodyError::Invalid(format!("key generation: {err}"))
}

fn participant(index: u32) -> Result<u16, CustodyError> {
    u16::try_from(index).map_err(|_| CustodyError::Invalid(format!("index {index} is too large")))
}

/// Fiduciary `index` of `order`: deals its polynomial, stages what it keeps for the next
/// part and its commitment envelope for the principal (CID and bytes).
pub(crate) async fn deal(
    ctx: &RoleContext,
    reference: &str,
    order_cid: Cid,
    order: &OrderRequest,
    index: u32,
) -> Result<(Cid, Vec<u8>), CustodyError> {
    let participants = participant(order.fiduciaries.len() as u32)?;
    let threshold = participant(order.threshold)?;
    let (kept, commitment) = scheme_of(order)?
        .deal(participant(index)?, participants, threshold)
        .map_err(dkg_failed)?;
    keep_round(ctx, &order.principal, reference, kept).await?;
    let payload = DkgCommitment {
        order: order_cid,
        index,
        commitment: ByteBuf::from(commitment),
    };
    ctx.publish(Kind::DkgCommitment, reference, Some(order_cid), &payload)
        .await
}

async fn keep_round(
    ctx: &RoleContext,
    principal: &Cid,
    reference: &str,
    mut bytes: Zeroizing<Vec<u8>>,
) -> Result<(), CustodyError> {
    ctx.keep_secret(
        round_name(principal, reference),
        std::mem::take(&mut *bytes),
    )
    .await
}

/// Deletes what a fiduciary kept between the parts, once the run ended (its share is kept,
/// or the run was aborted). Called after the record that says so is written.
fn forget_round(ctx: &RoleContext, record: &OrderRecord) -> Result<(), CustodyError> {
    ctx.store
        .delete_durable(
            Column::Keystore,
            round_name(&record.principal, &record.reference).as_bytes(),
        )
        .map_err(internal)
}

/// The fiduciary record of a key generation and its state, for a step of `principal`'s order.
fn generation_record(
    ctx: &RoleContext,
    role: Role,
    principal: &Cid,
    reference: &str,
) -> Result<(OrderRecord, KeyGeneration), CustodyError> {
    let record = match role {
        Role::Principal => ctx.own_record(reference)?,
        _ => ctx.record(role, principal, reference)?,
    }
    .ok_or_else(|| CustodyError::NotFound(reference.to_owned()))?;
    let generation = record.key_generation.clone().ok_or_else(|| {
        CustodyError::Invalid(format!(
            "order {reference} has no key generated without a dealer"
        ))
    })?;
    Ok((record, generation))
}

/// Every fiduciary's commitment in a round, checked (each signed by its fiduciary, of this
/// order, in order).
fn round_commitments(
    ctx: &RoleContext,
    record: &OrderRecord,
    round: &DkgRound,
) -> Result<Vec<Vec<u8>>, CustodyError> {
    let fiduciaries = ctx.known_identities(&record.fiduciaries)?;
    round
        .commitments_of(&record.reference, &fiduciaries)
        .map_err(|e| CustodyError::Invalid(e.to_string()))
}

/// All commitments but `me`'s, by participant.
fn others(commitments: &[Vec<u8>], me: u16) -> BTreeMap<u16, &[u8]> {
    (1u16..)
        .zip(commitments)
        .filter(|(p, _)| *p != me)
        .map(|(p, c)| (p, c.as_slice()))
        .collect()
}

/// Fiduciary: the principal's round arrived. Checks it holds this node's own commitment and
/// every other fiduciary's, signed; deals each other fiduciary its share, sealed to it; keeps
/// what the last part needs; and finishes at once if every share dealt to it is already in.
/// A round sent again gets what this node sent again.
pub async fn on_round(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    round_cid: Cid,
) -> Result<Vec<Delivery>, CustodyError> {
    let reference = envelope.envelope().order.clone();
    let principal = envelope.envelope().sender;
    let (mut record, mut generation) =
        generation_record(ctx, Role::Fiduciary, &principal, &reference)?;
    let round: DkgRound = RoleContext::payload(envelope)?;
    if round.order != record.order || envelope.envelope().prev != Some(record.order) {
        return Err(CustodyError::Invalid("a round of another order".into()));
    }
    match generation.round {
        Some(known) if known == round_cid => return sent_again(ctx, &record, &generation),
        Some(_) => {
            return Err(CustodyError::Conflict(format!(
                "order {reference} already has another round"
            )));
        }
        None if record.state != OrderState::Generated => return Ok(Vec::new()),
        None => {}
    }
    let order: OrderRequest = ctx.stored_payload(&record.order)?;
    if round.scheme != scheme_of(&order)? {
        return Err(CustodyError::Invalid(format!(
            "a round over {}, not the group of the order's plugin",
            round.scheme.name()
        )));
    }
    let index = record.own_index()?;
    let me = participant(index)?;
    let participants = participant(record.fiduciaries.len() as u32)?;
    let commitments = round_commitments(ctx, &record, &round)?;
    let mine: DkgCommitment = ctx.stored_payload(&record.shares[&index])?;
    if commitments.get(usize::from(me) - 1).map(Vec::as_slice) != Some(mine.commitment.as_slice()) {
        return Err(CustodyError::Invalid(
            "the round holds another commitment for this fiduciary".into(),
        ));
    }
    let kept = ctx.load_secret(&round_name(&principal, &reference)).await?;
    let (kept, shares) = round
        .scheme
        .share_out(me, participants, kept.expose(), &others(&commitments, me))
        .map_err(dkg_failed)?;
    keep_round(ctx, &principal, &reference, kept).await?;
    let fiduciaries = ctx.known_identities(&record.fiduciaries)?;
    let mut deliveries = Vec::with_capacity(shares.len());
    for (to, share) in &shares {
        let recipient = &fiduciaries[usize::from(*to) - 1];
        let share = SecretBytes::new(share.to_vec());
        #[cfg(feature = "byzantine")]
        let share = if shares.keys().next() == Some(to) {
            crate::byzantine::tampered(
                ctx.misbehaviour,
                crate::byzantine::Misbehaviour::BadDkgShare,
                share,
            )
        } else {
            share
        };
        let payload = DkgShare {
            round: round_cid,
            order: record.order,
            dealer: index,
            recipient: u32::from(*to),
            share,
        };
        let plain = Zeroizing::new(encode(&payload)?);
        let sealed = ctx.envelope(
            Kind::DkgShare,
            &reference,
            Some(round_cid),
            None,
            Some(&plain),
            &[recipient],
        )?;
        let (cid, bytes) = ctx.save_block(&sealed).await?;
        generation.sent.insert(u32::from(*to), cid);
        if let Some(peer) = ctx.peer_of(&recipient.cid()) {
            deliveries.push((peer, vec![bytes]));
        }
    }
    generation.round = Some(round_cid);
    deliveries.extend(finish_if_complete(ctx, &record, &mut generation).await?);
    let ended = generation.key_share.is_some() || generation.ended_by.is_some();
    record.key_generation = Some(generation);
    ctx.save(Role::Fiduciary, &record).await?;
    if ended {
        forget_round(ctx, &record)?;
    }
    Ok(deliveries)
}

/// What a fiduciary sent in a run, sent again: its shares to the others, and its key share
/// or complaint to the principal.
fn sent_again(
    ctx: &RoleContext,
    record: &OrderRecord,
    generation: &KeyGeneration,
) -> Result<Vec<Delivery>, CustodyError> {
    let mut deliveries = Vec::new();
    for (to, cid) in &generation.sent {
        let recipient = record.fiduciaries.get(*to as usize - 1);
        if let (Some(peer), Some(bytes)) = (recipient.and_then(|r| ctx.peer_of(r)), ctx.block(cid))
        {
            deliveries.push((peer, vec![bytes]));
        }
    }
    let to_principal = generation.key_share.or(generation.ended_by);
    if let (Some(peer), Some(bytes)) = (
        ctx.peer_of(&record.principal),
        to_principal.and_then(|cid| ctx.block(&cid)),
    ) {
        deliveries.push((peer, vec![bytes]));
    }
    Ok(deliveries)
}

/// Fiduciary: a share another fiduciary dealt to this one arrived. Kept; once the round and
/// every share dealt to this node are in, the last part runs.
pub async fn on_share(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    cid: Cid,
) -> Result<Vec<Delivery>, CustodyError> {
    let reference = envelope.envelope().order.clone();
    let share: DkgShare = ctx.sealed(envelope)?;
    let order: OrderRequest = ctx.stored_payload(&share.order)?;
    let (mut record, mut generation) =
        generation_record(ctx, Role::Fiduciary, &order.principal, &reference)?;
    let dealer = envelope.envelope().sender;
    let index = record.own_index()?;
    if share.order != record.order
        || share.recipient != index
        || share.dealer == index
        || record
            .fiduciaries
            .get((share.dealer as usize).wrapping_sub(1))
            != Some(&dealer)
        || envelope.envelope().prev != Some(share.round)
    {
        return Err(CustodyError::Invalid(format!(
            "share from {dealer} is not its share to this fiduciary"
        )));
    }
    if generation.round.is_some_and(|round| round != share.round) {
        return Err(CustodyError::Invalid(format!(
            "share from {dealer} is of another round"
        )));
    }
    if generation.received.contains_key(&share.dealer) {
        return Ok(Vec::new());
    }
    generation.received.insert(share.dealer, cid);
    let deliveries = finish_if_complete(ctx, &record, &mut generation).await?;
    let ended = generation.key_share.is_some() || generation.ended_by.is_some();
    record.key_generation = Some(generation);
    if deliveries.is_empty() {
        // Shares can be sent again: the principal sends the round again while this
        // fiduciary's key share is missing, and every fiduciary then sends its shares again.
        ctx.save_buffered(Role::Fiduciary, &record).await?;
    } else {
        ctx.save(Role::Fiduciary, &record).await?;
    }
    if ended {
        forget_round(ctx, &record)?;
    }
    Ok(deliveries)
}

/// Fiduciary: the last part, when the round and every share dealt to this node are in. Keeps
/// this node's share of the key and returns its key share's delivery to the principal; or,
/// when a share fails its dealer's commitment, the complaint's.
async fn finish_if_complete(
    ctx: &RoleContext,
    record: &OrderRecord,
    generation: &mut KeyGeneration,
) -> Result<Vec<Delivery>, CustodyError> {
    let Some(round_cid) = generation.round else {
        return Ok(Vec::new());
    };
    if generation.key_share.is_some()
        || generation.ended_by.is_some()
        || generation.received.len() + 1 < record.fiduciaries.len()
    {
        return Ok(Vec::new());
    }
    let reference = &record.reference;
    let index = record.own_index()?;
    let me = participant(index)?;
    let round: DkgRound = ctx.stored_payload(&round_cid)?;
    let commitments = round_commitments(ctx, record, &round)?;
    let mut inbox = Shares::new();
    for (dealer, cid) in &generation.received {
        let share: DkgShare = ctx.sealed(&ctx.verified_block(cid)?)?;
        if share.round != round_cid {
            return Err(CustodyError::Invalid(format!(
                "share of dealer {dealer} is of another round"
            )));
        }
        inbox.insert(
            participant(*dealer)?,
            Zeroizing::new(share.share.expose().to_vec()),
        );
    }
    let kept = ctx
        .load_secret(&round_name(&record.principal, reference))
        .await?;
    let participants = participant(record.fiduciaries.len() as u32)?;
    let peer = ctx
        .peer_of(&record.principal)
        .ok_or_else(|| CustodyError::UnknownIdentity(record.principal.to_string()))?;
    let finished = round.scheme.finish(
        me,
        participants,
        kept.expose(),
        &others(&commitments, me),
        &inbox,
    );
    match finished {
        Ok(generated) => {
            ctx.keep_secret(
                share_name(&record.principal, reference),
                generated.share.expose().to_vec(),
            )
            .await?;
            let payload = KeyShare {
                order: record.order,
                index,
                public_key: ByteBuf::from(generated.public_share),
                generated: Some(GeneratedShares {
                    round: round_cid,
                    group_key: ByteBuf::from(generated.group_key),
                    public_shares: generated
                        .public_shares
                        .into_iter()
                        .map(ByteBuf::from)
                        .collect(),
                }),
            };
            let (cid, bytes) = ctx
                .publish(Kind::KeyShare, reference, Some(round_cid), &payload)
                .await?;
            generation.key_share = Some(cid);
            tracing::info!(order = %reference, index, "key generated; share kept");
            Ok(vec![(peer, vec![bytes])])
        }
        Err(DkgError::Dealer { culprit, reason }) => {
            let dealer = u32::from(culprit);
            let share_cid = generation
                .received
                .get(&dealer)
                .copied()
                .ok_or_else(|| internal("a culprit that dealt nothing"))?;
            let (share, content_key) = ctx.reveal(&share_cid)?;
            let complaint = DkgComplaint {
                round: round_cid,
                dealer,
                share,
                content_key,
            };
            let (cid, bytes) = ctx
                .publish(Kind::DkgComplaint, reference, Some(round_cid), &complaint)
                .await?;
            generation.ended_by = Some(cid);
            tracing::warn!(order = %reference, dealer, reason, "complaint against a dealer");
            if let Some(culprit) = record.fiduciaries.get(dealer as usize - 1) {
                let _ = ctx.misconduct(*culprit, Offence::BadKeyGenerationShare, reason);
            }
            Ok(vec![(peer, vec![bytes])])
        }
        Err(err) => Err(dkg_failed(err)),
    }
}

/// Fiduciary: the principal ended the run. The record says so and what was kept for the run
/// is deleted.
pub async fn on_abort(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    cid: Cid,
) -> Result<(), CustodyError> {
    let reference = envelope.envelope().order.clone();
    let principal = envelope.envelope().sender;
    let (mut record, mut generation) =
        generation_record(ctx, Role::Fiduciary, &principal, &reference)?;
    let abort: DkgAbort = RoleContext::payload(envelope)?;
    if envelope.envelope().prev != Some(abort.round)
        || generation.round.is_some_and(|round| round != abort.round)
    {
        return Err(CustodyError::Invalid("an abort of another round".into()));
    }
    if record.state == OrderState::Aborted {
        return Ok(());
    }
    if record.state != OrderState::Generated {
        return Err(CustodyError::Conflict(format!(
            "order {reference} is past its key generation"
        )));
    }
    generation.ended_by.get_or_insert(cid);
    record.key_generation = Some(generation);
    record.state = OrderState::Aborted;
    record.head = cid;
    ctx.save(Role::Fiduciary, &record).await?;
    forget_round(ctx, &record)?;
    tracing::warn!(order = %reference, culprit = %abort.culprit, "key generation aborted");
    Ok(())
}

/// Principal: gives up a generated key that waits for fiduciaries that do not answer (its
/// commitments or key shares), in a signed abandon that names them; the record and its
/// deliveries to every fiduciary, and the fiduciaries named. Refused once every answer is in
/// (the order is finishing) or past its key generation.
pub async fn abandon(
    ctx: &RoleContext,
    reference: &str,
) -> Result<(OrderRecord, Vec<Cid>, Vec<Delivery>), CustodyError> {
    let mut record = ctx.principal_record(reference)?;
    let answered: Vec<u32> = match (record.state, &record.key_generation) {
        (OrderState::Ordered, _) => record.shares.keys().copied().collect(),
        (OrderState::Generating, Some(generation)) => generation.sent.keys().copied().collect(),
        _ => {
            return Err(CustodyError::Conflict(format!(
                "order {reference} is {}: only a generated key still waiting for its \
                 fiduciaries can be abandoned",
                record.state
            )));
        }
    };
    let missing: Vec<Cid> = (1u32..)
        .zip(&record.fiduciaries)
        .filter(|(index, _)| !answered.contains(index))
        .map(|(_, fiduciary)| *fiduciary)
        .collect();
    if missing.is_empty() {
        return Err(CustodyError::Conflict(format!(
            "every fiduciary of {reference} has answered: it is finishing"
        )));
    }
    let payload = DkgAbandon {
        order: record.order,
        missing,
    };
    let (cid, bytes) = ctx
        .publish(Kind::DkgAbandon, reference, Some(record.head), &payload)
        .await?;
    record.head = cid;
    record.state = OrderState::Aborted;
    ctx.save(Role::Principal, &record).await?;
    tracing::warn!(order = %reference, missing = ?payload.missing, "key generation abandoned");
    let deliveries = to_each(ctx, &record.fiduciaries, &[bytes]);
    Ok((record, payload.missing, deliveries))
}

/// Fiduciary: the principal gave up the order's key generation. The record says so, and
/// what was kept for it (the round's secrets, or a share of an n-of-n key) is deleted.
pub async fn on_abandon(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    cid: Cid,
) -> Result<(), CustodyError> {
    let reference = envelope.envelope().order.clone();
    let principal = envelope.envelope().sender;
    let Some(mut record) = ctx.record(Role::Fiduciary, &principal, &reference)? else {
        return Ok(());
    };
    let abandon: DkgAbandon = RoleContext::payload(envelope)?;
    if abandon.order != record.order {
        return Err(CustodyError::Invalid("an abandon of another order".into()));
    }
    match record.state {
        OrderState::Aborted => return Ok(()),
        OrderState::Generated => {}
        state => {
            return Err(CustodyError::Conflict(format!(
                "order {reference} is {state} here: past its key generation"
            )));
        }
    }
    record.state = OrderState::Aborted;
    record.head = cid;
    ctx.save(Role::Fiduciary, &record).await?;
    forget_round(ctx, &record)?;
    ctx.store
        .delete_durable(
            Column::Keystore,
            share_name(&record.principal, &reference).as_bytes(),
        )
        .map_err(internal)?;
    tracing::warn!(order = %reference, "key generation abandoned by the principal");
    Ok(())
}

/// Principal: a fiduciary's commitment arrived. Once all n are in, publishes the round and
/// returns its deliveries to every fiduciary.
pub async fn on_commitment(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    cid: Cid,
) -> Result<Vec<Delivery>, CustodyError> {
    let reference = envelope.envelope().order.clone();
    let mut record = ctx.principal_record(&reference)?;
    let commitment: DkgCommitment = RoleContext::payload(envelope)?;
    check_fiduciary(&record, commitment.index, envelope)?;
    if commitment.order != record.order || envelope.envelope().prev != Some(record.order) {
        return Err(CustodyError::Invalid("commitment for another order".into()));
    }
    if record.key_generation.is_none() {
        return Err(CustodyError::Invalid(format!(
            "order {reference} has no key generated without a dealer"
        )));
    }
    if !all_answered(ctx, &mut record, commitment.index, cid).await? {
        return Ok(Vec::new());
    }
    let commitments = record
        .shares
        .values()
        .map(|cid| {
            ctx.block(cid)
                .map(ByteBuf::from)
                .ok_or_else(|| internal(format!("commitment {cid} missing")))
        })
        .collect::<Result<_, _>>()?;
    let order: OrderRequest = ctx.stored_payload(&record.order)?;
    let round = DkgRound {
        order: record.order,
        commitments,
        scheme: scheme_of(&order)?,
    };
    let (round_cid, bytes) = ctx
        .publish(Kind::DkgRound, &reference, Some(record.order), &round)
        .await?;
    record.key_generation = Some(KeyGeneration {
        round: Some(round_cid),
        ..KeyGeneration::default()
    });
    record.state = OrderState::Generating;
    record.head = round_cid;
    ctx.save(Role::Principal, &record).await?;
    tracing::info!(order = %reference, round = %round_cid, "key generation round out");
    Ok(to_each(ctx, &record.fiduciaries, &[bytes]))
}

/// Principal: a fiduciary's key share of a key generated without a dealer arrived. Once all
/// n are in and agree on the group key and every public share, returns what the commitment
/// lists: the public shares, and how the key came about.
pub(crate) async fn on_key_share(
    ctx: &RoleContext,
    record: &mut OrderRecord,
    envelope: &VerifiedEnvelope,
    share: &KeyShare,
    cid: Cid,
) -> Result<Option<(Vec<ByteBuf>, GeneratedKey)>, CustodyError> {
    let mut generation = record
        .key_generation
        .clone()
        .ok_or_else(|| CustodyError::Invalid("a key share of another kind".into()))?;
    let round = generation
        .round
        .ok_or_else(|| internal("generating without a round"))?;
    let generated = share
        .generated
        .as_ref()
        .ok_or_else(|| CustodyError::Invalid("a key share without its key generation".into()))?;
    if generated.round != round || envelope.envelope().prev != Some(round) {
        return Err(CustodyError::Invalid("a key share of another round".into()));
    }
    if record.state != OrderState::Generating || generation.sent.contains_key(&share.index) {
        return Ok(None);
    }
    generation.sent.insert(share.index, cid);
    record.key_generation = Some(generation.clone());
    if generation.sent.len() < record.fiduciaries.len() {
        ctx.save_buffered(Role::Principal, record).await?;
        return Ok(None);
    }
    let shares: Vec<KeyShare> = generation
        .sent
        .values()
        .map(|cid| ctx.stored_payload(cid))
        .collect::<Result<_, _>>()?;
    let disagreeing: Vec<String> = shares
        .iter()
        .filter(|s| {
            s.generated.as_ref() != Some(generated)
                || generated.public_shares.get(s.index as usize - 1) != Some(&s.public_key)
        })
        .map(|s| record.fiduciaries[s.index as usize - 1].to_string())
        .collect();
    if !disagreeing.is_empty() {
        // Each saw other commitments or shares than the rest: nothing is committed, and the
        // key shares stay for an audit of who derived what.
        ctx.save_buffered(Role::Principal, record).await?;
        return Err(CustodyError::Invalid(format!(
            "fiduciaries derived different keys: {}",
            disagreeing.join(", ")
        )));
    }
    Ok(Some((
        generated.public_shares.clone(),
        GeneratedKey {
            round,
            group_key: generated.group_key.clone(),
        },
    )))
}

/// Principal: a fiduciary complains about a share dealt to it. Judges the complaint from its
/// evidence, then ends the run in a signed abort naming the culprit (the dealer, or the
/// complainer if the share was good) and returns its deliveries to every fiduciary.
pub async fn on_complaint(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    cid: Cid,
) -> Result<Vec<Delivery>, CustodyError> {
    let reference = envelope.envelope().order.clone();
    let (mut record, mut generation) =
        generation_record(ctx, Role::Principal, &ctx.local.cid(), &reference)?;
    let round_cid = generation
        .round
        .ok_or_else(|| CustodyError::Invalid("a complaint before the round".into()))?;
    let complainer = envelope.envelope().sender;
    let recipient = record
        .fiduciaries
        .iter()
        .position(|f| *f == complainer)
        .map(|p| p as u32 + 1)
        .ok_or_else(|| CustodyError::Invalid(format!("{complainer} is not a fiduciary")))?;
    let complaint: DkgComplaint = RoleContext::payload(envelope)?;
    if envelope.envelope().prev != Some(round_cid) {
        return Err(CustodyError::Invalid(
            "a complaint about another round".into(),
        ));
    }
    if record.state != OrderState::Generating {
        return Ok(Vec::new());
    }
    let accused = record
        .fiduciaries
        .get((complaint.dealer as usize).wrapping_sub(1))
        .copied()
        .filter(|dealer| *dealer != complainer)
        .ok_or_else(|| CustodyError::Invalid("a complaint against no other fiduciary".into()))?;
    let round: DkgRound = ctx.stored_payload(&round_cid)?;
    let commitments = round_commitments(ctx, &record, &round)?;
    let dealer = ctx
        .identity(&accused)
        .ok_or_else(|| CustodyError::UnknownIdentity(accused.to_string()))?;
    let verdict = complaint
        .judge(
            round_cid,
            round.scheme,
            recipient,
            &complainer,
            &dealer,
            &commitments[complaint.dealer as usize - 1],
        )
        .map_err(|e| CustodyError::Invalid(e.to_string()))?;
    let (culprit, offence, reason) = match verdict {
        Verdict::DealerCheated => (
            accused,
            Offence::BadKeyGenerationShare,
            "dealt a share that fails its commitment",
        ),
        Verdict::FalseComplaint => (
            complainer,
            Offence::FalseComplaint,
            "complained about a share that is good",
        ),
    };
    let _ = ctx.misconduct(
        culprit,
        offence,
        &format!("{reason} (key generation of {reference})"),
    );
    let abort = DkgAbort {
        round: round_cid,
        culprit,
        complaint: cid,
        reason: reason.to_owned(),
    };
    let (abort_cid, bytes) = ctx
        .publish(Kind::DkgAbort, &reference, Some(round_cid), &abort)
        .await?;
    generation.ended_by = Some(abort_cid);
    record.key_generation = Some(generation);
    record.state = OrderState::Aborted;
    record.head = abort_cid;
    ctx.save(Role::Principal, &record).await?;
    tracing::warn!(order = %reference, %culprit, reason, "key generation aborted");
    Ok(to_each(ctx, &record.fiduciaries, &[bytes]))
}
