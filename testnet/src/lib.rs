//! Local dta networks and demos.
//!
//! - [`harness`]: in-process testnets of full nodes (port 0, temporary homes, mDNS off,
//!   explicit bootstrap dials), for tests and demos.
//! - [`demo`]: the walk-through `dta demo` prints: a principal deals a secret to three
//!   fiduciaries 2-of-3 in sealed, signed envelopes, each fiduciary checks its share and
//!   signs the commitment, the signatures aggregate into one custody certificate, and a
//!   beneficiary rebuilds the secret from two released shares.
//! - [`bench`], [`bench_bitswap`], [`bench_mpin`]: the `dta bench` runs.
//! - [`kubo`], [`helia`]: real IPFS nodes (go-libp2p and js-libp2p) beside a testnet, for
//!   interop tests and the Bitswap benchmark.
//!
//! Process-based testnets, the scenario runner and the LAN (network namespace) mode come
//! later. This crate defines no protocol or cryptography of its own.

#![warn(missing_docs)]

pub mod bench;
pub mod bench_bitswap;
pub mod bench_mpin;
pub mod demo;
pub mod harness;
pub mod helia;
pub mod kubo;
mod peer_process;
