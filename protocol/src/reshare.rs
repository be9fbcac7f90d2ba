//! The payloads that move an order's shares to new ones without rebuilding its key: the
//! principal's request, and each old holder's deal of its share to every holder of the next
//! epoch (public Feldman commitments beside a sealed sub-share). The commitment that ends it
//! names what it came from ([`crate::order::Reshared`]); each old holder then says, signed,
//! that it deleted its old share ([`ShareDeleted`]).
//!
//! The next committee and threshold may be the order's own (a refresh: same key, new
//! shares) or others (custody moves; any overlap allowed).
//!
//! A holder of the next epoch whose sub-share fails its dealer's commitments complains
//! ([`ReshareComplaint`]), revealing that one deal's content key; anyone can judge the
//! complaint ([`ReshareComplaint::judge`]) against the shares the deal started from
//! ([`OldShares`]). The principal then excludes the dealer and commits again without it.
//!
//! What it does not do: deal or combine shares (`dta_crypto::threshold::reshare` and
//! `dta_crypto::dkg::reshare` do), or keep anything.

use cid::Cid;
use dta_crypto::threshold::{Commitments, Share};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::dkg::Verdict;
use crate::envelope::{Kind, SignedEnvelope};
use crate::identity::VerifiedIdentity;
use crate::order::{Commitment, SecretBytes};

/// The principal asks the holders of an order's shares to deal them anew (public payload of
/// [`crate::envelope::Kind::ReshareRequest`], `prev` the order's head).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ReshareRequest {
    /// The order request envelope.
    pub order: Cid,
    /// The certificate in force: its commitment is the one whose shares are dealt anew.
    pub certificate: Cid,
    /// The next committee, in share order.
    pub fiduciaries: Vec<Cid>,
    /// The next threshold.
    pub threshold: u32,
    /// The epoch it starts (the order's first shares are epoch 0): a request of an epoch a
    /// holder has passed is a replay.
    pub epoch: u32,
    /// Releases served so far: a holder that joins counts its releases from here.
    pub releases: u32,
}

/// An old holder's statement that it deleted its share of `epoch` (public payload of
/// [`crate::envelope::Kind::ShareDeleted`], `prev` the commitment of the next epoch, sent to
/// the principal).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ShareDeleted {
    /// The order request envelope.
    pub order: Cid,
    /// The epoch of the share deleted.
    pub epoch: u32,
    /// The holder's share index in that epoch's committee.
    pub index: u32,
}

/// An old holder's Feldman commitments to the polynomial it deals its share with (public
/// payload of [`crate::envelope::Kind::ReshareDeal`], one envelope per next holder).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ReshareCommitments {
    /// The request envelope.
    pub request: Cid,
    /// The dealer's share index in the old epoch.
    pub dealer: u32,
    /// The recipient's share index in the next epoch.
    pub recipient: u32,
    /// The commitments, constant term (the dealer's old public share) first.
    pub commitments: Vec<ByteBuf>,
}

/// The sub-share itself (sealed payload of the same envelope, to its recipient alone).
#[derive(Debug, Serialize, Deserialize)]
pub struct ReshareSubShare {
    /// The request envelope.
    pub request: Cid,
    /// The dealer's share index in the old epoch.
    pub dealer: u32,
    /// The recipient's share index in the next epoch.
    pub recipient: u32,
    /// 32 big-endian bytes.
    pub share: SecretBytes,
}

/// A holder of the next epoch's complaint against a counted dealer whose sub-share fails the
/// dealer's commitments (public payload of [`Kind::ReshareComplaint`], `prev` the commitment
/// that counted the deal, to the principal): the deal's envelope and its content key, so that
/// anyone can open that one envelope and check it. The sub-share revealed is of a dealing
/// that is never used.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ReshareComplaint {
    /// The request envelope.
    pub request: Cid,
    /// The dealer accused, by its share index in the old epoch.
    pub dealer: u32,
    /// The dealer's [`Kind::ReshareDeal`] envelope to the complainer (its block).
    pub deal: ByteBuf,
    /// The content key of its sealed payload.
    #[serde(with = "serde_bytes")]
    pub content_key: Vec<u8>,
    /// When the dealer committed to other polynomials in the deal the principal took its
    /// commitments from (the one to the next epoch's first holder): that deal's envelope (its
    /// block). Two signed dealings of one share for one request convict the dealer whatever
    /// the sub-shares are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted: Option<ByteBuf>,
}

/// Why a commitment's shares cannot be dealt anew, a deal is refused, or a complaint does not
/// hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReshareCheckError {
    /// The commitment is of an n-of-n key added up from its shares.
    #[error("an n-of-n key added up from its shares cannot be dealt anew yet")]
    AddedUp,
    /// The commitment in force does not decode.
    #[error("the commitment in force does not decode: {0}")]
    Commitment(String),
    /// A dealer's commitments do not start from its old share, or do not decode.
    #[error("the deal of holder {dealer} is refused: {reason}")]
    Deal {
        /// The dealer's share index.
        dealer: u32,
        /// Why.
        reason: String,
    },
    /// The complaint does not hold together.
    #[error("the complaint does not hold: {0}")]
    Complaint(String),
}

/// The shares of an epoch as its commitment shows them, which every deal of the next epoch
/// must start from.
#[derive(Debug, Clone)]
pub enum OldShares {
    /// A dealt secret: Feldman commitments over BLS12-381.
    Dealt(Commitments),
    /// A key generated without a dealer: every holder's public share (secp256k1).
    Generated(Vec<ByteBuf>),
}

