use std::collections::BTreeMap;

use super::*;

/// Every participant's part 1: their rounds and commitments.
fn deal_all(n: u16, t: u16) -> (Vec<Round1>, BTreeMap<Participant, Vec<u8>>) {
    let mut rounds = Vec::new();
    let mut commitments = BTreeMap::new();
    for me in 1..=n {
        let (round, commitment) = deal(me, n, t).expect("deal");
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
fn share_all(
    rounds: Vec<Round1>,
    commitments: &BTreeMap<Participant, Vec<u8>>,
) -> (Vec<Round2>, Inboxes) {
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

fn run(n: u16, t: u16) -> Vec<KeyShare> {
    let (rounds, commitments) = deal_all(n, t);
    let (seconds, inboxes) = share_all(rounds, &commitments);
    let finished: Vec<(KeyShare, PublicShares)> = seconds
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
    let (group_key, audited) = public_shares_of(&all).expect("public shares");
    assert_eq!(audited, finished[0].1);
    assert_eq!(&group_key, finished[0].0.group_key());
    for (share, public_shares) in &finished {
        assert_eq!(public_shares, &finished[0].1);
        assert_eq!(
            public_shares[usize::from(share.participant()) - 1],
            share.public_share().unwrap()
        );
    }
    finished.into_iter().map(|(share, _)| share).collect()
}

fn copy(share: &KeyShare) -> KeyShare {
    KeyShare::from_bytes(share.participant(), &share.to_bytes().unwrap()).unwrap()
}

#[test]
fn any_t_shares_rebuild_the_group_key_and_fewer_do_not() {
    let shares = run(5, 3);
    let group = shares[0].group_key().to_compressed();
    assert!(
        shares
            .iter()
            .all(|s| s.group_key().to_compressed() == group)
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
    let first = run(3, 2);
    let second = run(3, 2);
    assert_ne!(
        first[0].group_key().to_compressed(),
        second[0].group_key().to_compressed()
    );
    assert_eq!(
        rebuild(&[copy(&first[0]), copy(&second[1])]).unwrap_err(),
        DkgError::Rebuild("the shares are of different keys")
    );
}

#[test]
fn a_share_keeps_its_participant_and_refuses_tampering() {
    let shares = run(3, 2);
    let bytes = shares[1].to_bytes().unwrap();
    let back = KeyShare::from_bytes(2, &bytes).unwrap();
    assert_eq!(
        back.public_share().unwrap(),
        shares[1].public_share().unwrap()
    );
    assert!(matches!(
        KeyShare::from_bytes(3, &bytes),
        Err(DkgError::Malformed { from: 3, .. })
    ));
    // The signing share sits before the public share and group key: change its last byte.
    let mut tampered = bytes.to_vec();
    let at = tampered.len() - 33 - 33 - 1 - 1;
    tampered[at] ^= 1;
    assert!(KeyShare::from_bytes(2, &tampered).is_err());
    assert!(KeyShare::from_bytes(2, &bytes[..bytes.len() - 1]).is_err());
    let printed = format!("{:?}", shares[1]);
    assert!(printed.contains("participant: 2"), "{printed}");
}

#[test]
fn a_bad_share_names_its_dealer() {
    let (rounds, commitments) = deal_all(4, 3);
    let (seconds, mut inboxes) = share_all(rounds, &commitments);
    // Dealer 2 sends participant 1 a share off by one in its last byte.
    let share = inboxes.get_mut(&1).unwrap().get_mut(&2).unwrap();
    let last = share.len() - 1;
    share[last] ^= 1;
    // Revealed, the bad share fails its dealer's commitment for anyone; a good one fits.
    assert_eq!(share_fits(&commitments[&2], 1, &inboxes[&1][&2]), Ok(false));
    assert_eq!(share_fits(&commitments[&3], 1, &inboxes[&1][&3]), Ok(true));
    assert_eq!(share_fits(&commitments[&3], 2, &inboxes[&1][&3]), Ok(false));
    assert!(share_fits(b"junk", 1, &inboxes[&1][&3]).is_err());
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
    let (mut rounds, mut commitments) = deal_all(3, 2);
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
    let (_, commitments) = deal_all(3, 2);
    let (_, other_run) = deal_all(3, 2);
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
        deal(1, 3, 1),
        Err(DkgError::Parameters { threshold: 1, .. })
    ));
    assert!(matches!(
        deal(1, 3, 4),
        Err(DkgError::Parameters { threshold: 4, .. })
    ));
    assert!(matches!(deal(0, 3, 2), Err(DkgError::Parameters { .. })));
    assert!(matches!(deal(4, 3, 2), Err(DkgError::Parameters { .. })));

    let (mut rounds, commitments) = deal_all(3, 2);
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
    let (round, _) = deal(1, 3, 2).unwrap();
    assert_eq!(format!("{round:?}"), "Round1(participant 1, <redacted>)");
}

#[test]
fn a_run_resumes_from_its_kept_round_secrets() {
    let (rounds, commitments) = deal_all(3, 2);
    // Every participant's first round goes through bytes (a restart between the parts).
    let rounds: Vec<Round1> = rounds
        .iter()
        .map(|r| Round1::from_bytes(r.me, 3, &r.to_bytes().unwrap()).unwrap())
        .collect();
    assert!(Round1::from_bytes(2, 3, &rounds[0].to_bytes().unwrap()).is_err());
    assert!(Round1::from_bytes(1, 3, b"junk").is_err());
    let (seconds, inboxes) = share_all(rounds, &commitments);
    let seconds: Vec<Round2> = seconds
        .iter()
        .map(|r| Round2::from_bytes(r.me, 3, &r.to_bytes().unwrap()).unwrap())
        .collect();
    assert!(Round2::from_bytes(3, 3, &seconds[0].to_bytes().unwrap()).is_err());
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
            KeyShare::from_secret(s.participant(), 2, s.secret_bytes().expose(), s.group_key())
                .unwrap()
        })
        .collect();
    assert_eq!(
        again[1].public_share().unwrap(),
        shares[1].public_share().unwrap()
    );
    let key = rebuild(&again[1..]).unwrap();
    assert_eq!(key.public_key(), *shares[0].group_key());
    // A share under another group key does not rebuild.
    let other = run(3, 2);
    let mixed = KeyShare::from_secret(1, 2, again[0].secret_bytes().expose(), other[0].group_key())
        .unwrap();
    assert!(rebuild(&[mixed, copy(&other[1])]).is_err());
}
