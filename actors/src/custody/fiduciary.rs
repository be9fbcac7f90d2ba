//! The fiduciary's steps: an order request (generate a key share when the plugin says so),
//! the commitment and the share deal (check the share, keep it through the keystore, sign the
//! commitment), the certificate, and a release request (check sender, certificate,
//! beneficiary and policy, record the release durably, then seal the share to the
//! beneficiary; a repeat gets the same envelope).

use std::collections::BTreeMap;

use dta_crypto::secp256k1;
use dta_crypto::threshold::{Commitments, Share};
use dta_protocol::Cid;
use dta_protocol::envelope::{Kind, SignedEnvelope, VerifiedEnvelope};
use dta_protocol::identity::VerifiedIdentity;
use dta_protocol::misconduct::Offence;
use dta_protocol::order::{
    Certificate, CertificateCheck, CertificateError, Commitment, KeyShare, OrderRequest,
    ReleaseGrounds, ReleaseRequest, ShareDeal, ShareRelease,
};
use dta_protocol::policy::{Situation, Verdict, Waiting};
use serde_bytes::ByteBuf;

use crate::plugin::KeySource;
use crate::role::Role;
use crate::states::OrderState;

use super::approval::votes_of;
use super::batching;
use super::keygen;
use super::principal::{generated_key, order_plugin};
use super::record::{Gated, Hold, KeyGeneration, OrderRecord, held_share_name, share_name};
use super::release::check_beneficiary;
use crate::context::{CustodyError, Delivery, RoleContext, encode, internal, now_millis};
use crate::metrics::{Metrics, PolicyStep};

/// Fiduciary: an order request arrived. For a plugin whose fiduciaries generate the key, this
/// node generates its share, keeps it through the keystore and returns the delivery of the
/// share's public half to the principal. Orders of dealt secrets wait for their deal.
pub async fn on_order_request(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    order_cid: Cid,
) -> Result<Option<Delivery>, CustodyError> {
    let reference = envelope.envelope().order.clone();
    let order: OrderRequest = RoleContext::payload(envelope)?;
    let plugin = order_plugin(&order)?;
    let me = ctx.local.cid();
    let Some(position) = order.fiduciaries.iter().position(|f| *f == me) else {
        return Ok(None);
    };
    if plugin.key_source() != KeySource::Generated {
        return Ok(None);
    }
    let principal = envelope.envelope().sender;
    if order.principal != principal || envelope.envelope().prev.is_some() {
        return Err(CustodyError::Invalid(
            "order request not from its principal".into(),
        ));
    }
    let index = position as u32 + 1;
    let peer = ctx.known_peer(&principal)?;
    ctx.refuse_revoked([&principal].into_iter().chain(&order.beneficiary))?;
    if let Some(existing) = ctx.record(Role::Fiduciary, &principal, &reference)? {
        // Asked again (our key share was lost on the way): send the same one.
        if existing.order == order_cid {
            let share = existing
                .shares
                .get(&index)
                .and_then(|cid| ctx.block(cid))
                .ok_or_else(|| internal("key share block missing"))?;
            return Ok(Some((peer, vec![share])));
        }
        return Err(CustodyError::Exists(existing.reference));
    }
    plugin.accept_custody(&order).map_err(CustodyError::from)?;
    let without_dealer = keygen::without_dealer(plugin, &order);
    let (share_cid, bytes) = if without_dealer {
        keygen::deal(ctx, &reference, order_cid, &order, index).await?
    } else {
        let key = secp256k1::SecretKey::random();
        ctx.keep_secret(
            share_name(&principal, &reference),
            key.to_bytes().expose().to_vec(),
        )
        .await?;
        let share = KeyShare {
            order: order_cid,
            index,
            public_key: ByteBuf::from(key.public_key().to_compressed().to_vec()),
            generated: None,
        };
        ctx.publish(Kind::KeyShare, &reference, Some(order_cid), &share)
            .await?
    };
    let record = OrderRecord {
        fiduciaries: order.fiduciaries,
        threshold: order.threshold,
        max_releases: order.policy.max_releases,
        shares: BTreeMap::from([(index, share_cid)]),
        key_generation: without_dealer.then(KeyGeneration::default),
        ..OrderRecord::fresh(
            reference.clone(),
            Role::Fiduciary,
            OrderState::Generated,
            order_cid,
            principal,
            order_cid,
        )
    };
    ctx.save(Role::Fiduciary, &record).await?;
    tracing::info!(order = %reference, index, "key share generated and kept");
    Ok(Some((peer, vec![bytes])))
}

