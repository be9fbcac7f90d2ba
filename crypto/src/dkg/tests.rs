use std::collections::BTreeMap;

use super::*;

/// Every participant's part 1: their rounds and commitments.
fn deal_all<C: Suite>(n: u16, t: u16) -> (Vec<Round1<C>>, BTreeMap<Participant, Vec<u8>>) {
    let mut rounds = Vec::new();
    let mut commitments = BTreeMap::new();
    for me in 1..=n {
        let (round, commitment) = deal::<C>(me, n, t).expect("deal");
        rounds.push(round);
        commitments.insert(me, commitment);
    }
    (rounds, commitments)
}

fn others(all: &BTreeMap<Participant, Vec<u8>>, me: Participant) -> BTreeMap<Participant, Vec<u8>> {
    all.iter()
        .filter(|(p, _)| **p != me)
        .map(|(p, b)| (*p, b.clone()))
        .collect()
}

type Inboxes = BTreeMap<Participant, Shares>;

/// Every participant's part 2: their rounds, and the shares by recipient, then by dealer.
fn share_all<C: Suite>(
    rounds: Vec<Round1<C>>,
    commitments: &BTreeMap<Participant, Vec<u8>>,
) -> (Vec<Round2<C>>, Inboxes) {
    let mut seconds = Vec::new();
    let mut inboxes: Inboxes = BTreeMap::new();
    for round in rounds {
        let me = round.me;
        let (second, shares) = share_out(round, &others(commitments, me)).expect("share out");
        for (to, share) in shares {
            inboxes.entry(to).or_default().insert(me, share);
        }
        seconds.push(second);
    }
    (seconds, inboxes)
}

/// A whole run among `n` participants for a `t`-of-`n` key: every participant's share.
pub(crate) fn run<C: Suite>(n: u16, t: u16) -> Vec<KeyShare<C>> {
    let (rounds, commitments) = deal_all::<C>(n, t);
    let (seconds, inboxes) = share_all(rounds, &commitments);
    let finished: Vec<(KeyShare<C>, PublicShares)> = seconds
        .iter()
        .map(|second| {
            finish(
                second,
                &others(&commitments, second.me),
                &inboxes[&second.me],
            )
            .expect("finish")
        })
        .collect();
    // Every participant derives the same public shares, and its own is its share's; an
    // auditor derives them too, from the commitments alone.
    let all: Vec<Vec<u8>> = commitments.values().cloned().collect();
    let (group_key, audited) = public_shares_of::<C>(&all).expect("public shares");
    assert_eq!(audited, finished[0].1);
    assert_eq!(group_key, finished[0].0.group_key_bytes().unwrap());
    for (share, public_shares) in &finished {
        assert_eq!(public_shares, &finished[0].1);
        assert_eq!(
            public_shares[usize::from(share.participant()) - 1],
            share.public_share().unwrap()
        );
    }
    finished.into_iter().map(|(share, _)| share).collect()
}

fn copy<C: Suite>(share: &KeyShare<C>) -> KeyShare<C> {
    KeyShare::from_bytes(share.participant(), &share.to_bytes().unwrap()).unwrap()
}

#[test]
fn any_t_shares_rebuild_the_group_key_and_fewer_do_not() {
    let shares = run::<Taproot>(5, 3);
    let group = shares[0].group_key().unwrap().to_compressed();
    assert!(
        shares
            .iter()
            .all(|s| s.group_key().unwrap().to_compressed() == group)
    );
    assert!(shares.iter().all(|s| s.threshold() == 3));
    let mut rebuilt = Vec::new();
    for a in 0..5 {
        for b in a + 1..5 {
            for c in b + 1..5 {
                let key = rebuild(&[copy(&shares[a]), copy(&shares[b]), copy(&shares[c])])
                    .expect("three shares rebuild");
                assert_eq!(key.public_key().to_compressed(), group);
                rebuilt.push(key.to_bytes().expose().to_vec());
            }
        }
    }
    assert_eq!(rebuilt.len(), 10);
    assert!(rebuilt.iter().all(|k| *k == rebuilt[0]));
    assert_eq!(
        rebuild(&[copy(&shares[0]), copy(&shares[1])]).unwrap_err(),
        DkgError::Rebuild("fewer shares than the threshold")
    );
    assert_eq!(
        rebuild(&[copy(&shares[0]), copy(&shares[0]), copy(&shares[1])]).unwrap_err(),
        DkgError::Rebuild("a participant's share is given twice")
    );
    // All five rebuild it too.
    let all: Vec<KeyShare> = shares.iter().map(copy).collect();
    assert_eq!(rebuild(&all).unwrap().public_key().to_compressed(), group);
}

