//! Dealer-free key generation over secp256k1, t-of-n: the Zcash Foundation's FROST DKG
//! (`frost-secp256k1-tr`), with its messages as bytes for envelopes, and the rebuild of the
//! key from any t released shares.
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
//!    of knowledge fails, ends the run naming that dealer ([`DkgError::Dealer`]).
//!
//! What it does not do: FROST's DKG completes only with every participant, so a missing or
//! misbehaving one aborts the run, and a new run goes without it (the caller's part, as are
//! the messages' transport, sealing and storage). No network, no storage, no async.

use std::collections::BTreeMap;

use frost_secp256k1_tr as frost;
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

/// What a participant keeps between [`deal`] and [`share_out`] (its polynomial). Zeroized on
/// drop; never sent.
pub struct Round1 {
    me: Participant,
    participants: u16,
    secret: frost::keys::dkg::round1::SecretPackage,
}

/// What a participant keeps between [`share_out`] and [`finish`]. Zeroized on drop; never
/// sent.
pub struct Round2 {
    me: Participant,
    participants: u16,
    secret: frost::keys::dkg::round2::SecretPackage,
}

impl std::fmt::Debug for Round1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Round1(participant {}, <redacted>)", self.me)
    }
}

impl std::fmt::Debug for Round2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Round2(participant {}, <redacted>)", self.me)
    }
}

