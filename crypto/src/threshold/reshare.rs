//! Moving a shared secret to a new committee and threshold without ever rebuilding it
//! (resharing, after Desmedt and Jajodia), and so refreshing the shares of one committee.
//!
//! At least t old holders each share out their own share: a fresh polynomial of degree T2-1
//! whose constant term is that share ([`deal`]), with Feldman commitments whose constant term
//! must be the old share's public key under the old commitments
//! ([`Commitments::check_reshared_from`]), so a holder cannot deal anything but its share.
//! Each new holder checks every sub-share it got against its dealer's commitments and
//! weights them with the dealers' Lagrange coefficients ([`combine`]): the result is a share
//! of the same secret on a new random polynomial of degree T2-1. The new commitments are the
//! dealers' weighted the same way ([`combine_commitments`]): their constant term is the old
//! group key. Resharing to the same committee and threshold is a refresh: the new shares do
//! not combine with the old.
//!
//! What it does not do: choose the dealers, carry their messages or delete the old shares
//! (the caller's part); every dealer counted must have passed its checks first.

use bls12_381::{G1Affine, G1Projective, Scalar};

use super::{
    CombineError, CommitmentError, Commitments, SecretScalar, Share, ShareError, SplitError,
    lagrange_at_zero, split,
};

/// Why a reshared share or commitment set could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum ReshareError {
    /// The dealers' weights: too few dealers, one counted twice, index 0.
    #[error(transparent)]
    Dealers(#[from] CombineError),
    /// The dealers' commitments do not describe one new threshold, or combine to nothing.
    #[error(transparent)]
    Commitments(#[from] CommitmentError),
}

/// An old holder's part: its share, shared out to `new_holders` holders of whom any
/// `new_threshold` rebuild it (new holder `j` gets the sub-share of index `j`), and the
/// commitments to the polynomial.
pub fn deal(
    share: &Share,
    new_threshold: usize,
    new_holders: usize,
) -> Result<(Vec<Share>, Commitments), SplitError> {
    split(&SecretScalar(share.value), new_threshold, new_holders)
}

impl Commitments {
    /// Checks that these commitments (a resharing dealer's) start from the dealer's old share:
    /// their constant term is the public key the old commitments give the share at `dealer`.
    pub fn check_reshared_from(&self, old: &Commitments, dealer: u32) -> Result<(), ShareError> {
        if dealer == 0 {
            return Err(ShareError::ZeroIndex);
        }
        if G1Projective::from(self.0[0]) == old.evaluate(dealer) {
            Ok(())
        } else {
            Err(ShareError::Mismatch(dealer))
        }
    }
}

/// A new holder's share: the sub-shares it got, each with its dealer's old index, weighted
/// by the dealers' Lagrange coefficients. The first `old_threshold` are used; all are at this
/// holder's index.
pub fn combine(sub_shares: &[(u32, Share)], old_threshold: usize) -> Result<Share, ReshareError> {
    let dealers: Vec<u32> = sub_shares.iter().map(|(dealer, _)| *dealer).collect();
    let weights = lagrange_at_zero(&dealers, old_threshold)?;
    let index = sub_shares[0].1.index;
    let mut value = Scalar::zero();
    for ((_, sub_share), weight) in sub_shares.iter().zip(&weights) {
        if sub_share.index != index {
            return Err(CombineError::IndexMismatch {
                expected: index,
                found: sub_share.index,
            }
            .into());
        }
        value += sub_share.value * weight;
    }
    if value == Scalar::zero() {
        return Err(CombineError::Degenerate.into());
    }
    Ok(Share { index, value })
}

/// The new committee's commitments: the dealers' (each with its old index), weighted as in
/// [`combine`]. Their group public key is the old one.
pub fn combine_commitments(
    parts: &[(u32, Commitments)],
    old_threshold: usize,
) -> Result<Commitments, ReshareError> {
    let dealers: Vec<u32> = parts.iter().map(|(dealer, _)| *dealer).collect();
    let weights = lagrange_at_zero(&dealers, old_threshold)?;
    let length = parts[0].1.0.len();
    let mut sum = vec![G1Projective::identity(); length];
    for ((_, commitments), weight) in parts.iter().zip(&weights) {
        if commitments.0.len() != length {
            return Err(CommitmentError::ThresholdMismatch(length, commitments.0.len()).into());
        }
        for (acc, point) in sum.iter_mut().zip(&commitments.0) {
            *acc += G1Projective::from(point) * weight;
        }
    }
    let sum: Vec<G1Affine> = sum.iter().map(G1Affine::from).collect();
    if bool::from(sum[0].is_identity()) {
        return Err(CommitmentError::IdentitySecret.into());
    }
    Ok(Commitments(sum))
}

#[cfg(test)]
#[path = "reshare_tests.rs"]
mod tests;
