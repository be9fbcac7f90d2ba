//! A key generated without a dealer, step by step among a principal and three fiduciaries
//! (see `rig`): the whole run to a commitment, a restart between its parts, a dealer that
//! deals a bad share, and a complaint against a good one.

use std::collections::VecDeque;

use dta_crypto::dkg;
use dta_crypto::secp256k1::{PublicKey, SecretKey};
use dta_protocol::dkg::{DkgAbort, DkgComplaint, DkgShare};
use dta_protocol::envelope::{Kind, SignedEnvelope};
use dta_protocol::misconduct::{Misconduct, Offence};
use dta_protocol::order::{Commitment, SecretBytes};
use serde_bytes::ByteBuf;

use super::record::round_name;
use super::rig::{Party, addressed, generated_key_order, parties};
use super::{
    Delivery, create_order, keygen, on_commitment, on_key_share, on_order_request, share_name,
};
use crate::context::RoleContext;
use crate::role::Role;
use crate::states::OrderState;

const REFERENCE: &str = "dkg-1";

/// The audit of the principal's log of [`REFERENCE`] from `head`, with what the principal
/// holds.
fn audit_from(
    principal: &Party,
    head: dta_protocol::Cid,
) -> Result<dta_protocol::audit::AuditReport, dta_protocol::audit::AuditError> {
    dta_protocol::audit::audit(
        REFERENCE,
        head,
        &[],
        |cid| principal.ctx.block(cid),
        |cid| principal.ctx.identity(cid),
    )
}

/// Changes a block on its way to a party (by index), or lets it through.
type Tamper<'a> = &'a mut dyn FnMut(&[Party], usize, Vec<u8>) -> Vec<u8>;

/// A principal (party 0) and three fiduciaries, and a 2-of-3 `milagro` order: its deliveries.
async fn ordered() -> (Vec<Party>, Vec<Delivery>) {
    let parties = parties(&["principal", "fiduciary-1", "fiduciary-2", "fiduciary-3"]).await;
    let prepared = create_order(&parties[0].ctx, generated_key_order(&parties, REFERENCE))
        .await
        .unwrap();
    (parties, prepared.deliveries)
}

/// Hands every delivery to its party's step, and what those steps send on, until nothing
/// moves; commitment signatures stop at the principal. `tamper` sees each block first.
async fn run(parties: &[Party], deliveries: Vec<Delivery>, tamper: Tamper<'_>) {
    let mut queue: VecDeque<(usize, Vec<u8>)> = addressed(parties, deliveries).collect();
    while let Some((to, block)) = queue.pop_front() {
        let block = tamper(parties, to, block);
        let party = &parties[to];
        let kind = SignedEnvelope::decode(&block).unwrap().envelope.kind;
        let (envelope, cid) = party.take(&block).await.unwrap();
        let ctx = &party.ctx;
        let sent: Vec<Delivery> = match (to, kind) {
            (0, Kind::DkgCommitment) => keygen::on_commitment(ctx, &envelope, cid).await.unwrap(),
            (0, Kind::KeyShare) => on_key_share(ctx, &envelope, cid).await.unwrap(),
            (0, Kind::DkgComplaint) => keygen::on_complaint(ctx, &envelope, cid).await.unwrap(),
            (0, _) => Vec::new(),
            (_, Kind::OrderRequest) => on_order_request(ctx, &envelope, cid)
                .await
                .unwrap()
                .into_iter()
                .collect(),
            (_, Kind::DkgRound) => keygen::on_round(ctx, &envelope, cid).await.unwrap(),
            (_, Kind::DkgShare) => keygen::on_share(ctx, &envelope, cid).await.unwrap(),
            (_, Kind::DkgAbort) => {
                keygen::on_abort(ctx, &envelope, cid).await.unwrap();
                Vec::new()
            }
            (_, Kind::Commitment) => on_commitment(ctx, &envelope, cid)
                .await
                .unwrap()
                .into_iter()
                .collect(),
            (_, kind) => panic!("unexpected {kind:?}"),
        };
        queue.extend(addressed(parties, sent));
    }
}

fn state(party: &Party, principal: &Party, role: Role) -> OrderState {
    party
        .ctx
        .record(role, &principal.cid(), REFERENCE)
        .unwrap()
        .unwrap()
        .state
}

