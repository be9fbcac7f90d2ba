//! Threshold Schnorr signing with a key nobody holds: FROST (RFC 9591) over secp256k1 with
//! BIP-340 signatures (the Zcash Foundation's `frost-secp256k1-tr`), on keys generated without
//! a dealer ([`crate::dkg`], whose shares already carry Taproot's tweak, so a signature
//! verifies under the key's x-only form as a BIP-341 key-path spend would). Two rounds:
//!
//! 1. [`commit`]: each signer makes fresh nonces for one signature ([`Nonces`], kept in
//!    memory only, zeroized on drop) and sends their commitments to the coordinator.
//! 2. The coordinator puts t signers' commitments and the message in a [`Package`]; each
//!    signer [`sign`]s it with its nonces, which the call consumes, and sends its signature
//!    share.
//!
//! The coordinator aggregates the shares ([`Group::aggregate`]) into a 64-byte BIP-340
//! signature and checks it with k256's BIP-340 verifier ([`crate::secp256k1::verify_bip340`]),
//! which shares no code with FROST. Only when that fails does it check each share against its
//! signer's public share ([`Group::check_share`]), to name the signer whose share fails: the
//! aggregate first, blame only when needed.
//!
//! What it does not do: transport, choosing signers, remembering which commitments were
//! used (a [`Nonces`] can sign once, by construction), or keeping anything.

use std::collections::BTreeMap;

use frost_core::keys::{PublicKeyPackage, VerifyingShare};
use frost_core::round1::{SigningCommitments, SigningNonces};
use frost_core::round2::SignatureShare;
use frost_core::{Identifier, SigningPackage, VerifyingKey};

use crate::dkg::{KeyShare, Participant, Taproot};

/// Why a signing step failed. Never carries secret bytes.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SignError {
    /// A message part does not decode.
    #[error("the {what} of participant {from} does not decode")]
    Malformed {
        /// Whose.
        from: Participant,
        /// What.
        what: &'static str,
    },
    /// Fewer signers than the threshold, or a signer outside the committee.
    #[error("{signers} signers of a {threshold}-of-{participants} key: {reason}")]
    Signers {
        /// How many signers the package names.
        signers: usize,
        /// t.
        threshold: u16,
        /// n.
        participants: usize,
        /// Why.
        reason: &'static str,
    },
    /// The package does not carry this signer's commitments as it made them.
    #[error("the package does not hold participant {0}'s own commitments")]
    NotOurCommitments(Participant),
    /// A signature share fails its signer's public share.
    #[error("the signature share of participant {0} fails")]
    BadShare(Participant),
    /// Anything else FROST refused.
    #[error("signing failed: {0}")]
    Failed(&'static str),
}

fn identifier(participant: Participant) -> Result<Identifier<Taproot>, SignError> {
    Identifier::try_from(participant).map_err(|_| SignError::Malformed {
        from: participant,
        what: "number (participants count from 1)",
    })
}

/// One signer's nonces for one signature, with the commitments it sent. Consumed by
/// [`sign`]; zeroized when dropped.
pub struct Nonces {
    participant: Participant,
    nonces: SigningNonces<Taproot>,
    commitments: SigningCommitments<Taproot>,
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nonces")
            .field("participant", &self.participant)
            .finish_non_exhaustive()
    }
}

/// Round 1 for the holder of `share`: fresh nonces, and the commitments to send (bytes).
pub fn commit(share: &KeyShare<Taproot>) -> Result<(Nonces, Vec<u8>), SignError> {
    let (nonces, commitments) = frost_core::round1::commit(
        share.key_package().signing_share(),
        &mut crate::dkg::OsRandom,
    );
    let bytes = commitments
        .serialize()
        .map_err(|_| SignError::Failed("unencodable commitments"))?;
    Ok((
        Nonces {
            participant: share.participant(),
            nonces,
            commitments,
        },
        bytes,
    ))
}

/// What the signers sign: the chosen signers' commitments and the message.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Package(SigningPackage<Taproot>);

impl Package {
    /// The package of `commitments` (each signer's round-1 bytes, by participant) and
    /// `message`.
    pub fn new(
        commitments: &BTreeMap<Participant, impl AsRef<[u8]>>,
        message: &[u8],
    ) -> Result<Self, SignError> {
        let mut decoded = BTreeMap::new();
        for (participant, bytes) in commitments {
            let malformed = || SignError::Malformed {
                from: *participant,
                what: "signing commitments",
            };
            let commitments = SigningCommitments::<Taproot>::deserialize(bytes.as_ref())
                .map_err(|_| malformed())?;
            decoded.insert(identifier(*participant)?, commitments);
        }
        Ok(Self(SigningPackage::new(decoded, message)))
    }

    /// A package from its bytes ([`Package::to_bytes`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SignError> {
        SigningPackage::deserialize(bytes)
            .map(Self)
            .map_err(|_| SignError::Failed("the package does not decode"))
    }

    /// Its bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, SignError> {
        self.0
            .serialize()
            .map_err(|_| SignError::Failed("unencodable package"))
    }

    /// The message it signs.
    pub fn message(&self) -> &[u8] {
        self.0.message()
    }

    /// Whether it names `participant` as a signer.
    pub fn names(&self, participant: Participant) -> bool {
        identifier(participant)
            .ok()
            .is_some_and(|id| self.0.signing_commitment(&id).is_some())
    }

    /// How many signers it names.
    pub fn signers(&self) -> usize {
        self.0.signing_commitments().len()
    }
}