/// Fiduciary: the commitment to a generated key arrived. Checks that it lists this node's key
/// share, that the key is the sum of the shares it lists and that the outputs follow from it,
/// then signs it. Commitments of dealt secrets are checked with their deal instead.
pub async fn on_commitment(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    commitment_cid: Cid,
) -> Result<Option<Delivery>, CustodyError> {
    let reference = envelope.envelope().order.clone();
    let commitment: Commitment = RoleContext::payload(envelope)?;
    if commitment.reshared.is_some() {
        return super::refresh::on_commitment(ctx, envelope, commitment_cid, &commitment).await;
    }
    let principal = envelope.envelope().sender;
    let Some(mut record) = ctx.record(Role::Fiduciary, &principal, &reference)? else {
        return Ok(None);
    };
    // Shown by another fiduciary of the order when it stalled (see `crosscheck`).
    super::crosscheck::judge(ctx, &record, &commitment, commitment_cid)?;
    if commitment.key_shares.is_empty() {
        return Ok(None);
    }
    if envelope.envelope().sender != record.principal || commitment.order != record.order {
        return Err(CustodyError::Invalid(
            "commitment not from the order's principal".into(),
        ));
    }
    match record.commitment {
        // Sent again (the principal did not get our signature): sign again.
        Some(signed) if signed == commitment_cid => {
            return sign_commitment(ctx, &reference, commitment_cid, record.principal)
                .await
                .map(Some);
        }
        Some(_) => {
            return Err(CustodyError::Conflict(format!(
                "order {reference} already has another commitment"
            )));
        }
        None => {}
    }
    let order: OrderRequest = ctx.stored_payload(&record.order)?;
    let plugin = order_plugin(&order)?;
    let (index, share_cid) = record
        .shares
        .iter()
        .next()
        .map(|(i, c)| (*i, *c))
        .ok_or_else(|| internal("no key share recorded"))?;
    // Without a dealer, the key share is the key generation's end, not its start.
    let share_cid = match &record.key_generation {
        Some(generation) => generation.key_share.ok_or_else(|| {
            CustodyError::Invalid(format!("order {reference} has no key share yet"))
        })?,
        None => share_cid,
    };
    let mine: KeyShare = ctx.stored_payload(&share_cid)?;
    let expected_shape = commitment.plugin == order.plugin
        && commitment.threshold == order.threshold
        && commitment.fiduciaries == order.fiduciaries
        && commitment.feldman.is_empty()
        && commitment.key_shares.len() == order.fiduciaries.len()
        && commitment.beneficiary_share == plugin.beneficiary_share(&order);
    if !expected_shape {
        return Err(CustodyError::Invalid(
            "commitment does not match the order".into(),
        ));
    }
    if commitment.key_shares.get(index as usize - 1) != Some(&mine.public_key) {
        return Err(CustodyError::Invalid(
            "commitment does not list this node's key share".into(),
        ));
    }
    let generated_as_here = match (&mine.generated, &commitment.generated) {
        (None, None) => true,
        (Some(mine), Some(committed)) => {
            mine.round == committed.round
                && mine.group_key == committed.group_key
                && mine.public_shares == commitment.key_shares
        }
        _ => false,
    };
    if !generated_as_here {
        return Err(CustodyError::Invalid(
            "commitment does not list the key this fiduciary generated".into(),
        ));
    }
    let (public_key, output) = generated_key(
        ctx,
        plugin,
        &order,
        &commitment.key_shares,
        commitment.generated.as_ref(),
        commitment.beneficiary_share,
    )?;
    if commitment.public_key.as_slice() != public_key.as_slice() || commitment.output != output {
        return Err(CustodyError::Invalid(
            "commitment key or outputs do not follow from its key shares".into(),
        ));
    }
    record.commitment = Some(commitment_cid);
    record.head = commitment_cid;
    record.state = OrderState::Holding;
    let delivery = sign_commitment(ctx, &reference, commitment_cid, record.principal).await?;
    ctx.save(Role::Fiduciary, &record).await?;
    Ok(Some(delivery))
}

