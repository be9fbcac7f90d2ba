//! t-of-n sharing over the BLS12-381 scalar field.
//!
//! - Shamir: a secret scalar `s` is the constant term of a random polynomial `f` of degree
//!   `t - 1`; share `i` is `(i, f(i))` for `i` in `1..=n`.
//! - Feldman: the commitments are `a_j · G1` for each coefficient `a_j`, so anyone can check a
//!   share against them, and the first commitment is the group's BLS public key.
//! - Lagrange: any `t` shares give back `s`, and any `t` partial BLS signatures (one per share)
//!   give back the group signature, verifiable under the group public key.
//!
//! - [`signing`]: threshold BLS signatures checked against the group's public shares, the
//!   group signature first.
//! - [`reshare`]: the secret moved to a new committee and threshold, or its shares refreshed,
//!   without rebuilding it.
//!
//! Indices are the x-coordinates: zero would be the secret itself and repeats would make the
//! interpolation meaningless, so both are refused with typed errors.

use std::fmt;

use bls12_381::{G1Affine, G1Projective, Scalar};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::bls;
use crate::meter::{Operation, measure};

pub mod reshare;
pub mod signing;
use crate::{Secret, random_bytes};

/// Most shares one split may produce.
pub const MAX_SHARES: usize = 1024;
/// Length of one encoded commitment (a compressed G1 point).
pub const COMMITMENT_LEN: usize = 48;

/// Why a secret could not be split.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum SplitError {
    /// A threshold of zero protects nothing.
    #[error("threshold must be at least 1")]
    ZeroThreshold,
    /// More shares needed than made.
    #[error("threshold {threshold} is above the number of shares {shares}")]
    ThresholdAboveShares {
        /// Threshold asked for.
        threshold: usize,
        /// Shares asked for.
        shares: usize,
    },
    /// Too many shares.
    #[error("{shares} shares asked for; at most {MAX_SHARES} are supported")]
    TooManyShares {
        /// Shares asked for.
        shares: usize,
    },
}

/// Why shares or partial signatures could not be combined.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum CombineError {
    /// Fewer inputs than the threshold.
    #[error("{have} shares given; {need} are needed")]
    NotEnoughShares {
        /// Inputs given.
        have: usize,
        /// Threshold.
        need: usize,
    },
    /// Two inputs claim the same index.
    #[error("share index {0} appears more than once")]
    DuplicateIndex(u32),
    /// Index zero is the secret's own position and never a share.
    #[error("share index 0 is not allowed")]
    ZeroIndex,
    /// A threshold of zero.
    #[error("threshold must be at least 1")]
    ZeroThreshold,
    /// The combination is the identity point or zero, which no honest set of shares gives.
    #[error("the shares combine to a degenerate value")]
    Degenerate,
    /// Shares to add up are at different indices.
    #[error("shares at index {expected} and {found} do not add up to one share")]
    IndexMismatch {
        /// The first share's index.
        expected: u32,
        /// Another's.
        found: u32,
    },
}

/// Why a share failed verification against the commitments, or could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum ShareError {
    /// Index zero.
    #[error("share index 0 is not allowed")]
    ZeroIndex,
    /// The value is not a canonical scalar.
    #[error("share value is not a canonical scalar")]
    BadScalar,
    /// The share's value is zero and cannot sign.
    #[error("share value is zero")]
    ZeroValue,
    /// The share does not lie on the committed polynomial.
    #[error("share {0} does not match the commitments")]
    Mismatch(u32),
}

/// Why commitments could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum CommitmentError {
    /// No commitments at all.
    #[error("no commitments")]
    Empty,
    /// Too many commitments.
    #[error("{0} commitments; at most {MAX_SHARES} are supported")]
    TooMany(usize),
    /// One of them is not a valid compressed G1 point in the subgroup.
    #[error("commitment {0} is not a valid G1 point")]
    BadPoint(usize),
    /// The first commitment is the identity, so the group public key would be too.
    #[error("the constant-term commitment is the identity")]
    IdentitySecret,
    /// Commitments to add up are to polynomials of different degrees.
    #[error("commitments of {0} and {1} coefficients do not add up")]
    ThresholdMismatch(usize, usize),
}

