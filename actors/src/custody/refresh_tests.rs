//! A refresh step by step among a principal and three fiduciaries (see `rig`): a dealer whose
//! sub-share to one holder fails is named in that holder's complaint, excluded, and the
//! refresh finishes without it, and so is one that deals a holder from another polynomial than
//! the one the principal combined; a complaint about a good sub-share names its maker and
//! changes nothing.

use std::collections::BTreeMap;

use dta_crypto::threshold::{Commitments, Share};
use dta_protocol::dkg::Verdict;
use dta_protocol::envelope::{Kind, SignedEnvelope};
use dta_protocol::order::{Commitment, SecretBytes};
use dta_protocol::reshare::{OldShares, ReshareComplaint, ReshareSubShare};

use super::rig::{Party, parties, run};
use super::{NewOrder, create_order, exclusion, held_share_name, refresh};
use crate::context::{CustodyError, RoleContext, encode};
use crate::role::Role;
use crate::states::OrderState;

const REFERENCE: &str = "refreshed-1";

/// A principal (party 0), three fiduciaries and a beneficiary, and a certified 2-of-3 order of
/// a secret the principal made.
async fn certified() -> Vec<Party> {
    let parties = parties(&[
        "principal",
        "fiduciary-1",
        "fiduciary-2",
        "fiduciary-3",
        "beneficiary",
    ])
    .await;
    let prepared = create_order(
        &parties[0].ctx,
        NewOrder {
            reference: Some(REFERENCE.into()),
            plugin: crate::plugin::SAFEGUARD_SECRET.into(),
            fiduciaries: parties[1..4].iter().map(Party::cid).collect(),
            threshold: 2,
            beneficiary: Some(parties[4].cid()),
            policy: Default::default(),
            input: BTreeMap::new(),
            secret: Some(SecretBytes::new(b"the launch codes".to_vec())),
            refresh_every_ms: None,
        },
    )
    .await
    .unwrap();
    run(&parties, prepared.deliveries, &mut |_, _, b| Some(b)).await;
    assert_eq!(principal_record(&parties).state, OrderState::Certified);
    parties
}

fn principal_record(parties: &[Party]) -> super::OrderRecord {
    parties[0].ctx.own_record(REFERENCE).unwrap().unwrap()
}

/// The deal `block` (one dealer's to one holder) with its sub-share changed, signed again by
/// the dealer: a dealer that cheats that holder.
fn bad_deal(parties: &[Party], block: &[u8]) -> Vec<u8> {
    let signed = SignedEnvelope::decode(block).unwrap();
    let dealer = parties
        .iter()
        .find(|p| p.cid() == signed.envelope.sender)
        .unwrap();
    let recipient = parties
        .iter()
        .find(|p| p.cid() == signed.envelope.recipients[0].identity)
        .unwrap();
    let envelope = recipient.ctx.verify(block).unwrap();
    let public: dta_protocol::reshare::ReshareCommitments =
        RoleContext::payload(&envelope).unwrap();
    let mut sub_share: ReshareSubShare = recipient.ctx.sealed(&envelope).unwrap();
    let mut bytes = sub_share.share.expose().to_vec();
    bytes[31] ^= 1;
    sub_share.share = SecretBytes::new(bytes);
    let sealed = encode(&sub_share).unwrap();
    dealer
        .ctx
        .envelope(
            Kind::ReshareDeal,
            REFERENCE,
            signed.envelope.prev,
            Some(encode(&public).unwrap()),
            Some(&sealed),
            &[recipient.ctx.local.identity()],
        )
        .unwrap()
        .signed()
        .to_block()
        .unwrap()
        .into_bytes()
}

/// Whether a block is `from`'s deal to `to`.
fn is_deal(parties: &[Party], block: &[u8], from: usize, to: usize) -> bool {
    let signed = SignedEnvelope::decode(block).unwrap();
    signed.envelope.kind == Kind::ReshareDeal
        && signed.envelope.sender == parties[from].cid()
        && signed.envelope.recipients[0].identity == parties[to].cid()
}

