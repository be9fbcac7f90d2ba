//! Threshold BLS signatures with an order's BLS12-381 key (a dealt secret, or a key the
//! fiduciaries generated in G1), in one round (`dta_crypto::threshold::signing`):
//!
//! 1. The principal's request goes to every fiduciary, as for FROST
//!    ([`super::signing::create_sign`]).
//! 2. Each fiduciary signs the message with its share and sends the partial signature to the
//!    principal ([`partial`]). BLS signing is deterministic: there are no nonces to keep, and
//!    a request asked again gets the same partial again.
//! 3. Once t partials are in, the principal combines them by Lagrange interpolation, checks
//!    the result under the group key and publishes it ([`on_partial`]). Only when that fails
//!    are the partials checked one by one: each that fails names its signer, who is left out
//!    (and named in the signature), and the next partial to arrive takes its place.
//!
//! What it does not do: choose signers (every fiduciary is asked; the first t count), or
//! keep a signature's partials once it is made (they are in its envelope).

use dta_crypto::bls;
use dta_crypto::threshold::signing::ThresholdSignError;
use dta_crypto::threshold::{self, Share};
use dta_protocol::Cid;
use dta_protocol::envelope::{Kind, VerifiedEnvelope};
use dta_protocol::signing::{PartialSignature, SignRequest, Signature, SignatureScheme};
use serde_bytes::ByteBuf;

use super::principal::check_fiduciary;
use super::record::{OrderRecord, SigningRun};
use super::signing::{SigningKey, held_share, publish_signature, run_of, signing_key};
use crate::context::{CustodyError, Delivery, RoleContext, internal};
use crate::role::Role;

/// Fiduciary: signs `request`'s message with the share it holds; the partial signature's
/// block, for the principal. The caller checked the request.
pub(super) async fn partial(
    ctx: &RoleContext,
    mut record: OrderRecord,
    request_cid: Cid,
    request: &SignRequest,
) -> Result<Vec<u8>, CustodyError> {
    let (index, value) = held_share(ctx, &record).await?;
    let share = Share::from_parts(index, value.expose()).map_err(internal)?;
    let signed = threshold::partial_sign(&share, &request.message).map_err(internal)?;
    let payload = PartialSignature {
        request: request_cid,
        index,
        signature: ByteBuf::from(signed.signature.to_bytes().to_vec()),
    };
    let (sent, bytes) = ctx
        .publish(
            Kind::PartialSignature,
            &record.reference,
            Some(request_cid),
            &payload,
        )
        .await?;
    match record.signing.iter_mut().find(|r| r.request == request_cid) {
        Some(run) => run.shares = vec![(index, sent)],
        None => {
            let mut run = SigningRun::new(request.sequence, request_cid);
            run.shares = vec![(index, sent)];
            record.signing.push(run);
        }
    }
    ctx.save(Role::Fiduciary, &record).await?;
    tracing::info!(order = %record.reference, sequence = request.sequence, "partial signature sent");
    Ok(bytes)
}

/// Principal: a fiduciary's partial signature arrived. Once t good ones are in, the signature
/// is made, published and sent to every fiduciary.
pub async fn on_partial(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    cid: Cid,
) -> Result<Vec<Delivery>, CustodyError> {
    let reference = envelope.envelope().order.clone();
    let mut record = ctx.principal_record(&reference)?;
    let payload: PartialSignature = RoleContext::payload(envelope)?;
    check_fiduciary(&record, payload.index, envelope)?;
    if envelope.envelope().prev != Some(payload.request) {
        return Err(CustodyError::Invalid(
            "a partial signature of another request".into(),
        ));
    }
    let Some(at) = run_of(ctx, &record, &payload.request)? else {
        return Ok(Vec::new());
    };
    let run = &mut record.signing[at];
    let seen = |list: &[(u32, Cid)]| list.iter().any(|(i, _)| *i == payload.index);
    if seen(&run.excluded) || seen(&run.shares) {
        return Ok(Vec::new());
    }
    run.shares.push((payload.index, cid));
    combine(ctx, record, at).await
}

/// Principal: makes run `at`'s signature from the first t partials in, leaving out each that
/// fails, while t are in.
async fn combine(
    ctx: &RoleContext,
    mut record: OrderRecord,
    at: usize,
) -> Result<Vec<Delivery>, CustodyError> {
    let (_, _, SigningKey::Bls(group)) = signing_key(ctx, &record)? else {
        return Err(CustodyError::Invalid(
            "a partial BLS signature for a key that does not sign with BLS".into(),
        ));
    };
    let request: SignRequest = ctx.stored_payload(&record.signing[at].request)?;
    loop {
        let run = &mut record.signing[at];
        if run.shares.len() < group.threshold() {
            ctx.save_buffered(Role::Principal, &record).await?;
            return Ok(Vec::new());
        }
        let mut partials = Vec::with_capacity(run.shares.len());
        let mut culprit = None;
        for (index, share) in &run.shares {
            let payload: PartialSignature = ctx.stored_payload(share)?;
            match bls::Signature::from_bytes(&payload.signature) {
                Ok(signature) => partials.push(threshold::PartialSignature {
                    index: *index,
                    signature,
                }),
                Err(_) => {
                    culprit = Some(*index);
                    break;
                }
            }
        }
        let culprit = match culprit {
            Some(culprit) => culprit,
            None => match group.combine(&partials, &request.message) {
                Ok(signature) => {
                    let request = run.request;
                    let out = Signature {
                        request,
                        scheme: SignatureScheme::Bls12381,
                        package: None,
                        shares: run
                            .shares
                            .iter()
                            .take(group.threshold())
                            .map(|(_, c)| *c)
                            .collect(),
                        excluded: run.excluded.clone(),
                        votes: super::approval::votes_on(ctx, &record, request),
                        key: ByteBuf::from(group.public_key().to_bytes().to_vec()),
                        signature: ByteBuf::from(signature.to_bytes().to_vec()),
                    };
                    return publish_signature(ctx, record, at, &out).await;
                }
                Err(ThresholdSignError::BadPartial(culprit)) => culprit,
                Err(e) => return Err(CustodyError::Invalid(e.to_string())),
            },
        };
        tracing::warn!(order = %record.reference, index = culprit, "partial signature fails: signer left out");
        let at_culprit = run
            .shares
            .iter()
            .position(|(i, _)| *i == culprit)
            .ok_or_else(|| internal("a culprit without a partial"))?;
        let failed = run.shares.remove(at_culprit);
        run.excluded.push(failed);
    }
}