#[test]
fn two_runs_give_different_keys_whose_shares_do_not_mix() {
    let first = run::<Taproot>(3, 2);
    let second = run::<Taproot>(3, 2);
    assert_ne!(
        first[0].group_key().unwrap().to_compressed(),
        second[0].group_key().unwrap().to_compressed()
    );
    assert_eq!(
        rebuild(&[copy(&first[0]), copy(&second[1])]).unwrap_err(),
        DkgError::Rebuild("the shares are of different keys")
    );
}

#[test]
fn a_share_keeps_its_participant_and_refuses_tampering() {
    let shares = run::<Taproot>(3, 2);
    let bytes = shares[1].to_bytes().unwrap();
    let back = KeyShare::<Taproot>::from_bytes(2, &bytes).unwrap();
    assert_eq!(
        back.public_share().unwrap(),
        shares[1].public_share().unwrap()
    );
    assert!(matches!(
        KeyShare::<Taproot>::from_bytes(3, &bytes),
        Err(DkgError::Malformed { from: 3, .. })
    ));
    // The signing share sits before the public share and group key: change its last byte.
    let mut tampered = bytes.to_vec();
    let at = tampered.len() - 33 - 33 - 1 - 1;
    tampered[at] ^= 1;
    assert!(KeyShare::<Taproot>::from_bytes(2, &tampered).is_err());
    assert!(KeyShare::<Taproot>::from_bytes(2, &bytes[..bytes.len() - 1]).is_err());
    let printed = format!("{:?}", shares[1]);
    assert!(printed.contains("participant: 2"), "{printed}");
}

#[test]
fn a_bad_share_names_its_dealer() {
    let (rounds, commitments) = deal_all::<Taproot>(4, 3);
    let (seconds, mut inboxes) = share_all(rounds, &commitments);
    // Dealer 2 sends participant 1 a share off by one in its last byte.
    let share = inboxes.get_mut(&1).unwrap().get_mut(&2).unwrap();
    let last = share.len() - 1;
    share[last] ^= 1;
    // Revealed, the bad share fails its dealer's commitment for anyone; a good one fits.
    assert_eq!(
        share_fits::<Taproot>(&commitments[&2], 1, &inboxes[&1][&2]),
        Ok(false)
    );
    assert_eq!(
        share_fits::<Taproot>(&commitments[&3], 1, &inboxes[&1][&3]),
        Ok(true)
    );
    assert_eq!(
        share_fits::<Taproot>(&commitments[&3], 2, &inboxes[&1][&3]),
        Ok(false)
    );
    assert!(share_fits::<Taproot>(b"junk", 1, &inboxes[&1][&3]).is_err());
    let failed = finish(&seconds[0], &others(&commitments, 1), &inboxes[&1]).unwrap_err();
    assert_eq!(
        failed,
        DkgError::Dealer {
            culprit: 2,
            reason: "a share that fails its commitments"
        }
    );
    // The others, whose shares are good, finish.
    for second in &seconds[1..] {
        finish(
            second,
            &others(&commitments, second.me),
            &inboxes[&second.me],
        )
        .expect("finish");
    }
}

#[test]
fn a_bad_proof_of_knowledge_names_its_dealer() {
    let (mut rounds, mut commitments) = deal_all::<Taproot>(3, 2);
    // Dealer 3's proof (the commitment's last bytes) is changed.
    let proof = commitments.get_mut(&3).unwrap();
    let last = proof.len() - 1;
    proof[last] ^= 1;
    let first = rounds.remove(0);
    let failed = share_out(first, &others(&commitments, 1)).unwrap_err();
    assert_eq!(
        failed,
        DkgError::Dealer {
            culprit: 3,
            reason: "a commitment whose proof of knowledge fails"
        }
    );
}

#[test]
fn participants_shown_different_commitments_see_different_digests() {
    let (_, commitments) = deal_all::<Taproot>(3, 2);
    let (_, other_run) = deal_all::<Taproot>(3, 2);
    let honest = commitments_digest(&commitments[&1], 1, &others(&commitments, 1));
    let same_view = commitments_digest(&commitments[&2], 2, &others(&commitments, 2));
    assert_eq!(honest, same_view);
    // Participant 2 was shown another commitment from participant 3.
    let mut equivocated = others(&commitments, 2);
    equivocated.insert(3, other_run[&3].clone());
    assert_ne!(
        honest,
        commitments_digest(&commitments[&2], 2, &equivocated)
    );
}

