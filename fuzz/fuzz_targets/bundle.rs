//! Bundles of envelopes (one sender's `prev` chain): what decodes has one sender, each
//! envelope linking to the one before, and the newest last.
#![no_main]

use dta_protocol::envelope::{Bundle, SignedEnvelope};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let blocks = dta_fuzz::pieces(data, 9);
    let Ok(bundle) = Bundle::decode(&blocks) else {
        return;
    };
    assert!(blocks.len() <= dta_protocol::envelope::MAX_BUNDLE);
    let newest = blocks.last().unwrap();
    assert_eq!(
        bundle.newest().1.envelope,
        SignedEnvelope::decode(newest).unwrap().envelope
    );
    for pair in blocks.windows(2) {
        assert!(Bundle::links(pair[0], pair[1]));
    }
    for block in &blocks {
        assert_eq!(
            SignedEnvelope::decode(block).unwrap().envelope.sender,
            bundle.sender()
        );
    }
});
