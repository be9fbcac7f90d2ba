//! A receipt's evidence, judged by the audit: a refused share off the commitment convicts its
//! fiduciary, one that fits convicts the receipt of a false accusation; two share releases
//! of one fiduciary for the release convict it of equivocation, two of two fiduciaries
//! convict the receipt. A cancel on the chain counts only from the order's principal.

use std::collections::BTreeMap;

use dta_crypto::Secret;
use dta_crypto::threshold::{self, SecretScalar, Share};
use serde_bytes::ByteBuf;

use super::*;
use crate::envelope::Draft;
use crate::identity::LocalIdentity;
use crate::order::{
    Certificate, Commitment, Equivocation, OrderRequest, Receipt, RefusedShare, ReleasePolicy,
    ReleaseRequest, SecretBytes, ShareRelease, custody_message,
};

const ORDER: &str = "accused-1";

fn node(name: &str, seed: u8) -> LocalIdentity {
    LocalIdentity::create(&Secret::new([seed; 32]), name, name.as_bytes(), 1).unwrap()
}

fn envelope(
    sender: &LocalIdentity,
    kind: Kind,
    prev: Option<Cid>,
    public: Option<Vec<u8>>,
    sealed: Option<(&[u8], &VerifiedIdentity)>,
) -> VerifiedEnvelope {
    let recipients: Vec<&VerifiedIdentity> = sealed.iter().map(|(_, to)| *to).collect();
    VerifiedEnvelope::create(
        sender,
        Draft {
            kind,
            order: ORDER,
            prev,
            timestamp: 1_700_000_000_000,
            public,
            secret: sealed.map(|(plain, _)| plain),
            recipients: &recipients,
        },
    )
    .unwrap()
}

fn cbor<T: serde::Serialize>(value: &T) -> Option<Vec<u8>> {
    Some(crate::dagcbor::encode(value).unwrap())
}

fn cid_of(envelope: &VerifiedEnvelope) -> Cid {
    envelope.signed().to_block().unwrap().cid()
}

/// What the receipt accuses fiduciary 2's share release of.
enum Accused {
    /// Not fitting the commitment.
    Refused,
    /// Being one of two answers, the other sealed by fiduciary `second_by` (0 or 1).
    Equivocation { second_by: usize },
}

/// A certified and released 2-of-2 order of a dealt secret whose beneficiary accused the share
/// release fiduciary 2 sealed to it (`share_of_2` as its value): the audit's outcome.
fn audit_with_refused(share_of_2: impl Fn(&Share) -> [u8; 32]) -> Result<AuditReport, AuditError> {
    audit_with(share_of_2, Accused::Refused)
}

fn audit_with(
    share_of_2: impl Fn(&Share) -> [u8; 32],
    accused: Accused,
) -> Result<AuditReport, AuditError> {
    audit_certified(share_of_2, accused, Certified::Alone)
}

/// How the order's fiduciaries certified it.
enum Certified {
    /// Each signed its commitment.
    Alone,
    /// Each signed the root of a batch of three orders, this one second; the certificate
    /// carries the proof of leaf `proof_of`.
    InBatch { proof_of: usize },
}

