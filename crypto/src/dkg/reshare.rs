//! Moving a generated secp256k1 key to a new committee and threshold without ever rebuilding
//! it, and so refreshing the shares of one committee (resharing, after Desmedt and Jajodia;
//! the same construction as `crate::threshold::reshare` for BLS12-381 scalars).
//!
//! At least t old holders each share out their own share ([`deal`]): a fresh polynomial of
//! degree T2-1 whose constant term is that share, with Feldman commitments. Each new holder
//! checks every sub-share against its dealer's commitments, and the commitments' constant
//! term against the dealer's old public share ([`check_sub_share`]), so a dealer cannot deal
//! anything but its share; then it weights the sub-shares with the dealers' Lagrange
//! coefficients ([`combine`]). The new commitments are the dealers' weighted the same way
//! ([`combine_commitments`]): their constant term is the old group key, and they give every
//! new holder's public share ([`public_shares_from`]). Resharing to the same committee and
//! threshold is a refresh: the new shares do not combine with the old.
//!
//! Shares are 32-byte big-endian scalars, as [`super::KeyShare::secret_bytes`] gives them;
//! points are SEC1 compressed. What it does not do: choose the dealers, carry their messages
//! or delete the old shares (the caller's part). No I/O.

use k256::elliptic_curve::ff::PrimeField;
use k256::elliptic_curve::sec1::ToSec1Point;
use k256::{ProjectivePoint, Scalar};

use super::{DkgError, Participant, PublicShares};
use crate::Secret;

fn scalar(bytes: &[u8; 32], from: Participant) -> Result<Scalar, DkgError> {
    Option::<Scalar>::from(Scalar::from_repr((*bytes).into())).ok_or(DkgError::Malformed {
        from,
        what: "share",
    })
}

fn scalar_bytes(value: &Scalar) -> Secret<32> {
    let mut out = Secret::<32>::zero();
    out.expose_mut().copy_from_slice(&value.to_repr());
    out
}

fn point(bytes: &[u8], from: Participant) -> Result<ProjectivePoint, DkgError> {
    k256::PublicKey::from_sec1_bytes(bytes)
        .map(|key| key.to_projective())
        .map_err(|_| DkgError::Malformed {
            from,
            what: "commitment",
        })
}

fn point_bytes(value: &ProjectivePoint) -> Result<Vec<u8>, DkgError> {
    let key = k256::PublicKey::from_affine(value.to_affine())
        .map_err(|_| DkgError::Failed("a commitment at infinity"))?;
    Ok(key.to_sec1_point(true).as_bytes().to_vec())
}

/// A fresh random non-zero scalar.
fn random_scalar() -> Scalar {
    loop {
        let bytes = Secret::<32>::random();
        if let Some(value) = Option::<Scalar>::from(Scalar::from_repr((*bytes.expose()).into()))
            && !bool::from(value.is_zero())
        {
            return value;
        }
    }
}

/// Σ C_k x^k: a polynomial committed to by `commitments`, at `x`, in the exponent.
fn evaluate(commitments: &[ProjectivePoint], x: Participant) -> ProjectivePoint {
    let x = Scalar::from(u64::from(x));
    commitments
        .iter()
        .rev()
        .fold(ProjectivePoint::IDENTITY, |acc, c| acc * x + c)
}

/// Lagrange coefficients at zero of `dealers` (distinct, from 1).
fn lagrange_at_zero(dealers: &[Participant]) -> Result<Vec<Scalar>, DkgError> {
    let mut seen = dealers.to_vec();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != dealers.len() || seen.first() == Some(&0) || seen.is_empty() {
        return Err(DkgError::Failed(
            "dealers must be distinct participants, numbered from 1",
        ));
    }
    dealers
        .iter()
        .map(|i| {
            let xi = Scalar::from(u64::from(*i));
            let (num, den) = dealers.iter().filter(|j| *j != i).fold(
                (Scalar::ONE, Scalar::ONE),
                |(num, den), j| {
                    let xj = Scalar::from(u64::from(*j));
                    (num * xj, den * (xj - xi))
                },
            );
            Option::<Scalar>::from(den.invert())
                .map(|inverse| num * inverse)
                .ok_or(DkgError::Failed("dealers give no Lagrange coefficient"))
        })
        .collect()
}

