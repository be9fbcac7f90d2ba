//! M-Pin (Milagro's zero-knowledge two-factor authentication) over BLS12-381, byte-compatible
//! with the Milagro crypto library of 2019, so that its clients, servers and secrets work with
//! the shares dta issues.
//!
//! The scheme (Scott, "M-Pin: a multi-factor zero knowledge authentication protocol"), for a
//! Type-3 pairing e: G1 × G2 → GT, Q the standard generator of G2:
//! - master secret s (a scalar), split additively among trust authorities: s = s₁ + s₂ + …;
//! - server secret s·Q ∈ G2, and client secret s·H(ID) ∈ G1, each issued as shares that the
//!   receiver adds up ([`recombine_g1`], [`recombine_g2`]);
//! - the client keeps a token: its secret with the PIN taken out, s·H(ID) − PIN·H(ID);
//! - to authenticate, the client sends U = x·H(ID), receives y, and sends
//!   V = −(x + y)·(token + PIN·H(ID)); the server accepts when e(V, Q)·e(U + y·H(ID), s·Q) = 1,
//!   which holds exactly when the PIN was right;
//! - time permits s·H(date ‖ H(ID)) are added to the client secret, and the server adds
//!   H(date ‖ H(ID)) to H(ID), so identities are revoked by not issuing permits.
//!
//! H is Milagro's own hash to G1 of that era, not RFC 9380: SHA-256 of the identity read as an
//! integer mod p, incremented until x³ + 4 is a square, the even square root as y, then the
//! point multiplied by the cofactor (u − 1)²/3. Encodings are Milagro's: G1 points
//! uncompressed as `04 ‖ x ‖ y` (97 bytes), G2 points as `x.c0 ‖ x.c1 ‖ y.c0 ‖ y.c1` (192
//! bytes), scalars as 48-byte big-endian numbers.
//!
//! What this module does not do: the one-pass variant's hash of the timestamp into y, the full
//! (key-agreeing) protocol, PIN-error recovery (Milagro's kangaroo) and the DVS variant. Points
//! decoded from bytes are checked to be on the curve and in the prime-order subgroup.

use bls12_381::{G1Affine, G1Projective, G2Affine, G2Prepared, G2Projective, Scalar};
use num_bigint::BigUint;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The base field modulus p of BLS12-381.
const P_HEX: &str = "1a0111ea397fe69a4b1ba7b6434bacd764774b84f38512bf6730d2a0f6b0f6241eabfffeb153ffffb9feffffffffaaab";
/// The cofactor of G1, (u − 1)²/3, by which Milagro multiplies a mapped point.
const G1_COFACTOR: u128 = 0x396c_8c00_5555_e156_8c00_aaab_0000_aaab;
/// Bytes of a field element and of a Milagro scalar.
pub const FIELD_BYTES: usize = 48;
/// Bytes of an encoded G1 point (`04 ‖ x ‖ y`).
pub const G1_BYTES: usize = 1 + 2 * FIELD_BYTES;
/// Bytes of an encoded G2 point.
pub const G2_BYTES: usize = 4 * FIELD_BYTES;
/// PINs are numbers below this (Milagro's `MAXPIN`).
pub const MAX_PIN: u32 = 10_000;

/// Why an M-Pin operation failed. Carries no secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MpinError {
    /// Bytes that are not a point of the group (wrong length, prefix, off the curve, outside
    /// the subgroup, or the point at infinity).
    #[error("invalid {group} point encoding")]
    InvalidPoint {
        /// `G1` or `G2`.
        group: &'static str,
    },
    /// Bytes that are not a scalar below the group order.
    #[error("invalid scalar encoding")]
    InvalidScalar,
    /// A PIN of MAX_PIN or more.
    #[error("a PIN is a number below {MAX_PIN}")]
    InvalidPin,
    /// Nothing to add up.
    #[error("no shares to combine")]
    NoShares,
    /// Shares that do not combine: fewer than the threshold, an index given twice, index 0.
    #[error("the shares do not combine: {0}")]
    Shares(crate::threshold::CombineError),
    /// The server's pairing check failed: wrong PIN, token, identity or secret.
    #[error("authentication failed")]
    BadPin,
}