fn audit_certified(
    share_of_2: impl Fn(&Share) -> [u8; 32],
    accused: Accused,
    certified: Certified,
) -> Result<AuditReport, AuditError> {
    let principal = node("principal", 1);
    let fiduciaries = [node("fiduciary-1", 2), node("fiduciary-2", 3)];
    let beneficiary = node("beneficiary", 4);
    let secret = SecretScalar::from_bytes(&[9; 32]).unwrap();
    let (shares, feldman) = threshold::split(&secret, 2, 2).unwrap();
    let request = envelope(
        &principal,
        Kind::OrderRequest,
        None,
        cbor(&OrderRequest {
            plugin: "safeguardsecret".into(),
            principal: principal.cid(),
            fiduciaries: fiduciaries.iter().map(LocalIdentity::cid).collect(),
            threshold: 2,
            beneficiary: Some(beneficiary.cid()),
            policy: ReleasePolicy::default(),
            input: BTreeMap::new(),
        }),
        None,
    );
    let commitment = envelope(
        &principal,
        Kind::Commitment,
        Some(cid_of(&request)),
        cbor(&Commitment {
            order: cid_of(&request),
            plugin: "safeguardsecret".into(),
            threshold: 2,
            fiduciaries: fiduciaries.iter().map(LocalIdentity::cid).collect(),
            feldman: feldman
                .to_bytes()
                .iter()
                .map(|point| ByteBuf::from(point.to_vec()))
                .collect(),
            key_shares: vec![],
            beneficiary_share: None,
            public_key: ByteBuf::from(feldman.group_public_key().to_bytes().to_vec()),
            output: BTreeMap::new(),
            generated: None,
            reshared: None,
        }),
        None,
    );
    let signatures: Vec<_> = fiduciaries
        .iter()
        .map(|f| {
            (
                f.identity(),
                f.keys().bls().sign(&custody_message(&cid_of(&commitment))),
            )
        })
        .collect();
    let certified = match certified {
        Certified::Alone => Certificate::aggregate(cid_of(&commitment), &signatures).unwrap(),
        Certified::InBatch { proof_of } => {
            let others = |i: u8| crate::block::Block::raw(vec![i; 8]).cid();
            let leaves = [others(1), cid_of(&commitment), others(2)];
            let tree = crate::batch::BatchTree::new(&leaves).unwrap();
            let signed: Vec<_> = fiduciaries
                .iter()
                .map(|f| {
                    (
                        f.identity(),
                        f.keys().bls().sign(&tree.message()).to_bytes(),
                    )
                })
                .collect();
            let encoded: Vec<_> = signed.iter().map(|(i, s)| (*i, &s[..])).collect();
            let (aggregate, _) = Certificate::aggregate_batch_unchecked(&tree, &encoded).unwrap();
            let proof = tree.inclusion(proof_of).unwrap();
            Certificate {
                commitment: cid_of(&commitment),
                signers: fiduciaries.iter().map(LocalIdentity::cid).collect(),
                signature: aggregate,
                batch: Some(proof),
            }
        }
    };
    let certificate = envelope(
        &principal,
        Kind::Certificate,
        Some(cid_of(&commitment)),
        cbor(&certified),
        None,
    );
    let release = envelope(
        &principal,
        Kind::ReleaseRequest,
        Some(cid_of(&certificate)),
        cbor(&ReleaseRequest {
            order: cid_of(&request),
            certificate: cid_of(&certificate),
            beneficiary: beneficiary.cid(),
            sequence: 1,
        }),
        None,
    );
    let released = crate::dagcbor::encode(&ShareRelease {
        release: cid_of(&release),
        index: 2,
        share: SecretBytes::new(share_of_2(&shares[1]).to_vec()),
    })
    .unwrap();
    let share = envelope(
        &fiduciaries[1],
        Kind::ShareRelease,
        Some(cid_of(&release)),
        None,
        Some((&released, beneficiary.identity())),
    );
    let second_by = match accused {
        Accused::Refused => 1,
        Accused::Equivocation { second_by } => second_by,
    };
    // Sealed anew: another envelope even from the same fiduciary.
    let second = envelope(
        &fiduciaries[second_by],
        Kind::ShareRelease,
        Some(cid_of(&release)),
        None,
        Some((&released, beneficiary.identity())),
    );
    let (refused, equivocations) = match accused {
        Accused::Refused => (
            vec![RefusedShare {
                share: cid_of(&share),
                content_key: ByteBuf::from(
                    share.content_key(&beneficiary).unwrap().expose().to_vec(),
                ),
            }],
            Vec::new(),
        ),
        Accused::Equivocation { .. } => (
            Vec::new(),
            vec![Equivocation {
                first: cid_of(&share),
                second: cid_of(&second),
            }],
        ),
    };
    let receipt = envelope(
        &beneficiary,
        Kind::Receipt,
        Some(cid_of(&release)),
        cbor(&Receipt {
            release: cid_of(&release),
            shares_from: vec![fiduciaries[0].cid()],
            public_key: ByteBuf::from(feldman.group_public_key().to_bytes().to_vec()),
            votes: Vec::new(),
            refused,
            equivocations,
        }),
        None,
    );
    let blocks: BTreeMap<Cid, Vec<u8>> = [
        &request,
        &commitment,
        &certificate,
        &release,
        &share,
        &second,
        &receipt,
    ]
    .into_iter()
    .map(|e| {
        let block = e.signed().to_block().unwrap();
        (block.cid(), block.into_bytes())
    })
    .collect();
    let identities: Vec<VerifiedIdentity> = [&principal, &beneficiary]
        .into_iter()
        .chain(&fiduciaries)
        .map(|n| n.identity().clone())
        .collect();
    audit(
        ORDER,
        cid_of(&receipt),
        &[],
        |cid| blocks.get(cid).cloned(),
        |cid| identities.iter().find(|i| i.cid() == *cid).cloned(),
    )
}

