//! Dealer-free key generation, t-of-n: the Zcash Foundation's FROST DKG (`frost-core`), with
//! its messages as bytes for envelopes, over two groups ([`Suite`]): secp256k1 with Taproot's
//! tweak ([`Taproot`], `frost-secp256k1-tr`, for keys FROST later signs with and that a
//! release rebuilds from any t shares), and G1 of BLS12-381 ([`Bls12381G1`], for the M-Pin
//! master secret, whose shares are scalars of that field). [`Scheme`] picks one at run time,
//! with every message and kept secret as bytes.
//!
//! The DKG is Pedersen's: every participant deals a random polynomial of degree t-1 with
//! Feldman commitments and a proof that it knows its secret (against rogue keys); every
//! participant checks each share it receives against its dealer's commitments; its share of
//! the key is the sum of what it received, and the group key the sum of the dealers' constant
//! commitments. Nobody ever holds the key. The key packages it ends with are the ones FROST
//! signing takes.
//!
//! Three parts, two rounds of messages between them:
//! 1. [`deal`]: a [`Round1`] to keep in memory and a commitment to send to every other
//!    participant, the same to all (dta's envelopes carry it signed, and every participant
//!    must see the same set: a relay that showed two participants different commitments is
//!    caught by [`commitments_digest`]).
//! 2. [`share_out`]: with every other participant's commitment, a [`Round2`] to keep and one
//!    share for each other participant, which must travel confidential and authenticated
//!    (sealed to its recipient, signed by its dealer).
//! 3. [`finish`]: with the commitments and the shares addressed to this participant, its
//!    [`KeyShare`]. A share that fails its dealer's commitments, or a commitment whose proof
//!    of knowledge fails, ends the run naming that dealer ([`DkgError::Dealer`]). Parts 1
//!    and 2 are FROST's own; part 3 is `part3`'s, which gives the same key and public key
//!    packages with the shares checked together and every evaluation of the commitments by
//!    Horner's rule in small multiples (a tenth of the CPU at 64 participants and more).
//!
//! What it does not do: FROST's DKG completes only with every participant, so a missing or
//! misbehaving one aborts the run, and a new run goes without it (the caller's part, as are
//! the messages' transport, sealing and storage). No network, no storage, no async.

use std::collections::BTreeMap;

use frost_core::keys::dkg::{round1, round2};
use frost_core::keys::{KeyPackage, PublicKeyPackage, SecretShare, SigningShare, VerifyingShare};
use frost_core::{Ciphersuite, Identifier, VerifyingKey};
use frost_secp256k1_tr::rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::Secret;
use crate::secp256k1::{PublicKey, SecretKey};

/// A participant's number in its committee, from 1: fiduciary `i` of an order (in the order's
/// list, from 0) is participant `i + 1`.
pub type Participant = u16;

/// Shares by participant (the recipient of each, or the dealer of each received): secret, so
/// zeroized on drop.
pub type Shares = BTreeMap<Participant, Zeroizing<Vec<u8>>>;

