//! Custody batches step by step (see `rig`): orders held by their principal and dealt
//! together, signed once by each fiduciary, certified together; and what becomes of a batch
//! when one deal is refused, when deals stop coming, or when a signature is bad.

use std::collections::BTreeMap;
use std::time::Duration;

use dta_protocol::Cid;
use dta_protocol::envelope::{Kind, SignedEnvelope};
use dta_protocol::order::{Certificate, Commitment, SecretBytes, ShareDeal};

use super::batching::{self, Held};
use super::rig::{Party, addressed, parties, party_of, run};
use super::{NewOrder, ReleaseStep, create_order, on_commitment, on_order_request, on_share_deal};
use crate::context::{CustodyError, Delivery, RoleContext};
use crate::states::OrderState;

const ORDERS: usize = 3;

fn reference(i: usize) -> String {
    format!("together-{i}")
}

/// A principal, three fiduciaries (t = 2) and a beneficiary; [`ORDERS`] orders made while the
/// principal held them, and the deliveries of their batch.
async fn dealt_together() -> (Vec<Party>, Vec<Delivery>) {
    let parties = parties(&["principal", "f1", "f2", "f3", "beneficiary"]).await;
    for i in 0..ORDERS {
        let prepared = create_order(
            &parties[0].ctx,
            NewOrder {
                reference: Some(reference(i)),
                plugin: crate::plugin::SAFEGUARD_SECRET.into(),
                fiduciaries: parties[1..4].iter().map(Party::cid).collect(),
                threshold: 2,
                beneficiary: Some(parties[4].cid()),
                policy: Default::default(),
                input: BTreeMap::new(),
                secret: Some(SecretBytes::new(vec![i as u8; 32])),
                refresh_every_ms: None,
            },
        )
        .await
        .unwrap();
        let held = batching::hold(&parties[0].ctx, prepared);
        assert!(
            matches!((i, held), (0, Held::First) | (1.., Held::Behind)),
            "order {i}"
        );
    }
    let deliveries = batching::send_held(&parties[0].ctx).unwrap();
    (parties, deliveries)
}

/// The blocks of `deliveries` for party `to`, in order.
fn blocks_for(parties: &[Party], deliveries: &[Delivery], to: usize) -> Vec<Vec<u8>> {
    addressed(parties, deliveries.to_vec())
        .filter(|(party, _)| *party == to)
        .map(|(_, block)| block)
        .collect()
}

fn kind_and_order(block: &[u8]) -> (Kind, String) {
    let signed = SignedEnvelope::decode(block).unwrap();
    (signed.envelope.kind, signed.envelope.order)
}

/// Hands a fiduciary a block of its batch delivery: the blocks it sends on.
async fn step(fiduciary: &Party, block: &[u8]) -> Result<Vec<Vec<u8>>, CustodyError> {
    let (envelope, cid) = fiduciary.take(block).await?;
    let ctx = &fiduciary.ctx;
    let sent = match envelope.envelope().kind {
        Kind::CustodyBatch => batching::on_custody_batch(ctx, &envelope, cid).await?.pop(),
        Kind::OrderRequest => on_order_request(ctx, &envelope, cid).await?,
        Kind::Commitment => on_commitment(ctx, &envelope, cid).await?,
        Kind::ShareDeal => on_share_deal(ctx, &envelope, cid).await?,
        kind => panic!("unexpected {kind:?}"),
    };
    Ok(sent.map(|(_, blocks)| blocks).unwrap_or_default())
}