/// A secret scalar: what gets split. Zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretScalar(Scalar);

impl SecretScalar {
    /// A uniformly random non-zero scalar.
    pub fn random() -> Self {
        loop {
            let value = random_scalar();
            if value != Scalar::zero() {
                return Self(value);
            }
        }
    }

    /// Decodes 32 big-endian bytes (the BLS secret-key encoding); rejects values not below
    /// the group order.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, ShareError> {
        scalar_from_be(bytes).map(Self)
    }

    /// 32 big-endian bytes in zeroizing memory.
    pub fn to_bytes(&self) -> Secret<32> {
        scalar_to_be(&self.0)
    }

    /// The BLS key pair whose secret is this scalar.
    pub fn to_bls(&self) -> Result<bls::SecretKey, ShareError> {
        bls::SecretKey::from_bytes(self.to_bytes().expose()).map_err(|_| ShareError::ZeroValue)
    }
}

impl From<&bls::SecretKey> for SecretScalar {
    fn from(key: &bls::SecretKey) -> Self {
        match scalar_from_be(key.to_bytes().expose()) {
            Ok(value) => Self(value),
            Err(_) => unreachable!("a BLS secret key is always a canonical scalar"),
        }
    }
}

impl PartialEq for SecretScalar {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl fmt::Debug for SecretScalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretScalar(<redacted>)")
    }
}

/// One Shamir share: its index (x-coordinate, never zero) and value. Zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Share {
    index: u32,
    value: Scalar,
}

impl Share {
    /// Rebuilds a share from its index and 32 big-endian value bytes.
    pub fn from_parts(index: u32, value: &[u8; 32]) -> Result<Self, ShareError> {
        if index == 0 {
            return Err(ShareError::ZeroIndex);
        }
        Ok(Self {
            index,
            value: scalar_from_be(value)?,
        })
    }

    /// The index (x-coordinate).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The value as 32 big-endian bytes, in zeroizing memory.
    pub fn value_bytes(&self) -> Secret<32> {
        scalar_to_be(&self.value)
    }

    /// The public key of this share (`value · G1`), which partial signatures verify under.
    pub fn public_key(&self) -> Result<bls::PublicKey, ShareError> {
        Ok(self.signing_key()?.public_key())
    }

    /// The value, for the other modules of this crate.
    pub(crate) fn value(&self) -> &Scalar {
        &self.value
    }

    fn signing_key(&self) -> Result<bls::SecretKey, ShareError> {
        bls::SecretKey::from_bytes(self.value_bytes().expose()).map_err(|_| ShareError::ZeroValue)
    }
}

impl fmt::Debug for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Share")
            .field("index", &self.index)
            .field("value", &"<redacted>")
            .finish()
    }
}

/// Feldman commitments to the coefficients of a sharing polynomial, constant term first.
#[derive(Clone, PartialEq, Eq)]
pub struct Commitments(Vec<G1Affine>);