/// Why a run (or a rebuild) failed. Never carries secret bytes.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DkgError {
    /// The threshold or the committee's size is out of range.
    #[error("a {threshold}-of-{participants} key cannot be generated: {reason}")]
    Parameters {
        /// t.
        threshold: u16,
        /// n.
        participants: u16,
        /// Why.
        reason: &'static str,
    },
    /// A message from `from` does not decode, or is not for this run.
    #[error("participant {from}'s {what} is malformed")]
    Malformed {
        /// Its sender.
        from: Participant,
        /// Which message.
        what: &'static str,
    },
    /// Messages of these participants are missing.
    #[error("missing the {what} of participant(s) {missing:?}")]
    Incomplete {
        /// Which message.
        what: &'static str,
        /// Whose.
        missing: Vec<Participant>,
    },
    /// A dealer's share or proof failed its check: it is to be left out of the next run.
    #[error("participant {culprit} dealt {reason}")]
    Dealer {
        /// The dealer.
        culprit: Participant,
        /// What it did wrong.
        reason: &'static str,
    },
    /// The run failed for a reason that names nobody.
    #[error("the key generation failed: {0}")]
    Failed(&'static str),
    /// The shares given to rebuild the key do not rebuild it.
    #[error("the key cannot be rebuilt: {0}")]
    Rebuild(&'static str),
}

mod bls12_381_g1;
mod part3;
pub mod reshare;
mod scheme;

pub use bls12_381_g1::Bls12381G1;
pub use frost_secp256k1_tr::Secp256K1Sha256TR as Taproot;
pub use scheme::{Generated, Scheme};

/// A group the key generation runs over: a FROST ciphersuite, and what its public key package
/// becomes once a run ends (as its `post_dkg` makes the key packages).
pub trait Suite: Ciphersuite {
    /// The public key package of a finished run, from the one the commitments give.
    fn finished(public: PublicKeyPackage<Self>) -> PublicKeyPackage<Self>;
}

impl Suite for Taproot {
    fn finished(public: PublicKeyPackage<Self>) -> PublicKeyPackage<Self> {
        use frost_secp256k1_tr::keys::Tweak;
        // As FROST's DKG ends: the Taproot tweak that commits to no script path.
        public.tweak::<&[u8]>(None)
    }
}

impl Suite for Bls12381G1 {
    fn finished(public: PublicKeyPackage<Self>) -> PublicKeyPackage<Self> {
        public
    }
}

/// What a participant keeps between [`deal`] and [`share_out`] (its polynomial). Zeroized on
/// drop; never sent.
pub struct Round1<C: Suite = Taproot> {
    me: Participant,
    participants: u16,
    secret: round1::SecretPackage<C>,
}

/// What a participant keeps between [`share_out`] and [`finish`]. Zeroized on drop; never
/// sent.
pub struct Round2<C: Suite = Taproot> {
    me: Participant,
    participants: u16,
    secret: round2::SecretPackage<C>,
}

impl<C: Suite> std::fmt::Debug for Round1<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Round1(participant {}, <redacted>)", self.me)
    }
}

impl<C: Suite> std::fmt::Debug for Round2<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Round2(participant {}, <redacted>)", self.me)
    }
}

/// `to_bytes` and `from_bytes` for a round's kept secret, FROST's `module::SecretPackage`.
macro_rules! kept_between_parts {
    ($round:ident, $module:ident) => {
        impl<C: Suite> $round<C> {
            /// The round's secret as bytes, to keep wrapped between the parts (so that a
            /// restart resumes the run instead of aborting it).
            pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, DkgError> {
                self.secret
                    .serialize()
                    .map(Zeroizing::new)
                    .map_err(|_| DkgError::Failed("an unencodable round secret"))
            }

            /// A round secret from `to_bytes`, of participant `me`.
            pub fn from_bytes(
                me: Participant,
                participants: u16,
                bytes: &[u8],
            ) -> Result<Self, DkgError> {
                let secret = $module::SecretPackage::<C>::deserialize(bytes)
                    .map_err(|_| DkgError::Failed("a round secret that does not decode"))?;
                if secret.identifier() != &identifier::<C>(me)? {
                    return Err(DkgError::Failed("another participant's round secret"));
                }
                Ok(Self {
                    me,
                    participants,
                    secret,
                })
            }
        }
    };
}

kept_between_parts!(Round1, round1);
kept_between_parts!(Round2, round2);

/// The operating system's randomness, as FROST's generic code takes it.
pub(crate) struct OsRandom;

impl RngCore for OsRandom {
    fn next_u32(&mut self) -> u32 {
        let mut bytes = [0u8; 4];
        self.fill_bytes(&mut bytes);
        u32::from_le_bytes(bytes)
    }

