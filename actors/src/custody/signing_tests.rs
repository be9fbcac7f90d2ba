//! Threshold signatures step by step among a principal and three fiduciaries (see `rig`), with
//! a 2-of-3 key they generated: the signature is BIP-340 under the key's x-only form; a signer
//! whose share fails is named and left out, and the signature is made without it; a signer
//! that lost its nonces (a restart) sends fresh commitments, and a new package is signed.
//! Later signatures use the commitments no package used, with the same faults.

use dta_protocol::envelope::{Kind, SignedEnvelope};
use dta_protocol::order::Commitment;
use dta_protocol::signing::{Signature, SignatureShare};
use serde_bytes::ByteBuf;

use super::rig::{Party, generated_key_order, parties, run};
use super::{create_order, signing};
use crate::context::RoleContext;
use crate::states::OrderState;

const REFERENCE: &str = "signer-1";
const MESSAGE: &[u8] = b"spend the vault's first output";

/// A principal (party 0) and three fiduciaries, and their certified 2-of-3 `milagro` key.
async fn certified_key() -> Vec<Party> {
    let parties = parties(&["principal", "fiduciary-1", "fiduciary-2", "fiduciary-3"]).await;
    let prepared = create_order(&parties[0].ctx, generated_key_order(&parties, REFERENCE))
        .await
        .unwrap();
    run(&parties, prepared.deliveries, &mut |_, _, b| Some(b)).await;
    assert_eq!(record(&parties).state, OrderState::Certified);
    parties
}

fn record(parties: &[Party]) -> super::OrderRecord {
    parties[0].ctx.own_record(REFERENCE).unwrap().unwrap()
}

/// The principal's signatures of the order, made and under way, by number.
fn runs(parties: &[Party]) -> Vec<super::record::SigningRun> {
    super::signed::runs(&parties[0].ctx.store, &record(parties)).unwrap()
}

/// The signature of the principal's last run, checked as BIP-340 under the order's key.
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
    assert_eq!(signature.key.as_slice(), &commitment.public_key[1..]);
    assert!(dta_crypto::secp256k1::verify_bip340(
        &signature.key,
        MESSAGE,
        &signature.signature
    ));
    signature
}

/// The index of the fiduciary that signed a share envelope.
fn signer_of(parties: &[Party], share: &dta_protocol::Cid) -> u32 {
    let payload: SignatureShare = parties[0].ctx.stored_payload(share).unwrap();
    payload.index
}

/// Fiduciary 1's signature shares on their way to the principal, each changed into one that is
/// not its share of the package, signed as itself; `cheated` counts them.
fn cheat_with_shares(parties: &[Party], to: usize, block: Vec<u8>, cheated: &mut usize) -> Vec<u8> {
    let signed = SignedEnvelope::decode(&block).unwrap();
    if to != 0
        || signed.envelope.kind != Kind::SignatureShare
        || signed.envelope.sender != parties[1].cid()
    {
        return block;
    }
    *cheated += 1;
    let envelope = parties[0].ctx.verify(&block).unwrap();
    let mut share: SignatureShare = RoleContext::payload(&envelope).unwrap();
    let mut bytes = share.share.to_vec();
    bytes[31] ^= 1;
    share.share = ByteBuf::from(bytes);
    parties[1].publish(
        Kind::SignatureShare,
        REFERENCE,
        signed.envelope.prev,
        &share,
    )
}

/// Fiduciary 1 restarts before the first package reaches it: its nonces are gone.
fn restart_before_the_package(
    parties: &[Party],
    to: usize,
    block: Vec<u8>,
    restarted: &mut bool,
) -> Vec<u8> {
    let kind = SignedEnvelope::decode(&block).unwrap().envelope.kind;
    if to == 1 && kind == Kind::SignPackage && !*restarted {
        *restarted = true;
        parties[1].ctx.nonces.clear();
    }
    block
}

