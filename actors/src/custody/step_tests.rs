//! Each role's steps on their own (see `rig`): the envelope that should fail a check is
//! handed straight to the step, and the step must refuse it and keep nothing.

use std::collections::BTreeMap;

use dta_protocol::envelope::Kind;
use dta_protocol::order::{
    Certificate, Commitment, Receipt, ReleaseRequest, SecretBytes, ShareDeal,
};
use serde_bytes::ByteBuf;

use super::rig::{Party, parties};
use super::{
    NewOrder, create_order, create_release, on_certificate, on_commitment, on_order_request,
    on_receipt, on_release_request, on_share_deal, share_name,
};
use crate::context::{CustodyError, RoleContext};
use crate::role::Role;
use crate::states::OrderState;

const REFERENCE: &str = "vault-1";

/// A principal, two fiduciaries and a beneficiary, and a 2-of-2 order of a secret made by the
/// principal: the blocks each fiduciary is sent (order request, commitment, its deal).
async fn ordered() -> (Vec<Party>, Vec<Vec<Vec<u8>>>) {
    let names = ["principal", "fiduciary-1", "fiduciary-2", "beneficiary"];
    ordered_under(&names, |_| dta_protocol::policy::ReleasePolicy::default()).await
}

/// [`ordered`] among `names` (the first four as there), under the release policy that
/// `policy` makes of the parties.
async fn ordered_under(
    names: &[&str],
    policy: impl Fn(&[Party]) -> dta_protocol::policy::ReleasePolicy,
) -> (Vec<Party>, Vec<Vec<Vec<u8>>>) {
    let parties = parties(names).await;
    let prepared = create_order(
        &parties[0].ctx,
        NewOrder {
            reference: Some(REFERENCE.into()),
            plugin: crate::plugin::SAFEGUARD_SECRET.into(),
            fiduciaries: vec![parties[1].cid(), parties[2].cid()],
            threshold: 2,
            beneficiary: Some(parties[3].cid()),
            policy: policy(&parties),
            input: BTreeMap::new(),
            secret: Some(SecretBytes::new(b"the launch codes".to_vec())),

            refresh_every_ms: None,
        },
    )
    .await
    .unwrap();
    let blocks = prepared.deliveries.into_iter().map(|(_, b)| b).collect();
    (parties, blocks)
}

/// Hands a fiduciary its order request and commitment; the commitment's CID and payload.
async fn order_and_commitment(
    fiduciary: &Party,
    blocks: &[Vec<u8>],
) -> (dta_protocol::Cid, Commitment) {
    let (order, order_cid) = fiduciary.take(&blocks[0]).await.unwrap();
    assert_eq!(
        on_order_request(&fiduciary.ctx, &order, order_cid).await,
        Ok(None)
    );
    let (commitment, commitment_cid) = fiduciary.take(&blocks[1]).await.unwrap();
    assert_eq!(
        on_commitment(&fiduciary.ctx, &commitment, commitment_cid).await,
        Ok(None)
    );
    (commitment_cid, RoleContext::payload(&commitment).unwrap())
}

/// Hands a fiduciary its order request, commitment and deal: it holds its share.
async fn holding(fiduciary: &Party, blocks: &[Vec<u8>]) -> (dta_protocol::Cid, Commitment) {
    let committed = order_and_commitment(fiduciary, blocks).await;
    let (deal, cid) = fiduciary.take(&blocks[2]).await.unwrap();
    on_share_deal(&fiduciary.ctx, &deal, cid).await.unwrap();
    committed
}

/// The fiduciary's record of the principal's order, if it has one.
fn record_at(fiduciary: &Party, principal: &Party) -> Option<super::OrderRecord> {
    fiduciary
        .ctx
        .record(Role::Fiduciary, &principal.cid(), REFERENCE)
        .unwrap()
}

fn holds_share(fiduciary: &Party, principal: &Party) -> bool {
    fiduciary
        .ctx
        .store
        .get(
            crate::store::Column::Keystore,
            share_name(&principal.cid(), REFERENCE).as_bytes(),
        )
        .unwrap()
        .is_some()
}

