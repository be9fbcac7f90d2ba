//! Strict DAG-CBOR: whatever the validator accepts decodes as a generic IPLD value, encodes to
//! exactly the same bytes, and its links are found; whatever it refuses the typed decoder
//! refuses too.
#![no_main]

use dta_protocol::dagcbor::{self, Limits};
use ipld_core::ipld::Ipld;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let valid = dagcbor::validate(data, limits).is_ok();
    let decoded = dta_fuzz::round_trip::<Ipld>(data, limits);
    assert_eq!(valid, decoded.is_some(), "validate and decode disagree");
    if valid {
        let cid = dta_protocol::block::cid_of(dta_protocol::block::DAG_CBOR, data);
        dta_protocol::links::links(&cid, data).expect("a valid block's links");
    }
});