impl MpinError {
    /// Milagro's error code for the same failure (`MPIN_BAD_PIN` is −19).
    pub fn milagro_code(&self) -> i32 {
        match self {
            Self::InvalidPoint { .. } => -14,
            Self::InvalidScalar | Self::InvalidPin | Self::NoShares | Self::Shares(_) => -16,
            Self::BadPin => -19,
        }
    }
}

/// A master-secret share, or any secret scalar of the protocol (x). Zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MpinScalar(Scalar);

impl std::fmt::Debug for MpinScalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MpinScalar(<redacted>)")
    }
}

impl MpinScalar {
    /// An authority's master-secret share from a t-of-n sharing of the master secret (dealt,
    /// or generated without a dealer with [`crate::threshold::add_shares`]).
    pub fn from_share(share: &crate::threshold::Share) -> Self {
        Self(*share.value())
    }

    /// A uniformly random scalar.
    pub fn random() -> Self {
        let mut wide = [0u8; 64];
        crate::random_bytes(&mut wide);
        let scalar = Scalar::from_bytes_wide(&wide);
        wide.zeroize();
        Self(scalar)
    }

    /// From Milagro's 48-byte big-endian encoding (shorter input is left-padded).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MpinError> {
        if bytes.len() > FIELD_BYTES {
            return Err(MpinError::InvalidScalar);
        }
        let (high, low) = bytes.split_at(bytes.len().saturating_sub(32));
        if high.iter().any(|b| *b != 0) {
            return Err(MpinError::InvalidScalar);
        }
        let mut little = [0u8; 32];
        for (i, byte) in low.iter().rev().enumerate() {
            little[i] = *byte;
        }
        let scalar = Option::<Scalar>::from(Scalar::from_bytes(&little));
        little.zeroize();
        scalar.map(Self).ok_or(MpinError::InvalidScalar)
    }

    /// Milagro's 48-byte big-endian encoding.
    pub fn to_bytes(&self) -> zeroize::Zeroizing<[u8; FIELD_BYTES]> {
        let mut out = zeroize::Zeroizing::new([0u8; FIELD_BYTES]);
        let little = zeroize::Zeroizing::new(self.0.to_bytes());
        for (i, byte) in little.iter().enumerate() {
            out[FIELD_BYTES - 1 - i] = *byte;
        }
        out
    }
}

/// A point of G1 in Milagro's encoding.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct G1Point(G1Affine);

/// A point of G2 in Milagro's encoding.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct G2Point(G2Affine);

impl G1Point {
    /// `04 ‖ x ‖ y`.
    pub fn to_bytes(&self) -> [u8; G1_BYTES] {
        let mut out = [0u8; G1_BYTES];
        out[0] = 0x04;
        out[1..].copy_from_slice(&self.0.to_uncompressed());
        out
    }

    /// Parses `04 ‖ x ‖ y`, refusing points off the curve, outside the subgroup, or at
    /// infinity.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MpinError> {
        let invalid = MpinError::InvalidPoint { group: "G1" };
        let body: &[u8; 2 * FIELD_BYTES] = match bytes.split_first() {
            Some((0x04, body)) => body.try_into().map_err(|_| invalid.clone())?,
            _ => return Err(invalid),
        };
        // The top three bits carry flags in the other encoding; here they must be clear.
        if body[0] & 0xe0 != 0 {
            return Err(invalid);
        }
        let point: Option<G1Affine> = G1Affine::from_uncompressed(body).into();
        match point {
            Some(point) if !bool::from(point.is_identity()) => Ok(Self(point)),
            _ => Err(invalid),
        }
    }
}

impl G2Point {
    /// `x.c0 ‖ x.c1 ‖ y.c0 ‖ y.c1`, 48 bytes each, big-endian.
    pub fn to_bytes(&self) -> [u8; G2_BYTES] {
        // The other encoding puts c1 before c0 in each coordinate.
        swap_halves(&self.0.to_uncompressed())
    }

