//! The payloads of a threshold signature made with an order's generated key, which nobody
//! holds (FROST, see `dta_crypto::signing`), as the order's log carries them:
//!
//! 1. the principal's [`SignRequest`] (the message, `prev` the order's head), to every
//!    fiduciary;
//! 2. each fiduciary's [`SignCommitment`] (`prev` the request): its FROST round-1
//!    commitments, for one signature;
//! 3. the principal's [`SignPackage`] naming t signers' commitments (`prev` the request);
//! 4. each named signer's [`SignatureShare`] (`prev` the package), which also carries fresh
//!    commitments for a retry;
//! 5. the principal's [`Signature`]: the 64-byte BIP-340 signature (`prev` the request).
//!
//! A share that fails is named in the next package ([`SignPackage::excluded`]), which goes to t
//! other signers.
//!
//! What it does not do: make or check anything cryptographic, or keep anything.

use cid::Cid;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// The principal asks an order's fiduciaries to sign a message with the order's key (public
/// payload of [`crate::envelope::Kind::SignRequest`], `prev` the order's head).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SignRequest {
    /// The order request envelope.
    pub order: Cid,
    /// The certificate in force: its commitment names the key and every holder's public
    /// share.
    pub certificate: Cid,
    /// The bytes to sign (for a Bitcoin key-path spend, the 32-byte BIP-341 sighash).
    pub message: ByteBuf,
    /// The order's signatures count from 1: a request of a number a fiduciary has seen is a
    /// replay.
    pub sequence: u32,
}

/// A fiduciary's commitments to nonces it made for one signature (public payload of
/// [`crate::envelope::Kind::SignCommitment`], `prev` the request, to the principal). The
/// nonces never leave its memory and sign at most once.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SignCommitment {
    /// The request envelope.
    pub request: Cid,
    /// The fiduciary's share index.
    pub index: u32,
    /// FROST's round-1 commitments.
    pub commitments: ByteBuf,
}

/// The principal's choice of signers (public payload of
/// [`crate::envelope::Kind::SignPackage`], `prev` the request, to each signer it names).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SignPackage {
    /// The request envelope.
    pub request: Cid,
    /// Attempts count from 1; each after the first leaves out the signers named before.
    pub attempt: u32,
    /// The signers' commitment envelopes (commitments or shares carrying them), by index.
    pub commitments: Vec<(u32, Cid)>,
    /// Signers whose share failed in an earlier attempt, with that share's envelope.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<(u32, Cid)>,
    /// FROST's signing package: the commitments and the message.
    pub package: ByteBuf,
}

/// A signer's share of the signature (public payload of
/// [`crate::envelope::Kind::SignatureShare`], `prev` the package, to the principal), with
/// fresh commitments in case the principal must try again.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SignatureShare {
    /// The package envelope.
    pub package: Cid,
    /// The signer's share index.
    pub index: u32,
    /// FROST's signature share.
    pub share: ByteBuf,
    /// Round-1 commitments to new nonces for the same request.
    pub next: ByteBuf,
}

/// The signature (public payload of [`crate::envelope::Kind::Signature`], `prev` the
/// request): anyone checks it against the order's key.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Signature {
    /// The request envelope.
    pub request: Cid,
    /// The package the shares signed.
    pub package: Cid,
    /// The signature share envelopes it was made of.
    pub shares: Vec<Cid>,
    /// The key it verifies under: the x-only form of the order's key (32 bytes).
    pub key: ByteBuf,
    /// The 64-byte BIP-340 signature.
    pub signature: ByteBuf,
}
