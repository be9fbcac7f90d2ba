//! The custody payloads an order's log carries: each that decodes is its one encoding. The
//! first byte picks the type.
#![no_main]

use dta_protocol::dagcbor::Limits;
use dta_protocol::order::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((which, bytes)) = data.split_first() else {
        return;
    };
    let limits = Limits::default();
    match which % 10 {
        0 => drop(dta_fuzz::round_trip::<OrderRequest>(bytes, limits)),
        1 => drop(dta_fuzz::round_trip::<ShareDeal>(bytes, limits)),
        2 => drop(dta_fuzz::round_trip::<Commitment>(bytes, limits)),
        3 => drop(dta_fuzz::round_trip::<GeneratedKey>(bytes, limits)),
        4 => drop(dta_fuzz::round_trip::<KeyShare>(bytes, limits)),
        5 => drop(dta_fuzz::round_trip::<Certificate>(bytes, limits)),
        6 => drop(dta_fuzz::round_trip::<ReleaseRequest>(bytes, limits)),
        7 => drop(dta_fuzz::round_trip::<ReleaseGrounds>(bytes, limits)),
        8 => drop(dta_fuzz::round_trip::<ShareRelease>(bytes, limits)),
        _ => drop(dta_fuzz::round_trip::<Receipt>(bytes, limits)),
    }
});