/// Fiduciary: a share was dealt to this node. Returns the signature's delivery to the
/// principal.
pub async fn on_share_deal(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    deal_cid: Cid,
) -> Result<Option<Delivery>, CustodyError> {
    let reference = envelope.envelope().order.clone();
    if let Some(existing) = ctx.record(Role::Fiduciary, &envelope.envelope().sender, &reference)? {
        // The same deal again (the principal did not get our signature): sign again.
        if existing.shares.values().any(|c| *c == deal_cid)
            && envelope.envelope().sender == existing.principal
        {
            let commitment = existing
                .commitment
                .ok_or_else(|| internal("held order without commitment"))?;
            return sign_commitment(ctx, &reference, commitment, existing.principal)
                .await
                .map(Some);
        }
        return Err(CustodyError::Exists(existing.reference));
    }
    let commitment_cid = envelope
        .envelope()
        .prev
        .ok_or_else(|| CustodyError::Invalid("deal does not link its commitment".into()))?;
    let commitment_envelope = ctx.verified_block(&commitment_cid)?;
    let commitment: Commitment = RoleContext::payload(&commitment_envelope)?;
    let order_envelope = ctx.verified_block(&commitment.order)?;
    let order: OrderRequest = RoleContext::payload(&order_envelope)?;
    let principal = envelope.envelope().sender;
    if order_envelope.envelope().sender != principal
        || commitment_envelope.envelope().sender != principal
        || order.principal != principal
    {
        return Err(CustodyError::Invalid(
            "deal, commitment and order have different senders".into(),
        ));
    }
    if order_envelope.envelope().order != reference
        || commitment_envelope.envelope().order != reference
    {
        return Err(CustodyError::Invalid("blocks of another order".into()));
    }
    ctx.refuse_revoked([&principal].into_iter().chain(&order.beneficiary))?;
    let deal: ShareDeal = ctx.sealed(envelope)?;
    let me = ctx.local.cid();
    let position = order.fiduciaries.iter().position(|f| *f == me);
    if position.map(|p| p as u32 + 1) != Some(deal.index) || deal.order != commitment.order {
        return Err(CustodyError::Invalid(
            "this share is not this node's".into(),
        ));
    }
    let value: [u8; 32] = deal
        .share
        .expose()
        .try_into()
        .map_err(|_| CustodyError::Invalid("share is not 32 bytes".into()))?;
    let commitments = Commitments::from_bytes(&commitment.feldman)
        .map_err(|e| CustodyError::Invalid(e.to_string()))?;
    // The deal is signed and sealed to this node alone: a share off the polynomial the
    // principal committed to is the principal's doing.
    Share::from_parts(deal.index, &value)
        .map_err(|e| e.to_string())
        .and_then(|share| commitments.verify_share(&share).map_err(|e| e.to_string()))
        .map_err(|reason| {
            ctx.misconduct(
                principal,
                Offence::DealOffCommitment,
                &format!("its deal {deal_cid} of {reference}: {reason}"),
            )
        })?;
    ctx.keep_secret(
        share_name(&envelope.envelope().sender, &reference),
        value.to_vec(),
    )
    .await?;

    let record = OrderRecord {
        commitment: Some(commitment_cid),
        fiduciaries: order.fiduciaries,
        threshold: order.threshold,
        max_releases: order.policy.max_releases,
        shares: BTreeMap::from([(deal.index, deal_cid)]),
        ..OrderRecord::fresh(
            reference.clone(),
            Role::Fiduciary,
            OrderState::Holding,
            commitment.order,
            principal,
            commitment_cid,
        )
    };
    // The custody signature is made while the share and record reach the disk: this order's
    // alone, or its batch's once this was the last deal the batch waited for.
    let delivery = match batching::deal_taken(ctx, &principal, &reference, commitment_cid) {
        batching::Taken::Alone => Some(
            ctx.save_while(
                Role::Fiduciary,
                &record,
                sign_commitment(ctx, &reference, commitment_cid, principal),
            )
            .await?,
        ),
        // Synced by the write of the batch's last deal, before its signature leaves.
        batching::Taken::Waiting => {
            ctx.save_buffered(Role::Fiduciary, &record).await?;
            None
        }
        batching::Taken::Completes(batch) => {
            let blocks = ctx
                .save_while(Role::Fiduciary, &record, batching::sign(ctx, *batch))
                .await?;
            Some((ctx.known_peer(&principal)?, blocks))
        }
    };
    tracing::info!(order = %reference, index = deal.index, "share verified and kept");
    Ok(delivery)
}

