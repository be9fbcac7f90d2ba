//! Signed envelopes: what decodes is its block's one encoding; verified against the fixed
//! identity, its signer is the sender its header names; opening it as that identity fails
//! cleanly or gives the body.
#![no_main]

use dta_protocol::envelope::SignedEnvelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(signed) = SignedEnvelope::decode(data) else {
        return;
    };
    assert_eq!(signed.to_block().unwrap().bytes(), data);
    let me = dta_fuzz::identity();
    let sender = signed.envelope.sender;
    if let Ok(verified) = signed.verify(me.identity()) {
        assert_eq!(verified.envelope().sender, sender);
        assert_eq!(sender, me.identity().cid());
        let _ = verified.open(me);
    }
});