    /// Parses Milagro's encoding, refusing points off the curve, outside the subgroup, or at
    /// infinity.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MpinError> {
        let invalid = MpinError::InvalidPoint { group: "G2" };
        let bytes: &[u8; G2_BYTES] = bytes.try_into().map_err(|_| invalid.clone())?;
        let swapped = swap_halves(bytes);
        if swapped[0] & 0xe0 != 0 {
            return Err(invalid);
        }
        let point: Option<G2Affine> = G2Affine::from_uncompressed(&swapped).into();
        match point {
            Some(point) if !bool::from(point.is_identity()) => Ok(Self(point)),
            _ => Err(invalid),
        }
    }
}

/// Swaps the two 48-byte halves of each 96-byte coordinate.
fn swap_halves(bytes: &[u8; G2_BYTES]) -> [u8; G2_BYTES] {
    let mut out = [0u8; G2_BYTES];
    for coordinate in 0..2 {
        let at = coordinate * 2 * FIELD_BYTES;
        out[at..at + FIELD_BYTES].copy_from_slice(&bytes[at + FIELD_BYTES..at + 2 * FIELD_BYTES]);
        out[at + FIELD_BYTES..at + 2 * FIELD_BYTES].copy_from_slice(&bytes[at..at + FIELD_BYTES]);
    }
    out
}

/// SHA-256 of an identity: what Milagro calls the hashed ID (`HASH_ID`).
pub fn hash_id(id: &[u8]) -> [u8; 32] {
    Sha256::digest(id).into()
}

/// Milagro's `mhashit` with a date: SHA-256 of the date (4 bytes, big-endian) and the hashed
/// ID, the input of a time permit's point.
fn hash_date(date: u32, hashed_id: &[u8; 32]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(date.to_be_bytes());
    hasher.update(hashed_id);
    hasher.finalize().into()
}

/// Milagro's `ECP_mapit`: the bytes as an integer mod p, incremented until it is the x of a
/// curve point (x³ + 4 a square), y the even root, times the cofactor.
pub fn map_to_g1(bytes: &[u8]) -> G1Point {
    let p = BigUint::parse_bytes(P_HEX.as_bytes(), 16).unwrap_or_default();
    let four = BigUint::from(4u32);
    // p ≡ 3 (mod 4): a square's root is rhs^((p+1)/4), and squaring the candidate tells
    // whether rhs was a square at all (one exponentiation, not Euler's criterion and a root).
    let root_exponent = (&p + 1u32) >> 2;
    let mut x = BigUint::from_bytes_be(bytes) % &p;
    loop {
        let rhs = (&x * &x % &p * &x + &four) % &p;
        let mut y = rhs.modpow(&root_exponent, &p);
        if &y * &y % &p == rhs {
            if y.bit(0) {
                y = &p - y;
            }
            let mut encoded = [0u8; 2 * FIELD_BYTES];
            write_be(&mut encoded[..FIELD_BYTES], &x);
            write_be(&mut encoded[FIELD_BYTES..], &y);
            let point: Option<G1Affine> = G1Affine::from_uncompressed_unchecked(&encoded).into();
            if let Some(point) = point.filter(|p| bool::from(p.is_on_curve())) {
                let cleared = G1Projective::from(point) * cofactor();
                return G1Point(G1Affine::from(cleared));
            }
        }
        x = (x + 1u32) % &p;
    }
}

fn write_be(out: &mut [u8], value: &BigUint) {
    let bytes = value.to_bytes_be();
    let start = out.len() - bytes.len();
    out[start..].copy_from_slice(&bytes);
}

fn cofactor() -> Scalar {
    let mut little = [0u8; 32];
    little[..16].copy_from_slice(&G1_COFACTOR.to_le_bytes());
    Option::<Scalar>::from(Scalar::from_bytes(&little)).unwrap_or_else(Scalar::zero)
}

/// H(ID): the identity's point, as client secrets and the server's check use it.
pub fn identity_point(id: &[u8]) -> G1Point {
    map_to_g1(&hash_id(id))
}

