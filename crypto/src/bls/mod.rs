//! BLS12-381 signatures, min_pk variant, IETF proof-of-possession ciphersuite.
//!
//! Public keys are 48-byte compressed G1 points, signatures 96-byte compressed G2 points.
//! Decoding a public key or a signature checks that the point is on the curve, in the prime
//! order subgroup and not the identity, so a value of these types is always usable.
//!
//! Aggregating public keys is only safe against rogue-key attacks when each key has proven
//! possession of its secret. [`PopVerifiedKey`] can only be made by [`PublicKey::verify_pop`],
//! and [`fast_aggregate_verify`] takes nothing else.

use std::fmt;

use blst::BLST_ERROR;
use blst::min_pk as raw;

use crate::Secret;
use crate::meter::{Operation, measure};

/// Domain separation tag for signatures (the POP ciphersuite's signing tag).
pub const SIGNATURE_DST: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";
/// Domain separation tag for proofs of possession.
pub const POP_DST: &[u8] = b"BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";
/// Length of a compressed public key.
pub const PUBLIC_KEY_LEN: usize = 48;
/// Length of a compressed signature or proof of possession.
pub const SIGNATURE_LEN: usize = 96;
/// Length of a serialized secret key (a big-endian scalar).
pub const SECRET_KEY_LEN: usize = 32;
/// Minimum input keying material for [`SecretKey::from_ikm`], as the IETF KeyGen requires.
pub const MIN_IKM_LEN: usize = 32;

/// Why a key could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyGenError {
    /// KeyGen needs at least [`MIN_IKM_LEN`] bytes of keying material.
    #[error("key material is {len} bytes; at least {MIN_IKM_LEN} are required")]
    IkmTooShort {
        /// Length given.
        len: usize,
    },
    /// The bytes are not a scalar in `[1, r)`.
    #[error("not a valid BLS secret key (must be 32 bytes, non-zero and below the group order)")]
    InvalidSecretKey,
}

/// Why bytes could not be decoded as a public key, signature or proof.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum DecodeError {
    /// Wrong number of bytes.
    #[error("expected {expected} bytes, got {actual}")]
    WrongLength {
        /// Length required.
        expected: usize,
        /// Length given.
        actual: usize,
    },
    /// Not a compressed point encoding, or not on the curve.
    #[error("not a valid compressed curve point")]
    BadEncoding,
    /// On the curve but outside the prime-order subgroup.
    #[error("point is not in the prime-order subgroup")]
    NotInGroup,
    /// The identity element, which no honest key or signature is.
    #[error("point is the identity")]
    Identity,
}

impl DecodeError {
    fn from_blst(err: BLST_ERROR) -> Self {
        match err {
            BLST_ERROR::BLST_POINT_NOT_IN_GROUP => Self::NotInGroup,
            BLST_ERROR::BLST_PK_IS_INFINITY => Self::Identity,
            _ => Self::BadEncoding,
        }
    }
}

/// Why a verification failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum VerifyError {
    /// The signature does not verify for this key (or keys) and message (or messages).
    #[error("signature does not verify")]
    InvalidSignature,
    /// An aggregate verification was given no keys.
    #[error("no public keys to verify against")]
    NoKeys,
    /// An aggregate verification was given a different number of keys and messages.
    #[error("{keys} public keys but {messages} messages")]
    LengthMismatch {
        /// Keys given.
        keys: usize,
        /// Messages given.
        messages: usize,
    },
}

/// Why signatures or keys could not be aggregated.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum AggregateError {
    /// Nothing to aggregate.
    #[error("nothing to aggregate")]
    Empty,
    /// The aggregate came out as the identity point.
    #[error("the aggregate is the identity point")]
    Identity,
}

fn check(err: BLST_ERROR) -> Result<(), VerifyError> {
    match err {
        BLST_ERROR::BLST_SUCCESS => Ok(()),
        _ => Err(VerifyError::InvalidSignature),
    }
}

/// A BLS secret key. Zeroized on drop; `Debug` prints nothing of it.
#[derive(Clone)]
pub struct SecretKey(raw::SecretKey);

