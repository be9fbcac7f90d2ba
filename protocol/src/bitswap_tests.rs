use proptest::prelude::*;

use super::*;
use crate::block::{DAG_CBOR, RAW, cid_of};

/// The empty UnixFS directory, a block every IPFS implementation knows by this CIDv0.
const EMPTY_DIRECTORY: [u8; 4] = [0x0a, 0x02, 0x08, 0x01];
const EMPTY_DIRECTORY_CID: &str = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn";

fn sample() -> Message {
    let raw = b"raw bytes".to_vec();
    let cbor = vec![0xa1, 0x61, 0x61, 0x01]; // {"a": 1}
    Message {
        wants: vec![
            Want {
                cid: cid_of(RAW, b"wanted"),
                priority: 7,
                cancel: false,
                want_type: WantType::Have,
                send_dont_have: true,
            },
            Want {
                cid: EMPTY_DIRECTORY_CID.parse().unwrap(),
                priority: 1,
                cancel: true,
                want_type: WantType::Block,
                send_dont_have: false,
            },
        ],
        full_wantlist: true,
        blocks: vec![
            (cid_of(RAW, &raw), raw),
            (cid_of(DAG_CBOR, &cbor), cbor),
            (
                EMPTY_DIRECTORY_CID.parse().unwrap(),
                EMPTY_DIRECTORY.to_vec(),
            ),
        ],
        presences: vec![
            (cid_of(RAW, b"have"), Presence::Have),
            (cid_of(RAW, b"missing"), Presence::DontHave),
        ],
    }
}

#[test]
fn a_message_survives_its_frame() {
    let message = sample();
    let frame = message.encode_frame();
    let (decoded, used) = Message::decode_frame(&frame).unwrap().unwrap();
    assert_eq!(used, frame.len());
    assert_eq!(decoded, message);
    // Two frames back to back are read one at a time.
    let mut two = frame.clone();
    two.extend_from_slice(&frame);
    let (_, used) = Message::decode_frame(&two).unwrap().unwrap();
    assert_eq!(used, frame.len());
    // Any strict prefix of a frame asks for more bytes.
    for cut in [0, 1, frame.len() / 2, frame.len() - 1] {
        assert_eq!(
            Message::decode_frame(&frame[..cut]).unwrap(),
            None,
            "cut {cut}"
        );
    }
}

#[test]
fn the_wire_layout_follows_the_specification() {
    // One want-have entry with send-dont-have, written out field by field.
    let cid = cid_of(RAW, b"wanted");
    let message = Message {
        wants: vec![Want {
            cid,
            priority: 1,
            cancel: false,
            want_type: WantType::Have,
            send_dont_have: true,
        }],
        ..Message::default()
    };
    let cid_bytes = cid.to_bytes();
    let mut entry = vec![0x0a, cid_bytes.len() as u8];
    entry.extend_from_slice(&cid_bytes);
    entry.extend_from_slice(&[0x10, 0x01, 0x20, 0x01, 0x28, 0x01]);
    let mut wantlist = vec![0x0a, entry.len() as u8];
    wantlist.extend_from_slice(&entry);
    let mut expected = vec![0x0a, wantlist.len() as u8];
    expected.extend_from_slice(&wantlist);
    let mut frame = vec![expected.len() as u8];
    frame.extend_from_slice(&expected);
    assert_eq!(message.encode_frame(), frame);

    // A block with its prefix, and a DONT_HAVE presence.
    let block = Message {
        blocks: vec![(cid_of(RAW, b"x"), b"x".to_vec())],
        presences: vec![(cid, Presence::DontHave)],
        ..Message::default()
    };
    let body = &block.encode_frame()[1..];
    let mut expected = vec![
        0x1a, 0x09, 0x0a, 0x04, 0x01, 0x55, 0x12, 0x20, 0x12, 0x01, b'x',
    ];
    expected.extend_from_slice(&[0x22, cid_bytes.len() as u8 + 4, 0x0a]);
    expected.push(cid_bytes.len() as u8);
    expected.extend_from_slice(&cid_bytes);
    expected.extend_from_slice(&[0x10, 0x01]);
    assert_eq!(body, expected.as_slice());
}

