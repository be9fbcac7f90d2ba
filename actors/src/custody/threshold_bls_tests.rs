//! Threshold BLS signatures step by step among a principal and three fiduciaries (see `rig`):
//! a dealt secret and a BLS12-381 key generated without a dealer each sign 2-of-3, the
//! signature verifying under the order's public key; a fiduciary whose partial fails is named
//! and left out; with too few good partials nothing is published; a key no t fiduciaries hold
//! does not sign; each fiduciary refuses a request its order's signing policy forbids, and the
//! audit a signature of one.

use std::collections::BTreeMap;

use dta_protocol::envelope::{Kind, SignedEnvelope};
use dta_protocol::order::Commitment;
use dta_protocol::signing::{PartialSignature, Signature, SignatureScheme};
use serde_bytes::ByteBuf;

use super::rig::{Party, generated_key_order, parties, run};
use super::{NewOrder, create_order, signing};
use crate::context::{CustodyError, RoleContext};
use crate::states::OrderState;

const REFERENCE: &str = "bls-signer-1";
const MESSAGE: &[u8] = b"randomness for round 7";

fn record(parties: &[Party]) -> super::OrderRecord {
    parties[0].ctx.own_record(REFERENCE).unwrap().unwrap()
}

/// The principal's signatures of the order, made and under way, by number.
fn runs(parties: &[Party]) -> Vec<super::record::SigningRun> {
    super::signed::runs(&parties[0].ctx.store, &record(parties)).unwrap()
}

/// A principal (party 0) and three fiduciaries, and their certified 2-of-3 order of `plugin`.
async fn certified(plugin: &str) -> Vec<Party> {
    let parties = parties(&["principal", "fiduciary-1", "fiduciary-2", "fiduciary-3"]).await;
    let secret = (plugin == crate::plugin::SAFEGUARD_SECRET)
        .then(|| dta_protocol::order::SecretBytes::new(b"a guarded secret".to_vec()));
    let order = NewOrder {
        plugin: plugin.into(),
        secret,
        ..generated_key_order(&parties, REFERENCE)
    };
    let prepared = create_order(&parties[0].ctx, order).await.unwrap();
    run(&parties, prepared.deliveries, &mut |_, _, b| Some(b)).await;
    assert_eq!(record(&parties).state, OrderState::Certified);
    parties
}

/// The signature of the principal's last run, checked as BLS under the order's public key.
fn signature_made(parties: &[Party]) -> Signature {
    let record = record(parties);
    let run = runs(parties).pop().unwrap();
    let signature: Signature = parties[0]
        .ctx
        .stored_payload(&run.signature.expect("a signature"))
        .unwrap();
    let commitment: Commitment = parties[0]
        .ctx
        .stored_payload(&record.commitment.unwrap())
        .unwrap();
    assert_eq!(signature.scheme, SignatureScheme::Bls12381);
    assert_eq!(signature.key, commitment.public_key);
    let key = dta_crypto::bls::PublicKey::from_bytes(&commitment.public_key).unwrap();
    let bls = dta_crypto::bls::Signature::from_bytes(&signature.signature).unwrap();
    key.verify(MESSAGE, &bls).unwrap();
    signature
}

fn signers(parties: &[Party], signature: &Signature) -> Vec<u32> {
    let mut signers: Vec<u32> = signature
        .shares
        .iter()
        .map(|cid| {
            let partial: PartialSignature = parties[0].ctx.stored_payload(cid).unwrap();
            partial.index
        })
        .collect();
    signers.sort_unstable();
    signers
}