impl SecretKey {
    /// IETF KeyGen from at least 32 bytes of keying material, with optional `key_info`.
    pub fn from_ikm(ikm: &[u8], key_info: &[u8]) -> Result<Self, KeyGenError> {
        if ikm.len() < MIN_IKM_LEN {
            return Err(KeyGenError::IkmTooShort { len: ikm.len() });
        }
        raw::SecretKey::key_gen(ikm, key_info)
            .map(Self)
            .map_err(|_| KeyGenError::IkmTooShort { len: ikm.len() })
    }

    /// A fresh key from the operating system's randomness.
    pub fn random() -> Self {
        let ikm = Secret::<32>::random();
        match Self::from_ikm(ikm.expose(), b"") {
            Ok(key) => key,
            Err(_) => unreachable!("32 bytes of IKM is always enough"),
        }
    }

    /// Decodes a big-endian scalar; rejects zero and values not below the group order.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyGenError> {
        if bytes.len() != SECRET_KEY_LEN || bytes.iter().all(|b| *b == 0) {
            return Err(KeyGenError::InvalidSecretKey);
        }
        raw::SecretKey::from_bytes(bytes)
            .map(Self)
            .map_err(|_| KeyGenError::InvalidSecretKey)
    }

    /// The big-endian scalar, in zeroizing memory.
    pub fn to_bytes(&self) -> Secret<SECRET_KEY_LEN> {
        Secret::new(self.0.to_bytes())
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.sk_to_pk())
    }

    /// Signs `message` under [`SIGNATURE_DST`].
    pub fn sign(&self, message: &[u8]) -> Signature {
        measure(Operation::BlsSign, || {
            Signature(self.0.sign(message, SIGNATURE_DST, &[]))
        })
    }

    /// Proves possession of this key: a signature over the compressed public key under
    /// [`POP_DST`].
    pub fn prove_possession(&self) -> ProofOfPossession {
        measure(Operation::BlsSign, || {
            let public = self.public_key().to_bytes();
            ProofOfPossession(Signature(self.0.sign(&public, POP_DST, &[])))
        })
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bls::SecretKey(<redacted>)")
    }
}

/// A BLS public key: a G1 point checked to be in the subgroup and not the identity.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(raw::PublicKey);

impl PublicKey {
    /// Decodes 48 compressed bytes, with the IETF KeyValidate checks.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        measure(Operation::BlsDecode, || {
            if bytes.len() != PUBLIC_KEY_LEN {
                return Err(DecodeError::WrongLength {
                    expected: PUBLIC_KEY_LEN,
                    actual: bytes.len(),
                });
            }
            raw::PublicKey::key_validate(bytes)
                .map(Self)
                .map_err(DecodeError::from_blst)
        })
    }

    /// The 48-byte compressed encoding.
    pub fn to_bytes(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.0.compress()
    }

    /// The 96-byte uncompressed encoding (decodes without a square root).
    pub fn to_uncompressed(&self) -> [u8; 2 * PUBLIC_KEY_LEN] {
        self.0.serialize()
    }

    /// Verifies a signature on `message` by this key.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), VerifyError> {
        measure(Operation::BlsVerify, || {
            // Both points were group-checked when they were decoded or made.
            check(
                signature
                    .0
                    .verify(false, message, SIGNATURE_DST, &[], &self.0, false),
            )
        })
    }

    /// Checks a proof of possession and, if it holds, returns the key in the only form that
    /// may be aggregated.
    pub fn verify_pop(&self, proof: &ProofOfPossession) -> Result<PopVerifiedKey, VerifyError> {
        measure(Operation::BlsVerify, || {
            let public = self.to_bytes();
            check(
                proof
                    .0
                    .0
                    .verify(false, &public, POP_DST, &[], &self.0, false),
            )?;
            Ok(PopVerifiedKey(*self))
        })
    }

    /// Checks a proof of possession and a signature on `message` by this key in one pairing
    /// product: three Miller loops and one final exponentiation instead of four and two
    /// (measured 1.92 ms against 1.07 + 1.12 ms apart; an identity document carries both,
    /// and the weights below eat part of the saving). Each side is weighted by a
    /// fresh random 64-bit scalar, so two invalid points cannot cancel out (a proof and a
    /// signature swapped, say). Says only that one of the two is invalid: check them apart
    /// to tell which.
    pub fn verify_pop_and_signature(
        &self,
        proof: &ProofOfPossession,
        message: &[u8],
        signature: &Signature,
    ) -> Result<PopVerifiedKey, VerifyError> {
        measure(Operation::BlsVerify, || {
            let public = self.to_bytes();
            let key: &blst::blst_p1_affine = (&self.0).into();
            let mut pop_side = blst::Pairing::new(true, POP_DST);
            let mut signature_side = blst::Pairing::new(true, SIGNATURE_DST);
            for (pairing, point, signed) in [
                (&mut pop_side, &proof.0.0, &public[..]),
                (&mut signature_side, &signature.0, message),
            ] {
                // Odd, hence never zero.
                let mut weight = [0u8; 8];
                crate::random_bytes(&mut weight);
                weight[0] |= 1;
                let point: &blst::blst_p2_affine = point.into();
                // Both points were group-checked when they were decoded or made.
                check(pairing.mul_n_aggregate(key, false, point, false, &weight, 64, signed, &[]))?;
                pairing.commit();
            }
            check(pop_side.merge(&signature_side))?;
            if pop_side.finalverify(None) {
                Ok(PopVerifiedKey(*self))
            } else {
                Err(VerifyError::InvalidSignature)
            }
        })
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bls::PublicKey({})", hex_prefix(&self.to_bytes()))
    }
}

