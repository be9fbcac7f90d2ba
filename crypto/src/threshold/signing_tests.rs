use super::*;
use crate::threshold::{SecretScalar, Share, partial_sign, split};

const MESSAGE: &[u8] = b"pay 1 BTC to the cold wallet";

fn partials(shares: &[Share]) -> Vec<PartialSignature> {
    shares
        .iter()
        .map(|s| partial_sign(s, MESSAGE).unwrap())
        .collect()
}

#[test]
fn any_t_partials_of_a_dealt_secret_make_the_signature_of_its_key() {
    let secret = SecretScalar::random();
    let (shares, commitments) = split(&secret, 3, 5).unwrap();
    let group = SigningGroup::dealt(commitments);
    let whole = secret.to_bls().unwrap().sign(MESSAGE);
    for signers in [
        &shares[..3],
        &shares[2..],
        &[shares[4].clone(), shares[0].clone(), shares[2].clone()][..],
    ] {
        let signature = group.combine(&partials(signers), MESSAGE).unwrap();
        assert_eq!(signature, whole, "BLS signatures are unique");
        group.public_key().verify(MESSAGE, &signature).unwrap();
    }
}

#[test]
fn a_generated_group_checks_partials_against_its_listed_public_shares() {
    let secret = SecretScalar::random();
    let (shares, commitments) = split(&secret, 2, 3).unwrap();
    let public: Vec<[u8; 48]> = shares
        .iter()
        .map(|s| s.public_key().unwrap().to_bytes())
        .collect();
    let group =
        SigningGroup::generated(2, &commitments.group_public_key().to_bytes(), &public).unwrap();
    let signature = group.combine(&partials(&shares[1..]), MESSAGE).unwrap();
    commitments
        .group_public_key()
        .verify(MESSAGE, &signature)
        .unwrap();
    assert_eq!(
        group.share_key(4).unwrap_err(),
        ThresholdSignError::UnknownHolder(4)
    );
    assert!(matches!(
        SigningGroup::generated(4, &public[0], &public),
        Err(ThresholdSignError::Combine(_))
    ));
    assert!(matches!(
        SigningGroup::generated(2, &[0u8; 48], &public),
        Err(ThresholdSignError::PublicShare { index: 0, .. })
    ));
}

#[test]
fn a_partial_of_another_message_or_share_is_named() {
    let secret = SecretScalar::random();
    let (shares, commitments) = split(&secret, 2, 3).unwrap();
    let group = SigningGroup::dealt(commitments);
    let mut signed = partials(&shares[..2]);
    signed[1].signature = partial_sign(&shares[1], b"another message")
        .unwrap()
        .signature;
    assert_eq!(
        group.combine(&signed, MESSAGE),
        Err(ThresholdSignError::BadPartial(2))
    );
    // Holder 3's partial passed off as holder 1's.
    let mut swapped = partials(&shares[..2]);
    swapped[0].signature = partial_sign(&shares[2], MESSAGE).unwrap().signature;
    assert_eq!(
        group.combine(&swapped, MESSAGE),
        Err(ThresholdSignError::BadPartial(1))
    );
    group
        .check_partial(&partials(&shares[2..])[0], MESSAGE)
        .unwrap();
}

#[test]
fn fewer_than_t_partials_or_repeated_holders_are_refused() {
    let secret = SecretScalar::random();
    let (shares, commitments) = split(&secret, 3, 5).unwrap();
    let group = SigningGroup::dealt(commitments);
    assert_eq!(
        group.combine(&partials(&shares[..2]), MESSAGE),
        Err(ThresholdSignError::Combine(CombineError::NotEnoughShares {
            have: 2,
            need: 3
        }))
    );
    let twice = partials(&[shares[0].clone(), shares[0].clone(), shares[1].clone()]);
    assert_eq!(
        group.combine(&twice, MESSAGE),
        Err(ThresholdSignError::Combine(CombineError::DuplicateIndex(1)))
    );
}