impl Commitments {
    /// Decodes compressed G1 points, each checked to be in the subgroup.
    pub fn from_bytes<B: AsRef<[u8]>>(points: &[B]) -> Result<Self, CommitmentError> {
        measure(Operation::FeldmanDecode, || {
            if points.is_empty() {
                return Err(CommitmentError::Empty);
            }
            if points.len() > MAX_SHARES {
                return Err(CommitmentError::TooMany(points.len()));
            }
            let mut decoded = Vec::with_capacity(points.len());
            for (i, point) in points.iter().enumerate() {
                let bytes: &[u8; COMMITMENT_LEN] = point
                    .as_ref()
                    .try_into()
                    .map_err(|_| CommitmentError::BadPoint(i))?;
                if *bytes == G1Affine::identity().to_compressed() {
                    if i == 0 {
                        return Err(CommitmentError::IdentitySecret);
                    }
                    decoded.push(G1Affine::identity());
                    continue;
                }
                // blst decompresses and checks the subgroup faster than bls12_381 does.
                let point = bls::PublicKey::from_bytes(bytes)
                    .ok()
                    .and_then(|key| {
                        Option::<G1Affine>::from(G1Affine::from_uncompressed_unchecked(
                            &key.to_uncompressed(),
                        ))
                    })
                    .ok_or(CommitmentError::BadPoint(i))?;
                decoded.push(point);
            }
            Ok(Self(decoded))
        })
    }

    /// The commitments of a key generated without a dealer: the sum of every dealer's, the
    /// coefficients added one by one. Its group public key is the sum of the dealers'.
    pub fn sum(parts: &[Commitments]) -> Result<Self, CommitmentError> {
        let first = parts.first().ok_or(CommitmentError::Empty)?;
        let mut sum: Vec<G1Projective> = first.0.iter().map(G1Projective::from).collect();
        for part in &parts[1..] {
            if part.0.len() != sum.len() {
                return Err(CommitmentError::ThresholdMismatch(sum.len(), part.0.len()));
            }
            for (acc, point) in sum.iter_mut().zip(&part.0) {
                *acc += point;
            }
        }
        let sum: Vec<G1Affine> = sum.iter().map(G1Affine::from).collect();
        if bool::from(sum[0].is_identity()) {
            return Err(CommitmentError::IdentitySecret);
        }
        Ok(Self(sum))
    }

    /// The compressed points, constant term first.
    pub fn to_bytes(&self) -> Vec<[u8; COMMITMENT_LEN]> {
        self.0.iter().map(G1Affine::to_compressed).collect()
    }

    /// The threshold these commitments describe (the number of coefficients).
    pub fn threshold(&self) -> usize {
        self.0.len()
    }

    /// The group public key: the commitment to the secret itself.
    pub fn group_public_key(&self) -> bls::PublicKey {
        match bls::PublicKey::from_bytes(&self.0[0].to_compressed()) {
            Ok(key) => key,
            Err(_) => unreachable!("the constant commitment was checked to be a valid key"),
        }
    }

    /// The public key share `index` must have: `Σ C_j · index^j`.
    pub fn share_public_key(&self, index: u32) -> Result<bls::PublicKey, ShareError> {
        if index == 0 {
            return Err(ShareError::ZeroIndex);
        }
        let point = G1Affine::from(self.evaluate(index));
        bls::PublicKey::from_bytes(&point.to_compressed()).map_err(|_| ShareError::ZeroValue)
    }

    /// Checks that `share` lies on the committed polynomial.
    pub fn verify_share(&self, share: &Share) -> Result<(), ShareError> {
        measure(Operation::FeldmanVerify, || {
            if share.index == 0 {
                return Err(ShareError::ZeroIndex);
            }
            let expected = self.evaluate(share.index);
            // `value · G1` through blst, several times faster than the generic multiplication;
            // compared in projective form, so the commitments' side needs no field inversion.
            let actual = share
                .signing_key()
                .map_err(|_| ShareError::Mismatch(share.index))?
                .public_key()
                .to_uncompressed();
            let actual = Option::<G1Affine>::from(G1Affine::from_uncompressed_unchecked(&actual))
                .ok_or(ShareError::Mismatch(share.index))?;
            if G1Projective::from(actual) == expected {
                Ok(())
            } else {
                Err(ShareError::Mismatch(share.index))
            }
        })
    }

    /// Horner evaluation of the committed polynomial in the exponent. The index is public
    /// and small, so each step multiplies by it with a few variable-time doublings instead of
    /// a full-width constant-time multiplication.
    fn evaluate(&self, index: u32) -> G1Projective {
        self.0
            .iter()
            .rev()
            .fold(G1Projective::identity(), |acc, c| {
                times_public(acc, index) + c
            })
    }
}