fn kept(party: &Party, name: &str) -> bool {
    party
        .ctx
        .store
        .get(crate::store::Column::Keystore, name.as_bytes())
        .unwrap()
        .is_some()
}

#[tokio::test]
async fn three_fiduciaries_generate_a_key_any_two_rebuild_and_none_holds() {
    let (parties, deliveries) = ordered().await;
    run(&parties, deliveries, &mut |_, _, block| block).await;
    let principal = &parties[0];
    assert_eq!(
        state(principal, principal, Role::Principal),
        OrderState::Committed
    );
    let record = principal.ctx.own_record(REFERENCE).unwrap().unwrap();
    let commitment: Commitment = principal
        .ctx
        .stored_payload(&record.commitment.unwrap())
        .unwrap();
    let generated = commitment
        .generated
        .clone()
        .expect("generated without a dealer");
    assert_eq!(commitment.public_key, generated.group_key);
    assert_eq!(commitment.key_shares.len(), 3);
    let group_key = PublicKey::from_sec1(&generated.group_key).unwrap();

    let mut shares = Vec::new();
    for (index, fiduciary) in (1u16..).zip(&parties[1..]) {
        assert_eq!(
            state(fiduciary, principal, Role::Fiduciary),
            OrderState::Holding
        );
        // What it kept between the parts is gone; its share is kept, and matches its public
        // share in the commitment.
        assert!(!kept(fiduciary, &round_name(&principal.cid(), REFERENCE)));
        let secret = fiduciary
            .ctx
            .load_secret(&share_name(&principal.cid(), REFERENCE))
            .await
            .unwrap();
        let secret: [u8; 32] = secret.expose().try_into().unwrap();
        assert_eq!(
            SecretKey::from_bytes(&secret)
                .unwrap()
                .public_key()
                .to_compressed()
                .as_slice(),
            commitment.key_shares[usize::from(index) - 1].as_slice()
        );
        shares.push(dkg::KeyShare::from_secret(index, 2, &secret, &group_key).unwrap());
    }
    // Any two shares rebuild the committed key; one does not.
    for pair in [[0, 1], [0, 2], [1, 2]] {
        let chosen: Vec<dkg::KeyShare> = pair
            .iter()
            .map(|i| {
                let s = &shares[*i];
                dkg::KeyShare::from_secret(
                    s.participant(),
                    2,
                    s.secret_bytes().expose(),
                    &group_key,
                )
                .unwrap()
            })
            .collect();
        assert_eq!(dkg::rebuild(&chosen).unwrap().public_key(), group_key);
    }
    assert!(dkg::rebuild(&shares[..1]).is_err());
}

#[tokio::test]
async fn a_fiduciary_restarted_between_the_parts_finishes_from_what_it_kept() {
    let (parties, deliveries) = ordered().await;
    // Fiduciary 1 "restarts" after dealing its shares: its first round-arrival is handed to
    // it again, which must only send the same shares again.
    let mut rounds_seen = 0;
    let mut replay = Vec::new();
    run(&parties, deliveries, &mut |_, to, block| {
        let kind = SignedEnvelope::decode(&block).unwrap().envelope.kind;
        if to == 1 && kind == Kind::DkgRound {
            rounds_seen += 1;
            replay = block.clone();
        }
        block
    })
    .await;
    assert_eq!(rounds_seen, 1);
    let principal = &parties[0];
    let fiduciary = &parties[1];
    let (envelope, cid) = fiduciary.take(&replay).await.unwrap();
    let again = keygen::on_round(&fiduciary.ctx, &envelope, cid)
        .await
        .unwrap();
    // Its two shares and its key share, the very same envelopes.
    assert_eq!(again.len(), 3);
    let record = fiduciary
        .ctx
        .record(Role::Fiduciary, &principal.cid(), REFERENCE)
        .unwrap()
        .unwrap();
    let generation = record.key_generation.unwrap();
    let key_share = fiduciary.ctx.block(&generation.key_share.unwrap()).unwrap();
    assert!(
        again
            .iter()
            .any(|(_, blocks)| blocks == &vec![key_share.clone()])
    );
    assert_eq!(
        state(principal, principal, Role::Principal),
        OrderState::Committed
    );
}

