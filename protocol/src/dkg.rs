//! The payloads of a t-of-n key the fiduciaries generate without a dealer (FROST's DKG over
//! secp256k1, see `dta_crypto::dkg`), as an order's log carries them, and the checks anyone
//! can make of them: that a round holds what each fiduciary signed, and who a complaint
//! convicts.
//!
//! The log: each fiduciary's [`DkgCommitment`] (to the principal, `prev` the order request);
//! the principal's [`DkgRound`] with all of them (`prev` the order request), which every
//! fiduciary gets; each fiduciary's [`DkgShare`] to each other one, sealed to its recipient
//! (`prev` the round); then either every fiduciary's key share (an
//! [`crate::order::KeyShare`] with [`crate::order::GeneratedShares`]) and the commitment
//! (`prev` the round), or a [`DkgComplaint`] that reveals the share it accuses and the
//! principal's [`DkgAbort`] naming the culprit.
//!
//! What it does not do: run the key generation (the fiduciary's steps do, through
//! `dta_crypto::dkg`), or keep anything.

use cid::Cid;
use dta_crypto::dkg;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::envelope::{Kind, SignedEnvelope};
use crate::identity::VerifiedIdentity;
use crate::order::SecretBytes;

/// A fiduciary's part-1 message: its Feldman commitments and proof of knowledge (public
/// payload of [`Kind::DkgCommitment`]).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DkgCommitment {
    /// The order request envelope.
    pub order: Cid,
    /// The fiduciary's share index (its position in the order, from 1).
    pub index: u32,
    /// FROST's round-1 package.
    pub commitment: ByteBuf,
}

/// Every fiduciary's commitment, as the principal hands them to all (public payload of
/// [`Kind::DkgRound`]): every fiduciary must see the same ones.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DkgRound {
    /// The order request envelope.
    pub order: Cid,
    /// Each fiduciary's signed [`Kind::DkgCommitment`] envelope (its block), in share-index
    /// order.
    pub commitments: Vec<ByteBuf>,
    /// The group the key is generated over, by its [`dkg::Scheme::name`]; absent for
    /// secp256k1 with Taproot (what every round was before BLS12-381 keys).
    #[serde(
        default = "taproot",
        skip_serializing_if = "is_taproot",
        with = "scheme_name"
    )]
    pub scheme: dkg::Scheme,
}

fn taproot() -> dkg::Scheme {
    dkg::Scheme::Secp256k1Taproot
}

fn is_taproot(scheme: &dkg::Scheme) -> bool {
    *scheme == dkg::Scheme::Secp256k1Taproot
}

/// A [`dkg::Scheme`] as its name.
mod scheme_name {
    use dta_crypto::dkg::Scheme;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(scheme: &Scheme, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(scheme.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Scheme, D::Error> {
        let name = String::deserialize(deserializer)?;
        Scheme::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown key scheme {name:?}")))
    }
}

/// A share one fiduciary deals another (sealed payload of [`Kind::DkgShare`], to its
/// recipient alone).
#[derive(Debug, Serialize, Deserialize)]
pub struct DkgShare {
    /// The round envelope.
    pub round: Cid,
    /// The order request envelope.
    pub order: Cid,
    /// The dealer's share index.
    pub dealer: u32,
    /// The recipient's share index.
    pub recipient: u32,
    /// FROST's round-2 package.
    pub share: SecretBytes,
}

/// A recipient's complaint against a dealer whose share fails the dealer's commitment (public
/// payload of [`Kind::DkgComplaint`]): the share's envelope and its content key, so that
/// anyone can open that one envelope and check it. The share revealed belongs to a key that
/// is never used.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DkgComplaint {
    /// The round envelope.
    pub round: Cid,
    /// The dealer accused.
    pub dealer: u32,
    /// The dealer's [`Kind::DkgShare`] envelope (its block).
    pub share: ByteBuf,
    /// The content key of its sealed payload.
    #[serde(with = "serde_bytes")]
    pub content_key: Vec<u8>,
}

/// The principal ends a key generation that cannot finish (public payload of
/// [`Kind::DkgAbort`]): fiduciaries drop what they kept for it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DkgAbort {
    /// The round envelope.
    pub round: Cid,
    /// The fiduciary at fault.
    pub culprit: Cid,
    /// The complaint that showed it.
    pub complaint: Cid,
    /// What it did, for people.
    pub reason: String,
}

