//! Local dta networks and demos.
//!
//! - [`harness`]: in-process testnets of full nodes (port 0, temporary homes, mDNS off,
//!   explicit bootstrap dials), for tests and demos.
//! - [`demo`]: what `dta demo` runs: five nodes, one 2-of-3 custody order, a fiduciary
//!   stopped, a release, and an audit from another node.
//! - [`bench`](mod@bench): the `dta bench` runs (custody, Bitswap, M-Pin, process testnets).
//! - [`interop`]: real IPFS nodes (kubo on go-libp2p, Helia on js-libp2p) beside a testnet,
//!   for interop tests and the Bitswap benchmark.
//! - [`process`]: testnets of real `dta run` processes (`dta testnet up|status|down|logs`),
//!   with [`process::lan`], the network namespaces of `dta testnet up --lan`, and
//!   [`process::sites`], those of `dta testnet up --sites`.
//! - [`wan`]: the simulated WAN between sites: link figures and the router that applies them.
//! - [`named_policy`]: release policies with node names for members, as scenarios and
//!   `dta bench custody --policy` take them.
//! - [`scenario`]: `dta scenario run FILE` (examples in `testnet/scenarios/`).
//! - [`chaos`]: `dta scenario run --chaos SEED`: seeded faults while orders flow, then every
//!   invariant checked.
//! - [`view`]: `dta testnet ui`: a live web page of a whole running testnet.
//!
//! This crate defines no protocol or cryptography of its own, and parses no arguments of the
//! `dta` command: the binary does, and calls in here.

#![warn(missing_docs)]

pub mod bench;
pub mod chaos;
pub mod demo;
pub mod harness;
pub mod interop;
mod live;
mod mpin_client;
pub mod named_policy;
pub mod process;
pub mod scenario;
pub mod view;
pub mod wan;
