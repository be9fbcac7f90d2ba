//! Real IPFS nodes beside a testnet, for interop tests and the Bitswap benchmark: [`kubo`]
//! (go-libp2p, from PyPI) and [`helia`] (js-libp2p, from npm), each a process driven by a
//! script compiled into this crate and spoken to in JSON lines.
//!
//! It does not install them: `scripts/test` does (tier 3), and the callers name where through
//! [`kubo::PYTHON_ENV`] and [`helia::DIR_ENV`].

pub mod helia;
pub mod kubo;
mod peer_process;

pub use peer_process::PeerError;