/// Fiduciary: signs the commitment and returns the signature's delivery to the principal.
pub(crate) async fn sign_commitment(
    ctx: &RoleContext,
    reference: &str,
    commitment_cid: Cid,
    principal: Cid,
) -> Result<Delivery, CustodyError> {
    #[cfg(feature = "byzantine")]
    if ctx.misbehaviour == Some(crate::byzantine::Misbehaviour::SignOtherCommitment) {
        return sign_other_commitment(ctx, reference, commitment_cid, principal);
    }
    // The envelope's signature is the custody signature over the commitment.
    let reply = ctx.envelope(
        Kind::CommitmentSignature,
        reference,
        Some(commitment_cid),
        None,
        None,
        &[],
    )?;
    // Staged: it goes to disk with the caller's record, or with the blocks of the event.
    let (_, bytes) = ctx.save_block(&reply).await?;
    let peer = ctx.known_peer(&principal)?;
    Ok((peer, vec![bytes]))
}

/// For [`Misbehaviour::SignOtherCommitment`]: the fiduciary's answer to `commitment`, an
/// envelope that names it but carries a custody signature over another CID (the principal's
/// identity): a real signature of this fiduciary's, on the wrong thing.
#[cfg(feature = "byzantine")]
fn sign_other_commitment(
    ctx: &RoleContext,
    reference: &str,
    commitment: Cid,
    principal: Cid,
) -> Result<Delivery, CustodyError> {
    let elsewhere = ctx.envelope(
        Kind::CommitmentSignature,
        reference,
        Some(principal),
        None,
        None,
        &[],
    )?;
    let answer = dta_protocol::envelope::SignedEnvelope::custody_signature(
        ctx.local.cid(),
        reference,
        commitment,
        elsewhere.signed().signature.clone(),
    )
    .and_then(|signed| signed.to_block())
    .map_err(internal)?;
    tracing::warn!(
        misbehaviour = crate::byzantine::Misbehaviour::SignOtherCommitment.name(),
        "misbehaving on purpose (a test build)"
    );
    Ok((ctx.known_peer(&principal)?, vec![answer.into_bytes()]))
}

/// Fiduciary: the certificate arrived.
pub async fn on_certificate(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    cid: Cid,
) -> Result<(), CustodyError> {
    let reference = envelope.envelope().order.clone();
    let principal = envelope.envelope().sender;
    let Some(mut record) = ctx.record(Role::Fiduciary, &principal, &reference)? else {
        return Ok(());
    };
    // Sent again by a resuming principal: already recorded, and the state may have moved on.
    if record.certificate == Some(cid) {
        return Ok(());
    }
    if envelope.envelope().sender != record.principal {
        return Err(CustodyError::Invalid(
            "certificate not from the principal".into(),
        ));
    }
    // The recorded certificate passed its pairing check when a release relied on it. An honest
    // principal stores its one certificate before any release names it, so a different one
    // now is refused: recorded over the first, it would turn a released order back into a
    // certified one and make the next genuine release look like it names another certificate.
    if let Some(recorded) = record.certificate
        && !record.releases.is_empty()
    {
        return Err(CustodyError::Invalid(format!(
            "order {reference} was released under certificate {recorded}; another is refused"
        )));
    }
    // The aggregate signature is checked when a release relies on it (one pairing check per
    // release instead of one per order at every fiduciary); until then the principal's
    // signed word that the order is certified is enough to record it.
    let certificate: Certificate = RoleContext::payload(envelope)?;
    if Some(certificate.commitment) != record.commitment {
        return Err(CustodyError::Invalid(
            "certificate for another commitment".into(),
        ));
    }
    record.certificate = Some(cid);
    record.head = cid;
    record.state = OrderState::Certified;
    // The release that brought it syncs it before anything is sent.
    ctx.save_buffered(Role::Fiduciary, &record).await
}