#[tokio::test]
async fn a_dealt_secret_signs_2_of_3_and_the_audit_verifies_it() {
    let parties = certified(crate::plugin::SAFEGUARD_SECRET).await;
    let (_, deliveries) = signing::create_sign(&parties[0].ctx, REFERENCE, MESSAGE.to_vec())
        .await
        .unwrap();
    let request_blocks: Vec<_> = deliveries.clone();
    run(&parties, deliveries, &mut |_, _, b| Some(b)).await;
    let signature = signature_made(&parties);
    assert_eq!(signature.shares.len(), 2);
    assert!(signature.package.is_none() && signature.excluded.is_empty());
    let principal = &parties[0];
    let directory = principal.ctx.directory.borrow().clone();
    let head = record(&parties).head;
    let report = super::audit(&principal.ctx.store, &directory, REFERENCE, head).unwrap();
    assert_eq!(report.threshold_signatures, 1);

    // The request again, once signed: nothing moves and nothing new is made.
    run(&parties, request_blocks, &mut |_, _, b| Some(b)).await;
    let after = record(&parties);
    assert_eq!(after.head, head);
    assert_eq!(runs(&parties).len(), 1);

    // The audit refuses the signature with one bit flipped.
    let mut forged = signature.clone();
    let mut bytes = forged.signature.to_vec();
    bytes[95] ^= 1;
    forged.signature = ByteBuf::from(bytes);
    let block = principal.publish(Kind::Signature, REFERENCE, Some(forged.request), &forged);
    let (_, forged_cid) = principal.take(&block).await.unwrap();
    let refused = super::audit(&principal.ctx.store, &directory, REFERENCE, forged_cid);
    assert!(
        matches!(
            &refused,
            Err(dta_protocol::audit::AuditError::ThresholdSignature { reason, .. })
                if reason.contains("does not verify")
        ),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_bls_key_generated_without_a_dealer_signs() {
    let parties = certified(crate::plugin::MPIN_MASTER).await;
    let (_, deliveries) = signing::create_sign(&parties[0].ctx, REFERENCE, MESSAGE.to_vec())
        .await
        .unwrap();
    run(&parties, deliveries, &mut |_, _, b| Some(b)).await;
    let signature = signature_made(&parties);
    assert_eq!(signature.shares.len(), 2);
}

/// Fiduciary `index` (1-based) sends a partial signature on another message, signed as itself.
fn forge_partial(parties: &[Party], index: usize, block: Vec<u8>) -> Vec<u8> {
    let signed = SignedEnvelope::decode(&block).unwrap();
    let envelope = parties[0].ctx.verify(&block).unwrap();
    let mut partial: PartialSignature = RoleContext::payload(&envelope).unwrap();
    let commitment: Commitment = parties[0]
        .ctx
        .stored_payload(&record(parties).commitment.unwrap())
        .unwrap();
    // A signature under another key: the group key's own on another message would not do, so
    // a fresh key's.
    let other = dta_crypto::bls::SecretKey::from_ikm(&[index as u8; 32], b"").unwrap();
    partial.signature = ByteBuf::from(other.sign(MESSAGE).to_bytes().to_vec());
    assert_ne!(partial.signature, commitment.public_key);
    parties[index].publish(
        Kind::PartialSignature,
        REFERENCE,
        signed.envelope.prev,
        &partial,
    )
}

#[tokio::test]
async fn a_fiduciary_whose_partial_fails_is_named_and_the_signature_is_made_without_it() {
    let parties = certified(crate::plugin::SAFEGUARD_SECRET).await;
    let (_, deliveries) = signing::create_sign(&parties[0].ctx, REFERENCE, MESSAGE.to_vec())
        .await
        .unwrap();
    let cheat = parties[1].cid();
    let mut cheated = 0;
    run(&parties, deliveries, &mut |parties, to, block| {
        let signed = SignedEnvelope::decode(&block).unwrap();
        if to != 0
            || signed.envelope.kind != Kind::PartialSignature
            || signed.envelope.sender != cheat
        {
            return Some(block);
        }
        cheated += 1;
        Some(forge_partial(parties, 1, block))
    })
    .await;
    assert_eq!(cheated, 1);
    let signature = signature_made(&parties);
    assert_eq!(signers(&parties, &signature), vec![2, 3]);
    assert_eq!(
        signature
            .excluded
            .iter()
            .map(|(i, _)| *i)
            .collect::<Vec<_>>(),
        vec![1]
    );
    let run = runs(&parties)[0].clone();
    assert_eq!(run.excluded.len(), 1);
}

#[tokio::test]
async fn with_one_good_partial_of_two_needed_nothing_is_published() {
    let parties = certified(crate::plugin::SAFEGUARD_SECRET).await;
    let (_, deliveries) = signing::create_sign(&parties[0].ctx, REFERENCE, MESSAGE.to_vec())
        .await
        .unwrap();
    let head = record(&parties).head;
    // Fiduciary 3 is down; fiduciary 1 cheats.
    run(&parties, deliveries, &mut |parties, to, block| {
        let signed = SignedEnvelope::decode(&block).unwrap();
        if to == 3 {
            return None;
        }
        if to == 0 && signed.envelope.sender == parties[1].cid() {
            return Some(forge_partial(parties, 1, block));
        }
        Some(block)
    })
    .await;
    let record = record(&parties);
    assert_eq!(record.head, head, "no signature in the log");
    let run = &record.signing[0];
    assert!(run.signature.is_none());
    assert_eq!(
        run.excluded.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![1]
    );
    assert_eq!(
        run.shares.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![2]
    );
}

#[tokio::test]
async fn a_key_no_t_fiduciaries_hold_does_not_sign() {
    let parties = parties(&["principal", "fiduciary-1", "fiduciary-2"]).await;
    // 2-of-2 `milagro`: a key added up from the fiduciaries' shares, no t-of-n sharing.
    let order = NewOrder {
        input: BTreeMap::new(),
        ..generated_key_order(&parties, REFERENCE)
    };
    let prepared = create_order(&parties[0].ctx, order).await.unwrap();
    run(&parties, prepared.deliveries, &mut |_, _, b| Some(b)).await;
    assert_eq!(record(&parties).state, OrderState::Certified);
    let refused = signing::create_sign(&parties[0].ctx, REFERENCE, MESSAGE.to_vec()).await;
    assert!(
        matches!(&refused, Err(CustodyError::Conflict(why)) if why.contains("cannot sign")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn each_fiduciary_refuses_a_request_the_signing_policy_forbids() {
    let parties = parties(&["principal", "fiduciary-1", "fiduciary-2", "fiduciary-3"]).await;
    let mut order = NewOrder {
        plugin: crate::plugin::SAFEGUARD_SECRET.into(),
        secret: Some(dta_protocol::order::SecretBytes::new(b"guarded".to_vec())),
        ..generated_key_order(&parties, REFERENCE)
    };
    order.policy.signing = Some(dta_protocol::policy::SigningPolicy {
        max_signatures: Some(1),
        message_prefixes: vec![ByteBuf::from(b"randomness".to_vec())],
    });
    let prepared = create_order(&parties[0].ctx, order).await.unwrap();
    run(&parties, prepared.deliveries, &mut |_, _, b| Some(b)).await;
    let record = record(&parties);
    // Requests the principal's own node would refuse, signed by the principal anyway.
    let forged = |message: &[u8], sequence: u32| {
        let request = dta_protocol::signing::SignRequest {
            order: record.order,
            certificate: record.certificate.unwrap(),
            message: ByteBuf::from(message.to_vec()),
            sequence,
            signers: Vec::new(),
        };
        parties[0].publish(Kind::SignRequest, REFERENCE, Some(record.head), &request)
    };
    for (block, why) in [
        (forged(b"transfer everything", 1), "allowed prefixes"),
        (forged(MESSAGE, 2), "max_signatures"),
    ] {
        for fiduciary in &parties[1..] {
            // The certificate travels with a request, as `create_sign` sends it.
            let certificate = parties[0].ctx.block(&record.certificate.unwrap()).unwrap();
            fiduciary.take(&certificate).await.unwrap();
            let (envelope, cid) = fiduciary.take(&block).await.unwrap();
            let refused = signing::on_request(&fiduciary.ctx, &envelope, cid).await;
            assert!(
                matches!(&refused, Err(CustodyError::Conflict(w)) if w.contains(why)),
                "{refused:?}"
            );
        }
    }
    // An allowed one is signed.
    let (_, deliveries) = signing::create_sign(&parties[0].ctx, REFERENCE, MESSAGE.to_vec())
        .await
        .unwrap();
    run(&parties, deliveries, &mut |_, _, b| Some(b)).await;
    let made = signature_made(&parties);

    // The audit refuses a signature of a request the policy forbids, even one that verifies.
    let principal = &parties[0];
    let (_, forbidden) = principal.take(&forged(MESSAGE, 2)).await.unwrap();
    let claimed = Signature {
        request: forbidden,
        ..made
    };
    let block = principal.publish(Kind::Signature, REFERENCE, Some(forbidden), &claimed);
    let (_, head) = principal.take(&block).await.unwrap();
    let directory = principal.ctx.directory.borrow().clone();
    let refused = super::audit(&principal.ctx.store, &directory, REFERENCE, head);
    assert!(
        matches!(
            &refused,
            Err(dta_protocol::audit::AuditError::ThresholdSignature { reason, .. })
                if reason.contains("max_signatures")
        ),
        "{refused:?}"
    );
}
