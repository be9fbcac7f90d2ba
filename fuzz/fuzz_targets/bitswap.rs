//! Bitswap 1.2.0 messages as peers send them (a protobuf body, or a length-prefixed frame):
//! every block that decodes is under the CID its bytes hash to, and a decoded message framed
//! again reads back the same, using the whole frame.
#![no_main]

use dta_protocol::bitswap::{Message, block_cid, prefix_of};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for decoded in [
        Message::decode_body(data).ok(),
        Message::decode_frame(data).ok().flatten().map(|(m, _)| m),
    ]
    .into_iter()
    .flatten()
    {
        for (cid, bytes) in &decoded.blocks {
            let prefix = dta_protocol::bitswap::Prefix::decode(&prefix_of(cid)).unwrap();
            assert_eq!(block_cid(&prefix, bytes).unwrap(), *cid);
        }
        let framed = decoded.encode_frame();
        let (framed_again, used) = Message::decode_frame(&framed).unwrap().unwrap();
        assert_eq!((framed_again, used), (decoded, framed.len()));
    }
});