#[tokio::test]
async fn a_dealer_whose_sub_share_fails_is_named_excluded_and_the_refresh_finishes_without_it() {
    let parties = certified().await;
    let before = principal_record(&parties).commitment.unwrap();
    let (_, deliveries) = refresh::create_reshare(&parties[0].ctx, REFERENCE, None)
        .await
        .unwrap();
    // Fiduciary 1 deals fiduciary 2 a bad sub-share; the principal counts fiduciaries 1 and 2
    // first (lowest indices).
    let mut cheated = 0;
    run(&parties, deliveries, &mut |parties, to, block| {
        if to == 0 && is_deal(parties, &block, 1, 2) {
            cheated += 1;
            return Some(bad_deal(parties, &block));
        }
        Some(block)
    })
    .await;
    // Dealers send their deals again when the commitment brings them the request.
    assert!(cheated >= 1);

    let record = principal_record(&parties);
    assert_eq!(record.state, OrderState::Certified, "{record:?}");
    assert_eq!(record.epoch, 1);
    let commitment: Commitment = parties[0]
        .ctx
        .stored_payload(&record.commitment.unwrap())
        .unwrap();
    let reshared = commitment.reshared.clone().unwrap();
    assert_eq!(reshared.previous, before);
    assert_eq!(reshared.dealers, vec![2, 3], "dealer 1 is not counted");
    // The commitment names the complaint, fiduciary 2's against dealer 1, and anyone can
    // check it.
    let [complaint_block] = reshared.excluded.as_slice() else {
        panic!("one exclusion: {:?}", reshared.excluded.len());
    };
    let complaint_envelope = parties[0].ctx.verify(complaint_block).unwrap();
    assert_eq!(complaint_envelope.envelope().sender, parties[2].cid());
    let complaint: ReshareComplaint = RoleContext::payload(&complaint_envelope).unwrap();
    assert_eq!(complaint.dealer, 1);
    let old: Commitment = parties[0].ctx.stored_payload(&before).unwrap();
    let verdict = complaint
        .judge(
            reshared.request,
            2,
            &parties[2].cid(),
            parties[1].ctx.local.identity(),
            &OldShares::of(&old).unwrap(),
        )
        .unwrap();
    assert_eq!(verdict, Verdict::DealerCheated);

    // Every holder's new share fits the commitment in force, the old ones are gone, and the
    // audit of the log passes.
    let feldman = Commitments::from_bytes(&commitment.feldman).unwrap();
    let principal = parties[0].cid();
    for (index, fiduciary) in (1u32..).zip(&parties[1..4]) {
        let held = fiduciary
            .ctx
            .load_secret(&held_share_name(&principal, REFERENCE, 1))
            .await
            .unwrap();
        let share = Share::from_parts(index, held.expose().try_into().unwrap()).unwrap();
        feldman.verify_share(&share).unwrap();
        assert!(
            fiduciary
                .ctx
                .load_secret(&held_share_name(&principal, REFERENCE, 0))
                .await
                .is_err(),
            "the share of epoch 0 of fiduciary {index} is deleted"
        );
        let kept = fiduciary
            .ctx
            .record(Role::Fiduciary, &principal, REFERENCE)
            .unwrap()
            .unwrap();
        assert_eq!(kept.commitment, record.commitment);
    }
    let directory = parties[0].ctx.directory.borrow().clone();
    let report = super::audit(&parties[0].ctx.store, &directory, REFERENCE, record.head).unwrap();
    assert!(report.certified);
}

#[tokio::test]
async fn a_complaint_about_a_good_sub_share_names_its_maker_and_changes_nothing() {
    let parties = certified().await;
    let (_, deliveries) = refresh::create_reshare(&parties[0].ctx, REFERENCE, None)
        .await
        .unwrap();
    // Every signature of the new commitment is held back: it stays under way.
    run(&parties, deliveries, &mut |_, to, block| {
        let kind = SignedEnvelope::decode(&block).unwrap().envelope.kind;
        (to != 0 || kind != Kind::CommitmentSignature).then_some(block)
    })
    .await;
    let record = principal_record(&parties);
    assert_eq!(record.state, OrderState::Committed);
    let commitment_cid = record.commitment.unwrap();
    let commitment: Commitment = parties[0].ctx.stored_payload(&commitment_cid).unwrap();
    let reshared = commitment.reshared.unwrap();
    // Fiduciary 2 complains about dealer 1's good sub-share to it.
    let liar = &parties[2];
    let deal = reshared.deals[0][1];
    let (_, blocks) = exclusion::complain(
        &liar.ctx,
        REFERENCE,
        commitment_cid,
        (reshared.request, 1, deal),
        None,
        &parties[0].cid(),
    )
    .await
    .unwrap();
    let principal = &parties[0];
    let (envelope, cid) = principal.take(&blocks[0]).await.unwrap();
    let refused = exclusion::on_complaint(&principal.ctx, &envelope, cid).await;
    let Err(CustodyError::Invalid(why)) = refused else {
        panic!("refused as bad input: {refused:?}");
    };
    assert!(why.contains(&liar.cid().to_string()), "{why}");
    let after = principal_record(&parties);
    assert_eq!(after.commitment, Some(commitment_cid));
    assert!(after.refresh.unwrap().excluded.is_empty());
}