/// Round 2 for the holder of `share`: its signature share of `package` (bytes), made with the
/// `nonces` it committed to in round 1, which this consumes. Refuses a package that does not
/// carry those commitments for it.
pub fn sign(
    package: &Package,
    nonces: Nonces,
    share: &KeyShare<Taproot>,
) -> Result<Vec<u8>, SignError> {
    let me = share.participant();
    let id = identifier(me)?;
    if nonces.participant != me || package.0.signing_commitment(&id) != Some(nonces.commitments) {
        return Err(SignError::NotOurCommitments(me));
    }
    let signature_share = frost_core::round2::sign(&package.0, &nonces.nonces, share.key_package())
        .map_err(|_| SignError::Failed("the share could not be made"))?;
    Ok(signature_share.serialize())
}

/// A committee's public side of a generated key: the group key and every holder's public
/// share, for the coordinator.
#[derive(Clone, Debug)]
pub struct Group {
    public: PublicKeyPackage<Taproot>,
    threshold: u16,
}

impl Group {
    /// The group of a `threshold`-of-n key whose group key is `group_key` (compressed) and
    /// whose holders' public shares are `public_shares`, in participant order.
    pub fn new(
        threshold: u16,
        group_key: &[u8],
        public_shares: &[impl AsRef<[u8]>],
    ) -> Result<Self, SignError> {
        let mut shares = BTreeMap::new();
        for (participant, bytes) in (1u16..).zip(public_shares) {
            let share = VerifyingShare::<Taproot>::deserialize(bytes.as_ref()).map_err(|_| {
                SignError::Malformed {
                    from: participant,
                    what: "public share",
                }
            })?;
            shares.insert(identifier(participant)?, share);
        }
        let key = VerifyingKey::<Taproot>::deserialize(group_key)
            .map_err(|_| SignError::Failed("the group key does not decode"))?;
        if threshold == 0 || usize::from(threshold) > shares.len() {
            return Err(SignError::Signers {
                signers: 0,
                threshold,
                participants: shares.len(),
                reason: "the threshold is out of range",
            });
        }
        Ok(Self {
            public: PublicKeyPackage::new(shares, key, Some(threshold)),
            threshold,
        })
    }

    /// The group key's x-only form (32 bytes): the BIP-340 public key signatures verify
    /// under, and a P2TR output's witness program.
    pub fn x_only(&self) -> Result<[u8; 32], SignError> {
        let compressed = self
            .public
            .verifying_key()
            .serialize()
            .map_err(|_| SignError::Failed("unencodable group key"))?;
        compressed
            .get(1..33)
            .and_then(|x| x.try_into().ok())
            .ok_or(SignError::Failed("the group key is not compressed"))
    }

    /// Refuses a package that names fewer signers than the threshold or one outside the
    /// committee.
    pub fn check_package(&self, package: &Package) -> Result<(), SignError> {
        let signers = package.signers();
        let refused = |reason| SignError::Signers {
            signers,
            threshold: self.threshold,
            participants: self.public.verifying_shares().len(),
            reason,
        };
        if signers < usize::from(self.threshold) {
            return Err(refused("fewer signers than the threshold"));
        }
        if package
            .0
            .signing_commitments()
            .keys()
            .any(|id| !self.public.verifying_shares().contains_key(id))
        {
            return Err(refused("a signer outside the committee"));
        }
        Ok(())
    }

    /// Checks `participant`'s signature share of `package` against its public share.
    pub fn check_share(
        &self,
        package: &Package,
        participant: Participant,
        share: &[u8],
    ) -> Result<(), SignError> {
        let id = identifier(participant)?;
        let bad = || SignError::BadShare(participant);
        let share = SignatureShare::<Taproot>::deserialize(share).map_err(|_| bad())?;
        let public_share = self.public.verifying_shares().get(&id).ok_or_else(bad)?;
        if package.0.signing_commitment(&id).is_none() {
            return Err(bad());
        }
        frost_core::verify_signature_share(
            id,
            public_share,
            &share,
            &package.0,
            self.public.verifying_key(),
        )
        .map_err(|_| bad())
    }

    /// The 64-byte BIP-340 signature the signers' `shares` of `package` make. The shares are
    /// combined and the signature checked first; only when it fails is each share checked, to
    /// name the first signer whose share fails.
    pub fn aggregate(
        &self,
        package: &Package,
        shares: &BTreeMap<Participant, impl AsRef<[u8]>>,
    ) -> Result<[u8; 64], SignError> {
        self.check_package(package)?;
        let named_culprit = || {
            shares
                .iter()
                .find(|(participant, share)| {
                    self.check_share(package, **participant, share.as_ref())
                        .is_err()
                })
                .map(|(participant, _)| SignError::BadShare(*participant))
        };
        let mut decoded = BTreeMap::new();
        for (participant, bytes) in shares {
            let share = SignatureShare::<Taproot>::deserialize(bytes.as_ref())
                .map_err(|_| SignError::BadShare(*participant))?;
            decoded.insert(identifier(*participant)?, share);
        }
        if decoded.len() != package.signers()
            || decoded
                .keys()
                .any(|id| package.0.signing_commitment(id).is_none())
        {
            return Err(SignError::Failed(
                "the shares are not the package's signers'",
            ));
        }
        let combined = frost_core::aggregate_custom(
            &package.0,
            &decoded,
            &self.public,
            frost_core::CheaterDetection::Disabled,
        )
        .ok()
        .and_then(|signature| signature.serialize().ok())
        .and_then(|bytes| <[u8; 64]>::try_from(bytes.as_slice()).ok());
        match combined {
            Some(bytes)
                if crate::secp256k1::verify_bip340(&self.x_only()?, package.message(), &bytes) =>
            {
                Ok(bytes)
            }
            _ => Err(named_culprit().unwrap_or(SignError::Failed(
                "the shares do not make a valid signature",
            ))),
        }
    }
}

#[cfg(test)]
mod tests;