#[tokio::test]
async fn a_deal_whose_share_fails_the_commitments_is_refused_and_nothing_is_kept() {
    let (parties, blocks) = ordered().await;
    let (principal, fiduciary) = (&parties[0], &parties[1]);
    let (commitment_cid, commitment) = order_and_commitment(fiduciary, &blocks[0]).await;
    // Signed by the principal, sealed to the fiduciary, linked right: only the share is wrong.
    let mut value = [0u8; 32];
    value[31] = 7;
    let forged = ShareDeal {
        order: commitment.order,
        index: 1,
        share: SecretBytes::new(value.to_vec()),
        commitments: commitment.feldman.clone(),
    };
    let block = principal.sign(
        Kind::ShareDeal,
        REFERENCE,
        Some(commitment_cid),
        None,
        Some(&forged),
        &[fiduciary],
    );
    let (deal, cid) = fiduciary.take(&block).await.unwrap();
    let refused = on_share_deal(&fiduciary.ctx, &deal, cid).await;
    assert!(
        matches!(refused, Err(CustodyError::Invalid(_))),
        "{refused:?}"
    );
    assert!(!holds_share(fiduciary, principal));
    assert_eq!(record_at(fiduciary, principal), None);

    // The principal's own deal is taken: the rig is not what refused the forged one.
    let (deal, cid) = fiduciary.take(&blocks[0][2]).await.unwrap();
    on_share_deal(&fiduciary.ctx, &deal, cid).await.unwrap();
    assert!(holds_share(fiduciary, principal));
    let record = record_at(fiduciary, principal).unwrap();
    assert_eq!(record.state, OrderState::Holding);
}

#[tokio::test]
async fn a_release_before_certification_is_refused_on_both_sides() {
    let (parties, blocks) = ordered().await;
    let (principal, fiduciary, beneficiary) = (&parties[0], &parties[1], &parties[3]);
    // The principal refuses to release an order no certificate covers.
    let refused = create_release(&principal.ctx, REFERENCE, None).await;
    assert!(
        matches!(refused, Err(CustodyError::Conflict(_))),
        "{refused:?}"
    );

    // A fiduciary holding its share refuses a request whose certificate it never saw.
    let (commitment_cid, commitment) = holding(fiduciary, &blocks[0]).await;
    let request = ReleaseRequest {
        order: commitment.order,
        certificate: commitment_cid,
        beneficiary: beneficiary.cid(),
        sequence: 1,
    };
    let block = principal.publish(
        Kind::ReleaseRequest,
        REFERENCE,
        Some(commitment_cid),
        &request,
    );
    let (envelope, cid) = fiduciary.take(&block).await.unwrap();
    let refused = on_release_request(&fiduciary.ctx, &envelope, cid).await;
    assert!(
        matches!(&refused, Err(CustodyError::Conflict(m)) if m.contains("not certified")),
        "{refused:?}"
    );
    let record = record_at(fiduciary, principal).unwrap();
    assert!(
        record.served.is_empty() && record.releases.is_empty(),
        "{record:?}"
    );
    assert_eq!(record.state, OrderState::Holding);
}

#[tokio::test]
async fn a_receipt_for_no_release_of_the_order_changes_nothing() {
    let (parties, _) = ordered().await;
    let (principal, beneficiary) = (&parties[0], &parties[3]);
    let before = principal.ctx.own_record(REFERENCE).unwrap().unwrap();
    // A well-signed receipt naming a release the principal never made (its own commitment).
    let receipt = Receipt {
        release: before.commitment.unwrap(),
        shares_from: Vec::new(),
        public_key: ByteBuf::from(vec![0; 48]),
        votes: Vec::new(),
        refused: Vec::new(),
        equivocations: Vec::new(),
    };
    let block = beneficiary.publish(Kind::Receipt, REFERENCE, before.commitment, &receipt);
    let (envelope, cid) = principal.take(&block).await.unwrap();
    let refused = on_receipt(&principal.ctx, &envelope, cid).await;
    assert!(
        matches!(refused, Err(CustodyError::Invalid(_))),
        "{refused:?}"
    );
    assert_eq!(
        principal.ctx.own_record(REFERENCE).unwrap().unwrap(),
        before
    );
}

#[tokio::test]
async fn a_certificate_for_another_commitment_is_refused() {
    let (parties, blocks) = ordered().await;
    let (principal, fiduciary) = (&parties[0], &parties[1]);
    let (commitment_cid, _) = holding(fiduciary, &blocks[0]).await;
    // Signed by the principal, but certifying a commitment this order does not have.
    let other = dta_protocol::block::cid_of(dta_protocol::block::DAG_CBOR, b"another");
    let certificate = Certificate {
        commitment: other,
        signers: vec![parties[1].cid(), parties[2].cid()],
        signature: ByteBuf::from(vec![0; 96]),
        batch: None,
    };
    let block = principal.publish(
        Kind::Certificate,
        REFERENCE,
        Some(commitment_cid),
        &certificate,
    );
    let (envelope, cid) = fiduciary.take(&block).await.unwrap();
    let refused = on_certificate(&fiduciary.ctx, &envelope, cid).await;
    assert!(
        matches!(&refused, Err(CustodyError::Invalid(m)) if m.contains("another commitment")),
        "{refused:?}"
    );
    let record = record_at(fiduciary, principal).unwrap();
    assert_eq!(
        (record.state, record.certificate),
        (OrderState::Holding, None)
    );
}

