//! The key generation with its group chosen at run time ([`Scheme`]), every message and every
//! secret kept between the parts as bytes: what a node that keeps those in envelopes and in
//! its keystore works with.

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use super::{
    Bls12381G1, DkgError, Participant, PublicShares, Round1, Round2, Shares, Suite, Taproot,
};
use crate::Secret;

/// Which group a key is generated over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// secp256k1 with Taproot's tweak: keys that a release rebuilds, and FROST signs with.
    Secp256k1Taproot,
    /// G1 of BLS12-381: the M-Pin master secret, never rebuilt.
    Bls12381,
}

/// What one participant's run ended with. Prints without its share.
pub struct Generated {
    /// Its share of the key (32 big-endian bytes).
    pub share: Secret<32>,
    /// Its public share.
    pub public_share: Vec<u8>,
    /// The group key.
    pub group_key: Vec<u8>,
    /// Every participant's public share, participant 1 first.
    pub public_shares: PublicShares,
}

impl std::fmt::Debug for Generated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generated")
            .field("share", &"<redacted>")
            .field("group_key", &self.group_key)
            .finish_non_exhaustive()
    }
}

/// Calls the generic `$function` for the suite of `$scheme`.
macro_rules! in_suite {
    ($scheme:expr, $function:ident($($argument:expr),* $(,)?)) => {
        match $scheme {
            Scheme::Secp256k1Taproot => $function::<Taproot>($($argument),*),
            Scheme::Bls12381 => $function::<Bls12381G1>($($argument),*),
        }
    };
}

impl Scheme {
    /// Every scheme.
    pub const ALL: [Scheme; 2] = [Scheme::Secp256k1Taproot, Scheme::Bls12381];

    /// The scheme's name, as logs and documents spell it.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Secp256k1Taproot => "secp256k1-taproot",
            Scheme::Bls12381 => "bls12-381-g1",
        }
    }

    /// The scheme of a [`Scheme::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scheme| scheme.name() == name)
    }

    /// Part 1 ([`super::deal`]): what to keep wrapped until part 2, and the commitment.
    pub fn deal(
        self,
        me: Participant,
        participants: u16,
        threshold: u16,
    ) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), DkgError> {
        in_suite!(self, deal(me, participants, threshold))
    }

    /// Part 2 ([`super::share_out`]), from what part 1 kept: what to keep until part 3, and
    /// the share for each other participant.
    pub fn share_out(
        self,
        me: Participant,
        participants: u16,
        kept: &[u8],
        commitments: &BTreeMap<Participant, impl AsRef<[u8]>>,
    ) -> Result<(Zeroizing<Vec<u8>>, Shares), DkgError> {
        in_suite!(self, share_out(me, participants, kept, commitments))
    }

    /// Part 3 ([`super::finish`]), from what part 2 kept.
    pub fn finish(
        self,
        me: Participant,
        participants: u16,
        kept: &[u8],
        commitments: &BTreeMap<Participant, impl AsRef<[u8]>>,
        shares: &Shares,
    ) -> Result<Generated, DkgError> {
        in_suite!(self, finish(me, participants, kept, commitments, shares))
    }

    /// [`super::public_shares_of`].
    pub fn public_shares_of(
        self,
        commitments: &[impl AsRef<[u8]>],
    ) -> Result<(Vec<u8>, PublicShares), DkgError> {
        in_suite!(self, public_shares_of(commitments))
    }

    /// Whether `bytes` encode a point of the scheme's group (a public share, or a group
    /// key), not the identity.
    pub fn check_public_share(self, bytes: &[u8]) -> Result<(), DkgError> {
        in_suite!(self, check_public_share(bytes))
    }

    /// [`super::share_fits`].
    pub fn share_fits(
        self,
        commitment: &[u8],
        recipient: Participant,
        share: &[u8],
    ) -> Result<bool, DkgError> {
        in_suite!(self, share_fits(commitment, recipient, share))
    }
}

fn deal<C: Suite>(
    me: Participant,
    participants: u16,
    threshold: u16,
) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), DkgError> {
    let (round1, commitment) = super::deal::<C>(me, participants, threshold)?;
    Ok((round1.to_bytes()?, commitment))
}

fn share_out<C: Suite>(
    me: Participant,
    participants: u16,
    kept: &[u8],
    commitments: &BTreeMap<Participant, impl AsRef<[u8]>>,
) -> Result<(Zeroizing<Vec<u8>>, Shares), DkgError> {
    let round1 = Round1::<C>::from_bytes(me, participants, kept)?;
    let (round2, shares) = super::share_out(round1, commitments)?;
    Ok((round2.to_bytes()?, shares))
}

fn finish<C: Suite>(
    me: Participant,
    participants: u16,
    kept: &[u8],
    commitments: &BTreeMap<Participant, impl AsRef<[u8]>>,
    shares: &Shares,
) -> Result<Generated, DkgError> {
    let round2 = Round2::<C>::from_bytes(me, participants, kept)?;
    let (share, public_shares) = super::finish(&round2, commitments, shares)?;
    Ok(Generated {
        share: share.secret_bytes(),
        public_share: share.public_share()?,
        group_key: share.group_key_bytes()?,
        public_shares,
    })
}

fn public_shares_of<C: Suite>(
    commitments: &[impl AsRef<[u8]>],
) -> Result<(Vec<u8>, PublicShares), DkgError> {
    super::public_shares_of::<C>(commitments)
}

fn share_fits<C: Suite>(
    commitment: &[u8],
    recipient: Participant,
    share: &[u8],
) -> Result<bool, DkgError> {
    super::share_fits::<C>(commitment, recipient, share)
}

fn check_public_share<C: Suite>(bytes: &[u8]) -> Result<(), DkgError> {
    frost_core::keys::VerifyingShare::<C>::deserialize(bytes)
        .map(drop)
        .map_err(|_| DkgError::Malformed {
            from: 0,
            what: "public share",
        })
}
