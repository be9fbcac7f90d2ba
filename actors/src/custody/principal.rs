//! The principal's steps up to certification: make the order (deal a secret's shares, or ask
//! the fiduciaries for key shares), take each fiduciary's key share and build the commitment,
//! take the commitment signatures and publish the certificate. Releases are in `release`,
//! resuming after a restart in `resume`.

use std::collections::BTreeMap;

use dta_crypto::dkg::Scheme;
use dta_crypto::threshold::{self, SecretScalar};
use dta_crypto::{Secret, bls, secp256k1};
use dta_protocol::Cid;
use dta_protocol::envelope::{Kind, SignedEnvelope, VerifiedEnvelope};
use dta_protocol::identity::VerifiedIdentity;
use dta_protocol::misconduct::Offence;
use dta_protocol::order::{
    Certificate, Commitment, GeneratedKey, KeyShare, OrderRequest, SecretBytes, ShareDeal,
    custody_message,
};
use libp2p::PeerId;
use serde_bytes::ByteBuf;

use crate::plugin::{self, KeySource, Plugin};
use crate::role::Role;
use crate::states::OrderState;

use super::fiduciary::PendingCheck;
use super::keygen;
use super::record::{KeyGeneration, OrderRecord};
use super::release::{check_can_receive, check_holds_shares};
use super::{MAX_REFERENCE_LEN, NewOrder};
use crate::context::{CustodyError, Delivery, Durability, RoleContext, encode, internal};

/// What the principal prepared for a new order: the record and, per fiduciary, the blocks to
/// deliver.
#[derive(Debug)]
pub struct Prepared {
    /// The stored record.
    pub record: OrderRecord,
    /// (fiduciary peer, blocks in delivery order).
    pub deliveries: Vec<Delivery>,
}

