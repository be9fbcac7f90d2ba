//! The beneficiary's steps: take share releases, rebuild the key from the first t shares
//! (checking it against the commitment's public key, and each share only when that fails),
//! let the plugin turn it into the secret, keep it through the keystore and send the signed
//! receipt.

use std::collections::BTreeMap;

use dta_crypto::threshold::{self, Commitments, Share};
use dta_crypto::{dkg, secp256k1};
use dta_protocol::Cid;
use dta_protocol::envelope::{Kind, SignedEnvelope, VerifiedEnvelope};
use dta_protocol::identity::LocalIdentity;
use dta_protocol::misconduct::Offence;
use dta_protocol::order::{
    Certificate, Commitment, Equivocation, OrderRequest, Receipt, RefusedShare, ReleaseGrounds,
    ReleaseRequest, ShareRelease,
};

use crate::plugin::RebuiltKey;
use crate::role::Role;
use crate::states::OrderState;

use super::fiduciary::check_named_beneficiary;
use super::principal::order_plugin;
use super::record::{OrderRecord, received_name, secret_name};
use crate::context::{CustodyError, Delivery, RoleContext, encode, internal};

/// Beneficiary: whether a share release comes after its release was already rebuilt (with
/// n > t, the last shares always do), so it needs no signature check or opening.
pub fn share_is_late(ctx: &RoleContext, signed: &SignedEnvelope) -> bool {
    let Some(release) = signed.envelope.prev else {
        return false;
    };
    let Some(principal) = ctx
        .block(&release)
        .and_then(|bytes| SignedEnvelope::decode(&bytes).ok())
        .map(|request| request.envelope.sender)
    else {
        return false;
    };
    ctx.record(Role::Beneficiary, &principal, &signed.envelope.order)
        .ok()
        .flatten()
        .is_some_and(|record| {
            let rebuilt = record
                .releases
                .iter()
                .any(|(sequence, cid)| *cid == release && record.receipts.contains_key(sequence));
            // Another answer from a fiduciary whose share was used is no late share: it is
            // read, as evidence that the fiduciary equivocated.
            let used = record
                .fiduciaries
                .iter()
                .position(|f| *f == signed.envelope.sender)
                .and_then(|position| record.shares.get(&(position as u32 + 1)));
            rebuilt && used.is_none_or(|used| signed.to_block().is_ok_and(|b| b.cid() == *used))
        })
}

