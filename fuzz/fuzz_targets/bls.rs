//! BLS12-381 keys, signatures and proofs, Feldman commitments and FROST signing packages:
//! each decodes only from its own encoding and encodes back to it.
#![no_main]

use dta_crypto::bls::{ProofOfPossession, PublicKey, Signature};
use dta_crypto::signing::Package;
use dta_crypto::threshold::Commitments;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((which, bytes)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => {
            if let Ok(key) = PublicKey::from_bytes(bytes) {
                assert_eq!(key.to_bytes().as_slice(), bytes);
            }
        }
        1 => {
            if let Ok(signature) = Signature::from_bytes(bytes) {
                assert_eq!(signature.to_bytes().as_slice(), bytes);
            }
        }
        2 => {
            if let Ok(proof) = ProofOfPossession::from_bytes(bytes) {
                assert_eq!(proof.to_bytes().as_slice(), bytes);
            }
        }
        3 => {
            let points: Vec<&[u8]> = bytes.chunks(48).collect();
            if let Ok(commitments) = Commitments::from_bytes(&points) {
                let again: Vec<u8> = commitments.to_bytes().concat();
                assert_eq!(again, bytes);
                let _ = commitments.share_public_key(u32::from(*which));
            }
        }
        _ => {
            if let Ok(package) = Package::from_bytes(bytes) {
                let again = package.to_bytes().expect("a decoded package encodes");
                assert_eq!(
                    Package::from_bytes(&again).unwrap().to_bytes().unwrap(),
                    again
                );
            }
        }
    }
});
