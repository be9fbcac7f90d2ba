//! Threshold signatures with an order's key, which is never rebuilt: t fiduciaries sign with
//! their shares, the principal coordinates. A secp256k1 key generated without a dealer signs
//! with FROST (BIP-340 signatures; `dta_crypto::signing`), as below; a BLS12-381 scalar (a
//! dealt secret, or a key generated in G1) with threshold BLS, in one round
//! ([`super::threshold_bls`]).
//!
//! 1. The principal signs a request (the message, the certificate in force, the signature's
//!    number) and sends it to every fiduciary ([`create_sign`]).
//! 2. Each fiduciary makes nonces, kept in memory only under the envelope that sends their
//!    commitments (`crate::nonces`), and sends those commitments ([`on_request`]). A request
//!    it has seen gets the same commitments again while their nonces are unused, and nothing
//!    once signed; another request of a number it has seen is refused.
//! 3. Once t fiduciaries' commitments are in, the principal publishes a package naming them
//!    and the message, and sends it to those t ([`on_commitment`]).
//! 4. Each signs the package with the nonces it names, which that uses up, and sends its
//!    signature share with commitments to fresh nonces ([`on_package`]).
//! 5. Once every share of the package is in, the principal aggregates them, checks the
//!    signature with a BIP-340 verifier, and publishes it in the order's log ([`on_share`]);
//!    fiduciaries record its end ([`on_signature`]). Only when the signature fails are the
//!    shares checked one by one against their signers' public shares: the first that fails
//!    names its signer, who is left out of the next attempt, a package of t other signers'
//!    unused commitments.
//!
//! Commitments do not depend on the message (FROST's preprocessing). Those no package used,
//! the commitments of signers not chosen and the next ones each share carries, are the
//! principal's spares for the order's next signatures (`crate::spare_commitments`). Once t
//! signers it reaches have one, a request skips step 2: it names those signers and goes to
//! them alone, with a package of their spares (for 3-of-5, 9 messages rather than 21, and no
//! commitments made and thrown away). Should that package fail (a signer lost its nonces, a
//! share fails), the request goes to the other fiduciaries too, for their commitments.
//!
//! A fiduciary that lost its nonces (a restart, or too many kept) cannot sign a package naming
//! them: it sends fresh commitments instead, and the principal makes a new package.
//!
//! A signature not made (the principal restarted, fiduciaries were down) is asked for again
//! by the principal's resume loop (`super::resume::resume`): the request goes to every
//! fiduciary again, and each answers with what it sent for it.
//!
//! A signature is authorized like a release: the principal's signed request, the order's
//! signing policy ([`dta_protocol::policy::SigningPolicy`]: how many signatures, which
//! messages; checked by the principal and by each fiduciary), and under a release policy with
//! conditions the approvals and delay a release would need, each fiduciary holding the request
//! until they are in; the signature names the votes it relied on.
//!
//! What it does not do: choose the message (the principal does), or keep a signature's
//! nonces anywhere but in memory.

use std::collections::BTreeMap;

use dta_crypto::Secret;
use dta_crypto::dkg::{self, KeyShare, Participant};
use dta_crypto::signing::{self as frost, Group, Package};
use dta_crypto::threshold::Commitments;
use dta_crypto::threshold::signing::SigningGroup;
use dta_protocol::Cid;
use dta_protocol::envelope::{Kind, VerifiedEnvelope};
use dta_protocol::order::{Certificate, Commitment, OrderRequest};
use dta_protocol::signing::{
    SignCommitment, SignPackage, SignRequest, Signature, SignatureScheme, SignatureShare,
};
use serde_bytes::ByteBuf;

use crate::role::Role;
use crate::states::OrderState;

use super::fiduciary::policy_gate;
use super::principal::{check_fiduciary, order_plugin, to_each};
use super::record::{Gated, OrderRecord, SigningRun, held_share_name};
use super::signed;
use crate::context::{CustodyError, Delivery, RoleContext, internal};

fn refused(e: frost::SignError) -> CustodyError {
    CustodyError::Invalid(e.to_string())
}

fn participant(index: u32) -> Result<Participant, CustodyError> {
    Participant::try_from(index).map_err(|_| CustodyError::Invalid(format!("index {index}")))
}

/// The public side of an order's key, and how it signs.
pub(super) enum SigningKey {
    /// FROST over secp256k1: a t-of-n key generated without a dealer.
    Frost(Group),
    /// Threshold BLS: a dealt secret, or a key generated in G1 of BLS12-381.
    Bls(SigningGroup),
}

