//! The payloads that move an order's shares to new ones without rebuilding its key: the
//! principal's request, and each old holder's deal of its share to every holder of the next
//! epoch (public Feldman commitments beside a sealed sub-share). The commitment that ends it
//! names what it came from ([`crate::order::Reshared`]); each old holder then says, signed,
//! that it deleted its old share ([`ShareDeleted`]).
//!
//! The next committee and threshold may be the order's own (a refresh: same key, new
//! shares) or others (custody moves; any overlap allowed).
//!
//! What it does not do: deal, check or combine shares (`dta_crypto::threshold::reshare` and
//! `dta_crypto::dkg::reshare` do), or keep anything.

use cid::Cid;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::order::SecretBytes;

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
