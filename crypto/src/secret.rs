//! A fixed-size secret that zeroizes on drop and never prints.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// `N` secret bytes: zeroized on drop, redacted in `Debug`, compared in constant time.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Secret<const N: usize>([u8; N]);

impl<const N: usize> Secret<N> {
    /// Takes ownership of `bytes`; the caller should zeroize its own copy if it kept one.
    pub fn new(bytes: [u8; N]) -> Self {
        Self(bytes)
    }

    /// All zero bytes, to be filled in place through [`Secret::expose_mut`].
    pub fn zero() -> Self {
        Self([0; N])
    }

    /// Fresh bytes from the operating system's random number generator.
    pub fn random() -> Self {
        let mut secret = Self::zero();
        random_bytes(&mut secret.0);
        secret
    }

    /// The secret bytes. Keep the borrow short and never log what it shows.
    pub fn expose(&self) -> &[u8; N] {
        &self.0
    }

    /// The secret bytes, writable.
    pub fn expose_mut(&mut self) -> &mut [u8; N] {
        &mut self.0
    }
}

impl<const N: usize> PartialEq for Secret<N> {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.0.ct_eq(&other.0).into()
    }
}

impl<const N: usize> Eq for Secret<N> {}

impl<const N: usize> fmt::Debug for Secret<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret<{N}>(<redacted>)")
    }
}

/// Fills `dest` from the operating system's random number generator.
///
/// # Panics
/// If the operating system cannot provide randomness. There is no safe way to go on without
/// it, and on the platforms dta supports (Linux `getrandom(2)`) it does not happen.
pub fn random_bytes(dest: &mut [u8]) {
    if let Err(err) = getrandom::fill(dest) {
        panic!("the operating system's random number generator failed: {err}");
    }
}