/// Principal: builds, stores and returns everything for a new order.
pub async fn create_order(ctx: &RoleContext, new: NewOrder) -> Result<Prepared, CustodyError> {
    let plugin = plugin::find(&new.plugin).ok_or_else(|| {
        CustodyError::Invalid(format!(
            "unknown plugin {:?}; this node supports {}",
            new.plugin,
            plugin::names()
        ))
    })?;
    let n = new.fiduciaries.len();
    if new.threshold == 0 || new.threshold as usize > n {
        return Err(CustodyError::Invalid(format!(
            "threshold must be between 1 and the number of fiduciaries ({n})"
        )));
    }
    let mut distinct = new.fiduciaries.clone();
    distinct.sort();
    distinct.dedup();
    if distinct.len() != n {
        return Err(CustodyError::Invalid("a fiduciary is listed twice".into()));
    }
    new.policy
        .validate()
        .map_err(|e| CustodyError::Invalid(e.to_string()))?;
    let reference = new
        .reference
        .clone()
        .unwrap_or_else(|| format!("order-{}", hex::encode(Secret::<8>::random().expose())));
    if reference.is_empty()
        || reference.len() > MAX_REFERENCE_LEN
        || !reference
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(CustodyError::Invalid(format!(
            "reference must be 1 to {MAX_REFERENCE_LEN} characters of A-Z a-z 0-9 - _ ."
        )));
    }
    let request = OrderRequest {
        plugin: new.plugin.clone(),
        principal: ctx.local.cid(),
        fiduciaries: new.fiduciaries.clone(),
        threshold: new.threshold,
        beneficiary: new.beneficiary,
        policy: new.policy.clone(),
        input: new.input.clone(),
    };
    plugin
        .check_order(&request)
        .and_then(|()| plugin.check_secret(new.secret.as_ref()))
        .map_err(CustodyError::from)?;
    if let Some(every) = new.refresh_every_ms {
        check_refresh_every(plugin, &request, every)?;
    }
    if ctx.own_record(&reference)?.is_some() {
        return Err(CustodyError::Exists(reference));
    }
    // Parties this node never met are looked up before anything is checked against them.
    let parties: Vec<Cid> = new
        .fiduciaries
        .iter()
        .chain(&new.beneficiary)
        .copied()
        .collect();
    ctx.ensure_known(&parties).await?;
    ctx.refuse_revoked(
        [&request.principal]
            .into_iter()
            .chain(&new.fiduciaries)
            .chain(&new.beneficiary),
    )?;
    let fiduciaries: Vec<VerifiedIdentity> = ctx.known_identities(&new.fiduciaries)?;
    if let Some(beneficiary) = &new.beneficiary {
        ctx.identity(beneficiary)
            .ok_or_else(|| CustodyError::UnknownIdentity(beneficiary.to_string()))?;
        check_can_receive(ctx, beneficiary)?;
    }
    for fiduciary in &new.fiduciaries {
        check_holds_shares(ctx, fiduciary)?;
    }
    let fiduciary_peers: Vec<PeerId> = fiduciaries
        .iter()
        .map(|f| {
            ctx.peer_of(&f.cid())
                .ok_or_else(|| CustodyError::UnknownIdentity(f.cid().to_string()))
        })
        .collect::<Result<_, _>>()?;
    // Plugins seal before anything is staged, so a refusal leaves nothing behind.
    let key = SecretScalar::random();
    let sealed_output = match plugin.key_source() {
        KeySource::Dealt => plugin
            .seal(&reference, &key, new.secret.as_ref())
            .map_err(CustodyError::from)?,
        KeySource::Generated => BTreeMap::new(),
    };

    let (order_cid, order_bytes) = ctx
        .publish(Kind::OrderRequest, &reference, None, &request)
        .await?;
    let mut record = OrderRecord {
        fiduciaries: new.fiduciaries.clone(),
        threshold: new.threshold,
        max_releases: new.policy.max_releases,
        key_generation: keygen::without_dealer(plugin, &request).then(KeyGeneration::default),
        refresh_every_ms: new.refresh_every_ms,
        ..OrderRecord::fresh(
            reference.clone(),
            Role::Principal,
            OrderState::Ordered,
            order_cid,
            ctx.local.cid(),
            order_cid,
        )
    };
    if plugin.key_source() == KeySource::Generated {
        // Each fiduciary answers the request with the public half of a share it generates.
        ctx.save(Role::Principal, &record).await?;
        let deliveries = fiduciary_peers
            .into_iter()
            .map(|peer| (peer, vec![order_bytes.clone()]))
            .collect();
        return Ok(Prepared { record, deliveries });
    }

    let (shares, commitments) =
        threshold::split(&key, new.threshold as usize, n).map_err(internal)?;
    let feldman = feldman_bytes(&commitments);
    let commitment = Commitment {
        order: order_cid,
        plugin: new.plugin.clone(),
        threshold: new.threshold,
        fiduciaries: new.fiduciaries.clone(),
        feldman: feldman.clone(),
        key_shares: Vec::new(),
        beneficiary_share: None,
        // The constant term's commitment is the group public key, already encoded.
        public_key: feldman[0].clone(),
        output: sealed_output,
        generated: None,
        reshared: None,
    };
    let (commitment_cid, commitment_bytes) = ctx
        .publish(Kind::Commitment, &reference, Some(order_cid), &commitment)
        .await?;

    let mut deliveries = Vec::with_capacity(n);
    for ((fiduciary, share), peer) in fiduciaries.iter().zip(&shares).zip(fiduciary_peers) {
        let dealt = SecretBytes::new(share.value_bytes().expose().to_vec());
        #[cfg(feature = "byzantine")]
        let dealt = match share.index() {
            1 => crate::byzantine::tampered(
                ctx.misbehaviour,
                crate::byzantine::Misbehaviour::BadDeal,
                dealt,
            ),
            _ => dealt,
        };
        let deal = ShareDeal {
            order: order_cid,
            index: share.index(),
            share: dealt,
            commitments: feldman.clone(),
        };
        let plain = zeroize::Zeroizing::new(encode(&deal)?);
        let envelope = ctx.envelope(
            Kind::ShareDeal,
            &reference,
            Some(commitment_cid),
            None,
            Some(&plain),
            &[fiduciary],
        )?;
        let (deal_cid, deal_bytes) = ctx.save_block(&envelope).await?;
        record.shares.insert(share.index(), deal_cid);
        deliveries.push((
            peer,
            vec![order_bytes.clone(), commitment_bytes.clone(), deal_bytes],
        ));
    }
    #[cfg(feature = "byzantine")]
    if ctx.misbehaviour == Some(crate::byzantine::Misbehaviour::SplitCommitment) {
        split_commitment(
            ctx,
            &reference,
            &key,
            &commitment,
            &fiduciaries,
            &mut deliveries,
        )
        .await?;
    }
    record.state = OrderState::Dealt;
    record.commitment = Some(commitment_cid);
    record.head = commitment_cid;
    // With no other order on its way, the certificate will be checked alone (see
    // `on_commitment_signature`): the half of that check that needs no signature is made
    // while the record reaches the disk and the fiduciaries sign.
    if ctx.orders_in_progress() == 0 {
        ctx.certificate_checks.prepare(commitment_cid, fiduciaries);
    }
    ctx.save(Role::Principal, &record).await?;
    Ok(Prepared { record, deliveries })
}

