//! Where a dta node keeps its secrets.
//!
//! Every secret a node holds (its identity seed today; fiduciary shares, M-Pin master-secret
//! shares and received secrets later) goes through the [`Keystore`] trait. A keystore turns a
//! secret into an opaque *wrapped blob* and back; the blobs are stored by the caller (in the
//! node's rocksdb), so a keystore never touches storage or the network.
//!
//! Backends:
//! - [`SoftKeystore`]: a key-encryption key derived from a passphrase with Argon2id wraps each
//!   secret with ChaCha20-Poly1305, the secret's name as associated data.
//! - [`Pkcs11Keystore`]: a token-resident, sensitive, non-extractable AES-256 key wraps each
//!   secret with AES-GCM inside the token (SoftHSM2 in tests, a hardware token in production).
//!   This crate is the only one that talks PKCS#11.
//!
//! Both backends pass the same test suite (`tests/suite.rs`). What this crate does not do:
//! store blobs, choose names, or decide which secrets exist.

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod pkcs11;
mod soft;

pub use pkcs11::{KekPolicy, Pkcs11Config, Pkcs11Keystore};
pub use soft::{KdfParams, SoftKeystore};
use zeroize::Zeroizing;

/// Why a keystore operation failed. Never carries secret bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum KeystoreError {
    /// The passphrase does not open this keystore.
    #[error("wrong passphrase for this keystore")]
    WrongPassphrase,
    /// A wrapped blob failed authentication: altered, or stored under another name.
    #[error("wrapped secret {name:?} failed its integrity check")]
    Integrity {
        /// The secret's name.
        name: String,
    },
    /// The blob is not in this keystore's format.
    #[error("wrapped secret {name:?} is malformed")]
    Malformed {
        /// The secret's name.
        name: String,
    },
    /// The key-derivation parameters are unusable.
    #[error("invalid key-derivation parameters: {0}")]
    Kdf(String),
    /// An empty passphrase protects nothing.
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    /// The PKCS#11 module cannot be loaded.
    #[error("PKCS#11 module {module} cannot be loaded: {reason}")]
    ModuleNotFound {
        /// Its path.
        module: String,
        /// Why.
        reason: String,
    },
    /// No token has this label.
    #[error(
        "no PKCS#11 token is labelled {token:?} (tokens present: {available:?}{})",
        unreadable_tokens(*unreadable)
    )]
    TokenNotFound {
        /// The label asked for.
        token: String,
        /// The labels present.
        available: Vec<String>,
        /// Tokens present whose information the module could not read (their labels unknown).
        unreadable: usize,
    },
    /// The token refused the PIN.
    #[error("wrong PIN for token {token:?}")]
    WrongPin {
        /// The token.
        token: String,
    },
    /// The token locked its PIN after too many wrong ones.
    #[error("the PIN of token {token:?} is locked; its security officer must reset it")]
    PinLocked {
        /// The token.
        token: String,
    },
    /// The token has no room for another object.
    #[error("token {token:?} is full")]
    TokenFull {
        /// The token.
        token: String,
    },
    /// The key-encryption key is not on the token: the secrets wrapped by it cannot be opened.
    #[error(
        "no key-encryption key labelled {label:?} on token {token:?}: the secrets it wrapped cannot be opened"
    )]
    KeyNotFound {
        /// The key's label.
        label: String,
        /// The token.
        token: String,
    },
    /// More than one key has the label.
    #[error("{count} keys on the token are labelled {label:?}; refusing to guess")]
    Ambiguous {
        /// The label.
        label: String,
        /// How many.
        count: usize,
    },
    /// The keystore's key is not the one its secrets were wrapped with.
    #[error("this {backend} keystore's key is not the one this home's secrets were wrapped with")]
    WrongKey {
        /// The backend.
        backend: &'static str,
    },
    /// The token failed an operation.
    #[error("PKCS#11 token, {operation}: {message}")]
    Token {
        /// What was being done.
        operation: String,
        /// The token's error.
        message: String,
        /// Whether the session is gone (a new one is opened next time).
        lost_session: bool,
    },
}

/// The tail of [`KeystoreError::TokenNotFound`]'s message for tokens that could not be read.
fn unreadable_tokens(count: usize) -> String {
    match count {
        0 => String::new(),
        1 => "; one more could not be read".into(),
        n => format!("; {n} more could not be read"),
    }
}

/// Wraps and unwraps named secrets.
pub trait Keystore: Send + Sync + std::fmt::Debug + 'static {
    /// A short name of the backend (`soft`, `pkcs11`).
    fn backend(&self) -> &'static str;

    /// Wraps `secret` under `name`; the blob only unwraps under the same name.
    fn wrap(&self, name: &str, secret: &[u8]) -> Result<Vec<u8>, KeystoreError>;

    /// Unwraps a blob made by [`Keystore::wrap`] under `name`.
    fn unwrap(&self, name: &str, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeystoreError>;

    /// The token holding the key, for backends that have one.
    fn token(&self) -> Option<&str> {
        None
    }

    /// Whether a call may wait on a device (a token, a socket): callers keep such calls off
    /// their async workers. A backend that answers from memory says no.
    fn may_block(&self) -> bool {
        true
    }
}

/// The name under which [`check_blob`] wraps a fixed value (named for the passphrase check it
/// first was, so that existing homes still open).
const CHECK_NAME: &str = "dta/keystore/passphrase-check";
const CHECK_VALUE: &[u8] = b"dta keystore v1";

/// A blob that identifies a keystore's key: kept beside the keystore when it is created and
/// given to [`verify_check`] when it is opened again, so a different key (another passphrase,
/// another token with the same labels) is caught before any secret is touched.
pub fn check_blob(keystore: &dyn Keystore) -> Result<Vec<u8>, KeystoreError> {
    keystore.wrap(CHECK_NAME, CHECK_VALUE)
}

/// Fails with [`KeystoreError::WrongKey`] unless `keystore`'s key made `blob`.
pub fn verify_check(keystore: &dyn Keystore, blob: &[u8]) -> Result<(), KeystoreError> {
    match keystore.unwrap(CHECK_NAME, blob) {
        Ok(value) if value.as_slice() == CHECK_VALUE => Ok(()),
        Ok(_) | Err(KeystoreError::Integrity { .. } | KeystoreError::Malformed { .. }) => {
            Err(KeystoreError::WrongKey {
                backend: keystore.backend(),
            })
        }
        Err(other) => Err(other),
    }
}
