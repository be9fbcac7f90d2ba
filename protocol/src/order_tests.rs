use dta_crypto::Secret;

use super::*;
use crate::block::Block;
use crate::dagcbor::{self, Limits};
use crate::identity::LocalIdentity;

fn fiduciaries(n: u8) -> Vec<LocalIdentity> {
    (0..n)
        .map(|i| {
            LocalIdentity::create(&Secret::new([i + 1; 32]), &format!("f{i}"), &[i], 0).unwrap()
        })
        .collect()
}

fn commitment_cid() -> Cid {
    Block::raw(b"a commitment".to_vec()).cid()
}

#[test]
fn certificate_of_n_fiduciaries_verifies_in_one_check() {
    let nodes = fiduciaries(5);
    let commitment = commitment_cid();
    let message = custody_message(&commitment);
    let signatures: Vec<(&VerifiedIdentity, bls::Signature)> = nodes
        .iter()
        .map(|n| (n.identity(), n.keys().bls().sign(&message)))
        .collect();
    let certificate = Certificate::aggregate(commitment, &signatures).unwrap();
    let signers: Vec<&VerifiedIdentity> = nodes.iter().map(LocalIdentity::identity).collect();
    certificate.verify(commitment, &signers).unwrap();

    // It survives encoding as a block.
    let block = Block::encode(&certificate).unwrap();
    let decoded: Certificate = block.decode(Limits::default()).unwrap();
    decoded.verify(commitment, &signers).unwrap();

    assert_eq!(
        certificate.verify(commitment, &signers[1..]),
        Err(CertificateError::Signers)
    );
    let other = Block::raw(b"other".to_vec()).cid();
    assert_eq!(
        certificate.verify(other, &signers),
        Err(CertificateError::Commitment(commitment.to_string()))
    );
    let mut forged = certificate.clone();
    forged.signature = ByteBuf::from(nodes[0].keys().bls().sign(&message).to_bytes().to_vec());
    assert_eq!(
        forged.verify(commitment, &signers),
        Err(CertificateError::Signature)
    );
}

#[test]
fn a_wrong_fiduciary_signature_is_named() {
    let nodes = fiduciaries(3);
    let commitment = commitment_cid();
    let message = custody_message(&commitment);
    let mut signatures: Vec<(&VerifiedIdentity, bls::Signature)> = nodes
        .iter()
        .map(|n| (n.identity(), n.keys().bls().sign(&message)))
        .collect();
    signatures[1].1 = nodes[1].keys().bls().sign(b"something else");
    assert_eq!(
        Certificate::aggregate(commitment, &signatures),
        Err(CertificateError::SignerSignature(
            nodes[1].cid().to_string()
        ))
    );
}

#[test]
fn payloads_round_trip_and_secrets_stay_redacted() {
    let deal = ShareDeal {
        order: commitment_cid(),
        index: 2,
        share: SecretBytes::new(vec![0xab; 32]),
        commitments: vec![ByteBuf::from(vec![1u8; 48])],
    };
    let bytes = dagcbor::encode(&deal).unwrap();
    let back: ShareDeal = dagcbor::decode(&bytes, Limits::default()).unwrap();
    assert_eq!(back, deal);
    let shown = format!("{deal:?}");
    assert!(shown.contains("redacted") && !shown.contains("abab"));

    let request = OrderRequest {
        plugin: "safeguardsecret".into(),
        principal: commitment_cid(),
        fiduciaries: vec![commitment_cid()],
        threshold: 1,
        beneficiary: None,
        policy: ReleasePolicy::default(),
        input: [("coin".to_owned(), "1".to_owned())].into(),
    };
    let back: OrderRequest =
        dagcbor::decode(&dagcbor::encode(&request).unwrap(), Limits::default()).unwrap();
    assert_eq!(back, request);
    assert_eq!(request.policy.max_releases, 1);
}