#[test]
fn missing_malformed_and_impossible_inputs_are_refused() {
    assert!(matches!(
        deal::<Taproot>(1, 3, 1),
        Err(DkgError::Parameters { threshold: 1, .. })
    ));
    assert!(matches!(
        deal::<Taproot>(1, 3, 4),
        Err(DkgError::Parameters { threshold: 4, .. })
    ));
    assert!(matches!(
        deal::<Taproot>(0, 3, 2),
        Err(DkgError::Parameters { .. })
    ));
    assert!(matches!(
        deal::<Taproot>(4, 3, 2),
        Err(DkgError::Parameters { .. })
    ));

    let (mut rounds, commitments) = deal_all::<Taproot>(3, 2);
    let mut missing = others(&commitments, 1);
    missing.remove(&3);
    let first = rounds.remove(0);
    assert_eq!(
        share_out(first, &missing).unwrap_err(),
        DkgError::Incomplete {
            what: "commitment",
            missing: vec![3]
        }
    );
    let mut garbled = others(&commitments, 2);
    garbled.insert(3, vec![1, 2, 3]);
    let second = rounds.remove(0);
    assert_eq!(
        share_out(second, &garbled).unwrap_err(),
        DkgError::Malformed {
            from: 3,
            what: "commitment"
        }
    );
    let mut stranger = others(&commitments, 3);
    stranger.insert(9, commitments[&1].clone());
    let third = rounds.remove(0);
    assert!(matches!(
        share_out(third, &stranger).unwrap_err(),
        DkgError::Malformed { from: 9, .. }
    ));
}

#[test]
fn secrets_do_not_print() {
    let (round, _) = deal::<Taproot>(1, 3, 2).unwrap();
    assert_eq!(format!("{round:?}"), "Round1(participant 1, <redacted>)");
}

#[test]
fn a_run_resumes_from_its_kept_round_secrets() {
    let (rounds, commitments) = deal_all::<Taproot>(3, 2);
    // Every participant's first round goes through bytes (a restart between the parts).
    let rounds: Vec<Round1> = rounds
        .iter()
        .map(|r| Round1::from_bytes(r.me, 3, &r.to_bytes().unwrap()).unwrap())
        .collect();
    assert!(Round1::<Taproot>::from_bytes(2, 3, &rounds[0].to_bytes().unwrap()).is_err());
    assert!(Round1::<Taproot>::from_bytes(1, 3, b"junk").is_err());
    let (seconds, inboxes) = share_all(rounds, &commitments);
    let seconds: Vec<Round2> = seconds
        .iter()
        .map(|r| Round2::from_bytes(r.me, 3, &r.to_bytes().unwrap()).unwrap())
        .collect();
    assert!(Round2::<Taproot>::from_bytes(3, 3, &seconds[0].to_bytes().unwrap()).is_err());
    let shares: Vec<KeyShare> = seconds
        .iter()
        .map(|second| {
            finish(
                second,
                &others(&commitments, second.me),
                &inboxes[&second.me],
            )
            .unwrap()
            .0
        })
        .collect();
    // A share made again from its secret alone rebuilds the key with another.
    let again: Vec<KeyShare> = shares
        .iter()
        .map(|s| {
            KeyShare::from_secret(
                s.participant(),
                2,
                s.secret_bytes().expose(),
                &s.group_key().unwrap(),
            )
            .unwrap()
        })
        .collect();
    assert_eq!(
        again[1].public_share().unwrap(),
        shares[1].public_share().unwrap()
    );
    let key = rebuild(&again[1..]).unwrap();
    assert_eq!(key.public_key(), shares[0].group_key().unwrap());
    // A share under another group key does not rebuild.
    let other = run::<Taproot>(3, 2);
    let mixed = KeyShare::from_secret(
        1,
        2,
        again[0].secret_bytes().expose(),
        &other[0].group_key().unwrap(),
    )
    .unwrap();
    assert!(rebuild(&[mixed, copy(&other[1])]).is_err());
}