#[tokio::test]
async fn two_of_three_sign_and_the_signature_is_bip340_under_the_orders_key() {
    let parties = certified_key().await;
    let (_, deliveries) = signing::create_sign(&parties[0].ctx, REFERENCE, MESSAGE.to_vec())
        .await
        .unwrap();
    run(&parties, deliveries, &mut |_, _, b| Some(b)).await;
    let signature = signature_made(&parties);
    assert_eq!(signature.shares.len(), 2);
    let run = runs(&parties)[0].clone();
    assert_eq!((run.attempt, run.excluded.len()), (1, 0));
    // Each fiduciary keeps the nonces no package used: the signers' next ones, the other's
    // first; the principal keeps their commitments as spares.
    for fiduciary in &parties[1..] {
        assert_eq!(fiduciary.ctx.nonces.len(), 1);
    }
    assert_eq!(parties[0].ctx.spare_commitments.count(REFERENCE), 3);
}

/// Signs `MESSAGE` once more; what went to whom, by party index and kind.
async fn sign_again(parties: &[Party], tamper: super::rig::Tamper<'_>) -> Vec<(usize, Kind)> {
    let (_, deliveries) = signing::create_sign(&parties[0].ctx, REFERENCE, MESSAGE.to_vec())
        .await
        .unwrap();
    let mut seen = Vec::new();
    run(parties, deliveries, &mut |parties, to, block| {
        let block = tamper(parties, to, block)?;
        seen.push((to, SignedEnvelope::decode(&block).unwrap().envelope.kind));
        Some(block)
    })
    .await;
    seen
}

/// The indices of the fiduciaries whose shares made a signature.
fn signers(parties: &[Party], signature: &Signature) -> Vec<u32> {
    let mut signers: Vec<u32> = signature
        .shares
        .iter()
        .map(|s| signer_of(parties, s))
        .collect();
    signers.sort_unstable();
    signers
}

#[tokio::test]
async fn later_signatures_use_spare_commitments_and_go_to_their_signers_alone() {
    let parties = certified_key().await;
    let first = sign_again(&parties, &mut |_, _, b| Some(b)).await;
    signature_made(&parties);
    assert_eq!(
        first
            .iter()
            .filter(|(_, k)| *k == Kind::SignCommitment)
            .count(),
        3
    );
    let mut turns = Vec::new();
    for _ in 0..3 {
        let seen = sign_again(&parties, &mut |_, _, b| Some(b)).await;
        let signature = signature_made(&parties);
        // No round of commitments: the request, its package and the signature go to the two
        // signers of spares; their shares come back. 2 x (request, package) + 2 shares + 2
        // signatures.
        assert!(
            !seen.iter().any(|(_, k)| *k == Kind::SignCommitment),
            "{seen:?}"
        );
        let asked: Vec<u32> = seen
            .iter()
            .filter(|(_, k)| *k == Kind::SignRequest)
            .map(|(to, _)| *to as u32)
            .collect();
        assert_eq!(asked, signers(&parties, &signature), "{seen:?}");
        assert_eq!(seen.len(), 8, "{seen:?}");
        assert_eq!(runs(&parties).last().unwrap().attempt, 1);
        turns.push(asked);
    }
    // The signers take turns.
    assert_eq!(turns, vec![vec![1, 2], vec![1, 3], vec![2, 3]]);
    // Spares do not pile up: the signers' next ones replace those used.
    assert_eq!(parties[0].ctx.spare_commitments.count(REFERENCE), 3);
    for fiduciary in &parties[1..] {
        assert_eq!(fiduciary.ctx.nonces.len(), 1);
    }
}

#[tokio::test]
async fn a_signer_that_lost_the_nonces_of_its_spares_gets_the_others_asked_and_signs_anew() {
    let parties = certified_key().await;
    sign_again(&parties, &mut |_, _, b| Some(b)).await;
    let mut restarted = false;
    let seen = sign_again(&parties, &mut |p, to, b| {
        Some(restart_before_the_package(p, to, b, &mut restarted))
    })
    .await;
    assert!(restarted);
    signature_made(&parties);
    assert_eq!(runs(&parties).last().unwrap().attempt, 2);
    // Fiduciary 3, not named by the request, was asked once the package failed.
    assert!(seen.contains(&(3, Kind::SignRequest)), "{seen:?}");
}

