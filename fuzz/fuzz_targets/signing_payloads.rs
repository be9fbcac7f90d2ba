//! Threshold signatures' payloads, approvals and release policies: each that decodes is its
//! one encoding; a policy that validates judges any situation without panicking, the same
//! way twice.
#![no_main]

use dta_protocol::dagcbor::Limits;
use dta_protocol::policy::{Approval, ReleasePolicy, Situation};
use dta_protocol::signing::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((which, bytes)) = data.split_first() else {
        return;
    };
    let limits = Limits::default();
    match which % 8 {
        0 => drop(dta_fuzz::round_trip::<SignRequest>(bytes, limits)),
        1 => drop(dta_fuzz::round_trip::<SignCommitment>(bytes, limits)),
        2 => drop(dta_fuzz::round_trip::<SignPackage>(bytes, limits)),
        3 => drop(dta_fuzz::round_trip::<SignatureShare>(bytes, limits)),
        4 => drop(dta_fuzz::round_trip::<PartialSignature>(bytes, limits)),
        5 => {
            if let Some(signature) = dta_fuzz::round_trip::<Signature>(bytes, limits) {
                let _ = signature.verifies(b"a message");
            }
        }
        6 => drop(dta_fuzz::round_trip::<Approval>(bytes, limits)),
        _ => {
            let Some(policy) = dta_fuzz::round_trip::<ReleasePolicy>(bytes, limits) else {
                return;
            };
            if policy.validate().is_err() {
                return;
            }
            let request = dta_protocol::block::cid_of(dta_protocol::block::DAG_CBOR, b"request");
            let situation = Situation {
                order: request,
                request,
                request_seen_ms: u64::from(*which) << 20,
                now_ms: (u64::from(*which) << 24).wrapping_add(bytes.len() as u64),
                tolerance_ms: 30_000,
                released: u32::from(*which % 4),
                approvals: &[],
                vetoes: &[],
            };
            let first = format!("{:?}", policy.evaluate(&situation));
            assert_eq!(first, format!("{:?}", policy.evaluate(&situation)));
            if let Some(signing) = &policy.signing {
                let _ = signing.allows(u32::from(*which), bytes);
            }
        }
    }
});