/// The identities that certified an order, with the keys they had when the certificate was
/// made (`at`, its envelope's time: a fiduciary may have rotated its keys since).
fn certificate_signers(
    ctx: &RoleContext,
    record: &OrderRecord,
    at: u64,
) -> Result<Vec<VerifiedIdentity>, CustodyError> {
    Ok(ctx
        .known_identities(&record.fiduciaries)?
        .iter()
        .map(|identity| identity.as_of(at).clone())
        .collect())
}

/// A certificate's pairing check that a step waits for. The role has it run off its queue,
/// batched with others (see [`crate::certificates`]), then handles the step's delivery again,
/// and the step finds the outcome under `key`.
#[derive(Debug)]
pub struct PendingCheck {
    /// What the check vouches for: the certificate's CID (as a block of its own payload, for
    /// one not published yet).
    pub key: Cid,
    /// The check.
    pub check: CertificateCheck,
}

/// What a fiduciary does next with a release request.
#[derive(Debug)]
pub enum ReleaseStep {
    /// Send the sealed share (recorded durably already) to the beneficiary.
    Deliver(Delivery),
    /// Have the order's certificate checked first; nothing was recorded yet.
    CheckCertificate(Box<PendingCheck>),
    /// The order's release policy holds the request (approvals missing, or its delay
    /// running); recorded, and looked at again when a vote arrives or time passes.
    Held(Waiting),
}

/// Fiduciary: the order's release policy on this request, by this node's clock and the votes
/// it has. `None` lets the request go on (and drops its hold); a wait is recorded (the delay
/// runs from the first sight of the request) and returned; a refusal drops the hold and is an
/// error.
pub(crate) async fn policy_gate(
    ctx: &RoleContext,
    record: &mut OrderRecord,
    order: &OrderRequest,
    request_cid: Cid,
    gated: Gated,
) -> Result<Option<Waiting>, CustodyError> {
    let now = now_millis();
    let held = record
        .held
        .iter()
        .find(|h| h.request == request_cid)
        .cloned();
    let (approvals, vetoes) = votes_of(&ctx.store, record)?;
    let situation = Situation {
        order: record.order,
        request: request_cid,
        request_seen_ms: held.as_ref().map_or(now, |h| h.seen_ms),
        now_ms: now,
        tolerance_ms: ctx.clock_tolerance_ms,
        released: match gated {
            Gated::Release(_) => record.releases_served(),
            Gated::Move | Gated::Signature(_) | Gated::Cancel => 0,
        },
        approvals: &approvals,
        vetoes: &vetoes,
    };
    match order.policy.evaluate(&situation) {
        Verdict::Release => {
            record.held.retain(|h| h.request != request_cid);
            Ok(None)
        }
        Verdict::Wait(waiting) => {
            if held.is_none() {
                record.held.push(Hold {
                    gated,
                    request: request_cid,
                    seen_ms: now,
                });
                ctx.save(Role::Fiduciary, record).await?;
                Metrics::bump(&ctx.metrics.releases_held);
            }
            tracing::info!(order = %record.reference, %gated, %waiting, "held by the release policy");
            Ok(Some(waiting))
        }
        Verdict::Refused(refusal) => {
            if held.is_some() {
                record.held.retain(|h| h.request != request_cid);
                ctx.save(Role::Fiduciary, record).await?;
            }
            Metrics::bump(&ctx.metrics.releases_refused_by_policy);
            Err(CustodyError::Conflict(format!(
                "{gated} of {} refused by its policy: {refusal}",
                record.reference
            )))
        }
    }
}

/// Refuses a release to anyone but the beneficiary an order names, where it names one.
pub(crate) fn check_named_beneficiary(
    reference: &str,
    order: &OrderRequest,
    request: &ReleaseRequest,
) -> Result<(), CustodyError> {
    match order.beneficiary {
        Some(named) if named != request.beneficiary => Err(CustodyError::Invalid(format!(
            "release {} of {reference} is for {}, but the order is for beneficiary {named}",
            request.sequence, request.beneficiary
        ))),
        _ => Ok(()),
    }
}