/// Beneficiary: a share arrived. Once t are in, rebuilds the key, checks it against the
/// commitment (dropping the shares off it if it does not match), keeps the secret and returns
/// the receipt's delivery to the principal.
pub async fn on_share_release(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    cid: Cid,
) -> Result<Option<Delivery>, CustodyError> {
    let reference = envelope.envelope().order.clone();
    let request_cid = envelope
        .envelope()
        .prev
        .ok_or_else(|| CustodyError::Invalid("share release does not link its request".into()))?;
    let request_envelope = ctx.verified_block(&request_cid)?;
    let request: ReleaseRequest = RoleContext::payload(&request_envelope)?;
    // The beneficiary is this node's identity or one it hosts.
    let me = ctx
        .own(&request.beneficiary)
        .ok_or_else(|| CustodyError::Invalid("release is for another beneficiary".into()))?;
    let order_envelope = ctx.verified_block(&request.order)?;
    let order: OrderRequest = RoleContext::payload(&order_envelope)?;
    if request_envelope.envelope().sender != order.principal
        || order_envelope.envelope().sender != order.principal
    {
        return Err(CustodyError::Invalid(
            "release request not from the principal".into(),
        ));
    }
    check_named_beneficiary(&reference, &order, &request)?;
    let certificate_envelope = ctx.verified_block(&request.certificate)?;
    let certificate: Certificate = RoleContext::payload(&certificate_envelope)?;
    let commitment_envelope = ctx.verified_block(&certificate.commitment)?;
    let commitment: Commitment = RoleContext::payload(&commitment_envelope)?;
    // The committee and threshold in force are the certified commitment's (custody may have
    // moved since the order was made).
    let sender = envelope.envelope().sender;
    let Some(position) = commitment.fiduciaries.iter().position(|f| *f == sender) else {
        return Err(CustodyError::Invalid(format!(
            "{sender} is not a fiduciary of {reference}"
        )));
    };
    // A revoked fiduciary's share is not taken; the release waits for the others'.
    ctx.refuse_revoked([&sender])?;
    let released: ShareRelease = RoleContext::sealed_for(envelope, &me)?;
    if released.index != position as u32 + 1 || released.release != request_cid {
        return Err(CustodyError::Invalid(format!(
            "share from {sender} has the wrong index or release"
        )));
    }
    let plugin = order_plugin(&order)?;
    let value: [u8; 32] = released
        .share
        .expose()
        .try_into()
        .map_err(|_| CustodyError::Invalid("share is not 32 bytes".into()))?;
    // A dealt share is checked against the Feldman commitments only if the key rebuilt from
    // t shares does not match the commitment's public key (see below): one scalar
    // multiplication for the key instead of one per share, plus the decoding of every
    // commitment. A generated key's share is checked now, against its public key share.
    let fits = if commitment.key_shares.is_empty() {
        Share::from_parts(released.index, &value).is_ok()
    } else {
        commitment.fits_share(released.index, &value)
    };

    let mut record = match ctx.record(Role::Beneficiary, &order.principal, &reference)? {
        Some(record) => record,
        None => OrderRecord {
            commitment: Some(certificate.commitment),
            fiduciaries: commitment.fiduciaries.clone(),
            threshold: commitment.threshold,
            max_releases: order.policy.max_releases,
            certificate: Some(request.certificate),
            releases: BTreeMap::from([(request.sequence, request_cid)]),
            ..OrderRecord::fresh(
                reference.clone(),
                Role::Beneficiary,
                OrderState::Collecting,
                request.order,
                order.principal,
                request_cid,
            )
        },
    };
    // Two different answers from one fiduciary to the release being collected, both signed
    // by it: an honest fiduciary seals one share release per request and sends that one again
    // when asked again. Read even after the receipt went out (then only logged and counted).
    let collecting = record.releases.last_key_value() == Some((&request.sequence, &request_cid));
    if collecting
        && let Some(first) = record.shares.get(&released.index).copied()
        && first != cid
    {
        let equivocation = Equivocation { first, second: cid };
        if !record.equivocations.contains(&equivocation) {
            record.equivocations.push(equivocation);
            ctx.save(Role::Beneficiary, &record).await?;
        }
        return Err(ctx.misconduct(
            sender,
            Offence::Equivocation,
            &format!("it answered release {request_cid} of {reference} with {first} and {cid}"),
        ));
    }
    if record.receipts.contains_key(&request.sequence) {
        return Ok(None);
    }
    // A later release of an order received before (a policy allowing several): its shares
    // are collected afresh (they are the same shares; the kept ones are overwritten).
    if let std::collections::btree_map::Entry::Vacant(entry) =
        record.releases.entry(request.sequence)
    {
        entry.insert(request_cid);
        record.shares.clear();
        record.refused.clear();
        record.equivocations.clear();
        record.certificate = Some(request.certificate);
        record.head = request_cid;
        record.state = OrderState::Collecting;
    }
    if record.shares.contains_key(&released.index) || record.refused.contains(&cid) {
        return Ok(None);
    }
    if !fits {
        record.refused.push(cid);
        ctx.save(Role::Beneficiary, &record).await?;
        return Err(ctx.misconduct(
            sender,
            Offence::WrongShare,
            &format!("its share {cid} of {reference} does not match the commitment"),
        ));
    }
    ctx.keep_secret(
        received_name(&order.principal, &reference, released.index),
        value.to_vec(),
    )
    .await?;
    record.shares.insert(released.index, cid);
    if record.shares.len() < commitment.threshold as usize {
        ctx.save(Role::Beneficiary, &record).await?;
        return Ok(None);
    }
    let mut values = Vec::with_capacity(record.shares.len());
    for index in record.shares.keys() {
        let bytes = ctx
            .load_secret(&received_name(&order.principal, &reference, *index))
            .await?;
        let value: [u8; 32] = bytes.expose().try_into().map_err(internal)?;
        values.push((*index, value));
    }
    let key = match rebuild(&me, &commitment, &values) {
        Ok(key) => key,
        Err(err) if commitment.key_shares.is_empty() => {
            // Some dealt share is off the committed polynomial: find it and drop it, so that
            // the next honest share completes the set. The good ones stay.
            let bad = shares_off_the_commitment(&commitment, &values)?;
            if bad.is_empty() {
                return Err(err);
            }
            // Each is kept as evidence for the receipt, and its fiduciary named.
            let mut refusals = Vec::with_capacity(bad.len());
            for index in &bad {
                let Some(share_cid) = record.shares.remove(index) else {
                    continue;
                };
                record.refused.push(share_cid);
                let culprit = (*index as usize)
                    .checked_sub(1)
                    .and_then(|position| commitment.fiduciaries.get(position))
                    .copied()
                    .ok_or_else(|| internal(format!("no fiduciary of index {index}")))?;
                refusals.push(ctx.misconduct(
                    culprit,
                    Offence::WrongShare,
                    &format!("its share {share_cid} of {reference} does not match the commitment"),
                ));
            }
            ctx.save(Role::Beneficiary, &record).await?;
            return Err(refusals.into_iter().next().unwrap_or(err));
        }
        Err(err) => return Err(err),
    };
    let secret = plugin
        .finish(&reference, &commitment, key)
        .map_err(CustodyError::from)?;
    ctx.keep_secret(
        secret_name(&order.principal, &reference),
        secret.expose().to_vec(),
    )
    .await?;

    let receipt = Receipt {
        release: request_cid,
        shares_from: record
            .shares
            .keys()
            .map(|i| commitment.fiduciaries[*i as usize - 1])
            .collect(),
        public_key: commitment.public_key.clone(),
        votes: grounds_of(ctx, &record)?,
        refused: record
            .refused
            .iter()
            .map(|share| {
                let key = ctx
                    .verified_block(share)?
                    .content_key(&me)
                    .map_err(internal)?;
                Ok(RefusedShare {
                    share: *share,
                    content_key: serde_bytes::ByteBuf::from(key.expose().to_vec()),
                })
            })
            .collect::<Result<_, CustodyError>>()?,
        equivocations: record.equivocations.clone(),
    };
    let envelope = RoleContext::envelope_as(
        &me,
        Kind::Receipt,
        &reference,
        Some(request_cid),
        Some(encode(&receipt)?),
        &[],
        None,
    )?;
    let (receipt_cid, bytes) = ctx.save_block(&envelope).await?;
    record.receipts.insert(request.sequence, receipt_cid);
    record.head = receipt_cid;
    record.state = OrderState::Received;
    ctx.save(Role::Beneficiary, &record).await?;
    tracing::info!(order = %reference, "secret rebuilt and kept; receipt sent");
    let peer = ctx
        .peer_of(&order.principal)
        .ok_or_else(|| CustodyError::UnknownIdentity(order.principal.to_string()))?;
    Ok(Some((peer, vec![bytes])))
}

