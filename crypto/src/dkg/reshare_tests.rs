use std::collections::BTreeMap;

use super::*;
use crate::dkg::{self, KeyShare};
use crate::secp256k1::PublicKey;

/// A t-of-n key generated without a dealer: each holder's secret share, the public shares
/// and the group key.
fn generated(n: u16, t: u16) -> (Vec<Secret<32>>, PublicShares, PublicKey) {
    let mut rounds = Vec::new();
    let mut commitments = BTreeMap::new();
    for me in 1..=n {
        let (round, commitment) = dkg::deal::<dkg::Taproot>(me, n, t).unwrap();
        rounds.push(round);
        commitments.insert(me, commitment);
    }
    let others = |me: u16| -> BTreeMap<u16, Vec<u8>> {
        commitments
            .iter()
            .filter(|(p, _)| **p != me)
            .map(|(p, c)| (*p, c.clone()))
            .collect()
    };
    let mut seconds = Vec::new();
    let mut inboxes: BTreeMap<u16, dkg::Shares> = BTreeMap::new();
    for (me, round) in (1u16..).zip(rounds) {
        let (second, shares) = dkg::share_out(round, &others(me)).unwrap();
        for (to, share) in shares {
            inboxes.entry(to).or_default().insert(me, share);
        }
        seconds.push(second);
    }
    let finished: Vec<(KeyShare, PublicShares)> = (1u16..)
        .zip(&seconds)
        .map(|(me, second)| dkg::finish(second, &others(me), &inboxes[&me]).unwrap())
        .collect();
    let group_key = finished[0].0.group_key().unwrap();
    let public_shares = finished[0].1.clone();
    let secrets = finished.iter().map(|(s, _)| s.secret_bytes()).collect();
    (secrets, public_shares, group_key)
}

/// Reshares `secrets` (by old holder, from 1) from `dealers` to `new_holders` holders of
/// whom `new_threshold` rebuild: each new holder's share, and the new commitments.
fn reshare(
    secrets: &[Secret<32>],
    public_shares: &PublicShares,
    dealers: &[u16],
    new_threshold: u16,
    new_holders: u16,
) -> (Vec<Secret<32>>, Vec<Vec<u8>>) {
    let dealt: Vec<(u16, Vec<Secret<32>>, Vec<Vec<u8>>)> = dealers
        .iter()
        .map(|d| {
            let (subs, commitments) = deal(
                secrets[usize::from(*d) - 1].expose(),
                new_threshold,
                new_holders,
            )
            .unwrap();
            (*d, subs, commitments)
        })
        .collect();
    let shares = (1..=new_holders)
        .map(|j| {
            let mine: Vec<(u16, Secret<32>)> = dealt
                .iter()
                .map(|(d, subs, commitments)| {
                    let sub = subs[usize::from(j) - 1].clone();
                    check_sub_share(
                        *d,
                        commitments,
                        &public_shares[usize::from(*d) - 1],
                        j,
                        sub.expose(),
                    )
                    .unwrap();
                    (*d, sub)
                })
                .collect();
            combine(&mine).unwrap()
        })
        .collect();
    let parts: Vec<(u16, Vec<Vec<u8>>)> = dealt.into_iter().map(|(d, _, c)| (d, c)).collect();
    (shares, combine_commitments(&parts).unwrap())
}

fn rebuilt(shares: &[(u16, &Secret<32>)], threshold: u16, group_key: &PublicKey) -> bool {
    let shares: Vec<KeyShare> = shares
        .iter()
        .map(|(p, s)| KeyShare::from_secret(*p, threshold, s.expose(), group_key).unwrap())
        .collect();
    dkg::rebuild(&shares).is_ok_and(|key| key.public_key() == *group_key)
}

#[test]
fn a_two_of_three_key_moves_to_three_of_five_with_a_holder_down() {
    let (secrets, public_shares, group_key) = generated(3, 2);
    // Holder 2 is down: 1 and 3 deal.
    let (shares, commitments) = reshare(&secrets, &public_shares, &[1, 3], 3, 5);
    assert_eq!(commitments.len(), 3);
    assert_eq!(
        commitments[0],
        group_key.to_compressed().to_vec(),
        "same key"
    );
    let new_public = public_shares_from(&commitments, 5).unwrap();
    for (j, share) in (1u16..).zip(&shares) {
        let key = crate::secp256k1::SecretKey::from_bytes(share.expose()).unwrap();
        assert_eq!(
            key.public_key().to_compressed().to_vec(),
            new_public[usize::from(j) - 1]
        );
    }
    for chosen in [[1u16, 2, 3], [1, 4, 5], [2, 3, 5]] {
        let picked: Vec<(u16, &Secret<32>)> = chosen
            .iter()
            .map(|j| (*j, &shares[usize::from(*j) - 1]))
            .collect();
        assert!(rebuilt(&picked, 3, &group_key), "{chosen:?}");
    }
    // Two new shares are not enough.
    assert!(!rebuilt(&[(1, &shares[0]), (2, &shares[1])], 3, &group_key));
}

#[test]
fn a_refresh_keeps_the_key_and_old_and_new_shares_do_not_mix() {
    let (secrets, public_shares, group_key) = generated(3, 2);
    let (fresh, commitments) = reshare(&secrets, &public_shares, &[1, 2], 2, 3);
    assert_eq!(commitments[0], group_key.to_compressed().to_vec());
    assert!(rebuilt(&[(1, &fresh[0]), (3, &fresh[2])], 2, &group_key));
    assert!(rebuilt(
        &[(1, &secrets[0]), (3, &secrets[2])],
        2,
        &group_key
    ));
    assert!(!rebuilt(&[(1, &fresh[0]), (3, &secrets[2])], 2, &group_key));
    assert!(
        fresh
            .iter()
            .zip(&secrets)
            .all(|(f, s)| f.expose() != s.expose())
    );
}

#[test]
fn a_dealer_of_anything_but_its_share_or_a_bad_sub_share_is_named() {
    let (secrets, public_shares, _) = generated(3, 2);
    // Dealer 2 deals holder 3's share as its own.
    let (subs, commitments) = deal(secrets[2].expose(), 2, 3).unwrap();
    assert_eq!(
        check_sub_share(2, &commitments, &public_shares[1], 1, subs[0].expose()),
        Err(DkgError::Dealer {
            culprit: 2,
            reason: "commitments that do not start from its old share"
        })
    );
    // Dealer 1 deals its share, but holder 2's sub-share is off.
    let (subs, commitments) = deal(secrets[0].expose(), 2, 3).unwrap();
    let mut bad = subs[1].clone();
    bad.expose_mut()[31] ^= 1;
    assert_eq!(
        check_sub_share(1, &commitments, &public_shares[0], 2, bad.expose()),
        Err(DkgError::Dealer {
            culprit: 1,
            reason: "a sub-share that fails its commitments"
        })
    );
    check_sub_share(1, &commitments, &public_shares[0], 2, subs[1].expose()).unwrap();
    // Repeated or zero dealers, and bad parameters, are refused.
    assert!(combine(&[(1, subs[0].clone()), (1, subs[1].clone())]).is_err());
    assert!(combine(&[(0, subs[0].clone())]).is_err());
    assert!(deal(secrets[0].expose(), 4, 3).is_err());
    assert!(
        check_sub_share(
            1,
            &[b"junk".to_vec()],
            &public_shares[0],
            1,
            subs[0].expose()
        )
        .is_err()
    );
}