#[tokio::test]
async fn votes_that_do_not_count_are_refused_and_a_second_by_one_approver_too() {
    use dta_protocol::policy::{Approval, ApproverGroup, ReleasePolicy};

    let names = [
        "principal",
        "fiduciary-1",
        "fiduciary-2",
        "beneficiary",
        "approver",
        "outsider",
    ];
    let (parties, blocks) = ordered_under(&names, |parties| ReleasePolicy {
        groups: vec![ApproverGroup {
            name: "ops".into(),
            members: vec![parties[4].cid()],
            count: 1,
        }],
        ..ReleasePolicy::default()
    })
    .await;
    let (principal, fiduciary, approver, outsider) =
        (&parties[0], &parties[1], &parties[4], &parties[5]);
    let (commitment_cid, commitment) = holding(fiduciary, &blocks[0]).await;
    // A release request of the principal's, as the fiduciary would receive it.
    let request = principal.publish(
        Kind::ReleaseRequest,
        REFERENCE,
        Some(commitment_cid),
        &ReleaseRequest {
            order: commitment.order,
            certificate: commitment_cid,
            beneficiary: parties[3].cid(),
            sequence: 1,
        },
    );
    let (_, request_cid) = fiduciary.take(&request).await.unwrap();
    let vote = |who: &Party, approval: Approval, prev: Option<dta_protocol::Cid>| {
        who.publish(Kind::Approval, REFERENCE, prev, &approval)
    };
    let for_request = Approval {
        order: commitment.order,
        request: request_cid,
    };
    let on = |block: Vec<u8>| async move {
        let (envelope, cid) = fiduciary.take(&block).await.unwrap();
        super::on_vote(&fiduciary.ctx, Role::Fiduciary, &envelope, cid).await
    };
    // Not a member; not linked to the request it names; for a request that is not here.
    let refused = on(vote(outsider, for_request, Some(request_cid))).await;
    assert!(
        matches!(&refused, Err(CustodyError::Invalid(e)) if e.contains("not a member")),
        "{refused:?}"
    );
    let refused = on(vote(approver, for_request, Some(commitment_cid))).await;
    assert!(
        matches!(&refused, Err(CustodyError::Invalid(e)) if e.contains("does not follow")),
        "{refused:?}"
    );
    let elsewhere = Approval {
        order: commitment.order,
        request: commitment_cid,
    };
    let refused = on(vote(approver, elsewhere, Some(commitment_cid))).await;
    assert!(
        matches!(refused, Err(CustodyError::Invalid(_))),
        "{refused:?}"
    );
    assert!(record_at(fiduciary, principal).unwrap().votes.is_empty());
    // The member's vote is kept, once.
    let kept = on(vote(approver, for_request, Some(request_cid))).await;
    assert!(matches!(kept, Ok(super::VoteOutcome::Kept)), "{kept:?}");
    // Another envelope (a later timestamp), the same approver and request.
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    let again = approver.sign(
        Kind::Approval,
        REFERENCE,
        Some(request_cid),
        Some(&for_request),
        None,
        &[],
    );
    let refused = on(again).await;
    assert!(
        matches!(&refused, Err(CustodyError::Conflict(e)) if e.contains("already approved")),
        "{refused:?}"
    );
    assert_eq!(record_at(fiduciary, principal).unwrap().votes.len(), 1);
}

#[tokio::test]
async fn a_second_first_commitment_for_one_order_convicts_the_principal_of_equivocation() {
    let (parties, blocks) = ordered().await;
    let (principal, fiduciary) = (&parties[0], &parties[1]);
    let (held_cid, held) = holding(fiduciary, &blocks[0]).await;
    // The same order and key, another polynomial: what another fiduciary signed and shows.
    let mut other = held.clone();
    other.feldman[1] = held.feldman[0].clone();
    let block = principal.sign(
        Kind::Commitment,
        REFERENCE,
        Some(held.order),
        Some(&other),
        None,
        &[],
    );
    let (envelope, other_cid) = fiduciary.take(&block).await.unwrap();
    let refused = on_commitment(&fiduciary.ctx, &envelope, other_cid).await;
    assert!(
        matches!(&refused, Err(CustodyError::Invalid(why)) if why.contains("equivocation")),
        "{refused:?}"
    );
    assert_eq!(
        fiduciary.ctx.metrics.misconduct(),
        vec![(
            dta_protocol::misconduct::Offence::Equivocation,
            Some(principal.cid()),
            1
        )]
    );
    // What the fiduciary signed stands.
    assert_eq!(
        record_at(fiduciary, principal).unwrap().commitment,
        Some(held_cid)
    );

    // Its own commitment shown to it again is no offence.
    let (envelope, cid) = fiduciary.take(&blocks[0][1]).await.unwrap();
    assert_eq!(
        on_commitment(&fiduciary.ctx, &envelope, cid).await,
        Ok(None)
    );
    assert_eq!(fiduciary.ctx.metrics.misconduct().len(), 1);
}