/// The indices of dealt shares (index, value) that are not on the polynomial the Feldman
/// commitments commit to.
pub(crate) fn shares_off_the_commitment(
    commitment: &Commitment,
    values: &[(u32, [u8; 32])],
) -> Result<Vec<u32>, CustodyError> {
    let commitments = Commitments::from_bytes(&commitment.feldman)
        .map_err(|e| CustodyError::Invalid(e.to_string()))?;
    Ok(values
        .iter()
        .filter(|(index, value)| {
            Share::from_parts(*index, value)
                .map_or(true, |share| commitments.verify_share(&share).is_err())
        })
        .map(|(index, _)| *index)
        .collect())
}

/// Rebuilds an order's key from released shares (index, value) and checks it against the
/// commitment: Lagrange interpolation of a dealt scalar, or the sum of generated secp256k1
/// shares plus this beneficiary's own share where the key includes it.
pub(crate) fn rebuild(
    me: &LocalIdentity,
    commitment: &Commitment,
    values: &[(u32, [u8; 32])],
) -> Result<RebuiltKey, CustodyError> {
    let mismatch = || CustodyError::Invalid("rebuilt key does not match the commitment".into());
    if commitment.key_shares.is_empty() {
        let shares: Vec<Share> = values
            .iter()
            .map(|(index, value)| Share::from_parts(*index, value).map_err(internal))
            .collect::<Result<_, _>>()?;
        let key = threshold::recover(&shares, commitment.threshold as usize).map_err(internal)?;
        let rebuilt = key.to_bls().map_err(internal)?.public_key();
        if rebuilt.to_bytes().as_slice() != commitment.public_key.as_slice() {
            return Err(mismatch());
        }
        return Ok(RebuiltKey::Scalar(key));
    }
    let mut keys: Vec<secp256k1::SecretKey> = match &commitment.generated {
        // Any t shares of a key generated without a dealer, interpolated.
        Some(generated) => {
            let group_key =
                secp256k1::PublicKey::from_sec1(&generated.group_key).map_err(|_| mismatch())?;
            let threshold = u16::try_from(commitment.threshold).map_err(internal)?;
            let shares: Vec<dkg::KeyShare> = values
                .iter()
                .map(|(index, value)| {
                    let participant = u16::try_from(*index).map_err(internal)?;
                    dkg::KeyShare::from_secret(participant, threshold, value, &group_key)
                        .map_err(|_| mismatch())
                })
                .collect::<Result<_, _>>()?;
            vec![dkg::rebuild(&shares).map_err(|_| mismatch())?]
        }
        None => values
            .iter()
            .map(|(_, value)| secp256k1::SecretKey::from_bytes(value).map_err(internal))
            .collect::<Result<_, _>>()?,
    };
    // The beneficiary's own share is its identity's secp256k1 key when the order was made:
    // the current one, or one a rotation retired since.
    let own_shares: Vec<Option<&secp256k1::SecretKey>> = match commitment.beneficiary_share {
        Some(holder) if holder == me.cid() => std::iter::once(me.keys())
            .chain(me.retired())
            .map(|keys| Some(keys.secp256k1()))
            .collect(),
        Some(holder) => {
            return Err(CustodyError::Invalid(format!(
                "the key includes the share of {holder}, not of this node"
            )));
        }
        None => vec![None],
    };
    for own in own_shares {
        keys.extend(own.cloned());
        let (first, rest) = keys.split_first().ok_or_else(mismatch)?;
        let key = rest
            .iter()
            .try_fold(first.clone(), |sum, k| sum.add(k))
            .map_err(|_| mismatch())?;
        if key.public_key().to_compressed().as_slice() == commitment.public_key.as_slice() {
            return Ok(RebuiltKey::Secp256k1(key));
        }
        if own.is_some() {
            keys.pop();
        }
    }
    Err(mismatch())
}

