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
//! - PKCS#11 (a token-resident, non-extractable key wraps each secret) comes in its own issue;
//!   this crate will be the only one that talks PKCS#11.

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod soft;

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
}

/// Wraps and unwraps named secrets.
pub trait Keystore: Send + Sync + std::fmt::Debug + 'static {
    /// A short name of the backend (`soft`, `pkcs11`).
    fn backend(&self) -> &'static str;

    /// Wraps `secret` under `name`; the blob only unwraps under the same name.
    fn wrap(&self, name: &str, secret: &[u8]) -> Result<Vec<u8>, KeystoreError>;

    /// Unwraps a blob made by [`Keystore::wrap`] under `name`.
    fn unwrap(&self, name: &str, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeystoreError>;
}
