//! Sealing a body to several recipients with a post-quantum hybrid KEM.
//!
//! Construction:
//! 1. A fresh 32-byte content key `K` encrypts the body once with ChaCha20-Poly1305; the
//!    caller's header bytes are the associated data, so the body cannot be moved under another
//!    header.
//! 2. For each recipient, X-Wing (ML-KEM-768 + X25519, the combiner of
//!    draft-connolly-cfrg-xwing-kem) gives a shared secret `ss` and its ciphertext. A sender
//!    uses one encapsulation per recipient for many envelopes, within short bounds
//!    ([`reuse`]), so `ss` is not a key: each envelope draws a 16-byte salt and wraps `K`
//!    with ChaCha20-Poly1305 under `W = HKDF-SHA256(salt, ss, "dta seal: wrap content key")`,
//!    the same header again as associated data. The wrapped key is the salt, then `K` under
//!    `W` ([`SALTED_WRAPPED_KEY_LEN`] bytes).
//!
//! Both AEAD keys are used exactly once (`K` is fresh per envelope, `W` is fresh per salt),
//! which is why a fixed all-zero nonce is safe here.
//!
//! Envelopes sealed before salts existed wrap `K` under `ss` itself ([`WRAPPED_KEY_LEN`]
//! bytes, one encapsulation each); they still open, and nothing seals that way any more.
//!
//! Sealing only hides the body. Who sent it is proven by the envelope's BLS signature, which
//! the caller must check before calling [`open`].

use std::fmt;

pub mod reuse;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use x_wing::{Decapsulator, Encapsulate, KeyExport};
use zeroize::Zeroizing;

use crate::Secret;
use crate::meter::{Operation, measure};
pub use reuse::Sessions;
use reuse::{Decapsulations, Fingerprint, fingerprint};

/// Length of an encoded X-Wing public (encapsulation) key.
pub const KEM_PUBLIC_KEY_LEN: usize = x_wing::ENCAPSULATION_KEY_SIZE;
/// Length of an X-Wing ciphertext.
pub const KEM_CIPHERTEXT_LEN: usize = x_wing::CIPHERTEXT_SIZE;
/// Length of a content key wrapped under the shared secret itself (32 bytes plus a 16-byte
/// tag): how envelopes sealed before salts were wrapped.
pub const WRAPPED_KEY_LEN: usize = 32 + TAG_LEN;
/// Length of the salt that makes each envelope's wrapping key its own.
pub const SALT_LEN: usize = 16;
/// Length of a salted wrapped content key: the salt, then the key and its tag.
pub const SALTED_WRAPPED_KEY_LEN: usize = SALT_LEN + WRAPPED_KEY_LEN;
/// Length of the AEAD tag the ciphertext carries after the body.
pub const TAG_LEN: usize = 16;
/// Most recipients of one sealed body.
pub const MAX_RECIPIENTS: usize = 64;

/// Why a body could not be sealed.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum SealError {
    /// Nobody to seal to.
    #[error("no recipients")]
    NoRecipients,
    /// Too many recipients.
    #[error("{0} recipients; at most {MAX_RECIPIENTS} are allowed")]
    TooManyRecipients(usize),
    /// The body is too long for the AEAD.
    #[error("body too long to encrypt")]
    BodyTooLong,
}

/// Why a sealed body could not be opened. None of these says anything about the plaintext.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum OpenError {
    /// The encapsulation has the wrong size.
    #[error("malformed key encapsulation")]
    MalformedEncapsulation,
    /// The wrapped key did not authenticate: not sealed to this key, or altered.
    #[error("the content key is not sealed to this recipient, or was altered")]
    NotForThisKey,
    /// The body did not authenticate under its header.
    #[error("the body or its header was altered")]
    BodyAltered,
}

/// Why bytes are not a KEM public key.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
#[error("not a valid X-Wing public key ({len} bytes; {KEM_PUBLIC_KEY_LEN} expected)")]
pub struct KemKeyError {
    /// Length given.
    pub len: usize,
}