/// Feldman commitments as a commitment and its deals carry them.
pub(super) fn feldman_bytes(commitments: &threshold::Commitments) -> Vec<ByteBuf> {
    commitments
        .to_bytes()
        .iter()
        .map(|c| ByteBuf::from(c.to_vec()))
        .collect()
}

/// For [`crate::byzantine::Misbehaviour::SplitCommitment`]: the last fiduciary's delivery
/// replaced by another commitment to the same key and order (another polynomial) and a deal
/// on it.
#[cfg(feature = "byzantine")]
async fn split_commitment(
    ctx: &RoleContext,
    reference: &str,
    key: &SecretScalar,
    commitment: &Commitment,
    fiduciaries: &[VerifiedIdentity],
    deliveries: &mut [Delivery],
) -> Result<(), CustodyError> {
    let (shares, commitments) =
        threshold::split(key, commitment.threshold as usize, fiduciaries.len())
            .map_err(internal)?;
    let feldman = feldman_bytes(&commitments);
    let other = Commitment {
        feldman: feldman.clone(),
        ..commitment.clone()
    };
    let envelope = ctx.envelope(
        Kind::Commitment,
        reference,
        Some(commitment.order),
        Some(encode(&other)?),
        None,
        &[],
    )?;
    let (other_cid, other_bytes) = ctx.save_block(&envelope).await?;
    let (Some(share), Some(last), Some((_, blocks))) =
        (shares.last(), fiduciaries.last(), deliveries.last_mut())
    else {
        return Ok(());
    };
    let deal = ShareDeal {
        order: commitment.order,
        index: share.index(),
        share: SecretBytes::new(share.value_bytes().expose().to_vec()),
        commitments: feldman,
    };
    let plain = zeroize::Zeroizing::new(encode(&deal)?);
    let envelope = ctx.envelope(
        Kind::ShareDeal,
        reference,
        Some(other_cid),
        None,
        Some(&plain),
        &[last],
    )?;
    let (_, deal_bytes) = ctx.save_block(&envelope).await?;
    tracing::warn!(
        misbehaviour = "split-commitment",
        "misbehaving on purpose (a test build)"
    );
    *blocks = vec![blocks[0].clone(), other_bytes, deal_bytes];
    Ok(())
}

/// Principal: a fiduciary's key share arrived. Once every fiduciary's is in (and, for a key
/// generated without a dealer, all agree on it), publishes the commitment to the whole key
/// and returns its deliveries.
pub async fn on_key_share(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    cid: Cid,
) -> Result<Vec<Delivery>, CustodyError> {
    let reference = envelope.envelope().order.clone();
    let mut record = ctx.principal_record(&reference)?;
    let share: KeyShare = RoleContext::payload(envelope)?;
    check_fiduciary(&record, share.index, envelope)?;
    if share.order != record.order {
        return Err(CustodyError::Invalid("key share for another order".into()));
    }
    let order: OrderRequest = ctx.stored_payload(&record.order)?;
    order_plugin(&order)?
        .key_scheme()
        .check_public_share(&share.public_key)
        .map_err(|e| CustodyError::Invalid(e.to_string()))?;
    let (key_shares, generated) = if record.key_generation.is_some() {
        match keygen::on_key_share(ctx, &mut record, envelope, &share, cid).await? {
            Some((key_shares, generated)) => (key_shares, Some(generated)),
            None => return Ok(Vec::new()),
        }
    } else {
        if envelope.envelope().prev != Some(record.order) {
            return Err(CustodyError::Invalid("key share for another order".into()));
        }
        if !all_answered(ctx, &mut record, share.index, cid).await? {
            return Ok(Vec::new());
        }
        let key_shares = record
            .shares
            .values()
            .map(|cid| {
                let share: KeyShare = ctx.stored_payload(cid)?;
                Ok(share.public_key)
            })
            .collect::<Result<_, CustodyError>>()?;
        (key_shares, None)
    };
    commit_generated_key(ctx, record, key_shares, generated).await
}