/// A public key whose proof of possession has been verified.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PopVerifiedKey(PublicKey);

impl PopVerifiedKey {
    /// The key itself.
    pub fn public_key(&self) -> &PublicKey {
        &self.0
    }

    /// Test-only: treat a key as PoP-verified, for third-party vectors that come without
    /// proofs.
    #[cfg(test)]
    pub(crate) fn assume_verified(key: PublicKey) -> Self {
        Self(key)
    }
}

/// A BLS signature: a G2 point checked to be in the subgroup and not the identity.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(raw::Signature);

impl Signature {
    /// Decodes 96 compressed bytes, with subgroup and identity checks.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        measure(Operation::BlsDecode, || {
            if bytes.len() != SIGNATURE_LEN {
                return Err(DecodeError::WrongLength {
                    expected: SIGNATURE_LEN,
                    actual: bytes.len(),
                });
            }
            raw::Signature::sig_validate(bytes, true)
                .map(Self)
                .map_err(DecodeError::from_blst)
        })
    }

    /// The 96-byte compressed encoding.
    pub fn to_bytes(&self) -> [u8; SIGNATURE_LEN] {
        self.0.compress()
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bls::Signature({})", hex_prefix(&self.to_bytes()))
    }
}

/// A proof of possession: a signature by a key over its own public key, under [`POP_DST`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ProofOfPossession(Signature);

impl ProofOfPossession {
    /// Decodes 96 compressed bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        Signature::from_bytes(bytes).map(Self)
    }

    /// The 96-byte compressed encoding.
    pub fn to_bytes(&self) -> [u8; SIGNATURE_LEN] {
        self.0.to_bytes()
    }
}

/// The compressed encoding of the point at infinity: flag bits `0xc0`, then zeros.
fn is_infinity(compressed: &[u8]) -> bool {
    compressed.first() == Some(&0xc0) && compressed[1..].iter().all(|b| *b == 0)
}

/// Adds signatures into one. Every input was group-checked when it was decoded (or made by
/// signing), so the sum is in the group too; only the identity is refused.
pub fn aggregate_signatures(signatures: &[Signature]) -> Result<Signature, AggregateError> {
    measure(Operation::BlsAggregate, || {
        let refs: Vec<&raw::Signature> = signatures.iter().map(|s| &s.0).collect();
        let aggregate =
            raw::AggregateSignature::aggregate(&refs, false).map_err(|_| AggregateError::Empty)?;
        let signature = aggregate.to_signature();
        if is_infinity(&signature.compress()) {
            return Err(AggregateError::Identity);
        }
        Ok(Signature(signature))
    })
}