/// The public side of an order's key, for signing: a dealt secret's Feldman commitments, or
/// a t-of-n key generated without a dealer whose public key is the group's own. Refuses an
/// n-of-n secp256k1 key added up from its shares and a key with a beneficiary's share, which
/// no t fiduciaries hold.
fn key_of(order: &OrderRequest, commitment: &Commitment) -> Result<SigningKey, CustodyError> {
    if !commitment.feldman.is_empty() {
        let commitments = Commitments::from_bytes(&commitment.feldman)
            .map_err(|e| CustodyError::Invalid(e.to_string()))?;
        return Ok(SigningKey::Bls(SigningGroup::dealt(commitments)));
    }
    let plugin = order_plugin(order)?;
    let generated = commitment.generated.as_ref().filter(|g| {
        super::keygen::without_dealer(plugin, order) && g.group_key == commitment.public_key
    });
    let Some(generated) = generated else {
        return Err(CustodyError::Conflict(format!(
            "order {} cannot sign: its key is not held t-of-n by its fiduciaries alone (an \
             n-of-n key added up from its shares, or one with a beneficiary's share; plugin {})",
            order.plugin, order.plugin
        )));
    };
    let threshold = u16::try_from(commitment.threshold)
        .map_err(|_| CustodyError::Invalid("threshold out of range".into()))?;
    match plugin.key_scheme() {
        dkg::Scheme::Secp256k1Taproot => {
            Group::new(threshold, &generated.group_key, &commitment.key_shares)
                .map(SigningKey::Frost)
                .map_err(refused)
        }
        dkg::Scheme::Bls12381 => SigningGroup::generated(
            usize::from(threshold),
            &generated.group_key,
            &commitment.key_shares,
        )
        .map(SigningKey::Bls)
        .map_err(|e| CustodyError::Invalid(e.to_string())),
    }
}

/// The order, its commitment in force and the public side of its key, of an order that
/// signs: refuses one with a key that cannot sign.
pub(super) fn signing_key(
    ctx: &RoleContext,
    record: &OrderRecord,
) -> Result<(OrderRequest, Commitment, SigningKey), CustodyError> {
    let order: OrderRequest = ctx.stored_payload(&record.order)?;
    let commitment = ctx.committed(record)?;
    let key = key_of(&order, &commitment)?;
    Ok((order, commitment, key))
}

/// Principal: asks the order's fiduciaries to sign `message` with its key; the record and
/// the request's deliveries.
pub async fn create_sign(
    ctx: &RoleContext,
    reference: &str,
    message: Vec<u8>,
) -> Result<(OrderRecord, Vec<Delivery>), CustodyError> {
    let mut record = ctx.principal_record(reference)?;
    let certificate = match (record.state, record.certificate) {
        (OrderState::Certified | OrderState::Released, Some(certificate)) => certificate,
        _ => {
            return Err(CustodyError::Conflict(format!(
                "order {reference} is {}: only a certified order signs",
                record.state
            )));
        }
    };
    let (order, _, key) = signing_key(ctx, &record)?;
    if message.is_empty() || message.len() > MAX_MESSAGE {
        return Err(CustodyError::Invalid(format!(
            "a message to sign is 1 to {MAX_MESSAGE} bytes, not {}",
            message.len()
        )));
    }
    let sequence = record.signatures_asked.saturating_add(1);
    check_policy(&order, reference, sequence, &message)?;
    // Spare commitments of t signers this node reaches: their package goes with the request,
    // to them alone. Not where a release policy's conditions hold the request at each
    // fiduciary: a package is for signers who sign at once.
    let spares = match (&key, record.commitment) {
        (SigningKey::Frost(_), Some(in_force)) if !order.policy.has_conditions() => ctx
            .spare_commitments
            .take(reference, in_force, record.threshold as usize, |index| {
                reachable(ctx, &record, index)
            }),
        _ => None,
    };
    let request = SignRequest {
        order: record.order,
        certificate,
        message: ByteBuf::from(message),
        sequence,
        signers: spares.iter().flatten().map(|(index, _)| *index).collect(),
    };
    let (cid, bytes) = ctx
        .publish(Kind::SignRequest, reference, Some(record.head), &request)
        .await?;
    let mut run = SigningRun::new(sequence, cid);
    let (recipients, blocks) = match spares {
        // Signers of spares made them for a request under this certificate: they hold it.
        Some(chosen) => {
            let (package, package_bytes) =
                publish_package(ctx, reference, &run, &chosen, &request.message).await?;
            run.package = Some(package);
            run.package_at_ms = crate::context::now_millis();
            (signers_of(&record, &chosen), vec![bytes, package_bytes])
        }
        None => {
            let certificate = ctx
                .block(&certificate)
                .ok_or_else(|| internal("certificate block missing"))?;
            (record.fiduciaries.clone(), vec![certificate, bytes])
        }
    };
    record.signing.push(run);
    record.signatures_asked = sequence;
    record.head = cid;
    ctx.save(Role::Principal, &record).await?;
    tracing::info!(order = %reference, sequence, signers = ?request.signers, "signature requested");
    Ok((record.clone(), to_each(ctx, &recipients, &blocks)))
}

