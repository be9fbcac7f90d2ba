//! The request-response protocol's messages and head announcements, decoded with the wire's
//! size limits: each that decodes is its one encoding. The wire codec itself reads any bytes
//! as a request or a refusal (never a panic), and a request it reads, written again, reads
//! back the same.
#![no_main]

use dta_protocol::dagcbor::Limits;
use dta_protocol::network::{HeadAnnouncement, MAX_REQUEST_SIZE, RPC_PROTOCOL, Request, Response};
use dta_protocol::rpc_codec::{RpcCodec, decode_request};
use libp2p::futures::executor::block_on;
use libp2p::request_response::Codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((which, bytes)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_size: MAX_REQUEST_SIZE as usize,
        ..Limits::default()
    };
    match which % 4 {
        0 => drop(dta_fuzz::round_trip::<Request>(bytes, limits)),
        1 => drop(dta_fuzz::round_trip::<Response>(bytes, limits)),
        2 => drop(dta_fuzz::round_trip::<HeadAnnouncement>(bytes, limits)),
        _ => {
            let mut codec = RpcCodec::default();
            if let Ok(Ok(request)) = block_on(decode_request(&mut codec, bytes)) {
                let mut written = Vec::new();
                block_on(codec.write_request(&RPC_PROTOCOL, &mut written, Ok(request.clone())))
                    .expect("a request read is written");
                let again = block_on(decode_request(&mut codec, &written));
                assert_eq!(again.ok(), Some(Ok(request)), "read, written, read again");
            }
        }
    }
});
