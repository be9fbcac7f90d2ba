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

use crate::secp256k1::{PublicKey, SecretKey};

/// A participant's number in its committee, from 1: fiduciary `i` of an order (in the order's
/// list, from 0) is participant `i + 1`.
pub type Participant = u16;

/// Shares by participant (the recipient of each, or the dealer of each received): secret, so
/// zeroized on drop.
pub type Shares = BTreeMap<Participant, Zeroizing<Vec<u8>>>;

/// Why a run (or a rebuild) failed. Never carries secret bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
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

/// Part 3: checks each share addressed to this participant against its dealer's
/// commitments and sums them into this participant's [`KeyShare`]. A failing share names its
/// dealer.
pub fn finish(
    round2: &Round2,
    commitments_received: &BTreeMap<Participant, impl AsRef<[u8]>>,
    shares_received: &Shares,
) -> Result<KeyShare, DkgError> {
    let (me, participants) = (round2.me, round2.participants);
    let received = commitments(me, participants, commitments_received)?;
    let shares = decode_all(me, participants, shares_received, "share", |bytes| {
        frost::keys::dkg::round2::Package::deserialize(bytes).ok()
    })?;
    let (key_package, public) = frost::keys::dkg::part3(&round2.secret, &received, &shares)
        .map_err(|e| blame(&e, participants, "an unusable set of shares"))?;
    KeyShare::new(me, key_package, &public)
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

#[cfg(test)]
#[path = "dkg_tests.rs"]
mod tests;
