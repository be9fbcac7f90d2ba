//! The payloads of the custody flow, carried inside envelopes.
//!
//! Public payloads go in an envelope's `public` part; anything with a share in it
//! ([`ShareDeal`], [`ShareRelease`]) only ever travels sealed, and its share bytes are a
//! [`SecretBytes`] that zeroizes and never prints.

use std::collections::BTreeMap;
use std::fmt;

use cid::Cid;
use dta_crypto::bls::{self, PopVerifiedKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_bytes::ByteBuf;
use zeroize::Zeroizing;

use crate::batch::{BatchError, BatchTree, Inclusion, batch_message};
use crate::identity::VerifiedIdentity;

/// What every fiduciary signs to certify custody: this prefix, then the commitment's CID.
pub const CUSTODY_CONTEXT: &[u8] = b"dta/custody/v1\0";

/// Secret bytes inside a payload: zeroized on drop, redacted in `Debug`, encoded as a CBOR
/// byte string.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Wraps secret bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The bytes. Keep the borrow short and never log it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes(<{} bytes redacted>)", self.0.len())
    }
}

impl Serialize for SecretBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        ByteBuf::deserialize(deserializer).map(|b| Self::new(b.into_vec()))
    }
}

pub use crate::policy::ReleasePolicy;

/// A principal's request for custody (public payload of [`crate::envelope::Kind::OrderRequest`]).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct OrderRequest {
    /// Plugin that handles the order (`safeguardsecret`, `bitcoinwallet`, `milagro`).
    pub plugin: String,
    /// The principal's identity.
    pub principal: Cid,
    /// The fiduciaries, in share-index order (the first holds index 1).
    pub fiduciaries: Vec<Cid>,
    /// Shares needed to release.
    pub threshold: u32,
    /// Beneficiary, if known when ordering.
    pub beneficiary: Option<Cid>,
    /// Release rules.
    pub policy: ReleasePolicy,
    /// Plugin input.
    pub input: BTreeMap<String, String>,
}

/// The principal's cancellation of an order (public payload of
/// [`crate::envelope::Kind::OrderCancel`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct OrderCancel {
    /// The order request envelope.
    pub order: Cid,
}

/// One fiduciary's share of a principal-provided secret (sealed payload of
/// [`crate::envelope::Kind::ShareDeal`]).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ShareDeal {
    /// The order request envelope.
    pub order: Cid,
    /// Share index (x-coordinate).
    pub index: u32,
    /// The share value, 32 big-endian bytes.
    pub share: SecretBytes,
    /// Feldman commitments, constant term first (48 bytes each).
    pub commitments: Vec<ByteBuf>,
}

/// The public commitment to an order's secret or key: what the certificate certifies.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Commitment {
    /// The order request envelope.
    pub order: Cid,
    /// Plugin that made it.
    pub plugin: String,
    /// Shares needed to release.
    pub threshold: u32,
    /// Fiduciaries, in share-index order.
    pub fiduciaries: Vec<Cid>,
    /// Feldman commitments for a dealt secret; empty for fiduciary-generated keys.
    pub feldman: Vec<ByteBuf>,
    /// Each fiduciary's public key share (compressed secp256k1), in share-index order, for
    /// fiduciary-generated keys; empty for a dealt secret.
    pub key_shares: Vec<ByteBuf>,
    /// The beneficiary whose identity secp256k1 key is a share of the key, if any: only that
    /// beneficiary can rebuild it.
    pub beneficiary_share: Option<Cid>,
    /// The public key of the whole secret or key.
    pub public_key: ByteBuf,
    /// Plugin output (for example a wallet address).
    pub output: BTreeMap<String, String>,
    /// For a t-of-n key the fiduciaries generated without a dealer: the key generation's
    /// round ([`crate::dkg::DkgRound`], its transcript) and its group key (compressed
    /// secp256k1), which `public_key` is, or which `public_key` adds the beneficiary's share
    /// to. Absent for dealt secrets and for n-of-n keys added up from their shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated: Option<GeneratedKey>,
    /// For shares dealt anew from an earlier epoch's (a refresh): what they came from. Absent
    /// for an order's first shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reshared: Option<Reshared>,
}

