//! M-Pin: requests and answers as the log carries them are their one encoding; points and
//! scalars in Milagro's encodings decode only from their own bytes.
#![no_main]

use dta_crypto::mpin::{G1Point, G2Point, MpinScalar};
use dta_protocol::dagcbor::Limits;
use dta_protocol::mpin::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((which, bytes)) = data.split_first() else {
        return;
    };
    match which % 7 {
        0 => drop(dta_fuzz::round_trip::<MpinRequest>(
            bytes,
            Limits::default(),
        )),
        1 => drop(dta_fuzz::round_trip::<MasterSecret>(
            bytes,
            Limits::default(),
        )),
        2 => drop(dta_fuzz::round_trip::<MpinAnswer>(bytes, Limits::default())),
        3 => drop(dta_fuzz::round_trip::<MpinSharePoint>(
            bytes,
            Limits::default(),
        )),
        4 => {
            if let Ok(point) = G1Point::from_bytes(bytes) {
                assert_eq!(point.to_bytes().as_slice(), bytes);
            }
        }
        5 => {
            if let Ok(point) = G2Point::from_bytes(bytes) {
                assert_eq!(point.to_bytes().as_slice(), bytes);
            }
        }
        _ => {
            if let Ok(scalar) = MpinScalar::from_bytes(bytes) {
                assert!(MpinScalar::from_bytes(scalar.to_bytes().as_slice()).is_ok());
            }
        }
    }
});
