//! CAR v1 archives: every block read is under the CID its bytes hash to, and an archive
//! written from what was read reads back the same.
#![no_main]

use dta_protocol::car;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(read) = car::read(data) else {
        return;
    };
    let written = car::write(&read.roots, &read.blocks).expect("what was read writes");
    assert_eq!(car::read(&written).expect("what was written reads"), read);
});