/// An X-Wing decapsulation key: the 32-byte seed, and what X-Wing expands it to.
///
/// `x_wing::DecapsulationKey` keeps only the seed and expands it again on every
/// decapsulation (SHAKE256, an ML-KEM-768 key generation and an X25519 base-point
/// multiplication: about 0.14 ms, as much as the decapsulation proper). A node opens every
/// envelope sealed to it with one key, so the expansion is kept here and decapsulation is
/// done from its parts, with X-Wing's combiner; the draft's vectors and the crate itself
/// check that both give the same secret. The key also remembers its latest decapsulations
/// ([`reuse`]), shared by its clones. Every part is zeroized on drop; `Debug` prints
/// nothing.
#[derive(Clone)]
pub struct KemSecretKey {
    seed: x_wing::DecapsulationKey,
    ml_kem: ml_kem::ml_kem_768::DecapsulationKey,
    x25519: x25519_dalek::StaticSecret,
    x25519_public: x25519_dalek::PublicKey,
    decapsulations: std::sync::Arc<Decapsulations>,
}

/// X-Wing's domain-separation label, the last input of its combiner.
const X_WING_LABEL: &[u8; 6] = br"\.//^\";
/// Length of the ML-KEM-768 part of an X-Wing ciphertext; the X25519 part follows.
const ML_KEM_CIPHERTEXT_LEN: usize = 1088;

impl KemSecretKey {
    /// The key expanded from a 32-byte seed (X-Wing's own secret-key format).
    pub fn from_seed(seed: &Secret<32>) -> Self {
        measure(Operation::KemKey, || {
            use shake::{ExtendableOutput, Update, XofReader};
            // As X-Wing expands it: SHAKE256(seed) gives the ML-KEM seed, then the X25519 key.
            let mut expanded = shake::Shake256::default();
            expanded.update(seed.expose());
            let mut reader = expanded.finalize_xof();
            let mut ml_kem_seed = Zeroizing::new(ml_kem::Seed::default());
            reader.read(ml_kem_seed.as_mut_slice());
            let mut x25519_seed = Zeroizing::new([0u8; 32]);
            reader.read(x25519_seed.as_mut_slice());
            let (ml_kem, _) = <ml_kem::MlKem768 as ml_kem::FromSeed>::from_seed(&ml_kem_seed);
            let x25519 = x25519_dalek::StaticSecret::from(*x25519_seed);
            let x25519_public = x25519_dalek::PublicKey::from(&x25519);
            Self {
                seed: x_wing::DecapsulationKey::from(*seed.expose()),
                ml_kem,
                x25519,
                x25519_public,
                decapsulations: Default::default(),
            }
        })
    }

    /// A fresh key from the operating system's randomness.
    pub fn random() -> Self {
        Self::from_seed(&Secret::random())
    }

    /// The 32-byte seed, in zeroizing memory.
    pub fn to_seed(&self) -> Secret<32> {
        Secret::new(*self.seed.as_bytes())
    }

    /// The matching public key.
    pub fn public_key(&self) -> KemPublicKey {
        KemPublicKey::new(self.seed.encapsulation_key().clone())
    }

    /// X-Wing decapsulation of a [`KEM_CIPHERTEXT_LEN`]-byte ciphertext:
    /// SHA3-256(ss_M ‖ ss_X ‖ ct_X ‖ pk_X ‖ label). A ciphertext that is not one decapsulates
    /// to an unrelated secret (ML-KEM's implicit rejection), as in X-Wing.
    fn decapsulate(&self, ciphertext: &[u8; KEM_CIPHERTEXT_LEN]) -> Secret<32> {
        use ml_kem::Decapsulate;
        use sha3::Digest;
        let (ml_kem_part, x25519_part) = ciphertext.split_at(ML_KEM_CIPHERTEXT_LEN);
        let ml_kem_ciphertext = ml_kem::Ciphertext::<ml_kem::MlKem768>::try_from(ml_kem_part)
            .unwrap_or_else(|_| unreachable!("the split leaves {ML_KEM_CIPHERTEXT_LEN} bytes"));
        let x25519_part: [u8; 32] = x25519_part
            .try_into()
            .unwrap_or_else(|_| unreachable!("32 bytes follow the ML-KEM part"));
        let ml_kem_shared = Zeroizing::new(self.ml_kem.decapsulate(&ml_kem_ciphertext));
        let x25519_shared = self
            .x25519
            .diffie_hellman(&x25519_dalek::PublicKey::from(x25519_part));
        let mut combiner = sha3::Sha3_256::new();
        combiner.update(ml_kem_shared.as_slice());
        combiner.update(x25519_shared.as_bytes());
        combiner.update(x25519_part);
        combiner.update(self.x25519_public.as_bytes());
        combiner.update(X_WING_LABEL);
        Secret::new(combiner.finalize().into())
    }
}

