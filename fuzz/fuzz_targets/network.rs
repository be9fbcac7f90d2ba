//! The request-response protocol's messages and head announcements, decoded with the wire's
//! size limits: each that decodes is its one encoding.
#![no_main]

use dta_protocol::dagcbor::Limits;
use dta_protocol::network::{HeadAnnouncement, MAX_REQUEST_SIZE, Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((which, bytes)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_size: MAX_REQUEST_SIZE as usize,
        ..Limits::default()
    };
    match which % 3 {
        0 => drop(dta_fuzz::round_trip::<Request>(bytes, limits)),
        1 => drop(dta_fuzz::round_trip::<Response>(bytes, limits)),
        _ => drop(dta_fuzz::round_trip::<HeadAnnouncement>(bytes, limits)),
    }
});