    fn next_u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        self.fill_bytes(&mut bytes);
        u64::from_le_bytes(bytes)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        crate::random_bytes(dest);
    }

    fn try_fill_bytes(
        &mut self,
        dest: &mut [u8],
    ) -> Result<(), frost_secp256k1_tr::rand_core::Error> {
        crate::random_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for OsRandom {}

fn identifier<C: Suite>(participant: Participant) -> Result<Identifier<C>, DkgError> {
    Identifier::<C>::try_from(participant).map_err(|_| DkgError::Parameters {
        threshold: 0,
        participants: participant,
        reason: "participants are numbered from 1",
    })
}

/// The participant a FROST identifier stands for, among `participants`.
fn participant_of<C: Suite>(id: &Identifier<C>, participants: u16) -> Option<Participant> {
    (1..=participants).find(|p| Identifier::<C>::try_from(*p).ok().as_ref() == Some(id))
}

fn check_parameters(threshold: u16, participants: u16) -> Result<(), DkgError> {
    let reason = if threshold < 2 {
        "the threshold must be at least 2"
    } else if threshold > participants {
        "the threshold is above the number of participants"
    } else {
        return Ok(());
    };
    Err(DkgError::Parameters {
        threshold,
        participants,
        reason,
    })
}

/// Part 1: deals this participant's polynomial. Its [`Round1`] to keep, and the commitment
/// (with the proof of knowledge) to send to every other participant.
pub fn deal<C: Suite>(
    me: Participant,
    participants: u16,
    threshold: u16,
) -> Result<(Round1<C>, Vec<u8>), DkgError> {
    check_parameters(threshold, participants)?;
    if me == 0 || me > participants {
        return Err(DkgError::Parameters {
            threshold,
            participants,
            reason: "this participant is not in the committee",
        });
    }
    let (secret, package) =
        frost_core::keys::dkg::part1(identifier::<C>(me)?, participants, threshold, OsRandom)
            .map_err(|_| DkgError::Parameters {
                threshold,
                participants,
                reason: "refused by the DKG",
            })?;
    let bytes = package.serialize().map_err(|_| DkgError::Malformed {
        from: me,
        what: "commitment",
    })?;
    Ok((
        Round1 {
            me,
            participants,
            secret,
        },
        bytes,
    ))
}

/// Every other participant's message, decoded; the missing ones named.
fn decode_all<C: Suite, T>(
    me: Participant,
    participants: u16,
    messages: &BTreeMap<Participant, impl AsRef<[u8]>>,
    what: &'static str,
    decode: impl Fn(&[u8]) -> Option<T>,
) -> Result<BTreeMap<Identifier<C>, T>, DkgError> {
    let missing: Vec<Participant> = (1..=participants)
        .filter(|p| *p != me && !messages.contains_key(p))
        .collect();
    if !missing.is_empty() {
        return Err(DkgError::Incomplete { what, missing });
    }
    let mut decoded = BTreeMap::new();
    for (from, bytes) in messages {
        if *from == me {
            continue;
        }
        if *from == 0 || *from > participants {
            return Err(DkgError::Malformed { from: *from, what });
        }
        let message = decode(bytes.as_ref()).ok_or(DkgError::Malformed { from: *from, what })?;
        decoded.insert(identifier::<C>(*from)?, message);
    }
    Ok(decoded)
}

fn commitments<C: Suite>(
    me: Participant,
    participants: u16,
    messages: &BTreeMap<Participant, impl AsRef<[u8]>>,
) -> Result<BTreeMap<Identifier<C>, round1::Package<C>>, DkgError> {
    decode_all(me, participants, messages, "commitment", |bytes| {
        round1::Package::<C>::deserialize(bytes).ok()
    })
}

/// Maps FROST's error to the dealer it names, where it names one.
fn blame<C: Suite>(
    error: &frost_core::Error<C>,
    participants: u16,
    otherwise: &'static str,
) -> DkgError {
    let reason = match error {
        frost_core::Error::InvalidProofOfKnowledge { .. } => {
            "a commitment whose proof of knowledge fails"
        }
        frost_core::Error::InvalidSecretShare { .. } => "a share that fails its commitments",
        _ => otherwise,
    };
    match error
        .culprits()
        .first()
        .and_then(|id| participant_of(id, participants))
    {
        Some(culprit) => DkgError::Dealer { culprit, reason },
        None => DkgError::Failed(otherwise),
    }
}

/// Part 2: checks every other participant's proof of knowledge and deals them their shares.
/// Its [`Round2`] to keep, and by recipient the share to seal to it. A commitment whose proof
/// fails names its dealer.
pub fn share_out<C: Suite>(
    round1: Round1<C>,
    commitments_received: &BTreeMap<Participant, impl AsRef<[u8]>>,
) -> Result<(Round2<C>, Shares), DkgError> {
    let Round1 {
        me,
        participants,
        secret,
    } = round1;
    let received = commitments::<C>(me, participants, commitments_received)?;
    let (secret, packages) = frost_core::keys::dkg::part2(secret, &received)
        .map_err(|e| blame(&e, participants, "an unusable set of commitments"))?;
    let mut shares = BTreeMap::new();
    for (id, package) in packages {
        let to = participant_of(&id, participants).ok_or(DkgError::Failed(
            "a share for a participant outside the committee",
        ))?;
        let bytes = package.serialize().map_err(|_| DkgError::Malformed {
            from: me,
            what: "share",
        })?;
        shares.insert(to, Zeroizing::new(bytes));
    }
    Ok((
        Round2 {
            me,
            participants,
            secret,
        },
        shares,
    ))
}

/// Every participant's public share (its group's encoding: SEC1 compressed on secp256k1, 48
/// compressed bytes on G1), participant 1 first: what the commitment to a generated key
/// lists, and what each released share is checked against.
pub type PublicShares = Vec<Vec<u8>>;

/// Part 3: checks each share addressed to this participant against its dealer's
/// commitments and sums them into this participant's [`KeyShare`]; with it, every
/// participant's public share as these commitments give them. A failing share names its
/// dealer.
pub fn finish<C: Suite>(
    round2: &Round2<C>,
    commitments_received: &BTreeMap<Participant, impl AsRef<[u8]>>,
    shares_received: &Shares,
) -> Result<(KeyShare<C>, PublicShares), DkgError> {
    let (me, participants) = (round2.me, round2.participants);
    let received = commitments::<C>(me, participants, commitments_received)?;
    let shares = decode_all(me, participants, shares_received, "share", |bytes| {
        round2::Package::<C>::deserialize(bytes).ok()
    })?;
    let (key_package, public) =
        part3::finish(&round2.secret, &received, &shares, me, participants)?;
    let public_shares = public_shares(&public, participants)?;
    Ok((KeyShare::new(me, key_package, &public)?, public_shares))
}

/// The group key (its group's encoding) and every participant's public share that the
/// dealers' part-1 commitments (every participant's, participant 1 first) give, as
/// [`finish`] derives them: what an auditor checks a generated key against, with no secret
/// at hand. Proofs of knowledge are not checked here (the participants did, in part 2).
pub fn public_shares_of<C: Suite>(
    commitments: &[impl AsRef<[u8]>],
) -> Result<(Vec<u8>, PublicShares), DkgError> {
    let participants =
        u16::try_from(commitments.len()).map_err(|_| DkgError::Failed("too many participants"))?;
    let packages = commitments
        .iter()
        .zip(1..=participants)
        .map(|(bytes, from)| {
            round1::Package::<C>::deserialize(bytes.as_ref())
                .map(|package| (from, package))
                .map_err(|_| DkgError::Malformed {
                    from,
                    what: "commitment",
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let commitments: Vec<_> = packages.iter().map(|(_, p)| p.commitment()).collect();
    let public = part3::public_of(&commitments)?;
    let shares = public_shares(&public, participants)?;
    Ok((group_key_bytes(public.verifying_key())?, shares))
}

/// Every participant's public share in a public key package, participant 1 first.
fn public_shares<C: Suite>(
    public: &PublicKeyPackage<C>,
    participants: u16,
) -> Result<PublicShares, DkgError> {
    (1..=participants)
        .map(|p| {
            public
                .verifying_shares()
                .get(&identifier::<C>(p)?)
                .and_then(|share| share.serialize().ok())
                .ok_or(DkgError::Failed("a participant without a public share"))
        })
        .collect()
}

fn group_key_bytes<C: Suite>(key: &VerifyingKey<C>) -> Result<Vec<u8>, DkgError> {
    key.serialize()
        .map_err(|_| DkgError::Rebuild("an unencodable group key"))
}

/// Whether `share`, dealt to `recipient` in part 2, is on the polynomial that its dealer's
/// part-1 `commitment` commits to: how anyone checks a complaint against a dealer once the
/// recipient has revealed the share. `Err` when either does not decode.
pub fn share_fits<C: Suite>(
    commitment: &[u8],
    recipient: Participant,
    share: &[u8],
) -> Result<bool, DkgError> {
    let commitment =
        round1::Package::<C>::deserialize(commitment).map_err(|_| DkgError::Malformed {
            from: 0,
            what: "commitment",
        })?;
    let share = round2::Package::<C>::deserialize(share).map_err(|_| DkgError::Malformed {
        from: 0,
        what: "share",
    })?;
    let secret = SecretShare::new(
        identifier::<C>(recipient)?,
        *share.signing_share(),
        commitment.commitment().clone(),
    );
    Ok(secret.verify().is_ok())
}

/// A digest of the commitments a participant used (its own included), in participant order:
/// participants that compare theirs know they all saw the same ones, which FROST's DKG
/// requires (a dealer, or a relay, that showed two of them different commitments is caught).
pub fn commitments_digest(
    own: &[u8],
    me: Participant,
    received: &BTreeMap<Participant, impl AsRef<[u8]>>,
) -> [u8; 32] {
    let mut all: BTreeMap<Participant, &[u8]> =
        received.iter().map(|(p, b)| (*p, b.as_ref())).collect();
    all.insert(me, own);
    let mut hash = Sha256::new();
    hash.update(b"dta/dkg/commitments/v1");
    for (participant, bytes) in all {
        hash.update(participant.to_be_bytes());
        hash.update((bytes.len() as u64).to_be_bytes());
        hash.update(bytes);
    }
    hash.finalize().into()
}

/// One participant's share of a generated key, with the group's public key and its own
/// public share. The secret part zeroizes on drop and never prints.
pub struct KeyShare<C: Suite = Taproot> {
    participant: Participant,
    key_package: KeyPackage<C>,
}

impl<C: Suite> std::fmt::Debug for KeyShare<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyShare")
            .field("participant", &self.participant)
            .field("suite", &C::ID)
            .finish_non_exhaustive()
    }
}

impl<C: Suite> KeyShare<C> {
    fn new(
        participant: Participant,
        key_package: KeyPackage<C>,
        public: &PublicKeyPackage<C>,
    ) -> Result<Self, DkgError> {
        if public.verifying_key() != key_package.verifying_key() {
            return Err(DkgError::Failed("the key package names another group key"));
        }
        Ok(Self {
            participant,
            key_package,
        })
    }

    /// FROST's key package, for signing (`crate::signing`).
    pub(crate) fn key_package(&self) -> &KeyPackage<C> {
        &self.key_package
    }

    /// Whose share.
    pub fn participant(&self) -> Participant {
        self.participant
    }

    /// The threshold.
    pub fn threshold(&self) -> u16 {
        *self.key_package.min_signers()
    }

    /// The group's public key in its group's encoding: what the generated key's public half
    /// is.
    pub fn group_key_bytes(&self) -> Result<Vec<u8>, DkgError> {
        group_key_bytes(self.key_package.verifying_key())
    }

    /// This participant's public share (its secret share times the generator), in its
    /// group's encoding: what anyone checks a released share against.
    pub fn public_share(&self) -> Result<Vec<u8>, DkgError> {
        self.key_package
            .verifying_share()
            .serialize()
            .map_err(|_| DkgError::Rebuild("an unencodable public share"))
    }

    /// The secret share alone (32 big-endian bytes, a scalar mod the group order): what a
    /// fiduciary keeps wrapped and releases; [`KeyShare::from_secret`] makes the share again.
    pub fn secret_bytes(&self) -> Secret<32> {
        let bytes = Zeroizing::new(self.key_package.signing_share().serialize());
        let mut secret = Secret::<32>::zero();
        // Both groups' scalars encode in 32 bytes.
        let len = bytes.len().min(32);
        secret.expose_mut()[32 - len..].copy_from_slice(&bytes[..len]);
        secret
    }

    /// The share as bytes (FROST's key package encoding), to store wrapped or release
    /// sealed.
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, DkgError> {
        self.key_package
            .serialize()
            .map(Zeroizing::new)
            .map_err(|_| DkgError::Rebuild("an unencodable key share"))
    }

    /// A share from [`KeyShare::to_bytes`]; its public share must match its secret.
    pub fn from_bytes(participant: Participant, bytes: &[u8]) -> Result<Self, DkgError> {
        let key_package = KeyPackage::<C>::deserialize(bytes).map_err(|_| DkgError::Malformed {
            from: participant,
            what: "key share",
        })?;
        if key_package.identifier() != &identifier::<C>(participant)? {
            return Err(DkgError::Malformed {
                from: participant,
                what: "key share (another participant's)",
            });
        }
        let public_share = VerifyingShare::from(*key_package.signing_share());
        if &public_share != key_package.verifying_share() {
            return Err(DkgError::Malformed {
                from: participant,
                what: "key share (its public share does not match)",
            });
        }
        Ok(Self {
            participant,
            key_package,
        })
    }
}

fn public_key_of(key: &VerifyingKey<Taproot>) -> Result<PublicKey, DkgError> {
    PublicKey::from_sec1(&group_key_bytes(key)?)
        .map_err(|_| DkgError::Rebuild("an invalid group key"))
}

impl KeyShare<Taproot> {
    /// The group's public key: what the generated key's public half is.
    pub fn group_key(&self) -> Result<PublicKey, DkgError> {
        public_key_of(self.key_package.verifying_key())
    }

    /// Participant `participant`'s share of a `threshold`-of-n key with group key
    /// `group_key`, from its secret alone ([`KeyShare::secret_bytes`]).
    pub fn from_secret(
        participant: Participant,
        threshold: u16,
        secret: &[u8; 32],
        group_key: &PublicKey,
    ) -> Result<Self, DkgError> {
        let malformed = DkgError::Malformed {
            from: participant,
            what: "key share",
        };
        let signing_share =
            SigningShare::<Taproot>::deserialize(secret).map_err(|_| malformed.clone())?;
        let verifying_key = VerifyingKey::<Taproot>::deserialize(&group_key.to_compressed())
            .map_err(|_| malformed)?;
        let key_package = KeyPackage::new(
            identifier::<Taproot>(participant)?,
            signing_share,
            VerifyingShare::from(signing_share),
            verifying_key,
            threshold,
        );
        Ok(Self {
            participant,
            key_package,
        })
    }
}

/// Rebuilds the key from at least t shares of one generated key (Lagrange interpolation at
/// zero), and checks it against their group key.
pub fn rebuild(shares: &[KeyShare<Taproot>]) -> Result<SecretKey, DkgError> {
    let first = shares.first().ok_or(DkgError::Rebuild("no shares"))?;
    let group_key = first.key_package.verifying_key();
    if shares
        .iter()
        .any(|s| s.key_package.verifying_key() != group_key)
    {
        return Err(DkgError::Rebuild("the shares are of different keys"));
    }
    let mut participants: Vec<Participant> = shares.iter().map(|s| s.participant).collect();
    participants.sort_unstable();
    participants.dedup();
    if participants.len() != shares.len() {
        return Err(DkgError::Rebuild("a participant's share is given twice"));
    }
    if shares.len() < usize::from(first.threshold()) {
        return Err(DkgError::Rebuild("fewer shares than the threshold"));
    }
    let packages: Vec<KeyPackage<Taproot>> = shares.iter().map(|s| s.key_package.clone()).collect();
    let key = frost_core::keys::reconstruct(&packages)
        .map_err(|_| DkgError::Rebuild("the shares do not interpolate"))?;
    let bytes = Zeroizing::new(key.serialize());
    let secret: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| DkgError::Rebuild("a key of the wrong length"))?;
    let secret = Zeroizing::new(secret);
    let rebuilt =
        SecretKey::from_bytes(&secret).map_err(|_| DkgError::Rebuild("an invalid key"))?;
    if rebuilt.public_key().to_compressed() != first.group_key()?.to_compressed() {
        return Err(DkgError::Rebuild("the rebuilt key is not the group key"));
    }
    Ok(rebuilt)
}

#[cfg(test)]
pub(crate) mod tests;