/// H_T(date, ID): the point of a time permit.
pub fn permit_point(date: u32, id: &[u8]) -> G1Point {
    map_to_g1(&hash_date(date, &hash_id(id)))
}

/// A server-secret share s_i·Q.
pub fn server_secret(share: &MpinScalar) -> G2Point {
    G2Point(G2Affine::from(G2Projective::generator() * share.0))
}

/// A client-secret share s_i·H(ID).
pub fn client_secret(share: &MpinScalar, id: &[u8]) -> G1Point {
    multiply(&identity_point(id), &share.0)
}

/// A time-permit share s_i·H_T(date, ID).
pub fn time_permit(share: &MpinScalar, date: u32, id: &[u8]) -> G1Point {
    multiply(&permit_point(date, id), &share.0)
}

fn multiply(point: &G1Point, scalar: &Scalar) -> G1Point {
    G1Point(G1Affine::from(G1Projective::from(point.0) * scalar))
}

fn small(pin: u32) -> Result<Scalar, MpinError> {
    if pin >= MAX_PIN {
        return Err(MpinError::InvalidPin);
    }
    Ok(Scalar::from(u64::from(pin)))
}

/// The Lagrange coefficients at zero of the first `threshold` shares' indices.
fn lagrange_weights<P>(shares: &[(u32, P)], threshold: usize) -> Result<Vec<Scalar>, MpinError> {
    let indices: Vec<u32> = shares.iter().map(|(index, _)| *index).collect();
    crate::threshold::lagrange_at_zero(&indices, threshold).map_err(MpinError::Shares)
}

/// Combines G1 shares (client secrets, time permits) of a master secret shared t-of-n: any
/// `threshold` of them, each with its authority's share index, weighted by their Lagrange
/// coefficients at zero. The first `threshold` are used.
pub fn recombine_g1_threshold(
    shares: &[(u32, G1Point)],
    threshold: usize,
) -> Result<G1Point, MpinError> {
    let sum = shares
        .iter()
        .zip(&lagrange_weights(shares, threshold)?)
        .map(|((_, share), lambda)| G1Projective::from(share.0) * lambda)
        .fold(G1Projective::identity(), |a, b| a + b);
    to_g1(sum)
}

/// Combines G2 shares (server secrets) of a master secret shared t-of-n, as
/// [`recombine_g1_threshold`] does G1 shares.
pub fn recombine_g2_threshold(
    shares: &[(u32, G2Point)],
    threshold: usize,
) -> Result<G2Point, MpinError> {
    let sum = shares
        .iter()
        .zip(&lagrange_weights(shares, threshold)?)
        .map(|((_, share), lambda)| G2Projective::from(share.0) * lambda)
        .fold(G2Projective::identity(), |a, b| a + b);
    let sum = G2Affine::from(sum);
    if bool::from(sum.is_identity()) {
        return Err(MpinError::InvalidPoint { group: "G2" });
    }
    Ok(G2Point(sum))
}

/// Adds G1 shares (client secrets, time permits).
pub fn recombine_g1(shares: &[G1Point]) -> Result<G1Point, MpinError> {
    let sum = shares
        .iter()
        .map(|s| G1Projective::from(s.0))
        .reduce(|a, b| a + b)
        .ok_or(MpinError::NoShares)?;
    to_g1(sum)
}

/// Adds G2 shares (server secrets).
pub fn recombine_g2(shares: &[G2Point]) -> Result<G2Point, MpinError> {
    let sum = shares
        .iter()
        .map(|s| G2Projective::from(s.0))
        .reduce(|a, b| a + b)
        .ok_or(MpinError::NoShares)?;
    let sum = G2Affine::from(sum);
    if bool::from(sum.is_identity()) {
        return Err(MpinError::InvalidPoint { group: "G2" });
    }
    Ok(G2Point(sum))
}

fn to_g1(point: G1Projective) -> Result<G1Point, MpinError> {
    let point = G1Affine::from(point);
    if bool::from(point.is_identity()) {
        return Err(MpinError::InvalidPoint { group: "G1" });
    }
    Ok(G1Point(point))
}

