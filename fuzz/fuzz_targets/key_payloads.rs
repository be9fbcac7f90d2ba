//! The payloads of keys made without a dealer and of shares dealt anew: each that decodes is
//! its one encoding. The first byte picks the type.
#![no_main]

use dta_protocol::dagcbor::Limits;
use dta_protocol::dkg::*;
use dta_protocol::reshare::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((which, bytes)) = data.split_first() else {
        return;
    };
    let limits = Limits::default();
    match which % 11 {
        0 => drop(dta_fuzz::round_trip::<DkgCommitment>(bytes, limits)),
        1 => drop(dta_fuzz::round_trip::<DkgRound>(bytes, limits)),
        2 => drop(dta_fuzz::round_trip::<DkgShare>(bytes, limits)),
        3 => drop(dta_fuzz::round_trip::<DkgComplaint>(bytes, limits)),
        4 => drop(dta_fuzz::round_trip::<DkgAbort>(bytes, limits)),
        5 => drop(dta_fuzz::round_trip::<DkgAbandon>(bytes, limits)),
        6 => drop(dta_fuzz::round_trip::<ReshareRequest>(bytes, limits)),
        7 => drop(dta_fuzz::round_trip::<ShareDeleted>(bytes, limits)),
        8 => drop(dta_fuzz::round_trip::<ReshareCommitments>(bytes, limits)),
        9 => drop(dta_fuzz::round_trip::<ReshareSubShare>(bytes, limits)),
        _ => drop(dta_fuzz::round_trip::<ReshareComplaint>(bytes, limits)),
    }
});
