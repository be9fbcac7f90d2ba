//! The software keystore: Argon2id from a passphrase, ChaCha20-Poly1305 per secret.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use dta_crypto::{Secret, random_bytes};
use zeroize::Zeroizing;

use crate::{Keystore, KeystoreError};

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// Argon2id parameters, kept beside the keystore so it can be reopened.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
    /// 16 random bytes.
    pub salt: [u8; 16],
}

impl KdfParams {
    /// OWASP's recommended Argon2id settings (19 MiB, 2 passes, 1 lane) with a fresh salt.
    pub fn recommended() -> Self {
        let mut salt = [0; 16];
        random_bytes(&mut salt);
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
            salt,
        }
    }
}

/// A keystore whose key-encryption key comes from a passphrase. Zeroizes its key on drop.
pub struct SoftKeystore {
    kek: Secret<32>,
}

impl SoftKeystore {
    /// Derives the key-encryption key from `passphrase` with Argon2id.
    pub fn derive(passphrase: &[u8], params: &KdfParams) -> Result<Self, KeystoreError> {
        if passphrase.is_empty() {
            return Err(KeystoreError::EmptyPassphrase);
        }
        let argon = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(
                params.memory_kib,
                params.iterations,
                params.parallelism,
                Some(32),
            )
            .map_err(|e| KeystoreError::Kdf(e.to_string()))?,
        );
        let mut kek = Secret::<32>::zero();
        argon
            .hash_password_into(passphrase, &params.salt, kek.expose_mut())
            .map_err(|e| KeystoreError::Kdf(e.to_string()))?;
        Ok(Self { kek })
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        match ChaCha20Poly1305::new_from_slice(self.kek.expose()) {
            Ok(cipher) => cipher,
            Err(_) => unreachable!("a 32-byte key is a valid ChaCha20-Poly1305 key"),
        }
    }
}

impl fmt::Debug for SoftKeystore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SoftKeystore(<redacted>)")
    }
}

/// Blob layout: version byte, 12-byte random nonce, ciphertext with tag. The associated data
/// is the version byte and the secret's name, so a blob cannot be moved to another name.
impl Keystore for SoftKeystore {
    fn backend(&self) -> &'static str {
        "soft"
    }

    /// One AEAD call on a secret of a few dozen bytes: microseconds, less than handing it to
    /// another thread would cost.
    fn may_block(&self) -> bool {
        false
    }

    fn wrap(&self, name: &str, secret: &[u8]) -> Result<Vec<u8>, KeystoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce);
        let aad = associated_data(name);
        let sealed = self
            .cipher()
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: secret,
                    aad: &aad,
                },
            )
            .map_err(|_| KeystoreError::Malformed { name: name.into() })?;
        let mut blob = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        blob.push(VERSION);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        Ok(blob)
    }

    fn unwrap(&self, name: &str, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
        if blob.len() < 1 + NONCE_LEN + 16 || blob[0] != VERSION {
            return Err(KeystoreError::Malformed { name: name.into() });
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&blob[1..1 + NONCE_LEN]);
        let aad = associated_data(name);
        self.cipher()
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &blob[1 + NONCE_LEN..],
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| KeystoreError::Integrity { name: name.into() })
    }
}

fn associated_data(name: &str) -> Vec<u8> {
    let mut aad = vec![VERSION];
    aad.extend_from_slice(name.as_bytes());
    aad
}

#[cfg(test)]
#[path = "soft_tests.rs"]
mod tests;
