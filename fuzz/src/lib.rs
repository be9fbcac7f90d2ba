//! What the fuzz targets share: the invariants every decoder must keep, and fixed identities
//! to verify and open envelopes with.
//!
//! What it does not do: run anything by itself (each target in `fuzz_targets/` is one
//! libFuzzer binary; `scripts/fuzz` builds and runs them).

use std::sync::OnceLock;

use dta_protocol::dagcbor::{self, Limits};
use dta_protocol::identity::LocalIdentity;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Decodes `bytes` strictly as `T`; if that works, the value must encode to exactly `bytes`
/// (strict DAG-CBOR admits one encoding per value), and those bytes decode again.
pub fn round_trip<T>(bytes: &[u8], limits: Limits) -> Option<T>
where
    T: Serialize + DeserializeOwned,
{
    let value: T = dagcbor::decode(bytes, limits).ok()?;
    let again = dagcbor::encode(&value).expect("a decoded value encodes");
    assert!(
        again == bytes,
        "{} decoded from bytes that are not its one encoding:\n  in  {}\n  out {}",
        std::any::type_name::<T>(),
        hex(bytes),
        hex(&again)
    );
    Some(value)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Splits `data` into at most `max` pieces at the bytes `0xff 0x00` (so the fuzzer can make
/// several inputs of one).
pub fn pieces(data: &[u8], max: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while out.len() + 1 < max {
        match rest.windows(2).position(|w| w == [0xff, 0x00]) {
            Some(at) => {
                out.push(&rest[..at]);
                rest = &rest[at + 2..];
            }
            None => break,
        }
    }
    out.push(rest);
    out
}

/// A fixed identity (the same in every run), to verify envelopes against and open them with.
pub fn identity() -> &'static LocalIdentity {
    static IDENTITY: OnceLock<LocalIdentity> = OnceLock::new();
    IDENTITY.get_or_init(|| {
        let keypair = libp2p::identity::Keypair::ed25519_from_bytes([7; 32]).expect("a key");
        let peer = libp2p::PeerId::from_public_key(&keypair.public());
        LocalIdentity::create(
            &dta_crypto::Secret::new([42; 32]),
            "fuzz",
            &peer.to_bytes(),
            1,
        )
        .expect("a fixed identity")
    })
}