/// The token a client stores: its secret with the PIN taken out, CS − PIN·H(ID).
pub fn extract_pin(client_secret: &G1Point, id: &[u8], pin: u32) -> Result<G1Point, MpinError> {
    let pin = small(pin)?;
    let h = G1Projective::from(identity_point(id).0);
    to_g1(G1Projective::from(client_secret.0) - h * pin)
}

/// The client's first pass: its commitment U = x·H(ID), and what it keeps for the second.
#[derive(Debug)]
pub struct ClientFirstPass {
    /// U, sent to the server.
    pub u: G1Point,
    /// x and the secret rebuilt from the token and the PIN; consumed by [`client_second`].
    pub state: ClientState,
}

/// What the client keeps between its passes. Zeroized on drop.
pub struct ClientState {
    x: MpinScalar,
    secret: G1Projective,
}

impl std::fmt::Debug for ClientState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientState(<redacted>)")
    }
}

impl Drop for ClientState {
    fn drop(&mut self) {
        self.secret = G1Projective::identity();
    }
}

/// A time permit the client holds: its date and the combined permit s·H_T(date, ID).
#[derive(Debug, Clone, Copy)]
pub struct Permit {
    /// The date it is valid for (Milagro counts days since the epoch).
    pub date: u32,
    /// The combined permit.
    pub point: G1Point,
}

/// The point authentication uses: H(ID), plus H_T(date, ID) on a dated run.
fn auth_point(id: &[u8], date: Option<u32>) -> G1Projective {
    let h = G1Projective::from(identity_point(id).0);
    match date {
        Some(date) => h + G1Projective::from(permit_point(date, id).0),
        None => h,
    }
}

/// Client pass 1 (`MPIN_CLIENT_1`): rebuilds its secret as token + PIN·H(ID) (+ the permit on
/// a dated run) and commits to x: U = x·H(ID), or x·(H(ID) + H_T(date, ID)) with a permit. x is
/// random when `None` (given only to reproduce test vectors).
pub fn client_first(
    token: &G1Point,
    id: &[u8],
    pin: u32,
    permit: Option<&Permit>,
    x: Option<MpinScalar>,
) -> Result<ClientFirstPass, MpinError> {
    let pin = small(pin)?;
    let x = x.unwrap_or_else(MpinScalar::random);
    let h = G1Projective::from(identity_point(id).0);
    let mut secret = G1Projective::from(token.0) + h * pin;
    if let Some(permit) = permit {
        secret += G1Projective::from(permit.point.0);
    }
    let u = to_g1(auth_point(id, permit.map(|p| p.date)) * x.0)?;
    Ok(ClientFirstPass {
        u,
        state: ClientState { x, secret },
    })
}

/// Client pass 2 (`MPIN_CLIENT_2`): V = −(x + y)·secret, for the server's challenge y.
pub fn client_second(state: ClientState, y: &MpinScalar) -> Result<G1Point, MpinError> {
    let factor = -(state.x.0 + y.0);
    to_g1(state.secret * factor)
}

/// The server's check (`MPIN_SERVER_2`): e(V, Q)·e(U + y·A, sQ) = 1 with A = H(ID), or
/// H(ID) + H_T(date, ID) on a dated run (the client must then hold that date's permit).
pub fn server_check(
    id: &[u8],
    date: Option<u32>,
    y: &MpinScalar,
    server_secret: &G2Point,
    u: &G1Point,
    v: &G1Point,
) -> Result<(), MpinError> {
    let a = auth_point(id, date);
    let r = G1Affine::from(G1Projective::from(u.0) + a * y.0);
    let q = G2Prepared::from(G2Affine::generator());
    let s_q = G2Prepared::from(server_secret.0);
    let product = bls12_381::multi_miller_loop(&[(&v.0, &q), (&r, &s_q)]).final_exponentiation();
    if product == bls12_381::Gt::identity() {
        Ok(())
    } else {
        Err(MpinError::BadPin)
    }
}

#[cfg(test)]
#[path = "mpin_tests.rs"]
mod tests;
