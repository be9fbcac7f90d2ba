use std::collections::HashMap;

use dta_protocol::block::{RAW, cid_of};

use super::*;

#[derive(Debug, Default)]
struct Blocks(HashMap<Cid, Vec<u8>>);

impl BlockSource for Blocks {
    fn block(&self, cid: &Cid) -> Option<Vec<u8>> {
        self.0.get(cid).cloned()
    }
}

fn want(cid: Cid, want_type: WantType, send_dont_have: bool) -> Want {
    Want {
        cid,
        priority: 1,
        cancel: false,
        want_type,
        send_dont_have,
    }
}

/// A message carrying one block.
fn block_message(cid: Cid, data: &[u8]) -> Message {
    Message {
        blocks: vec![(cid, data.to_vec())],
        ..Message::default()
    }
}

/// A message carrying one block presence.
fn presence_message(cid: Cid, presence: Presence) -> Message {
    Message {
        presences: vec![(cid, presence)],
        ..Message::default()
    }
}

/// An engine state with no fetches, no streams, and the given peer scores.
fn engine_state(behaviour: &libp2p_stream::Behaviour, delivered: HashMap<PeerId, u64>) -> State {
    State {
        control: behaviour.new_control(),
        outboxes: HashMap::new(),
        fetches: HashMap::new(),
        delivered,
        recent: RecentBlocks::default(),
        cancel: CancellationToken::new(),
        metrics: Default::default(),
    }
}

#[test]
fn wants_are_answered_with_blocks_and_presences() {
    let here = cid_of(RAW, b"here");
    let missing = cid_of(RAW, b"missing");
    let blocks = Blocks([(here, b"here".to_vec())].into());
    let answers = answer(
        &[
            want(here, WantType::Block, true),
            want(here, WantType::Have, true),
            want(missing, WantType::Block, true),
            want(missing, WantType::Have, false),
        ],
        &blocks,
    );
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].blocks, vec![(here, b"here".to_vec())]);
    assert_eq!(
        answers[0].presences,
        vec![(here, Presence::Have), (missing, Presence::DontHave)]
    );
    // Nothing to say: no message at all.
    assert!(answer(&[want(missing, WantType::Block, false)], &blocks).is_empty());
}

#[test]
fn large_answers_are_split_under_the_message_cap() {
    let big = vec![7u8; MAX_BLOCK_SIZE * 3 / 4];
    let cids: Vec<Cid> = (0..3u8)
        .map(|i| {
            let mut data = big.clone();
            data[0] = i;
            cid_of(RAW, &data)
        })
        .collect();
    let blocks = Blocks(
        cids.iter()
            .enumerate()
            .map(|(i, cid)| {
                let mut data = big.clone();
                data[0] = i as u8;
                (*cid, data)
            })
            .collect(),
    );
    let wants: Vec<Want> = cids
        .iter()
        .map(|c| want(*c, WantType::Block, true))
        .collect();
    let answers = answer(&wants, &blocks);
    assert_eq!(
        answers.len(),
        2,
        "two 1.5 MiB blocks fit one 4 MiB message, not three"
    );
    for message in &answers {
        assert!(message.encode_frame().len() <= MAX_MESSAGE_SIZE);
    }
    assert_eq!(answers.iter().map(|m| m.blocks.len()).sum::<usize>(), 3);
}