/// Opens the share `dealer` dealt to `recipient` as the recipient, changes it, and seals it
/// again signed by the dealer: a dealer that cheats one recipient.
fn bad_share(parties: &[Party], block: &[u8]) -> Vec<u8> {
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
    let mut share: DkgShare = recipient.ctx.sealed(&envelope).unwrap();
    let mut bytes = share.share.expose().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    share.share = SecretBytes::new(bytes);
    dealer.sign(
        Kind::DkgShare,
        REFERENCE,
        signed.envelope.prev,
        None::<&DkgShare>,
        Some(&share),
        &[recipient],
    )
}

#[tokio::test]
async fn a_dealer_that_cheats_one_fiduciary_is_named_and_the_run_ends() {
    let (parties, deliveries) = ordered().await;
    let (dealer, victim) = (parties[2].cid(), parties[1].cid());
    run(&parties, deliveries, &mut |parties, to, block| {
        let signed = SignedEnvelope::decode(&block).unwrap();
        if to == 1 && signed.envelope.kind == Kind::DkgShare && signed.envelope.sender == dealer {
            return bad_share(parties, &block);
        }
        block
    })
    .await;
    let principal = &parties[0];
    assert_eq!(
        state(principal, principal, Role::Principal),
        OrderState::Aborted
    );
    let record = principal.ctx.own_record(REFERENCE).unwrap().unwrap();
    assert!(record.commitment.is_none());
    let abort: DkgAbort = principal.ctx.stored_payload(&record.head).unwrap();
    assert_eq!(abort.culprit, dealer);
    // The complaint in the log is the victim's, and anyone can check its evidence.
    let complaint_block = principal.ctx.block(&abort.complaint).unwrap();
    let complaint = principal.ctx.verify(&complaint_block).unwrap();
    assert_eq!(complaint.envelope().sender, victim);
    let complaint: DkgComplaint = RoleContext::payload(&complaint).unwrap();
    assert_eq!(complaint.dealer, 2);
    for fiduciary in &parties[1..] {
        assert_eq!(
            state(fiduciary, principal, Role::Fiduciary),
            OrderState::Aborted
        );
        assert!(!kept(fiduciary, &round_name(&principal.cid(), REFERENCE)));
    }
    // The victim kept no share of the key; the others may have finished but hold a share of
    // a key nobody will commit to.
    assert!(!kept(&parties[1], &share_name(&principal.cid(), REFERENCE)));
    // The audit judges the complaint again and convicts the dealer, the complaint its
    // evidence.
    let report = audit_from(principal, record.head).expect("the aborted log audits");
    assert_eq!(
        report.misconduct,
        vec![Misconduct {
            culprit: dealer,
            offence: Offence::BadKeyGenerationShare,
            evidence: abort.complaint,
        }]
    );
    // An abort that names someone else than its complaint convicts does not audit.
    let mut framed = abort.clone();
    framed.culprit = victim;
    let block = principal.publish(Kind::DkgAbort, REFERENCE, Some(abort.round), &framed);
    let (_, cid) = principal.take(&block).await.unwrap();
    let err = audit_from(principal, cid).unwrap_err();
    assert!(err.to_string().contains("its complaint convicts"), "{err}");
}

