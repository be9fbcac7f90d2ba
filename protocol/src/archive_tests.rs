use std::collections::BTreeMap;

use dta_crypto::Secret;
use serde_bytes::ByteBuf;

use super::*;
use crate::block::Block;
use crate::car;
use crate::envelope::Draft;
use crate::identity::LocalIdentity;
use crate::order::{
    Certificate, Commitment, OrderRequest, Receipt, ReleasePolicy, ReleaseRequest, custody_message,
};

const ORDER: &str = "vault-1";

fn node(name: &str, seed: u8) -> LocalIdentity {
    LocalIdentity::create(&Secret::new([seed; 32]), name, name.as_bytes(), 1).unwrap()
}

const T0: u64 = 1_700_000_000_000;

fn envelope(
    sender: &LocalIdentity,
    kind: Kind,
    prev: Option<Cid>,
    public: Option<Vec<u8>>,
) -> Block {
    envelope_at(sender, kind, prev, public, T0)
}

fn envelope_at(
    sender: &LocalIdentity,
    kind: Kind,
    prev: Option<Cid>,
    public: Option<Vec<u8>>,
    timestamp: u64,
) -> Block {
    SignedEnvelope::create(
        sender,
        Draft {
            kind,
            order: ORDER,
            prev,
            timestamp,
            public,
            secret: None,
            recipients: &[],
        },
    )
    .unwrap()
    .to_block()
    .unwrap()
}

fn cbor<T: serde::Serialize>(value: &T) -> Option<Vec<u8>> {
    Some(crate::dagcbor::encode(value).unwrap())
}

/// A whole released order: the chain, two commitment signatures hanging off the commitment,
/// and every identity document. Returns the archive's blocks, head first, and the head.
fn released_order() -> (Vec<(Cid, Vec<u8>)>, Cid) {
    released_order_with(|_| ReleasePolicy::default(), &[], 0)
}

/// [`released_order`] under the policy `policy_of` makes of three approvers' CIDs, with
/// approvals or vetoes by those approvers (index, kind), and the receipt `receipt_after_ms`
/// after the release request.
fn released_order_with(
    policy_of: impl Fn(&[Cid]) -> ReleasePolicy,
    votes: &[(usize, Kind)],
    receipt_after_ms: u64,
) -> (Vec<(Cid, Vec<u8>)>, Cid) {
    let approvers = [
        node("approver-a", 5),
        node("approver-b", 6),
        node("approver-c", 7),
    ];
    let approver_cids: Vec<Cid> = approvers.iter().map(LocalIdentity::cid).collect();
    let principal = node("principal", 1);
    let fiduciaries = [node("fiduciary-1", 2), node("fiduciary-2", 3)];
    let beneficiary = node("beneficiary", 4);
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
            policy: policy_of(&approver_cids),
            input: BTreeMap::new(),
        }),
    );
    let commitment = envelope(
        &principal,
        Kind::Commitment,
        Some(request.cid()),
        cbor(&Commitment {
            order: request.cid(),
            plugin: "safeguardsecret".into(),
            threshold: 2,
            fiduciaries: fiduciaries.iter().map(LocalIdentity::cid).collect(),
            feldman: vec![],
            key_shares: vec![],
            beneficiary_share: None,
            public_key: ByteBuf::from(vec![1; 48]),
            output: BTreeMap::new(),
            generated: None,
            reshared: None,
        }),
    );
    let signatures: Vec<_> = fiduciaries
        .iter()
        .map(|f| {
            (
                f.identity(),
                f.keys().bls().sign(&custody_message(&commitment.cid())),
            )
        })
        .collect();
    let signature_blocks: Vec<Block> = signatures
        .iter()
        .map(|(f, s)| {
            SignedEnvelope::custody_signature(
                f.cid(),
                ORDER,
                commitment.cid(),
                s.to_bytes().to_vec(),
            )
            .unwrap()
            .to_block()
            .unwrap()
        })
        .collect();
    let certificate = envelope(
        &principal,
        Kind::Certificate,
        Some(commitment.cid()),
        cbor(&Certificate::aggregate(commitment.cid(), &signatures).unwrap()),
    );
    let release = envelope(
        &principal,
        Kind::ReleaseRequest,
        Some(certificate.cid()),
        cbor(&ReleaseRequest {
            order: request.cid(),
            certificate: certificate.cid(),
            beneficiary: beneficiary.cid(),
            sequence: 1,
        }),
    );
    let receipt = envelope_at(
        &beneficiary,
        Kind::Receipt,
        Some(release.cid()),
        cbor(&Receipt {
            release: release.cid(),
            shares_from: fiduciaries.iter().map(LocalIdentity::cid).collect(),
            public_key: ByteBuf::from(vec![1; 48]),
            votes: Vec::new(),
            refused: Vec::new(),
            equivocations: Vec::new(),
        }),
        T0 + receipt_after_ms,
    );
    let vote_blocks: Vec<Block> = votes
        .iter()
        .map(|(index, kind)| {
            envelope(
                &approvers[*index],
                *kind,
                Some(release.cid()),
                cbor(&crate::policy::Approval {
                    order: request.cid(),
                    request: release.cid(),
                }),
            )
        })
        .collect();
    let head = receipt.cid();
    let mut blocks: Vec<(Cid, Vec<u8>)> = [receipt, release, certificate, commitment, request]
        .into_iter()
        .chain(signature_blocks)
        .chain(vote_blocks)
        .map(|b| (b.cid(), b.into_bytes()))
        .collect();
    let voters = votes.iter().map(|(index, _)| &approvers[*index]);
    let mut identities = vec![&principal, &fiduciaries[0], &fiduciaries[1], &beneficiary];
    for voter in voters {
        if !identities.iter().any(|i| i.cid() == voter.cid()) {
            identities.push(voter);
        }
    }
    for identity in identities {
        let document = Block::encode(identity.identity().document()).unwrap();
        blocks.push((document.cid(), document.into_bytes()));
    }
    (blocks, head)
}

