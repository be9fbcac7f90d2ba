//! A dta node as a library.
//!
//! - [`home`]: creating and opening a node's home directory (config, node key, keystore,
//!   identity, database).
//! - [`config`]: the `config.toml` file.
//! - [`run`]: [`Node::start`], [`Node::stop`] and [`run()`], which runs a node until its
//!   shutdown token fires, so tests start whole nodes in one process.
//! - [`http`]: the HTTP API (axum) and `/metrics`.
//! - [`client`]: the client of that API every other part uses.
//! - [`logging`]: tracing-subscriber setup.
//! - [`ports`]: whether the listen ports are free before a start.
//! - [`private`]: files and directories private to their owner (modes, umask).
//! - [`tls`]: HTTPS for the API (a self-signed certificate, the listener, pinning clients).
//! - [`tokens`]: API tokens and their scopes (made, listed, revoked, checked).
//! - [`netns`]: the named network namespace a process runs in (for `node.json`).
//! - [`memory`]: free memory given back to the kernel, in a node process.
//!
//! What it does not do: protocol internals (dta-protocol), actors (dta-actors), the testnet
//! harness (dta-testnet), argument parsing (the `dta` binary).

#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod backup;
pub mod client;
pub mod config;
pub mod home;
pub mod http;
pub mod logging;
pub mod memory;
pub mod netns;
pub mod ports;
pub mod private;
pub mod rotation;
pub mod run;
pub mod tls;
pub mod tokens;
pub mod version;

pub use run::{Node, NodeFile, RunError, RunOptions, run};