/// Refuses signature `sequence` of `message` where the order's signing policy does not
/// allow it.
fn check_policy(
    order: &OrderRequest,
    reference: &str,
    sequence: u32,
    message: &[u8],
) -> Result<(), CustodyError> {
    if let Some(expired) = order.policy.expired(crate::context::now_millis()) {
        return Err(CustodyError::Conflict(format!(
            "order {reference} signs nothing more: {expired}"
        )));
    }
    match &order.policy.signing {
        Some(policy) => policy.allows(sequence, message).map_err(|refusal| {
            CustodyError::Conflict(format!(
                "the release policy of order {reference} refuses this signature: {refusal}"
            ))
        }),
        None => Ok(()),
    }
}

/// How long a package waits for its signers' shares before t other commitments replace it.
pub const STALLED_PACKAGE_MS: u64 = 2_000;

/// Longest message a signature request carries.
pub const MAX_MESSAGE: usize = 4096;

/// Fiduciary: its index and the share of the order it holds in the epoch in force.
pub(super) async fn held_share(
    ctx: &RoleContext,
    record: &OrderRecord,
) -> Result<(u32, Secret<32>), CustodyError> {
    let index = record.own_index()?;
    let held = ctx
        .load_secret(&held_share_name(
            &record.principal,
            &record.reference,
            record.epoch,
        ))
        .await?;
    let mut share = Secret::<32>::zero();
    if held.expose().len() != 32 {
        return Err(internal("a held share is not 32 bytes"));
    }
    share.expose_mut().copy_from_slice(held.expose());
    Ok((index, share))
}

/// Fiduciary: the share of the order it holds, as a FROST key share of `commitment`'s key.
async fn key_share(
    ctx: &RoleContext,
    record: &OrderRecord,
    commitment: &Commitment,
) -> Result<KeyShare, CustodyError> {
    let (index, secret) = held_share(ctx, record).await?;
    let index = participant(index)?;
    let threshold = u16::try_from(commitment.threshold)
        .map_err(|_| CustodyError::Invalid("threshold out of range".into()))?;
    let group_key = commitment
        .generated
        .as_ref()
        .ok_or_else(|| internal("a generated key without its group key"))?;
    let group_key = dta_crypto::secp256k1::PublicKey::from_sec1(&group_key.group_key)
        .map_err(|e| internal(e.to_string()))?;
    KeyShare::from_secret(index, threshold, secret.expose(), &group_key)
        .map_err(|e| internal(e.to_string()))
}

/// Fiduciary: fresh nonces and their commitments. The nonces are kept once the envelope that
/// sends the commitments is made, under it ([`keep_nonces`]).
fn fresh_nonces(share: &KeyShare) -> Result<(frost::Nonces, Vec<u8>), CustodyError> {
    frost::commit(share).map_err(refused)
}

/// Fiduciary: keeps `nonces`, whose commitments `envelope` sends, for the record's order.
fn keep_nonces(ctx: &RoleContext, record: &OrderRecord, envelope: Cid, nonces: frost::Nonces) {
    ctx.nonces.keep(envelope, &nonce_owner(record), nonces);
}

/// The order a fiduciary's nonces are kept for.
fn nonce_owner(record: &OrderRecord) -> String {
    format!("{}/{}", record.principal, record.reference)
}

