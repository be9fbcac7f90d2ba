//! The payloads of a threshold signature made with an order's key, which nobody holds, as the
//! order's log carries them. Both schemes start with the principal's [`SignRequest`] (the
//! message, `prev` the order's head), to every fiduciary, and end with its [`Signature`]
//! (`prev` the request).
//!
//! A secp256k1 key generated without a dealer signs with FROST (`dta_crypto::signing`), a
//! 64-byte BIP-340 signature:
//!
//! 1. each fiduciary's [`SignCommitment`] (`prev` the request): its FROST round-1
//!    commitments, for one signature;
//! 2. the principal's [`SignPackage`] naming t signers' commitments (`prev` the request);
//! 3. each named signer's [`SignatureShare`] (`prev` the package), which also carries fresh
//!    commitments for a retry or a later signature of the order.
//!
//! Commitments are made ahead of their message (FROST's preprocessing), so a request may skip
//! step 1: it names the signers ([`SignRequest::signers`]) whose unused commitments, sent for
//! an earlier signature of the order, its package (published right after it) puts together.
//!
//! A share that fails is named in the next package ([`SignPackage::excluded`]), which goes to t
//! other signers.
//!
//! A BLS12-381 scalar (a dealt secret, or a key generated in G1) signs with threshold BLS
//! (`dta_crypto::threshold::signing`), a 96-byte signature under the 48-byte group key: each
//! fiduciary sends its [`PartialSignature`] (`prev` the request), and any t of them make the
//! signature. A partial that fails is named in the signature ([`Signature::excluded`]).
//!
//! What it does not do: make anything cryptographic, or keep anything; it checks a finished
//! signature ([`Signature::verifies`]) and nothing else.

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
    /// The signers a package right after this request names, with commitments they sent for
    /// an earlier signature of the order: they wait for it rather than send commitments.
    /// Empty: every fiduciary answers with commitments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signers: Vec<u32>,
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
/// fresh commitments for another attempt or a later signature.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SignatureShare {
    /// The package envelope.
    pub package: Cid,
    /// The signer's share index.
    pub index: u32,
    /// FROST's signature share.
    pub share: ByteBuf,
    /// Round-1 commitments to new nonces: for another attempt of the same request, or for a
    /// later signature of the order.
    pub next: ByteBuf,
}

/// A fiduciary's BLS signature on a request's message with its share of the order's key
/// (public payload of [`crate::envelope::Kind::PartialSignature`], `prev` the request, to the
/// principal). It verifies under the fiduciary's public share.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PartialSignature {
    /// The request envelope.
    pub request: Cid,
    /// The fiduciary's share index.
    pub index: u32,
    /// The 96-byte compressed G2 signature.
    pub signature: ByteBuf,
}

/// How a signature was made, and so which verifier checks it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureScheme {
    /// FROST over secp256k1: a 64-byte BIP-340 signature under the key's 32-byte x-only form.
    #[default]
    Bip340,
    /// Threshold BLS over BLS12-381 (public keys in G1, ciphersuite
    /// `BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_`): a 96-byte signature under the 48-byte
    /// group key.
    Bls12381,
}

impl SignatureScheme {
    /// The name the API and the CLI show.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bip340 => "bip340",
            Self::Bls12381 => "bls12-381",
        }
    }
}

/// The signature (public payload of [`crate::envelope::Kind::Signature`], `prev` the
/// request): anyone checks it against the order's key.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Signature {
    /// The request envelope.
    pub request: Cid,
    /// How it was made.
    #[serde(default)]
    pub scheme: SignatureScheme,
    /// The package the shares signed (FROST only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<Cid>,
    /// The signature share or partial signature envelopes it was made of.
    pub shares: Vec<Cid>,
    /// Signers whose partial signature failed, with its envelope (threshold BLS; FROST names
    /// them in its packages).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<(u32, Cid)>,
    /// The key it verifies under: the x-only form of the order's key (32 bytes), or the BLS
    /// group key (48 bytes).
    pub key: ByteBuf,
    /// The 64-byte BIP-340 or 96-byte BLS signature.
    pub signature: ByteBuf,
    /// Under a release policy with conditions: the approvals and vetoes of the request the
    /// principal had, for auditors to fetch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub votes: Vec<Cid>,
}

impl Signature {
    /// Whether the signature verifies over `message` under its own key, as its scheme says.
    pub fn verifies(&self, message: &[u8]) -> bool {
        match self.scheme {
            SignatureScheme::Bip340 => {
                dta_crypto::secp256k1::verify_bip340(&self.key, message, &self.signature)
            }
            SignatureScheme::Bls12381 => {
                let key = dta_crypto::bls::PublicKey::from_bytes(&self.key);
                let signature = dta_crypto::bls::Signature::from_bytes(&self.signature);
                matches!((key, signature), (Ok(key), Ok(signature)) if key.verify(message, &signature).is_ok())
            }
        }
    }
}
