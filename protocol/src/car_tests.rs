use super::*;
use crate::block::{DAG_CBOR, RAW, cid_of};

fn blocks() -> Vec<(Cid, Vec<u8>)> {
    let empty_directory = vec![0x0a, 0x02, 0x08, 0x01];
    vec![
        (cid_of(RAW, b"raw"), b"raw".to_vec()),
        (cid_of(DAG_CBOR, &[0xa0]), vec![0xa0]),
        (
            "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
                .parse()
                .unwrap(),
            empty_directory,
        ),
    ]
}

#[test]
fn the_header_is_the_specified_dag_cbor_map() {
    let root = cid_of(RAW, b"raw");
    let car = write(&[root], &[]).unwrap();
    // {"roots": [link], "version": 1}, the link as tag 42 over a 0x00-prefixed binary CID.
    let mut header = vec![0xa2, 0x65];
    header.extend_from_slice(b"roots");
    header.extend_from_slice(&[0x81, 0xd8, 0x2a, 0x58, 0x25, 0x00]);
    header.extend_from_slice(&root.to_bytes());
    header.push(0x67);
    header.extend_from_slice(b"version");
    header.push(0x01);
    let mut expected = vec![header.len() as u8];
    expected.extend_from_slice(&header);
    assert_eq!(car, expected);
}

#[test]
fn an_archive_reads_back_as_written() {
    let blocks = blocks();
    let roots = vec![blocks[0].0, blocks[2].0];
    let bytes = write(&roots, &blocks).unwrap();
    let car = read(&bytes).unwrap();
    assert_eq!(car.roots, roots);
    assert_eq!(car.blocks, blocks);
    // A section is the varint length, the binary CID, then the bytes.
    let first = &blocks[0];
    let mut section = vec![(first.0.to_bytes().len() + first.1.len()) as u8];
    section.extend_from_slice(&first.0.to_bytes());
    section.extend_from_slice(&first.1);
    assert!(
        bytes
            .windows(section.len())
            .any(|w| w == section.as_slice())
    );
}

#[test]
fn damaged_archives_are_refused_whole() {
    let blocks = blocks();
    let bytes = write(&[blocks[0].0], &blocks).unwrap();
    // A flipped byte in the last block's data.
    let mut corrupted = bytes.clone();
    let last = corrupted.len() - 1;
    corrupted[last] ^= 0x01;
    assert!(matches!(read(&corrupted), Err(CarError::Mismatch(_))));
    // Cut short anywhere after the header.
    let header_end = 1 + bytes[0] as usize;
    for cut in [header_end + 1, bytes.len() - 1] {
        assert!(
            matches!(read(&bytes[..cut]), Err(CarError::Section(_))),
            "cut {cut}"
        );
    }
    // Another version, no header, garbage.
    let v2 = {
        let header = dagcbor::encode(&Header {
            roots: Vec::new(),
            version: 2,
        })
        .unwrap();
        let mut out = vec![header.len() as u8];
        out.extend_from_slice(&header);
        out
    };
    assert!(matches!(read(&v2), Err(CarError::Header(_))));
    assert!(read(&[]).is_err());
    assert!(read(&[0x03, 0xff, 0xff, 0xff]).is_err());
    // A CID with another hash function.
    let mut header_only = write(&[], &[]).unwrap();
    let identity_cid = Cid::new_v1(
        RAW,
        cid::multihash::Multihash::<64>::wrap(0x00, b"x").unwrap(),
    );
    let cid_bytes = identity_cid.to_bytes();
    header_only.push((cid_bytes.len() + 1) as u8);
    header_only.extend_from_slice(&cid_bytes);
    header_only.push(b'x');
    assert!(matches!(read(&header_only), Err(CarError::Cid(_, _))));
}