/// An old holder's part: its `share`, shared out to `new_holders` holders of whom any
/// `new_threshold` rebuild it. New holder `j`'s sub-share (index `j - 1`), and the
/// commitments to the polynomial (constant term first).
pub fn deal(
    share: &[u8; 32],
    new_threshold: u16,
    new_holders: u16,
) -> Result<(Vec<Secret<32>>, Vec<Vec<u8>>), DkgError> {
    if new_threshold == 0 || new_threshold > new_holders {
        return Err(DkgError::Parameters {
            threshold: new_threshold,
            participants: new_holders,
            reason: "the threshold must be between 1 and the number of holders",
        });
    }
    let mut coefficients = vec![scalar(share, 0)?];
    coefficients.extend((1..new_threshold).map(|_| random_scalar()));
    let commitments = coefficients
        .iter()
        .map(|a| point_bytes(&(ProjectivePoint::GENERATOR * a)))
        .collect::<Result<_, _>>()?;
    let sub_shares = (1..=new_holders)
        .map(|j| {
            let x = Scalar::from(u64::from(j));
            let value = coefficients
                .iter()
                .rev()
                .fold(Scalar::ZERO, |acc, a| acc * x + a);
            scalar_bytes(&value)
        })
        .collect();
    Ok((sub_shares, commitments))
}

/// Checks a sub-share that `dealer` dealt to new holder `recipient`: on the polynomial its
/// `commitments` commit to, and that polynomial's constant term the dealer's
/// `old_public_share` (so the dealer shared out its own share, nothing else). A failure names
/// the dealer.
pub fn check_sub_share(
    dealer: Participant,
    commitments: &[Vec<u8>],
    old_public_share: &[u8],
    recipient: Participant,
    sub_share: &[u8; 32],
) -> Result<(), DkgError> {
    let points = commitments
        .iter()
        .map(|c| point(c, dealer))
        .collect::<Result<Vec<_>, _>>()?;
    let old = point(old_public_share, dealer)?;
    if points.first() != Some(&old) {
        return Err(DkgError::Dealer {
            culprit: dealer,
            reason: "commitments that do not start from its old share",
        });
    }
    if ProjectivePoint::GENERATOR * scalar(sub_share, dealer)? != evaluate(&points, recipient) {
        return Err(DkgError::Dealer {
            culprit: dealer,
            reason: "a sub-share that fails its commitments",
        });
    }
    Ok(())
}

/// A new holder's share: its sub-shares, each with its dealer's old index, weighted by the
/// dealers' Lagrange coefficients. Exactly the old threshold's number of dealers, each
/// counted once; every sub-share checked first.
pub fn combine(sub_shares: &[(Participant, Secret<32>)]) -> Result<Secret<32>, DkgError> {
    let dealers: Vec<Participant> = sub_shares.iter().map(|(dealer, _)| *dealer).collect();
    let weights = lagrange_at_zero(&dealers)?;
    let mut value = Scalar::ZERO;
    for ((dealer, sub_share), weight) in sub_shares.iter().zip(&weights) {
        value += scalar(sub_share.expose(), *dealer)? * weight;
    }
    if bool::from(value.is_zero()) {
        return Err(DkgError::Failed("a share of zero"));
    }
    Ok(scalar_bytes(&value))
}

/// The new committee's commitments: the dealers' (each with its old index), weighted as in
/// [`combine`]. Their constant term is the old group key.
pub fn combine_commitments(
    parts: &[(Participant, Vec<Vec<u8>>)],
) -> Result<Vec<Vec<u8>>, DkgError> {
    let dealers: Vec<Participant> = parts.iter().map(|(dealer, _)| *dealer).collect();
    let weights = lagrange_at_zero(&dealers)?;
    let length = parts.first().map_or(0, |(_, c)| c.len());
    let mut sum = vec![ProjectivePoint::IDENTITY; length];
    for ((dealer, commitments), weight) in parts.iter().zip(&weights) {
        if commitments.len() != length {
            return Err(DkgError::Malformed {
                from: *dealer,
                what: "commitment (another threshold)",
            });
        }
        for (acc, c) in sum.iter_mut().zip(commitments) {
            *acc += point(c, *dealer)? * weight;
        }
    }
    sum.iter().map(point_bytes).collect()
}

/// Every new holder's public share (`holders` of them, holder 1 first) under the new
/// committee's commitments.
pub fn public_shares_from(commitments: &[Vec<u8>], holders: u16) -> Result<PublicShares, DkgError> {
    let points = commitments
        .iter()
        .map(|c| point(c, 0))
        .collect::<Result<Vec<_>, _>>()?;
    (1..=holders)
        .map(|j| point_bytes(&evaluate(&points, j)))
        .collect()
}

#[cfg(test)]
#[path = "reshare_tests.rs"]
mod tests;
