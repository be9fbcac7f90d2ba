use std::collections::BTreeMap;

use super::*;
use crate::dkg::tests::run;
use crate::secp256k1::verify_bip340;

/// The group of a run's shares, as a coordinator sees it.
fn group_of(shares: &[KeyShare<Taproot>]) -> Group {
    let public: Vec<Vec<u8>> = shares.iter().map(|s| s.public_share().unwrap()).collect();
    Group::new(
        shares[0].threshold(),
        &shares[0].group_key_bytes().unwrap(),
        &public,
    )
    .unwrap()
}

/// Round 1 for `signers` (indices into `shares`): their nonces and the package of `message`.
fn round1(
    shares: &[KeyShare<Taproot>],
    signers: &[usize],
    message: &[u8],
) -> (Vec<Nonces>, Package) {
    let mut nonces = Vec::new();
    let mut commitments = BTreeMap::new();
    for i in signers {
        let (n, c) = commit(&shares[*i]).unwrap();
        nonces.push(n);
        commitments.insert(shares[*i].participant(), c);
    }
    (nonces, Package::new(&commitments, message).unwrap())
}

fn round2(
    shares: &[KeyShare<Taproot>],
    signers: &[usize],
    nonces: Vec<Nonces>,
    package: &Package,
) -> BTreeMap<Participant, Vec<u8>> {
    signers
        .iter()
        .zip(nonces)
        .map(|(i, n)| {
            let share = &shares[*i];
            (share.participant(), sign(package, n, share).unwrap())
        })
        .collect()
}

#[test]
fn any_three_of_five_sign_and_the_signature_is_bip340_under_the_x_only_key() {
    let shares = run::<Taproot>(5, 3);
    let group = group_of(&shares);
    let x_only = group.x_only().unwrap();
    assert_eq!(&x_only[..], &shares[0].group_key_bytes().unwrap()[1..]);
    let message = b"spend output 0 of the vault";
    for signers in [[0, 1, 2], [0, 2, 4], [1, 3, 4]] {
        let (nonces, package) = round1(&shares, &signers, message);
        let signature_shares = round2(&shares, &signers, nonces, &package);
        let signature = group.aggregate(&package, &signature_shares).unwrap();
        assert!(verify_bip340(&x_only, message, &signature));
        // Another message, or one flipped bit, does not verify.
        assert!(!verify_bip340(
            &x_only,
            b"spend output 1 of the vault",
            &signature
        ));
        for bit in [0, 255, 256, 511] {
            let mut flipped = signature;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(!verify_bip340(&x_only, message, &flipped), "bit {bit}");
        }
    }
}

#[test]
fn a_bad_share_is_named_and_fewer_signers_than_the_threshold_are_refused() {
    let shares = run::<Taproot>(5, 3);
    let group = group_of(&shares);
    let signers = [0, 1, 2];
    let (nonces, package) = round1(&shares, &signers, b"message");
    let mut signature_shares = round2(&shares, &signers, nonces, &package);
    // Participant 2 sends the share it would make for another package.
    let (other_nonces, other_package) = round1(&shares, &signers, b"another message");
    let other = round2(&shares, &signers, other_nonces, &other_package);
    signature_shares.insert(2, other[&2].clone());
    assert_eq!(
        group.check_share(&package, 2, &signature_shares[&2]),
        Err(SignError::BadShare(2))
    );
    group
        .check_share(&package, 1, &signature_shares[&1])
        .unwrap();
    assert_eq!(
        group.aggregate(&package, &signature_shares),
        Err(SignError::BadShare(2))
    );
    // A share that does not decode is as bad.
    signature_shares.insert(2, vec![0xff; 32]);
    assert_eq!(
        group.aggregate(&package, &signature_shares),
        Err(SignError::BadShare(2))
    );
    // Two signers of a 3-of-5 key.
    let (_, short) = round1(&shares, &[0, 1], b"message");
    assert!(matches!(
        group.check_package(&short),
        Err(SignError::Signers { signers: 2, .. })
    ));
}

#[test]
fn a_signer_signs_only_a_package_with_its_own_commitments() {
    let shares = run::<Taproot>(3, 2);
    let (mut nonces, _) = round1(&shares, &[0, 1], b"message");
    // A package made of other commitments for participant 1.
    let (_, other) = round1(&shares, &[0, 1], b"message");
    let first = nonces.remove(0);
    assert_eq!(
        sign(&other, first, &shares[0]),
        Err(SignError::NotOurCommitments(1))
    );
    // Nonces for participant 2 do not sign as participant 1.
    let (_, package) = round1(&shares, &[0, 1], b"message");
    assert_eq!(
        sign(&package, nonces.remove(0), &shares[0]),
        Err(SignError::NotOurCommitments(1))
    );
    // The package travels as bytes unchanged.
    let again = Package::from_bytes(&package.to_bytes().unwrap()).unwrap();
    assert_eq!(again, package);
    assert!(again.names(1) && again.names(2) && !again.names(3));
    assert!(Package::from_bytes(b"not a package").is_err());
}

#[test]
fn nonces_do_not_print() {
    let shares = run::<Taproot>(3, 2);
    let (nonces, _) = commit(&shares[0]).unwrap();
    assert_eq!(format!("{nonces:?}"), "Nonces { participant: 1, .. }");
}
