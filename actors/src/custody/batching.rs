//! Custody batches between the role actors ([`dta_protocol::batch`] is what they sign and how
//! a certificate of one is checked): a principal deals together the orders that queued up on
//! its role, and its fiduciaries sign once for all of them.
//!
//! Principal: an order made is held ([`hold`]) until the flush that the first order held
//! queued behind the others (`RoleMsg::SendBatches`), so a batch holds exactly the orders that
//! were waiting and a lone order waits for nothing. The held orders are grouped by their
//! fiduciaries; a group of two or more goes to each fiduciary as a [`Kind::CustodyBatch`]
//! listing them, followed by their deals, and once every fiduciary's [`Kind::BatchSignature`]
//! is in, one aggregate check certifies every order of the batch ([`on_batch_signature`]). An
//! order alone goes as it always did.
//!
//! Fiduciary: a batch announced ([`on_custody_batch`]) makes the deals it lists wait for their
//! signature. Once each listed deal was taken or refused, the fiduciary signs the root if it
//! took them all, and otherwise each order it took on its own, so a refused deal holds back
//! nobody else's. A batch whose deals stop coming is signed that way at the next resume.
//!
//! What is under way is kept in memory ([`crate::batches`]): after a restart, resuming deals
//! and signs the orders one by one, as it does any order that stalled.

use std::time::Duration;

use dta_protocol::Cid;
use dta_protocol::batch::{BatchLeaf, BatchRoot, BatchTree, CustodyBatch};
use dta_protocol::envelope::{Kind, SignedEnvelope, VerifiedEnvelope};
use dta_protocol::identity::VerifiedIdentity;
use dta_protocol::order::Certificate;
use libp2p::PeerId;

use super::fiduciary::sign_commitment;
use super::principal::{Prepared, blame, does_not_verify, store_certificate};
use crate::batches::{Deal, ExpectedBatch, HeldOrder, NotTaken, ResolvedBatch, SentBatch};
use crate::context::{CustodyError, Delivery, Durability, RoleContext, encode, internal};
use crate::role::Role;
use crate::states::OrderState;

/// Most orders dealt in one batch. The deals of a batch follow one another to each fiduciary
/// and none is certified before the last arrived, so past a few dozen a batch only delays its
/// first orders, while the signatures it saves are already few.
pub const ORDERS_PER_BATCH: usize = 32;
/// How long a principal waits for the signatures of a batch before it forgets it (resuming
/// then deals its orders again, one by one).
pub const SIGNATURES_PATIENCE: Duration = Duration::from_secs(60);

/// What a fiduciary does about a deal it just took.
#[derive(Debug)]
pub(crate) enum Taken {
    /// No batch lists it: sign it now.
    Alone,
    /// A batch lists it and waits for more deals.
    Waiting,
    /// It was the last deal its batch waited for: sign the batch.
    Completes(Box<ResolvedBatch>),
}

/// What became of a new order at its principal.
#[derive(Debug)]
pub enum Held {
    /// Held, the first since the last flush: the caller queues the next.
    First,
    /// Held behind others.
    Behind,
    /// It cannot go in a batch (a key the fiduciaries generate has nothing to deal): its
    /// deliveries, to send now.
    SendNow(Vec<Delivery>),
}

/// Principal: holds a new order for the next batch.
pub fn hold(ctx: &RoleContext, prepared: Prepared) -> Held {
    let record = prepared.record;
    let Some(commitment) = record.commitment.filter(|_| {
        record.state == OrderState::Dealt && prepared.deliveries.len() == record.fiduciaries.len()
    }) else {
        return Held::SendNow(prepared.deliveries);
    };
    let order = HeldOrder {
        leaf: BatchLeaf {
            order: record.reference,
            commitment,
        },
        fiduciaries: record.fiduciaries,
        deliveries: prepared.deliveries,
    };
    if ctx.custody_batches.hold(order) {
        Held::First
    } else {
        Held::Behind
    }
}

