//! Threshold BLS signatures with a key nobody holds: each of t holders signs a message with
//! its share of a BLS12-381 scalar ([`super::partial_sign`]), and the coordinator recovers the
//! group signature by Lagrange interpolation in G2. The result is an ordinary BLS signature
//! (min_pk, the proof-of-possession ciphersuite of [`crate::bls`]) under the group public key,
//! which any standard verifier accepts.
//!
//! A [`SigningGroup`] is the public side of one sharing: the group key and every holder's
//! public share, from a dealt secret's Feldman commitments or from the public shares of a key
//! generated without a dealer. [`SigningGroup::combine`] checks the group signature first and
//! each partial signature only when that fails, to name the holder whose partial fails: one
//! pairing check in the common case instead of t + 1.
//!
//! What it does not do: transport, choosing signers, or keeping anything.

use super::{CombineError, Commitments, PartialSignature, combine_signatures};
use crate::bls;

/// Why a threshold signature could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum ThresholdSignError {
    /// The group key or a public share does not decode as a BLS public key.
    #[error("public share {index} is not a valid BLS public key: {reason}")]
    PublicShare {
        /// Whose (0 for the group key).
        index: u32,
        /// Why.
        reason: bls::DecodeError,
    },
    /// A holder outside the committee.
    #[error("holder {0} is not in the committee")]
    UnknownHolder(u32),
    /// A partial signature does not verify under its holder's public share.
    #[error("the partial signature of holder {0} fails")]
    BadPartial(u32),
    /// Too few partial signatures, or indices that cannot be combined.
    #[error(transparent)]
    Combine(#[from] CombineError),
}

/// Where the holders' public shares come from.
#[derive(Clone, Debug)]
enum PublicShares {
    /// Evaluated from a dealt secret's Feldman commitments.
    Dealt(Commitments),
    /// Listed, holder 1 first, as a key generation made them.
    Listed(Vec<bls::PublicKey>),
}

/// The public side of a t-of-n BLS12-381 key: what a coordinator checks partial signatures
/// and the group signature against.
#[derive(Clone, Debug)]
pub struct SigningGroup {
    threshold: usize,
    group_key: bls::PublicKey,
    shares: PublicShares,
}

impl SigningGroup {
    /// The group of a dealt secret: its threshold is the number of commitments.
    pub fn dealt(commitments: Commitments) -> Self {
        Self {
            threshold: commitments.threshold(),
            group_key: commitments.group_public_key(),
            shares: PublicShares::Dealt(commitments),
        }
    }

    /// The group of a key generated without a dealer: its group key and every holder's
    /// public share (compressed G1), holder 1 first.
    pub fn generated<B: AsRef<[u8]>>(
        threshold: usize,
        group_key: &[u8],
        public_shares: &[B],
    ) -> Result<Self, ThresholdSignError> {
        let decode = |index: u32, bytes: &[u8]| {
            bls::PublicKey::from_bytes(bytes)
                .map_err(|reason| ThresholdSignError::PublicShare { index, reason })
        };
        let group_key = decode(0, group_key)?;
        let shares = public_shares
            .iter()
            .zip(1u32..)
            .map(|(bytes, index)| decode(index, bytes.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if threshold == 0 || threshold > shares.len() {
            return Err(CombineError::NotEnoughShares {
                have: shares.len(),
                need: threshold.max(1),
            }
            .into());
        }
        Ok(Self {
            threshold,
            group_key,
            shares: PublicShares::Listed(shares),
        })
    }

    /// The group public key the signatures verify under.
    pub fn public_key(&self) -> &bls::PublicKey {
        &self.group_key
    }

    /// How many partial signatures make a signature.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// The public share of holder `index`.
    pub fn share_key(&self, index: u32) -> Result<bls::PublicKey, ThresholdSignError> {
        let unknown = || ThresholdSignError::UnknownHolder(index);
        match &self.shares {
            PublicShares::Dealt(commitments) => {
                commitments.share_public_key(index).map_err(|_| unknown())
            }
            PublicShares::Listed(keys) => (index as usize)
                .checked_sub(1)
                .and_then(|at| keys.get(at))
                .cloned()
                .ok_or_else(unknown),
        }
    }

    /// Checks one holder's partial signature on `message` against its public share.
    pub fn check_partial(
        &self,
        partial: &PartialSignature,
        message: &[u8],
    ) -> Result<(), ThresholdSignError> {
        self.share_key(partial.index)?
            .verify(message, &partial.signature)
            .map_err(|_| ThresholdSignError::BadPartial(partial.index))
    }

    /// The group signature on `message` from the first t of `partials`, checked under the
    /// group key. When it fails, the first of those partials that fails its public share is
    /// named ([`ThresholdSignError::BadPartial`]).
    pub fn combine(
        &self,
        partials: &[PartialSignature],
        message: &[u8],
    ) -> Result<bls::Signature, ThresholdSignError> {
        if let Some(stranger) = partials.iter().find(|p| self.share_key(p.index).is_err()) {
            return Err(ThresholdSignError::UnknownHolder(stranger.index));
        }
        let signature = combine_signatures(partials, self.threshold)?;
        if self.group_key.verify(message, &signature).is_ok() {
            return Ok(signature);
        }
        for partial in &partials[..self.threshold] {
            self.check_partial(partial, message)?;
        }
        // Every partial verifies yet the sum does not: only indices that are not distinct
        // shares of one polynomial do that, which the commitments rule out.
        Err(CombineError::Degenerate.into())
    }
}

#[cfg(test)]
#[path = "signing_tests.rs"]
mod tests;