impl Commitment {
    /// Whether `value` is the share of index `index` (from 1) this commitment commits to: on
    /// the Feldman polynomial of a dealt secret, or the secret key of the public key share
    /// listed for a generated key.
    pub fn fits_share(&self, index: u32, value: &[u8; 32]) -> bool {
        if self.key_shares.is_empty() {
            let Ok(commitments) = dta_crypto::threshold::Commitments::from_bytes(&self.feldman)
            else {
                return false;
            };
            return dta_crypto::threshold::Share::from_parts(index, value)
                .is_ok_and(|share| commitments.verify_share(&share).is_ok());
        }
        let listed = (index as usize)
            .checked_sub(1)
            .and_then(|position| self.key_shares.get(position));
        match (listed, dta_crypto::secp256k1::SecretKey::from_bytes(value)) {
            (Some(listed), Ok(key)) => {
                listed.as_slice() == key.public_key().to_compressed().as_slice()
            }
            _ => false,
        }
    }

    /// Whether this commitment (of shares dealt anew, perhaps to another committee and
    /// threshold) keeps the order and the key of `previous`: the order, plugin, key (a dealt
    /// secret's constant Feldman term), outputs and how the key came about, and as many
    /// commitments or public shares as its own committee and threshold need.
    pub fn keeps_the_key_of(&self, previous: &Commitment) -> bool {
        let dealt = !previous.feldman.is_empty();
        self.order == previous.order
            && self.plugin == previous.plugin
            && self.public_key == previous.public_key
            && self.beneficiary_share == previous.beneficiary_share
            && self.output == previous.output
            && self.generated == previous.generated
            && self.feldman.first() == previous.feldman.first()
            && (!dealt || self.feldman.len() == self.threshold as usize)
            && (dealt || self.key_shares.len() == self.fiduciaries.len())
    }
}

/// What a commitment's shares were dealt anew from (see [`Commitment::reshared`]).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Reshared {
    /// The commitment of the epoch before.
    pub previous: Cid,
    /// The principal's request ([`crate::reshare::ReshareRequest`]).
    pub request: Cid,
    /// The old holders whose deals count, by share index.
    pub dealers: Vec<u32>,
    /// For each of those dealers, its deal envelope to each holder of the new epoch, in share
    /// order.
    pub deals: Vec<Vec<Cid>>,
    /// The complaints that excluded a dealer from this epoch, each a holder's signed
    /// [`crate::reshare::ReshareComplaint`] envelope (its block); absent when none did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<ByteBuf>,
    /// For a move to another committee or threshold under a release policy with conditions:
    /// the approvals and vetoes of the request the principal had, for auditors to fetch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub votes: Vec<Cid>,
}

/// How a t-of-n generated key came about (see [`Commitment::generated`]).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct GeneratedKey {
    /// The key generation's round envelope.
    pub round: Cid,
    /// The group key, compressed secp256k1.
    pub group_key: ByteBuf,
}

/// The public half of a key share a fiduciary generated itself (public payload of
/// [`crate::envelope::Kind::KeyShare`]); the secret half never leaves its keystore before a
/// release.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct KeyShare {
    /// The order request envelope.
    pub order: Cid,
    /// Share index (the fiduciary's position, from 1).
    pub index: u32,
    /// The share's public key (compressed secp256k1, 33 bytes).
    pub public_key: ByteBuf,
    /// For a key generated without a dealer: the group key and every fiduciary's public
    /// share as this fiduciary's run of the key generation derived them (the principal
    /// commits only when all agree). Absent for n-of-n shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated: Option<GeneratedShares>,
}

/// What one fiduciary's run of a key generation ended with, in public.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct GeneratedShares {
    /// The key generation's round envelope.
    pub round: Cid,
    /// The group key, compressed secp256k1.
    pub group_key: ByteBuf,
    /// Every fiduciary's public share, in share-index order.
    pub public_shares: Vec<ByteBuf>,
}

/// The custody certificate: one aggregate signature by every fiduciary over the commitment.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Certificate {
    /// The commitment block.
    pub commitment: Cid,
    /// Fiduciaries whose signatures are aggregated, in order.
    pub signers: Vec<Cid>,
    /// 96-byte aggregate BLS signature.
    pub signature: ByteBuf,
    /// For an order certified with others: where its commitment sits in the batch whose root
    /// the fiduciaries signed ([`crate::batch`]). Absent when they signed the commitment
    /// itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<Inclusion>,
}

