use super::*;

#[test]
fn cid_versions_parse() {
    // Names of shared fixtures: a CIDv0 (dag-pb) and a CIDv1 raw block.
    let v0 = parse_cid("QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY").unwrap();
    assert_eq!(v0.version(), cid::Version::V0);
    assert_eq!(v0.codec(), DAG_PB);
    let v1 = parse_cid("bafkreiebzrnroamgos2adnbpgw5apo3z4iishhbdx77gldnbk57d4zdio4").unwrap();
    assert_eq!(v1.codec(), RAW);
    assert!(matches!(
        parse_cid("not a cid"),
        Err(CidError::Malformed(_))
    ));
    // A CIDv1 with a blake2b-256 multihash (0xb220) is not something dta can check.
    let blake = "bafk2bzacecmhnbmcvj3mq2ke5xsjhcwmuwudzeyboffsu4ceyojqqpixbu2te";
    assert!(matches!(
        parse_cid(blake),
        Err(CidError::UnsupportedHash(0xb220))
    ));
}

#[test]
fn received_blocks_must_match_their_cid() {
    let block = Block::encode(&vec![1u64, 2, 3]).unwrap();
    let again = Block::verified(block.cid(), block.bytes().to_vec(), Limits::default()).unwrap();
    assert_eq!(again, block);
    let mut altered = block.bytes().to_vec();
    altered[1] ^= 1;
    assert_eq!(
        Block::verified(block.cid(), altered, Limits::default()),
        Err(BlockError::HashMismatch(block.cid().to_string()))
    );
    // Non-canonical bytes named by their own (correct) dag-cbor CID are still refused.
    let non_canonical = vec![0x18, 0x01];
    let cid = cid_of(DAG_CBOR, &non_canonical);
    assert!(matches!(
        Block::verified(cid, non_canonical.clone(), Limits::default()),
        Err(BlockError::NotCanonical { .. })
    ));
    // The same bytes as a raw block are just bytes.
    Block::verified(
        cid_of(RAW, &non_canonical),
        non_canonical,
        Limits::default(),
    )
    .unwrap();
}