#[test]
fn unchecked_signatures_aggregate_with_one_check() {
    let nodes = fiduciaries(3);
    let commitment = commitment_cid();
    let message = custody_message(&commitment);
    let signatures: Vec<(&VerifiedIdentity, bls::Signature)> = nodes
        .iter()
        .map(|n| (n.identity(), n.keys().bls().sign(&message)))
        .collect();
    let mut encoded: Vec<(&VerifiedIdentity, [u8; bls::SIGNATURE_LEN])> =
        signatures.iter().map(|(i, s)| (*i, s.to_bytes())).collect();
    let unchecked = |encoded: &[(&'_ VerifiedIdentity, [u8; bls::SIGNATURE_LEN])]| {
        let refs: Vec<(&VerifiedIdentity, &[u8])> =
            encoded.iter().map(|(i, s)| (*i, &s[..])).collect();
        Certificate::aggregate_unchecked(commitment, &refs)
            .and_then(|(certificate, check)| check.verify().map(|()| certificate))
    };
    assert_eq!(
        unchecked(&encoded).unwrap(),
        Certificate::aggregate(commitment, &signatures).unwrap()
    );
    // Prepared before the signatures, the check of the whole decides the same way.
    let signers: Vec<&VerifiedIdentity> = nodes.iter().map(LocalIdentity::identity).collect();
    let prepared = PreparedCertificateCheck::new(commitment, &signers).unwrap();
    let check_of = |encoded: &[(&'_ VerifiedIdentity, [u8; bls::SIGNATURE_LEN])]| {
        let refs: Vec<(&VerifiedIdentity, &[u8])> =
            encoded.iter().map(|(i, s)| (*i, &s[..])).collect();
        Certificate::aggregate_unchecked(commitment, &refs).map(|(_, check)| check)
    };
    assert_eq!(prepared.verify(&check_of(&encoded).unwrap()), Ok(()));
    // Prepared for other signers or another commitment, it refuses the check.
    let other_commitment = Block::raw(b"another commitment".to_vec()).cid();
    assert_eq!(
        PreparedCertificateCheck::new(other_commitment, &signers)
            .unwrap()
            .verify(&check_of(&encoded).unwrap()),
        Err(CertificateError::Signers)
    );
    assert_eq!(
        PreparedCertificateCheck::new(commitment, &signers[1..])
            .unwrap()
            .verify(&check_of(&encoded).unwrap()),
        Err(CertificateError::Signers)
    );
    // A bad signature slipped in is still caught by the check of the whole.
    encoded[2].1 = nodes[2].keys().bls().sign(b"not the commitment").to_bytes();
    assert_eq!(unchecked(&encoded), Err(CertificateError::Signature));
    assert_eq!(
        prepared.verify(&check_of(&encoded).unwrap()),
        Err(CertificateError::Signature)
    );
    // So is one that is not a point at all.
    encoded[2].1 = [0xff; bls::SIGNATURE_LEN];
    assert_eq!(unchecked(&encoded), Err(CertificateError::Signature));
}

#[test]
fn certificates_of_several_orders_check_in_one_batch() {
    let nodes = fiduciaries(3);
    let signers: Vec<&VerifiedIdentity> = nodes.iter().map(LocalIdentity::identity).collect();
    let certify = |commitment: Cid, message: &[u8]| {
        let signatures: Vec<(&VerifiedIdentity, bls::Signature)> = nodes
            .iter()
            .map(|n| (n.identity(), n.keys().bls().sign(message)))
            .collect();
        Certificate::aggregate_unchecked(
            commitment,
            &signatures
                .iter()
                .map(|(i, s)| (*i, s.to_bytes()))
                .collect::<Vec<_>>()
                .iter()
                .map(|(i, s)| (*i, &s[..]))
                .collect::<Vec<_>>(),
        )
        .map(|(certificate, _)| certificate)
    };
    let commitments: Vec<Cid> = (0..3u8).map(|i| Block::raw(vec![i; 8]).cid()).collect();
    let checks: Vec<CertificateCheck> = commitments
        .iter()
        .map(|c| {
            certify(*c, &custody_message(c))
                .unwrap()
                .prepare_check(*c, &signers)
                .unwrap()
        })
        .collect();
    let refs: Vec<&CertificateCheck> = checks.iter().collect();
    assert_eq!(CertificateCheck::verify_batch(&refs), Ok(()));
    assert!(checks.iter().all(|c| c.verify().is_ok()));

    // A certificate whose fiduciaries signed another commitment: its own check and the
    // batch's fail, and the others still pass alone.
    let forged = Certificate {
        commitment: commitments[1],
        ..certify(commitments[0], &custody_message(&commitments[0])).unwrap()
    }
    .prepare_check(commitments[1], &signers)
    .unwrap();
    assert_eq!(forged.verify(), Err(CertificateError::Signature));
    assert_eq!(
        CertificateCheck::verify_batch(&[&checks[0], &forged, &checks[2]]),
        Err(CertificateError::Signature)
    );

    // A check's digest is the same whether or not its signature was decoded, and tells
    // checks apart.
    for (c, check) in commitments.iter().zip(&checks) {
        let certificate = certify(*c, &custody_message(c)).unwrap();
        assert_eq!(
            certificate.check_digest(*c, &signers).unwrap(),
            check.digest()
        );
    }
    assert_ne!(checks[0].digest(), checks[1].digest());
    assert_ne!(forged.digest(), checks[0].digest());
    assert_ne!(forged.digest(), checks[1].digest());
    assert_eq!(
        certify(commitments[0], &custody_message(&commitments[0]))
            .unwrap()
            .check_digest(commitments[1], &signers),
        Err(CertificateError::Commitment(commitments[0].to_string()))
    );
}

#[test]
fn one_aggregate_over_a_batch_root_certifies_each_order_with_its_proof() {
    let nodes = fiduciaries(3);
    let signers: Vec<&VerifiedIdentity> = nodes.iter().map(LocalIdentity::identity).collect();
    let signer_cids: Vec<Cid> = signers.iter().map(|i| i.cid()).collect();
    let commitments: Vec<Cid> = (0..5u8).map(|i| Block::raw(vec![i; 8]).cid()).collect();
    let tree = crate::batch::BatchTree::new(&commitments).unwrap();
    let signatures: Vec<(&VerifiedIdentity, [u8; bls::SIGNATURE_LEN])> = nodes
        .iter()
        .map(|n| {
            (
                n.identity(),
                n.keys().bls().sign(&tree.message()).to_bytes(),
            )
        })
        .collect();
    let encoded: Vec<(&VerifiedIdentity, &[u8])> =
        signatures.iter().map(|(i, s)| (*i, &s[..])).collect();
    let (aggregate, check) = Certificate::aggregate_batch_unchecked(&tree, &encoded).unwrap();
    assert_eq!(check.verify(), Ok(()));

    for (index, commitment) in commitments.iter().enumerate() {
        let certificate = Certificate::in_batch(
            &tree,
            index,
            *commitment,
            signer_cids.clone(),
            aggregate.clone(),
        )
        .unwrap();
        // Through its encoding, as an auditor reads it.
        let decoded: Certificate = Block::encode(&certificate)
            .unwrap()
            .decode(Limits::default())
            .unwrap();
        assert_eq!(decoded, certificate);
        assert_eq!(decoded.verify(*commitment, &signers), Ok(()));
    }

    // The proof of one order does not certify another.
    let first = Certificate::in_batch(
        &tree,
        0,
        commitments[0],
        signer_cids.clone(),
        aggregate.clone(),
    )
    .unwrap();
    let moved = Certificate {
        commitment: commitments[1],
        ..first.clone()
    };
    assert_eq!(
        moved.verify(commitments[1], &signers),
        Err(CertificateError::Signature)
    );
    // Nor does a proof cut short, nor the same signature without any proof.
    let mut cut = first.clone();
    cut.batch.as_mut().unwrap().path.pop();
    assert!(matches!(
        cut.verify(commitments[0], &signers),
        Err(CertificateError::Inclusion(_))
    ));
    let bare = Certificate {
        batch: None,
        ..first.clone()
    };
    assert_eq!(
        bare.verify(commitments[0], &signers),
        Err(CertificateError::Signature)
    );
    // A certificate is made only for a commitment at its place in the tree.
    assert!(Certificate::in_batch(&tree, 1, commitments[0], signer_cids, aggregate).is_err());
}
