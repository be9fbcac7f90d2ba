use super::super::{recover, split};
use super::*;

/// A new committee of `new_n` with threshold `new_t` from `dealers` (old holders, by
/// position) of an old sharing with threshold `old_t`: each new holder's share, checked, and
/// the new commitments.
fn reshare(
    old: &[Share],
    old_commitments: &Commitments,
    old_t: usize,
    dealers: &[usize],
    new_t: usize,
    new_n: usize,
) -> (Vec<Share>, Commitments) {
    let dealt: Vec<(u32, Vec<Share>, Commitments)> = dealers
        .iter()
        .map(|d| {
            let (sub_shares, commitments) = deal(&old[*d], new_t, new_n).unwrap();
            commitments
                .check_reshared_from(old_commitments, old[*d].index())
                .unwrap();
            (old[*d].index(), sub_shares, commitments)
        })
        .collect();
    let shares = (0..new_n)
        .map(|j| {
            let mine: Vec<(u32, Share)> = dealt
                .iter()
                .map(|(dealer, sub_shares, commitments)| {
                    commitments.verify_share(&sub_shares[j]).unwrap();
                    (*dealer, sub_shares[j].clone())
                })
                .collect();
            combine(&mine, old_t).unwrap()
        })
        .collect();
    let parts: Vec<(u32, Commitments)> = dealt.into_iter().map(|(d, _, c)| (d, c)).collect();
    (shares, combine_commitments(&parts, old_t).unwrap())
}

#[test]
fn a_2_of_3_secret_moves_to_3_of_5_with_the_same_key() {
    let secret = SecretScalar::random();
    let (old, old_commitments) = split(&secret, 2, 3).unwrap();
    // Old holders 1 and 3 deal; holder 2 is down.
    let (new, new_commitments) = reshare(&old, &old_commitments, 2, &[0, 2], 3, 5);
    assert_eq!(
        new_commitments.group_public_key(),
        old_commitments.group_public_key()
    );
    assert_eq!(new_commitments.threshold(), 3);
    for share in &new {
        new_commitments.verify_share(share).unwrap();
    }
    for picked in [[0, 1, 2], [1, 3, 4], [0, 2, 4]] {
        let chosen: Vec<Share> = picked.iter().map(|i| new[*i].clone()).collect();
        assert_eq!(recover(&chosen, 3).unwrap(), secret);
    }
    // Two new shares are not enough.
    assert_ne!(recover(&new[..2], 2).unwrap(), secret);
}

#[test]
fn after_a_refresh_old_and_new_shares_do_not_combine() {
    let secret = SecretScalar::random();
    let (old, old_commitments) = split(&secret, 3, 5).unwrap();
    let (new, new_commitments) = reshare(&old, &old_commitments, 3, &[1, 2, 4], 3, 5);
    assert_eq!(
        new_commitments.group_public_key(),
        old_commitments.group_public_key()
    );
    assert_eq!(recover(&new[2..], 3).unwrap(), secret);
    assert_eq!(recover(&old[..3], 3).unwrap(), secret);
    // Two shares from before the refresh and one after, or the other way round.
    let mixed = [old[0].clone(), old[1].clone(), new[2].clone()];
    assert_ne!(recover(&mixed, 3).unwrap(), secret);
    let mixed = [new[0].clone(), new[1].clone(), old[2].clone()];
    assert_ne!(recover(&mixed, 3).unwrap(), secret);
    // Every share changed, and an old share fails the new commitments.
    for (before, after) in old.iter().zip(&new) {
        assert_ne!(before.value_bytes().expose(), after.value_bytes().expose());
        assert!(new_commitments.verify_share(before).is_err());
    }
}

#[test]
fn a_dealer_that_deals_anything_but_its_share_is_caught() {
    let secret = SecretScalar::random();
    let (old, old_commitments) = split(&secret, 2, 3).unwrap();
    // Holder 2 deals holder 1's share as if it were its own.
    let (_, commitments) = deal(&old[0], 2, 3).unwrap();
    assert_eq!(
        commitments.check_reshared_from(&old_commitments, 2),
        Err(ShareError::Mismatch(2))
    );
    // A sub-share changed on the way fails its dealer's commitments.
    let (sub_shares, commitments) = deal(&old[1], 2, 3).unwrap();
    let mut bytes = *sub_shares[0].value_bytes().expose();
    bytes[31] ^= 1;
    let tampered = Share::from_parts(1, &bytes).unwrap();
    assert!(commitments.verify_share(&tampered).is_err());
}

#[test]
fn too_few_or_repeated_dealers_and_mixed_indices_are_refused() {
    let secret = SecretScalar::random();
    let (old, _) = split(&secret, 3, 4).unwrap();
    let dealt: Vec<(Vec<Share>, Commitments)> =
        old.iter().map(|s| deal(s, 2, 3).unwrap()).collect();
    let two = [(1, dealt[0].0[0].clone()), (2, dealt[1].0[0].clone())];
    assert_eq!(
        combine(&two, 3).unwrap_err(),
        ReshareError::Dealers(CombineError::NotEnoughShares { have: 2, need: 3 })
    );
    let repeated = [
        (1, dealt[0].0[0].clone()),
        (1, dealt[1].0[0].clone()),
        (3, dealt[2].0[0].clone()),
    ];
    assert_eq!(
        combine(&repeated, 3).unwrap_err(),
        ReshareError::Dealers(CombineError::DuplicateIndex(1))
    );
    let mixed = [
        (1, dealt[0].0[0].clone()),
        (2, dealt[1].0[1].clone()),
        (3, dealt[2].0[0].clone()),
    ];
    assert!(matches!(
        combine(&mixed, 3),
        Err(ReshareError::Dealers(CombineError::IndexMismatch { .. }))
    ));
    let (_, wider) = deal(&old[3], 3, 3).unwrap();
    let parts = [(1, dealt[0].1.clone()), (2, dealt[1].1.clone()), (4, wider)];
    assert_eq!(
        combine_commitments(&parts, 3),
        Err(ReshareError::Commitments(
            CommitmentError::ThresholdMismatch(2, 3)
        ))
    );
}