/// Principal: the deliveries of every order held, in batches where several share their
/// fiduciaries.
pub fn send_held(ctx: &RoleContext) -> Result<Vec<Delivery>, CustodyError> {
    // Orders with the same fiduciaries at the same peers, in the order they were made.
    let mut groups: Vec<Vec<HeldOrder>> = Vec::new();
    for order in ctx.custody_batches.take_held() {
        let peers = |o: &HeldOrder| {
            o.deliveries
                .iter()
                .map(|(peer, _)| *peer)
                .collect::<Vec<_>>()
        };
        match groups.iter_mut().find(|g| {
            g[0].fiduciaries == order.fiduciaries
                && peers(&g[0]) == peers(&order)
                && g.len() < ORDERS_PER_BATCH
        }) {
            Some(group) => group.push(order),
            None => groups.push(vec![order]),
        }
    }
    let mut deliveries = Vec::new();
    for group in groups {
        if group.len() == 1 {
            deliveries.extend(group.into_iter().flat_map(|o| o.deliveries));
            continue;
        }
        deliveries.extend(send_batch(ctx, group)?);
    }
    Ok(deliveries)
}

fn send_batch(ctx: &RoleContext, group: Vec<HeldOrder>) -> Result<Vec<Delivery>, CustodyError> {
    let batch = CustodyBatch {
        leaves: group.iter().map(|o| o.leaf.clone()).collect(),
    };
    let tree = BatchTree::new(&batch.commitments()).map_err(internal)?;
    let reference = format!("batch-{}", hex::encode(&tree.root()[..16]));
    let announcement = ctx
        .envelope(
            Kind::CustodyBatch,
            &reference,
            None,
            Some(encode(&batch)?),
            None,
            &[],
        )?
        .signed()
        .to_block()
        .map_err(internal)?
        .into_bytes();
    let fiduciaries = group[0].fiduciaries.clone();
    let mut deliveries: Vec<Delivery> = group[0]
        .deliveries
        .iter()
        .map(|(peer, _)| (*peer, vec![announcement.clone()]))
        .collect();
    for order in group {
        for (to, (_, blocks)) in deliveries.iter_mut().zip(order.deliveries) {
            to.1.extend(blocks);
        }
    }
    ctx.custody_batches
        .sent(tree.root(), batch.leaves, fiduciaries);
    tracing::debug!(batch = %reference, orders = tree.len(), "orders dealt in a batch");
    Ok(deliveries)
}

/// Principal: a fiduciary's signature over a batch's root. Once every fiduciary's is in, they
/// are aggregated and checked once, and every order of the batch gets its certificate. A
/// signature delivered by the fiduciary's own node is checked only in the aggregate, as for a
/// single order; if the aggregate fails, each is checked and the bad ones are named.
pub async fn on_batch_signature(
    ctx: &RoleContext,
    peer: PeerId,
    signed: &SignedEnvelope,
) -> Result<(), CustodyError> {
    let sender = signed.envelope.sender;
    let root = signed
        .batch_root()
        .filter(|_| signed.envelope.kind == Kind::BatchSignature)
        .ok_or_else(|| CustodyError::Invalid("not a batch signature".into()))?;
    if ctx.peer_of(&sender) != Some(peer) {
        ctx.verify(&signed.to_block().map_err(internal)?.into_bytes())?;
    }
    match ctx
        .custody_batches
        .signed(&root, sender, signed.signature.clone())
    {
        Ok(Some(batch)) => certify(ctx, batch).await,
        Ok(None) => Ok(()),
        // Certified already, or forgotten: its orders go one by one.
        Err(NotTaken::Unknown) => {
            tracing::debug!(%sender, "signature of a batch not waited for");
            Ok(())
        }
        Err(NotTaken::NotAFiduciary) => Err(CustodyError::Invalid(format!(
            "{sender} is not a fiduciary of this batch"
        ))),
    }
}