#[tokio::test]
async fn a_complaint_against_a_good_share_names_the_complainer() {
    let (parties, deliveries) = ordered().await;
    // Everything runs but fiduciary 1's key share, held back; it complains instead.
    let complainer = parties[1].cid();
    let mut held = None;
    run(&parties, deliveries, &mut |_, to, block| {
        let signed = SignedEnvelope::decode(&block).unwrap();
        if to == 0 && signed.envelope.kind == Kind::KeyShare && signed.envelope.sender == complainer
        {
            held = Some(block.clone());
            // Handed on as a share release would be: to nobody. The principal gets a
            // harmless repeat of a commitment instead.
            return parties[0]
                .ctx
                .block(
                    &parties[0]
                        .ctx
                        .own_record(REFERENCE)
                        .unwrap()
                        .unwrap()
                        .shares[&1],
                )
                .unwrap();
        }
        block
    })
    .await;
    assert!(held.is_some());
    let principal = &parties[0];
    assert_eq!(
        state(principal, principal, Role::Principal),
        OrderState::Generating
    );
    let fiduciary = &parties[1];
    let record = fiduciary
        .ctx
        .record(Role::Fiduciary, &principal.cid(), REFERENCE)
        .unwrap()
        .unwrap();
    let generation = record.key_generation.unwrap();
    let round = generation.round.unwrap();
    let good = generation.received[&2];
    let share_envelope = fiduciary.ctx.verified_block(&good).unwrap();
    let complaint = DkgComplaint {
        round,
        dealer: 2,
        share: ByteBuf::from(fiduciary.ctx.block(&good).unwrap()),
        content_key: share_envelope
            .content_key(&fiduciary.ctx.local)
            .unwrap()
            .expose()
            .to_vec(),
    };
    // Complaints that do not hold are refused and change nothing: a content key that opens
    // nothing, and a share that was dealt to someone else.
    let mut forged = complaint.clone();
    forged.content_key = vec![0; 32];
    for (maker, bad) in [(fiduciary, &forged), (&parties[3], &complaint)] {
        let block = maker.publish(Kind::DkgComplaint, REFERENCE, Some(round), bad);
        let (envelope, cid) = principal.take(&block).await.unwrap();
        assert!(
            keygen::on_complaint(&principal.ctx, &envelope, cid)
                .await
                .is_err()
        );
        assert_eq!(
            state(principal, principal, Role::Principal),
            OrderState::Generating
        );
    }
    let block = fiduciary.publish(Kind::DkgComplaint, REFERENCE, Some(round), &complaint);
    let (envelope, cid) = principal.take(&block).await.unwrap();
    keygen::on_complaint(&principal.ctx, &envelope, cid)
        .await
        .unwrap();
    let record = principal.ctx.own_record(REFERENCE).unwrap().unwrap();
    assert_eq!(record.state, OrderState::Aborted);
    let abort: DkgAbort = principal.ctx.stored_payload(&record.head).unwrap();
    assert_eq!(abort.culprit, complainer);
    let report = audit_from(principal, record.head).expect("the aborted log audits");
    assert_eq!(
        report.misconduct,
        vec![Misconduct {
            culprit: complainer,
            offence: Offence::FalseComplaint,
            evidence: abort.complaint,
        }]
    );
    // The run has ended: a late complaint is no step of it.
    let (envelope, cid) = principal.take(&block).await.unwrap();
    assert_eq!(
        keygen::on_complaint(&principal.ctx, &envelope, cid).await,
        Ok(Vec::new())
    );
}

#[tokio::test]
async fn the_audit_checks_the_key_against_its_generation() {
    let (parties, deliveries) = ordered().await;
    run(&parties, deliveries, &mut |_, _, block| block).await;
    let principal = &parties[0];
    let record = principal.ctx.own_record(REFERENCE).unwrap().unwrap();
    let audit = |head| audit_from(principal, head);
    let report = audit(record.commitment.unwrap()).expect("the honest log audits");
    assert!(
        report
            .envelopes
            .iter()
            .any(|(_, kind)| *kind == Kind::DkgRound)
    );
    // A commitment the principal signed over other public shares, or another group key, is
    // caught: neither follows from the fiduciaries' signed commitments in the round.
    let honest: Commitment = principal
        .ctx
        .stored_payload(&record.commitment.unwrap())
        .unwrap();
    let round = honest.generated.clone().unwrap().round;
    let stranger = ByteBuf::from(SecretKey::random().public_key().to_compressed().to_vec());
    let mut other_shares = honest.clone();
    other_shares.key_shares[0] = stranger.clone();
    let mut other_key = honest.clone();
    other_key.public_key = stranger.clone();
    other_key.generated.as_mut().unwrap().group_key = stranger;
    for forged in [other_shares, other_key] {
        let block = principal.publish(Kind::Commitment, REFERENCE, Some(round), &forged);
        let (_, cid) = principal.take(&block).await.unwrap();
        let err = audit(cid).unwrap_err();
        assert!(
            matches!(err, dta_protocol::audit::AuditError::KeyGeneration { .. }),
            "{err}"
        );
    }
}
