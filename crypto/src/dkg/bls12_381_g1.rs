//! The BLS12-381 scalar field and its group G1 as a ciphersuite of ZF's `frost-core`, so that
//! its key generation without a dealer runs over the field the M-Pin master secret lives in.
//!
//! - Scalars encode as 32 big-endian bytes (the encoding dta keeps shares in, and one that
//!   `crate::mpin::MpinScalar::from_bytes` reads); points of G1 as 48-byte compressed
//!   points, checked to be on the curve, in the prime-order subgroup and not the identity.
//! - The hashes are SHA-512 of a domain tag and the input, reduced mod the group order (a
//!   64-byte wide reduction, so without bias). They serve the key generation's proofs of
//!   knowledge; FROST signing over this group is not offered (threshold BLS signing is a
//!   matter of its own).
//!
//! Commitments and public shares are in G1 on purpose: an M-Pin server secret is s·Q in G2,
//! so a public s·Q would let anyone holding a stolen client token test PINs offline.

use bls12_381::{G1Affine, G1Projective, Scalar};
use frost_core::{Ciphersuite, Field, FieldError, Group, GroupError};
use frost_secp256k1_tr::rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha512};
use zeroize::Zeroize;

/// The ciphersuite's context string: what FROST's messages are bound to.
const CONTEXT: &str = "dta-FROST-BLS12381G1-SHA512-v1";

/// The scalar field of BLS12-381.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ScalarField;

impl Field for ScalarField {
    type Scalar = Scalar;
    type Serialization = [u8; 32];

    fn zero() -> Scalar {
        Scalar::zero()
    }

    fn one() -> Scalar {
        Scalar::one()
    }

    fn invert(scalar: &Scalar) -> Result<Scalar, FieldError> {
        Option::from(scalar.invert()).ok_or(FieldError::InvalidZeroScalar)
    }

    fn random<R: RngCore + CryptoRng>(rng: &mut R) -> Scalar {
        let mut wide = [0u8; 64];
        rng.fill_bytes(&mut wide);
        let scalar = Scalar::from_bytes_wide(&wide);
        wide.zeroize();
        scalar
    }

    fn serialize(scalar: &Scalar) -> [u8; 32] {
        let mut bytes = scalar.to_bytes();
        bytes.reverse();
        bytes
    }

    fn little_endian_serialize(scalar: &Scalar) -> [u8; 32] {
        scalar.to_bytes()
    }

    fn deserialize(buf: &[u8; 32]) -> Result<Scalar, FieldError> {
        let mut little = *buf;
        little.reverse();
        let scalar = Option::from(Scalar::from_bytes(&little));
        little.zeroize();
        scalar.ok_or(FieldError::MalformedScalar)
    }
}

/// G1 of BLS12-381, its prime-order subgroup.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct G1;

impl Group for G1 {
    type Field = ScalarField;
    type Element = G1Projective;
    type Serialization = [u8; 48];

    fn cofactor() -> Scalar {
        // Points are checked into the prime-order subgroup when decoded.
        Scalar::one()
    }

    fn identity() -> G1Projective {
        G1Projective::identity()
    }

    fn generator() -> G1Projective {
        G1Projective::generator()
    }

    fn serialize(element: &G1Projective) -> Result<[u8; 48], GroupError> {
        if bool::from(element.is_identity()) {
            return Err(GroupError::InvalidIdentityElement);
        }
        Ok(G1Affine::from(element).to_compressed())
    }

    fn deserialize(buf: &[u8; 48]) -> Result<G1Projective, GroupError> {
        let point: G1Affine =
            Option::from(G1Affine::from_compressed(buf)).ok_or(GroupError::MalformedElement)?;
        if bool::from(point.is_identity()) {
            return Err(GroupError::InvalidIdentityElement);
        }
        Ok(G1Projective::from(point))
    }
}

/// The ciphersuite: [`G1`] with SHA-512.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Bls12381G1;

fn hash(tag: &[u8], parts: &[&[u8]]) -> [u8; 64] {
    let mut hasher = Sha512::new();
    hasher.update(CONTEXT.as_bytes());
    hasher.update(tag);
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

fn hash_to_scalar(tag: &[u8], m: &[u8]) -> Scalar {
    Scalar::from_bytes_wide(&hash(tag, &[m]))
}

impl Ciphersuite for Bls12381G1 {
    const ID: &'static str = CONTEXT;
    type Group = G1;
    type HashOutput = [u8; 64];
    type SignatureSerialization = [u8; 80];

    fn H1(m: &[u8]) -> Scalar {
        hash_to_scalar(b"rho", m)
    }

    fn H2(m: &[u8]) -> Scalar {
        hash_to_scalar(b"chal", m)
    }

    fn H3(m: &[u8]) -> Scalar {
        hash_to_scalar(b"nonce", m)
    }

    fn H4(m: &[u8]) -> [u8; 64] {
        hash(b"msg", &[m])
    }

    fn H5(m: &[u8]) -> [u8; 64] {
        hash(b"com", &[m])
    }

    fn HDKG(m: &[u8]) -> Option<Scalar> {
        Some(hash_to_scalar(b"dkg", m))
    }

    fn HID(m: &[u8]) -> Option<Scalar> {
        Some(hash_to_scalar(b"id", m))
    }
}