/// Why a certificate could not be made or does not hold.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum CertificateError {
    /// The signer list differs from the identities given.
    #[error("certificate signers do not match the expected fiduciaries")]
    Signers,
    /// It certifies another commitment.
    #[error("certificate is for commitment {0}, not the one expected")]
    Commitment(String),
    /// The signature does not decode or does not verify.
    #[error("certificate signature does not verify")]
    Signature,
    /// A fiduciary signature does not verify.
    #[error("signature of {0} does not verify")]
    SignerSignature(String),
    /// The inclusion proof does not lead from the commitment to a batch root.
    #[error("batch inclusion: {0}")]
    Inclusion(#[from] BatchError),
}

/// The bytes fiduciaries sign to certify custody of `commitment`.
pub fn custody_message(commitment: &Cid) -> Vec<u8> {
    let mut message = CUSTODY_CONTEXT.to_vec();
    message.extend_from_slice(&commitment.to_bytes());
    message
}

impl Certificate {
    /// Checks each fiduciary signature, then aggregates them into a certificate.
    pub fn aggregate(
        commitment: Cid,
        signatures: &[(&VerifiedIdentity, bls::Signature)],
    ) -> Result<Self, CertificateError> {
        let message = custody_message(&commitment);
        for (signer, signature) in signatures {
            signer
                .bls_key()
                .public_key()
                .verify(&message, signature)
                .map_err(|_| CertificateError::SignerSignature(signer.cid().to_string()))?;
        }
        let sigs: Vec<bls::Signature> = signatures.iter().map(|(_, s)| *s).collect();
        let aggregate =
            bls::aggregate_signatures(&sigs).map_err(|_| CertificateError::Signature)?;
        Ok(Self {
            commitment,
            signers: signatures.iter().map(|(i, _)| i.cid()).collect(),
            signature: ByteBuf::from(aggregate.to_bytes().to_vec()),
            batch: None,
        })
    }

    /// Aggregates encoded signatures not checked one by one into a certificate, with one
    /// subgroup check for them all. The certificate holds only once its pairing check, the
    /// second value, passes (alone or in a batch); either failing says only that some
    /// signature is bad, and [`Certificate::aggregate`] tells which.
    pub fn aggregate_unchecked(
        commitment: Cid,
        signatures: &[(&VerifiedIdentity, &[u8])],
    ) -> Result<(Self, CertificateCheck), CertificateError> {
        let check = CertificateCheck::of_encoded(signatures, custody_message(&commitment))?;
        let certificate = Self {
            commitment,
            signers: signatures.iter().map(|(i, _)| i.cid()).collect(),
            signature: ByteBuf::from(check.signature.to_bytes().to_vec()),
            batch: None,
        };
        Ok((certificate, check))
    }

    /// Aggregates encoded signatures over a batch's root, not checked one by one: the
    /// aggregate, and the pairing check that every order's certificate of the batch shares
    /// (each is [`Certificate::in_batch`]).
    pub fn aggregate_batch_unchecked(
        tree: &BatchTree,
        signatures: &[(&VerifiedIdentity, &[u8])],
    ) -> Result<(ByteBuf, CertificateCheck), CertificateError> {
        let check = CertificateCheck::of_encoded(signatures, tree.message())?;
        Ok((ByteBuf::from(check.signature.to_bytes().to_vec()), check))
    }

    /// The certificate of leaf `index` of `tree`, from the batch's aggregate `signature` by
    /// `signers`.
    pub fn in_batch(
        tree: &BatchTree,
        index: usize,
        commitment: Cid,
        signers: Vec<Cid>,
        signature: ByteBuf,
    ) -> Result<Self, CertificateError> {
        let batch = tree.inclusion(index).ok_or(BatchError::Proof {
            index: u32::try_from(index).unwrap_or(u32::MAX),
            leaves: u32::try_from(tree.len()).unwrap_or(u32::MAX),
        })?;
        let certificate = Self {
            commitment,
            signers,
            signature,
            batch: Some(batch),
        };
        if certificate.message()? != tree.message() {
            return Err(CertificateError::Commitment(commitment.to_string()));
        }
        Ok(certificate)
    }

    /// What the signers signed: the custody message of the commitment, or of its batch's
    /// root.
    pub fn message(&self) -> Result<Vec<u8>, CertificateError> {
        match &self.batch {
            None => Ok(custody_message(&self.commitment)),
            Some(inclusion) => Ok(batch_message(&inclusion.root(&self.commitment)?)),
        }
    }