/// The principal gives up a key generation that waits for fiduciaries that do not answer
/// (public payload of [`Kind::DkgAbandon`], `prev` the order's head): every fiduciary drops
/// what it kept for it. Nobody is blamed for cheating; the ones that did not answer are
/// named.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DkgAbandon {
    /// The order request envelope.
    pub order: Cid,
    /// The fiduciaries whose answer was missing.
    pub missing: Vec<Cid>,
}

/// Why a round or a complaint does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DkgCheckError {
    /// The round does not hold one signed commitment from each fiduciary, in order.
    #[error("commitment {index} of the round does not hold: {reason}")]
    Round {
        /// The share index.
        index: u32,
        /// Why.
        reason: String,
    },
    /// The complaint does not hold together.
    #[error("the complaint does not hold: {0}")]
    Complaint(String),
}

impl DkgRound {
    /// Each fiduciary's commitment bytes, in share-index order, once each embedded envelope
    /// is checked: signed by that fiduciary, a commitment of this order (`reference`, whose
    /// request is `order`) with its own index.
    pub fn commitments_of(
        &self,
        reference: &str,
        fiduciaries: &[VerifiedIdentity],
    ) -> Result<Vec<Vec<u8>>, DkgCheckError> {
        if self.commitments.len() != fiduciaries.len() {
            return Err(DkgCheckError::Round {
                index: 0,
                reason: format!(
                    "{} commitments for {} fiduciaries",
                    self.commitments.len(),
                    fiduciaries.len()
                ),
            });
        }
        (1u32..)
            .zip(self.commitments.iter().zip(fiduciaries))
            .map(|(index, (block, fiduciary))| {
                let failed = |reason: &str| DkgCheckError::Round {
                    index,
                    reason: reason.to_owned(),
                };
                let envelope = SignedEnvelope::decode(block)
                    .map_err(|e| failed(&e.to_string()))?
                    .verify(fiduciary)
                    .map_err(|_| failed("not signed by its fiduciary"))?;
                let header = envelope.envelope();
                if header.kind != Kind::DkgCommitment
                    || header.order != reference
                    || header.prev != Some(self.order)
                {
                    return Err(failed("not a commitment of this order"));
                }
                let commitment: DkgCommitment = envelope
                    .public_payload()
                    .ok()
                    .flatten()
                    .ok_or_else(|| failed("no commitment payload"))?;
                if commitment.order != self.order || commitment.index != index {
                    return Err(failed("another order's or index's commitment"));
                }
                Ok(commitment.commitment.into_vec())
            })
            .collect()
    }
}

/// What a complaint shows, once checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The dealer's share fails its commitment: the dealer is at fault.
    DealerCheated,
    /// The share fits its commitment: the complaint is false and its maker at fault.
    FalseComplaint,
}

impl DkgComplaint {
    /// Checks a complaint made by `complainer` (fiduciary `recipient`, the complaint's
    /// signer) against `dealer` (the fiduciary it accuses), whose commitment in the round is
    /// `dealer_commitment`, under the round envelope `round` of a key over `scheme`.
    pub fn judge(
        &self,
        round: Cid,
        scheme: dkg::Scheme,
        recipient: u32,
        complainer: &Cid,
        dealer: &VerifiedIdentity,
        dealer_commitment: &[u8],
    ) -> Result<Verdict, DkgCheckError> {
        let failed = |reason: &str| DkgCheckError::Complaint(reason.to_owned());
        if self.round != round {
            return Err(failed("it is about another round"));
        }
        let (_, plain) = crate::evidence::open(
            &self.share,
            &self.content_key,
            dealer,
            (Kind::DkgShare, round),
            complainer,
        )
        .map_err(|e| failed(&format!("the share: {e}")))?;
        let share: DkgShare = crate::dagcbor::decode(&plain, crate::dagcbor::Limits::default())
            .map_err(|_| failed("the share does not decode"))?;
        if share.round != round || share.dealer != self.dealer || share.recipient != recipient {
            return Err(failed("the share names another round, dealer or recipient"));
        }
        let recipient = u16::try_from(recipient).map_err(|_| failed("index out of range"))?;
        // A share that does not even decode is the dealer's fault as much as a wrong one.
        match scheme.share_fits(dealer_commitment, recipient, share.share.expose()) {
            Ok(true) => Ok(Verdict::FalseComplaint),
            Ok(false) | Err(_) => Ok(Verdict::DealerCheated),
        }
    }
}