/// Fiduciary: a release request arrived. Checks it, records the release durably, and returns
/// the share's delivery to the beneficiary; or, the first time, asks for the certificate's
/// pairing check, which runs off the role's queue (batched with other releases' checks).
pub async fn on_release_request(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    request_cid: Cid,
) -> Result<ReleaseStep, CustodyError> {
    let reference = envelope.envelope().order.clone();
    // Found under its sender: a request from anyone but the order's principal finds none.
    let mut record = ctx
        .record(Role::Fiduciary, &envelope.envelope().sender, &reference)?
        .ok_or_else(|| CustodyError::NotFound(reference.clone()))?;
    if envelope.envelope().sender != record.principal {
        return Err(CustodyError::Invalid(format!(
            "release of {reference} requested by {}, not by its principal",
            envelope.envelope().sender
        )));
    }
    if matches!(
        record.state,
        OrderState::Cancelled | OrderState::Expired | OrderState::Retired
    ) {
        return Err(CustodyError::Conflict(format!(
            "order {reference} is {} here: its share is deleted",
            record.state
        )));
    }
    let request: ReleaseRequest = RoleContext::payload(envelope)?;
    ctx.refuse_revoked([&record.principal, &request.beneficiary])?;
    let certificate_cid = record.certificate.ok_or_else(|| {
        CustodyError::Conflict(format!("order {reference} is not certified here"))
    })?;
    if request.certificate != certificate_cid || request.order != record.order {
        return Err(CustodyError::Invalid(
            "release names another order or certificate".into(),
        ));
    }
    if record.releases.get(&request.sequence) == Some(&request_cid)
        && let Some(served) = record.served.get(&request.sequence)
    {
        // The same request again: the beneficiary lost what was sent, or never got it. It
        // gets the same sealed share; nothing is released or counted again.
        let bytes = ctx
            .block(served)
            .ok_or_else(|| internal("served share block missing"))?;
        let peer = ctx
            .peer_of(&request.beneficiary)
            .ok_or_else(|| CustodyError::UnknownIdentity(request.beneficiary.to_string()))?;
        tracing::info!(order = %reference, sequence = request.sequence, "served share sent again");
        return Ok(ReleaseStep::Deliver((peer, vec![bytes])));
    }
    if record.releases.contains_key(&request.sequence) {
        return Err(CustodyError::Conflict(format!(
            "release {} of {reference} was already served (replay)",
            request.sequence
        )));
    }
    let order: OrderRequest = ctx.stored_payload(&record.order)?;
    order_plugin(&order)?
        .check_release()
        .map_err(CustodyError::from)?;
    check_named_beneficiary(&reference, &order, &request)?;
    if request.sequence == 0
        || request.sequence > record.max_releases
        || request.sequence != record.releases_served() + 1
    {
        return Err(CustodyError::Conflict(format!(
            "release {} of {reference} is not allowed by its policy ({} allowed, {} served)",
            request.sequence,
            record.max_releases,
            record.releases_served()
        )));
    }
    let beneficiary = ctx
        .identity(&request.beneficiary)
        .ok_or_else(|| CustodyError::UnknownIdentity(request.beneficiary.to_string()))?;
    let commitment_cid = record
        .commitment
        .ok_or_else(|| internal("held order without commitment"))?;
    check_beneficiary(ctx, &commitment_cid, &request.beneficiary)?;
    if let Some(expired) = order.policy.expired(now_millis()) {
        Metrics::bump(&ctx.metrics.releases_refused_by_policy);
        return Err(CustodyError::Conflict(format!(
            "release {} of {reference} refused: {expired}",
            request.sequence
        )));
    }
    // The policy before the certificate's pairing check: a held request is looked at again
    // with each vote, and only the look that lets it go pays for the check.
    if order.policy.has_conditions() {
        let started = std::time::Instant::now();
        let gate = policy_gate(
            ctx,
            &mut record,
            &order,
            request_cid,
            Gated::Release(request.sequence),
        )
        .await;
        ctx.metrics
            .observe_policy(PolicyStep::Check, started.elapsed());
        if let Some(waiting) = gate? {
            return Ok(ReleaseStep::Held(waiting));
        }
    }
    let certificate: Certificate = ctx.stored_payload(&certificate_cid)?;
    let passed = match ctx.certificate_checks.take_outcome(&certificate_cid) {
        Some(outcome) => outcome,
        None => {
            let at = ctx
                .block(&certificate_cid)
                .and_then(|bytes| SignedEnvelope::decode_seen(&bytes).ok())
                .map_or(u64::MAX, |signed| signed.envelope.timestamp);
            let signers = certificate_signers(ctx, &record, at)?;
            let signers: Vec<&VerifiedIdentity> = signers.iter().collect();
            let invalid = |e: CertificateError| CustodyError::Invalid(e.to_string());
            // The batch's check passed for another of its orders a moment ago: no need to
            // decode the signature or to wait for the checker.
            let digest = certificate
                .check_digest(commitment_cid, &signers)
                .map_err(invalid)?;
            if !ctx.certificate_checks.passed_lately(&digest) {
                return Ok(ReleaseStep::CheckCertificate(Box::new(PendingCheck {
                    key: certificate_cid,
                    check: certificate
                        .prepare_check(commitment_cid, &signers)
                        .map_err(invalid)?,
                })));
            }
            true
        }
    };
    if !passed {
        return Err(CustodyError::Invalid(
            CertificateError::Signature.to_string(),
        ));
    }
    let beneficiary_peer = ctx
        .peer_of(&request.beneficiary)
        .ok_or_else(|| CustodyError::UnknownIdentity(request.beneficiary.to_string()))?;
    #[cfg(feature = "byzantine")]
    if ctx.misbehaviour == Some(crate::byzantine::Misbehaviour::Replay)
        && let Some(previous) = request
            .sequence
            .checked_sub(1)
            .and_then(|sequence| record.served.get(&sequence))
            .and_then(|served| ctx.block(served))
    {
        tracing::warn!(
            misbehaviour = crate::byzantine::Misbehaviour::Replay.name(),
            "misbehaving on purpose (a test build)"
        );
        return Ok(ReleaseStep::Deliver((beneficiary_peer, vec![previous])));
    }
    let value = ctx
        .load_secret(&held_share_name(
            &record.principal,
            &reference,
            record.epoch,
        ))
        .await?;
    let index = *record
        .shares
        .keys()
        .next()
        .ok_or_else(|| internal("no share index recorded"))?;
    #[cfg(feature = "byzantine")]
    let value = crate::byzantine::tampered(
        ctx.misbehaviour,
        crate::byzantine::Misbehaviour::WrongShare,
        value,
    );
    let released = ShareRelease {
        release: request_cid,
        index,
        share: value,
    };
    let plain = zeroize::Zeroizing::new(encode(&released)?);
    // Under a policy, the votes this release relied on go in the clear beside the share.
    let grounds = if order.policy.has_conditions() {
        Some(encode(&ReleaseGrounds {
            votes: record.votes.clone(),
        })?)
    } else {
        None
    };
    let reply = ctx.envelope(
        Kind::ShareRelease,
        &reference,
        Some(request_cid),
        grounds,
        Some(&plain),
        &[&beneficiary],
    )?;
    // The release is recorded with the sealed share in one synced batch before the share is
    // sent: after a crash either both are on disk (and the sequence is used) or neither is
    // (and nothing was sent), so the same sequence is never released twice.
    let (reply_cid, bytes) = ctx.save_block(&reply).await?;
    record.releases.insert(request.sequence, request_cid);
    record.served.insert(request.sequence, reply_cid);
    record.held.retain(|h| h.request != request_cid);
    record.head = request_cid;
    record.state = OrderState::Released;
    ctx.save(Role::Fiduciary, &record).await?;
    tracing::info!(order = %reference, sequence = request.sequence, "share released to the beneficiary");
    #[cfg(feature = "byzantine")]
    if ctx.misbehaviour == Some(crate::byzantine::Misbehaviour::Equivocate) {
        // The same share sealed again is another envelope: a second answer, sent after the
        // first.
        let other = ctx.envelope(
            Kind::ShareRelease,
            &reference,
            Some(request_cid),
            reply.envelope().public.as_ref().map(|p| p.to_vec()),
            Some(&plain),
            &[&beneficiary],
        )?;
        let other = other.signed().to_block().map_err(internal)?.into_bytes();
        tracing::warn!(
            misbehaviour = crate::byzantine::Misbehaviour::Equivocate.name(),
            "misbehaving on purpose (a test build)"
        );
        return Ok(ReleaseStep::Deliver((beneficiary_peer, vec![bytes, other])));
    }
    Ok(ReleaseStep::Deliver((beneficiary_peer, vec![bytes])))
}