    /// One pairing check that every listed fiduciary signed `commitment`.
    pub fn verify(
        &self,
        commitment: Cid,
        signers: &[&VerifiedIdentity],
    ) -> Result<(), CertificateError> {
        self.prepare_check(commitment, signers)?.verify()
    }

    /// The cheap part of [`Certificate::verify`] (the commitment, the signer list, the
    /// signature's encoding); what is left is the pairing check, which many certificates can
    /// share (see [`CertificateCheck::verify_batch`]).
    pub fn prepare_check(
        &self,
        commitment: Cid,
        signers: &[&VerifiedIdentity],
    ) -> Result<CertificateCheck, CertificateError> {
        self.check_signers(commitment, signers)?;
        let signature =
            bls::Signature::from_bytes(&self.signature).map_err(|_| CertificateError::Signature)?;
        Ok(CertificateCheck {
            keys: signers.iter().map(|i| *i.bls_key()).collect(),
            message: self.message()?,
            signature,
        })
    }

    /// The digest of the check [`Certificate::prepare_check`] makes, after the same cheap
    /// checks but without decoding the signature (a G2 point, with its subgroup check): a
    /// check with this digest that passed before passes again.
    pub fn check_digest(
        &self,
        commitment: Cid,
        signers: &[&VerifiedIdentity],
    ) -> Result<CheckDigest, CertificateError> {
        self.check_signers(commitment, signers)?;
        Ok(check_digest(
            &self.message()?,
            signers.iter().map(|i| i.bls_key()),
            &self.signature,
        ))
    }

    fn check_signers(
        &self,
        commitment: Cid,
        signers: &[&VerifiedIdentity],
    ) -> Result<(), CertificateError> {
        if self.commitment != commitment {
            return Err(CertificateError::Commitment(self.commitment.to_string()));
        }
        if self.signers.len() != signers.len()
            || self.signers.iter().zip(signers).any(|(c, i)| *c != i.cid())
        {
            return Err(CertificateError::Signers);
        }
        Ok(())
    }
}

/// What identifies a certificate check: SHA-256 of its message (length first), its signers'
/// keys and its signature, each as encoded. Two checks with one digest are one check.
pub type CheckDigest = [u8; 32];

fn check_digest<'a>(
    message: &[u8],
    keys: impl Iterator<Item = &'a PopVerifiedKey>,
    signature: &[u8],
) -> CheckDigest {
    use sha2::Digest;
    let mut digest = sha2::Sha256::new();
    digest.update((message.len() as u64).to_be_bytes());
    digest.update(message);
    for key in keys {
        digest.update(key.public_key().to_bytes());
    }
    digest.update(signature);
    digest.finalize().into()
}

/// A certificate's pairing check, ready to run alone or with others. The certificates of one
/// batch's orders all make the same check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateCheck {
    keys: Vec<PopVerifiedKey>,
    message: Vec<u8>,
    signature: bls::Signature,
}

impl CertificateCheck {
    /// The check that `signatures`, aggregated with one subgroup check for them all, are
    /// over `message`.
    fn of_encoded(
        signatures: &[(&VerifiedIdentity, &[u8])],
        message: Vec<u8>,
    ) -> Result<Self, CertificateError> {
        let encoded: Vec<&[u8]> = signatures.iter().map(|(_, s)| *s).collect();
        let signature =
            bls::aggregate_encoded(&encoded).map_err(|_| CertificateError::Signature)?;
        Ok(Self {
            keys: signatures.iter().map(|(i, _)| *i.bls_key()).collect(),
            message,
            signature,
        })
    }

    /// What identifies this check ([`Certificate::check_digest`] gives the same without
    /// decoding the signature).
    pub fn digest(&self) -> CheckDigest {
        check_digest(&self.message, self.keys.iter(), &self.signature.to_bytes())
    }

    /// One pairing check (a fast aggregate verification).
    pub fn verify(&self) -> Result<(), CertificateError> {
        bls::fast_aggregate_verify(&self.keys, &self.message, &self.signature)
            .map_err(|_| CertificateError::Signature)
    }

