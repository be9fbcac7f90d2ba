//! Identity documents: one that verifies is the one encoding of its document, and its CID is
//! the hash of exactly those bytes; a rotated one checked against the fixed identity, and a
//! revocation checked against it, never panic, and what passes is the one encoding.
#![no_main]

use dta_protocol::dagcbor::{self, Limits};
use dta_protocol::identity::IdentityDocument;
use dta_protocol::revocation::Revocation;
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
    let fixed = dta_fuzz::identity().identity();
    if let Ok(document) = dagcbor::decode::<IdentityDocument>(data, Limits::default())
        && let Ok(rotated) = document.verify_successor(fixed)
    {
        assert_eq!(dagcbor::encode(rotated.document()).unwrap(), data);
        assert_eq!(rotated.cid(), fixed.cid());
    }
    let _ = dta_fuzz::round_trip::<Revocation>(data, Limits::default());
    if let Ok(revocation) = Revocation::decode(data)
        && let Ok(verified) = revocation.verify(fixed)
    {
        assert_eq!(verified.bytes(), data);
    }
});
