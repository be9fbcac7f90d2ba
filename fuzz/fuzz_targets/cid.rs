//! CIDs as text and as bytes: what parses prints back to a text that parses to the same CID,
//! and its bytes read back to it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(cid) = dta_protocol::block::parse_cid(text)
    {
        let again = dta_protocol::block::parse_cid(&cid.to_string()).expect("a printed CID parses");
        assert_eq!(again, cid);
    }
    if let Ok(cid) = cid::Cid::read_bytes(data) {
        assert_eq!(
            cid::Cid::read_bytes(cid.to_bytes().as_slice()).unwrap(),
            cid
        );
    }
});