#[tokio::test]
async fn orders_held_together_are_certified_by_one_signature_of_each_fiduciary() {
    let (parties, deliveries) = dealt_together().await;
    // Each fiduciary gets the batch first, then every order's three blocks.
    for fiduciary in 1..4 {
        let blocks = blocks_for(&parties, &deliveries, fiduciary);
        assert_eq!(blocks.len(), 1 + 3 * ORDERS);
        assert_eq!(kind_and_order(&blocks[0]).0, Kind::CustodyBatch);
    }
    let mut signatures = 0;
    run(&parties, deliveries, &mut |_, _, block| {
        signatures += usize::from(kind_and_order(&block).0 == Kind::BatchSignature);
        Some(block)
    })
    .await;
    assert_eq!(signatures, 3, "one per fiduciary for the whole batch");
    let principal = &parties[0].ctx;
    let signers: Vec<_> = parties[1..4]
        .iter()
        .map(|p| p.ctx.local.identity())
        .collect();
    let mut aggregates = Vec::new();
    for i in 0..ORDERS {
        let record = principal.own_record(&reference(i)).unwrap().unwrap();
        assert_eq!(record.state, OrderState::Certified, "order {i}");
        let envelope = principal
            .verified_block(&record.certificate.unwrap())
            .unwrap();
        let certificate: Certificate = RoleContext::payload(&envelope).unwrap();
        let inclusion = certificate.batch.clone().expect("certified in the batch");
        assert_eq!(
            (inclusion.index, inclusion.leaves),
            (i as u32, ORDERS as u32)
        );
        certificate
            .verify(record.commitment.unwrap(), &signers)
            .unwrap();
        aggregates.push(certificate.signature);
    }
    assert!(aggregates.iter().all(|a| *a == aggregates[0]));
}

/// Releases of a batch's orders make one check: once it passed for the first, a fiduciary
/// releases the others at once, without decoding their signature or waiting for the checker.
#[tokio::test]
async fn once_a_batchs_certificate_check_passed_its_other_orders_release_without_one() {
    let (parties, deliveries) = dealt_together().await;
    run(&parties, deliveries, &mut |_, _, block| Some(block)).await;
    let fiduciary = &parties[1];
    let mut requests = Vec::new();
    for i in 0..ORDERS {
        let plan = super::create_release(&parties[0].ctx, &reference(i), None)
            .await
            .unwrap();
        let (_, blocks) = plan
            .fiduciaries
            .into_iter()
            .find(|(peer, _)| party_of(&parties, *peer) == 1)
            .expect("a delivery to the fiduciary");
        // The certificate comes with the first release that relies on it.
        let (request, before) = blocks.split_last().unwrap();
        for block in before {
            let (envelope, cid) = fiduciary.take(block).await.unwrap();
            if envelope.envelope().kind == Kind::Certificate {
                super::on_certificate(&fiduciary.ctx, &envelope, cid)
                    .await
                    .unwrap();
            }
        }
        requests.push(request.clone());
    }
    let release = |block: Vec<u8>| async move {
        let (envelope, cid) = fiduciary.take(&block).await.unwrap();
        super::on_release_request(&fiduciary.ctx, &envelope, cid).await
    };
    let first = release(requests[0].clone()).await;
    let Ok(ReleaseStep::CheckCertificate(pending)) = first else {
        panic!("the first release has its certificate checked: {first:?}");
    };
    let (done, mut finished) = tokio::sync::mpsc::channel(1);
    fiduciary
        .ctx
        .certificate_checks
        .submit(pending.key, pending.check, move || {
            let _ = done.try_send(());
        })
        .await;
    finished.recv().await.unwrap();
    for (i, request) in requests.into_iter().enumerate() {
        let step = release(request).await;
        assert!(
            matches!(step, Ok(ReleaseStep::Deliver(_))),
            "order {i}: {step:?}"
        );
    }
}

#[tokio::test]
async fn a_refused_deal_leaves_the_others_of_its_batch_signed_one_by_one() {
    let (parties, deliveries) = dealt_together().await;
    let fiduciary = &parties[1];
    let blocks = blocks_for(&parties, &deliveries, 1);
    let mut sent = Vec::new();
    for (position, block) in blocks.iter().enumerate() {
        // The second order's deal, swapped for one whose share is off its commitment.
        if position == 1 + 3 + 2 {
            let (deal, commitment) = off_commitment_deal(&parties, &blocks[1 + 3 + 1]).await;
            let (envelope, cid) = fiduciary.take(&deal).await.unwrap();
            let refused = on_share_deal(&fiduciary.ctx, &envelope, cid).await;
            assert!(refused.is_err(), "{refused:?}");
            // What the role does with a refused deal.
            let principal = parties[0].cid();
            let answer =
                batching::deal_refused(&fiduciary.ctx, &principal, &reference(1), commitment)
                    .await
                    .unwrap();
            assert_eq!(answer, None, "the third deal is still to come");
            continue;
        }
        sent.extend(step(fiduciary, block).await.unwrap());
    }
    // Once the last deal came, the two orders it took are signed, each on its own.
    let signed: Vec<(Kind, String)> = sent.iter().map(|b| kind_and_order(b)).collect();
    assert_eq!(
        signed,
        [
            (Kind::CommitmentSignature, reference(0)),
            (Kind::CommitmentSignature, reference(2)),
        ]
    );
}