impl fmt::Debug for Commitments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Commitments(t={}, key={})",
            self.0.len(),
            bls::hex_prefix(&self.0[0].to_compressed())
        )
    }
}

/// `point · k` for a public `k`, by double-and-add over its bits (variable time).
fn times_public(point: G1Projective, k: u32) -> G1Projective {
    let mut result = G1Projective::identity();
    for bit in (0..u32::BITS - k.leading_zeros()).rev() {
        result = result.double();
        if (k >> bit) & 1 == 1 {
            result += point;
        }
    }
    result
}

/// `a · G1` for a secret scalar, through blst (constant time, and faster than the generic
/// multiplication); the uncompressed encoding decodes without a square root.
fn commit(a: &Scalar) -> G1Affine {
    bls::SecretKey::from_bytes(scalar_to_be(a).expose())
        .ok()
        .and_then(|key| {
            Option::from(G1Affine::from_uncompressed_unchecked(
                &key.public_key().to_uncompressed(),
            ))
        })
        // Only a zero coefficient gets here (probability 2^-255): its commitment is the
        // identity.
        .unwrap_or_else(|| G1Affine::from(G1Projective::generator() * a))
}

/// Splits `secret` into `shares` shares, any `threshold` of which recover it.
pub fn split(
    secret: &SecretScalar,
    threshold: usize,
    shares: usize,
) -> Result<(Vec<Share>, Commitments), SplitError> {
    measure(Operation::ShamirSplit, || {
        if threshold == 0 {
            return Err(SplitError::ZeroThreshold);
        }
        if shares > MAX_SHARES {
            return Err(SplitError::TooManyShares { shares });
        }
        if threshold > shares {
            return Err(SplitError::ThresholdAboveShares { threshold, shares });
        }
        let mut coefficients = Vec::with_capacity(threshold);
        coefficients.push(secret.0);
        coefficients.extend((1..threshold).map(|_| random_scalar()));

        let commitments = Commitments(coefficients.iter().map(commit).collect());
        let out = (1..=shares as u32)
            .map(|index| {
                let x = Scalar::from(u64::from(index));
                let value = coefficients
                    .iter()
                    .rev()
                    .fold(Scalar::zero(), |acc, a| acc * x + a);
                Share { index, value }
            })
            .collect();
        coefficients.zeroize();
        Ok((out, commitments))
    })
}

/// A participant's share of a key generated without a dealer (each participant deals a
/// random secret with [`split`]; the key is the sum of the secrets): the sum of the shares
/// every dealer gave it, all at its index. Each should have been checked against its
/// dealer's commitments first ([`Commitments::verify_share`]); the sum then checks against
/// [`Commitments::sum`].
pub fn add_shares(shares: &[Share]) -> Result<Share, CombineError> {
    let first = shares
        .first()
        .ok_or(CombineError::NotEnoughShares { have: 0, need: 1 })?;
    let mut value = Scalar::zero();
    for share in shares {
        if share.index != first.index {
            return Err(CombineError::IndexMismatch {
                expected: first.index,
                found: share.index,
            });
        }
        value += share.value;
    }
    if value == Scalar::zero() {
        return Err(CombineError::Degenerate);
    }
    Ok(Share {
        index: first.index,
        value,
    })
}

/// Recovers the secret from the first `threshold` of `shares` (all indices are checked).
pub fn recover(shares: &[Share], threshold: usize) -> Result<SecretScalar, CombineError> {
    measure(Operation::Recover, || {
        let indices: Vec<u32> = shares.iter().map(|s| s.index).collect();
        let lambdas = lagrange_at_zero(&indices, threshold)?;
        let secret = shares
            .iter()
            .zip(&lambdas)
            .fold(Scalar::zero(), |acc, (share, lambda)| {
                acc + share.value * lambda
            });
        if secret == Scalar::zero() {
            return Err(CombineError::Degenerate);
        }
        Ok(SecretScalar(secret))
    })
}