/// Fiduciary: the principal asks for a signature. Makes nonces and returns their commitments'
/// delivery to the principal.
pub async fn on_request(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    cid: Cid,
) -> Result<Option<Delivery>, CustodyError> {
    let reference = envelope.envelope().order.clone();
    let principal = envelope.envelope().sender;
    let mut record = ctx.fiduciary_record(&principal, &reference)?;
    let request: SignRequest = RoleContext::payload(envelope)?;
    let peer = ctx.known_peer(&principal)?;
    if let Some(run) = record.signing.iter().find(|r| r.request == cid) {
        // Asked again: a partial BLS signature (a share with no package) as it was; FROST's
        // share or commitments the same while the nonces they commit to are unused, else
        // fresh commitments.
        let again = if run.package.is_none() && !run.shares.is_empty() {
            run.shares.first()
        } else {
            run.shares
                .first()
                .into_iter()
                .chain(run.fresh.first())
                .find(|(_, sent)| ctx.nonces.holds(sent))
        };
        if let Some(block) = again.and_then(|(_, sent)| ctx.block(sent)) {
            return Ok(Some((peer, vec![block])));
        }
    } else {
        // Requests may arrive out of order; two of one number cannot both be the principal's
        // honest doing.
        let made = signed::made(&ctx.store, &record, request.sequence)?;
        if made.as_ref().is_some_and(|run| run.request == cid) {
            return Ok(None);
        }
        if made.is_some()
            || record
                .signing
                .iter()
                .any(|r| r.sequence == request.sequence)
        {
            return Err(CustodyError::Conflict(format!(
                "signature {} of {reference} was asked for already, in another request",
                request.sequence
            )));
        }
    }
    let certified = record.certificate == Some(request.certificate)
        || (record.certificate.is_none()
            && ctx
                .stored_payload::<Certificate>(&request.certificate)
                .is_ok_and(|c| Some(c.commitment) == record.commitment));
    if request.order != record.order || !certified {
        return Err(CustodyError::Invalid(
            "a signature request of another order or certificate".into(),
        ));
    }
    if !matches!(
        record.state,
        OrderState::Holding | OrderState::Certified | OrderState::Released
    ) {
        return Err(CustodyError::Conflict(format!(
            "order {reference} is {} here: it does not sign",
            record.state
        )));
    }
    if request.message.is_empty() || request.message.len() > MAX_MESSAGE {
        return Err(CustodyError::Invalid("a message of the wrong size".into()));
    }
    let (order, commitment, key) = signing_key(ctx, &record)?;
    check_policy(&order, &reference, request.sequence, &request.message)?;
    // Under a release policy with conditions, a signature waits for the approvals (and delay)
    // a release would; the request is looked at again when a vote arrives or time passes.
    if order.policy.has_conditions()
        && let Some(waiting) = policy_gate(
            ctx,
            &mut record,
            &order,
            cid,
            Gated::Signature(request.sequence),
        )
        .await?
    {
        tracing::info!(order = %reference, sequence = request.sequence, %waiting, "signature held by the release policy");
        return Ok(None);
    }
    if let SigningKey::Bls(_) = key {
        return super::threshold_bls::partial(ctx, record, cid, &request)
            .await
            .map(|sent| Some((peer, vec![sent])));
    }
    let index = record.own_index()?;
    let first_seen = !record.signing.iter().any(|r| r.request == cid);
    if first_seen && request.signers.contains(&index) {
        // A package of commitments this fiduciary sent before comes right after: nothing to
        // send until it does.
        record.signing.push(SigningRun::new(request.sequence, cid));
        ctx.save_buffered(Role::Fiduciary, &record).await?;
        return Ok(None);
    }
    let share = key_share(ctx, &record, &commitment).await?;
    let (nonces, commitments) = fresh_nonces(&share)?;
    let payload = SignCommitment {
        request: cid,
        index,
        commitments: ByteBuf::from(commitments),
    };
    let (sent, bytes) = ctx
        .publish(Kind::SignCommitment, &reference, Some(cid), &payload)
        .await?;
    keep_nonces(ctx, &record, sent, nonces);
    match record.signing.iter_mut().find(|r| r.request == cid) {
        Some(run) => run.fresh = vec![(index, sent)],
        None => {
            let mut run = SigningRun::new(request.sequence, cid);
            run.fresh = vec![(index, sent)];
            record.signing.push(run);
        }
    }
    // Not synced: commitments bind this fiduciary to nothing, and their nonces live in memory
    // only, so a record lost with the machine loses nothing a request asked again cannot
    // make anew. The share is what must not be made twice, and its step is synced.
    ctx.save_buffered(Role::Fiduciary, &record).await?;
    tracing::info!(order = %reference, sequence = request.sequence, "signing commitments sent");
    Ok(Some((peer, vec![bytes])))
}