impl fmt::Debug for KemSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KemSecretKey(<redacted>)")
    }
}

/// An X-Wing encapsulation key, with the digest of its encoding that senders' sessions are
/// kept under.
#[derive(Clone, PartialEq, Eq)]
pub struct KemPublicKey {
    key: x_wing::EncapsulationKey,
    fingerprint: Fingerprint,
}

impl KemPublicKey {
    fn new(key: x_wing::EncapsulationKey) -> Self {
        let fingerprint = fingerprint(&key.to_bytes());
        Self { key, fingerprint }
    }

    /// Decodes the 1216-byte encoding (ML-KEM-768 key then X25519 key).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KemKeyError> {
        measure(Operation::KemKey, || {
            x_wing::EncapsulationKey::try_from(bytes)
                .map(Self::new)
                .map_err(|_| KemKeyError { len: bytes.len() })
        })
    }

    /// The 1216-byte encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.key.to_bytes().to_vec()
    }

    /// A fresh encapsulation to this key and its shared secret.
    fn encapsulate(&self) -> (Vec<u8>, Secret<32>) {
        let (kem_ciphertext, shared) = self.key.encapsulate();
        (kem_ciphertext.to_vec(), Secret::new(shared.into()))
    }
}

impl fmt::Debug for KemPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KemPublicKey({})",
            crate::bls::hex_prefix(&self.to_bytes())
        )
    }
}

/// The content key sealed to one recipient.
#[derive(Clone, PartialEq, Eq)]
pub struct Encapsulation {
    /// The X-Wing ciphertext ([`KEM_CIPHERTEXT_LEN`] bytes).
    pub kem_ciphertext: Vec<u8>,
    /// The content key wrapped for this recipient: a salt, then the key under the secret and
    /// the salt ([`SALTED_WRAPPED_KEY_LEN`] bytes); or, in envelopes sealed before salts, the
    /// key under the secret itself ([`WRAPPED_KEY_LEN`] bytes).
    pub wrapped_key: Vec<u8>,
}

impl fmt::Debug for Encapsulation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encapsulation")
            .field("kem_ciphertext_len", &self.kem_ciphertext.len())
            .field("wrapped_key_len", &self.wrapped_key.len())
            .finish()
    }
}

/// A sealed body: one ciphertext, one encapsulation per recipient in the order given.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Sealed {
    /// ChaCha20-Poly1305 of the body under the content key, tag appended.
    pub ciphertext: Vec<u8>,
    /// Per-recipient encapsulations, in the order of the recipients passed to [`seal`].
    pub encapsulations: Vec<Encapsulation>,
}

const ZERO_NONCE: [u8; 12] = [0; 12];

/// Encrypts `body` once and seals the content key to each recipient, with the sender's open
/// encapsulation to it where `sessions` has one within its bounds.
pub fn seal(
    header: &[u8],
    body: &[u8],
    recipients: &[&KemPublicKey],
    sessions: &Sessions,
) -> Result<Sealed, SealError> {
    measure(Operation::Seal, || {
        if recipients.is_empty() {
            return Err(SealError::NoRecipients);
        }
        if recipients.len() > MAX_RECIPIENTS {
            return Err(SealError::TooManyRecipients(recipients.len()));
        }
        let content_key = Secret::<32>::random();
        let ciphertext = aead_seal(&content_key, header, body)?;
        let encapsulations = recipients
            .iter()
            .map(|recipient| {
                let (kem_ciphertext, shared) =
                    sessions.encapsulation(recipient.fingerprint, || recipient.encapsulate());
                let mut salt = [0u8; SALT_LEN];
                crate::random_bytes(&mut salt);
                let wrapped =
                    aead_seal(&wrapping_key(&shared, &salt), header, content_key.expose())?;
                let mut wrapped_key = Vec::with_capacity(SALTED_WRAPPED_KEY_LEN);
                wrapped_key.extend_from_slice(&salt);
                wrapped_key.extend_from_slice(&wrapped);
                Ok(Encapsulation {
                    kem_ciphertext,
                    wrapped_key,
                })
            })
            .collect::<Result<_, SealError>>()?;
        Ok(Sealed {
            ciphertext,
            encapsulations,
        })
    })
}

/// Opens a sealed body with the recipient's key and its encapsulation.
pub fn open(
    header: &[u8],
    ciphertext: &[u8],
    encapsulation: &Encapsulation,
    key: &KemSecretKey,
) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    measure(Operation::Open, || {
        let content_key = content_key(header, encapsulation, key)?;
        open_with_content_key(header, ciphertext, &content_key)
    })
}