#[test]
fn prefixes_and_block_cids_match_known_ones() {
    assert_eq!(Prefix::V0.encode(), [0x00, 0x70, 0x12, 0x20]);
    let v1 = cid_of(DAG_CBOR, b"doc");
    assert_eq!(prefix_of(&v1), [0x01, 0x71, 0x12, 0x20]);
    assert_eq!(Prefix::decode(&prefix_of(&v1)).unwrap().codec, DAG_CBOR);
    assert_eq!(
        block_cid(&Prefix::V0, &EMPTY_DIRECTORY)
            .unwrap()
            .to_string(),
        EMPTY_DIRECTORY_CID
    );
    // Bitswap 1.0.0 blocks (no prefix) are CIDv0.
    let old = wire::Message {
        blocks: vec![EMPTY_DIRECTORY.to_vec()],
        ..wire::Message::default()
    };
    let checked = Message::from_wire(old).unwrap();
    assert_eq!(checked.blocks[0].0.to_string(), EMPTY_DIRECTORY_CID);
}

#[test]
fn bad_messages_and_blocks_are_refused() {
    // A CIDv0 that is not dag-pb, a hash other than sha2-256, trailing prefix bytes.
    let v0_raw = Prefix {
        codec: RAW,
        ..Prefix::V0
    };
    assert!(block_cid(&v0_raw, b"x").is_err());
    let blake = Prefix {
        hash: 0x1e,
        ..Prefix::V0
    };
    assert_eq!(
        block_cid(&blake, b"x"),
        Err(BitswapError::UnsupportedHash(0x1e))
    );
    assert!(Prefix::decode(&[0x01, 0x55, 0x12, 0x20, 0x00]).is_err());
    assert!(Prefix::decode(&[0x01, 0x55]).is_err());
    let huge = vec![0u8; MAX_BLOCK_SIZE + 1];
    assert_eq!(
        block_cid(&Prefix::V0, &huge),
        Err(BitswapError::BlockTooLarge(MAX_BLOCK_SIZE + 1))
    );
    // A length prefix over the cap, garbage, unknown types, too many wants.
    let mut length = unsigned_varint::encode::usize_buffer();
    let oversized = unsigned_varint::encode::usize(MAX_MESSAGE_SIZE + 1, &mut length);
    assert_eq!(
        Message::decode_frame(oversized),
        Err(BitswapError::TooLarge(MAX_MESSAGE_SIZE + 1))
    );
    assert!(matches!(
        Message::decode_body(&[0xff, 0xff, 0xff]),
        Err(BitswapError::Decode(_))
    ));
    let mut wire = sample().to_wire();
    wire.block_presences[0].r#type = 9;
    assert_eq!(
        Message::from_wire(wire),
        Err(BitswapError::UnknownType("presence", 9))
    );
    let mut wire = sample().to_wire();
    if let Some(wantlist) = wire.wantlist.as_mut() {
        wantlist.entries[0].block = vec![0x01, 0x02];
    }
    assert!(matches!(
        Message::from_wire(wire),
        Err(BitswapError::Cid(_))
    ));
    let mut wire = sample().to_wire();
    if let Some(wantlist) = wire.wantlist.as_mut() {
        let entry = wantlist.entries[0].clone();
        wantlist.entries = vec![entry; MAX_WANTLIST_ENTRIES + 1];
    }
    assert_eq!(
        Message::from_wire(wire),
        Err(BitswapError::TooManyWants(MAX_WANTLIST_ENTRIES + 1))
    );
}

proptest! {
    /// A block's CID always comes from its bytes: changing any byte changes the CID, so a
    /// receiver that only keeps blocks whose CID it asked for never keeps a corrupted one.
    #[test]
    fn any_flipped_bit_changes_the_block_cid(
        data in proptest::collection::vec(any::<u8>(), 1..512),
        index in any::<usize>(),
        bit in 0u8..8,
    ) {
        let prefix = Prefix::decode(&prefix_of(&cid_of(RAW, b""))).unwrap();
        let cid = block_cid(&prefix, &data).unwrap();
        prop_assert_eq!(cid, cid_of(RAW, &data));
        let mut corrupted = data.clone();
        let at = index % corrupted.len();
        corrupted[at] ^= 1 << bit;
        prop_assert_ne!(block_cid(&prefix, &corrupted).unwrap(), cid);
    }
}
