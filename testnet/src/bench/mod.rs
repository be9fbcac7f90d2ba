//! The `dta bench` runs, one module each, and what they share: their error and the in-process
//! testnet's actors they drive.
//!
//! - [`custody`]: orders and releases on an in-process testnet (`dta bench custody`), and
//!   [`policy`], what a release policy adds to a release (`--policy FILE`).
//! - [`dkg`]: keys generated without a dealer by committees of growing size, and custody
//!   moved to another committee and refreshed (`dta bench dkg`).
//! - [`sign`]: threshold signatures with a key nobody holds (`dta bench sign`).
//! - [`bitswap`]: block fetches over Bitswap, from a dta node and from kubo
//!   (`dta bench bitswap`).
//! - [`mpin`]: M-Pin share issuance and the server's check (`dta bench mpin`).
//! - [`testnet`]: process testnets of growing size, until every node is ready, and what they
//!   then do (`dta bench testnet`); [`network_health`], the DHT and gossip figures of one.
//!
//! They report figures and judge none: `dta bench` prints them, the tests only check that every
//! phase ran. Each starts and stops the networks it measures; none keeps anything afterwards.

use std::time::Duration;

use dta_actors::roles::{Role, RoleMsg};
use dta_protocol::Cid;
use ractor::ActorRef;

use crate::harness::{HarnessError, Testnet};

pub mod bitswap;
pub mod custody;
pub mod dkg;
pub mod mpin;
pub mod network_health;
pub mod policy;
pub mod sign;
pub mod testnet;

/// Longest wait for any one phase.
pub const PHASE_TIMEOUT: Duration = Duration::from_secs(600);

/// Why the benchmark failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The testnet.
    #[error(transparent)]
    Harness(#[from] HarnessError),
    /// An order or release was refused.
    #[error("{0}")]
    Custody(String),
    /// The policy file.
    #[error("the benchmark's policy: {0}")]
    Policy(String),
    /// A phase took too long.
    #[error("a phase did not finish within {PHASE_TIMEOUT:?}")]
    Timeout,
}

/// Node `i`'s principal actor.
pub(crate) fn principal_of(net: &Testnet, i: usize) -> Result<ActorRef<RoleMsg>, BenchError> {
    dta_actors::registry::role(&net.node(i).info().peer_id, Role::Principal)
        .ok_or_else(|| BenchError::Custody("no principal actor".into()))
}

/// Node `i`'s identity CID.
pub(crate) fn identity_of(net: &Testnet, i: usize) -> Result<Cid, BenchError> {
    net.node(i)
        .info()
        .identity
        .parse()
        .map_err(|_| BenchError::Custody("bad identity CID".into()))
}
