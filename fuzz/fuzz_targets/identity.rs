//! Identity documents: one that verifies is the one encoding of its document, and its CID is
//! the hash of exactly those bytes.
#![no_main]

use dta_protocol::dagcbor::{self, Limits};
use dta_protocol::identity::IdentityDocument;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dta_fuzz::round_trip::<IdentityDocument>(data, Limits::default());
    if let Ok(verified) = IdentityDocument::decode_verified(data) {
        assert_eq!(dagcbor::encode(verified.document()).unwrap(), data);
        assert_eq!(
            verified.cid(),
            dta_protocol::block::cid_of(dta_protocol::block::DAG_CBOR, data)
        );
    }
});
