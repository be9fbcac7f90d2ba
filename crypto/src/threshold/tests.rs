use super::*;

fn shares_of(t: usize, n: usize) -> (SecretScalar, Vec<Share>, Commitments) {
    let secret = SecretScalar::random();
    let (shares, commitments) = split(&secret, t, n).unwrap();
    (secret, shares, commitments)
}

#[test]
fn any_t_shares_recover_the_secret() {
    for t in 1..=7 {
        for n in t.max(3)..=10 {
            let (secret, shares, commitments) = shares_of(t, n);
            assert_eq!(shares.len(), n);
            assert_eq!(commitments.threshold(), t);
            for share in &shares {
                commitments.verify_share(share).unwrap();
            }
            // The first t, the last t, and every other share from the back.
            let last: Vec<Share> = shares[n - t..].to_vec();
            let spread: Vec<Share> = shares.iter().rev().step_by(2).cloned().collect();
            assert_eq!(recover(&shares, t).unwrap(), secret, "t={t} n={n} first");
            assert_eq!(recover(&last, t).unwrap(), secret, "t={t} n={n} last");
            if spread.len() >= t {
                assert_eq!(recover(&spread, t).unwrap(), secret, "t={t} n={n} spread");
            }
        }
    }
}

#[test]
fn fewer_than_t_shares_do_not_recover() {
    let (secret, shares, _) = shares_of(3, 5);
    assert_eq!(
        recover(&shares[..2], 3),
        Err(CombineError::NotEnoughShares { have: 2, need: 3 })
    );
    // Interpolating a degree-2 polynomial through 2 points gives some other value.
    assert_ne!(recover(&shares[..2], 2).unwrap(), secret);
}

#[test]
fn duplicate_and_zero_indices_are_refused() {
    let (_, shares, _) = shares_of(2, 3);
    let doubled = vec![shares[0].clone(), shares[0].clone(), shares[1].clone()];
    assert_eq!(recover(&doubled, 2), Err(CombineError::DuplicateIndex(1)));
    assert_eq!(
        Share::from_parts(0, shares[0].value_bytes().expose()).unwrap_err(),
        ShareError::ZeroIndex
    );
    let partial = partial_sign(&shares[0], b"m").unwrap();
    let zero = PartialSignature {
        index: 0,
        ..partial
    };
    assert_eq!(
        combine_signatures(&[zero, partial], 2),
        Err(CombineError::ZeroIndex)
    );
    assert_eq!(recover(&shares, 0), Err(CombineError::ZeroThreshold));
}

#[test]
fn split_parameters_are_checked() {
    let secret = SecretScalar::random();
    assert_eq!(split(&secret, 0, 3).unwrap_err(), SplitError::ZeroThreshold);
    assert_eq!(
        split(&secret, 4, 3).unwrap_err(),
        SplitError::ThresholdAboveShares {
            threshold: 4,
            shares: 3
        }
    );
    assert_eq!(
        split(&secret, 2, MAX_SHARES + 1).unwrap_err(),
        SplitError::TooManyShares {
            shares: MAX_SHARES + 1
        }
    );
}

#[test]
fn a_tampered_or_foreign_share_fails_feldman() {
    let (_, shares, commitments) = shares_of(2, 3);
    let mut value = *shares[1].value_bytes().expose();
    value[31] ^= 1;
    let tampered = Share::from_parts(2, &value).unwrap();
    assert_eq!(
        commitments.verify_share(&tampered),
        Err(ShareError::Mismatch(2))
    );
    let moved = Share::from_parts(3, shares[1].value_bytes().expose()).unwrap();
    assert_eq!(
        commitments.verify_share(&moved),
        Err(ShareError::Mismatch(3))
    );
    let (_, other, _) = shares_of(2, 3);
    assert!(commitments.verify_share(&other[0]).is_err());
}

#[test]
fn group_public_key_matches_the_secret() {
    let (secret, _, commitments) = shares_of(3, 4);
    assert_eq!(
        commitments.group_public_key(),
        secret.to_bls().unwrap().public_key()
    );
}

#[test]
fn commitments_round_trip_and_reject_garbage() {
    let (_, _, commitments) = shares_of(3, 4);
    let bytes = commitments.to_bytes();
    assert_eq!(Commitments::from_bytes(&bytes).unwrap(), commitments);
    assert_eq!(
        Commitments::from_bytes::<[u8; 48]>(&[]),
        Err(CommitmentError::Empty)
    );
    let mut bad = bytes.clone();
    bad[1] = [0x9f; 48];
    assert_eq!(
        Commitments::from_bytes(&bad),
        Err(CommitmentError::BadPoint(1))
    );
    let mut identity = bytes;
    identity[0] = [0; 48];
    identity[0][0] = 0xc0;
    assert_eq!(
        Commitments::from_bytes(&identity),
        Err(CommitmentError::IdentitySecret)
    );
}

#[test]
fn threshold_signature_equals_the_group_keys_signature() {
    let (secret, shares, commitments) = shares_of(3, 5);
    let message = b"release order 42";
    let partials: Vec<PartialSignature> = shares
        .iter()
        .map(|s| partial_sign(s, message).unwrap())
        .collect();
    for partial in &partials {
        verify_partial(&commitments, partial, message).unwrap();
        assert_eq!(
            commitments.share_public_key(partial.index).unwrap(),
            shares[partial.index as usize - 1].public_key().unwrap()
        );
    }
    let combined = combine_signatures(&partials[2..], 3).unwrap();
    commitments
        .group_public_key()
        .verify(message, &combined)
        .unwrap();
    // BLS signing is deterministic, so the combination is exactly the group key's signature.
    assert_eq!(combined, secret.to_bls().unwrap().sign(message));
    let two = combine_signatures(&partials[..2], 2).unwrap();
    assert!(
        commitments
            .group_public_key()
            .verify(message, &two)
            .is_err()
    );
}