#[test]
fn a_master_secret_generated_over_bls12_381_issues_m_pin_secrets_from_any_t_authorities() {
    use crate::mpin::{self, MpinScalar};
    const ID: &[u8] = b"alice@example.org";
    let shares = run::<Bls12381G1>(5, 3);
    let scalars: Vec<(u32, MpinScalar)> = shares
        .iter()
        .map(|s| {
            (
                u32::from(s.participant()),
                MpinScalar::from_bytes(s.secret_bytes().expose()).unwrap(),
            )
        })
        .collect();
    // Each public share is its secret times G1's generator, compressed.
    for (share, (_, scalar)) in shares.iter().zip(&scalars) {
        let value = <bls12_381_g1::ScalarField as frost_core::Field>::deserialize(
            &share.secret_bytes().expose()[..].try_into().unwrap(),
        )
        .unwrap();
        let g1 = ::bls12_381::G1Affine::from(::bls12_381::G1Projective::generator() * value);
        assert_eq!(share.public_share().unwrap(), g1.to_compressed().to_vec());
        assert_eq!(scalar.to_bytes()[16..], share.secret_bytes().expose()[..]);
    }
    let client_from = |chosen: &[usize]| {
        let parts: Vec<(u32, mpin::G1Point)> = chosen
            .iter()
            .map(|i| (scalars[*i].0, mpin::client_secret(&scalars[*i].1, ID)))
            .collect();
        mpin::recombine_g1_threshold(&parts, 3).unwrap()
    };
    let client = client_from(&[0, 1, 2]);
    assert_eq!(client, client_from(&[2, 3, 4]));
    assert_eq!(client, client_from(&[4, 0, 3]));
    // Two authorities' shares alone give another point.
    let two: Vec<(u32, mpin::G1Point)> = [0usize, 1]
        .iter()
        .map(|i| (scalars[*i].0, mpin::client_secret(&scalars[*i].1, ID)))
        .collect();
    assert!(mpin::recombine_g1_threshold(&two, 3).is_err());
    let server_parts: Vec<(u32, mpin::G2Point)> = [1usize, 3, 4]
        .iter()
        .map(|i| (scalars[*i].0, mpin::server_secret(&scalars[*i].1)))
        .collect();
    let server = mpin::recombine_g2_threshold(&server_parts, 3).unwrap();
    let token = mpin::extract_pin(&client, ID, 1234).unwrap();
    let first = mpin::client_first(&token, ID, 1234, None, None).unwrap();
    let y = MpinScalar::random();
    let v = mpin::client_second(first.state, &y).unwrap();
    mpin::server_check(ID, None, &y, &server, &first.u, &v).unwrap();
    let first = mpin::client_first(&token, ID, 4321, None, None).unwrap();
    let v = mpin::client_second(first.state, &y).unwrap();
    assert!(mpin::server_check(ID, None, &y, &server, &first.u, &v).is_err());
}

#[test]
fn the_two_groups_do_not_take_each_others_messages() {
    let (_, commitments) = deal_all::<Bls12381G1>(3, 2);
    let all: Vec<Vec<u8>> = commitments.values().cloned().collect();
    assert!(public_shares_of::<Taproot>(&all).is_err());
    let (group_key, public_shares) = Scheme::Bls12381.public_shares_of(&all).unwrap();
    assert_eq!(group_key.len(), 48);
    assert!(public_shares.iter().all(|s| s.len() == 48));
}

/// The last part here gives what FROST's own gives, in both groups.
fn same_as_frost<C: Suite>(n: u16, t: u16) {
    let (rounds, commitments) = deal_all::<C>(n, t);
    let (seconds, inboxes) = share_all(rounds, &commitments);
    for second in &seconds {
        let me = second.me;
        let received = super::commitments::<C>(me, n, &others(&commitments, me)).unwrap();
        let shares = decode_all(me, n, &inboxes[&me], "share", |bytes| {
            round2::Package::<C>::deserialize(bytes).ok()
        })
        .unwrap();
        let ours = part3::finish(&second.secret, &received, &shares, me, n).unwrap();
        let theirs = frost_core::keys::dkg::part3(&second.secret, &received, &shares).unwrap();
        assert!(ours == theirs, "participant {me} of {t}-of-{n}");
        let all: Vec<_> = (1..=n)
            .map(|p| {
                round1::Package::<C>::deserialize(&commitments[&p])
                    .unwrap()
                    .commitment()
                    .clone()
            })
            .collect();
        let audited = part3::public_of::<C>(&all.iter().collect::<Vec<_>>()).unwrap();
        assert!(audited == theirs.1);
    }
}

#[test]
fn the_last_part_gives_what_frosts_gives() {
    same_as_frost::<Taproot>(5, 3);
    same_as_frost::<Taproot>(4, 4);
    same_as_frost::<Bls12381G1>(5, 4);
}

#[test]
fn shares_that_fail_together_name_the_dealer_whose_share_fails_alone() {
    let (rounds, commitments) = deal_all::<Bls12381G1>(4, 3);
    let (seconds, mut inboxes) = share_all(rounds, &commitments);
    // Dealer 3's share to participant 1 is dealer 2's.
    let swapped = inboxes[&1][&2].clone();
    inboxes.get_mut(&1).unwrap().insert(3, swapped);
    let failed = finish(&seconds[0], &others(&commitments, 1), &inboxes[&1]).unwrap_err();
    assert!(
        matches!(failed, DkgError::Dealer { culprit: 3, .. }),
        "{failed:?}"
    );
}