/// The votes the combined share releases relied on (each fiduciary's, in the clear beside
/// its share), each once: what the receipt names for an order with a release policy. The
/// audit checks each; naming one proves nothing.
fn grounds_of(ctx: &RoleContext, record: &OrderRecord) -> Result<Vec<Cid>, CustodyError> {
    let mut votes = std::collections::BTreeSet::new();
    for cid in record.shares.values() {
        let bytes = ctx
            .block(cid)
            .ok_or_else(|| internal(format!("share release {cid} missing")))?;
        let envelope = ctx.verify(&bytes)?;
        // Grounds that do not decode name nothing: the share itself was good, and one
        // fiduciary's garbage must not keep the receipt from being made.
        match envelope.public_payload::<ReleaseGrounds>() {
            Ok(Some(grounds)) => votes.extend(grounds.votes),
            Ok(None) => {}
            Err(err) => tracing::warn!(%cid, %err, "a share release's grounds do not decode"),
        }
    }
    Ok(votes.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use dta_crypto::{Secret, secp256k1};
    use dta_protocol::identity::LocalIdentity;
    use dta_protocol::order::Commitment;
    use serde_bytes::ByteBuf;

    use super::{RebuiltKey, rebuild};

    #[test]
    fn a_beneficiary_whose_keys_rotated_since_the_order_still_adds_its_own_share() {
        let me = LocalIdentity::create(&Secret::new([5; 32]), "beneficiary", b"peer", 1).unwrap();
        let shares: Vec<(u32, [u8; 32])> = (1..=2u8)
            .map(|i| {
                let key = secp256k1::SecretKey::from_seed(&[i; 32], b"share");
                (u32::from(i), *key.to_bytes().expose())
            })
            .collect();
        let sum = shares
            .iter()
            .map(|(_, bytes)| secp256k1::SecretKey::from_bytes(bytes).unwrap())
            .chain([me.keys().secp256k1().clone()])
            .reduce(|a, b| a.add(&b).unwrap())
            .unwrap();
        let commitment = Commitment {
            order: me.cid(),
            plugin: "bitcoinwallet".into(),
            threshold: 2,
            fiduciaries: vec![me.cid(), me.cid()],
            feldman: Vec::new(),
            key_shares: vec![ByteBuf::from(vec![2; 33]), ByteBuf::from(vec![2; 33])],
            beneficiary_share: Some(me.cid()),
            public_key: ByteBuf::from(sum.public_key().to_compressed().to_vec()),
            output: BTreeMap::new(),
            generated: None,
            reshared: None,
        };
        let rotated = me.rotate(&Secret::new([6; 32]), 2_000).unwrap();
        for holder in [&me, &rotated] {
            let Ok(RebuiltKey::Secp256k1(key)) = rebuild(holder, &commitment, &shares) else {
                panic!("the key rebuilds");
            };
            assert_eq!(key.public_key(), sum.public_key());
        }
    }
}