/// Whether `commitment` is one that a refresh or a move of `record`'s order replaced: found
/// going back from the commitment in force through what each came from, or made for the
/// request of one of those and replaced by it (a dealer was excluded).
fn replaced(
    ctx: &RoleContext,
    record: &OrderRecord,
    commitment: Cid,
) -> Result<bool, CustodyError> {
    let candidate: Option<Cid> = ctx
        .stored_payload::<Commitment>(&commitment)
        .ok()
        .and_then(|c| c.reshared)
        .map(|r| r.request);
    let mut current = record.commitment;
    // One step per epoch: never more than the order has had.
    for _ in 0..=record.epoch {
        let Some(cid) = current else {
            return Ok(false);
        };
        let payload: Commitment = ctx.stored_payload(&cid)?;
        let reshared = payload.reshared;
        if cid != commitment
            && candidate.is_some()
            && reshared.as_ref().map(|r| r.request) == candidate
        {
            return Ok(true);
        }
        current = reshared.map(|r| r.previous);
        if current == Some(commitment) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Refuses a proactive refresh an order could not have: too frequent, of a key that never
/// leaves its committee, or of an n-of-n key added up (the cases a refresh itself refuses).
fn check_refresh_every(
    plugin: &dyn Plugin,
    request: &OrderRequest,
    every_ms: u64,
) -> Result<(), CustodyError> {
    let refused = |why: &str| Err(CustodyError::Invalid(format!("refresh_every_ms: {why}")));
    if every_ms < super::MIN_REFRESH_EVERY_MS {
        return refused(&format!("at least {} ms", super::MIN_REFRESH_EVERY_MS));
    }
    plugin.check_release().map_err(CustodyError::from)?;
    if plugin.key_source() == KeySource::Generated && !keygen::without_dealer(plugin, request) {
        return refused("an n-of-n key added up from its shares is not refreshed");
    }
    Ok(())
}

/// Refuses an envelope that speaks for fiduciary `index` of the record's order when its
/// sender is not that fiduciary.
pub(crate) fn check_fiduciary(
    record: &OrderRecord,
    index: u32,
    envelope: &VerifiedEnvelope,
) -> Result<(), CustodyError> {
    let sender = envelope.envelope().sender;
    if record.fiduciaries.get((index as usize).wrapping_sub(1)) != Some(&sender) {
        return Err(CustodyError::Invalid(format!(
            "{sender} is not fiduciary {index} of {}",
            record.reference
        )));
    }
    Ok(())
}

/// Principal: takes fiduciary `index`'s answer to the request of a generated key (its key
/// share, or its commitment to a key generation) into `record.shares`; whether every
/// fiduciary's is in now. A repeat, or an answer after the order moved on, changes nothing.
pub(crate) async fn all_answered(
    ctx: &RoleContext,
    record: &mut OrderRecord,
    index: u32,
    cid: Cid,
) -> Result<bool, CustodyError> {
    if record.state != OrderState::Ordered || record.shares.contains_key(&index) {
        return Ok(false);
    }
    record.shares.insert(index, cid);
    if record.shares.len() < record.fiduciaries.len() {
        // Answers need not survive a crash: resuming asks for missing ones again.
        ctx.save_buffered(Role::Principal, record).await?;
        return Ok(false);
    }
    Ok(true)
}

/// Principal: publishes the commitment to a generated key (its public shares, and how a key
/// generated without a dealer came about) and returns its deliveries to the fiduciaries.
async fn commit_generated_key(
    ctx: &RoleContext,
    mut record: OrderRecord,
    key_shares: Vec<ByteBuf>,
    generated: Option<GeneratedKey>,
) -> Result<Vec<Delivery>, CustodyError> {
    let reference = record.reference.clone();
    let order: OrderRequest = RoleContext::payload(&ctx.verified_block(&record.order)?)?;
    let plugin = order_plugin(&order)?;
    let beneficiary_share = plugin.beneficiary_share(&order);
    let (public_key, output) = generated_key(
        ctx,
        plugin,
        &order,
        &key_shares,
        generated.as_ref(),
        beneficiary_share,
    )?;
    // A key generated without a dealer hangs off its round, which the audit then walks.
    let prev = generated.as_ref().map_or(record.order, |g| g.round);
    let commitment = Commitment {
        order: record.order,
        plugin: order.plugin.clone(),
        threshold: order.threshold,
        fiduciaries: order.fiduciaries.clone(),
        feldman: Vec::new(),
        key_shares,
        beneficiary_share,
        public_key: ByteBuf::from(public_key),
        output,
        generated,
        reshared: None,
    };
    let (commitment_cid, bytes) = ctx
        .publish(Kind::Commitment, &reference, Some(prev), &commitment)
        .await?;
    record.commitment = Some(commitment_cid);
    record.head = commitment_cid;
    record.state = OrderState::Committed;
    // As for a dealt order (see `create_order`).
    if ctx.orders_in_progress() <= 1 {
        let fiduciaries = ctx.known_identities(&record.fiduciaries)?;
        ctx.certificate_checks.prepare(commitment_cid, fiduciaries);
    }
    ctx.save(Role::Principal, &record).await?;
    tracing::info!(order = %reference, commitment = %commitment_cid, "key shares combined");
    Ok(to_each(ctx, &record.fiduciaries, &[bytes]))
}

/// The same blocks for each of `identities` whose peer this node knows.
pub(crate) fn to_each(ctx: &RoleContext, identities: &[Cid], blocks: &[Vec<u8>]) -> Vec<Delivery> {
    identities
        .iter()
        .filter_map(|identity| ctx.peer_of(identity))
        .map(|peer| (peer, blocks.to_vec()))
        .collect()
}

/// A generated key's public key (its group's encoding) and the plugin's outputs for it. On
/// secp256k1: the group key of a key generated without a dealer, or else the sum of the public
/// shares; plus the beneficiary's identity key when it holds a share. In any other group: the
/// group key of its key generation.
pub(crate) fn generated_key(
    ctx: &RoleContext,
    plugin: &dyn Plugin,
    order: &OrderRequest,
    key_shares: &[ByteBuf],
    generated: Option<&GeneratedKey>,
    beneficiary: Option<Cid>,
) -> Result<(Vec<u8>, BTreeMap<String, String>), CustodyError> {
    match (plugin.key_scheme(), generated) {
        (Scheme::Secp256k1Taproot, _) => {
            let public_key = generated_public_key(ctx, key_shares, generated, beneficiary)?;
            let output = plugin
                .key_output(order, &public_key)
                .map_err(CustodyError::from)?;
            Ok((public_key.to_compressed().to_vec(), output))
        }
        (scheme, Some(generated)) if beneficiary.is_none() => {
            scheme
                .check_public_share(&generated.group_key)
                .map_err(|e| CustodyError::Invalid(e.to_string()))?;
            Ok((generated.group_key.to_vec(), BTreeMap::new()))
        }
        (scheme, _) => Err(CustodyError::Invalid(format!(
            "a {} key comes from a key generation alone",
            scheme.name()
        ))),
    }
}

fn generated_public_key(
    ctx: &RoleContext,
    key_shares: &[ByteBuf],
    generated: Option<&GeneratedKey>,
    beneficiary: Option<Cid>,
) -> Result<secp256k1::PublicKey, CustodyError> {
    match generated {
        Some(generated) => {
            combined_key(ctx, std::slice::from_ref(&generated.group_key), beneficiary)
        }
        None => combined_key(ctx, key_shares, beneficiary),
    }
}

/// The plugin an order names.
pub(crate) fn order_plugin(order: &OrderRequest) -> Result<&'static dyn Plugin, CustodyError> {
    plugin::find(&order.plugin)
        .ok_or_else(|| CustodyError::Invalid(format!("unknown plugin {:?}", order.plugin)))
}

/// `Σ S_i`, plus the beneficiary's identity key when it holds a share.
fn combined_key(
    ctx: &RoleContext,
    key_shares: &[ByteBuf],
    beneficiary: Option<Cid>,
) -> Result<secp256k1::PublicKey, CustodyError> {
    let mut keys: Vec<secp256k1::PublicKey> = key_shares
        .iter()
        .map(|k| {
            secp256k1::PublicKey::from_sec1(k).map_err(|e| CustodyError::Invalid(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    if let Some(beneficiary) = beneficiary {
        let identity = ctx
            .identity(&beneficiary)
            .ok_or_else(|| CustodyError::UnknownIdentity(beneficiary.to_string()))?;
        keys.push(*identity.secp256k1_key());
    }
    let (first, rest) = keys
        .split_first()
        .ok_or_else(|| CustodyError::Invalid("no key shares".into()))?;
    rest.iter().try_fold(*first, |sum, k| {
        sum.add(k).map_err(|e| CustodyError::Invalid(e.to_string()))
    })
}

/// Principal: a fiduciary's custody signature arrived (a commitment signature envelope,
/// whose signature is the custody signature). Once every fiduciary's is in, aggregates them and
/// stores the certificate.
///
/// A signature delivered by the fiduciary's own node (the connection authenticates it) is
/// checked only inside the aggregate: one pairing check per order instead of one per
/// fiduciary. One delivered by any other peer is checked on its own at once, so nobody can
/// slip a bad signature in for someone else. The aggregate's pairing check runs here when this
/// is the only order on its way, finished from the half made when the commitment was (see
/// [`crate::certificates::CertificateChecks::prepare`]); otherwise it is handed back as a [`PendingCheck`], to run off
/// the role's queue batched with other orders' checks, and the signature is then handled again
/// and finds the outcome. If the aggregate fails, each signature is checked and the bad ones
/// are dropped, to be asked for again.
pub async fn on_commitment_signature(
    ctx: &RoleContext,
    peer: PeerId,
    signed: &SignedEnvelope,
) -> Result<Option<PendingCheck>, CustodyError> {
    let reference = signed.envelope.order.clone();
    let mut record = ctx.principal_record(&reference)?;
    let sender = signed.envelope.sender;
    if signed.envelope.kind != Kind::CommitmentSignature || !record.fiduciaries.contains(&sender) {
        return Err(CustodyError::Invalid(format!(
            "{sender} is not a fiduciary of {reference}"
        )));
    }
    if signed.envelope.prev != record.commitment {
        if let Some(prev) = signed.envelope.prev
            && replaced(ctx, &record, prev)?
        {
            // A repeat of a signature from before a refresh or a move, late: nothing wrong
            // with it, and nothing to do.
            tracing::debug!(order = %reference, %sender, "signature of a replaced commitment");
            return Ok(None);
        }
        return Err(CustodyError::Invalid(
            "signature for another commitment".into(),
        ));
    }
    if record.certificate.is_some() {
        return Ok(None);
    }
    // The point itself is decoded and group-checked once, with the others, below.
    if signed.signature.len() != bls::SIGNATURE_LEN {
        return Err(CustodyError::Invalid(format!(
            "custody signature of {sender} is {} bytes, not {}",
            signed.signature.len(),
            bls::SIGNATURE_LEN
        )));
    }
    if ctx.peer_of(&sender) != Some(peer) {
        ctx.verify(&signed.to_block().map_err(internal)?.into_bytes())?;
    }
    record
        .signatures
        .insert(sender.to_string(), ByteBuf::from(signed.signature.clone()));
    // Partial signatures need not survive a crash: resuming asks for missing ones again.
    if record.signatures.len() < record.fiduciaries.len() {
        ctx.save_buffered(Role::Principal, &record).await?;
        return Ok(None);
    }
    let identities: Vec<VerifiedIdentity> = ctx.known_identities(&record.fiduciaries)?;
    let commitment = record.commitment.ok_or_else(|| internal("no commitment"))?;
    let encoded: Vec<(&VerifiedIdentity, &[u8])> = identities
        .iter()
        .map(|i| (i, record.signatures[&i.cid().to_string()].as_slice()))
        .collect();
    let aggregated = Certificate::aggregate_unchecked(commitment, &encoded).ok();
    let outcome = match &aggregated {
        Some((certificate, check)) => {
            let key = dta_protocol::block::Block::encode(certificate)
                .map_err(internal)?
                .cid();
            match ctx.certificate_checks.take_outcome(&key) {
                // The only order on its way: a batch would be of one, and the hand-off
                // would only add latency. Its signature-free half was made at the deal.
                None if ctx.orders_in_progress() <= 1 => {
                    Some(ctx.certificate_checks.check_alone(&commitment, check).await)
                }
                None => {
                    ctx.certificate_checks.forget_prepared(&commitment);
                    return Ok(Some(PendingCheck {
                        key,
                        check: check.clone(),
                    }));
                }
                outcome => outcome,
            }
        }
        None => Some(false),
    };
    let certificate = match (aggregated, outcome) {
        (Some((certificate, _)), Some(true)) => certificate,
        _ => {
            // Some signature is bad: find it, drop it, and let resuming ask that fiduciary
            // again. The good ones stay.
            // Each came over its fiduciary's own connection (any other is checked alone on
            // arrival), so the culprit is known here; a signature that does not verify proves
            // nothing to anyone else, so no audit can show it.
            let detail =
                format!("its custody signature on {reference} does not verify over {commitment}");
            let bad = blame(ctx, &encoded, &custody_message(&commitment), &detail);
            for fiduciary in &bad {
                record.signatures.remove(&fiduciary.to_string());
            }
            ctx.save_buffered(Role::Principal, &record).await?;
            return Err(does_not_verify("custody signature", &bad));
        }
    };
    // The fiduciaries' signature envelopes, rebuilt from their parts, are kept for audits.
    for (identity, signature) in &encoded {
        let rebuilt = SignedEnvelope::custody_signature(
            identity.cid(),
            &reference,
            commitment,
            signature.to_vec(),
        )
        .map_err(internal)?;
        ctx.save_signed(&rebuilt)?;
    }
    store_certificate(ctx, &mut record, &certificate, Durability::Synced).await?;
    Ok(None)
}

/// The signers whose signature among `signatures` does not decode or does not verify over
/// `message`, each counted as misconduct with `detail`.
pub(super) fn blame(
    ctx: &RoleContext,
    signatures: &[(&VerifiedIdentity, &[u8])],
    message: &[u8],
    detail: &str,
) -> Vec<Cid> {
    let bad: Vec<Cid> = signatures
        .iter()
        .filter(|(i, s)| {
            bls::Signature::from_bytes(s).map_or(true, |s| {
                i.bls_key().public_key().verify(message, &s).is_err()
            })
        })
        .map(|(i, _)| i.cid())
        .collect();
    for fiduciary in &bad {
        let _ = ctx.misconduct(*fiduciary, Offence::BadCustodySignature, detail);
    }
    bad
}

/// The refusal naming the signers of `what` (a custody or batch signature) that failed.
pub(super) fn does_not_verify(what: &str, bad: &[Cid]) -> CustodyError {
    let names: Vec<String> = bad.iter().map(ToString::to_string).collect();
    CustodyError::Invalid(format!("{what} of {} does not verify", names.join(", ")))
}

/// Publishes `certificate` at the head of the order's log and stores the order certified,
/// synced or, for all but the last of a batch's orders, made durable by the next synced write.
pub(super) async fn store_certificate(
    ctx: &RoleContext,
    record: &mut OrderRecord,
    certificate: &Certificate,
    durability: Durability,
) -> Result<(), CustodyError> {
    let (cid, _) = ctx
        .publish(
            Kind::Certificate,
            &record.reference,
            Some(record.head),
            certificate,
        )
        .await?;
    record.certificate = Some(cid);
    record.head = cid;
    record.state = OrderState::Certified;
    ctx.save_as(Role::Principal, record, durability).await?;
    tracing::info!(order = %record.reference, certificate = %cid, "order certified");
    Ok(())
}