impl OldShares {
    /// The shares `commitment` commits to; an n-of-n key added up has none to deal anew.
    pub fn of(commitment: &Commitment) -> Result<Self, ReshareCheckError> {
        if !commitment.feldman.is_empty() {
            return Commitments::from_bytes(&commitment.feldman)
                .map(Self::Dealt)
                .map_err(|e| ReshareCheckError::Commitment(e.to_string()));
        }
        if commitment.generated.is_some() {
            return Ok(Self::Generated(commitment.key_shares.clone()));
        }
        Err(ReshareCheckError::AddedUp)
    }

    /// Refuses commitments that do not start from `dealer`'s old share.
    pub fn check_dealer(
        &self,
        dealer: u32,
        commitments: &[ByteBuf],
    ) -> Result<(), ReshareCheckError> {
        let refused = |reason: String| ReshareCheckError::Deal { dealer, reason };
        match self {
            Self::Dealt(old) => Commitments::from_bytes(commitments)
                .map_err(|e| refused(e.to_string()))?
                .check_reshared_from(old, dealer)
                .map_err(|e| refused(e.to_string())),
            Self::Generated(public_shares) => {
                let old = public_shares
                    .get((dealer as usize).wrapping_sub(1))
                    .ok_or_else(|| refused("no such holder".into()))?;
                if commitments.first() == Some(old) {
                    Ok(())
                } else {
                    Err(refused(
                        "its commitments do not start from its share".into(),
                    ))
                }
            }
        }
    }

    /// Whether `sub_share` (32 big-endian bytes) is what `dealer`'s `commitments`, started
    /// from its old share, give holder `recipient` of the next epoch.
    pub fn sub_share_fits(
        &self,
        dealer: u32,
        commitments: &[ByteBuf],
        recipient: u32,
        sub_share: &[u8],
    ) -> bool {
        let Ok(value) = <&[u8; 32]>::try_from(sub_share) else {
            return false;
        };
        if self.check_dealer(dealer, commitments).is_err() {
            return false;
        }
        match self {
            Self::Dealt(_) => {
                let (Ok(share), Ok(commitments)) = (
                    Share::from_parts(recipient, value),
                    Commitments::from_bytes(commitments),
                ) else {
                    return false;
                };
                commitments.verify_share(&share).is_ok()
            }
            Self::Generated(public_shares) => {
                let (Ok(dealer), Ok(recipient)) = (u16::try_from(dealer), u16::try_from(recipient))
                else {
                    return false;
                };
                let commitments: Vec<Vec<u8>> = commitments.iter().map(|c| c.to_vec()).collect();
                dta_crypto::dkg::reshare::check_sub_share(
                    dealer,
                    &commitments,
                    &public_shares[usize::from(dealer) - 1],
                    recipient,
                    value,
                )
                .is_ok()
            }
        }
    }
}

impl ReshareComplaint {
    /// Checks a complaint made by `complainer` (holder `recipient` of the next epoch, the
    /// complaint's signer) against `dealer` (the old holder it accuses), under the request
    /// envelope `request`, whose deals start from `old`.
    pub fn judge(
        &self,
        request: Cid,
        recipient: u32,
        complainer: &Cid,
        dealer: &VerifiedIdentity,
        old: &OldShares,
    ) -> Result<Verdict, ReshareCheckError> {
        let failed = |reason: &str| ReshareCheckError::Complaint(reason.to_owned());
        if self.request != request {
            return Err(failed("it is about another request"));
        }
        let (envelope, plain) = crate::evidence::open(
            &self.deal,
            &self.content_key,
            dealer,
            (Kind::ReshareDeal, request),
            complainer,
        )
        .map_err(|e| failed(&format!("the deal: {e}")))?;
        let public: ReshareCommitments = envelope
            .public_payload()
            .ok()
            .flatten()
            .ok_or_else(|| failed("the deal has no commitments"))?;
        if public.request != request
            || public.dealer != self.dealer
            || public.recipient != recipient
        {
            return Err(failed(
                "the deal names another request, dealer or recipient",
            ));
        }
        if let Some(counted) = &self.counted {
            let counted = SignedEnvelope::decode(counted)
                .map_err(|e| failed(&format!("the counted deal: {e}")))?
                .verify(dealer)
                .map_err(|_| failed("the counted deal is not signed by the dealer"))?;
            let counted_public: ReshareCommitments = counted
                .public_payload()
                .ok()
                .flatten()
                .filter(|c: &ReshareCommitments| {
                    counted.envelope().kind == Kind::ReshareDeal
                        && counted.envelope().prev == Some(request)
                        && c.request == request
                        && c.dealer == self.dealer
                })
                .ok_or_else(|| failed("the counted deal is not the dealer's for this request"))?;
            if counted_public.commitments != public.commitments {
                return Ok(Verdict::DealerCheated);
            }
        }
        // Whatever the dealer sealed and signed is its doing: a sub-share that does not
        // decode, names another recipient or fails its commitments convicts it alike.
        let sub_share: Option<ReshareSubShare> =
            crate::dagcbor::decode(&plain, crate::dagcbor::Limits::default()).ok();
        let fits = sub_share.is_some_and(|s| {
            s.request == request
                && s.dealer == self.dealer
                && s.recipient == recipient
                && old.sub_share_fits(
                    self.dealer,
                    &public.commitments,
                    recipient,
                    s.share.expose(),
                )
        });
        Ok(if fits {
            Verdict::FalseComplaint
        } else {
            Verdict::DealerCheated
        })
    }
}
