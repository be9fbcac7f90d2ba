//! Local dta networks and demos.
//!
//! - [`harness`]: in-process testnets of full nodes (port 0, temporary homes, mDNS off,
//!   explicit bootstrap dials), for tests and demos.
//! - [`demo`]: what `dta demo` runs: five nodes, one 2-of-3 custody order, a fiduciary
//!   stopped, a release, and an audit from another node.
//! - [`bench`], [`bench_bitswap`], [`bench_mpin`], [`bench_testnet`]: the `dta bench` runs.
//! - [`kubo`], [`helia`]: real IPFS nodes (go-libp2p and js-libp2p) beside a testnet, for
//!   interop tests and the Bitswap benchmark.
//!
//! - [`process`]: testnets of real `dta run` processes (`dta testnet up|status|down|logs`).
//!
//! - [`lan`]: the network namespaces of `dta testnet up --lan`.
//!
//! - [`scenario`]: `dta scenario run FILE` (examples in `testnet/scenarios/`). This crate defines no protocol or cryptography of its own.

#![warn(missing_docs)]

pub mod bench;
pub mod bench_bitswap;
pub mod bench_mpin;
pub mod bench_testnet;
pub mod demo;
pub mod harness;
pub mod helia;
pub mod kubo;
pub mod lan;
mod peer_process;
pub mod process;
pub mod scenario;