/// `to_bytes` and `from_bytes` for a round's kept secret, FROST's `module::SecretPackage`.
macro_rules! kept_between_parts {
    ($round:ident, $module:ident) => {
        impl $round {
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
                let secret = frost::keys::dkg::$module::SecretPackage::deserialize(bytes)
                    .map_err(|_| DkgError::Failed("a round secret that does not decode"))?;
                if secret.identifier() != &identifier(me)? {
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
struct OsRandom;

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

fn identifier(participant: Participant) -> Result<frost::Identifier, DkgError> {
    frost::Identifier::try_from(participant).map_err(|_| DkgError::Parameters {
        threshold: 0,
        participants: participant,
        reason: "participants are numbered from 1",
    })
}

/// The participant a FROST identifier stands for, among `participants`.
fn participant_of(id: &frost::Identifier, participants: u16) -> Option<Participant> {
    (1..=participants).find(|p| frost::Identifier::try_from(*p).ok().as_ref() == Some(id))
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
pub fn deal(
    me: Participant,
    participants: u16,
    threshold: u16,
) -> Result<(Round1, Vec<u8>), DkgError> {
    check_parameters(threshold, participants)?;
    if me == 0 || me > participants {
        return Err(DkgError::Parameters {
            threshold,
            participants,
            reason: "this participant is not in the committee",
        });
    }
    let (secret, package) =
        frost::keys::dkg::part1(identifier(me)?, participants, threshold, OsRandom).map_err(
            |_| DkgError::Parameters {
                threshold,
                participants,
                reason: "refused by the DKG",
            },
        )?;
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
fn decode_all<T>(
    me: Participant,
    participants: u16,
    messages: &BTreeMap<Participant, impl AsRef<[u8]>>,
    what: &'static str,
    decode: impl Fn(&[u8]) -> Option<T>,
) -> Result<BTreeMap<frost::Identifier, T>, DkgError> {
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
        decoded.insert(identifier(*from)?, message);
    }
    Ok(decoded)
}

fn commitments(
    me: Participant,
    participants: u16,
    messages: &BTreeMap<Participant, impl AsRef<[u8]>>,
) -> Result<BTreeMap<frost::Identifier, frost::keys::dkg::round1::Package>, DkgError> {
    decode_all(me, participants, messages, "commitment", |bytes| {
        frost::keys::dkg::round1::Package::deserialize(bytes).ok()
    })
}

/// Maps FROST's error to the dealer it names, where it names one.
fn blame(error: &frost::Error, participants: u16, otherwise: &'static str) -> DkgError {
    let reason = match error {
        frost::Error::InvalidProofOfKnowledge { .. } => {
            "a commitment whose proof of knowledge fails"
        }
        frost::Error::InvalidSecretShare { .. } => "a share that fails its commitments",
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
pub fn share_out(
    round1: Round1,
    commitments_received: &BTreeMap<Participant, impl AsRef<[u8]>>,
) -> Result<(Round2, Shares), DkgError> {
    let Round1 {
        me,
        participants,
        secret,
    } = round1;
    let received = commitments(me, participants, commitments_received)?;
    let (secret, packages) = frost::keys::dkg::part2(secret, &received)
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

/// Every participant's public share (SEC1 compressed), participant 1 first: what the
/// commitment to a generated key lists, and what each released share is checked against.
pub type PublicShares = Vec<Vec<u8>>;

/// Part 3: checks each share addressed to this participant against its dealer's
/// commitments and sums them into this participant's [`KeyShare`]; with it, every
/// participant's public share as these commitments give them. A failing share names its
/// dealer.
pub fn finish(
    round2: &Round2,
    commitments_received: &BTreeMap<Participant, impl AsRef<[u8]>>,
    shares_received: &Shares,
) -> Result<(KeyShare, PublicShares), DkgError> {
    let (me, participants) = (round2.me, round2.participants);
    let received = commitments(me, participants, commitments_received)?;
    let shares = decode_all(me, participants, shares_received, "share", |bytes| {
        frost::keys::dkg::round2::Package::deserialize(bytes).ok()
    })?;
    let (key_package, public) = frost::keys::dkg::part3(&round2.secret, &received, &shares)
        .map_err(|e| blame(&e, participants, "an unusable set of shares"))?;
    let public_shares = public_shares(&public, participants)?;
    Ok((KeyShare::new(me, key_package, &public)?, public_shares))
}

/// The group key and every participant's public share that the dealers' part-1 commitments
/// (every participant's, participant 1 first) give, as [`finish`] derives them: what an
/// auditor checks a generated key against, with no secret at hand. Proofs of knowledge are
/// not checked here (the participants did, in part 2).
pub fn public_shares_of(
    commitments: &[impl AsRef<[u8]>],
) -> Result<(PublicKey, PublicShares), DkgError> {
    use frost::keys::Tweak;
    let participants =
        u16::try_from(commitments.len()).map_err(|_| DkgError::Failed("too many participants"))?;
    let packages = commitments
        .iter()
        .zip(1..=participants)
        .map(|(bytes, from)| {
            frost::keys::dkg::round1::Package::deserialize(bytes.as_ref())
                .map(|package| (from, package))
                .map_err(|_| DkgError::Malformed {
                    from,
                    what: "commitment",
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let by_participant = packages
        .iter()
        .map(|(from, package)| Ok((identifier(*from)?, package.commitment())))
        .collect::<Result<BTreeMap<_, _>, DkgError>>()?;
    // As FROST's DKG ends: the Taproot tweak that commits to no script path.
    let public = frost::keys::PublicKeyPackage::from_dkg_commitments(&by_participant)
        .map_err(|_| DkgError::Failed("commitments that give no group key"))?
        .tweak::<&[u8]>(None);
    let shares = public_shares(&public, participants)?;
    Ok((public_key_of(public.verifying_key())?, shares))
}

/// Every participant's public share in a public key package, participant 1 first.
fn public_shares(
    public: &frost::keys::PublicKeyPackage,
    participants: u16,
) -> Result<PublicShares, DkgError> {
    (1..=participants)
        .map(|p| {
            public
                .verifying_shares()
                .get(&identifier(p)?)
                .and_then(|share| share.serialize().ok())
                .ok_or(DkgError::Failed("a participant without a public share"))
        })
        .collect()
}

/// Whether `share`, dealt to `recipient` in part 2, is on the polynomial that its dealer's
/// part-1 `commitment` commits to: how anyone checks a complaint against a dealer once the
/// recipient has revealed the share. `Err` when either does not decode.
pub fn share_fits(
    commitment: &[u8],
    recipient: Participant,
    share: &[u8],
) -> Result<bool, DkgError> {
    let commitment = frost::keys::dkg::round1::Package::deserialize(commitment).map_err(|_| {
        DkgError::Malformed {
            from: 0,
            what: "commitment",
        }
    })?;
    let share =
        frost::keys::dkg::round2::Package::deserialize(share).map_err(|_| DkgError::Malformed {
            from: 0,
            what: "share",
        })?;
    let secret = frost::keys::SecretShare::new(
        identifier(recipient)?,
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
pub struct KeyShare {
    participant: Participant,
    key_package: frost::keys::KeyPackage,
    group_key: PublicKey,
}

impl std::fmt::Debug for KeyShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyShare")
            .field("participant", &self.participant)
            .field("group_key", &self.group_key)
            .finish_non_exhaustive()
    }
}

fn public_key_of(key: &frost::VerifyingKey) -> Result<PublicKey, DkgError> {
    let bytes = key
        .serialize()
        .map_err(|_| DkgError::Rebuild("an unencodable group key"))?;
    PublicKey::from_sec1(&bytes).map_err(|_| DkgError::Rebuild("an invalid group key"))
}

impl KeyShare {
    fn new(
        participant: Participant,
        key_package: frost::keys::KeyPackage,
        public: &frost::keys::PublicKeyPackage,
    ) -> Result<Self, DkgError> {
        if public.verifying_key() != key_package.verifying_key() {
            return Err(DkgError::Failed("the key package names another group key"));
        }
        let group_key = public_key_of(key_package.verifying_key())?;
        Ok(Self {
            participant,
            key_package,
            group_key,
        })
    }

    /// Whose share.
    pub fn participant(&self) -> Participant {
        self.participant
    }

    /// The threshold.
    pub fn threshold(&self) -> u16 {
        *self.key_package.min_signers()
    }

    /// The group's public key: what the generated key's public half is.
    pub fn group_key(&self) -> &PublicKey {
        &self.group_key
    }

    /// This participant's public share (its secret share times the generator), SEC1
    /// compressed: what anyone checks a released share against.
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
        // FROST encodes a secp256k1 scalar in 32 bytes.
        let len = bytes.len().min(32);
        secret.expose_mut()[32 - len..].copy_from_slice(&bytes[..len]);
        secret
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
            frost::keys::SigningShare::deserialize(secret).map_err(|_| malformed.clone())?;
        let verifying_key =
            frost::VerifyingKey::deserialize(&group_key.to_compressed()).map_err(|_| malformed)?;
        let key_package = frost::keys::KeyPackage::new(
            identifier(participant)?,
            signing_share,
            frost::keys::VerifyingShare::from(signing_share),
            verifying_key,
            threshold,
        );
        Ok(Self {
            participant,
            key_package,
            group_key: *group_key,
        })
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
        let key_package =
            frost::keys::KeyPackage::deserialize(bytes).map_err(|_| DkgError::Malformed {
                from: participant,
                what: "key share",
            })?;
        if key_package.identifier() != &identifier(participant)? {
            return Err(DkgError::Malformed {
                from: participant,
                what: "key share (another participant's)",
            });
        }
        let public_share = frost::keys::VerifyingShare::from(*key_package.signing_share());
        if &public_share != key_package.verifying_share() {
            return Err(DkgError::Malformed {
                from: participant,
                what: "key share (its public share does not match)",
            });
        }
        let group_key = public_key_of(key_package.verifying_key())?;
        Ok(Self {
            participant,
            key_package,
            group_key,
        })
    }
}

/// Rebuilds the key from at least t shares of one generated key (Lagrange interpolation at
/// zero), and checks it against their group key.
pub fn rebuild(shares: &[KeyShare]) -> Result<SecretKey, DkgError> {
    let first = shares.first().ok_or(DkgError::Rebuild("no shares"))?;
    if shares.iter().any(|s| s.group_key != first.group_key) {
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
    let packages: Vec<frost::keys::KeyPackage> =
        shares.iter().map(|s| s.key_package.clone()).collect();
    let key = frost::keys::reconstruct(&packages)
        .map_err(|_| DkgError::Rebuild("the shares do not interpolate"))?;
    let bytes = Zeroizing::new(key.serialize());
    let secret: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| DkgError::Rebuild("a key of the wrong length"))?;
    let secret = Zeroizing::new(secret);
    let rebuilt =
        SecretKey::from_bytes(&secret).map_err(|_| DkgError::Rebuild("an invalid key"))?;
    if rebuilt.public_key().to_compressed() != first.group_key.to_compressed() {
        return Err(DkgError::Rebuild("the rebuilt key is not the group key"));
    }
    Ok(rebuilt)
}

pub mod reshare;

#[cfg(test)]
mod tests;