/// `Σ scalars[i] · signatures[i]`, each scalar 32 little-endian bytes below the group order,
/// in one multi-scalar multiplication: a threshold signature from partial signatures and
/// their Lagrange coefficients. Every input was group-checked when decoded, so the result is
/// in the group; the identity is refused.
pub(crate) fn linear_combination(
    signatures: &[Signature],
    scalars: &[[u8; 32]],
) -> Result<Signature, AggregateError> {
    measure(Operation::Recover, || {
        use blst::MultiPoint;
        if signatures.is_empty() || signatures.len() != scalars.len() {
            return Err(AggregateError::Empty);
        }
        let points: Vec<raw::Signature> = signatures.iter().map(|s| s.0).collect();
        let signature = points.mult(&scalars.concat(), 255).to_signature();
        if is_infinity(&signature.compress()) {
            return Err(AggregateError::Identity);
        }
        Ok(Signature(signature))
    })
}

/// Adds encoded signatures into one, group-checking only the sum: each input is decompressed
/// and checked to be on the curve, and the subgroup check (the costly part of decoding) is
/// done once on the aggregate, as CoreAggregateVerify of the BLS draft does. The result
/// verifies only if every input was a valid signature, up to torsion components that
/// cancel out, which changes nothing the aggregate proves. Use it where the inputs are
/// aggregated anyway; [`Signature::from_bytes`] tells a bad one apart.
pub fn aggregate_encoded(encoded: &[&[u8]]) -> Result<Signature, AggregateEncodedError> {
    measure(Operation::BlsAggregate, || {
        let mut points = Vec::with_capacity(encoded.len());
        for (index, bytes) in encoded.iter().enumerate() {
            if bytes.len() != SIGNATURE_LEN {
                return Err(AggregateEncodedError::Undecodable(index));
            }
            points.push(
                raw::Signature::from_bytes(bytes)
                    .map_err(|_| AggregateEncodedError::Undecodable(index))?,
            );
        }
        let refs: Vec<&raw::Signature> = points.iter().collect();
        let aggregate = raw::AggregateSignature::aggregate(&refs, false)
            .map_err(|_| AggregateEncodedError::Empty)?
            .to_signature();
        // Not the identity, and in the subgroup.
        aggregate
            .validate(true)
            .map_err(|_| AggregateEncodedError::NotInGroup)?;
        Ok(Signature(aggregate))
    })
}

/// Why encoded signatures could not be aggregated.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum AggregateEncodedError {
    /// Nothing to aggregate.
    #[error("nothing to aggregate")]
    Empty,
    /// The input at this index is not a compressed point on the curve.
    #[error("signature {0} is not a point on the curve")]
    Undecodable(usize),
    /// The sum is the identity or outside the prime-order subgroup.
    #[error("the aggregate is the identity or outside the subgroup")]
    NotInGroup,
}

/// Adds PoP-verified public keys into the key that verifies their aggregate signature on a
/// common message.
pub fn aggregate_public_keys(keys: &[PopVerifiedKey]) -> Result<PublicKey, AggregateError> {
    measure(Operation::BlsAggregate, || {
        let refs: Vec<&raw::PublicKey> = keys.iter().map(|k| &k.0.0).collect();
        let aggregate =
            raw::AggregatePublicKey::aggregate(&refs, false).map_err(|_| AggregateError::Empty)?;
        let key = aggregate.to_public_key();
        // Every input passed KeyValidate, so the sum is in the group; only the identity is refused.
        if is_infinity(&key.compress()) {
            return Err(AggregateError::Identity);
        }
        Ok(PublicKey(key))
    })
}

/// Verifies an aggregate signature by several keys on one message: one pairing check,
/// whatever the number of keys.
pub fn fast_aggregate_verify(
    keys: &[PopVerifiedKey],
    message: &[u8],
    signature: &Signature,
) -> Result<(), VerifyError> {
    measure(Operation::BlsVerify, || {
        let aggregate = aggregate_public_keys(keys).map_err(|err| match err {
            AggregateError::Empty => VerifyError::NoKeys,
            AggregateError::Identity => VerifyError::InvalidSignature,
        })?;
        aggregate.verify(message, signature)
    })
}

/// The half of a [`fast_aggregate_verify`] that needs no signature: the keys' aggregate and
/// the hashed message, through their Miller loop. Made while the signatures are still on their
/// way, it leaves one Miller loop and the final exponentiation for when they are in.
pub struct PreparedVerification(blst::Pairing<'static>);

impl fmt::Debug for PreparedVerification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PreparedVerification")
    }
}