/// A BLS signature made with one share's value as the secret key.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PartialSignature {
    /// The share's index.
    pub index: u32,
    /// The signature under the share's public key.
    pub signature: bls::Signature,
}

/// Signs `message` with one share.
pub fn partial_sign(share: &Share, message: &[u8]) -> Result<PartialSignature, ShareError> {
    measure(Operation::PartialSignature, || {
        Ok(PartialSignature {
            index: share.index,
            signature: share.signing_key()?.sign(message),
        })
    })
}

/// Verifies a partial signature against the share public key the commitments imply.
pub fn verify_partial(
    commitments: &Commitments,
    partial: &PartialSignature,
    message: &[u8],
) -> Result<(), bls::VerifyError> {
    measure(Operation::PartialSignature, || {
        let key = commitments
            .share_public_key(partial.index)
            .map_err(|_| bls::VerifyError::InvalidSignature)?;
        key.verify(message, &partial.signature)
    })
}

/// Combines the first `threshold` partial signatures into the group signature.
pub fn combine_signatures(
    partials: &[PartialSignature],
    threshold: usize,
) -> Result<bls::Signature, CombineError> {
    measure(Operation::Recover, || {
        let indices: Vec<u32> = partials.iter().map(|p| p.index).collect();
        let lambdas = lagrange_at_zero(&indices, threshold)?;
        let signatures: Vec<bls::Signature> =
            partials[..threshold].iter().map(|p| p.signature).collect();
        let scalars: Vec<[u8; 32]> = lambdas.iter().map(Scalar::to_bytes).collect();
        bls::linear_combination(&signatures, &scalars).map_err(|_| CombineError::Degenerate)
    })
}

/// Lagrange coefficients at x = 0 for the first `threshold` of `indices`, after checking
/// every index is non-zero and distinct.
pub(crate) fn lagrange_at_zero(
    indices: &[u32],
    threshold: usize,
) -> Result<Vec<Scalar>, CombineError> {
    if threshold == 0 {
        return Err(CombineError::ZeroThreshold);
    }
    if indices.len() < threshold {
        return Err(CombineError::NotEnoughShares {
            have: indices.len(),
            need: threshold,
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    for &index in indices {
        if index == 0 {
            return Err(CombineError::ZeroIndex);
        }
        if !seen.insert(index) {
            return Err(CombineError::DuplicateIndex(index));
        }
    }
    let xs: Vec<Scalar> = indices[..threshold]
        .iter()
        .map(|&i| Scalar::from(u64::from(i)))
        .collect();
    xs.iter()
        .enumerate()
        .map(|(i, xi)| {
            let (num, den) = xs
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .fold((Scalar::one(), Scalar::one()), |(num, den), (_, xj)| {
                    (num * xj, den * (xj - xi))
                });
            // Distinct non-zero indices make every denominator non-zero.
            Option::<Scalar>::from(den.invert())
                .map(|inv| num * inv)
                .ok_or(CombineError::Degenerate)
        })
        .collect()
}

fn random_scalar() -> Scalar {
    let mut wide = Secret::<64>::zero();
    random_bytes(wide.expose_mut());
    Scalar::from_bytes_wide(wide.expose())
}

fn scalar_from_be(bytes: &[u8; 32]) -> Result<Scalar, ShareError> {
    let mut le = Secret::new(*bytes);
    le.expose_mut().reverse();
    Option::from(Scalar::from_bytes(le.expose())).ok_or(ShareError::BadScalar)
}

fn scalar_to_be(value: &Scalar) -> Secret<32> {
    let mut bytes = Secret::new(value.to_bytes());
    bytes.expose_mut().reverse();
    bytes
}

#[cfg(test)]
pub(crate) mod tests;