async fn certify(ctx: &RoleContext, batch: SentBatch) -> Result<(), CustodyError> {
    let commitments: Vec<Cid> = batch.leaves.iter().map(|l| l.commitment).collect();
    let tree = BatchTree::new(&commitments).map_err(internal)?;
    let identities: Vec<VerifiedIdentity> = ctx.known_identities(&batch.fiduciaries)?;
    let encoded: Vec<(&VerifiedIdentity, &[u8])> = identities
        .iter()
        .map(|i| (i, batch.signatures[&i.cid()].as_slice()))
        .collect();
    let checked = Certificate::aggregate_batch_unchecked(&tree, &encoded).ok();
    let passed = match &checked {
        Some((_, check)) => {
            let check = check.clone();
            tokio::task::spawn_blocking(move || check.verify().is_ok())
                .await
                .unwrap_or(false)
        }
        None => false,
    };
    let aggregate = match (checked, passed) {
        (Some((aggregate, _)), true) => aggregate,
        _ => {
            let detail = "its signature of a custody batch does not verify over the batch's root";
            let bad = blame(ctx, &encoded, &tree.message(), detail);
            // Its orders stay dealt: resuming deals them again, to be signed one by one.
            return Err(does_not_verify("batch signature", &bad));
        }
    };
    // The orders still to certify (not certified another way meanwhile, nor moved on).
    let mut due = Vec::new();
    for (index, leaf) in batch.leaves.iter().enumerate() {
        let made = ctx.principal_record(&leaf.order).and_then(|record| {
            let fresh = record.certificate.is_none() && record.commitment == Some(leaf.commitment);
            let certificate = Certificate::in_batch(
                &tree,
                index,
                leaf.commitment,
                batch.fiduciaries.clone(),
                aggregate.clone(),
            )
            .map_err(internal)?;
            Ok(fresh.then_some((record, certificate)))
        });
        match made {
            Ok(Some(due_one)) => due.push(due_one),
            Ok(None) => {}
            Err(err) => tracing::warn!(order = %leaf.order, %err, "order of a batch not certified"),
        }
    }
    // One sync for the batch: the last order's write makes every one before it durable. Until
    // then nothing of theirs has left the node, and a crash leaves them dealt, to be resumed.
    let last = due.len().saturating_sub(1);
    for (position, (mut record, certificate)) in due.into_iter().enumerate() {
        let durability = if position == last {
            Durability::Synced
        } else {
            Durability::Buffered
        };
        if let Err(err) = store_certificate(ctx, &mut record, &certificate, durability).await {
            tracing::warn!(order = %record.reference, %err, "order of a batch not certified");
        }
    }
    Ok(())
}

/// Principal: forgets batches whose signatures did not all come within
/// [`SIGNATURES_PATIENCE`]; their orders are resumed like any stalled order.
pub fn forget_stalled(ctx: &RoleContext) {
    ctx.custody_batches.forget_sent_before(SIGNATURES_PATIENCE);
}

/// Fiduciary: a principal announces a batch of orders whose deals follow. Deals already taken
/// count; if every one was, the batch is signed at once.
pub async fn on_custody_batch(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    cid: Cid,
) -> Result<Vec<Delivery>, CustodyError> {
    let batch: CustodyBatch = RoleContext::payload(envelope)?;
    batch
        .check()
        .map_err(|e| CustodyError::Invalid(e.to_string()))?;
    let principal = envelope.envelope().sender;
    let tree = BatchTree::new(&batch.commitments()).map_err(internal)?;
    let mut deals = Vec::with_capacity(batch.leaves.len());
    for leaf in &batch.leaves {
        let held = ctx
            .record(Role::Fiduciary, &principal, &leaf.order)?
            .is_some_and(|r| r.commitment == Some(leaf.commitment));
        deals.push(if held { Deal::Taken } else { Deal::Awaited });
    }
    let expected = ExpectedBatch::new(
        principal,
        envelope.envelope().order.clone(),
        cid,
        batch.leaves,
        deals,
    );
    let mut deliveries = Vec::new();
    // This batch if it waits for nothing, and the oldest one given up to make room.
    for resolved in ctx.custody_batches.expect(tree.root(), expected) {
        deliveries.extend(sign_durably(ctx, resolved).await?);
    }
    Ok(deliveries)
}

/// Fiduciary: it took the deal of `order` (commitment `commitment`) from `principal`: whether
/// a batch waits for it.
pub(crate) fn deal_taken(
    ctx: &RoleContext,
    principal: &Cid,
    order: &str,
    commitment: Cid,
) -> Taken {
    match ctx
        .custody_batches
        .mark(principal, order, commitment, Deal::Taken)
    {
        None => Taken::Alone,
        Some(None) => Taken::Waiting,
        Some(Some(resolved)) => Taken::Completes(Box::new(resolved)),
    }
}