#[tokio::test]
async fn a_complaint_with_no_refresh_under_way_is_refused() {
    let parties = certified().await;
    let complaint = ReshareComplaint {
        request: principal_record(&parties).order,
        dealer: 1,
        deal: Default::default(),
        content_key: vec![0; 32],
        counted: None,
    };
    let block = parties[2].publish(
        Kind::ReshareComplaint,
        REFERENCE,
        principal_record(&parties).commitment,
        &complaint,
    );
    let (envelope, cid) = parties[0].take(&block).await.unwrap();
    let refused = exclusion::on_complaint(&parties[0].ctx, &envelope, cid).await;
    assert!(
        matches!(refused, Err(CustodyError::Invalid(_))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_dealer_that_deals_one_holder_from_another_polynomial_is_named_and_excluded() {
    let parties = certified().await;
    let (record, deliveries) = refresh::create_reshare(&parties[0].ctx, REFERENCE, None)
        .await
        .unwrap();
    let request = record.head;
    // Fiduciary 1 deals its share a second time, from another polynomial with the same
    // constant term, and sends fiduciary 2 its sub-share of that one: the sub-share fits the
    // commitments in its deal, but they are not those the principal combines.
    let dealer = &parties[1];
    let held = dealer
        .ctx
        .load_secret(&held_share_name(&parties[0].cid(), REFERENCE, 0))
        .await
        .unwrap();
    let share = Share::from_parts(1, held.expose().try_into().unwrap()).unwrap();
    let (subs, commitments) = dta_crypto::threshold::reshare::deal(&share, 2, 3).unwrap();
    let public = dta_protocol::reshare::ReshareCommitments {
        request,
        dealer: 1,
        recipient: 2,
        commitments: commitments
            .to_bytes()
            .iter()
            .map(|c| serde_bytes::ByteBuf::from(c.to_vec()))
            .collect(),
    };
    let sealed = ReshareSubShare {
        request,
        dealer: 1,
        recipient: 2,
        share: SecretBytes::new(subs[1].value_bytes().expose().to_vec()),
    };
    let second_dealing = dealer
        .ctx
        .envelope(
            Kind::ReshareDeal,
            REFERENCE,
            Some(request),
            Some(encode(&public).unwrap()),
            Some(&encode(&sealed).unwrap()),
            &[parties[2].ctx.local.identity()],
        )
        .unwrap()
        .signed()
        .to_block()
        .unwrap()
        .into_bytes();
    run(&parties, deliveries, &mut |parties, to, block| {
        if to == 0 && is_deal(parties, &block, 1, 2) {
            return Some(second_dealing.clone());
        }
        Some(block)
    })
    .await;

    let record = principal_record(&parties);
    assert_eq!(record.state, OrderState::Certified, "{record:?}");
    let commitment: Commitment = parties[0]
        .ctx
        .stored_payload(&record.commitment.unwrap())
        .unwrap();
    let reshared = commitment.reshared.unwrap();
    assert_eq!(reshared.dealers, vec![2, 3], "dealer 1 is not counted");
    let [complaint_block] = reshared.excluded.as_slice() else {
        panic!("one exclusion: {:?}", reshared.excluded.len());
    };
    let complaint: ReshareComplaint =
        RoleContext::payload(&parties[0].ctx.verify(complaint_block).unwrap()).unwrap();
    assert_eq!(complaint.dealer, 1);
    assert!(
        complaint.counted.is_some(),
        "the other dealing is the evidence"
    );
    let directory = parties[0].ctx.directory.borrow().clone();
    super::audit(&parties[0].ctx.store, &directory, REFERENCE, record.head).unwrap();
}