#[tokio::test]
async fn a_signer_of_spares_whose_share_fails_is_left_out_and_its_spares_forgotten() {
    let parties = certified_key().await;
    sign_again(&parties, &mut |_, _, b| Some(b)).await;
    let mut cheated = 0;
    sign_again(&parties, &mut |parties, to, block| {
        Some(cheat_with_shares(parties, to, block, &mut cheated))
    })
    .await;
    assert_eq!(cheated, 1);
    let signature = signature_made(&parties);
    let run = runs(&parties).pop().unwrap();
    assert_eq!((run.attempt, run.excluded[0].0), (2, 1));
    assert_eq!(signers(&parties, &signature), vec![2, 3]);
    // The next signature does without the cheat's spares.
    sign_again(&parties, &mut |_, _, b| Some(b)).await;
    let signature = signature_made(&parties);
    assert_eq!(signers(&parties, &signature), vec![2, 3]);
}

#[tokio::test]
async fn a_signer_whose_share_fails_is_named_and_the_signature_is_made_without_it() {
    let parties = certified_key().await;
    let (_, deliveries) = signing::create_sign(&parties[0].ctx, REFERENCE, MESSAGE.to_vec())
        .await
        .unwrap();
    let mut cheated = 0;
    run(&parties, deliveries, &mut |parties, to, block| {
        Some(cheat_with_shares(parties, to, block, &mut cheated))
    })
    .await;
    assert_eq!(cheated, 1);
    let signature = signature_made(&parties);
    let run = runs(&parties)[0].clone();
    assert_eq!(run.attempt, 2);
    assert_eq!(
        run.excluded.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![1]
    );
    assert_eq!(signers(&parties, &signature), vec![2, 3]);
}

#[tokio::test]
async fn a_signer_that_lost_its_nonces_sends_fresh_commitments_and_a_new_package_is_signed() {
    let parties = certified_key().await;
    let mut restarted = false;
    sign_again(&parties, &mut |p, to, b| {
        Some(restart_before_the_package(p, to, b, &mut restarted))
    })
    .await;
    assert!(restarted);
    signature_made(&parties);
    let run = runs(&parties)[0].clone();
    assert_eq!(run.attempt, 2, "{run:?}");
    assert!(run.excluded.is_empty());
}

#[tokio::test]
async fn requests_that_reach_a_fiduciary_out_of_order_are_both_signed() {
    let parties = certified_key().await;
    let (_, first) = signing::create_sign(&parties[0].ctx, REFERENCE, MESSAGE.to_vec())
        .await
        .unwrap();
    let (_, second) = signing::create_sign(&parties[0].ctx, REFERENCE, b"another".to_vec())
        .await
        .unwrap();
    // The second request reaches every fiduciary before the first.
    run(
        &parties,
        second.into_iter().chain(first).collect(),
        &mut |_, _, b| Some(b),
    )
    .await;
    let runs = runs(&parties);
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|run| run.signature.is_some()), "{:?}", runs);
}

