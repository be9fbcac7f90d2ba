//! What this build is: the crate version, the git commit it was built from (recorded by
//! `build.rs`; `unknown` outside a git checkout) and the network protocol it speaks.
//!
//! What it does not do: compare versions with peers (the swarm checks a peer's protocol, see
//! `dta_protocol::network::compatible`).

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit built, 12 hex digits, or `unknown`.
pub const COMMIT: &str = env!("DTA_GIT_COMMIT");
/// `VERSION (commit COMMIT)`, what `dta --version` prints after the name.
pub const LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("DTA_GIT_COMMIT"),
    ")"
);
/// The network protocol this node speaks, as identify announces it.
pub const PROTOCOL: &str = dta_protocol::network::IDENTIFY_PROTOCOL;
