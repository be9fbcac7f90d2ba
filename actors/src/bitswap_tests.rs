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
        let mut state = State {
            control: behaviour.new_control(),
            outboxes: HashMap::new(),
            fetches: HashMap::new(),
            cancel: CancellationToken::new(),
        };
        let connected: HashSet<PeerId> = peers.iter().copied().collect();
        // Both refuse: not found.
        let (reply, answer) = oneshot::channel();
        state.fetch(cid, reply, &peers);
        for peer in peers {
            state.on_message(
                peer,
                Message {
                    presences: vec![(cid, Presence::DontHave)],
                    ..Message::default()
                },
            );
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

        // No peers: not found at once.
        let (reply, answer) = oneshot::channel();
        state.fetch(cid, reply, &[]);
        assert!(matches!(
            answer.await.unwrap(),
            Err(FetchError::NotFound(_))
        ));
    });
}