impl PreparedVerification {
    /// Hashes `message` and runs the keys' side of the check.
    pub fn new(keys: &[PopVerifiedKey], message: &[u8]) -> Result<Self, VerifyError> {
        measure(Operation::BlsPrepare, || {
            let aggregate = aggregate_public_keys(keys).map_err(|err| match err {
                AggregateError::Empty => VerifyError::NoKeys,
                AggregateError::Identity => VerifyError::InvalidSignature,
            })?;
            let key: &blst::blst_p1_affine = (&aggregate.0).into();
            let mut pairing = blst::Pairing::new(true, SIGNATURE_DST);
            // No signature here (`&()` is none): it comes in `verify`.
            check(pairing.aggregate(key, false, &(), false, message, &[]))?;
            pairing.commit();
            Ok(Self(pairing))
        })
    }

    /// Finishes the check with the aggregate `signature`; the same outcome as
    /// [`fast_aggregate_verify`] with this check's keys and message.
    pub fn verify(&self, signature: &Signature) -> Result<(), VerifyError> {
        measure(Operation::BlsVerify, || {
            // The point was group-checked when it was decoded or made.
            let point: &blst::blst_p2_affine = (&signature.0).into();
            let mut signature_side = blst::blst_fp12::default();
            blst::Pairing::aggregated(&mut signature_side, point);
            if self.0.finalverify(Some(&signature_side)) {
                Ok(())
            } else {
                Err(VerifyError::InvalidSignature)
            }
        })
    }
}

/// Verifies several aggregate signatures, each by its own set of keys on its own message, in
/// one pairing product: n + 1 Miller loops and one final exponentiation instead of 2n and n.
/// Each signature and its aggregate key are weighted by a fresh random odd 64-bit scalar, so
/// invalid signatures cannot cancel out across the batch. Says only that some signature is
/// invalid: check them apart with [`fast_aggregate_verify`] to tell which.
pub fn fast_aggregate_verify_batch(
    batch: &[(&[PopVerifiedKey], &[u8], &Signature)],
) -> Result<(), VerifyError> {
    measure(Operation::BlsVerifyBatch, || {
        if batch.is_empty() {
            return Err(VerifyError::NoKeys);
        }
        let mut pairing = blst::Pairing::new(true, SIGNATURE_DST);
        for (keys, message, signature) in batch {
            let aggregate = aggregate_public_keys(keys).map_err(|err| match err {
                AggregateError::Empty => VerifyError::NoKeys,
                AggregateError::Identity => VerifyError::InvalidSignature,
            })?;
            let key: &blst::blst_p1_affine = (&aggregate.0).into();
            let point: &blst::blst_p2_affine = (&signature.0).into();
            let mut weight = [0u8; 8];
            crate::random_bytes(&mut weight);
            weight[0] |= 1;
            // Both points were group-checked when they were decoded or made.
            check(pairing.mul_n_aggregate(key, false, point, false, &weight, 64, message, &[]))?;
        }
        pairing.commit();
        if pairing.finalverify(None) {
            Ok(())
        } else {
            Err(VerifyError::InvalidSignature)
        }
    })
}

/// Verifies an aggregate signature by several keys, each on its own message
/// (CoreAggregateVerify). Proofs of possession are not needed here: each key signs its own
/// message, which rogue keys cannot forge.
pub fn aggregate_verify(
    keys: &[PublicKey],
    messages: &[&[u8]],
    signature: &Signature,
) -> Result<(), VerifyError> {
    measure(Operation::BlsVerify, || {
        if keys.is_empty() {
            return Err(VerifyError::NoKeys);
        }
        if keys.len() != messages.len() {
            return Err(VerifyError::LengthMismatch {
                keys: keys.len(),
                messages: messages.len(),
            });
        }
        let refs: Vec<&raw::PublicKey> = keys.iter().map(|k| &k.0).collect();
        check(
            signature
                .0
                .aggregate_verify(false, messages, SIGNATURE_DST, &refs, false),
        )
    })
}

/// First bytes of a public value in hex, enough to tell values apart in logs.
pub(crate) fn hex_prefix(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(19);
    for b in bytes.iter().take(8) {
        out.push_str(&format!("{b:02x}"));
    }
    if bytes.len() > 8 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests;
