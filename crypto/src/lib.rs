//! Cryptography for dta, and nothing else.
//!
//! What this crate owns:
//! - [`bls`]: BLS12-381 signatures with blst, min_pk (public keys in G1, signatures in G2),
//!   ciphersuite `BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_`, proofs of possession and
//!   aggregation. A key can only be aggregated once its proof of possession has been checked:
//!   the type [`bls::PopVerifiedKey`] is the proof of that.
//! - [`dkg`]: dealer-free t-of-n key generation (the FROST DKG of `frost-core`) over
//!   secp256k1 with Taproot (`frost-secp256k1-tr`) and over G1 of BLS12-381 (a ciphersuite
//!   of its own, for M-Pin master secrets), and a secp256k1 key's rebuild from any t shares.
//! - [`ed25519`]: Ed25519 envelope signatures with ed25519-dalek (strict verification).
//! - [`threshold`]: Shamir sharing over the BLS12-381 scalar field with Feldman commitments,
//!   Lagrange recovery of secrets and threshold BLS signatures, and the sums that make a
//!   Pedersen key generation without a dealer (shares and commitments added up).
//! - [`seal`]: envelope sealing. One content key per envelope encrypts the body with
//!   ChaCha20-Poly1305 (the header as associated data) and is encapsulated to each recipient
//!   with X-Wing, the ML-KEM-768 + X25519 hybrid KEM.
//! - [`secp256k1`]: the secp256k1 helpers the wallet plugin needs (keys from seeds, point
//!   addition, SEC1 encodings, P2PKH addresses).
//! - [`mpin`]: M-Pin over BLS12-381 (bls12_381 crate), byte-compatible with Milagro's 2019
//!   library: client- and server-secret shares, PIN extraction, time permits and both sides
//!   of the authentication protocol.
//! - [`meter`]: counts and times of the costly operations above, for benchmarks.
//! - [`Secret`]: the zeroizing byte container every secret travels in.
//!
//! What it does not do: no I/O, no async, no storage, no encoding of documents (that is
//! `dta-protocol`). Every secret type here zeroizes on drop and prints as `<redacted>`.
//! Errors never carry secret bytes.

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod bls;
pub mod dkg;
pub mod ed25519;
pub mod meter;
pub mod mpin;
pub mod seal;
pub mod secp256k1;
mod secret;
pub mod signing;
pub mod threshold;

pub use secret::{Secret, random_bytes};

/// Domain-separated derivation of 32-byte key material from a seed (HKDF-SHA256).
///
/// Every key a node holds is derived from one seed with its own `label`, so that no two keys
/// share material and a new key type never changes an existing one.
pub fn derive_key_material(seed: &[u8], label: &[u8]) -> Secret<32> {
    let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"dta/key-derivation/v1"), seed);
    let mut out = Secret::<32>::zero();
    // 32 bytes is far below HKDF-SHA256's limit of 255 * 32, so expansion cannot fail.
    if hkdf.expand(label, out.expose_mut()).is_err() {
        unreachable!("HKDF-SHA256 can always expand 32 bytes");
    }
    out
}