#[test]
fn a_refused_share_off_the_commitment_convicts_its_fiduciary() {
    let report = audit_with_refused(|share| {
        let mut value = *share.value_bytes().expose();
        value[31] ^= 1;
        value
    })
    .unwrap();
    let fiduciary_2 = node("fiduciary-2", 3).cid();
    assert_eq!(report.misconduct.len(), 1, "{report:?}");
    assert_eq!(report.misconduct[0].culprit, fiduciary_2);
    assert_eq!(report.misconduct[0].offence, Offence::WrongShare);
}

#[test]
fn a_refused_share_that_fits_is_a_false_accusation() {
    let err = audit_with_refused(|share| *share.value_bytes().expose()).unwrap_err();
    assert!(
        matches!(&err, AuditError::Release { reason, .. } if reason.contains("accuses falsely")),
        "{err}"
    );
}

#[test]
fn two_answers_of_one_fiduciary_to_a_release_convict_it_of_equivocation() {
    let report = audit_with(
        |share| *share.value_bytes().expose(),
        Accused::Equivocation { second_by: 1 },
    )
    .unwrap();
    let fiduciary_2 = node("fiduciary-2", 3).cid();
    assert_eq!(report.misconduct.len(), 1, "{report:?}");
    assert_eq!(report.misconduct[0].culprit, fiduciary_2);
    assert_eq!(report.misconduct[0].offence, Offence::Equivocation);
}

#[test]
fn answers_of_two_fiduciaries_are_no_equivocation() {
    let err = audit_with(
        |share| *share.value_bytes().expose(),
        Accused::Equivocation { second_by: 0 },
    )
    .unwrap_err();
    assert!(
        matches!(&err, AuditError::Release { reason, .. } if reason.contains("two senders")),
        "{err}"
    );
}

#[test]
fn only_the_orders_principal_cancels_it() {
    let principal = node("principal", 1);
    let fiduciary = node("fiduciary-1", 2);
    let request = envelope(
        &principal,
        Kind::OrderRequest,
        None,
        cbor(&OrderRequest {
            plugin: "safeguardsecret".into(),
            principal: principal.cid(),
            fiduciaries: vec![fiduciary.cid()],
            threshold: 1,
            beneficiary: None,
            policy: ReleasePolicy::default(),
            input: BTreeMap::new(),
        }),
        None,
    );
    let identities = [principal.identity().clone(), fiduciary.identity().clone()];
    for (sender, passes) in [(&principal, true), (&fiduciary, false)] {
        let cancel = envelope(
            sender,
            Kind::OrderCancel,
            Some(cid_of(&request)),
            cbor(&crate::order::OrderCancel {
                order: cid_of(&request),
            }),
            None,
        );
        let blocks: BTreeMap<Cid, Vec<u8>> = [&request, &cancel]
            .into_iter()
            .map(|e| {
                let block = e.signed().to_block().unwrap();
                (block.cid(), block.into_bytes())
            })
            .collect();
        let audited = audit(
            ORDER,
            cid_of(&cancel),
            &[],
            |cid| blocks.get(cid).cloned(),
            |cid| identities.iter().find(|i| i.cid() == *cid).cloned(),
        );
        match audited {
            Ok(_) => assert!(passes, "a cancel by a fiduciary passed"),
            Err(AuditError::BadEnvelope { reason, .. }) => {
                assert!(!passes && reason.contains("principal"), "{reason}");
            }
            Err(other) => panic!("{other}"),
        }
    }
}

#[test]
fn an_order_certified_in_a_batch_audits_with_its_proof_and_not_with_another() {
    // A refused share off the commitment: an audit that passes, with one conviction.
    let wrong = |share: &Share| {
        let mut value = *share.value_bytes().expose();
        value[31] ^= 1;
        value
    };
    let report = audit_certified(wrong, Accused::Refused, Certified::InBatch { proof_of: 1 });
    assert!(report.is_ok_and(|r| r.certified));
    let elsewhere = audit_certified(wrong, Accused::Refused, Certified::InBatch { proof_of: 2 });
    assert!(
        matches!(elsewhere, Err(AuditError::Certificate { .. })),
        "{elsewhere:?}"
    );
}
