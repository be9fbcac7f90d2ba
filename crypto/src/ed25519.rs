//! Ed25519 signatures (RFC 8032) with ed25519-dalek, for a node's envelope signatures.
//!
//! An envelope needs a signature only its sender's identity can make and anyone can check;
//! nothing aggregates it. Ed25519 signs in about 20 µs and verifies in about 50 µs, against
//! 0.38 ms and 1.18 ms for a BLS signature, so BLS is kept for what only BLS can do: the
//! fiduciaries' custody signatures that aggregate into one certificate.
//!
//! Verification is strict (`verify_strict`): no small-order public keys, no non-canonical
//! `R` or `s`, so a signature has exactly one valid encoding.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::Secret;
use crate::meter::{Operation, measure};

/// Encoded public key length.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Encoded signature length.
pub const SIGNATURE_LEN: usize = 64;

/// Why a public key or signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum Ed25519Error {
    /// Wrong length, not a curve point, or a point of small order.
    #[error("invalid Ed25519 public key")]
    PublicKey,
    /// Wrong length.
    #[error("malformed Ed25519 signature")]
    MalformedSignature,
    /// The signature does not verify.
    #[error("Ed25519 signature does not verify")]
    InvalidSignature,
}

/// An Ed25519 signing key. Zeroized on drop; `Debug` prints nothing of it.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// The key whose RFC 8032 seed is `seed`.
    pub fn from_seed(seed: &Secret<32>) -> Self {
        Self(SigningKey::from_bytes(seed.expose()))
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        measure(Operation::Ed25519Sign, || self.0.sign(message).to_bytes())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ed25519::SecretKey(<redacted>)")
    }
}

/// An Ed25519 public key: a valid curve point, not of small order.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Decodes a 32-byte key, refusing points of small order.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Ed25519Error> {
        let bytes: &[u8; PUBLIC_KEY_LEN] = bytes.try_into().map_err(|_| Ed25519Error::PublicKey)?;
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| Ed25519Error::PublicKey)?;
        if key.is_weak() {
            return Err(Ed25519Error::PublicKey);
        }
        Ok(Self(key))
    }

    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.0.to_bytes()
    }

    /// Checks `signature` over `message`, strictly.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), Ed25519Error> {
        measure(Operation::Ed25519Verify, || {
            let signature: &[u8; SIGNATURE_LEN] = signature
                .try_into()
                .map_err(|_| Ed25519Error::MalformedSignature)?;
            self.0
                .verify_strict(message, &ed25519_dalek::Signature::from_bytes(signature))
                .map_err(|_| Ed25519Error::InvalidSignature)
        })
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ed25519::PublicKey({})", hex_string(&self.to_bytes()))
    }
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_seed(&Secret::new([byte; 32]))
    }

    // RFC 8032 §7.1, TEST 2: a third-party vector for seed, public key and signature.
    #[test]
    fn rfc8032_test_2() {
        let seed: [u8; 32] =
            hex::decode("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
                .unwrap()
                .try_into()
                .unwrap();
        let secret = SecretKey::from_seed(&Secret::new(seed));
        assert_eq!(
            hex_string(&secret.public_key().to_bytes()),
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"
        );
        let signature = secret.sign(&[0x72]);
        assert_eq!(
            hex_string(&signature),
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
             085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
        );
        secret.public_key().verify(&[0x72], &signature).unwrap();
    }

    #[test]
    fn wrong_message_key_or_bits_fail() {
        let signature = key(1).sign(b"message");
        let public = key(1).public_key();
        public.verify(b"message", &signature).unwrap();
        assert_eq!(
            public.verify(b"messagf", &signature),
            Err(Ed25519Error::InvalidSignature)
        );
        assert_eq!(
            key(2).public_key().verify(b"message", &signature),
            Err(Ed25519Error::InvalidSignature)
        );
        for i in [0, 31, 32, 63] {
            let mut flipped = signature;
            flipped[i] ^= 1;
            assert!(public.verify(b"message", &flipped).is_err());
        }
        assert_eq!(
            public.verify(b"message", &signature[..63]),
            Err(Ed25519Error::MalformedSignature)
        );
    }

    #[test]
    fn small_order_and_malformed_keys_are_refused() {
        // The identity point (y = 1) has order 1.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            PublicKey::from_bytes(&identity),
            Err(Ed25519Error::PublicKey)
        );
        assert_eq!(
            PublicKey::from_bytes(&[7u8; 31]),
            Err(Ed25519Error::PublicKey)
        );
        let good = key(3).public_key().to_bytes();
        assert_eq!(PublicKey::from_bytes(&good).unwrap().to_bytes(), good);
    }

    #[test]
    fn debug_prints_no_secret() {
        assert_eq!(format!("{:?}", key(4)), "ed25519::SecretKey(<redacted>)");
    }
}