#[test]
fn a_forged_partial_is_caught() {
    let (_, shares, commitments) = shares_of(2, 3);
    let mut partial = partial_sign(&shares[0], b"m").unwrap();
    partial.index = 2;
    assert!(verify_partial(&commitments, &partial, b"m").is_err());
}

#[test]
fn bls_keys_and_scalars_convert_both_ways() {
    let key = bls::SecretKey::random();
    let scalar = SecretScalar::from(&key);
    assert_eq!(scalar.to_bls().unwrap().public_key(), key.public_key());
    let again = SecretScalar::from_bytes(scalar.to_bytes().expose()).unwrap();
    assert_eq!(again, scalar);
    assert_eq!(
        SecretScalar::from_bytes(&[0xff; 32]).unwrap_err(),
        ShareError::BadScalar
    );
}

#[test]
fn debug_output_redacts_share_values() {
    let (secret, shares, _) = shares_of(2, 2);
    let value_hex: String = shares[0]
        .value_bytes()
        .expose()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let shown = format!("{:?} {:?}", shares[0], secret);
    assert!(shown.contains("redacted"));
    assert!(!shown.contains(&value_hex[..12]));
}

#[test]
fn public_multiplication_matches_the_generic_one() {
    let point = G1Projective::generator() * random_scalar();
    for k in [0u32, 1, 2, 3, 7, 255, 1024, 65_537, u32::MAX] {
        assert_eq!(
            times_public(point, k),
            point * Scalar::from(u64::from(k)),
            "k = {k}"
        );
    }
}

#[test]
fn commitments_made_through_blst_match_the_generic_ones() {
    for _ in 0..8 {
        let a = random_scalar();
        assert_eq!(commit(&a), G1Affine::from(G1Projective::generator() * a));
    }
    assert_eq!(commit(&Scalar::zero()), G1Affine::identity());
}

/// A key generated without a dealer among `n`: every participant deals a random secret; each
/// checks what it got against its dealer's commitments and adds it up. The participants'
/// shares, the summed commitments, and the key's public half from the dealers' secrets.
pub(crate) fn generated(t: usize, n: usize) -> (Vec<Share>, Commitments, bls::PublicKey) {
    let dealt: Vec<(SecretScalar, Vec<Share>, Commitments)> =
        (0..n).map(|_| shares_of(t, n)).collect();
    let mut key = Scalar::zero();
    for (secret, _, _) in &dealt {
        key += secret.0;
    }
    let shares: Vec<Share> = (0..n)
        .map(|me| {
            let received: Vec<Share> = dealt
                .iter()
                .map(|(_, shares, commitments)| {
                    commitments.verify_share(&shares[me]).unwrap();
                    shares[me].clone()
                })
                .collect();
            add_shares(&received).unwrap()
        })
        .collect();
    let parts: Vec<Commitments> = dealt.into_iter().map(|(_, _, c)| c).collect();
    let commitments = Commitments::sum(&parts).unwrap();
    let public = SecretScalar(key).to_bls().unwrap().public_key();
    (shares, commitments, public)
}

#[test]
fn a_key_generated_without_a_dealer_is_recovered_from_any_t_of_the_summed_shares() {
    let (shares, commitments, public) = generated(3, 5);
    assert_eq!(commitments.group_public_key(), public);
    for share in &shares {
        commitments.verify_share(share).unwrap();
    }
    for picked in [[0, 1, 2], [0, 2, 4], [2, 3, 4], [1, 3, 4]] {
        let chosen: Vec<Share> = picked.iter().map(|i| shares[*i].clone()).collect();
        let key = recover(&chosen, 3).unwrap();
        assert_eq!(key.to_bls().unwrap().public_key(), public);
    }
    let two: Vec<Share> = shares[..2].to_vec();
    assert!(recover(&two, 3).is_err());
}

#[test]
fn shares_and_commitments_that_do_not_add_up_are_refused() {
    let (_, a, ca) = shares_of(2, 3);
    let (_, _, cb) = shares_of(3, 3);
    assert_eq!(
        add_shares(&[a[0].clone(), a[1].clone()]).unwrap_err(),
        CombineError::IndexMismatch {
            expected: 1,
            found: 2
        }
    );
    assert_eq!(
        add_shares(&[]).unwrap_err(),
        CombineError::NotEnoughShares { have: 0, need: 1 }
    );
    assert_eq!(
        Commitments::sum(&[ca.clone(), cb]).unwrap_err(),
        CommitmentError::ThresholdMismatch(2, 3)
    );
    assert_eq!(Commitments::sum(&[]).unwrap_err(), CommitmentError::Empty);
    // A dealer's share checked against the summed commitments fails: only the sum lies on
    // the summed polynomial.
    let (_, b, cb) = shares_of(2, 3);
    let sum = Commitments::sum(&[ca, cb]).unwrap();
    assert!(sum.verify_share(&a[0]).is_err());
    sum.verify_share(&add_shares(&[a[0].clone(), b[0].clone()]).unwrap())
        .unwrap();
}