/// The commitments an envelope carries: a fiduciary's commitment, or the next ones in its
/// signature share.
fn commitments_in(ctx: &RoleContext, cid: &Cid) -> Result<ByteBuf, CustodyError> {
    let envelope = ctx.verified_block(cid)?;
    match envelope.envelope().kind {
        Kind::SignCommitment => Ok(RoleContext::payload::<SignCommitment>(&envelope)?.commitments),
        Kind::SignatureShare => Ok(RoleContext::payload::<SignatureShare>(&envelope)?.next),
        _ => Err(internal(format!("{cid} carries no commitments"))),
    }
}

/// Where the run of `request` is in the record while under way; none once its signature is
/// made (what comes late for it is dropped quietly). Refuses a request not seen here.
pub(super) fn run_of(
    ctx: &RoleContext,
    record: &OrderRecord,
    request: &Cid,
) -> Result<Option<usize>, CustodyError> {
    if let Some(at) = record.signing.iter().position(|r| r.request == *request) {
        return Ok(Some(at));
    }
    let unknown = || CustodyError::Invalid("no such signature request".into());
    let sequence = ctx
        .stored_payload::<SignRequest>(request)
        .map_err(|_| unknown())?
        .sequence;
    match signed::made(&ctx.store, record, sequence)? {
        Some(made) if made.request == *request => Ok(None),
        _ => Err(unknown()),
    }
}

/// Principal: a fiduciary's commitments arrived. Once t are in and no package is under way,
/// publishes one and returns its deliveries to the signers it names.
pub async fn on_commitment(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    cid: Cid,
) -> Result<Vec<Delivery>, CustodyError> {
    let reference = envelope.envelope().order.clone();
    let mut record = ctx.principal_record(&reference)?;
    let payload: SignCommitment = RoleContext::payload(envelope)?;
    check_fiduciary(&record, payload.index, envelope)?;
    if envelope.envelope().prev != Some(payload.request) {
        return Err(CustodyError::Invalid(
            "commitments of another request".into(),
        ));
    }
    let Some(at) = run_of(ctx, &record, &payload.request)? else {
        // Late for a signature made: unused, so a spare for the next.
        if let Some(in_force) = record.commitment {
            ctx.spare_commitments
                .add(&reference, in_force, [(payload.index, cid)]);
        }
        return Ok(Vec::new());
    };
    let run = &mut record.signing[at];
    if run.excluded.iter().any(|(i, _)| *i == payload.index) {
        return Ok(Vec::new());
    }
    // A signer of the package under way that sends fresh commitments has lost the nonces it
    // named there (a restart): that package can never be signed.
    // The same commitments again are not that: the fiduciary was asked again.
    let named = packaged(ctx, run)?;
    if named.contains(&(payload.index, cid)) {
        return Ok(Vec::new());
    }
    let lost = !run.shares.iter().any(|(i, _)| *i == payload.index)
        && named.iter().any(|(index, _)| *index == payload.index);
    if lost {
        tracing::warn!(order = %reference, index = payload.index, "a signer lost its nonces: new package");
        abandon_package(run);
    }
    run.fresh_from(payload.index, cid);
    // A package one of whose signers has said nothing long after it went (gone without a
    // word, or the package lost) gives way once t other commitments are in: they come when
    // the resume loop asks every fiduciary again.
    let stalled = !lost
        && run.package.is_some()
        && crate::context::now_millis().saturating_sub(run.package_at_ms) >= STALLED_PACKAGE_MS
        && run.fresh.len() >= record.threshold as usize;
    if stalled {
        tracing::warn!(order = %reference, "a signer of the package does not answer: new package");
        abandon_package(run);
    }
    let mut sent = if lost || stalled {
        ask_the_rest(ctx, &record, &record.signing[at])?
    } else {
        Vec::new()
    };
    sent.extend(try_package(ctx, record, at).await?);
    Ok(sent)
}

/// Principal: after the first package of a request that went to the signers of spare
/// commitments alone fails, the request to every other fiduciary, for their commitments.
fn ask_the_rest(
    ctx: &RoleContext,
    record: &OrderRecord,
    run: &SigningRun,
) -> Result<Vec<Delivery>, CustodyError> {
    if run.attempt != 2 {
        return Ok(Vec::new());
    }
    let request: SignRequest = ctx.stored_payload(&run.request)?;
    if request.signers.is_empty() {
        return Ok(Vec::new());
    }
    let rest: Vec<Cid> = (1u32..)
        .zip(&record.fiduciaries)
        .filter(|(index, _)| !request.signers.contains(index))
        .map(|(_, fiduciary)| *fiduciary)
        .collect();
    let blocks: Option<Vec<Vec<u8>>> = [record.certificate, Some(run.request)]
        .iter()
        .map(|cid| cid.and_then(|c| ctx.block(&c)))
        .collect();
    let blocks = blocks.ok_or_else(|| internal("a signature request's blocks missing"))?;
    Ok(to_each(ctx, &rest, &blocks))
}