#[tokio::test]
async fn the_audit_verifies_each_signature_and_refuses_one_with_a_bit_flipped() {
    let parties = certified_key().await;
    let (_, deliveries) = signing::create_sign(&parties[0].ctx, REFERENCE, MESSAGE.to_vec())
        .await
        .unwrap();
    run(&parties, deliveries, &mut |_, _, b| Some(b)).await;
    let principal = &parties[0];
    let record = record(&parties);
    let directory = principal.ctx.directory.borrow().clone();
    let report = super::audit(&principal.ctx.store, &directory, REFERENCE, record.head).unwrap();
    assert_eq!(report.threshold_signatures, 1);
    // The same signature with one bit flipped, signed by the principal as a signature of the
    // same request: the audit refuses it.
    let mut made = signature_made(&parties);
    let mut bytes = made.signature.to_vec();
    bytes[63] ^= 1;
    made.signature = ByteBuf::from(bytes);
    let request = made.request;
    let forged = principal.publish(Kind::Signature, REFERENCE, Some(request), &made);
    let (_, forged_cid) = principal.take(&forged).await.unwrap();
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

/// The encoded size of the principal's record and of each fiduciary's.
fn record_sizes(parties: &[Party]) -> Vec<usize> {
    let principal = parties[0].cid();
    let mut sizes = vec![
        dta_protocol::dagcbor::encode(&record(parties))
            .unwrap()
            .len(),
    ];
    for fiduciary in &parties[1..] {
        let held = fiduciary
            .ctx
            .fiduciary_record(&principal, REFERENCE)
            .unwrap();
        assert!(held.signing.is_empty(), "{:?}", held.signing);
        sizes.push(dta_protocol::dagcbor::encode(&held).unwrap().len());
    }
    sizes
}

/// A signature made leaves the records of the principal and of the fiduciaries for an entry
/// of its own: every step reads and writes its record, which must not grow with each
/// signature of the key. A request of a number already signed is still told apart: the same
/// request is answered with nothing, another is refused.
#[tokio::test]
async fn records_do_not_grow_with_the_signatures_made_and_a_signed_number_is_not_asked_again() {
    let parties = certified_key().await;
    let mut sizes = Vec::new();
    let mut first_request = Vec::new();
    for _ in 0..3 {
        let (_, deliveries) = signing::create_sign(&parties[0].ctx, REFERENCE, MESSAGE.to_vec())
            .await
            .unwrap();
        if first_request.is_empty() {
            first_request = deliveries.clone();
        }
        run(&parties, deliveries, &mut |_, _, b| Some(b)).await;
        signature_made(&parties);
        sizes.push(record_sizes(&parties));
    }
    assert_eq!(sizes[0], sizes[2], "records grew with the signatures made");
    let made = runs(&parties);
    assert_eq!(
        made.iter().map(|run| run.sequence).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(made.iter().all(|run| run.signature.is_some()), "{made:?}");
    assert_eq!(record(&parties).signatures_asked, 3);

    // The first request again: nothing is sent and nothing changes.
    let head = record(&parties).head;
    run(&parties, first_request, &mut |_, _, b| Some(b)).await;
    assert_eq!(record(&parties).head, head);
    assert_eq!(runs(&parties).len(), 3);

    // Another request of number 1: refused by a fiduciary that signed number 1.
    let principal = &parties[0];
    let signed_first: dta_protocol::signing::SignRequest =
        principal.ctx.stored_payload(&made[0].request).unwrap();
    let again = dta_protocol::signing::SignRequest {
        message: ByteBuf::from(b"something else".to_vec()),
        ..signed_first
    };
    let block = principal.publish(Kind::SignRequest, REFERENCE, Some(head), &again);
    let (envelope, cid) = parties[1].take(&block).await.unwrap();
    let refused = signing::on_request(&parties[1].ctx, &envelope, cid)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("asked for already"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_package_whose_signer_says_nothing_gives_way_to_others_once_the_request_is_asked_again() {
    let parties = certified_key().await;
    sign_again(&parties, &mut |_, _, b| Some(b)).await;
    // Fiduciary 1, a signer of spares, is gone without a word.
    let silent = &mut |_: &[Party], to: usize, b: Vec<u8>| (to != 1).then_some(b);
    sign_again(&parties, silent).await;
    assert!(runs(&parties).last().unwrap().signature.is_none());
    // Asked again soon, nothing changes: the package may yet be signed.
    let again = super::resume::resume(&parties[0].ctx, std::time::Duration::ZERO).unwrap();
    run(&parties, again, silent).await;
    assert!(runs(&parties).last().unwrap().signature.is_none());
    // Long after the package went, the others' commitments replace it.
    let mut record = record(&parties);
    record.signing.last_mut().unwrap().package_at_ms = 1;
    parties[0]
        .ctx
        .save(crate::role::Role::Principal, &record)
        .await
        .unwrap();
    let again = super::resume::resume(&parties[0].ctx, std::time::Duration::ZERO).unwrap();
    run(&parties, again, silent).await;
    let signature = signature_made(&parties);
    assert_eq!(signers(&parties, &signature), vec![2, 3]);
    assert_eq!(runs(&parties).last().unwrap().attempt, 2);
}