/// The content key of one sealed body, unwrapped with the recipient's key: revealing it
/// opens that one body for anyone (and nothing else sealed to the recipient), which is how
/// a recipient proves what it was sent.
pub fn content_key(
    header: &[u8],
    encapsulation: &Encapsulation,
    key: &KemSecretKey,
) -> Result<Secret<32>, OpenError> {
    measure(Operation::Open, || {
        let kem_ciphertext: &[u8; KEM_CIPHERTEXT_LEN] = encapsulation
            .kem_ciphertext
            .as_slice()
            .try_into()
            .map_err(|_| OpenError::MalformedEncapsulation)?;
        let wrapped_key = &encapsulation.wrapped_key;
        let (salt, wrapped) = match wrapped_key.len() {
            SALTED_WRAPPED_KEY_LEN => {
                let (salt, wrapped) = wrapped_key.split_at(SALT_LEN);
                (Some(salt), wrapped)
            }
            WRAPPED_KEY_LEN => (None, wrapped_key.as_slice()),
            _ => return Err(OpenError::MalformedEncapsulation),
        };
        let ciphertext_digest = fingerprint(kem_ciphertext);
        let remembered = key.decapsulations.get(&ciphertext_digest);
        let shared = match &remembered {
            Some(shared) => shared.clone(),
            None => key.decapsulate(kem_ciphertext),
        };
        let unwrapped = match salt {
            Some(salt) => aead_open(&wrapping_key(&shared, salt), header, wrapped),
            None => aead_open(&shared, header, wrapped),
        }
        .map_err(|()| OpenError::NotForThisKey)?;
        if remembered.is_none() && salt.is_some() {
            // Only a salted wrap can share its encapsulation with other envelopes.
            key.decapsulations.remember(ciphertext_digest, &shared);
        }
        let mut content_key = Secret::<32>::zero();
        if unwrapped.len() != 32 {
            return Err(OpenError::NotForThisKey);
        }
        content_key.expose_mut().copy_from_slice(&unwrapped);
        Ok(content_key)
    })
}

/// Opens a sealed body with its content key ([`content_key`]).
pub fn open_with_content_key(
    header: &[u8],
    ciphertext: &[u8],
    content_key: &Secret<32>,
) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    aead_open(content_key, header, ciphertext).map_err(|()| OpenError::BodyAltered)
}

/// Encrypts `body` under a key used for this one message only (so a fixed nonce is safe),
/// with `header` as associated data.
pub fn seal_with_single_use_key(
    key: &Secret<32>,
    header: &[u8],
    body: &[u8],
) -> Result<Vec<u8>, SealError> {
    aead_seal(key, header, body)
}

/// Opens what [`seal_with_single_use_key`] made.
pub fn open_with_single_use_key(
    key: &Secret<32>,
    header: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    aead_open(key, header, sealed).map_err(|()| OpenError::BodyAltered)
}

/// The key that wraps one envelope's content key: HKDF-SHA256 of the shared secret, salted
/// with the envelope's own salt.
fn wrapping_key(shared: &Secret<32>, salt: &[u8]) -> Secret<32> {
    let mut key = Secret::<32>::zero();
    match hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), shared.expose())
        .expand(b"dta seal: wrap content key", key.expose_mut())
    {
        Ok(()) => key,
        Err(_) => unreachable!("32 bytes is a valid HKDF-SHA256 output length"),
    }
}

fn cipher(key: &Secret<32>) -> ChaCha20Poly1305 {
    match ChaCha20Poly1305::new_from_slice(key.expose()) {
        Ok(cipher) => cipher,
        Err(_) => unreachable!("a 32-byte key is a valid ChaCha20-Poly1305 key"),
    }
}

fn aead_seal(key: &Secret<32>, header: &[u8], body: &[u8]) -> Result<Vec<u8>, SealError> {
    cipher(key)
        .encrypt(
            &Nonce::from(ZERO_NONCE),
            Payload {
                msg: body,
                aad: header,
            },
        )
        .map_err(|_| SealError::BodyTooLong)
}

fn aead_open(key: &Secret<32>, header: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, ()> {
    cipher(key)
        .decrypt(
            &Nonce::from(ZERO_NONCE),
            Payload {
                msg: sealed,
                aad: header,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| ())
}

#[cfg(test)]
mod tests;