/// The signers the run's package names, with the envelope of the commitments it names.
fn packaged(ctx: &RoleContext, run: &SigningRun) -> Result<Vec<(u32, Cid)>, CustodyError> {
    let Some(package) = run.package else {
        return Ok(Vec::new());
    };
    let package: SignPackage = ctx.stored_payload(&package)?;
    Ok(package.commitments)
}

/// Drops the run's package: the next attempt needs fresh commitments of its signers (the
/// shares in carry theirs, already in `fresh`).
fn abandon_package(run: &mut SigningRun) {
    run.package = None;
    run.package_at_ms = 0;
    run.shares.clear();
    run.attempt += 1;
}

/// Principal: publishes the run's next package if none is under way and t signers'
/// unused commitments are in (lowest indices first); its deliveries.
async fn try_package(
    ctx: &RoleContext,
    mut record: OrderRecord,
    at: usize,
) -> Result<Vec<Delivery>, CustodyError> {
    let reference = record.reference.clone();
    let threshold = record.threshold as usize;
    let run = record.signing[at].clone();
    if run.package.is_some() || run.fresh.len() < threshold {
        ctx.save_buffered(Role::Principal, &record).await?;
        return Ok(Vec::new());
    }
    let mut chosen = run.fresh.clone();
    chosen.sort_unstable();
    chosen.truncate(threshold);
    let request: SignRequest = ctx.stored_payload(&run.request)?;
    let (cid, bytes) = publish_package(ctx, &reference, &run, &chosen, &request.message).await?;
    let run = &mut record.signing[at];
    run.package = Some(cid);
    run.package_at_ms = crate::context::now_millis();
    run.fresh.retain(|f| !chosen.contains(f));
    let attempt = run.attempt;
    ctx.save(Role::Principal, &record).await?;
    tracing::info!(order = %reference, attempt, "signing package sent");
    Ok(to_each(ctx, &signers_of(&record, &chosen), &[bytes]))
}

/// Principal: publishes the package of `run`'s attempt under way that puts `chosen` (signer
/// index, envelope carrying its commitments) together for `message`; its CID and block.
async fn publish_package(
    ctx: &RoleContext,
    reference: &str,
    run: &SigningRun,
    chosen: &[(u32, Cid)],
    message: &[u8],
) -> Result<(Cid, Vec<u8>), CustodyError> {
    let mut commitments = BTreeMap::new();
    for (index, cid) in chosen {
        commitments.insert(participant(*index)?, commitments_in(ctx, cid)?);
    }
    let package = Package::new(&commitments, message).map_err(refused)?;
    let payload = SignPackage {
        request: run.request,
        attempt: run.attempt,
        commitments: chosen.to_vec(),
        excluded: run.excluded.clone(),
        package: ByteBuf::from(package.to_bytes().map_err(refused)?),
    };
    ctx.publish(Kind::SignPackage, reference, Some(run.request), &payload)
        .await
}

/// The fiduciaries of `chosen`'s indices.
fn signers_of(record: &OrderRecord, chosen: &[(u32, Cid)]) -> Vec<Cid> {
    chosen
        .iter()
        .filter_map(|(index, _)| record.fiduciaries.get(*index as usize - 1).copied())
        .collect()
}

/// Whether the principal reaches the fiduciary of `index` now (it is connected, or this node).
fn reachable(ctx: &RoleContext, record: &OrderRecord, index: u32) -> bool {
    index
        .checked_sub(1)
        .and_then(|at| record.fiduciaries.get(at as usize))
        .and_then(|fiduciary| ctx.peer_of(fiduciary))
        .is_some_and(|peer| ctx.network.reaches(&peer))
}