fn read(blocks: &[(Cid, Vec<u8>)], head: Cid) -> Car {
    car::read(&car::write(&[head], blocks).unwrap()).unwrap()
}

#[test]
fn a_whole_order_audits_from_its_archive_alone() {
    let (blocks, head) = released_order();
    let report = audit(&read(&blocks, head), None, Some(ORDER)).unwrap();
    assert_eq!(report.reference, ORDER);
    assert_eq!(report.head, head);
    assert_eq!(report.blocks, 11);
    assert_eq!(report.identities, 4);
    assert_eq!(report.chain.envelopes.len(), 5);
    assert!(report.chain.certified);
    assert_eq!(report.chain.receipts, 1);
    assert_eq!(report.attached.len(), 2);
    assert!(
        report
            .attached
            .iter()
            .all(|(_, k)| *k == Kind::CommitmentSignature)
    );
    assert_eq!(report.signatures(), 7);
}

#[test]
fn another_order_is_refused() {
    let (blocks, head) = released_order();
    assert!(matches!(
        audit(&read(&blocks, head), None, Some("vault-2")),
        Err(ArchiveError::OtherOrder { .. })
    ));
}

#[test]
fn a_missing_identity_names_the_envelope_that_needs_it() {
    let (mut blocks, head) = released_order();
    let beneficiary = blocks.pop().unwrap().0;
    let err = audit(&read(&blocks, head), None, None).unwrap_err();
    assert_eq!(
        err,
        ArchiveError::Audit(AuditError::UnknownSender {
            envelope: head.to_string(),
            sender: beneficiary.to_string(),
        })
    );
}

#[test]
fn a_forged_attached_envelope_is_named() {
    let (mut blocks, head) = released_order();
    // The second fiduciary's signature, claimed by the first: a valid block, a false signature.
    let forged_at = 6;
    let mut forged = SignedEnvelope::decode(&blocks[forged_at].1).unwrap();
    let other = SignedEnvelope::decode(&blocks[5].1).unwrap();
    forged.envelope.sender = other.envelope.sender;
    let block = forged.to_block().unwrap();
    blocks[forged_at] = (block.cid(), block.into_bytes());
    let err = audit(&read(&blocks, head), None, None).unwrap_err();
    assert!(
        matches!(&err, ArchiveError::Audit(AuditError::BadEnvelope { envelope, .. }) if *envelope == blocks[forged_at].0.to_string()),
        "{err}"
    );
}

#[test]
fn a_block_outside_the_log_is_refused() {
    let (mut blocks, head) = released_order();
    let stray = Block::raw(b"something else".to_vec());
    blocks.push((stray.cid(), stray.bytes().to_vec()));
    assert_eq!(
        audit(&read(&blocks, head), None, None).unwrap_err(),
        ArchiveError::Stray {
            cid: stray.cid().to_string(),
            reason: "not a DAG-CBOR block".into(),
        }
    );
}

#[test]
fn a_damaged_archive_fails_reading_and_names_the_block() {
    let (blocks, head) = released_order();
    let mut bytes = car::write(&[head], &blocks).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 1;
    let (cid, _) = blocks.last().unwrap();
    assert_eq!(
        car::read(&bytes),
        Err(car::CarError::Mismatch(cid.to_string()))
    );
}

/// Two of three approvers, a 60 s delay (above the clocks' 30 s tolerance, so that the audit
/// can tell), and a veto group of the same three needing two.
fn guarded(approvers: &[Cid]) -> ReleasePolicy {
    ReleasePolicy {
        groups: vec![crate::policy::ApproverGroup {
            name: "ops".into(),
            members: approvers.to_vec(),
            count: 2,
        }],
        delay_ms: Some(60_000),
        veto: Some(crate::policy::ApproverGroup {
            name: "board".into(),
            members: approvers.to_vec(),
            count: 2,
        }),
        ..ReleasePolicy::default()
    }
}

#[test]
fn a_release_that_kept_its_policy_audits_and_one_that_broke_it_fails_naming_the_rule() {
    let approved = [(0, Kind::Approval), (1, Kind::Approval)];
    let (blocks, head) = released_order_with(guarded, &approved, 60_000);
    let report = audit(&read(&blocks, head), None, Some(ORDER)).unwrap();
    assert_eq!(report.chain.policies, 1);
    assert_eq!(
        report
            .attached
            .iter()
            .filter(|(_, k)| *k == Kind::Approval)
            .count(),
        2
    );
    // One approval short: the audit names the group.
    let (blocks, head) = released_order_with(guarded, &approved[..1], 60_000);
    let failed = audit(&read(&blocks, head), None, Some(ORDER)).unwrap_err();
    assert!(
        failed.to_string().contains("ops: 1 of 2 approvals"),
        "{failed}"
    );
    // Released before the delay could have passed (give or take the clocks' tolerance).
    let (blocks, head) = released_order_with(guarded, &approved, 0);
    let failed = audit(&read(&blocks, head), None, Some(ORDER)).unwrap_err();
    assert!(failed.to_string().contains("the delay ends"), "{failed}");
    // Vetoed within the delay, released anyway.
    let vetoed = [
        (0, Kind::Approval),
        (1, Kind::Approval),
        (1, Kind::Veto),
        (2, Kind::Veto),
    ];
    let (blocks, head) = released_order_with(guarded, &vetoed, 60_000);
    let failed = audit(&read(&blocks, head), None, Some(ORDER)).unwrap_err();
    assert!(failed.to_string().contains("vetoed by"), "{failed}");
}