/// Fiduciary: it refused the deal of `order`; the deliveries, if that was the last deal its
/// batch waited for.
pub async fn deal_refused(
    ctx: &RoleContext,
    principal: &Cid,
    order: &str,
    commitment: Cid,
) -> Result<Option<Delivery>, CustodyError> {
    match ctx
        .custody_batches
        .mark(principal, order, commitment, Deal::Refused)
    {
        Some(Some(resolved)) => sign_durably(ctx, resolved).await,
        _ => Ok(None),
    }
}

/// Fiduciary: the signature blocks for a resolved batch: one over its root if every deal was
/// taken, else one per order taken. They are staged, not written: the caller's synced write
/// makes them durable together with the deals they answer, some of which were written
/// unsynced (see [`sign_durably`]).
pub(crate) async fn sign(
    ctx: &RoleContext,
    batch: ResolvedBatch,
) -> Result<Vec<Vec<u8>>, CustodyError> {
    if let Some(tree) = &batch.tree {
        let signature = ctx.envelope(
            Kind::BatchSignature,
            &batch.reference,
            Some(batch.cid),
            Some(encode(&BatchRoot::new(&tree.root()))?),
            None,
            &[],
        )?;
        #[cfg(feature = "byzantine")]
        if ctx.misbehaviour == Some(crate::byzantine::Misbehaviour::SignOtherCommitment) {
            return sign_other_root(ctx, &batch, signature);
        }
        let (_, block) = ctx.save_block(&signature).await?;
        tracing::debug!(batch = %batch.reference, orders = tree.len(), "batch signed");
        return Ok(vec![block]);
    }
    let mut blocks = Vec::new();
    for leaf in batch.taken {
        let (_, signed) =
            sign_commitment(ctx, &leaf.order, leaf.commitment, batch.principal).await?;
        blocks.extend(signed);
    }
    Ok(blocks)
}

/// For [`crate::byzantine::Misbehaviour::SignOtherCommitment`]: `honest`, the batch's
/// signature envelope, with a real signature of this fiduciary's over another root.
#[cfg(feature = "byzantine")]
fn sign_other_root(
    ctx: &RoleContext,
    batch: &ResolvedBatch,
    honest: VerifiedEnvelope,
) -> Result<Vec<Vec<u8>>, CustodyError> {
    let elsewhere = ctx.envelope(
        Kind::BatchSignature,
        &batch.reference,
        Some(batch.cid),
        Some(encode(&BatchRoot::new(
            &[0; dta_protocol::batch::HASH_LEN],
        ))?),
        None,
        &[],
    )?;
    let forged = SignedEnvelope {
        signature: elsewhere.signed().signature.clone(),
        ..honest.signed().clone()
    };
    tracing::warn!(
        misbehaviour = crate::byzantine::Misbehaviour::SignOtherCommitment.name(),
        "misbehaving on purpose (a test build)"
    );
    Ok(vec![forged.to_block().map_err(internal)?.into_bytes()])
}

/// [`sign`], then one synced write, so that nothing signed leaves before the deals it answers
/// are on disk.
async fn sign_durably(
    ctx: &RoleContext,
    batch: ResolvedBatch,
) -> Result<Option<Delivery>, CustodyError> {
    let principal = batch.principal;
    let blocks = sign(ctx, batch).await?;
    ctx.commit().await?;
    answer(ctx, &principal, blocks)
}

/// Fiduciary: batches announced longer than `patience` ago whose deals did not all come,
/// signed as far as they came.
pub async fn sign_stalled(
    ctx: &RoleContext,
    patience: Duration,
) -> Result<Vec<Delivery>, CustodyError> {
    let mut deliveries = Vec::new();
    for batch in ctx.custody_batches.take_stalled(patience) {
        deliveries.extend(sign_durably(ctx, batch).await?);
    }
    Ok(deliveries)
}

fn answer(
    ctx: &RoleContext,
    principal: &Cid,
    blocks: Vec<Vec<u8>>,
) -> Result<Option<Delivery>, CustodyError> {
    if blocks.is_empty() {
        return Ok(None);
    }
    Ok(Some((ctx.known_peer(principal)?, blocks)))
}