/// Fiduciary: the principal's package. Signs it with the nonces this node committed to for the
/// request (using them up) and returns the share, with fresh commitments, to the principal. A
/// package it signed already gets the same share again; one naming nonces it no longer has
/// gets fresh commitments instead.
pub async fn on_package(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    cid: Cid,
) -> Result<Option<Delivery>, CustodyError> {
    let reference = envelope.envelope().order.clone();
    let principal = envelope.envelope().sender;
    let mut record = ctx.fiduciary_record(&principal, &reference)?;
    let payload: SignPackage = RoleContext::payload(envelope)?;
    let peer = ctx.known_peer(&principal)?;
    if envelope.envelope().prev != Some(payload.request) {
        return Err(CustodyError::Invalid("a package of another request".into()));
    }
    let Some(at) = run_of(ctx, &record, &payload.request)? else {
        return Ok(None);
    };
    if record.signing[at].package == Some(cid)
        && let Some(block) = record.signing[at]
            .shares
            .first()
            .and_then(|(_, share)| ctx.block(share))
    {
        return Ok(Some((peer, vec![block])));
    }
    let index = record.own_index()?;
    let Some(named) = payload
        .commitments
        .iter()
        .find(|(i, _)| *i == index)
        .map(|(_, commitments)| *commitments)
    else {
        return Ok(None);
    };
    let request: SignRequest = ctx.stored_payload(&payload.request)?;
    let package = Package::from_bytes(&payload.package).map_err(refused)?;
    if package.message() != request.message.as_slice() {
        return Err(CustodyError::Invalid(
            "a package of another message than the request's".into(),
        ));
    }
    let commitment = ctx.committed(&record)?;
    let share = key_share(ctx, &record, &commitment).await?;
    let signed = match ctx.nonces.take(&named, &nonce_owner(&record)) {
        Some(nonces) => frost::sign(&package, nonces, &share).ok(),
        None => None,
    };
    let (next_nonces, next) = fresh_nonces(&share)?;
    let Some(signature_share) = signed else {
        // Nonces gone (a restart) or not those named: fresh commitments, for a new package.
        let fresh = SignCommitment {
            request: payload.request,
            index,
            commitments: ByteBuf::from(next),
        };
        let (sent, bytes) = ctx
            .publish(
                Kind::SignCommitment,
                &reference,
                Some(payload.request),
                &fresh,
            )
            .await?;
        keep_nonces(ctx, &record, sent, next_nonces);
        record.signing[at].fresh = vec![(index, sent)];
        ctx.save(Role::Fiduciary, &record).await?;
        tracing::warn!(order = %reference, "a package names nonces not held here: fresh commitments sent");
        return Ok(Some((peer, vec![bytes])));
    };
    let out = SignatureShare {
        package: cid,
        index,
        share: ByteBuf::from(signature_share),
        next: ByteBuf::from(next),
    };
    let (sent, bytes) = ctx
        .publish(Kind::SignatureShare, &reference, Some(cid), &out)
        .await?;
    keep_nonces(ctx, &record, sent, next_nonces);
    let run = &mut record.signing[at];
    run.package = Some(cid);
    run.shares = vec![(index, sent)];
    run.fresh.clear();
    let sequence = run.sequence;
    ctx.save(Role::Fiduciary, &record).await?;
    tracing::info!(order = %reference, sequence, "signature share sent");
    Ok(Some((peer, vec![bytes])))
}