#[tokio::test]
async fn a_commitment_left_uncertified_is_shown_once_to_the_other_fiduciaries() {
    let (parties, blocks) = ordered().await;
    let fiduciary = &parties[1];
    holding(fiduciary, &blocks[0]).await;
    let mut shown = std::collections::HashSet::new();
    // Just made: not stalled yet.
    let now = super::crosscheck::show_stalled(&fiduciary.ctx, &mut shown).unwrap();
    assert!(now.is_empty(), "{now:?}");
    assert!(shown.is_empty());
    let later = super::crosscheck::show_stalled_at(
        &fiduciary.ctx,
        &mut shown,
        crate::context::now_millis() + super::crosscheck::STALLED_AFTER_MS,
    )
    .unwrap();
    let other_peer = fiduciary.ctx.peer_of(&parties[2].cid()).unwrap();
    assert_eq!(later, vec![(other_peer, vec![blocks[0][1].clone()])]);
    // Once only.
    let again = super::crosscheck::show_stalled_at(
        &fiduciary.ctx,
        &mut shown,
        crate::context::now_millis() + 2 * super::crosscheck::STALLED_AFTER_MS,
    )
    .unwrap();
    assert!(again.is_empty(), "{again:?}");
}

/// `party` from now on holds a revocation of `revoked`.
fn revoke_at(party: &mut Party, revoked: &Party) {
    let mut directory = party.ctx.directory.borrow().clone();
    directory.revoked.insert(
        revoked.cid().to_string(),
        crate::identities::RevokedIdentity {
            identity: revoked.cid(),
            at: 1,
            reason: "device lost".into(),
            revoker: dta_protocol::revocation::Revoker::Identity,
            revocation: revoked.cid(),
        },
    );
    let (sender, receiver) = tokio::sync::watch::channel(directory);
    std::mem::forget(sender);
    party.ctx.directory = receiver;
}

#[tokio::test]
async fn orders_and_releases_from_or_to_a_revoked_identity_are_refused_by_each_party() {
    let (mut parties, blocks) = ordered().await;
    // A fiduciary that knows the beneficiary revoked refuses the release request to it.
    let (commitment_cid, commitment) = holding(&parties[1], &blocks[0]).await;
    let beneficiary = parties.remove(3);
    revoke_at(&mut parties[1], &beneficiary);
    let request = ReleaseRequest {
        order: commitment.order,
        certificate: commitment_cid,
        beneficiary: beneficiary.cid(),
        sequence: 1,
    };
    let block = parties[0].publish(
        Kind::ReleaseRequest,
        REFERENCE,
        Some(commitment_cid),
        &request,
    );
    let (envelope, cid) = parties[1].take(&block).await.unwrap();
    let refused = on_release_request(&parties[1].ctx, &envelope, cid).await;
    assert!(
        matches!(&refused, Err(CustodyError::Revoked(m))
            if m.contains(&beneficiary.cid().to_string()) && m.contains("device lost")),
        "{refused:?}"
    );
    assert!(
        record_at(&parties[1], &parties[0])
            .unwrap()
            .releases
            .is_empty()
    );

    // One that knows the principal revoked takes no share of its order.
    let principal = parties.remove(0);
    revoke_at(&mut parties[1], &principal);
    let fiduciary = &parties[1];
    order_and_commitment(fiduciary, &blocks[1]).await;
    let (deal, cid) = fiduciary.take(&blocks[1][2]).await.unwrap();
    let refused = on_share_deal(&fiduciary.ctx, &deal, cid).await;
    assert!(
        matches!(refused, Err(CustodyError::Revoked(_))),
        "{refused:?}"
    );
    assert!(!holds_share(fiduciary, &principal));

    // The principal makes no order for a revoked fiduciary.
    let mut principal = principal;
    revoke_at(&mut principal, &parties[0]);
    let refused = create_order(
        &principal.ctx,
        NewOrder {
            reference: Some("vault-2".into()),
            plugin: crate::plugin::SAFEGUARD_SECRET.into(),
            fiduciaries: vec![parties[0].cid(), parties[1].cid()],
            threshold: 2,
            beneficiary: Some(beneficiary.cid()),
            policy: Default::default(),
            input: BTreeMap::new(),
            secret: Some(SecretBytes::new(b"more launch codes".to_vec())),
            refresh_every_ms: None,
        },
    )
    .await;
    assert!(
        matches!(&refused, Err(CustodyError::Revoked(m)) if m.contains(&parties[0].cid().to_string())),
        "{:?}",
        refused.err()
    );
    assert!(principal.ctx.own_record("vault-2").unwrap().is_none());
}