#[test]
fn a_fetch_gives_up_when_every_peer_refuses_and_takes_the_first_right_block() {
    let peers = [PeerId::random(), PeerId::random()];
    let cid = cid_of(RAW, b"wanted");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let behaviour = libp2p_stream::Behaviour::new();
        let mut state = engine_state(&behaviour, HashMap::new());
        let connected: HashSet<PeerId> = peers.iter().copied().collect();
        // Both refuse: not found.
        let (reply, answer) = oneshot::channel();
        state.fetch(cid, reply, &peers);
        for peer in peers {
            state.on_message(peer, presence_message(cid, Presence::DontHave));
        }
        state.expire(&connected);
        assert_eq!(
            answer.await.unwrap(),
            Err(FetchError::NotFound(cid.to_string()))
        );

        // One refuses, the other sends the block; a block nobody asked for is dropped.
        let (reply, answer) = oneshot::channel();
        state.fetch(cid, reply, &peers);
        let other = cid_of(RAW, b"unasked");
        state.on_message(
            peers[1],
            Message {
                blocks: vec![(other, b"unasked".to_vec()), (cid, b"wanted".to_vec())],
                ..Message::default()
            },
        );
        assert_eq!(answer.await.unwrap(), Ok(b"wanted".to_vec()));
        assert!(state.fetches.is_empty());
        // Only the block that was asked for counts as fetched.
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(load(&state.metrics.bitswap_blocks_received), 1);
        assert_eq!(load(&state.metrics.bitswap_bytes_received), 6);

        // One refuses, the other sends bytes that hash to something else (same prefix): the
        // fetch ends as rejected, not as missing.
        let duplicate = cid_of(RAW, b"wanted");
        let wanted = cid_of(RAW, b"the real bytes");
        let (reply, answer) = oneshot::channel();
        state.fetch(wanted, reply, &peers);
        state.on_message(peers[0], presence_message(wanted, Presence::DontHave));
        // A late duplicate of a block fetched above is not held against anyone.
        state.on_message(peers[1], block_message(duplicate, b"wanted"));
        state.expire(&connected);
        assert!(state.fetches[&wanted].rejected.is_empty());
        let bad = cid_of(RAW, b"tampered");
        state.on_message(peers[1], block_message(bad, b"tampered"));
        state.expire(&connected);
        assert_eq!(
            answer.await.unwrap(),
            Err(FetchError::Rejected {
                cid: wanted.to_string(),
                peers: 1
            })
        );

        // No peers: not found at once.
        let (reply, answer) = oneshot::channel();
        state.fetch(cid, reply, &[]);
        assert!(matches!(
            answer.await.unwrap(),
            Err(FetchError::NotFound(_))
        ));
    });
}

#[test]
fn the_block_is_asked_of_one_peer_and_of_a_peer_that_has_it_when_that_one_refuses() {
    let peers = [PeerId::random(), PeerId::random(), PeerId::random()];
    let cid = cid_of(RAW, b"sought");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let behaviour = libp2p_stream::Behaviour::new();
        let mut state = engine_state(&behaviour, HashMap::from([(peers[1], 3), (peers[2], 2)]));
        let connected: HashSet<PeerId> = peers.iter().copied().collect();
        let (reply, answer) = oneshot::channel();
        state.fetch(cid, reply, &peers);
        // The peer that delivered most is asked for the block; the others only whether they
        // have it.
        assert_eq!(state.fetches[&cid].block_asked, HashSet::from([peers[1]]));
        let presence = |presence| presence_message(cid, presence);
        // A HAVE while the asked peer may still answer changes nothing...
        state.on_message(peers[0], presence(Presence::Have));
        assert_eq!(state.fetches[&cid].block_asked, HashSet::from([peers[1]]));
        // ...until it says DONT_HAVE: then the peer that has it is asked.
        state.on_message(peers[1], presence(Presence::DontHave));
        assert_eq!(
            state.fetches[&cid].block_holder(),
            Some(peers[0]),
            "{:?}",
            state.fetches[&cid].block_asked
        );
        // Unanswered for a while: want-block again to the holders, nothing to the refuser.
        state.fetches.get_mut(&cid).unwrap().sent = Instant::now() - RESEND_AFTER;
        state.expire(&connected);
        assert!(!state.fetches[&cid].block_asked.contains(&peers[2]));
        // The block arrives from the peer that had it; it now ranks higher.
        state.on_message(peers[0], block_message(cid, b"sought"));
        assert_eq!(answer.await.unwrap(), Ok(b"sought".to_vec()));
        assert_eq!(state.delivered[&peers[0]], 1);

        // The refusal halved the first peer's score (3 to 1): the next block is asked of the
        // third (2). When it refuses too, a resend asks one of the silent peers for the block.
        assert_eq!(state.delivered[&peers[1]], 1);
        let other = cid_of(RAW, b"other");
        let (reply, _answer) = oneshot::channel();
        state.fetch(other, reply, &peers);
        assert_eq!(state.fetches[&other].block_holder(), Some(peers[2]));
        state.on_message(peers[2], presence_message(other, Presence::DontHave));
        assert_eq!(state.fetches[&other].block_holder(), None);
        state.fetches.get_mut(&other).unwrap().sent = Instant::now() - RESEND_AFTER;
        state.expire(&connected);
        let holder = state.fetches[&other].block_holder();
        assert!(
            holder == Some(peers[0]) || holder == Some(peers[1]),
            "{holder:?}"
        );
    });
}