/// A deal of the order whose commitment is `commitment_block`, signed by the principal for
/// fiduciary 1, with a share that is not on the committed polynomial; and the commitment's CID.
async fn off_commitment_deal(parties: &[Party], commitment_block: &[u8]) -> (Vec<u8>, Cid) {
    let (envelope, cid) = parties[1].take(commitment_block).await.unwrap();
    let commitment: Commitment = RoleContext::payload(&envelope).unwrap();
    let deal = ShareDeal {
        order: commitment.order,
        index: 1,
        share: SecretBytes::new(vec![7; 32]),
        commitments: commitment.feldman,
    };
    let block = parties[0].sign(
        Kind::ShareDeal,
        &envelope.envelope().order,
        Some(cid),
        None,
        Some(&deal),
        &[&parties[1]],
    );
    (block, cid)
}

#[tokio::test]
async fn a_batch_whose_deals_stop_coming_is_signed_as_far_as_they_came() {
    let (parties, deliveries) = dealt_together().await;
    let fiduciary = &parties[1];
    let blocks = blocks_for(&parties, &deliveries, 1);
    // The batch and the first order only.
    for block in &blocks[..4] {
        assert_eq!(step(fiduciary, block).await.unwrap(), Vec::<Vec<u8>>::new());
    }
    let waited = batching::sign_stalled(&fiduciary.ctx, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(waited.is_empty(), "not stalled yet");
    let stalled = batching::sign_stalled(&fiduciary.ctx, Duration::ZERO)
        .await
        .unwrap();
    let signed: Vec<(Kind, String)> = stalled
        .iter()
        .flat_map(|(_, blocks)| blocks.iter().map(|b| kind_and_order(b)))
        .collect();
    assert_eq!(signed, [(Kind::CommitmentSignature, reference(0))]);
}

#[tokio::test]
async fn a_bad_batch_signature_is_named_and_certifies_nothing() {
    let (parties, deliveries) = dealt_together().await;
    let mut batch_signatures = Vec::new();
    for fiduciary in 1..4 {
        for block in blocks_for(&parties, &deliveries, fiduciary) {
            batch_signatures.extend(step(&parties[fiduciary], &block).await.unwrap());
        }
    }
    assert_eq!(batch_signatures.len(), 3);
    let principal = &parties[0].ctx;
    let mut last = SignedEnvelope::decode(&batch_signatures[2]).unwrap();
    let cheat = last.envelope.sender;
    // A real signature of the third fiduciary's, over something else.
    last.signature = parties[3]
        .ctx
        .local
        .keys()
        .bls()
        .sign(b"something else")
        .to_bytes()
        .to_vec();
    for block in &batch_signatures[..2] {
        let signed = SignedEnvelope::decode(block).unwrap();
        let peer = principal.peer_of(&signed.envelope.sender).unwrap();
        batching::on_batch_signature(principal, peer, &signed)
            .await
            .unwrap();
    }
    let peer = principal.peer_of(&cheat).unwrap();
    let refused = batching::on_batch_signature(principal, peer, &last).await;
    assert!(
        matches!(&refused, Err(CustodyError::Invalid(reason)) if reason.contains(&cheat.to_string())),
        "{refused:?}"
    );
    for i in 0..ORDERS {
        let record = principal.own_record(&reference(i)).unwrap().unwrap();
        assert_eq!(record.state, OrderState::Dealt, "order {i}");
        assert_eq!(record.certificate, None);
    }
}