    /// All of them in one pairing product (n + 1 Miller loops and one final exponentiation
    /// for n certificates). Fails if any fails, without saying which.
    pub fn verify_batch(checks: &[&CertificateCheck]) -> Result<(), CertificateError> {
        let batch: Vec<(&[PopVerifiedKey], &[u8], &bls::Signature)> = checks
            .iter()
            .map(|c| (c.keys.as_slice(), c.message.as_slice(), &c.signature))
            .collect();
        bls::fast_aggregate_verify_batch(&batch).map_err(|_| CertificateError::Signature)
    }
}

/// The signature-free half of the pairing check of a certificate over a commitment by a list
/// of signers, made before their signatures are in (a principal prepares it while its
/// fiduciaries sign, so that only the signature's side is left once they answered).
#[derive(Debug)]
pub struct PreparedCertificateCheck {
    keys: Vec<PopVerifiedKey>,
    message: Vec<u8>,
    prepared: bls::PreparedVerification,
}

impl PreparedCertificateCheck {
    /// Hashes the custody message of `commitment` and runs the signers' side of the check.
    pub fn new(commitment: Cid, signers: &[&VerifiedIdentity]) -> Result<Self, CertificateError> {
        let keys: Vec<PopVerifiedKey> = signers.iter().map(|i| *i.bls_key()).collect();
        let message = custody_message(&commitment);
        let prepared = bls::PreparedVerification::new(&keys, &message)
            .map_err(|_| CertificateError::Signature)?;
        Ok(Self {
            keys,
            message,
            prepared,
        })
    }

    /// Finishes `check` from here: the same outcome as [`CertificateCheck::verify`]. A check of
    /// other signers or of another commitment fails.
    pub fn verify(&self, check: &CertificateCheck) -> Result<(), CertificateError> {
        if check.keys != self.keys || check.message != self.message {
            return Err(CertificateError::Signers);
        }
        self.prepared
            .verify(&check.signature)
            .map_err(|_| CertificateError::Signature)
    }
}

/// A principal's signed request to release an order to a beneficiary.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ReleaseRequest {
    /// The order request envelope.
    pub order: Cid,
    /// The certificate envelope the release relies on.
    pub certificate: Cid,
    /// Who receives the shares.
    pub beneficiary: Cid,
    /// 1 for the first release, counting up; checked against the policy.
    pub sequence: u32,
}

/// What a fiduciary's release relied on, in the clear beside the sealed share (public
/// payload of [`crate::envelope::Kind::ShareRelease`], for an order with a release policy):
/// the approvals and vetoes it counted, so that the beneficiary can name them in its receipt.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct ReleaseGrounds {
    /// The vote envelopes the fiduciary kept for the order when it released.
    pub votes: Vec<Cid>,
}

/// A fiduciary's share released to the beneficiary (sealed payload of
/// [`crate::envelope::Kind::ShareRelease`]).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ShareRelease {
    /// The release request envelope.
    pub release: Cid,
    /// Share index.
    pub index: u32,
    /// The share value.
    pub share: SecretBytes,
}

/// The beneficiary's receipt: which shares it used and the public key of what it rebuilt.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Receipt {
    /// The release request envelope.
    pub release: Cid,
    /// Fiduciaries whose shares were combined.
    pub shares_from: Vec<Cid>,
    /// Public key of the reconstructed secret; equals the commitment's.
    pub public_key: ByteBuf,
    /// For an order with a release policy: the approvals and vetoes the fiduciaries whose
    /// shares were combined relied on, so that anyone who has the chain can fetch them and
    /// check the policy (absent otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub votes: Vec<Cid>,
    /// Shares released for this release that did not fit the commitment, each with the
    /// content key that opens it, so that anyone can check the fiduciary that sealed it
    /// ([`crate::evidence`]). Absent when every share fitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RefusedShare>,
    /// Fiduciaries that answered this release twice, differently: each pair of their share
    /// releases, both signed, both for this release. An honest fiduciary seals one share
    /// release per request and sends that one again when asked again. Absent when none did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub equivocations: Vec<Equivocation>,
}

/// Two different envelopes one sender signed as its one answer to one request.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Equivocation {
    /// The answer that came first.
    pub first: Cid,
    /// The other.
    pub second: Cid,
}

/// A share release the beneficiary refused, revealed as evidence against its fiduciary.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct RefusedShare {
    /// The share release envelope.
    pub share: Cid,
    /// Its content key, which opens that envelope alone.
    pub content_key: ByteBuf,
}

#[cfg(test)]
#[path = "order_tests.rs"]
mod tests;