/// Principal: a signer's share arrived. Once every share of the package is in, the signature
/// is made, checked and published, and sent to every fiduciary; if it fails, the first share
/// that fails names its signer, who is left out of a new package.
pub async fn on_share(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    cid: Cid,
) -> Result<Vec<Delivery>, CustodyError> {
    let reference = envelope.envelope().order.clone();
    let mut record = ctx.principal_record(&reference)?;
    let payload: SignatureShare = RoleContext::payload(envelope)?;
    check_fiduciary(&record, payload.index, envelope)?;
    if envelope.envelope().prev != Some(payload.package) {
        return Err(CustodyError::Invalid("a share of another package".into()));
    }
    let package_payload: SignPackage = ctx.stored_payload(&payload.package)?;
    let Some(at) = run_of(ctx, &record, &package_payload.request)? else {
        return Ok(Vec::new());
    };
    let run = &mut record.signing[at];
    if run.excluded.iter().any(|(i, _)| *i == payload.index) {
        return Ok(Vec::new());
    }
    if run.package != Some(payload.package) {
        // A share of an abandoned package: only its fresh commitments count.
        run.fresh_from(payload.index, cid);
        return try_package(ctx, record, at).await;
    }
    if run.shares.iter().any(|(i, _)| *i == payload.index) {
        return Ok(Vec::new());
    }
    let package = Package::from_bytes(&package_payload.package).map_err(refused)?;
    run.shares.push((payload.index, cid));
    run.fresh_from(payload.index, cid);
    if run.shares.len() < package.signers() {
        ctx.save_buffered(Role::Principal, &record).await?;
        return Ok(Vec::new());
    }
    let mut shares = BTreeMap::new();
    for (index, share_cid) in &run.shares {
        let share: SignatureShare = ctx.stored_payload(share_cid)?;
        shares.insert(participant(*index)?, share.share);
    }
    let (_, _, SigningKey::Frost(group)) = signing_key(ctx, &record)? else {
        return Err(CustodyError::Invalid(
            "a FROST signature share for a key that does not sign with FROST".into(),
        ));
    };
    let run = &mut record.signing[at];
    // The aggregate first; each share is checked only when it fails, to name the culprit.
    let signature = match group.aggregate(&package, &shares) {
        Ok(signature) => signature,
        Err(frost::SignError::BadShare(culprit)) => {
            let culprit = u32::from(culprit);
            tracing::warn!(order = %reference, index = culprit, "signature share fails: signer left out");
            let share = run
                .shares
                .iter()
                .find(|(i, _)| *i == culprit)
                .map(|(_, c)| *c)
                .ok_or_else(|| internal("a culprit without a share"))?;
            run.excluded.push((culprit, share));
            run.fresh.retain(|(i, _)| *i != culprit);
            abandon_package(run);
            ctx.spare_commitments.forget_signer(&reference, culprit);
            let mut sent = ask_the_rest(ctx, &record, &record.signing[at])?;
            sent.extend(try_package(ctx, record, at).await?);
            return Ok(sent);
        }
        Err(e) => return Err(refused(e)),
    };
    let request = run.request;
    let out = Signature {
        request,
        scheme: SignatureScheme::Bip340,
        package: Some(payload.package),
        shares: run.shares.iter().map(|(_, c)| *c).collect(),
        excluded: Vec::new(),
        votes: super::approval::votes_on(ctx, &record, request),
        key: ByteBuf::from(group.x_only().map_err(refused)?.to_vec()),
        signature: ByteBuf::from(signature.to_vec()),
    };
    publish_signature(ctx, record, at, &out).await
}

/// Principal: publishes run `at`'s signature and returns its deliveries to every fiduciary
/// asked for it. What made it is in the signature's envelope: the record keeps only its end;
/// the commitments no package used are spares for the next signatures.
pub(super) async fn publish_signature(
    ctx: &RoleContext,
    mut record: OrderRecord,
    at: usize,
    signature: &Signature,
) -> Result<Vec<Delivery>, CustodyError> {
    let reference = record.reference.clone();
    let (signature_cid, bytes) = ctx
        .publish(
            Kind::Signature,
            &reference,
            Some(signature.request),
            signature,
        )
        .await?;
    let request: SignRequest = ctx.stored_payload(&signature.request)?;
    let run = &mut record.signing[at];
    // Only the signers a request named were asked for it, unless its first package failed.
    let asked: Vec<Cid> = if request.signers.is_empty() || run.attempt > 1 {
        record.fiduciaries.clone()
    } else {
        (1u32..)
            .zip(&record.fiduciaries)
            .filter(|(index, _)| request.signers.contains(index))
            .map(|(_, fiduciary)| *fiduciary)
            .collect()
    };
    run.signature = Some(signature_cid);
    let spares = std::mem::take(&mut run.fresh);
    run.shares.clear();
    run.package = None;
    run.package_at_ms = 0;
    let sequence = run.sequence;
    ctx.keep_made(&mut record, at)?;
    record.head = signature_cid;
    ctx.save(Role::Principal, &record).await?;
    if signature.scheme == SignatureScheme::Bip340
        && let Some(in_force) = record.commitment
    {
        ctx.spare_commitments.add(&reference, in_force, spares);
    }
    ctx.metrics
        .threshold_signatures
        .bump(&[signature.scheme.name()]);
    tracing::info!(order = %reference, sequence, scheme = signature.scheme.name(), "signature made");
    Ok(to_each(ctx, &asked, &[bytes]))
}

/// Fiduciary: the signature of a request is made. Nonces it committed to and did not sign
/// with stay, for the principal's next package.
pub async fn on_signature(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    cid: Cid,
) -> Result<(), CustodyError> {
    let reference = envelope.envelope().order.clone();
    let principal = envelope.envelope().sender;
    let mut record = ctx.fiduciary_record(&principal, &reference)?;
    let payload: Signature = RoleContext::payload(envelope)?;
    if let Some(at) = record
        .signing
        .iter()
        .position(|r| r.request == payload.request)
    {
        let run = &mut record.signing[at];
        run.signature = Some(cid);
        run.fresh.clear();
        ctx.keep_made(&mut record, at)?;
        ctx.save_buffered(Role::Fiduciary, &record).await?;
    }
    Ok(())
}
